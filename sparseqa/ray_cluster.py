"""Joining or starting the Ray cluster that ``serve`` and ``eval --ray`` run on.

Ray is imported only here and in the modules that call ``connect``, so ``app.py`` and the other commands start
without it. Every failure a user can cause (a wrong ``--ray-address``, too few CPUs for what was asked) is a
``ClusterError`` with one line saying what to do.
"""

from __future__ import annotations

import logging
import os
import socket

from .runtimes import QAEngine


class ClusterError(RuntimeError):
    """The cluster cannot be reached or cannot hold what was asked; the message says what to do."""


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address``, or start a local one on 127.0.0.1 (with ``num_cpus``, default all).

    Does nothing when this process is already connected (a test's shared cluster, a second command in one process).
    """
    import ray

    if ray.is_initialized():
        return
    # Ray's own start-up lines and its workers' logs are noise in a command's output; its errors still raise.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    options = {"logging_level": logging.WARNING, "log_to_driver": False, "configure_logging": True}
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", include_dashboard=True, **options)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as problem:
        reason = " ".join(str(problem).split())[:160] or type(problem).__name__
        if address:
            raise ClusterError(
                f"cannot join the Ray cluster at {address} ({reason}): check the address (the head's "
                "`ray start --head` prints it) or drop --ray-address to start a local cluster"
            ) from None
        raise ClusterError(f"cannot start a local Ray cluster ({reason})") from None


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse at once an address nothing answers on: Ray itself retries an unreachable head for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        if address in ("auto", "local"):
            return
        raise ClusterError(
            f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, as `ray start --head` prints)"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as problem:
        raise ClusterError(
            f"cannot join the Ray cluster at {address} ({problem.strerror or problem}): check the address (the "
            "head's `ray start --head` prints it) or drop --ray-address to start a local cluster"
        ) from None


def require_cpus(wanted: float, what: str) -> None:
    """Refuse, in one line, a request for more CPUs than the connected cluster has in all."""
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)
    if wanted > total:
        raise ClusterError(
            f"{what} need {wanted:g} CPUs but the Ray cluster has {total:g}: ask for fewer, or add machines "
            "with `ray start --address HEAD:6379` on each"
        )


def node_ip() -> str:
    """This worker's node address, as the cluster names it."""
    import ray

    return ray.util.get_node_ip_address()


def live_actors(class_name: str) -> list:
    """The connected cluster's live actors of ``class_name`` (Ray's state API, which needs the dashboard).

    The cluster's address is passed on: left to itself the state API may find another cluster on this machine.
    """
    import ray
    from ray.util.state import list_actors

    return list_actors(
        address=ray.get_runtime_context().gcs_address,
        filters=[("class_name", "=", class_name), ("state", "=", "ALIVE")],
    )


def engine_facts(engine: QAEngine) -> QAEngine:
    """What a loaded engine is, without its compiled model: a plain ``QAEngine`` that pickles across processes."""
    return QAEngine(
        model_id=engine.model_id,
        runtime=engine.runtime,
        precision=engine.precision,
        tokenizer=None,
        input_names=list(engine.input_names),
        threads=engine.threads,
        notes=list(engine.notes),
        kernels=engine.kernels,
        kernel_isa=engine.kernel_isa,
        kernel_fallback=engine.kernel_fallback,
    )
