"""The service: input limits, timeouts, the comparison table and JSON, loading, and measurements that never overlap."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from sparseqa.decoding import InputError
from sparseqa.models import ModelLoadError, card_for
from sparseqa.service import TABLE_COLUMNS, Limits, QAService, Settings
from sparseqa.timing import MEASURE_LOCK, RequestTimeout

EXAMPLES = json.loads((Path(__file__).resolve().parent.parent / "assets" / "examples.json").read_text(encoding="utf-8"))
PASSAGE, QUESTION = EXAMPLES[0]["passage"], EXAMPLES[0]["question"]
ANSWER_KEYS = {"answer", "start", "end", "score", "latency_ms", "model", "runtime", "precision"}


@pytest.fixture(scope="module")
def service(tiny_sparse_model, tiny_dense_model) -> QAService:
    """The tiny sparse model on OpenVINO fp32 beside the tiny dense model on PyTorch fp32."""
    settings = Settings(model=str(tiny_sparse_model), dense_model=str(tiny_dense_model), precision="fp32")
    return QAService.load(settings, report=lambda line: None)


def with_limits(service: QAService, **limits) -> QAService:
    """The same loaded engines under other limits."""
    settings = replace(service.settings, limits=replace(service.settings.limits, **limits))
    return QAService(settings, service.sparse, service.dense)


def test_a_passage_over_the_limit_is_refused_naming_the_limit(service):
    limited = with_limits(service, max_passage_chars=100)
    with pytest.raises(InputError, match=r"the passage has 1,000 characters; the limit is 100: shorten it"):
        limited.ask("x" * 1000, QUESTION, runs=1)


def test_a_question_over_the_limit_is_refused_naming_the_limit(service):
    limited = with_limits(service, max_question_chars=20)
    with pytest.raises(InputError, match=r"the question has 30 characters; the limit is 20: shorten it"):
        limited.ask(PASSAGE, "q" * 30, runs=1)


@pytest.mark.parametrize("runs", [0, -1, 4])
def test_timed_runs_out_of_range_are_refused_naming_the_range(service, runs):
    limited = with_limits(service, max_runs=3)
    with pytest.raises(InputError, match="timed runs must be between 1 and 3"):
        limited.ask(PASSAGE, QUESTION, runs=runs)


def test_a_passage_needing_too_many_windows_is_refused_naming_the_limit(service):
    limited = with_limits(service, max_windows=1)
    long = EXAMPLES[10]
    with pytest.raises(InputError, match=r"needs 2 windows of 384 tokens and the limit is 1; shorten it"):
        limited.ask(long["passage"], long["question"], runs=1, warmup=0)


def test_limits_come_from_the_environment(monkeypatch):
    for variable, value in {
        "SPARSEQA_MAX_PASSAGE_CHARS": "1000",
        "SPARSEQA_MAX_WINDOWS": "4",
        "SPARSEQA_MAX_QUESTION_CHARS": "80",
        "SPARSEQA_MAX_RUNS": "5",
        "SPARSEQA_REQUEST_TIMEOUT_S": "2.5",
    }.items():
        monkeypatch.setenv(variable, value)

    assert Limits.from_env() == Limits(
        max_passage_chars=1000, max_windows=4, max_question_chars=80, max_runs=5, request_timeout_s=2.5
    )


def test_unset_or_empty_variables_keep_the_defaults(monkeypatch):
    monkeypatch.delenv("SPARSEQA_MAX_PASSAGE_CHARS", raising=False)
    monkeypatch.setenv("SPARSEQA_MAX_RUNS", "")
    assert Limits.from_env() == Limits()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SPARSEQA_MAX_RUNS", "ten", "SPARSEQA_MAX_RUNS='ten' is not a positive whole number: fix or unset it"),
        ("SPARSEQA_MAX_WINDOWS", "0", "SPARSEQA_MAX_WINDOWS='0' is not a positive whole number: fix or unset it"),
        ("SPARSEQA_MAX_PASSAGE_CHARS", "2.5", "SPARSEQA_MAX_PASSAGE_CHARS='2.5' is not a positive whole number"),
        ("SPARSEQA_REQUEST_TIMEOUT_S", "-1", "SPARSEQA_REQUEST_TIMEOUT_S='-1' is not a positive number of seconds"),
        ("SPARSEQA_REQUEST_TIMEOUT_S", "nan", "SPARSEQA_REQUEST_TIMEOUT_S='nan' is not a positive number of seconds"),
    ],
)
def test_a_bad_limit_in_the_environment_names_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as error:
        Limits.from_env()
    assert str(error.value).startswith(message)


def test_a_request_over_its_time_limit_raises_request_timeout(service):
    limited = with_limits(service, request_timeout_s=1e-6)
    with pytest.raises(RequestTimeout, match="use fewer timed runs or a shorter passage"):
        limited.ask(PASSAGE, QUESTION, runs=3)


def test_waiting_behind_another_measurement_is_bounded_by_the_time_limit(service):
    limited = with_limits(service, request_timeout_s=0.5)
    with MEASURE_LOCK:
        with pytest.raises(RequestTimeout, match="other requests kept the machine busy"):
            limited.ask(PASSAGE, QUESTION, runs=1)


def test_the_comparison_table_has_a_row_per_model_and_the_dense_speedup_is_one(service):
    comparison = service.ask(PASSAGE, QUESTION, runs=2, warmup=1)
    table = comparison.table()

    assert list(table.columns) == TABLE_COLUMNS
    dense, sparse = table.to_dict(orient="records")
    assert (dense["model"], dense["runtime"], dense["precision"]) == (
        card_for(comparison.dense.model).label,
        "pytorch",
        "fp32",
    )
    assert (sparse["runtime"], sparse["precision"]) == ("openvino", "fp32")
    assert (dense["kernels"], sparse["kernels"]) == ("pytorch", "openvino")
    assert dense["speedup vs dense PyTorch"] == 1.0
    expected = comparison.dense_latency.median_ms / comparison.sparse_latency.median_ms
    assert sparse["speedup vs dense PyTorch"] == round(expected, 2)
    assert comparison.speedup == pytest.approx(expected)
    assert sparse["tokens"] == comparison.sparse.tokens
    assert sparse["median ms"] == round(comparison.sparse_latency.median_ms, 1)
    assert comparison.sparse_latency.runs == comparison.dense_latency.runs == 2


def test_as_dict_holds_the_sparse_answer_the_dense_answer_and_the_speedup(service):
    comparison = service.ask(PASSAGE, QUESTION, runs=2, warmup=0)
    result = comparison.as_dict()

    assert ANSWER_KEYS | {"dense", "speedup", "agree"} <= set(result)
    assert ANSWER_KEYS <= set(result["dense"])
    assert PASSAGE[result["start"] : result["end"]] == result["answer"]
    assert PASSAGE[result["dense"]["start"] : result["dense"]["end"]] == result["dense"]["answer"]
    assert result["latency_ms"] == comparison.sparse_latency.median_ms
    assert result["dense"]["latency_ms"] == comparison.dense_latency.median_ms
    assert result["speedup"] == pytest.approx(result["dense"]["latency_ms"] / result["latency_ms"])
    assert result["agree"] == ((result["start"], result["end"]) == (result["dense"]["start"], result["dense"]["end"]))
    assert json.loads(json.dumps(result)) == result


def test_the_service_answer_is_the_engines_answer(service):
    comparison = service.ask(PASSAGE, QUESTION, runs=1, warmup=0)
    direct = service.sparse.answer(QUESTION, PASSAGE)

    assert (comparison.sparse.text, comparison.sparse.start, comparison.sparse.end) == (
        direct.text,
        direct.start,
        direct.end,
    )
    assert comparison.sparse.score == pytest.approx(direct.score, rel=1e-5)


def test_without_the_dense_model_there_is_no_speedup(service):
    alone = QAService(service.settings, service.sparse, None)
    comparison = alone.ask(PASSAGE, QUESTION, runs=1, warmup=0)

    assert comparison.speedup is None and comparison.agree is None
    assert not {"dense", "speedup", "agree"} & set(comparison.as_dict())
    table = comparison.table()
    assert len(table) == 1 and table["speedup vs dense PyTorch"].isna().all()


def test_requests_from_several_threads_get_the_sequential_answers(service, run_together):
    cases = [(example["passage"], example["question"]) for example in EXAMPLES[:4]]
    expected = [service.ask(passage, question, runs=1, warmup=0).sparse for passage, question in cases]

    results = run_together([lambda case=case: service.ask(*case, runs=1, warmup=0).sparse for case in cases])

    assert [(answer.start, answer.end) for answer in results] == [(answer.start, answer.end) for answer in expected]


def test_a_model_that_cannot_load_is_kept_as_the_load_error_when_not_strict(tiny_sparse_model, tmp_path):
    settings = Settings(model=str(tmp_path / "missing-model"), dense_model=None)

    with pytest.raises(ModelLoadError, match="could not load .*missing-model"):
        QAService.load(settings, report=lambda line: None)
    service = QAService.load(settings, report=lambda line: None, strict=False)

    assert service.sparse is None
    assert service.load_error.startswith("could not load") and "--synthetic" in service.load_error
    with pytest.raises(RuntimeError, match="could not load"):
        service.ask(PASSAGE, QUESTION, runs=1)


def test_the_sparse_models_precision_defaults_to_its_runtimes():
    assert (Settings().runtime, Settings().precision) == ("openvino", "int8")
    assert Settings(runtime="pytorch").precision == "fp32"
    assert Settings(runtime="pytorch", precision="bf16").precision == "bf16"
