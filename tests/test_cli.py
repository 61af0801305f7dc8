"""``python -m sparseqa ask | inspect | export`` end to end, in subprocesses, on the tiny models.

The commands start together (each pays the library imports) once the session's IR cache, which the subprocesses
inherit through SPARSEQA_CACHE, holds the tiny model's fp32 and int8 IR.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from sparseqa.blocks import DESCRIPTIONS, describe
from sparseqa.cli import MAX_TOP_K, main
from sparseqa.models import ModelLoadError, resolve
from sparseqa.runtimes import COMPLETE_MARKER, _load_tokenizer, cached_ir

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = json.loads((REPO / "assets" / "examples.json").read_text(encoding="utf-8"))
PASSAGE, QUESTION = EXAMPLES[11]["passage"], EXAMPLES[11]["question"]  # non-ASCII text
ANSWER_KEYS = {"answer", "start", "end", "score", "latency_ms", "model", "runtime", "precision"}
UNKNOWN_MODEL = "nobody-here/no-such-model"


@pytest.fixture(scope="module")
def cli(
    tiny_sparse_model_1x4, tiny_sparse_model_4x1, tiny_dense_model, tmp_path_factory
) -> dict[str, subprocess.CompletedProcess]:
    """Every command's finished process, by name. ``ask`` and ``export`` run the model pruned the seed's way (4x1);
    ``inspect`` reads both orientations."""
    local = resolve(str(tiny_sparse_model_4x1))
    cached_ir(local, _load_tokenizer(local), quantized=True, calibration_samples=300)  # fp32 and int8
    files = tmp_path_factory.mktemp("cli")
    (files / "latin1.txt").write_bytes("Ça coûte cher.".encode("latin-1"))
    sparse, dense = str(tiny_sparse_model_4x1), str(tiny_dense_model)
    pruned = {"1x4": str(tiny_sparse_model_1x4), "4x1": sparse}
    ask = ["ask", "--model", sparse, "--question", QUESTION, "--context", PASSAGE, "--runs", "2"]
    on_pytorch = ["--runtime", "pytorch"]  # fp32 without asking; no OpenVINO import: a faster subprocess
    commands = {
        "ask json": ask + ["--json"],
        "ask compare json": ask + ["--dense-model", dense, "--compare", "--json", "--precision", "fp32"],
        "ask text": ask + ["--dense-model", dense, "--compare", "--top-k", "2", *on_pytorch],
        **{f"inspect json {pattern}": ["inspect", "--model", model, "--json"] for pattern, model in pruned.items()},
        **{f"inspect text {pattern}": ["inspect", "--model", model] for pattern, model in pruned.items()},
        "inspect linears": ["inspect", "--model", pruned["4x1"], "--linears"],
        "export fp32": ["export", "--model", sparse, "--out", str(files / "fp32")],
        "export int8": ["export", "--model", sparse, "--precision", "int8", "--out", str(files / "int8")],
        "unknown model": ["ask", "--model", UNKNOWN_MODEL, "-q", QUESTION, "-c", PASSAGE],
        "empty question": ["ask", "--model", sparse, "-q", "  ", "-c", PASSAGE],
        "invalid utf-8": ["ask", "--model", sparse, "-q", QUESTION, "--context-file", str(files / "latin1.txt")],
        "missing file": ["ask", "--model", sparse, "-q", QUESTION, "--context-file", str(files / "missing.txt")],
        "synthetic and model": ["ask", "--synthetic", "--model", sparse, "-q", QUESTION, "-c", PASSAGE],
        "passage over the limit": ["ask", "--model", sparse, "-q", QUESTION, "-c", PASSAGE],
    }
    environments = {"passage over the limit": {"SPARSEQA_MAX_PASSAGE_CHARS": "50"}}

    def run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sparseqa", *commands[name]],
            cwd=REPO,
            env=os.environ | {"HF_HUB_OFFLINE": "1"} | environments.get(name, {}),
            capture_output=True,
            text=True,
            timeout=300,
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        finished = dict(zip(commands, pool.map(run, commands)))
    finished["files"] = files
    return finished


def succeeded(process: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert process.returncode == 0, process.stderr
    assert "Traceback" not in process.stderr
    return process


def failed_with(process: subprocess.CompletedProcess, code: int) -> str:
    """The last stderr line of a command that failed cleanly with ``code``."""
    assert process.returncode == code, process.stdout + process.stderr
    assert "Traceback" not in process.stderr
    return process.stderr.strip().splitlines()[-1]


def test_ask_json_has_the_answer_its_offsets_and_latency(cli):
    result = json.loads(succeeded(cli["ask json"]).stdout)

    assert ANSWER_KEYS <= set(result)
    assert PASSAGE[result["start"] : result["end"]] == result["answer"] != ""
    assert 0 < result["score"] <= 1 and result["latency_ms"] > 0
    assert (result["runtime"], result["precision"], result["runs"]) == ("openvino", "int8", 2)
    assert "dense" not in result and "speedup" not in result
    # auto: the kernels its measurement chose, named with the measured alternatives and the reason.
    choice = result["kernel_choice"]
    assert choice["how"] in ("measured", "cached") and choice["reason"]
    assert {"openvino", "sparseqa"} <= set(choice["medians_ms"])
    assert all(median > 0 for medians in choice["medians_ms"].values() for median in medians.values())
    assert result["kernels"] == ("sparseqa" if choice["chosen"] == "sparseqa" else "openvino")
    assert bool(result["kernel_isa"]) == (result["kernels"] == "sparseqa")


def test_ask_compare_json_adds_the_dense_answer_and_the_speedup(cli):
    result = json.loads(succeeded(cli["ask compare json"]).stdout)

    assert ANSWER_KEYS <= set(result["dense"])
    assert (result["dense"]["runtime"], result["dense"]["precision"]) == ("pytorch", "fp32")
    assert (result["dense"]["kernels"], result["dense"]["kernel_isa"]) == ("pytorch", None)
    assert PASSAGE[result["dense"]["start"] : result["dense"]["end"]] == result["dense"]["answer"]
    assert result["speedup"] == pytest.approx(result["dense"]["latency_ms"] / result["latency_ms"])
    assert isinstance(result["agree"], bool)


def test_ask_prints_both_answers_their_latency_and_the_speedup(cli):
    output = succeeded(cli["ask text"]).stdout

    assert "· pytorch fp32" in output.splitlines()[0], "--runtime pytorch alone runs the sparse model in fp32"
    answers = re.findall(r"answer: '(.*)'  \(characters (\d+)-(\d+), p=0\.\d{3}\)", output)
    assert len(answers) == 2
    for text, start, end in answers:
        assert PASSAGE[int(start) : int(end)] == text
    assert len(re.findall(r"#2: '.*'  \(p=0\.\d{3}\)", output)) == 2
    assert len(re.findall(r"latency: median \d+\.\d ms, p90 \d+\.\d ms over 2 runs", output)) == 2
    assert re.search(r"speedup vs dense: \d+\.\d\dx; both models chose (the same span|different spans)", output)


OTHER = {"1x4": "4x1", "4x1": "1x4"}


@pytest.mark.parametrize("pattern", ["1x4", "4x1"])
def test_inspect_json_reads_eighty_percent_zero_blocks_in_the_pattern_it_names(cli, pattern):
    report = json.loads(succeeded(cli[f"inspect json {pattern}"]).stdout)

    assert report["pattern"] == pattern
    assert report["pattern_description"] == describe(pattern)
    assert report["zero_blocks"][pattern] == pytest.approx(0.8, abs=0.01)
    # The other orientation's blocks are zero about as often as scattered zeros make them (0.8 ** 4 = 41%).
    assert report["zero_blocks"][OTHER[pattern]] == pytest.approx(0.41, abs=0.08)
    assert report["zeros"] == pytest.approx(0.8, abs=0.01)
    assert report["matrices"] == 12 and len(report["per_layer"]) == 2 and len(report["linears"]) == 12
    for row in report["per_layer"] + report["linears"]:
        assert row["pattern"] == pattern and row["zero_blocks"][pattern] == pytest.approx(0.8, abs=0.01)
    assert {row["name"] for row in report["linears"]} >= {"attention.self.query", "intermediate.dense"}


@pytest.mark.parametrize("pattern", ["1x4", "4x1"])
def test_inspect_prints_both_orientations_in_words_and_the_pattern(cli, pattern):
    lines = succeeded(cli[f"inspect text {pattern}"]).stdout.splitlines()
    report = json.loads(cli[f"inspect json {pattern}"].stdout)

    for orientation in ("1x4", "4x1"):
        line = next(line for line in lines if line.strip().startswith(f"all-zero {orientation} blocks"))
        assert f"({DESCRIPTIONS[orientation]})" in line
        assert line.endswith(f"{report['zero_blocks'][orientation]:.1%}")
    assert f"  pattern: {describe(pattern)}" in lines
    header = next(line for line in lines if line.split()[:2] == ["layer", "zeros"])
    assert header.split() == ["layer", "zeros", "1x4", "blocks", "zero", "4x1", "blocks", "zero", "pattern"]
    rows = lines[lines.index(header) + 1 :]
    assert len(rows) == 2 and all(row.split()[-1] == pattern for row in rows)


def test_inspect_linears_prints_one_row_per_encoder_linear(cli):
    lines = succeeded(cli["inspect linears"]).stdout.splitlines()
    header = next(line for line in lines if line.split()[:3] == ["layer", "name", "shape"])
    rows = lines[lines.index(header) + 1 :]
    assert len(rows) == 12
    assert any("intermediate.dense 64x32" in row for row in rows)
    assert all(row.split()[-1] == "4x1" for row in rows)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_export_writes_a_directory_optimum_intel_loads(cli, precision):
    process = succeeded(cli[f"export {precision}"])
    out = cli["files"] / precision
    assert f"wrote {precision} OpenVINO IR of" in process.stdout
    for name in ("openvino_model.xml", "openvino_model.bin", "config.json", "tokenizer.json"):
        assert (out / name).is_file(), name
    assert not (out / COMPLETE_MARKER).exists(), "the cache's own marker stays in the cache"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask, "the directory gets the user's usual permissions"
    from optimum.intel import OVModelForQuestionAnswering
    from transformers import AutoTokenizer

    model = OVModelForQuestionAnswering.from_pretrained(out)
    inputs = AutoTokenizer.from_pretrained(out)(QUESTION, PASSAGE, return_tensors="np")
    output = model(**inputs)
    assert output.start_logits.shape == inputs["input_ids"].shape
    assert np.isfinite(output.start_logits).all()
    has_int8_weights = 'element_type="i8"' in (out / "openvino_model.xml").read_text()
    assert has_int8_weights == (precision == "int8")


def test_an_unknown_model_offline_fails_in_one_line_saying_what_to_pass(cli):
    line = failed_with(cli["unknown model"], 1)

    reason = "the Hugging Face hub is not reachable and the model is not in the local cache"
    assert line == f"error: {ModelLoadError(UNKNOWN_MODEL, reason)}"
    assert "pass --model PATH for a local copy or --synthetic for a latency-only demo" in line


def test_an_empty_question_fails_before_loading_any_model(cli):
    process = cli["empty question"]
    assert failed_with(process, 1) == "error: the question is empty: type a question about the passage"
    assert "loading" not in process.stderr


def test_a_context_file_that_is_not_utf8_names_the_byte(cli):
    path = cli["files"] / "latin1.txt"
    assert failed_with(cli["invalid utf-8"], 1) == f"error: {path} is not valid UTF-8 (byte 0): save it as UTF-8 text"


def test_a_missing_context_file_is_named(cli):
    path = cli["files"] / "missing.txt"
    assert failed_with(cli["missing file"], 1) == f"error: cannot read {path}: No such file or directory"


def test_synthetic_with_a_model_is_a_usage_error(cli):
    process = cli["synthetic and model"]
    assert failed_with(process, 2).endswith("error: --synthetic and --model exclude each other: pass one")
    assert process.stderr.startswith("usage:")


def test_ask_honours_the_limits_set_in_the_environment(cli):
    line = failed_with(cli["passage over the limit"], 1)
    assert line == f"error: the passage has {len(PASSAGE):,} characters; the limit is 50: shorten it"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--top-k", "0"], f"--top-k must be between 1 and {MAX_TOP_K}"),
        (["--top-k", str(MAX_TOP_K + 1)], f"--top-k must be between 1 and {MAX_TOP_K}"),
        (["--warmup", "-1"], "--warmup must be at least 0"),
        (["--threads", "0"], "--threads must be at least 1"),
    ],
    ids=["top-k-zero", "top-k-too-many", "negative-warmup", "no-threads"],
)
def test_ask_options_out_of_range_are_usage_errors_before_loading(options, says, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["ask", "--synthetic", "--question", "Who?", "--context", "Ann did.", *options])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().endswith(f"error: {says}")
    assert "loading" not in err


def test_inspect_names_the_linears_whose_pattern_differs_from_the_models(tiny_sparse_model_4x1, tmp_path, capsys):
    import shutil

    from safetensors.numpy import load_file, save_file

    from sparseqa.blocks import prune_mask

    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_sparse_model_4x1, mixed)
    weights = load_file(mixed / "model.safetensors")
    name = next(key for key in weights if key.endswith("layer.1.attention.self.value.weight"))
    dense = np.random.default_rng(0).standard_normal(weights[name].shape).astype(np.float32)
    weights[name] = dense * prune_mask(dense, 0.8, "1x4")
    save_file(weights, mixed / "model.safetensors", metadata={"format": "pt"})

    assert main(["inspect", "--model", str(mixed)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"  pattern: {describe('4x1')}" in lines
    assert f"  1 of 12 Linears have another pattern: layer 1 attention.self.value ({describe('1x4')})" in lines
