"""``python -m sparseqa loadtest``: throughput and latency of a running demo's ``/ask`` under concurrent clients.

Each level of ``--clients`` starts that many clients (one ``gradio_client.Client`` each, as separate visitors
are), which together send ``--requests`` questions from the bundled examples as fast as they are answered. Every
request has a timeout and every level a time budget, and only this machine is asked (127.0.0.1 or localhost), so a
load test cannot run away or hit someone else's server.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

from .models import ASSETS

LOOPBACK = ("127.0.0.1", "localhost")
COLUMNS = ["clients", "requests", "answered", "failed", "questions/s", "p50 ms", "p90 ms", "replicas seen"]


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level: how many requests were answered, how fast, and by how many replicas."""

    clients: int
    requests: int
    answered: int
    failed: int
    seconds: float
    questions_per_second: float
    p50_ms: float | None
    p90_ms: float | None
    replicas_seen: int
    first_error: str | None

    def row(self) -> list:
        def ms(value: float | None) -> str:
            return "" if value is None else f"{value:.0f}"

        return [self.clients, self.requests, self.answered, self.failed, f"{self.questions_per_second:.2f}",
                ms(self.p50_ms), ms(self.p90_ms), self.replicas_seen]


def check_loopback(url: str) -> None:
    """Refuse a URL that is not on this machine: a load test must not hit someone else's server."""
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"loadtest only asks this machine ({', '.join(LOOPBACK)}), not {host!r}: run it where "
                         "the demo runs")


def percentile(values: list[float], fraction: float) -> float | None:
    """The ``fraction`` quantile (inclusive method), or None without values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def run_level(
    url: str, clients: int, requests: int, *, runs: int = 3, timeout_s: float = 300.0, budget_s: float = 1800.0
) -> LevelResult:
    """Send ``requests`` questions to ``url``'s ``/ask`` from ``clients`` concurrent clients; stop starting new ones
    after ``budget_s`` seconds (the rest count as failed)."""
    from gradio_client import Client

    check_loopback(url)
    examples = json.loads((ASSETS / "examples.json").read_text(encoding="utf-8"))
    tickets = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    replicas: set[str] = set()
    errors: list[str] = []
    began = time.monotonic()

    def visitor() -> None:
        client = Client(url, verbose=False)
        while True:
            with lock:
                ticket = next(tickets)
            if ticket >= requests or time.monotonic() - began > budget_s:
                return
            example = examples[ticket % len(examples)]
            sent = time.monotonic()
            try:
                job = client.submit(example["passage"], example["question"], runs, api_name="/ask")
                result = job.result(timeout=timeout_s)[-1]
            except Exception as problem:  # every failure is counted; the first is shown
                with lock:
                    errors.append(" ".join(str(problem).split())[:200] or type(problem).__name__)
                continue
            with lock:
                latencies.append((time.monotonic() - sent) * 1000)
                served_by = result.get("served_by") if isinstance(result, dict) else None
                replicas.add(served_by["replica"] if served_by else "this process")

    with ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(visitor) for _ in range(clients)]:
            future.result()
    seconds = time.monotonic() - began
    return LevelResult(
        clients=clients,
        requests=requests,
        answered=len(latencies),
        failed=requests - len(latencies),
        seconds=seconds,
        questions_per_second=len(latencies) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 0.5),
        p90_ms=percentile(latencies, 0.9),
        replicas_seen=len(replicas),
        first_error=errors[0] if errors else None,
    )


def main(url: str, levels: list[int], requests: int, runs: int, timeout_s: float, json_out: str | None) -> int:
    """Run every level in turn, print the table (and write JSON); exit code 1 when any request failed."""
    import pandas as pd

    check_loopback(url)
    results = []
    for clients in levels:
        result = run_level(url, clients, requests, runs=runs, timeout_s=timeout_s)
        results.append(result)
        print(f"{clients} clients: {result.answered}/{requests} answered in {result.seconds:.1f} s", flush=True)
        if result.first_error:
            print(f"  first failure: {result.first_error}")
    print(f"/ask at {url}, {runs} timed runs per model per question")
    print(pd.DataFrame([result.row() for result in results], columns=COLUMNS).to_string(index=False))
    if json_out:
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump({"url": url, "runs": runs, "levels": [asdict(result) for result in results]}, f, indent=2)
        print(f"wrote {json_out}")
    return 1 if any(result.failed for result in results) else 0
