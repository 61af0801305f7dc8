"""What every entry point shares: the command line (``python -m sparseqa``), the web app (``app.py``) and the Ray
entry points choose models and kernels with the same options, fail on them with the same one-line errors, and keep
library chatter out of their output the same way."""

from __future__ import annotations

import argparse
import logging
import os
import warnings

from .models import DENSE_ID, SPARSE_ID, SYNTHETIC_DENSE, SYNTHETIC_SPARSE
from .runtimes import KERNELS

SYNTHETIC_NOTE = "synthetic models have random weights: the answers are meaningless, the latencies are real"


class UsageError(Exception):
    """Arguments that do not fit together; exit code 2 like argparse's own errors."""


def add_model_arguments(parser: argparse.ArgumentParser, *, dense: bool = True) -> None:
    """--model / --synthetic (and --dense-model), shared by every command that loads models."""
    parser.add_argument("--model", help=f"sparse model: hub id or local directory (default {SPARSE_ID})")
    if dense:
        parser.add_argument("--dense-model", help=f"dense baseline: hub id or local directory (default {DENSE_ID})")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="use locally built random-weight BERT-base models (no download; real latency, meaningless answers)",
    )


KERNELS_HELP = (
    "who computes the sparse model's int8 Linears: auto (the first load on a machine times OpenVINO's kernels, their "
    "sparse weight decompression where the CPU has AMX and sparseqa's sparse kernels, keeps the fastest and caches "
    "the decision), or force one: openvino, openvino-sparse-weights, sparseqa; default SPARSEQA_KERNELS, else auto"
)


def add_kernels_argument(parser: argparse.ArgumentParser) -> None:
    """--kernels, shared by every command that loads the sparse model on OpenVINO."""
    parser.add_argument("--kernels", choices=KERNELS, help=KERNELS_HELP)


def chosen_models(args: argparse.Namespace) -> tuple[str, str]:
    """(sparse, dense) model names from --model, --dense-model and --synthetic."""
    if args.synthetic and args.model:
        raise UsageError("--synthetic and --model exclude each other: pass one")
    if args.synthetic:
        return SYNTHETIC_SPARSE, getattr(args, "dense_model", None) or SYNTHETIC_DENSE
    return args.model or SPARSE_ID, getattr(args, "dense_model", None) or DENSE_ID


def quiet_libraries() -> None:
    """Keep library chatter (progress bars, deprecation notes) out of what the user reads."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("nncf", "huggingface_hub", "optimum", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
