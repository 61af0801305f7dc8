"""Tests for sparseqa.evaluate: SQuAD v1.1 metrics and loading, the eval loop, saved results."""

from __future__ import annotations

import http.server
import json
import os
import re
import string
import sys
import tempfile
import threading
import types
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparseqa.decoding import RUN_QA_NO_SPAN
from sparseqa.evaluate import (
    COMPARE_COLUMNS,
    SYNTHETIC_EVAL_NOTE,
    EvalRun,
    SquadQuestion,
    compare_table,
    evaluate_engine,
    exact_match_score,
    f1_score,
    latest_result,
    load_hub_squad,
    load_squad,
    metric_max_over_ground_truths,
    model_key,
    normalize_answer,
    results_dir,
    save_result,
    score_predictions,
)
from sparseqa.models import DENSE_ID, SPARSE_ID

DATA = Path(__file__).parent / "data"
TINY = DATA / "squad_tiny.json"
TINY_PREDICTIONS = DATA / "squad_tiny_predictions.json"


# --------------------------------------------------------------------------
# Oracle: transcription of the official SQuAD v1.1 evaluate.py
# (normalize_answer, f1_score, exact_match_score,
# metric_max_over_ground_truths, evaluate). Kept independent of sparseqa.
# --------------------------------------------------------------------------


def _ref_normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def _ref_f1_score(prediction, ground_truth):
    prediction_tokens = _ref_normalize_answer(prediction).split()
    ground_truth_tokens = _ref_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def _ref_exact_match_score(prediction, ground_truth):
    return _ref_normalize_answer(prediction) == _ref_normalize_answer(ground_truth)


def _ref_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def _ref_evaluate(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    # Official script prints "Unanswered question ... will receive score 0."
                    continue
                ground_truths = list(map(lambda x: x["text"], qa["answers"]))
                prediction = predictions[qa["id"]]
                exact_match += _ref_metric_max_over_ground_truths(
                    _ref_exact_match_score, prediction, ground_truths
                )
                f1 += _ref_metric_max_over_ground_truths(_ref_f1_score, prediction, ground_truths)

    exact_match = 100.0 * exact_match / total
    f1 = 100.0 * f1 / total

    return {"exact_match": exact_match, "f1": f1}


# --------------------------------------------------------------------------
# Hand-computed scores for the tiny fixture
# --------------------------------------------------------------------------


def test_tiny_fixture_loads():
    questions = load_squad(TINY)
    assert [q.id for q in questions] == [f"tiny-q{i}" for i in range(1, 9)]
    q1 = questions[0]
    assert q1.question == "Which river runs through Harlow Cross?"
    assert q1.answers == ("the river Tamsin", "Tamsin")
    assert q1.context.startswith("Harlow Cross is a market town")
    assert questions[6].answers == ("St. Albans,", "St. Albans, Hertfordshire")
    # Gold answers are real spans of their context.
    raw = json.loads(TINY.read_text(encoding="utf-8"))
    for article in raw["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                for ans in qa["answers"]:
                    start = ans["answer_start"]
                    assert paragraph["context"][start : start + len(ans["text"])] == ans["text"]


def test_tiny_predictions_hand_computed():
    questions = load_squad(TINY)
    predictions = json.loads(TINY_PREDICTIONS.read_text(encoding="utf-8"))

    # Per question (normalized prediction vs. best normalized gold):
    # q1 "river tamsin" vs "river tamsin" (article dropped)          EM 1  F1 1
    # q2 "about 42 kilometres" vs "42 kilometres": common 2,
    #    P = 2/3, R = 2/2, F1 = 2*(2/3)/(5/3) = 4/5;
    #    vs "42 kilometres north of st albans": P = 2/3, R = 2/6,
    #    F1 = 2*(2/9)/(1) = 4/9; max = 4/5                           EM 0  F1 4/5
    # q3 missing from predictions                                    EM 0  F1 0
    # q4 "wild yeast and lacticacid bacteria" (hyphen removed, words
    #    joined) vs "wild yeast and lactic acid bacteria": common 4
    #    (wild, yeast, and, bacteria), P = 4/5, R = 4/6,
    #    F1 = 2*(8/15)/(22/15) = 8/11 (both golds normalize alike)   EM 0  F1 8/11
    # q5 "250 degrees celsius" (trailing "." dropped)                EM 1  F1 1
    # q6 "ada pennington" (casing only)                              EM 1  F1 1
    # q7 "st albans" vs gold "St. Albans," -> "st albans"            EM 1  F1 1
    # q8 "1984" vs "64 kb" / "64 kb of memory": no common token      EM 0  F1 0
    #
    # EM = 4/8 = 50%.
    # F1 = (1 + 4/5 + 0 + 8/11 + 1 + 1 + 1 + 0) / 8
    #    = (4 + 44/55 + 40/55) / 8 = (304/55) / 8 = 38/55 = 69.0909...%
    per_question_f1 = {
        "tiny-q1": Fraction(1),
        "tiny-q2": Fraction(4, 5),
        "tiny-q3": Fraction(0),
        "tiny-q4": Fraction(8, 11),
        "tiny-q5": Fraction(1),
        "tiny-q6": Fraction(1),
        "tiny-q7": Fraction(1),
        "tiny-q8": Fraction(0),
    }
    per_question_em = {"tiny-q1": 1, "tiny-q5": 1, "tiny-q6": 1, "tiny-q7": 1}
    for q in questions:
        pred = predictions.get(q.id)
        f1 = 0.0 if pred is None else metric_max_over_ground_truths(f1_score, pred, q.answers)
        em = False if pred is None else metric_max_over_ground_truths(exact_match_score, pred, q.answers)
        assert f1 == pytest.approx(float(per_question_f1[q.id]), abs=1e-9), q.id
        assert int(em) == per_question_em.get(q.id, 0), q.id

    result = score_predictions(questions, predictions)
    assert result["n"] == 8
    assert result["missing"] == 1
    assert result["exact_match"] == pytest.approx(50.0, abs=1e-9)
    assert result["f1"] == pytest.approx(100 * 38 / 55, abs=1e-9)
    assert result["f1"] == pytest.approx(69.0909090909, abs=1e-9)

    # And the official-script oracle agrees on the fixture.
    ref = _ref_evaluate(json.loads(TINY.read_text(encoding="utf-8"))["data"], predictions)
    assert result["exact_match"] == pytest.approx(ref["exact_match"], abs=1e-9)
    assert result["f1"] == pytest.approx(ref["f1"], abs=1e-9)


def test_score_predictions_ignores_extra_ids_and_counts_missing():
    questions = [
        SquadQuestion("a", "q?", "ctx", ("Paris",)),
        SquadQuestion("b", "q?", "ctx", ("the Seine", "Seine river")),
    ]
    result = score_predictions(questions, {"a": "paris", "zzz": "whatever"})
    assert result == {"exact_match": 50.0, "f1": 50.0, "n": 2, "missing": 1}
    assert score_predictions(questions, {}) == {"exact_match": 0.0, "f1": 0.0, "n": 2, "missing": 2}
    assert score_predictions([], {"a": "x"}) == {"exact_match": 0.0, "f1": 0.0, "n": 0, "missing": 0}


# --------------------------------------------------------------------------
# normalize_answer / f1 / EM edge cases
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("   ", ""),
        ("The", ""),
        (" A  an THE ", ""),
        ("the river Tamsin", "river tamsin"),
        ("St. Albans,", "st albans"),
        # Articles only as whole words.
        ("theatre anthem Ann", "theatre anthem ann"),
        # Punctuation is deleted, not replaced by a space, and it goes before
        # article removal: "the-end" becomes one token "theend".
        ("lactic-acid", "lacticacid"),
        ("the-end", "theend"),
        ("(the) end", "end"),
        ("don't", "dont"),
        ("1,000.5", "10005"),
        ("\t New\nYork \u00a0", "new york"),
        ("ÁNGEL Ørsted", "ángel ørsted"),
        # Only ASCII string.punctuation is removed; curly quotes and dashes stay.
        ("\u201cquoted\u201d \u2014 x", "\u201cquoted\u201d \u2014 x"),
        ("a.b", "ab"),
        ("An apple a day", "apple day"),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected
    assert normalize_answer(text) == _ref_normalize_answer(text)


def test_f1_and_em_edge_cases():
    assert f1_score("", "") == 0.0  # official quirk: no common tokens -> 0
    assert exact_match_score("", "") is True
    assert exact_match_score("The", "an") is True
    assert f1_score("the", "Paris") == 0.0
    assert f1_score("Paris", "") == 0.0
    assert f1_score("Tamsin River", "the river Tamsin") == 1.0  # bag of tokens
    assert exact_match_score("Tamsin River", "the river Tamsin") is False
    # Articles vanish before counting: "b" vs "b b" -> P = 1, R = 1/2, F1 = 2/3.
    assert f1_score("a a b", "a b b") == pytest.approx(2 / 3, abs=1e-9)
    # Counter intersection counts repeated tokens at most min(count) times.
    assert f1_score("x x y", "x y y") == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    assert metric_max_over_ground_truths(f1_score, "42 km", ["km", "42 km", "x"]) == 1.0
    assert metric_max_over_ground_truths(exact_match_score, "x", ["y", "z"]) is False


# --------------------------------------------------------------------------
# Property test against the official-script oracle
# --------------------------------------------------------------------------

_WORDS = [
    "the", "The", "THE", "a", "A", "an", "An", "river", "Tamsin", "St.", "Albans,",
    "42", "1,000", "1783", "km", "well-known", "don't", "x", "x", "(b)", "!", "--",
    "\u00e9t\u00e9", "\u201cq\u201d", "  ", "\t", "\n", "theatre",
]
_token = st.one_of(
    st.sampled_from(_WORDS),
    st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ", max_size=6),
    st.text(max_size=4),
)
_answer = st.lists(_token, min_size=0, max_size=5).map(" ".join)


@st.composite
def _mutated(draw, gold):
    """A prediction derived from a gold answer by random token edits."""
    tokens = gold.split(" ")
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "case", "punct", "swap"]))
        if op == "insert":
            tokens.insert(draw(st.integers(0, len(tokens))), draw(_token))
        elif tokens and op == "delete":
            del tokens[draw(st.integers(0, len(tokens) - 1))]
        elif tokens and op == "replace":
            tokens[draw(st.integers(0, len(tokens) - 1))] = draw(_token)
        elif tokens and op == "case":
            i = draw(st.integers(0, len(tokens) - 1))
            tokens[i] = draw(st.sampled_from([str.upper, str.lower, str.title]))(tokens[i])
        elif tokens and op == "punct":
            i = draw(st.integers(0, len(tokens) - 1))
            tokens[i] += draw(st.sampled_from(list(".,;:!?'\"-")))
        elif len(tokens) > 1 and op == "swap":
            i = draw(st.integers(0, len(tokens) - 1))
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
    return " ".join(tokens)


@st.composite
def _dataset_and_predictions(draw):
    data = []
    predictions = {}
    qid = 0
    for _ in range(draw(st.integers(1, 2))):
        paragraphs = []
        for _ in range(draw(st.integers(1, 2))):
            qas = []
            for _ in range(draw(st.integers(1, 3))):
                qid += 1
                golds = draw(st.lists(_answer, min_size=1, max_size=3))
                qas.append(
                    {
                        "id": f"q{qid}",
                        "question": "q?",
                        "answers": [{"text": g, "answer_start": 0} for g in golds],
                    }
                )
                kind = draw(st.sampled_from(["mutated", "mutated", "exact", "random", "missing"]))
                if kind == "exact":
                    predictions[f"q{qid}"] = draw(st.sampled_from(golds))
                elif kind == "mutated":
                    predictions[f"q{qid}"] = draw(_mutated(draw(st.sampled_from(golds))))
                elif kind == "random":
                    predictions[f"q{qid}"] = draw(_answer)
            paragraphs.append({"context": "c", "qas": qas})
        data.append({"title": "t", "paragraphs": paragraphs})
    if draw(st.booleans()):
        predictions["not-in-data"] = draw(_answer)
    return data, predictions


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_dataset_and_predictions())
def test_score_predictions_matches_official_script(case):
    data, predictions = case
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "d.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"version": "1.1", "data": data}, f)
        questions = load_squad(path)

    ref = _ref_evaluate(data, predictions)
    got = score_predictions(questions, predictions)
    n = sum(len(p["qas"]) for a in data for p in a["paragraphs"])
    assert got["n"] == n
    assert got["missing"] == sum(
        qa["id"] not in predictions for a in data for p in a["paragraphs"] for qa in p["qas"]
    )
    assert got["exact_match"] == pytest.approx(ref["exact_match"], abs=1e-9)
    assert got["f1"] == pytest.approx(ref["f1"], abs=1e-9)


# --------------------------------------------------------------------------
# load_squad errors
# --------------------------------------------------------------------------


def test_load_squad_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_squad(path)
    message = str(info.value)
    assert "not valid JSON" in message
    assert "broken.json" in message
    assert "\n" not in message


def test_load_squad_missing_data_key(tmp_path):
    path = tmp_path / "nodata.json"
    path.write_text(json.dumps({"version": "1.1", "articles": []}), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_squad(path)
    message = str(info.value)
    assert "'data'" in message
    assert "SQuAD v1.1" in message
    assert "nodata.json" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("payload", "fragments"),
    [
        ([1, 2], ["top level", "JSON object"]),
        ({"data": {}}, ['"data"', "JSON list"]),
        ({"data": [{}]}, ["data[0]", "'paragraphs'"]),
        ({"data": [{"paragraphs": [{"qas": []}]}]}, ["data[0].paragraphs[0]", "'context'"]),
        (
            {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x", "question": "q"}]}]}]},
            ["qas[0]", "'answers'"],
        ),
        (
            {"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q", "answers": []}]}]}]},
            ["qas[0]", "'id'"],
        ),
        (
            {"data": [{"paragraphs": [{"context": "c", "qas": [
                {"id": "x", "question": "q", "answers": [{"answer_start": 0}]}]}]}]},
            ["answers[0]", "'text'"],
        ),
    ],
)
def test_load_squad_format_errors_name_the_problem(tmp_path, payload, fragments):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_squad(path)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message


# --------------------------------------------------------------------------
# load_hub_squad failure paths (no network needed)
# --------------------------------------------------------------------------


def test_load_hub_squad_without_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(RuntimeError) as info:
        load_hub_squad()
    message = str(info.value)
    assert message.startswith(
        "could not load the SQuAD v1.1 validation split from the Hugging Face hub ("
    )
    assert message.endswith("); pass --data FILE.json with a local copy of dev-v1.1.json")
    assert "datasets" in message
    assert "\n" not in message


def test_load_hub_squad_network_failure(monkeypatch):
    fake = types.ModuleType("datasets")

    def load_dataset(name, split):
        raise ConnectionError("Couldn't reach\n'squad' on the Hub")

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(RuntimeError) as info:
        load_hub_squad()
    message = str(info.value)
    assert "ConnectionError" in message
    assert "--data FILE.json" in message
    assert "\n" not in message


def test_load_hub_squad_converts_rows(monkeypatch):
    fake = types.ModuleType("datasets")
    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        return [
            {
                "id": "h1",
                "title": "T",
                "context": "Kestrel flies.",
                "question": "What flies?",
                "answers": {"text": ["Kestrel", "Kestrel"], "answer_start": [0, 0]},
            }
        ]

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert load_hub_squad() == [SquadQuestion("h1", "What flies?", "Kestrel flies.", ("Kestrel", "Kestrel"))]
    assert calls == [("squad", "validation")]


# --------------------------------------------------------------------------
# load_hub_squad: offline variables and the reachability probe
# --------------------------------------------------------------------------


@pytest.fixture
def recording_datasets(monkeypatch):
    """A stand-in ``datasets`` whose load_dataset records its calls and fails as an offline cache miss does."""
    fake = types.ModuleType("datasets")
    fake.calls = []

    def load_dataset(name, split):
        fake.calls.append((name, split))
        raise ConnectionError("Couldn't reach 'squad' on the Hub (OfflineModeIsEnabled)")

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    return fake


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)


def _closed_endpoint(monkeypatch):
    from huggingface_hub import constants

    # Port 9 (discard) has no listener here: the connection is refused at once.
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")


def test_load_hub_squad_unreachable_hub_fails_before_datasets_retries(monkeypatch, online, recording_datasets):
    _closed_endpoint(monkeypatch)
    with pytest.raises(RuntimeError) as info:
        load_hub_squad()
    message = str(info.value)
    assert "the hub is not reachable: ConnectError" in message
    assert "set HF_DATASETS_OFFLINE=1" in message
    assert "--data FILE.json" in message
    assert "\n" not in message
    assert recording_datasets.calls == []


def test_load_hub_squad_reachable_hub_goes_to_datasets(monkeypatch, online, recording_datasets):
    from huggingface_hub import constants

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(RuntimeError) as info:
            load_hub_squad()
    finally:
        thread.join(timeout=10)
        server.server_close()
    assert recording_datasets.calls == [("squad", "validation")]
    assert "(ConnectionError: Couldn't reach 'squad'" in str(info.value)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set and the local datasets cache has no usable copy"),
        ({"HF_DATASETS_OFFLINE": "TRUE"}, "HF_DATASETS_OFFLINE is set and the local datasets cache has no usable copy"),
        # datasets lets HF_DATASETS_OFFLINE override HF_HUB_OFFLINE either way.
        ({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "0"}, "the hub is not reachable"),
    ],
)
def test_load_hub_squad_offline_variables(monkeypatch, online, recording_datasets, environment, expected):
    _closed_endpoint(monkeypatch)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError) as info:
        load_hub_squad()
    assert expected in str(info.value)


# --------------------------------------------------------------------------
# The eval loop, saved results and latest_result
# --------------------------------------------------------------------------


def _run(model="m", runtime="openvino", precision="fp32", spans=None, synthetic=False, **fields) -> EvalRun:
    spans = {"q1": (0, 4), "q2": (5, 9), "q3": (10, 12), "q4": (0, 2)} if spans is None else spans
    values = dict(
        model=model,
        runtime=runtime,
        precision=precision,
        decoding="run_qa",
        threads=2,
        data="d.json",
        date="2026-01-01T00:00:00+00:00",
        exact_match=50.0,
        f1=60.0,
        n=4,
        unanswered=0,
        no_span=0,
        questions_per_second=10.0,
        median_latency_ms=100.0,
        synthetic=synthetic,
        predictions={qid: "text" for qid in ("q1", "q2", "q3", "q4")},
        spans=spans,
    )
    return EvalRun(**(values | fields))


def test_agreement_counts_identical_spans_and_shared_non_answers():
    reference = _run()
    assert reference.agreement(reference) == 100.0
    other = _run(spans={"q1": (0, 4), "q2": (5, 8), "q3": (10, 12)})  # q4 unanswered
    assert other.agreement(reference) == 50.0
    assert _run(spans={"q1": (0, 4), "q2": (5, 9), "q3": (10, 12)}).agreement(other) == 75.0


def test_summary_of_a_synthetic_run_says_the_scores_are_meaningless():
    assert "note" not in _run().summary()
    summary = _run(synthetic=True).summary()
    assert summary["note"] == SYNTHETIC_EVAL_NOTE
    assert "meaningless" in summary["note"]
    assert "predictions" not in summary and "spans" not in summary


def test_compare_table_rows(tmp_path):
    reference = _run(model=SPARSE_ID)
    runs = [
        _run(model=DENSE_ID, runtime="pytorch", spans={}, exact_match=80.91234, median_latency_ms=200.04),
        reference,
        _run(model=SPARSE_ID, precision="int8", spans={"q1": (0, 4)}),
    ]
    table = compare_table(runs, reference)
    assert list(table.columns) == COMPARE_COLUMNS
    assert table["configuration"].tolist() == [
        "dense · pytorch fp32",
        "sparse 80% Prune OFA · openvino fp32",
        "sparse 80% Prune OFA · openvino int8",
    ]
    assert table["EM"].tolist() == [80.91, 50.0, 50.0]
    assert table["agreement with sparse fp32 (%)"].tolist() == [0.0, 100.0, 25.0]
    assert table["median ms per question"].tolist() == [200.0, 100.0, 100.0]


def test_latest_result_picks_the_newest_matching_result(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSEQA_CACHE", str(tmp_path / "cache"))
    assert latest_result(SPARSE_ID) is None
    older = _run(model=SPARSE_ID, exact_match=1.0).summary()
    newer_same_second = _run(model=SPARSE_ID, exact_match=2.0).summary()
    int8 = _run(model=SPARSE_ID, precision="int8", exact_match=3.0).summary()
    dense = _run(model=DENSE_ID, exact_match=4.0, date="2027-01-01T00:00:00+00:00").summary()
    for summary in (older, newer_same_second, int8, dense):
        save_result(summary)
    (results_dir() / "0-damaged.json").write_text('{"model": ', encoding="utf-8")
    assert latest_result(SPARSE_ID) == int8
    assert latest_result(SPARSE_ID, precision="fp32") == newer_same_second
    assert latest_result(SPARSE_ID, runtime="pytorch") is None
    assert latest_result(DENSE_ID) == dense
    assert not list(results_dir().glob("*.tmp"))
    demo = _run(model=SPARSE_ID, decoding="demo", exact_match=5.0).summary()
    save_result(demo)
    assert latest_result(SPARSE_ID, precision="fp32", decoding="demo") == demo
    assert latest_result(SPARSE_ID, precision="fp32", decoding="run_qa") == newer_same_second
    sparse_kernels = _run(model=SPARSE_ID, precision="int8", kernels="sparseqa", exact_match=6.0).summary()
    save_result(sparse_kernels)
    assert latest_result(SPARSE_ID, precision="int8", kernels="sparseqa") == sparse_kernels
    assert latest_result(SPARSE_ID, precision="int8", kernels="openvino") == int8
    unrecorded = {key: value for key, value in int8.items() if key != "kernels"} | {"exact_match": 7.0}
    save_result(unrecorded)  # saved before kernels were recorded: the runtime's own kernels ran
    assert latest_result(SPARSE_ID, precision="int8", kernels="openvino") == unrecorded


def test_latest_result_names_a_local_model_by_its_absolute_path(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSEQA_CACHE", str(tmp_path / "cache"))
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    save_result(_run(model=model_key("my-model")).summary())
    assert latest_result(str(tmp_path / "my-model"))["model"] == str(tmp_path / "my-model")
    assert latest_result("./my-model") is not None


def test_evaluate_engine_answers_with_passage_spans_and_scores_them(trained_tiny_model, tmp_path):
    # The trained model, not a random one: a random model's 20 best starts can all fall on padding, and then no
    # question has a span to check.
    from sparseqa.runtimes import load_engine

    engine = load_engine(str(trained_tiny_model), "openvino", "fp32")
    data = json.loads(TINY.read_text(encoding="utf-8"))
    # A question the model cannot take: it is answered with "", scored 0 and counted.
    data["data"][0]["paragraphs"][0]["qas"].append(
        {"id": "empty", "question": "  ", "answers": [{"text": "Tamsin", "answer_start": 52}]}
    )
    path = tmp_path / "with-empty.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    questions = load_squad(path)

    run = evaluate_engine(engine, questions, str(path), progress=False)
    assert (run.n, run.unanswered, run.decoding) == (9, 1, "run_qa")
    assert run.predictions["empty"] == ""
    assert "empty" not in run.spans
    no_span = 0
    for question in questions:
        if question.id == "empty":
            continue
        if question.id not in run.spans:  # run_qa found no valid span among its 20 best starts and ends
            assert run.predictions[question.id] == RUN_QA_NO_SPAN
            no_span += 1
            continue
        start, end = run.spans[question.id]
        assert question.context[start:end] == run.predictions[question.id]
    assert run.no_span == no_span and len(run.spans) == 8 - no_span > 0
    scores = score_predictions(questions, run.predictions)
    assert (run.exact_match, run.f1) == (scores["exact_match"], scores["f1"])
    assert run.model == str(trained_tiny_model.resolve())
    assert (run.runtime, run.precision, run.synthetic) == ("openvino", "fp32", False)
    assert run.questions_per_second > 0 and run.median_latency_ms > 0


def test_evaluate_engine_with_demo_decoding_scores_the_answers_the_demo_shows(tiny_sparse_model):
    from sparseqa.runtimes import load_engine

    engine = load_engine(str(tiny_sparse_model), "openvino", "fp32")
    questions = load_squad(TINY)

    run = evaluate_engine(engine, questions, str(TINY), decoding="demo", progress=False)

    assert run.decoding == "demo" and run.no_span == 0
    assert run.predictions == {q.id: engine.answer(q.question, q.context).text for q in questions}
