"""``loadtest``: bounded, loopback-only load on a running demo's ``/ask``, with questions/s and p50/p90 latency."""

from __future__ import annotations

import json

import pytest

from sparseqa.cli import main
from sparseqa.loadtest import check_loopback, percentile, run_level


def test_percentiles_of_known_latencies():
    latencies = [float(value) for value in range(1, 101)]
    assert percentile(latencies, 0.5) == pytest.approx(50.5)
    assert percentile(latencies, 0.9) == pytest.approx(90.1)
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([], 0.5) is None


@pytest.mark.parametrize("url", ["http://example.com:7860/", "http://10.0.0.5:7860/", "http://0.0.0.0:7860/"])
def test_only_this_machine_is_load_tested(url):
    with pytest.raises(ValueError, match="loadtest only asks this machine"):
        check_loopback(url)


def test_bad_levels_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["loadtest", "--clients", "8,x"])
    assert exit_.value.code == 2
    assert "--clients '8,x' is not a comma-separated list" in capsys.readouterr().err


def test_a_level_against_the_one_process_demo_answers_every_request(demo_server, tmp_path, capsys):
    result = run_level(demo_server.url, clients=3, requests=6, runs=1, timeout_s=120)
    assert (result.answered, result.failed, result.first_error) == (6, 0, None)
    assert result.replicas_seen == 1  # app.py: one process answers everything
    assert 0 < result.p50_ms <= result.p90_ms
    assert result.questions_per_second == pytest.approx(6 / result.seconds)

    out = tmp_path / "load.json"
    code = main(["loadtest", "--url", demo_server.url, "--clients", "2", "--requests", "2", "--runs", "1",
                 "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "questions/s" in printed and "p90 ms" in printed
    assert json.loads(out.read_text())["levels"][0]["answered"] == 2
