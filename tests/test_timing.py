"""Interleaved timing: every call timed once per round, in a rotating order, one measurement at a time."""

from __future__ import annotations

import threading
import time

import pytest

from sparseqa.timing import MEASURE_LOCK, interleave


def test_rounds_time_each_call_once_in_a_rotating_order_after_the_warm_ups():
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in "abc"}
    rounds: list[int] = []

    stats = interleave(calls, runs=3, warmup=1, after_round=rounds.append)

    assert "".join(order) == "abc" + "abc" + "bca" + "cab"
    assert rounds == [1, 2, 3]
    assert {name: stat.runs for name, stat in stats.items()} == {"a": 3, "b": 3, "c": 3}


def test_each_call_gets_its_own_latency():
    stats = interleave({"short": lambda: time.sleep(0.002), "long": lambda: time.sleep(0.02)}, runs=3, warmup=0)
    assert 2 <= stats["short"].median_ms < 15 <= stats["long"].median_ms
    assert all(stat.median_ms <= stat.p90_ms for stat in stats.values())


def test_it_waits_for_another_measurement_to_finish():
    calls: list[float] = []
    measuring = threading.Thread(target=lambda: interleave({"x": lambda: calls.append(time.monotonic())}, runs=1))
    with MEASURE_LOCK:
        measuring.start()
        measuring.join(timeout=0.3)
        calls_during_other_measurement = len(calls)
    measuring.join()
    assert calls_during_other_measurement == 0
    assert len(calls) == 2


def test_zero_runs_are_refused():
    with pytest.raises(ValueError, match="runs must be at least 1"):
        interleave({"x": lambda: None}, runs=0)
