"""SQuAD v1.1 evaluation metrics and data loading.

The metric functions reproduce the official SQuAD v1.1 ``evaluate.py`` script
so that reported numbers are comparable with published results.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass
from os import PathLike
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower-case, strip punctuation, articles and extra whitespace (official v1.1 order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    """True when the normalized prediction equals the normalized gold answer."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-level F1 between normalized prediction and gold answer."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    # Also covers empty token lists: the official script returns 0 there too.
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def metric_max_over_ground_truths(
    metric_fn: Callable[[str, str], T], prediction: str, ground_truths: Iterable[str]
) -> T:
    """Best score of ``prediction`` against any of the gold answers."""
    return max(metric_fn(prediction, gt) for gt in ground_truths)


@dataclass(frozen=True)
class SquadQuestion:
    """One SQuAD question with its context paragraph and gold answer texts."""

    id: str
    question: str
    context: str
    answers: tuple[str, ...]


def _require(obj: Any, key: str, where: str, path: str) -> Any:
    if not isinstance(obj, dict):
        raise ValueError(
            f"{path}: {where} should be a JSON object but is {type(obj).__name__}; "
            "expected SQuAD v1.1 format (like dev-v1.1.json)"
        )
    if key not in obj:
        raise ValueError(
            f"{path}: {where} has no {key!r} key; expected SQuAD v1.1 format "
            '{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers"}]}]}]}'
        )
    return obj[key]


def _require_list(value: Any, where: str, path: str) -> list:
    if not isinstance(value, list):
        raise ValueError(
            f"{path}: {where} should be a JSON list but is {type(value).__name__}; "
            "expected SQuAD v1.1 format (like dev-v1.1.json)"
        )
    return value


def load_squad(path: str | PathLike[str]) -> list[SquadQuestion]:
    """Read a SQuAD v1.1 JSON file (e.g. dev-v1.1.json) into a flat list of questions.

    Raises ``ValueError`` if the file is not JSON or not in SQuAD v1.1 format.
    """
    name = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{name}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
            "pass a SQuAD v1.1 file such as dev-v1.1.json"
        ) from None
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{name}: not UTF-8 text ({e.reason}); pass a SQuAD v1.1 file such as dev-v1.1.json"
        ) from None

    questions: list[SquadQuestion] = []
    articles = _require_list(_require(raw, "data", "top level", name), '"data"', name)
    for a, article in enumerate(articles):
        where = f"data[{a}]"
        paragraphs = _require_list(
            _require(article, "paragraphs", where, name), f"{where}.paragraphs", name
        )
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            context = _require(paragraph, "context", where, name)
            qas = _require_list(_require(paragraph, "qas", where, name), f"{where}.qas", name)
            for q, qa in enumerate(qas):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                qid = _require(qa, "id", where, name)
                question = _require(qa, "question", where, name)
                answers = _require_list(
                    _require(qa, "answers", where, name), f"{where}.answers", name
                )
                texts = tuple(
                    str(_require(ans, "text", f"{where}.answers[{i}]", name))
                    for i, ans in enumerate(answers)
                )
                questions.append(
                    SquadQuestion(
                        id=str(qid), question=str(question), context=str(context), answers=texts
                    )
                )
    return questions


def score_predictions(
    questions: list[SquadQuestion], predictions: dict[str, str]
) -> dict[str, float | int]:
    """Official SQuAD v1.1 EM and F1 (percent) over all ``questions``.

    Questions without a prediction score 0, as in the official script;
    ``missing`` counts them. ``n`` is the number of questions scored.
    """
    exact_match = 0.0
    f1 = 0.0
    missing = 0
    for q in questions:
        if q.id not in predictions:
            missing += 1
            continue
        prediction = predictions[q.id]
        exact_match += metric_max_over_ground_truths(exact_match_score, prediction, q.answers)
        f1 += metric_max_over_ground_truths(f1_score, prediction, q.answers)
    n = len(questions)
    # The official script divides by zero on an empty dataset; report 0 instead.
    if n == 0:
        return {"exact_match": 0.0, "f1": 0.0, "n": 0, "missing": 0}
    return {
        "exact_match": 100.0 * exact_match / n,
        "f1": 100.0 * f1 / n,
        "n": n,
        "missing": missing,
    }


def load_hub_squad(split: str = "validation") -> list[SquadQuestion]:
    """Load SQuAD v1.1 from the Hugging Face hub via ``datasets``.

    Raises ``RuntimeError`` with a hint to use a local file if that fails.
    """

    def fail(reason: str) -> RuntimeError:
        reason = " ".join(reason.split())
        if len(reason) > 120:
            reason = reason[:117] + "..."
        return RuntimeError(
            f"could not load the SQuAD v1.1 {split} split from the Hugging Face hub "
            f"({reason}); pass --data FILE.json with a local copy of dev-v1.1.json"
        )

    try:
        import datasets  # imported lazily: optional and slow to import
    except ImportError:
        raise fail("the 'datasets' package is not installed") from None
    try:
        ds = datasets.load_dataset("squad", split=split)
        return [
            SquadQuestion(
                id=str(row["id"]),
                question=row["question"],
                context=row["context"],
                answers=tuple(row["answers"]["text"]),
            )
            for row in ds
        ]
    except Exception as e:  # network, cache and schema errors all get the same hint
        raise fail(f"{type(e).__name__}: {e}") from None
