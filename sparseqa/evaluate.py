"""SQuAD v1.1 evaluation: the official metrics, data loading, and the eval loop over a QA engine.

The metric functions reproduce the official SQuAD v1.1 ``evaluate.py`` script
so that reported numbers are comparable with published results. Every eval
result is saved under ``cache_root()/eval`` so the web page can show measured
EM/F1 beside the model card's.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import string
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

if TYPE_CHECKING:
    import pandas as pd

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
    except OSError as e:
        raise OSError(
            f"cannot read {name}: {e.strerror or e}; pass a SQuAD v1.1 file such as dev-v1.1.json"
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


def load_hub_squad(split: str = "validation", *, probe_timeout_s: float = 5.0) -> list[SquadQuestion]:
    """Load SQuAD v1.1 from the Hugging Face hub via ``datasets`` (or its local cache in offline mode).

    ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` are respected: offline, only the local cache is read. Online, the
    hub is probed first with a short timeout, because ``datasets`` retries an unreachable hub with growing back-off
    for much longer. Raises ``RuntimeError`` with a one-line reason and a hint to use a local file.
    """

    def fail(reason: str) -> RuntimeError:
        return RuntimeError(
            f"could not load the SQuAD v1.1 {split} split from the Hugging Face hub "
            f"({reason}); pass --data FILE.json with a local copy of dev-v1.1.json"
        )

    try:
        import datasets  # imported lazily: optional and slow to import
    except ImportError:
        raise fail("the 'datasets' package is not installed: pip install datasets") from None
    offline = _offline_variable()
    if offline is None:
        unreachable = _hub_unreachable(probe_timeout_s)
        if unreachable is not None:
            raise fail(
                f"the hub is not reachable: {_one_line(unreachable)}; to use a cached copy set HF_DATASETS_OFFLINE=1"
            )
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
        if offline is not None:
            raise fail(f"{offline} is set and the local datasets cache has no usable copy: {_one_line(e)}") from None
        raise fail(_one_line(e)) from None


def _one_line(error: BaseException, limit: int = 120) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


def _offline_variable() -> str | None:
    """The environment variable that puts ``datasets`` in offline mode, if one does (as ``datasets`` reads them)."""
    datasets_offline = os.environ.get("HF_DATASETS_OFFLINE")
    if datasets_offline is not None:
        return "HF_DATASETS_OFFLINE" if datasets_offline.upper() in _TRUE_VALUES else None
    return "HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE_VALUES else None


def _hub_unreachable(timeout_s: float) -> Exception | None:
    """Why the hub endpoint (``HF_ENDPOINT``) did not answer within ``timeout_s``, or None when it answered."""
    import httpx
    from huggingface_hub import constants

    try:
        httpx.head(constants.ENDPOINT, timeout=timeout_s)
    except httpx.HTTPError as error:
        return error
    return None


# ---- the eval loop -----------------------------------------------------------------------------------------------

SYNTHETIC_EVAL_NOTE = (
    "synthetic models have random weights: their EM and F1 are meaningless; only the speed numbers are real"
)
HUB_DATA = "SQuAD v1.1 dev (Hugging Face hub)"


def load_predictions(path: str | PathLike[str]) -> dict[str, str]:
    """Read an official-format predictions file, ``{question_id: answer_text}``.

    Raises ``OSError`` or ``ValueError`` with a one-line message naming the file.
    """
    name = str(path)
    expected = 'expected one JSON object {"question id": "answer text", ...} as the official SQuAD script reads'
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise OSError(f"cannot read {name}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); {expected}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not UTF-8 text ({e.reason}); {expected}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: the top level is a JSON {type(raw).__name__}; {expected}")
    for qid, text in raw.items():
        if not isinstance(text, str):
            kind = type(text).__name__
            raise ValueError(f"{name}: the prediction for {qid!r} is a JSON {kind}, not text; {expected}")
    return raw


@dataclass(frozen=True)
class EvalRun:
    """One configuration's answers to a set of questions: what it predicted, how well, and how fast."""

    model: str
    runtime: str
    precision: str
    decoding: str
    threads: int
    data: str
    date: str
    exact_match: float
    f1: float
    n: int
    unanswered: int
    no_span: int
    questions_per_second: float
    median_latency_ms: float
    synthetic: bool
    predictions: dict[str, str]
    spans: dict[str, tuple[int, int]]
    kernels: str = "openvino"  # whose kernels computed the Linears: sparseqa, openvino or pytorch

    def agreement(self, reference: EvalRun) -> float:
        """Percent of questions where this run chose exactly the span ``reference`` chose (or both none)."""
        if not self.predictions:
            return 0.0
        same = sum(self.spans.get(qid) == reference.spans.get(qid) for qid in self.predictions)
        return 100.0 * same / len(self.predictions)

    def summary(self) -> dict:
        """The scores and speed as plain values (no per-question answers): what ``--json`` writes and is saved."""
        result = {
            "exact_match": self.exact_match,
            "f1": self.f1,
            "n": self.n,
            "unanswered": self.unanswered,
            "model": self.model,
            "runtime": self.runtime,
            "precision": self.precision,
            "decoding": self.decoding,
            "no_span": self.no_span,
            "kernels": self.kernels,
            "threads": self.threads,
            "questions_per_second": self.questions_per_second,
            "median_latency_ms": self.median_latency_ms,
            "data": self.data,
            "date": self.date,
            "synthetic": self.synthetic,
        }
        if self.synthetic:
            result["note"] = SYNTHETIC_EVAL_NOTE
        return result


def model_key(model: str) -> str:
    """How a model is named in saved results: hub ids and synthetic names as given, directories as absolute paths."""
    return str(Path(model).resolve()) if os.path.isdir(model) else model


@dataclass(frozen=True)
class QuestionOutcome:
    """What one question got: the prediction, the chosen span and its latency (None when no span was chosen)."""

    id: str
    prediction: str
    span: tuple[int, int] | None = None
    latency_ms: float | None = None
    kind: str = "answered"  # answered, unanswered (the model could not take it) or no_span


def answer_question(engine, question: SquadQuestion, decoding: str) -> QuestionOutcome:
    """Answer one question as ``evaluate_engine`` scores it (see there for ``unanswered`` and ``no_span``)."""
    from .decoding import RUN_QA_NO_SPAN, InputError, NoSpanError

    try:
        answer = engine.answer(question.question, question.context, decoding_method=decoding)
    except InputError:
        return QuestionOutcome(question.id, "", kind="unanswered")
    except NoSpanError:
        return QuestionOutcome(question.id, RUN_QA_NO_SPAN, kind="no_span")
    return QuestionOutcome(question.id, answer.text, (answer.start, answer.end), answer.timings.total_ms)


def warm_up(engine, questions: list[SquadQuestion], decoding: str) -> None:
    """One untimed answer: the first inference allocates and tunes, which is no question's cost."""
    for question in questions[:1]:
        answer_question(engine, question, decoding)


def evaluate_engine(
    engine, questions: list[SquadQuestion], data: str, *, decoding: str = "run_qa", progress: bool = True
) -> EvalRun:
    """Answer every question with ``engine`` and score the answers.

    ``decoding`` ``run_qa`` (the default) picks each answer as transformers' run_qa.py evaluation does, which is how
    model cards' EM/F1 were measured; ``demo`` scores the answer the demo shows (its ranking of 3 answers, as the
    page asks for them). Where run_qa finds no valid span it answers "empty", as run_qa does; ``no_span`` counts
    those. A question the model cannot take (``InputError``, e.g. an empty question) gets the empty answer, which
    scores 0, and is counted in ``unanswered``. Speed excludes one warm-up answer and the questions without a span.
    ``progress`` shows a progress bar on stderr.
    """
    from tqdm import tqdm

    warm_up(engine, questions, decoding)
    began = time.perf_counter()
    outcomes = [
        answer_question(engine, question, decoding)
        for question in tqdm(questions, desc=engine.label, unit="q", disable=not progress, file=sys.stderr)
    ]
    return scored_run(engine, questions, data, decoding, outcomes, time.perf_counter() - began)


def scored_run(
    engine, questions: list[SquadQuestion], data: str, decoding: str, outcomes: list[QuestionOutcome], elapsed: float
) -> EvalRun:
    """The EvalRun of ``engine``'s ``outcomes`` (one per question, any order) answered in ``elapsed`` seconds."""
    order = {question.id: index for index, question in enumerate(questions)}
    outcomes = sorted(outcomes, key=lambda outcome: order[outcome.id])
    predictions = {outcome.id: outcome.prediction for outcome in outcomes}
    spans = {outcome.id: outcome.span for outcome in outcomes if outcome.span is not None}
    latencies_ms = [outcome.latency_ms for outcome in outcomes if outcome.latency_ms is not None]
    scores = score_predictions(questions, predictions)
    return EvalRun(
        model=model_key(engine.model_id),
        runtime=engine.runtime,
        precision=engine.precision,
        decoding=decoding,
        threads=engine.threads,
        data=data,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        exact_match=float(scores["exact_match"]),
        f1=float(scores["f1"]),
        n=int(scores["n"]),
        unanswered=sum(outcome.kind == "unanswered" for outcome in outcomes),
        no_span=sum(outcome.kind == "no_span" for outcome in outcomes),
        questions_per_second=len(questions) / elapsed if elapsed > 0 else 0.0,
        median_latency_ms=float(statistics.median(latencies_ms)) if latencies_ms else 0.0,
        synthetic=engine.synthetic,
        predictions=predictions,
        spans=spans,
        kernels=engine.kernels,
    )


def compare_configurations(sparse: str, dense: str) -> list[tuple[str, str, str, str]]:
    """(model, runtime, precision, kernels) of the accuracy comparison: dense PyTorch fp32, sparse OpenVINO fp32 and
    int8 on OpenVINO's kernels, and sparse int8 on sparseqa's kernels (left out where they cannot load)."""
    return [
        (dense, "pytorch", "fp32", "auto"),
        (sparse, "openvino", "fp32", "auto"),
        (sparse, "openvino", "int8", "openvino"),
        (sparse, "openvino", "int8", "sparseqa"),
    ]


def evaluate_configuration(
    configuration: tuple[str, str, str, str | None],
    questions: list[SquadQuestion],
    data: str,
    *,
    decoding: str = "run_qa",
    threads: int | None = None,
    progress: bool = True,
) -> EvalRun:
    """Load one (model, runtime, precision, kernels) in this process and answer ``questions`` with it.

    Raises ``ModelLoadError`` or ``ValueError`` from loading.
    """
    from .runtimes import load_engine

    model, runtime, precision, kernels = configuration
    engine = load_engine(model, runtime, precision, threads=threads, kernels=kernels)
    return evaluate_engine(engine, questions, data, decoding=decoding, progress=progress)


def run_configurations(
    configurations: list[tuple[str, str, str, str | None]],
    questions: list[SquadQuestion],
    data: str,
    *,
    decoding: str = "run_qa",
    threads: int | None = None,
    report: Callable[[str], None] = print,
    progress: bool = True,
    evaluate: Callable[..., EvalRun] = evaluate_configuration,
) -> list[EvalRun]:
    """Load each (model, runtime, precision, kernels) in turn, answer ``questions`` with it (``decoding``: see
    ``evaluate_engine``) and save its result.

    One configuration is loaded at a time, by ``evaluate`` (``evaluate_configuration``: in this process;
    ``ray_eval.evaluate_on_ray``: on a cluster). Raises ``ModelLoadError`` or ``ValueError`` from loading, except
    that a configuration insisting on sparseqa's kernels where they cannot load is left out with a line to ``report``.
    """
    runs = []
    for configuration in configurations:
        model, runtime, precision, kernels = configuration
        report(f"loading {model} on {runtime} {precision} ...")
        try:
            run = evaluate(configuration, questions, data, decoding=decoding, threads=threads, progress=progress)
        except ValueError as problem:
            if kernels != "sparseqa" or len(configurations) == 1:
                raise
            report(f"  left out: {problem}")
            continue
        save_result(run.summary())
        runs.append(run)
    return runs


COMPARE_COLUMNS = ["configuration", "EM", "F1", "agreement with sparse fp32 (%)", "median ms per question"]


def compare_table(runs: list[EvalRun], reference: EvalRun) -> pd.DataFrame:
    """One row per run: its label, EM, F1, share of spans identical to ``reference``'s, median latency."""
    import pandas as pd

    from .models import card_for

    rows = [
        [
            f"{card_for(run.model).label} · {run.runtime} {run.precision}"
            + (" · sparseqa kernels" if run.kernels == "sparseqa" else ""),
            round(run.exact_match, 2),
            round(run.f1, 2),
            round(run.agreement(reference), 1),
            round(run.median_latency_ms, 1),
        ]
        for run in runs
    ]
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def results_dir() -> Path:
    """Where every eval result is saved: ``cache_root()/eval``."""
    from .models import cache_root

    return cache_root() / "eval"


def save_result(summary: dict) -> Path:
    """Write one result (``EvalRun.summary()``) to ``results_dir()``, atomically so readers never see half a file."""
    directory = results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "--", summary["model"]).strip("-")[-60:]
    name = f"{time.time_ns()}-{slug}-{summary['runtime']}-{summary['precision']}.json"
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, suffix=".tmp", delete=False) as f:
        json.dump(summary, f, ensure_ascii=False, indent=2)
    os.replace(f.name, directory / name)
    return directory / name


def _saved_ns(path: Path) -> int:
    """The nanosecond timestamp a result's file name starts with: it orders results saved within one second."""
    prefix = path.name.split("-", 1)[0]
    return int(prefix) if prefix.isdigit() else 0


def latest_result(
    model: str,
    *,
    runtime: str | None = None,
    precision: str | None = None,
    decoding: str | None = None,
    kernels: str | None = None,
) -> dict | None:
    """The most recent saved eval result for ``model`` (optionally on one runtime/precision/decoding/kernels), or None.

    The dict has ``date``, ``runtime``, ``precision``, ``decoding``, ``n``, ``exact_match``, ``f1``, ``data`` (and
    the rest of ``EvalRun.summary()``). Results saved before decodings were recorded have no ``decoding`` and match
    no decoding asked for. Unreadable files are skipped: a damaged result must not break the page that shows them.
    """
    key = model_key(model)
    found: list[tuple[str, str, dict]] = []
    for path in results_dir().glob("*.json"):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(result, dict) or result.get("model") != key:
            continue
        if runtime is not None and result.get("runtime") != runtime:
            continue
        if precision is not None and result.get("precision") != precision:
            continue
        if decoding is not None and result.get("decoding") != decoding:
            continue
        # Results saved before kernels were recorded ran on their runtime's own kernels.
        if kernels is not None and result.get("kernels", result.get("runtime")) != kernels:
            continue
        found.append((str(result.get("date", "")), _saved_ns(path), result))
    if not found:
        return None
    return max(found, key=lambda item: item[:2])[2]
