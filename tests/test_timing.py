"""Timing: one measurement at a time; interleaved rounds time every call once, in a rotating order."""

from __future__ import annotations

import threading
import time

import pytest

from sparseqa.timing import MEASURE_LOCK, interleave, repeat


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


@pytest.mark.parametrize(
    "measure",
    [
        lambda call: repeat(call, runs=1, warmup=1),
        lambda call: interleave({"x": call}, runs=1, warmup=1),
    ],
    ids=["repeat", "interleave"],
)
def test_warm_up_and_timed_runs_wait_for_another_measurement_to_finish(measure):
    calls: list[float] = []
    measuring = threading.Thread(target=lambda: measure(lambda: calls.append(time.monotonic())))
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
