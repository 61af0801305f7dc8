"""``eval --ray``: the same SQuAD evaluation with the questions spread over Ray workers, one engine per worker.

Each worker is a Ray actor that loads the configuration's engine once, answers one untimed warm-up question, and
then answers chunks of questions with ``evaluate.answer_question``, the function the one-process eval uses, so the
answers are the same. The driver keeps the bookkeeping: a queue of chunks, at most two chunks in flight per worker,
and a table of the questions already answered.

Ray actors directly rather than Ray Data's ``map_batches`` with an actor pool: the questions are already a list in
the driver's memory (no dataset to read), and what this command must guarantee is exact: every question answered
exactly once, the chunk of a worker that dies re-run on another, progress as questions finish, and a speed that
leaves out the engines' loading and warm-up. With actors each of those is a few visible lines below; Ray Data
would retry failed tasks by itself, but it also schedules its own read and split tasks beside the actor pool, which
on a small cluster competes with the engines for CPUs, and its retries happen where this command cannot count them.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable

from .evaluate import EvalRun, QuestionOutcome, SquadQuestion, answer_question, scored_run, warm_up
from .ray_cluster import ClusterError, connect, engine_facts, node_ip, require_cpus
from .runtimes import QAEngine

# A dead worker is replaced this many times per configuration before the run gives up (a crash loop is a bug).
MAX_REPLACEMENTS = 4
IN_FLIGHT_PER_WORKER = 2


class EvalWorker:
    """One engine on one Ray worker (a Ray actor once ``ray.remote`` wraps it in ``_worker_class``)."""

    def __init__(self, configuration: tuple, threads: int, decoding: str, warmup: list[SquadQuestion]):
        from .options import quiet_libraries
        from .models import ModelLoadError
        from .runtimes import load_engine

        quiet_libraries()
        self.decoding = decoding
        self.engine = None
        self.problem: tuple[str, str] | None = None
        model, runtime, precision, kernels = configuration
        try:
            self.engine = load_engine(model, runtime, precision, threads=threads, kernels=kernels)
        except (ModelLoadError, ValueError) as problem:
            # Kept for facts() to report: an exception in an actor's constructor reaches the driver as a dead actor.
            self.problem = (type(problem).__name__, str(problem))
            return
        warm_up(self.engine, warmup, decoding)

    def facts(self) -> tuple[QAEngine | None, tuple[str, str] | None, str, int]:
        """The loaded engine's facts (or why it did not load), this worker's node address and process id."""
        return (engine_facts(self.engine) if self.engine else None), self.problem, node_ip(), os.getpid()

    def answer(self, chunk: list[SquadQuestion]) -> list[QuestionOutcome]:
        """Answer a chunk of questions, as the one-process eval answers each."""
        return [answer_question(self.engine, question, self.decoding) for question in chunk]


def _worker_class(threads: int):
    import ray

    # No restarts by Ray: the driver replaces a dead worker itself, so it knows which chunks were lost.
    return ray.remote(num_cpus=threads, max_restarts=0, max_task_retries=0)(EvalWorker)


def cluster_workers(threads: int) -> int:
    """How many workers of ``threads`` CPUs each the connected cluster holds (at least one)."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1) // threads))


def evaluate_on_ray(
    configuration: tuple[str, str, str, str | None],
    questions: list[SquadQuestion],
    data: str,
    *,
    decoding: str = "run_qa",
    threads: int | None = None,
    progress: bool = True,
    workers: int | None = None,
    chunk_size: int | None = None,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    on_answers: Callable[[list[QuestionOutcome]], None] | None = None,
) -> EvalRun:
    """Answer ``questions`` with one (model, runtime, precision, kernels) on ``workers`` Ray workers, ``threads``
    CPUs each (default 1; workers default to as many as the cluster's CPUs hold), as ``evaluate_configuration`` does
    in one process. Call ``ray_cluster.connect`` first.

    A worker that dies has its unfinished chunks re-run by the others and is replaced. Each question's answer is
    accepted once, from the first chunk holding it that comes back; ``on_answers`` sees every accepted chunk.
    Raises ``ModelLoadError`` or ``ValueError`` when the engine does not load, ``ClusterError`` when the cluster
    cannot hold the workers or every worker keeps dying.
    """
    import ray
    from ray.exceptions import RayActorError
    from tqdm import tqdm

    from .models import ModelLoadError

    threads = threads or 1
    workers = workers or cluster_workers(threads)
    require_cpus(workers * threads, f"{workers} workers of {threads} threads")
    chunk_size = chunk_size or max(1, min(16, len(questions) // (workers * 8)))
    worker_class = _worker_class(threads)

    def start_worker():
        return worker_class.remote(configuration, threads, decoding, questions[:1])

    pool = [start_worker() for _ in range(workers)]
    started = ray.get([worker.facts.remote() for worker in pool])  # the engines load side by side
    for _engine, problem, _node, _pid in started:
        if problem is not None:
            for worker in pool:
                ray.kill(worker)
            kind, message = problem
            raise (ModelLoadError if kind == "ModelLoadError" else ValueError)(message)
    facts = started[0][0]
    nodes = sorted({node for _engine, _problem, node, _pid in started})
    report(f"  {workers} Ray workers of {threads} threads on {len(nodes)} node(s): {', '.join(nodes)}")

    chunks = deque(enumerate(questions[start : start + chunk_size] for start in range(0, len(questions), chunk_size)))
    answered: dict[int, list[QuestionOutcome]] = {}  # chunk number -> its answers
    in_flight: dict = {}  # object ref -> (worker, (chunk number, chunk))
    replacements = 0
    bar = tqdm(total=len(questions), desc=f"{facts.label} on Ray", unit="q", disable=not progress, file=sys.stderr)
    began = time.perf_counter()
    try:
        while chunks or in_flight:
            for worker in pool:
                while chunks and sum(owner is worker for owner, _ in in_flight.values()) < IN_FLIGHT_PER_WORKER:
                    chunk = chunks.popleft()
                    in_flight[worker.answer.remote(chunk[1])] = (worker, chunk)
            done, _ = ray.wait(list(in_flight), num_returns=1)
            worker, chunk = in_flight.pop(done[0])
            try:
                outcomes = ray.get(done[0])
            except RayActorError:
                chunks.appendleft(chunk)
                if worker in pool:
                    pool.remove(worker)
                    if replacements >= MAX_REPLACEMENTS:
                        if not pool:
                            raise ClusterError(
                                f"every Ray worker died and {MAX_REPLACEMENTS} replacements too: see `ray logs`"
                            ) from None
                    else:
                        replacements += 1
                        pool.append(start_worker())
                        report(f"  a Ray worker stopped: its questions are re-run on the others ({replacements} "
                               "replaced so far)")
                continue
            # A chunk comes back at most once (a lost one is queued again only when its worker died), so each
            # question is answered once; checked rather than trusted, since a duplicate would skew the score.
            if chunk[0] in answered:
                raise RuntimeError("a chunk of questions came back twice from the Ray workers: please report this")
            answered[chunk[0]] = outcomes
            bar.update(len(outcomes))
            if on_answers is not None:
                on_answers(outcomes)
        elapsed = time.perf_counter() - began
    finally:
        bar.close()
        for worker in pool:
            ray.kill(worker)
    outcomes = [outcome for number in sorted(answered) for outcome in answered[number]]
    return scored_run(facts, questions, data, decoding, outcomes, elapsed)


def ray_evaluator(address: str | None, workers: int | None, threads: int | None) -> Callable[..., EvalRun]:
    """Connect to (or start) the cluster and check it holds the workers; the ``evaluate`` for ``run_configurations``."""
    import functools

    if workers is not None and workers < 1:
        raise ClusterError("--ray-workers must be at least 1")
    connect(address)
    if workers is not None:
        require_cpus(workers * (threads or 1), f"{workers} workers of {threads or 1} threads")
    return functools.partial(evaluate_on_ray, workers=workers)
