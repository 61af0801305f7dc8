"""The engines: OpenVINO agrees with PyTorch, int8/bf16 answer, bad choices are refused, the IR cache holds up,
and one engine answers many threads at once."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sparseqa import decoding, runtimes
from sparseqa.hardware import machine
from sparseqa.models import resolve
from sparseqa.runtimes import COMPLETE_MARKER, cache_key, cached_ir, load_engine

EXAMPLES = json.loads((Path(__file__).resolve().parent.parent / "assets" / "examples.json").read_text(encoding="utf-8"))
LONG = EXAMPLES[10]  # more than one 384-token window


@pytest.fixture(scope="module")
def pytorch_fp32(tiny_sparse_model):
    return load_engine(str(tiny_sparse_model), "pytorch", "fp32")


@pytest.fixture(scope="module")
def openvino_fp32(tiny_sparse_model):
    return load_engine(str(tiny_sparse_model), "openvino", "fp32")


@pytest.fixture(scope="module")
def openvino_int8(tiny_sparse_model):
    return load_engine(str(tiny_sparse_model), "openvino", "int8")


def logits(engine, question: str, passage: str) -> tuple[np.ndarray, np.ndarray]:
    encoding = decoding.encode(engine.tokenizer, question, passage)
    return engine.infer(decoding.model_inputs(encoding, engine.input_names))


def assert_valid_answer(answer, passage: str) -> None:
    assert answer.text and passage[answer.start : answer.end] == answer.text
    assert 0 < answer.score <= 1


@pytest.mark.parametrize("example", [EXAMPLES[0], EXAMPLES[11], LONG], ids=["short", "non-ascii", "long"])
def test_openvino_fp32_agrees_with_pytorch_fp32(pytorch_fp32, openvino_fp32, example):
    question, passage = example["question"], example["passage"]
    torch_start, torch_end = logits(pytorch_fp32, question, passage)
    ov_start, ov_end = logits(openvino_fp32, question, passage)

    np.testing.assert_allclose(ov_start, torch_start, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ov_end, torch_end, rtol=1e-3, atol=1e-4)
    torch_answer = pytorch_fp32.answer(question, passage)
    ov_answer = openvino_fp32.answer(question, passage)
    assert (ov_answer.start, ov_answer.end) == (torch_answer.start, torch_answer.end)
    assert ov_answer.score == pytest.approx(torch_answer.score, rel=1e-3)


def test_a_long_passage_is_answered_over_several_windows(openvino_fp32):
    answer = openvino_fp32.answer(LONG["question"], LONG["passage"])

    assert answer.windows >= 2
    assert answer.tokens > 384
    assert_valid_answer(answer, LONG["passage"])


def test_int8_answers_with_a_valid_span(openvino_int8):
    example = EXAMPLES[0]
    answer = openvino_int8.answer(example["question"], example["passage"], top_k=3)

    assert_valid_answer(answer, example["passage"])
    assert (answer.runtime, answer.precision) == ("openvino", "int8")
    assert len(answer.alternatives) == 2
    assert all(example["passage"][span.start : span.end] == span.text for span in answer.alternatives)


def test_int8_logits_follow_fp32(openvino_fp32, openvino_int8):
    example = EXAMPLES[0]
    fp32_start, _ = logits(openvino_fp32, example["question"], example["passage"])
    int8_start, _ = logits(openvino_int8, example["question"], example["passage"])

    assert int8_start.shape == fp32_start.shape
    assert np.corrcoef(fp32_start.ravel(), int8_start.ravel())[0, 1] > 0.9


def test_pytorch_bf16_answers_close_to_fp32(tiny_sparse_model, pytorch_fp32):
    bf16 = load_engine(str(tiny_sparse_model), "pytorch", "bf16")
    example = EXAMPLES[0]

    bf16_start, _ = logits(bf16, example["question"], example["passage"])
    fp32_start, _ = logits(pytorch_fp32, example["question"], example["passage"])

    np.testing.assert_allclose(bf16_start, fp32_start, atol=0.05)
    assert_valid_answer(bf16.answer(example["question"], example["passage"]), example["passage"])


def test_openvino_bf16_runs_where_the_cpu_has_it_and_is_refused_clearly_elsewhere(tiny_sparse_model):
    example = EXAMPLES[0]
    if machine().avx512_bf16 or machine().amx:
        engine = load_engine(str(tiny_sparse_model), "openvino", "bf16")
        assert_valid_answer(engine.answer(example["question"], example["passage"]), example["passage"])
    else:
        with pytest.raises(ValueError, match="bf16 needs a CPU with AVX512-BF16 or AMX.*use fp32 or int8"):
            load_engine(str(tiny_sparse_model), "openvino", "bf16")


@pytest.mark.parametrize(
    ("runtime", "precision", "message"),
    [
        ("onnx", "fp32", "unknown runtime 'onnx': choose one of openvino, pytorch"),
        ("pytorch", "int8", "precision 'int8' is not available on pytorch: choose one of fp32, bf16"),
        ("openvino", "fp16", "precision 'fp16' is not available on openvino: choose one of fp32, bf16, int8"),
    ],
)
def test_an_unknown_runtime_or_precision_is_refused_with_the_choices(tiny_sparse_model, runtime, precision, message):
    with pytest.raises(ValueError) as error:
        load_engine(str(tiny_sparse_model), runtime, precision)
    assert str(error.value) == message


def test_answer_reports_its_timings_and_what_ran(openvino_fp32):
    example = EXAMPLES[0]
    answer = openvino_fp32.answer(example["question"], example["passage"], top_k=2)

    timings = answer.timings
    assert min(timings.tokenize_ms, timings.infer_ms, timings.decode_ms) > 0
    assert timings.total_ms == pytest.approx(timings.tokenize_ms + timings.infer_ms + timings.decode_ms)
    assert answer.windows == 1 and answer.synthetic is False
    encoding = decoding.encode(openvino_fp32.tokenizer, example["question"], example["passage"])
    assert answer.tokens == int(encoding["attention_mask"].sum())
    as_dict = answer.as_dict()
    assert as_dict["latency_ms"] == pytest.approx(timings.total_ms)
    assert as_dict["alternatives"] == [vars(span) for span in answer.alternatives]
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_non_finite_model_output_is_a_runtime_error_not_an_index_error(openvino_fp32, monkeypatch):
    def broken_infer(inputs):
        shape = inputs["input_ids"].shape
        return np.full(shape, np.nan, dtype=np.float32), np.full(shape, np.nan, dtype=np.float32)

    monkeypatch.setattr(openvino_fp32, "infer", broken_infer)
    with pytest.raises(RuntimeError, match="non-finite start/end scores"):
        openvino_fp32.answer("Where?", EXAMPLES[0]["passage"])


def test_eight_threads_on_one_openvino_engine_get_the_sequential_answers(openvino_fp32, run_together):
    cases = [(example["question"], example["passage"]) for example in EXAMPLES[:8]]
    expected = [openvino_fp32.answer(question, passage) for question, passage in cases]

    results = run_together(
        [lambda case=case: [openvino_fp32.answer(*case) for _ in range(3)] for case in cases]
    )

    for want, answers in zip(expected, results, strict=True):
        for answer in answers:
            assert (answer.text, answer.start, answer.end) == (want.text, want.start, want.end)


# ---- the IR cache -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session_ir(tiny_sparse_model, openvino_fp32) -> Path:
    """The session cache's fp32 IR of the tiny sparse model (built by the ``openvino_fp32`` engine)."""
    local = resolve(str(tiny_sparse_model))
    return cached_ir(local, openvino_fp32.tokenizer, quantized=False, calibration_samples=300)


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """An empty IR cache for one test, so damaging it cannot affect the session's cache."""
    monkeypatch.setenv("SPARSEQA_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def export_calls(monkeypatch, session_ir) -> list[Path]:
    """Records every export to IR; an export copies the session's IR, since what is tested here is the cache."""
    calls: list[Path] = []

    def copying_export(local, out_dir):
        calls.append(out_dir)
        for name in ("openvino_model.xml", "openvino_model.bin", "config.json"):
            shutil.copy(session_ir / name, out_dir / name)

    monkeypatch.setattr(runtimes, "export_ir", copying_export)
    return calls


def ir_entry(local, tokenizer) -> Path:
    return cached_ir(local, tokenizer, quantized=False, calibration_samples=300)


def test_the_second_load_reuses_the_cached_ir_without_exporting(tiny_sparse_model, private_cache, export_calls):
    local = resolve(str(tiny_sparse_model))
    first = load_engine(str(tiny_sparse_model), "openvino", "fp32")
    assert len(export_calls) == 1
    entries = list((private_cache / "ir").iterdir())

    second = load_engine(str(tiny_sparse_model), "openvino", "fp32")

    assert len(export_calls) == 1
    assert list((private_cache / "ir").iterdir()) == entries == [private_cache / "ir" / cache_key(local, False, 300)]
    example = EXAMPLES[0]
    assert second.answer(example["question"], example["passage"]).text == first.answer(
        example["question"], example["passage"]
    ).text


@pytest.mark.parametrize("damage", ["truncated bin", "missing marker", "missing xml"])
def test_a_damaged_cache_entry_is_detected_and_rebuilt(tiny_sparse_model, private_cache, export_calls, damage):
    local = resolve(str(tiny_sparse_model))
    tokenizer = runtimes._load_tokenizer(local)
    entry = ir_entry(local, tokenizer)
    weights = entry / "openvino_model.bin"
    intact_size = weights.stat().st_size
    if damage == "truncated bin":
        with open(weights, "r+b") as file:
            file.truncate(intact_size // 2)
    elif damage == "missing marker":
        (entry / COMPLETE_MARKER).unlink()
    else:
        (entry / "openvino_model.xml").unlink()

    rebuilt = ir_entry(local, tokenizer)

    assert rebuilt == entry
    assert len(export_calls) == 2
    assert weights.stat().st_size == intact_size
    assert (entry / COMPLETE_MARKER).is_file() and (entry / "openvino_model.xml").is_file()
    assert not [path for path in (private_cache / "ir").iterdir() if path != entry], "no staging leftovers"
    engine = load_engine(str(tiny_sparse_model), "openvino", "fp32")
    assert_valid_answer(engine.answer(EXAMPLES[0]["question"], EXAMPLES[0]["passage"]), EXAMPLES[0]["passage"])


def test_the_cache_key_changes_with_precision_revision_and_calibration(tiny_sparse_model):
    local = resolve(str(tiny_sparse_model))
    keys = {
        cache_key(local, False, 300),
        cache_key(local, True, 300),
        cache_key(local, True, 100),
        cache_key(replace(local, revision="0123456789ab"), False, 300),
    }
    assert len(keys) == 4
    assert cache_key(local, False, 300) == cache_key(local, False, 100), "fp32 IR does not depend on calibration"


def test_the_int8_cache_key_separates_forced_example_calibration_from_auto(tiny_sparse_model, monkeypatch):
    local = resolve(str(tiny_sparse_model))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("SPARSEQA_CALIBRATION", "examples")
    examples = cache_key(local, True, 300), cache_key(local, False, 300)
    monkeypatch.setenv("SPARSEQA_CALIBRATION", "auto")
    auto = cache_key(local, True, 300), cache_key(local, False, 300)
    assert examples[0] != auto[0]
    assert examples[1] == auto[1], "fp32 IR does not depend on calibration"


def test_an_int8_engine_says_what_it_was_calibrated_on(openvino_int8):
    example_count = len(EXAMPLES)
    [note] = [note for note in openvino_int8.notes if note.startswith("int8 calibrated on")]
    assert note.startswith(f"int8 calibrated on {example_count} bundled example pairs (")


def test_changed_model_files_get_a_new_revision(tmp_path, tiny_dense_model):
    copy = tmp_path / "model"
    copy.mkdir()
    for file in Path(tiny_dense_model).iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    before = resolve(str(copy)).revision

    config = copy / "config.json"
    config.write_text(config.read_text() + "\n")

    assert resolve(str(copy)).revision != before


def test_default_threads_is_a_positive_core_count():
    assert 1 <= runtimes.default_threads() <= (os.cpu_count() or 1)
