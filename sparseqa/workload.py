"""The inputs every latency measurement times: the bundled question/passage pairs, tokenized to exactly a chosen
number of tokens, and one batch-1 forward pass over them. The benchmark and the kernel choice both time these, so
their numbers compare."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from .calibration import example_pairs


class Engine(Protocol):
    """What a forward pass needs of an engine (``runtimes.QAEngine`` has it)."""

    tokenizer: Callable[..., object]
    input_names: Sequence[str]

    def infer(self, inputs: dict[str, np.ndarray]) -> object: ...


def benchmark_inputs(engine: Engine, seq_len: int) -> list[dict[str, np.ndarray]]:
    """The bundled question/passage pairs, tokenized by ``engine``'s tokenizer to exactly ``seq_len`` tokens each."""
    questions, passages = zip(*example_pairs())
    try:
        encoding = engine.tokenizer(
            list(questions),
            list(passages),
            truncation="only_second",
            padding="max_length",
            max_length=seq_len,
            return_tensors="np",
        )
    except Exception as error:  # the tokenizers library raises a bare Exception when a question alone is too long
        raise ValueError(
            f"the example questions do not fit in {seq_len} tokens with this tokenizer: use longer sequence lengths"
        ) from error
    arrays = {name: encoding[name].astype(np.int64) for name in engine.input_names if name in encoding}
    if arrays["input_ids"].shape[1] != seq_len:
        raise ValueError(
            f"the tokenizer made {arrays['input_ids'].shape[1]} tokens instead of {seq_len}: use longer sequence lengths"
        )
    return [{name: array[index : index + 1] for name, array in arrays.items()} for index in range(len(questions))]


def forward_pass(engine: Engine, seq_len: int) -> Callable[[], object]:
    """One batch-1 forward pass of ``engine`` at ``seq_len`` tokens per call, cycling through the example pairs."""
    inputs = itertools.cycle(benchmark_inputs(engine, seq_len))
    return lambda: engine.infer(next(inputs))
