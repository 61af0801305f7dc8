"""``serve``: the demo's page on Ray Serve replicas of the tiny models, asked through gradio_client as visitors do.

One local Ray instance on 127.0.0.1 (``local_ray``) and one deployment of two replicas serve every test here; every
load loop is bounded in count and in time.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from gradio_client import Client

from sparseqa.interface import load_examples
from sparseqa.ray_cluster import ClusterError
from sparseqa.service import Limits, Settings

REQUEST_TIMEOUT_S = 60.0
CLIENT_TIMEOUT_S = REQUEST_TIMEOUT_S + 60.0  # the service's timeout plus its routing slack: nothing waits longer


@dataclass(frozen=True)
class ServedDemo:
    url: str
    service: object


@pytest.fixture(scope="module")
def served(local_ray, tiny_sparse_model: Path, tiny_dense_model: Path):
    """The page of ``serve`` on two 1-thread replicas of the tiny models, on a free local port."""
    from ray import serve

    from sparseqa.interface import build_demo, launch
    from sparseqa.ray_serve import APP_NAME, REQUESTS_PER_REPLICA, ServeOptions, deploy, handle_facts

    settings = Settings(
        model=str(tiny_sparse_model),
        dense_model=str(tiny_dense_model),
        limits=Limits(request_timeout_s=REQUEST_TIMEOUT_S),
    )
    service = deploy(settings, ServeOptions(2, None, None, 1, None))
    demo = build_demo(service, handle_facts(service))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch(demo, port=port, prevent_thread_lock=True, quiet=True, concurrency_limit=2 * REQUESTS_PER_REPLICA)
    yield ServedDemo(demo.local_url, service)
    demo.close(verbose=False)
    serve.delete(APP_NAME)


def ask(url: str, passage: str, question: str):
    """One visitor's /ask: a client of its own, the result within the client timeout or an exception."""
    return Client(url, verbose=False).submit(passage, question, 1, api_name="/ask").result(timeout=CLIENT_TIMEOUT_S)


def spans(result: dict) -> tuple:
    return result["start"], result["end"], result["dense"]["start"], result["dense"]["end"]


def test_32_concurrent_visitors_get_the_sequential_answers_from_both_replicas(served):
    examples = load_examples()[:4]
    sequential = {example["question"]: spans(ask(served.url, example["passage"], example["question"])[-1])
                  for example in examples}
    requests = [examples[index % len(examples)] for index in range(32)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda example: ask(served.url, example["passage"], example["question"]), requests))
    replicas = Counter()
    for example, (_highlighted, _summary, _answers, latency, result) in zip(requests, results):
        assert spans(result) == sequential[example["question"]]
        replicas[result["served_by"]["replica"]] += 1
        assert latency["headers"][-1] == "served by"
        assert result["served_by"]["replica"] in latency["data"][0][-1]
    assert len(replicas) == 2, replicas
    # Both replicas run on this one machine, and the page says their timings disturb each other.
    assert {result["served_by"]["replicas_on_node"] for *_, result in results} == {2}
    assert results[0][3]["data"][0][-1].endswith("1 of 2 sharing its cores")
    assert "shares this machine's cores with 1 other replica: their timings disturb each other" in results[0][1]


def test_a_replica_killed_under_load_fails_or_retries_its_requests_and_serve_replaces_it(served):
    from ray import serve
    from sparseqa.ray_cluster import live_actors

    from sparseqa.ray_serve import APP_NAME, DEPLOYMENT_NAME

    example = load_examples()[0]
    expected = spans(ask(served.url, example["passage"], example["question"])[-1])

    def timed_ask(_index: int) -> tuple[float, object]:
        began = time.monotonic()
        try:
            outcome = ask(served.url, example["passage"], example["question"])[-1]
        except Exception as problem:  # the page's one-line error reaches the client as an exception
            outcome = problem
        return time.monotonic() - began, outcome

    replicas = live_actors(f"ServeReplica:{APP_NAME}:{DEPLOYMENT_NAME}")
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(timed_ask, index) for index in range(16)]
        time.sleep(1.0)
        os.kill(replicas[0].pid, signal.SIGKILL)
        outcomes = [future.result(timeout=2 * CLIENT_TIMEOUT_S) for future in futures]
    for seconds, outcome in outcomes:
        assert seconds < CLIENT_TIMEOUT_S
        if isinstance(outcome, Exception):
            assert "\n" not in str(outcome).strip(), outcome
        else:
            assert spans(outcome) == expected
    assert any(not isinstance(outcome, Exception) for _, outcome in outcomes)

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        deployment = serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME]
        if deployment.replica_states.get("RUNNING") == 2:
            break
        time.sleep(2)
    assert deployment.replica_states.get("RUNNING") == 2, deployment
    # The router hears of the new replica a moment after Serve reports it running: until then every request goes to
    # the survivor. Rounds of 4 concurrent visitors (more than one replica's 2 requests) until both answer again.
    seen: set[str] = set()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _round in range(30):
            after = list(pool.map(lambda _: ask(served.url, example["passage"], example["question"])[-1], range(4)))
            assert all(spans(result) == expected for result in after)
            seen |= {result["served_by"]["replica"] for result in after}
            if len(seen) == 2:
                break
            time.sleep(1)
    assert len(seen) == 2, seen


def test_more_replicas_than_the_cluster_has_cpus_is_a_one_line_error(served):
    from sparseqa.ray_serve import ServeOptions, deploy

    with pytest.raises(ClusterError) as error:
        deploy(Settings.synthetic_models(), ServeOptions(64, None, None, 1, None))
    assert str(error.value).startswith("64 replicas of 1 threads need 64 CPUs but the Ray cluster has 4")
    assert "\n" not in str(error.value)


def test_benchmark_runs_on_a_replica_through_the_same_api(served):
    from sparseqa.bench import TABLE_COLUMNS as BENCH_COLUMNS

    summary, table, _plot = Client(served.url, verbose=False).predict([64], 1, api_name="/benchmark")
    assert table["headers"] == list(BENCH_COLUMNS)
    assert table["data"] and {row[BENCH_COLUMNS.index("seq_len")] for row in table["data"]} == {64}
    assert summary.startswith("**")


def test_loadtest_counts_both_replicas(served):
    from sparseqa.loadtest import run_level

    result = run_level(served.url, clients=4, requests=8, runs=1, timeout_s=CLIENT_TIMEOUT_S)
    assert (result.answered, result.failed) == (8, 0)
    assert result.replicas_seen == 2


@pytest.mark.parametrize(
    "options, says",
    [
        ((2, None, 3, 1, None), "--replicas is a fixed count; --min-replicas/--max-replicas autoscale"),
        ((None, 1, None, 1, None), "autoscaling takes both --min-replicas and --max-replicas"),
        ((None, 4, 2, 1, None), "--min-replicas must be between 0 and --max-replicas"),
        ((0, None, None, 1, None), "--replicas must be at least 1"),
        ((1, None, None, 0, None), "--threads-per-replica must be at least 1"),
    ],
)
def test_replica_options_that_do_not_fit_are_one_line_errors(options, says):
    from sparseqa.ray_serve import ServeOptions

    with pytest.raises(ClusterError, match=says):
        ServeOptions(*options).check()


def test_autoscaling_options_become_serves_autoscaling_config():
    from sparseqa.ray_serve import ServeOptions

    config = ServeOptions(None, 1, 4, 2, None).deployment_options()
    assert config["autoscaling_config"]["min_replicas"] == 1
    assert config["autoscaling_config"]["max_replicas"] == 4
    assert config["ray_actor_options"] == {"num_cpus": 2}
    assert "num_replicas" not in config
    assert ServeOptions(3, None, None, 1, None).deployment_options()["num_replicas"] == 3
