"""The ``eval`` and ``score`` commands end to end, each run as a user runs it: ``python -m sparseqa`` in a subprocess.

The tiny models have random weights, so their EM/F1 are meaningless; these tests pin down the plumbing: what eval
prints, writes and saves agrees with itself and with ``score``, and every answer is a span of its passage.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from sparseqa.cli import main
from sparseqa.decoding import RUN_QA_NO_SPAN
from sparseqa.evaluate import latest_result, load_squad

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
TINY = DATA / "squad_tiny.json"
TINY_PREDICTIONS = DATA / "squad_tiny_predictions.json"

# Hand-computed in tests/test_evaluate.py::test_tiny_predictions_hand_computed.
TINY_EXACT_MATCH = 50.0
TINY_F1 = float(Fraction(38, 55) * 100)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m sparseqa ARGS`` from the repository root; the timeout only guards against a hang."""
    return subprocess.run(
        [sys.executable, "-m", "sparseqa", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def printed_value(stdout: str, label: str) -> float:
    match = re.search(rf"^\s*{re.escape(label)}\s+([0-9.]+)", stdout, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{stdout}"
    return float(match.group(1))


# ---- score ------------------------------------------------------------------------------------------------------


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI's ``main`` in this process (for the cases that need no process of their own): code, stdout, stderr."""
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, stderr: str, *fragments: str) -> None:
    assert code == 1, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_score_json_equals_the_hand_computed_scores():
    result = run_cli("score", "--data", str(TINY), "--predictions", str(TINY_PREDICTIONS), "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["exact_match"] == pytest.approx(TINY_EXACT_MATCH, abs=1e-9)
    assert scores["f1"] == pytest.approx(TINY_F1, abs=1e-9)
    assert (scores["n"], scores["missing"], scores["unknown_ids"]) == (8, 1, 0)


def test_score_prints_the_hand_computed_scores(capsys):
    code, out, _ = run_main(capsys, "score", "--data", str(TINY), "--predictions", str(TINY_PREDICTIONS))
    assert code == 0
    assert printed_value(out, "exact match") == pytest.approx(TINY_EXACT_MATCH, abs=0.005)
    assert printed_value(out, "F1") == pytest.approx(TINY_F1, abs=0.005)
    assert "questions    8 (1 without a prediction, scored 0)" in out
    assert "note:" not in out


def test_score_notes_prediction_ids_that_are_not_in_the_data(capsys, tmp_path):
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps({"tiny-q1": "Tamsin", "dev-0042": "x"}), encoding="utf-8")
    code, out, _ = run_main(capsys, "score", "--data", str(TINY), "--predictions", str(predictions))
    assert code == 0
    assert "note: 1 prediction ids are not in" in out
    assert printed_value(out, "exact match") == pytest.approx(100 / 8, abs=0.005)


@pytest.mark.parametrize(
    ("data", "predictions", "fragments"),
    [
        (TINY, "absent.json", ["cannot read", "absent.json"]),
        (TINY, "broken.json", ["broken.json", "not valid JSON"]),
        (TINY, "list.json", ["list.json", "top level is a JSON list"]),
        (TINY, "number.json", ["number.json", "'tiny-q1'", "not text"]),
        ("dev.json", TINY_PREDICTIONS, ["cannot read", "dev.json", "SQuAD v1.1"]),
        (TINY_PREDICTIONS, TINY_PREDICTIONS, ["squad_tiny_predictions.json", "'data'"]),
    ],
)
def test_score_bad_files_give_one_line_errors(capsys, tmp_path, data, predictions, fragments):
    (tmp_path / "broken.json").write_text('{"tiny-q1": ', encoding="utf-8")
    (tmp_path / "list.json").write_text('["Tamsin"]', encoding="utf-8")
    (tmp_path / "number.json").write_text('{"tiny-q1": 1783}', encoding="utf-8")
    code, _, err = run_main(
        capsys, "score", "--data", str(tmp_path / data), "--predictions", str(tmp_path / predictions)
    )
    assert_one_line_error(code, err, *fragments)


# ---- eval -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_eval(tiny_sparse_model, tmp_path_factory):
    """One eval run of the tiny sparse model on the tiny fixture, and what it wrote and saved."""
    out = tmp_path_factory.mktemp("eval")
    result = run_cli(
        "eval",
        "--model", str(tiny_sparse_model),
        "--runtime", "openvino",
        "--precision", "fp32",
        "--data", str(TINY),
        "--json", str(out / "result.json"),
        "--predictions-out", str(out / "pred.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Read right away: later tests save results for the same model too.
    saved = latest_result(str(tiny_sparse_model))
    return {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "summary": json.loads((out / "result.json").read_text(encoding="utf-8")),
        "predictions_path": out / "pred.json",
        "predictions": json.loads((out / "pred.json").read_text(encoding="utf-8")),
        "saved": saved,
    }


def test_eval_prints_what_it_writes_as_json(tiny_eval, tiny_sparse_model):
    summary = tiny_eval["summary"]
    assert summary["n"] == 8
    assert (summary["runtime"], summary["precision"], summary["decoding"]) == ("openvino", "fp32", "run_qa")
    assert summary["model"] == str(tiny_sparse_model.resolve())
    assert summary["data"] == str(TINY)
    assert summary["synthetic"] is False
    assert summary["questions_per_second"] > 0
    assert printed_value(tiny_eval["stdout"], "exact match") == pytest.approx(summary["exact_match"], abs=0.005)
    assert printed_value(tiny_eval["stdout"], "F1") == pytest.approx(summary["f1"], abs=0.005)
    assert printed_value(tiny_eval["stdout"], "questions") == 8
    assert re.search(r"speed\s+[0-9.]+ questions/s", tiny_eval["stdout"])
    assert "8/8" in tiny_eval["stderr"]  # the progress bar went to stderr and finished


def test_eval_predictions_are_spans_of_their_passages_or_run_qas_no_span_answer(tiny_eval):
    questions = load_squad(TINY)
    predictions = tiny_eval["predictions"]
    assert set(predictions) == {question.id for question in questions}
    for question in questions:
        assert predictions[question.id]
        assert predictions[question.id] in question.context or predictions[question.id] == RUN_QA_NO_SPAN
    no_span = sum(text == RUN_QA_NO_SPAN for text in predictions.values())
    assert tiny_eval["summary"]["no_span"] == no_span
    assert ("no span      " in tiny_eval["stdout"]) == (no_span > 0)


def test_eval_predictions_scored_by_score_give_the_printed_scores(tiny_eval, capsys):
    code, out, _ = run_main(
        capsys, "score", "--data", str(TINY), "--predictions", str(tiny_eval["predictions_path"]), "--json"
    )
    assert code == 0
    scores = json.loads(out)
    assert scores["exact_match"] == pytest.approx(tiny_eval["summary"]["exact_match"], abs=1e-9)
    assert scores["f1"] == pytest.approx(tiny_eval["summary"]["f1"], abs=1e-9)
    assert scores["missing"] == 0


def test_latest_result_returns_what_eval_saved(tiny_eval):
    assert tiny_eval["saved"] == tiny_eval["summary"]


def test_eval_with_demo_decoding_on_pytorch_runs_fp32_and_writes_the_demos_answers(tiny_sparse_model, tmp_path):
    from sparseqa.runtimes import load_engine

    result = run_cli(
        "eval", "--model", str(tiny_sparse_model), "--runtime", "pytorch", "--decoding", "demo",
        "--data", str(TINY), "--json", str(tmp_path / "result.json"), "--predictions-out", str(tmp_path / "pred.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    summary = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert (summary["runtime"], summary["precision"], summary["decoding"]) == ("pytorch", "fp32", "demo")
    assert "pytorch fp32 on" in result.stdout and "demo decoding" in result.stdout
    engine = load_engine(str(tiny_sparse_model), "pytorch", "fp32")
    expected = {q.id: engine.answer(q.question, q.context).text for q in load_squad(TINY)}
    assert json.loads((tmp_path / "pred.json").read_text(encoding="utf-8")) == expected


def test_compare_prints_the_four_configurations(tiny_sparse_model_1x4, tiny_dense_model, tmp_path):
    out = tmp_path / "compare.json"
    result = run_cli(
        "eval", "--compare",
        "--model", str(tiny_sparse_model_1x4),
        "--dense-model", str(tiny_dense_model),
        "--data", str(TINY),
        "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.strip().startswith("configuration"))
    for column in ("EM", "F1", "agreement with sparse fp32 (%)", "median ms per question"):
        assert column in header
    rows = lines[lines.index(header) + 1 : lines.index(header) + 5]
    labels = [row.split("·")[0].strip() for row in rows]
    assert labels == [tiny_dense_model.name] + [tiny_sparse_model_1x4.name] * 3
    assert ["pytorch fp32" in rows[0], "openvino fp32" in rows[1], "openvino int8" in rows[2]] == [True] * 3
    assert "openvino int8 · sparseqa kernels" in rows[3] and "sparseqa" not in rows[2]

    written = json.loads(out.read_text(encoding="utf-8"))
    configurations = [(c["model"], c["runtime"], c["precision"], c["kernels"]) for c in written["configurations"]]
    assert configurations == [
        (str(tiny_dense_model.resolve()), "pytorch", "fp32", "pytorch"),
        (str(tiny_sparse_model_1x4.resolve()), "openvino", "fp32", "openvino"),
        (str(tiny_sparse_model_1x4.resolve()), "openvino", "int8", "openvino"),
        (str(tiny_sparse_model_1x4.resolve()), "openvino", "int8", "sparseqa"),
    ]
    assert written["configurations"][1]["agreement"] == 100.0
    assert all(0.0 <= c["agreement"] <= 100.0 for c in written["configurations"])
    # The table shows the JSON's numbers.
    for row, configuration in zip(rows, written["configurations"]):
        em, f1, agreement, median_ms = (float(value) for value in row.split()[-4:])
        assert em == pytest.approx(configuration["exact_match"], abs=0.005)
        assert f1 == pytest.approx(configuration["f1"], abs=0.005)
        assert agreement == pytest.approx(configuration["agreement"], abs=0.005)
        assert median_ms == pytest.approx(configuration["median_latency_ms"], abs=0.05)
    # Every configuration was saved for the web page.
    assert latest_result(str(tiny_dense_model))["runtime"] == "pytorch"
    int8 = latest_result(str(tiny_sparse_model_1x4), precision="int8")
    assert int8["exact_match"] == written["configurations"][2]["exact_match"]


def test_eval_hub_offline_gives_one_line_error(tiny_sparse_model, tmp_path):
    # A private HF_HOME: no cached copy of SQuAD can make this pass by accident.
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_DATASETS_OFFLINE", None)
    result = run_cli("eval", "--model", str(tiny_sparse_model), "--hub", env=env)
    assert_one_line_error(
        result.returncode,
        result.stderr,
        "could not load the SQuAD v1.1 validation split from the Hugging Face hub",
        "HF_HUB_OFFLINE is set and the local datasets cache has no usable copy",
        "--data FILE.json",
    )


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--compare", "--precision", "int8"], "drop --runtime/--precision"),
        (["--compare", "--predictions-out", "pred.json"], "--predictions-out writes one configuration"),
        (["--dense-model", "x"], "--dense-model is only used with --compare"),
        (["--runtime", "pytorch", "--precision", "int8"], "int8 runs on OpenVINO only"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--json", "no-such-dir/out.json"], "its directory does not exist"),
        (["--synthetic", "--model", "x"], "exclude each other"),
    ],
)
def test_eval_refuses_options_that_do_not_fit_together(capsys, options, fragment):
    code, out, err = run_main(capsys, "eval", "--data", str(TINY), *options)
    assert code == 2
    assert fragment in err
    assert out == ""


def test_eval_bad_data_gives_one_line_error_before_loading_a_model(capsys, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"version": "1.1", "data": []}), encoding="utf-8")
    # A model that could not be loaded: the data error must come first.
    model = str(tmp_path / "no-model")
    code, _, err = run_main(capsys, "eval", "--model", model, "--data", str(empty))
    assert_one_line_error(code, err, "has no questions")
    code, _, err = run_main(capsys, "eval", "--model", model, "--data", str(TINY_PREDICTIONS))
    assert_one_line_error(code, err, "'data'", "SQuAD v1.1")
