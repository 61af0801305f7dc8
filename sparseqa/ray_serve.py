"""``python -m sparseqa serve``: the demo's page and API, answered by N replicas of the models on Ray Serve.

How it is built: the models are a Serve deployment (``QAModels``: each replica loads the ``QAService`` once and
answers ``ask`` and ``benchmark``), and the page is the very Gradio Blocks ``app.py`` serves (``build_demo``),
launched the same way (``interface.launch``: same queue, theme, host, port and auth) in this one process, where it
calls the replicas through a Serve ``DeploymentHandle`` (``ReplicatedService``). Serve routes each call to a
replica with room for it, replaces replicas that die, and autoscales between ``--min-replicas`` and
``--max-replicas``.

Why not Ray Serve's ``GradioServer``/``GradioIngress`` (``ray.serve.gradio_integrations``), which runs the whole
Gradio app inside each replica: Gradio's queue keeps each event's state in the process that received
``/queue/join`` and streams it back on a second request, so with more than one replica behind Serve's proxy the
follow-up lands on another replica and fails ("Event not found in queue ... enable stickiness"; gradio-app/gradio
#10487, ray-project/ray #36977 and #38608), and ``GradioIngress`` builds the app with
``routes.App.create_app`` rather than ``launch``, so the queue limits, theme, CSS and auth that ``app.py`` passes
to ``launch`` would be lost. One page process with N model replicas keeps the page and the ``/ask`` and
``/benchmark`` API byte for byte ``app.py``'s, and scales the part that costs: the models. Serve's documented
model-composition pattern (an ingress calling deployments through handles) is the same shape.

Each answer carries which replica on which node computed it (``service.ServedBy``), shown as the latency table's
last column and in the JSON; where several replicas share a node the cell says their timings disturb each other.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from .bench import BenchResult, BenchSettings, ProgressCallback
from .ray_cluster import ClusterError, connect, engine_facts, live_actors, node_ip, require_cpus
from .runtimes import QAEngine
from .service import Comparison, QAService, ServedBy, Settings
from .timing import RequestTimeout

log = logging.getLogger(__name__)

APP_NAME = "sparseqa"
DEPLOYMENT_NAME = "QAModels"
# Like app.py's Gradio queue: two requests at a time per replica (timed runs are serialized in each process).
REQUESTS_PER_REPLICA = 2
# Seconds a request may wait for a replica beyond the service's own request timeout (queueing, a replica restarting).
ROUTING_SLACK_S = 30.0
PLACEMENT_TTL_S = 10.0
RETRY_PAUSE_S = 0.5


class QAModels:
    """One replica: the loaded ``QAService`` (a Serve deployment once ``serve.deployment`` wraps it)."""

    def __init__(self, settings: Settings):
        import ray
        from ray import serve

        from .options import quiet_libraries

        quiet_libraries()
        self.service = QAService.load(settings, strict=False, report=log.info)
        self.served_by = ServedBy(
            node=node_ip(),
            node_id=ray.get_runtime_context().get_node_id(),
            replica=serve.get_replica_context().replica_id.unique_id,
        )

    def describe(self) -> tuple[Settings, QAEngine | None, QAEngine | None, str | None]:
        """The loaded service without its compiled models: what the page shows about them."""
        service = self.service
        sparse, dense = (engine_facts(engine) if engine else None for engine in (service.sparse, service.dense))
        return service.settings, sparse, dense, service.load_error

    def page_facts(self):
        """The page's facts (``interface.PageFacts``) measured here: this replica's machine and loaded model."""
        from .interface import PageFacts

        return PageFacts.gather(self.service)

    def ask(self, passage: str, question: str, runs: int, warmup: int, top_k: int) -> Comparison:
        """``QAService.ask`` on this replica, marked with who answered."""
        comparison = self.service.ask(passage, question, runs=runs, warmup=warmup, top_k=top_k)
        return replace(comparison, served_by=self.served_by)

    def benchmark(self, settings: BenchSettings) -> Iterator[tuple]:
        """The web benchmark on this replica, streamed: ("progress", fraction, text) items, then ("result", result)."""
        updates: queue.Queue = queue.Queue()
        outcome: list = []

        def run() -> None:
            try:
                outcome.append(("result", self.service.benchmark(settings, lambda *update: updates.put(update))))
            except Exception as problem:  # re-raised below, in the caller's stream
                outcome.append(("error", problem))
            updates.put(None)

        threading.Thread(target=run, daemon=True).start()
        while (update := updates.get()) is not None:
            yield ("progress", *update)
        kind, value = outcome[0]
        if kind == "error":
            raise value
        yield ("result", value)


class ReplicaPlacement:
    """How many of the deployment's live replicas run on each node, read from Ray's state API every few seconds."""

    def __init__(self, ttl_s: float = PLACEMENT_TTL_S):
        self.ttl_s = ttl_s
        self._read_at = -float("inf")
        self._per_node: Counter[str] = Counter()
        self._lock = threading.Lock()

    def replicas_on(self, node_id: str) -> int | None:
        """Live replicas on ``node_id`` (None when the state API cannot say)."""
        with self._lock:
            if time.monotonic() - self._read_at > self.ttl_s:
                self._per_node = self._read()
                self._read_at = time.monotonic()
            return self._per_node.get(node_id) or None

    @staticmethod
    def _read() -> Counter[str]:
        try:
            actors = live_actors(f"ServeReplica:{APP_NAME}:{DEPLOYMENT_NAME}")
        except Exception as problem:  # no dashboard on this cluster: the page then just says nothing about sharing
            log.warning("cannot read where the replicas run: %s", problem)
            return Counter()
        return Counter(actor.node_id for actor in actors)


class ReplicatedService(QAService):
    """A ``QAService`` whose engines run on Serve replicas: ``ask`` and ``benchmark`` go through a handle."""

    def __init__(self, handle, settings: Settings, sparse, dense, error: str | None):
        super().__init__(settings, sparse, dense, error)
        self.handle = handle
        self.placement = ReplicaPlacement()

    def ask(self, passage: str, question: str, *, runs: int = 3, warmup: int = 1, top_k: int = 3) -> Comparison:
        """Answer on a replica; a replica that dies under the request has it retried on another, within the request
        timeout. Raises what ``QAService.ask`` raises, or RequestTimeout when no replica answered in time."""
        from ray.exceptions import RayActorError, RayTaskError

        limits = self.settings.limits
        limits.check(passage, question, runs)  # refused here, before a replica is asked
        deadline = time.monotonic() + limits.request_timeout_s + ROUTING_SLACK_S
        while True:
            response = self.handle.ask.remote(passage, question, runs, warmup, top_k)
            try:
                comparison = response.result(timeout_s=max(1.0, deadline - time.monotonic()))
                break
            except RayTaskError as error:  # the replica raised: the service's own exception, as one line
                raise _cause(error) from None
            except TimeoutError:
                response.cancel()
                raise RequestTimeout(
                    f"no replica answered within {limits.request_timeout_s + ROUTING_SLACK_S:.0f} s: the replicas are "
                    "busy or restarting; ask again, or start serve with more replicas"
                ) from None
            except RayActorError:
                if time.monotonic() >= deadline:
                    raise RequestTimeout("the replica answering stopped and none took over in time: ask again")
                log.warning("the replica answering stopped; asking another")
                time.sleep(RETRY_PAUSE_S)  # until Serve stops routing to the dead replica
        sharing = self.placement.replicas_on(comparison.served_by.node_id)
        return replace(comparison, served_by=replace(comparison.served_by, replicas_on_node=sharing))

    def benchmark(self, settings: BenchSettings, progress: ProgressCallback | None = None) -> BenchResult:
        """The web benchmark on one replica (its machine), with its progress streamed back."""
        from ray.exceptions import RayTaskError

        try:
            for kind, *values in self.handle.options(stream=True).benchmark.remote(settings):
                if kind == "progress" and progress is not None:
                    progress(*values)
                elif kind == "result":
                    return values[0]
        except RayTaskError as error:
            raise _cause(error) from None
        raise RuntimeError("the benchmark's replica stopped before it finished")


def _cause(error: Exception) -> Exception:
    """The exception a replica raised, without Ray's wrapping and remote traceback."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, Exception) else RuntimeError(str(error).strip().splitlines()[-1])


@dataclass(frozen=True)
class ServeOptions:
    """How many replicas, of how many threads, on which cluster."""

    replicas: int | None
    min_replicas: int | None
    max_replicas: int | None
    threads_per_replica: int
    ray_address: str | None

    @property
    def most_replicas(self) -> int:
        return self.max_replicas or self.replicas or 1

    def check(self) -> None:
        """Refuse options that do not fit together, in one line."""
        autoscaling = self.min_replicas is not None or self.max_replicas is not None
        if autoscaling and self.replicas is not None:
            raise ClusterError(
                "--replicas is a fixed count; --min-replicas/--max-replicas autoscale: pass one or the other"
            )
        if autoscaling and (self.min_replicas is None or self.max_replicas is None):
            raise ClusterError("autoscaling takes both --min-replicas and --max-replicas")
        for option, value in (
            ("--replicas", self.replicas),
            ("--max-replicas", self.max_replicas),
            ("--threads-per-replica", self.threads_per_replica),
        ):
            if value is not None and value < 1:
                raise ClusterError(f"{option} must be at least 1")
        if self.min_replicas is not None and not 0 <= self.min_replicas <= self.max_replicas:
            raise ClusterError("--min-replicas must be between 0 and --max-replicas")

    def deployment_options(self) -> dict:
        """``serve.deployment`` options: the replica count (or autoscaling range) and each replica's CPUs."""
        options = {
            "name": DEPLOYMENT_NAME,
            "ray_actor_options": {"num_cpus": self.threads_per_replica},
            "max_ongoing_requests": REQUESTS_PER_REPLICA,
            "health_check_period_s": 2.0,
            "health_check_timeout_s": 30.0,
        }
        if self.max_replicas is not None:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": 1,
            }
        else:
            options["num_replicas"] = self.replicas or 1
        return options


def deploy(settings: Settings, options: ServeOptions) -> ReplicatedService:
    """Connect to the cluster, start the replicas (each loads its engines) and return the service the page calls.

    Raises ClusterError when the cluster cannot be reached or cannot hold the replicas.
    """
    from ray import serve

    options.check()
    connect(options.ray_address)
    # Autoscaling starts at --min-replicas; a fixed count must fit now, or Serve would wait for CPUs for ever.
    needed = (options.min_replicas if options.max_replicas is not None else options.replicas or 1) or 0
    require_cpus(needed * options.threads_per_replica, f"{needed} replicas of {options.threads_per_replica} threads")
    serve.start(proxy_location="Disabled")
    replica_settings = replace(settings, threads=options.threads_per_replica)
    deployment = serve.deployment(QAModels, **options.deployment_options())
    handle = serve.run(deployment.bind(replica_settings), name=APP_NAME, route_prefix=None)
    return ReplicatedService(handle, *handle.describe.remote().result())


def serve_parser(environ: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    """``app.py``'s arguments (models, precision, kernels, host, port, auth) plus the replicas and the cluster."""
    from .interface import app_parser

    parser = app_parser(environ)
    parser.prog = "python -m sparseqa serve"
    parser.description = "The web demo, its models answered by replicas on Ray Serve (one machine or many)."
    group = parser.add_argument_group("replicas (Ray Serve)")
    group.add_argument("--replicas", type=int, help="a fixed number of model replicas (default 1)")
    group.add_argument("--min-replicas", type=int, help="autoscale: at least this many replicas")
    group.add_argument("--max-replicas", type=int, help="autoscale: at most this many replicas")
    group.add_argument(
        "--threads-per-replica", type=int, default=1, help="inference threads (and Ray CPUs) per replica (default 1)"
    )
    group.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="join this Ray cluster (HOST:PORT); default: start a local one on 127.0.0.1",
    )
    return parser


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    """Parse, start the replicas, serve the page until interrupted; one-line errors, no traceback."""
    from ray import serve

    from .options import quiet_libraries
    from .interface import build_demo, launch, options_from_args

    parser = serve_parser(environ)
    args = parser.parse_args(argv)
    app = options_from_args(parser, args, environ)
    options = ServeOptions(
        args.replicas, args.min_replicas, args.max_replicas, args.threads_per_replica, args.ray_address
    )
    quiet_libraries()
    try:
        options.check()
        print(f"starting the replicas on Ray Serve ({_replicas_text(options)}), each loading the models ...")
        service = deploy(app.settings, options)
    except ClusterError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if service.load_error:
        print(f"warning: {service.load_error}")
    signal.signal(signal.SIGTERM, _stop)  # a service manager's stop ends the page and the replicas like Ctrl-C
    try:
        demo = build_demo(service, handle_facts(service))
        launch(
            demo,
            host=app.host,
            port=app.port,
            share=app.share,
            auth=app.auth,
            concurrency_limit=options.most_replicas * REQUESTS_PER_REPLICA,
        )
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete(APP_NAME)
    return 0


def _stop(_signal: int, _frame) -> None:
    raise KeyboardInterrupt


def handle_facts(service: ReplicatedService):
    """The page's facts as a replica measures them (its machine, its model's sparsity)."""
    return service.handle.page_facts.remote().result()


def _replicas_text(options: ServeOptions) -> str:
    threads = f"{options.threads_per_replica} thread{'s' if options.threads_per_replica > 1 else ''} each"
    if options.max_replicas is not None:
        return f"{options.min_replicas} to {options.max_replicas} replicas, {threads}"
    count = options.replicas or 1
    return f"{count} replica{'s' if count > 1 else ''}, {threads}"
