"""Question/passage windows and answer-span decoding.

transformers 5 dropped the question-answering pipeline, so the span search lives here. The tokenizer does the
windows and the character offsets; this module only picks the best spans from the model's start/end logits and
maps them back to exact substrings of the passage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers import BatchEncoding, PreTrainedTokenizerFast

MAX_LENGTH = 384
STRIDE = 128
MAX_ANSWER_TOKENS = 30


class InputError(ValueError):
    """A question or passage the model cannot answer; the message says what to change."""


@dataclass(frozen=True)
class Span:
    """One candidate answer: the exact passage substring ``passage[start:end]`` and its probability."""

    text: str
    start: int
    end: int
    score: float


def encode(
    tokenizer: PreTrainedTokenizerFast,
    question: str,
    passage: str,
    max_length: int = MAX_LENGTH,
    stride: int = STRIDE,
    max_windows: int | None = None,
) -> BatchEncoding:
    """Tokenize question + passage into overlapping windows of at most ``max_length`` tokens.

    Only the passage is truncated, so every window holds the whole question; consecutive windows share ``stride``
    passage tokens so an answer near a window edge is seen whole in the next one. More than ``max_windows``
    windows is refused rather than searched partially.
    """
    question = question.strip()
    if not question:
        raise InputError("the question is empty: type a question about the passage")
    if not passage.strip():
        raise InputError("the passage is empty: paste the text the answer should come from")
    question_tokens = len(tokenizer(question, add_special_tokens=False)["input_ids"])
    if question_tokens == 0:
        raise InputError("the question has no words the model can read: ask it with letters or digits")
    # [CLS] question [SEP] passage [SEP]: the passage needs room for more than the stride in every window.
    room = max_length - question_tokens - 3
    if room <= stride:
        raise InputError(
            f"the question is too long ({question_tokens} tokens): keep it under {max_length - stride - 3} tokens"
        )
    encoding = tokenizer(
        question,
        passage,
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="longest",
        return_tensors="np",
    )
    windows = len(encoding["input_ids"])
    if max_windows is not None and windows > max_windows:
        raise InputError(
            f"the passage is too long: it needs {windows} windows of {max_length} tokens and the limit is "
            f"{max_windows}; shorten it"
        )
    if not any(1 in encoding.sequence_ids(i) for i in range(len(encoding["input_ids"]))):
        raise InputError("the passage has no words the model can read: paste text with letters or digits")
    return encoding


def model_inputs(encoding: BatchEncoding, input_names: list[str]) -> dict[str, np.ndarray]:
    """The int64 arrays a BERT-style model takes, restricted to the inputs it declares."""
    return {name: encoding[name].astype(np.int64) for name in input_names if name in encoding}


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    encoding: BatchEncoding,
    passage: str,
    top_k: int = 1,
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
) -> list[Span]:
    """The ``top_k`` most probable distinct answer spans over all windows, best first.

    Spans lie inside the passage, end at or after their start and are at most ``max_answer_tokens`` long. The
    score is the probability p(start) * p(end), each a softmax over the passage tokens of its window, as the
    transformers 4.x pipeline computed it. A span that starts or ends inside a word is widened to whole words.
    """
    best: dict[tuple[int, int], float] = {}
    for window in range(start_logits.shape[0]):
        sequence_ids = encoding.sequence_ids(window)
        in_passage = np.array([sid == 1 for sid in sequence_ids] + [False] * (start_logits.shape[1] - len(sequence_ids)))
        if not in_passage.any():
            continue
        positions = np.flatnonzero(in_passage)
        log_start = _log_softmax(start_logits[window, positions].astype(np.float64))
        log_end = _log_softmax(end_logits[window, positions].astype(np.float64))
        pair = log_start[:, None] + log_end[None, :]
        offset = positions[None, :] - positions[:, None]
        pair[(offset < 0) | (offset >= max_answer_tokens)] = -np.inf
        # Taking a few more than top_k per window leaves room for spans that widen onto the same words.
        wanted = min(pair.size, 4 * top_k + 4)
        flat = np.argpartition(-pair, wanted - 1, axis=None)[:wanted]
        for index in flat:
            i, j = np.unravel_index(index, pair.shape)
            if not np.isfinite(pair[i, j]):
                continue
            start, end = _word_bounds(encoding, window, int(positions[i]), int(positions[j]))
            score = float(np.exp(pair[i, j]))
            if score > best.get((start, end), -1.0):
                best[(start, end)] = score
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:top_k]
    return [Span(passage[start:end], start, end, score) for (start, end), score in ranked]


def _word_bounds(encoding: BatchEncoding, window: int, first_token: int, last_token: int) -> tuple[int, int]:
    """Character bounds of the whole words that the tokens ``first_token..last_token`` touch."""
    first_word = encoding.token_to_word(window, first_token)
    last_word = encoding.token_to_word(window, last_token)
    start = encoding.word_to_chars(window, first_word, sequence_index=1).start
    end = encoding.word_to_chars(window, last_word, sequence_index=1).end
    return start, end
