"""Shared fixtures: tiny BERT QA models built locally once per session, and a private cache directory.

Nothing here touches the network: the vocabulary is the words of the bundled examples and of the tiny SQuAD file,
and the weights are random.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sparseqa.service import QAService

# Every test run gets its own cache (IR, built models), so runs never see each other's files and the hub is never
# asked: set before sparseqa reads it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SPARSEQA_CALIBRATION", "examples")
# The trained tiny model takes minutes to build, so unlike everything else it outlives the session: kept under the
# user's cache (SPARSEQA_TEST_MODELS moves it), keyed by seed and training-code version, built once per machine.
TRAINED_MODELS = Path(
    os.environ.get("SPARSEQA_TEST_MODELS")
    or Path(os.environ.get("SPARSEQA_CACHE") or Path.home() / ".cache" / "sparseqa") / "test-models"
)


def pytest_configure(config: pytest.Config) -> None:
    # Tracing BERT for OpenVINO export warns about every Python-level branch; the warnings say nothing about us.
    config.addinivalue_line("filterwarnings", "ignore::torch.jit.TracerWarning")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore::FutureWarning")


@pytest.fixture(scope="session", autouse=True)
def sparseqa_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh SPARSEQA_CACHE for the session (also seen by subprocesses, which inherit the environment)."""
    cache = tmp_path_factory.mktemp("sparseqa-cache")
    previous = os.environ.get("SPARSEQA_CACHE")
    os.environ["SPARSEQA_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("SPARSEQA_CACHE", None)
    else:
        os.environ["SPARSEQA_CACHE"] = previous


TINY_SQUAD = Path(__file__).parent / "data" / "squad_tiny.json"


def build_tiny_model(directory: Path, *, orientation: str | None, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT QA model with a vocabulary of the bundled examples and the tiny SQuAD file: 80% of the
    blocks of ``orientation`` ("1x4": 1 output × 4 consecutive inputs, "4x1": 4 consecutive outputs × 1 input) of
    every encoder Linear zeroed (lowest mean |w| first, as the seed model was pruned), or dense for None."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    from sparseqa.evaluate import load_squad
    from sparseqa.models import build_tokenizer, build_vocab, example_texts, prune_blocks

    texts = example_texts() + [text for q in load_squad(TINY_SQUAD) for text in (q.context, q.question)]
    tokenizer = build_tokenizer(build_vocab(texts))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    model = BertForQuestionAnswering(config).eval()
    if orientation is not None:
        prune_blocks(model, 0.8, orientation, "magnitude", seed=seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_sparse_model_4x1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny QA model pruned as the seed model: 80% of its encoder Linears' 4x1 blocks (4 consecutive
    outputs × 1 input) zero."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-sparse-4x1"), orientation="4x1", seed=1)


@pytest.fixture(scope="session")
def tiny_sparse_model_1x4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny QA model with 80% of its encoder Linears' 1x4 blocks (1 output × 4 consecutive inputs)
    zero: the other orientation, which has kernels of its own."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-sparse-1x4"), orientation="1x4", seed=1)


@pytest.fixture(scope="session")
def tiny_sparse_model(tiny_sparse_model_4x1: Path) -> Path:
    """The tiny sparse model of tests that hold for any pattern: the seed model's, 4x1."""
    return tiny_sparse_model_4x1


@pytest.fixture(scope="session")
def tiny_dense_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny dense QA model (random weights, no pruning)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-dense"), orientation=None, seed=2)


@pytest.fixture(scope="session")
def trained_tiny_model() -> Path:
    """Directory of the small QA model trained on generated questions and pruned as the seed model, to 80% 4x1
    blocks (4 consecutive outputs × 1 input): answers that mean something, with its held-out questions in
    ``tinytrain.HELDOUT_FILE``; built once per machine, then reused."""
    from sparseqa.tinytrain import cached_tiny_model

    return cached_tiny_model(TRAINED_MODELS, seed=0, pattern="4x1")


@pytest.fixture(scope="session")
def trained_tiny_model_1x4() -> Path:
    """The same trained model pruned to 80% 1x4 blocks (1 output × 4 consecutive inputs), the other orientation;
    built once per machine, then reused."""
    from sparseqa.tinytrain import cached_tiny_model

    return cached_tiny_model(TRAINED_MODELS, seed=0, pattern="1x4")


@dataclass(frozen=True)
class DemoServer:
    """The web demo running on the tiny models: the loaded service it calls, and its URL."""

    service: QAService
    url: str


@pytest.fixture(scope="session")
def demo_server(tiny_sparse_model: Path, tiny_dense_model: Path) -> Iterator[DemoServer]:
    """The web demo on the tiny models (sparse OpenVINO int8 pruned the seed's way, dense PyTorch), served once on a
    free local port."""
    import socket

    from sparseqa.interface import build_demo, launch
    from sparseqa.service import QAService, Settings

    service = QAService.load(Settings(model=str(tiny_sparse_model), dense_model=str(tiny_dense_model)))
    demo = build_demo(service)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch(demo, port=port, prevent_thread_lock=True, quiet=True)
    yield DemoServer(service, demo.local_url)
    demo.close(verbose=False)


@pytest.fixture
def run_together() -> Callable[[list[Callable[[], object]]], list]:
    """Run each call on its own thread, all released at once; their results in order, the first failure re-raised."""

    def run(calls: list[Callable[[], object]]) -> list:
        barrier = threading.Barrier(len(calls))

        def released(call: Callable[[], object]) -> object:
            barrier.wait()
            return call()

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            return list(pool.map(released, calls))

    return run


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """One local Ray instance on 127.0.0.1 for every Ray test of the session (it takes seconds to start): 4 logical
    CPUs, so two 1-thread replicas or workers and their helpers fit even on a 2-core machine."""
    import ray

    from sparseqa.ray_cluster import connect

    connect(num_cpus=4)
    yield
    ray.shutdown()
