"""Measuring latency honestly: warm-up excluded, median and p90 of N runs, one measurement at a time, and how much
of the CPU other processes took meanwhile."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

# Timed runs of different requests must not overlap, or each would report the other's load as its own latency.
MEASURE_LOCK = threading.Lock()

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class RequestTimeout(TimeoutError):
    """A measurement ran past its deadline; the message says what to change."""


@dataclass(frozen=True)
class LatencyStats:
    """Summary of ``runs`` timed calls, in milliseconds."""

    runs: int
    median_ms: float
    p90_ms: float
    samples_ms: tuple[float, ...]

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> LatencyStats:
        """Median and 90th percentile (linear interpolation, as numpy computes it) of the samples."""
        values = np.asarray(samples_ms, dtype=np.float64)
        return cls(len(values), float(np.median(values)), float(np.percentile(values, 90)), tuple(samples_ms))


def repeat(
    call: Callable[[], T],
    runs: int,
    warmup: int = 1,
    deadline: float | None = None,
    sample_ms: Callable[[T, float], float] | None = None,
) -> tuple[T, LatencyStats]:
    """Call ``call`` ``warmup`` times untimed, then ``runs`` times timed; return the last result and the stats.

    ``sample_ms(result, wall_ms)`` picks what one run measured (default: the wall-clock time of the call).
    ``deadline`` (a ``time.monotonic()`` value) stops a measurement that runs, or waits for another one, too long
    with RequestTimeout.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    # Warm-up runs hold the lock too: run beside another request's timed runs, they would slow those down.
    acquired = MEASURE_LOCK.acquire(timeout=-1 if deadline is None else max(deadline - time.monotonic(), 0.0))
    if not acquired:
        raise RequestTimeout("other requests kept the machine busy past the time limit: try again in a moment")
    try:
        result = None
        for _ in range(warmup):
            result = call()
            _check(deadline)
        samples = []
        for _ in range(runs):
            began = time.perf_counter()
            result = call()
            wall_ms = (time.perf_counter() - began) * 1e3
            samples.append(sample_ms(result, wall_ms) if sample_ms else wall_ms)
            _check(deadline)
    finally:
        MEASURE_LOCK.release()
    return result, LatencyStats.from_samples(samples)


def interleave(
    calls: Mapping[K, Callable[[], object]],
    runs: int,
    warmup: int = 1,
    after_round: Callable[[int], object] | None = None,
) -> dict[K, LatencyStats]:
    """Time several calls against each other: ``warmup`` untimed calls of each, then ``runs`` rounds that time each
    call once, in an order rotated every round; ``after_round(rounds_done)`` is called after each round.

    A burst of other work on the machine then slows every call a little instead of one call a lot, so the ratios
    between them hold up on a noisy machine (the idea of Google Benchmark's random interleaving).
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    keys = list(calls)
    samples: dict[K, list[float]] = {key: [] for key in keys}
    with MEASURE_LOCK:
        for key in keys:
            for _ in range(warmup):
                calls[key]()
        for round_index in range(runs):
            shift = round_index % len(keys)
            for key in keys[shift:] + keys[:shift]:
                began = time.perf_counter()
                calls[key]()
                samples[key].append((time.perf_counter() - began) * 1e3)
            if after_round is not None:
                after_round(round_index + 1)
    return {key: LatencyStats.from_samples(values) for key, values in samples.items()}


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise RequestTimeout("the request took longer than the time limit: use fewer timed runs or a shorter passage")


# Other processes taking this share of the CPU or more while the timings run make them unreliable.
BUSY_SHARE = 0.1


class OtherCpuUse:
    """The share of all cores' time that other processes used inside its ``with`` blocks (None off Linux).

    Every busy tick in ``/proc/stat`` (hypervisor steal included) that this process's own CPU time does not explain
    belongs to someone else; unlike the load average it does not lag, nor count this process's earlier work.
    """

    def __init__(self) -> None:
        self._other_s = 0.0
        self._wall_s = 0.0
        self._started: tuple[float, float, float] | None = None
        self._readable = _busy_cpu_seconds() is not None

    def __enter__(self) -> OtherCpuUse:
        if self._readable:
            self._started = (_busy_cpu_seconds(), time.process_time(), time.monotonic())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._started is None:
            return
        busy_s, own_s, wall_s = self._started
        self._other_s += (_busy_cpu_seconds() - busy_s) - (time.process_time() - own_s)
        self._wall_s += time.monotonic() - wall_s
        self._started = None

    @property
    def share(self) -> float | None:
        """Other processes' CPU time over the wall time of all cores, from 0 (idle machine) to 1."""
        if not self._readable or self._wall_s == 0:
            return None
        return min(max(self._other_s / (self._wall_s * (os.cpu_count() or 1)), 0.0), 1.0)


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all cores spent not idle since boot, from ``/proc/stat``; None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle, iowait = ticks[3], ticks[4] if len(ticks) > 4 else 0
    # Fields 9 and 10 (guest time) are already counted in user and nice.
    return (sum(ticks[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")
