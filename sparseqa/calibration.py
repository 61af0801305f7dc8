"""Question/passage pairs that int8 quantization calibrates on.

SQuAD v1.1 train samples when the Hugging Face hub is reachable (the data the models were fine-tuned on), the
bundled examples otherwise. ``SPARSEQA_CALIBRATION=examples`` forces the bundled examples, which makes an int8
build reproducible offline. A model directory that ships its own training pairs (``MODEL_PAIRS_FILE``, as
``train-tiny`` writes) calibrates on those whatever the mode: its training data, as SQuAD train is the hub models'.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .models import ASSETS

log = logging.getLogger(__name__)

MODEL_PAIRS_FILE = "sparseqa-calibration-pairs.json"


def example_pairs() -> list[tuple[str, str]]:
    """(question, passage) pairs from ``assets/examples.json``."""
    examples = json.loads((ASSETS / "examples.json").read_text(encoding="utf-8"))
    return [(example["question"], example["passage"]) for example in examples]


def squad_train_pairs(count: int) -> list[tuple[str, str]]:
    """The first ``count`` (question, context) pairs of SQuAD v1.1 train, through ``datasets``."""
    from datasets import load_dataset

    split = load_dataset("squad", split=f"train[:{count}]")
    return [(row["question"], row["context"]) for row in split]


def calibration_mode() -> str:
    """``examples`` when the bundled examples are forced (or the hub is off), else ``auto`` (SQuAD train if reachable).

    Part of the int8 cache key, so an int8 model built from the bundled examples is not reused when they are not asked
    for, nor the other way round.
    """
    if os.environ.get("SPARSEQA_CALIBRATION", "auto") == "examples" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return "examples"
    return "auto"


def calibration_pairs(count: int, model_dir: Path | None = None) -> tuple[list[tuple[str, str]], str]:
    """Up to ``count`` calibration pairs and the name of where they came from."""
    if model_dir is not None and (model_dir / MODEL_PAIRS_FILE).is_file():
        pairs = json.loads((model_dir / MODEL_PAIRS_FILE).read_text(encoding="utf-8"))
        return [(question, passage) for question, passage in pairs[:count]], "generated training"
    if calibration_mode() == "auto":
        try:
            return squad_train_pairs(count), "SQuAD v1.1 train"
        except Exception as error:  # no datasets package or no hub: the bundled examples still calibrate
            log.info("SQuAD train not available for calibration (%s); using the bundled examples", type(error).__name__)
    return example_pairs()[:count], "bundled example"
