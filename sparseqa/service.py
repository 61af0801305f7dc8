"""The demo's backend: the loaded sparse and dense engines, the input limits, and one ``ask`` for every front end.

The web interface, the API and the CLI all call ``QAService.ask``, so a user sees the same answer and the same
numbers whichever way they come in.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from .decoding import InputError, check_text
from .models import DENSE_ID, SPARSE_ID, SYNTHETIC_DENSE, SYNTHETIC_SPARSE, ModelLoadError, card_for
from .runtimes import Answer, QAEngine, default_precision, load_engine
from .timing import LatencyStats, repeat

if TYPE_CHECKING:
    from .bench import BenchResult, BenchSettings, ProgressCallback

log = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "model", "runtime", "precision", "kernels", "why these kernels", "tokens", "median ms", "p90 ms",
    "speedup vs dense PyTorch",
]  # fmt: skip
SERVED_BY_COLUMN = "served by"  # a last column when a replica answered (python -m sparseqa serve)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. Over a limit the request is refused with a message naming the limit."""

    max_passage_chars: int = 50_000
    max_windows: int = 64
    max_question_chars: int = 500
    max_runs: int = 20
    request_timeout_s: float = 120.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        """Defaults, overridden by ``SPARSEQA_MAX_PASSAGE_CHARS`` and the like (for hosted Spaces)."""
        values = {}
        for name, kind in (
            ("max_passage_chars", int),
            ("max_windows", int),
            ("max_question_chars", int),
            ("max_runs", int),
            ("request_timeout_s", float),
        ):
            variable = f"SPARSEQA_{name.upper()}"
            raw = environ.get(variable)
            if raw:
                values[name] = _positive(variable, raw, kind)
        return cls(**values)

    def check(self, passage: str, question: str, runs: int) -> None:
        """Refuse an empty or oversized request, naming the limit; cheap, so callers can check before loading models."""
        check_text(question, passage)
        if len(passage) > self.max_passage_chars:
            raise InputError(
                f"the passage has {len(passage):,} characters; the limit is {self.max_passage_chars:,}: shorten it"
            )
        if len(question) > self.max_question_chars:
            raise InputError(
                f"the question has {len(question):,} characters; the limit is {self.max_question_chars:,}: shorten it"
            )
        if not 1 <= runs <= self.max_runs:
            raise InputError(f"timed runs must be between 1 and {self.max_runs}")


def _positive(variable: str, raw: str, kind: type[int] | type[float]) -> int | float:
    """An environment variable's value as a positive number, or a ValueError naming the variable."""
    try:
        value = kind(raw)
        if value > 0:
            return value
    except ValueError:
        pass
    number = "whole number" if kind is int else "number of seconds"
    raise ValueError(f"{variable}={raw!r} is not a positive {number}: fix or unset it")


@dataclass(frozen=True)
class Settings:
    """Which models to load, where, and how; the sparse model's precision defaults to its runtime's (int8 on
    OpenVINO, fp32 on PyTorch)."""

    model: str = SPARSE_ID
    dense_model: str | None = DENSE_ID
    runtime: str = "openvino"
    precision: str | None = None
    dense_runtime: str = "pytorch"
    dense_precision: str = "fp32"
    threads: int | None = None
    limits: Limits = field(default_factory=Limits)
    kernels: str | None = None  # the sparse model's: auto, sparseqa or openvino (None: SPARSEQA_KERNELS, else auto)

    def __post_init__(self) -> None:
        if self.precision is None:
            object.__setattr__(self, "precision", default_precision(self.runtime))

    @classmethod
    def synthetic_models(cls, **overrides) -> Settings:
        """The random-weight BERT-base pair: real latency, meaningless answers, no download."""
        return cls(model=SYNTHETIC_SPARSE, dense_model=SYNTHETIC_DENSE, **overrides)


@dataclass(frozen=True)
class ServedBy:
    """Which replica answered (``python -m sparseqa serve``), on which node, and whether it shares the node's cores."""

    node: str  # the node's address
    node_id: str
    replica: str
    replicas_on_node: int | None = None  # of this deployment, this one included; None: not known

    def label(self) -> str:
        """A short cell for the latency table: the replica, its node, and how many replicas share that node."""
        shared = f", 1 of {self.replicas_on_node} sharing its cores" if (self.replicas_on_node or 0) > 1 else ""
        return f"replica {self.replica} on {self.node}{shared}"

    def text(self) -> str:
        """One line for the page; says so when replicas share a machine, whose timings then disturb each other."""
        line = f"replica {self.replica} on {self.node}"
        if self.replicas_on_node and self.replicas_on_node > 1:
            others = self.replicas_on_node - 1
            line += (
                f" (shares this machine's cores with {others} other replica{'s' if others > 1 else ''}: "
                "their timings disturb each other)"
            )
        return line

    def as_dict(self) -> dict:
        """Plain values for the JSON result."""
        return {
            "node": self.node,
            "node_id": self.node_id,
            "replica": self.replica,
            "replicas_on_node": self.replicas_on_node,
        }


@dataclass(frozen=True)
class Comparison:
    """The sparse model's answer and, when loaded, the dense baseline's, each timed on the same input."""

    sparse: Answer
    sparse_latency: LatencyStats
    dense: Answer | None
    dense_latency: LatencyStats | None
    served_by: ServedBy | None = None  # set by the replica that answered, when one did

    @property
    def speedup(self) -> float | None:
        """How many times faster the sparse model answered than the dense baseline (median over median)."""
        if self.dense_latency is None:
            return None
        return self.dense_latency.median_ms / self.sparse_latency.median_ms

    @property
    def agree(self) -> bool | None:
        """Whether both models chose the same span."""
        if self.dense is None:
            return None
        return (self.sparse.start, self.sparse.end) == (self.dense.start, self.dense.end)

    def table(self) -> pd.DataFrame:
        """One row per model: what ran, on how many tokens, how fast, and the speedup over the dense baseline."""
        baseline = self.dense_latency.median_ms if self.dense_latency else None
        rows = []
        for answer, latency in ((self.dense, self.dense_latency), (self.sparse, self.sparse_latency)):
            if answer is None:
                continue
            rows.append(
                [
                    card_for(answer.model).label,
                    answer.runtime,
                    answer.precision,
                    " ".join(
                        filter(
                            None,
                            [
                                answer.kernel_choice.chosen if answer.kernel_choice else answer.kernels,
                                answer.kernel_isa,
                                answer.kernel_blocks,
                            ],
                        )
                    ),
                    kernels_why(answer),
                    answer.tokens,
                    round(latency.median_ms, 1),
                    round(latency.p90_ms, 1),
                    round(baseline / latency.median_ms, 2) if baseline else None,
                ]
            )
        table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
        if self.served_by is not None:
            table[SERVED_BY_COLUMN] = self.served_by.label()
        return table

    def as_dict(self) -> dict:
        """Plain values for JSON: the sparse answer's fields at the top, the dense answer nested."""
        result = self.sparse.as_dict() | {
            "latency_ms": self.sparse_latency.median_ms,
            "latency_p90_ms": self.sparse_latency.p90_ms,
            "runs": self.sparse_latency.runs,
        }
        if self.dense is not None:
            result["dense"] = self.dense.as_dict() | {
                "latency_ms": self.dense_latency.median_ms,
                "latency_p90_ms": self.dense_latency.p90_ms,
                "runs": self.dense_latency.runs,
            }
            result["speedup"] = self.speedup
            result["agree"] = self.agree
        if self.served_by is not None:
            result["served_by"] = self.served_by.as_dict()
        return result


def kernels_why(answer: Answer) -> str:
    """Why these kernels computed the answer, in a few words for the latency table."""
    if answer.kernel_choice is None:
        return f"{answer.runtime}'s own; nothing to choose at {answer.precision}"
    return answer.kernel_choice.short_reason()


class QAService:
    """The loaded engines and limits. Build it once with ``load``; call ``ask`` from any thread."""

    def __init__(self, settings: Settings, sparse: QAEngine | None, dense: QAEngine | None, error: str | None = None):
        self.settings = settings
        self.sparse = sparse
        self.dense = dense
        self.load_error = error

    @classmethod
    def load(
        cls, settings: Settings, *, compare: bool = True, report: Callable[[str], None] = log.info, strict: bool = True
    ) -> QAService:
        """Load (and compile) the sparse engine and, with ``compare``, the dense baseline.

        With ``strict`` a model that cannot be loaded raises ModelLoadError; without it the service starts anyway and
        ``load_error`` holds the one-line reason, so a web page can show it instead of failing to start.
        """
        engines: list[QAEngine | None] = []
        error = None
        wanted = [(settings.model, settings.runtime, settings.precision, settings.kernels)]
        if compare and settings.dense_model:
            # Insisting on sparseqa's kernels is about the sparse model; the dense baseline takes whatever runs.
            dense_kernels = "openvino" if settings.kernels == "openvino" else "auto"
            wanted.append((settings.dense_model, settings.dense_runtime, settings.dense_precision, dense_kernels))
        for model, runtime, precision, kernels in wanted:
            report(f"loading {model} on {runtime} {precision} ...")
            began = time.monotonic()
            try:
                engines.append(load_engine(model, runtime, precision, threads=settings.threads, kernels=kernels))
            except (ModelLoadError, ValueError) as problem:
                if strict:
                    raise
                error = error or str(problem)
                engines.append(None)
                report(f"  failed: {problem}")
                continue
            report(f"  ready in {time.monotonic() - began:.1f} s")
        engines += [None] * (2 - len(engines))
        return cls(settings, engines[0], engines[1], error)

    def ask(self, passage: str, question: str, *, runs: int = 3, warmup: int = 1, top_k: int = 3) -> Comparison:
        """Answer with the sparse model and the dense baseline, timing each over ``runs`` runs after ``warmup``.

        Raises InputError (bad or oversized input), RequestTimeout, or RuntimeError when no sparse model is loaded.
        """
        if self.sparse is None:
            raise RuntimeError(self.load_error or "no sparse model is loaded")
        self.settings.limits.check(passage, question, runs)
        deadline = time.monotonic() + self.settings.limits.request_timeout_s
        answer = self._timed(self.sparse, passage, question, runs, warmup, top_k, deadline)
        dense = self._timed(self.dense, passage, question, runs, warmup, top_k, deadline) if self.dense else None
        return Comparison(answer[0], answer[1], *(dense or (None, None)))

    def benchmark(self, settings: BenchSettings, progress: ProgressCallback | None = None) -> BenchResult:
        """The web benchmark (``bench.run_benchmark``) where this service's engines run."""
        from .bench import run_benchmark

        return run_benchmark(settings, progress)

    def _timed(
        self, engine: QAEngine, passage: str, question: str, runs: int, warmup: int, top_k: int, deadline: float
    ) -> tuple[Answer, LatencyStats]:
        limits = self.settings.limits
        return repeat(
            lambda: engine.answer(question, passage, top_k=top_k, max_windows=limits.max_windows),
            runs=runs,
            warmup=warmup,
            deadline=deadline,
            sample_ms=lambda answer, _wall: answer.timings.total_ms,
        )
