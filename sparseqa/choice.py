"""Choosing the int8 sparse model's kernels by measuring them on this machine, once, and remembering why.

``--kernels auto`` has up to three candidates for an int8 model on OpenVINO, simplest first: OpenVINO's own kernels
(``openvino``), OpenVINO's sparse weight decompression (``openvino-sparse-weights``, only where the CPU has AMX) and
sparseqa's block-sparse kernels (``sparseqa``, wherever they built and the graph pass found sparse Linears). Which
is fastest depends on the CPU (AMX makes OpenVINO's dense int8 fast), so ``choose`` times them against each other on
the first load: the bench's inputs (``workload.benchmark_inputs``) at ``SEQ_LENS`` tokens, interleaved round by round
(``timing.interleave``), warm-up excluded. ``decide`` keeps the fastest, or the simplest candidate whose time is
within noise of the fastest. The decision and its numbers are cached as JSON under ``cache_root()/kernel-choice``,
keyed by everything that could change the answer, so later starts only read it.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .models import cache_root
from .timing import BUSY_SHARE, LatencyStats, OtherCpuUse, interleave
from .workload import forward_pass

OPENVINO = "openvino"
SPARSE_WEIGHTS = "openvino-sparse-weights"
SPARSEQA = "sparseqa"
SPARSE_WEIGHTS_RUNTIME = "openvino + sparse weights"
SPARSE_KERNELS_RUNTIME = "openvino + sparseqa kernels"
# The table's runtime label of each candidate `--kernels auto` chooses from (above).
AUTO_RUNTIMES = {OPENVINO: "openvino", SPARSE_WEIGHTS: SPARSE_WEIGHTS_RUNTIME, SPARSEQA: SPARSE_KERNELS_RUNTIME}
CANDIDATES = (OPENVINO, SPARSE_WEIGHTS, SPARSEQA)  # simplest first: ties go to the earlier one
DESCRIPTIONS = {
    OPENVINO: "OpenVINO's kernels",
    SPARSE_WEIGHTS: "OpenVINO's sparse weight decompression",
    SPARSEQA: "sparseqa's kernels",
}
SEQ_LENS = (128, 384)
RUNS = 10
WARMUP = 2
# Two medians closer than this share are "within noise", whatever the samples' spread says (see noise_share).
MIN_NOISE = 0.03
# Bump when the rule or the procedure changes, so cached decisions made the old way are measured again.
RULE_VERSION = 1

# Called as measure(engines by candidate, after_round): each (candidate, seq_len)'s timings; tests inject numbers.
Measure = Callable[[Mapping[str, object], Callable[[int], object]], Mapping[tuple[str, int], LatencyStats]]


@dataclass(frozen=True)
class KernelDecision:
    """Which kernels run the int8 sparse model, how that was decided, and the numbers behind it.

    ``how`` is ``measured`` (this load timed the candidates), ``cached`` (an earlier load did, on the same machine,
    model, libraries, kernel build and threads), ``forced`` (``--kernels`` or ``SPARSEQA_KERNELS``) or ``only
    candidate``. ``medians_ms[candidate][seq_len]`` holds the measured medians.
    """

    chosen: str
    how: str
    reason: str
    medians_ms: dict[str, dict[int, float]] = field(default_factory=dict)
    noise: float | None = None
    runs: int | None = None
    wall_s: float | None = None
    measured_at: str | None = None
    other_cpu_share: float | None = None  # other processes' share of the CPU while it was measured (timing.OtherCpuUse)

    def speedup(self, candidate: str, seq_len: int) -> float | None:
        """How many times faster ``candidate`` ran than OpenVINO's kernels at ``seq_len`` (None if not measured)."""
        medians = self.medians_ms
        if candidate not in medians or OPENVINO not in medians or seq_len not in medians[candidate]:
            return None
        return medians[OPENVINO][seq_len] / medians[candidate][seq_len]

    @property
    def seq_lens(self) -> list[int]:
        """The measured lengths, shortest first."""
        return sorted({length for medians in self.medians_ms.values() for length in medians})

    def medians_text(self) -> str:
        """The measured medians in one line, e.g. ``128 tokens: openvino 17.7 ms, sparseqa 11.5 ms; 384 ...``."""
        return "; ".join(
            f"{length} tokens: "
            + ", ".join(f"{name} {medians[length]:.1f} ms" for name, medians in self.medians_ms.items())
            for length in self.seq_lens
        )

    def short_reason(self) -> str:
        """A few words for a table cell, e.g. ``auto, measured 2026-12-01: sparseqa 1.52x/1.49x OpenVINO's speed at
        128/384 tokens``."""
        if not self.medians_ms:
            return f"{self.how}: {self.reason}" if self.how == "only candidate" else self.reason.split(";")[0]
        lengths = self.seq_lens
        others = ", ".join(
            f"{name} {'/'.join(f'{self.speedup(name, length):.2f}' for length in lengths)}x"
            for name in self.medians_ms
            if name != OPENVINO
        )
        when = f" {self.measured_at[:10]}" if self.measured_at else ""
        return f"auto, {self.how}{when}: {others} OpenVINO's speed at {'/'.join(map(str, lengths))} tokens"

    def as_dict(self) -> dict:
        """Plain values for JSON (lengths as string keys, as JSON objects need)."""
        return asdict(self) | {
            "medians_ms": {name: {str(k): v for k, v in medians.items()} for name, medians in self.medians_ms.items()}
        }

    @classmethod
    def from_dict(cls, data: dict) -> KernelDecision:
        """The inverse of ``as_dict``."""
        medians = {name: {int(k): float(v) for k, v in values.items()} for name, values in data["medians_ms"].items()}
        return cls(**(data | {"medians_ms": medians}))


def ratio_noise(samples_ms: Sequence[float], baseline_ms: Sequence[float]) -> float:
    """About one standard error of the ratio of two medians timed side by side, as a share of it: the interquartile
    range of the per-round ratios over their median, divided by the square root of the rounds (0 for one round).

    Interleaving times both calls once per round, so a burst of other work that slows both calls of a round leaves
    that round's ratio alone."""
    ratios = np.asarray(samples_ms, dtype=np.float64) / np.asarray(baseline_ms, dtype=np.float64)
    if len(ratios) < 2:
        return 0.0
    iqr = np.percentile(ratios, 75) - np.percentile(ratios, 25)
    return float(iqr / np.median(ratios) / math.sqrt(len(ratios)))


def noise_share(stats: Mapping[tuple[str, int], LatencyStats]) -> float:
    """How far apart two candidates' times must be to count as different, as a share of them: the median over the
    candidates and lengths of ``ratio_noise`` against OpenVINO's kernels at the same length, at least
    ``MIN_NOISE``."""
    spreads = [
        ratio_noise(timing.samples_ms, stats[OPENVINO, length].samples_ms)
        for (name, length), timing in stats.items()
        if name != OPENVINO and (OPENVINO, length) in stats
    ]
    return max(MIN_NOISE, float(np.median(spreads)) if spreads else 0.0)


def decide(stats: Mapping[tuple[str, int], LatencyStats]) -> tuple[str, str, float]:
    """(chosen candidate, reason, noise) from each (candidate, seq_len)'s timings.

    Each candidate's time is the geometric mean over the lengths of its median over OpenVINO's median at the same
    length; the chosen one is the simplest (``CANDIDATES`` order) whose time is within ``noise_share`` of the
    fastest's. OpenVINO's kernels must be among the candidates.
    """
    names = [name for name in CANDIDATES if any(key[0] == name for key in stats)]
    lengths = sorted({length for _, length in stats})
    if OPENVINO not in names:
        raise ValueError("the kernel choice needs OpenVINO's kernels among the candidates")
    relative = {
        name: math.exp(
            sum(math.log(stats[name, length].median_ms / stats[OPENVINO, length].median_ms) for length in lengths)
            / len(lengths)
        )
        for name in names
    }
    noise = noise_share(stats)
    fastest = min(relative.values())
    chosen = next(name for name in names if relative[name] <= fastest * (1 + noise))
    return chosen, reason_text(chosen, stats, noise), noise


def reason_text(chosen: str, stats: Mapping[tuple[str, int], LatencyStats], noise: float) -> str:
    """Why ``chosen`` runs, in the measured ratios: each other candidate's speed relative to OpenVINO's kernels."""
    lengths = sorted({length for _, length in stats})
    names = [name for name in CANDIDATES if any(key[0] == name for key in stats)]

    def ratios(name: str) -> str:
        values = [stats[OPENVINO, length].median_ms / stats[name, length].median_ms for length in lengths]
        return ", ".join(f"{value:.2f}x" for value in values)

    at = f"at {' and '.join(map(str, lengths))} tokens"
    others = [name for name in names if name != OPENVINO]
    described = "; ".join(f"{DESCRIPTIONS[name]} ran at {ratios(name)} OpenVINO's kernels' speed" for name in others)
    if chosen == OPENVINO:
        verdict = "OpenVINO's kernels: no other candidate was faster by more than the noise"
    else:
        verdict = f"{DESCRIPTIONS[chosen]}: the fastest, beyond the noise"
    return f"{verdict} ({described} {at}; noise {noise:.0%})"


def measure(
    engines: Mapping[str, object],
    after_round: Callable[[int], object] | None = None,
    seq_lens: tuple[int, ...] = SEQ_LENS,
    runs: int = RUNS,
    warmup: int = WARMUP,
) -> dict[tuple[str, int], LatencyStats]:
    """Each engine's forward pass on the bench's inputs at each length, every (candidate, length) pair interleaved
    round by round (``timing.interleave``), ``warmup`` untimed calls of each first."""
    calls = {(name, length): forward_pass(engine, length) for name, engine in engines.items() for length in seq_lens}
    return interleave(calls, runs, warmup, after_round)


def decision_path(key: Mapping) -> Path:
    """Where the decision for ``key`` is cached: one JSON file named by the key's hash."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_root() / "kernel-choice" / f"{digest}.json"


def read_cached(key: Mapping) -> KernelDecision | None:
    """The cached decision for ``key`` (``how`` = cached), or None when there is none or it cannot be read."""
    try:
        record = json.loads(decision_path(key).read_text())
        if record.get("key") != json.loads(json.dumps(key)):
            return None
        decision = KernelDecision.from_dict(record["decision"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return KernelDecision(**(vars(decision) | {"how": "cached"}))


def choose(
    key: Mapping,
    build: Callable[[str], object],
    candidates: list[str],
    *,
    measure: Measure = measure,
    report: Callable[[str], object] | None = None,
) -> tuple[KernelDecision, dict[str, object]]:
    """The cached decision for ``key``, or a new one measured now: (decision, the engines it built by name).

    ``build(name)`` loads and compiles one candidate's engine, ``measure`` times them (default: ``measure``, at
    ``SEQ_LENS`` tokens, ``RUNS`` rounds after ``WARMUP``). The measurement holds a file lock, so two processes
    starting together measure once, not against each other. ``report`` (default: stderr) shows its progress.
    """
    from filelock import FileLock

    cached = read_cached(key)
    if cached is not None:
        return cached, {}
    say = report or (lambda text: print(text, end="", file=sys.stderr, flush=True))
    path = decision_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        cached = read_cached(key)
        if cached is not None:
            return cached, {}
        began = time.monotonic()
        say(f"choosing the int8 kernels by measurement (once; cached): compiling {', '.join(candidates)} ...")
        engines = {name: build(name) for name in candidates}
        say(f" timing them at {' and '.join(map(str, SEQ_LENS))} tokens, {RUNS} interleaved rounds ")
        with OtherCpuUse() as other_use:
            stats = measure(engines, lambda rounds: say("."))
        chosen, reason, noise = decide(stats)
        if other_use.share is not None and other_use.share >= BUSY_SHARE:
            reason += f"; other processes used {other_use.share:.0%} of the CPU meanwhile"
        medians: dict[str, dict[int, float]] = {}
        for (name, length), timing in sorted(stats.items()):
            medians.setdefault(name, {})[length] = timing.median_ms
        decision = KernelDecision(
            chosen=chosen,
            how="measured",
            reason=reason,
            medians_ms=medians,
            noise=noise,
            runs=min(timing.runs for timing in stats.values()),
            wall_s=round(time.monotonic() - began, 1),
            measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            other_cpu_share=other_use.share,
        )
        say(f" done in {decision.wall_s:.1f} s: {chosen}\n")
        staging = path.with_suffix(".tmp")
        staging.write_text(json.dumps({"key": key, "decision": decision.as_dict()}, indent=2) + "\n")
        staging.replace(path)
    return decision, engines
