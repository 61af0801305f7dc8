"""Question/passage windows and answer-span decoding.

transformers 5 dropped the question-answering pipeline, so the span search lives here. The tokenizer does the
windows and the character offsets; this module only picks the best spans from the model's start/end logits and
maps them back to exact substrings of the passage.
"""

from __future__ import annotations

import re
import threading
import unicodedata
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # transformers takes seconds to import; the CLI's argument errors should not wait for it
    from transformers import BatchEncoding, PreTrainedTokenizerFast

MAX_LENGTH = 384
STRIDE = 128
MAX_ANSWER_TOKENS = 30
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
CLS_POSITION = 0  # BERT windows are [CLS] question [SEP] passage [SEP]


class InputError(ValueError):
    """A question or passage the model cannot answer; the message says what to change."""


# A fast tokenizer sets truncation and padding on its shared Rust backend for every call, so two threads tokenizing
# at once fail with "Already borrowed" or get each other's settings: each tokenizer is used by one thread at a time.
_tokenizer_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_tokenizer_locks_guard = threading.Lock()


def _tokenizer_lock(tokenizer: PreTrainedTokenizerFast) -> threading.Lock:
    with _tokenizer_locks_guard:
        return _tokenizer_locks.setdefault(tokenizer, threading.Lock())


@dataclass(frozen=True)
class Span:
    """One candidate answer: the exact passage substring ``passage[start:end]`` and its probability."""

    text: str
    start: int
    end: int
    score: float


def check_text(question: str, passage: str) -> None:
    """Refuse an empty or malformed question or passage; cheap, so callers can check before loading a model."""
    if not question.strip():
        raise InputError("the question is empty: type a question about the passage")
    if not passage.strip():
        raise InputError("the passage is empty: paste the text the answer should come from")
    for name, text in (("question", question), ("passage", passage)):
        # Lone surrogates come from undecodable command-line bytes or escaped JSON; the tokenizer cannot take them.
        malformed = LONE_SURROGATE.search(text)
        if malformed:
            raise InputError(
                f"the {name} is not valid Unicode (character {malformed.start()} is a lone surrogate): "
                "enter it as UTF-8 text"
            )


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
    check_text(question, passage)
    question = question.strip()
    lock = _tokenizer_lock(tokenizer)
    with lock:
        question_tokens = len(tokenizer(question, add_special_tokens=False)["input_ids"])
    if question_tokens == 0:
        raise InputError("the question has no words the model can read: ask it with letters or digits")
    # [CLS] question [SEP] passage [SEP]: the passage needs room for more than the stride in every window.
    room = max_length - question_tokens - 3
    if room <= stride:
        raise InputError(
            f"the question is too long ({question_tokens} tokens): keep it under {max_length - stride - 3} tokens"
        )
    with lock:
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
    score is the probability p(start) * p(end), each a softmax over the passage tokens and [CLS] of its window, as
    the transformers 4.x pipeline computed it ([CLS] takes the "no answer" share but is never an answer). A span
    that starts or ends inside a word is widened to whole words (a word cut by a window edge included); a span
    found in two overlapping windows keeps its higher score.
    """
    words = _passage_words(encoding)
    best: dict[tuple[int, int], float] = {}
    for window in range(start_logits.shape[0]):
        positions = np.flatnonzero(np.array(encoding.sequence_ids(window), dtype=object) == 1)
        if not positions.size:
            continue
        scored = np.concatenate(([CLS_POSITION], positions))
        log_start = _log_softmax(start_logits[window, scored].astype(np.float64))[1:]
        log_end = _log_softmax(end_logits[window, scored].astype(np.float64))[1:]
        pair = log_start[:, None] + log_end[None, :]
        offset = positions[None, :] - positions[:, None]
        pair[(offset < 0) | (offset >= max_answer_tokens)] = -np.inf
        word_ids = encoding.word_ids(window)
        spans = _window_spans(pair, top_k, lambda i, j: _whole_words(passage, words, word_ids, positions, i, j))
        for span, score in spans.items():
            if score > best.get(span, -1.0):
                best[span] = score
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:top_k]
    return [Span(passage[start:end], start, end, score) for (start, end), score in ranked]


def _window_spans(
    pair: np.ndarray, top_k: int, bounds: Callable[[int, int], tuple[int, int]]
) -> dict[tuple[int, int], float]:
    """The ``top_k`` best distinct character spans of one window's (start, end) log-probabilities.

    Several token pairs can widen onto the same words, so the search takes the best pairs a few at a time until
    it has ``top_k`` distinct spans: a span left out scores no higher than every pair already taken.
    """
    candidates = int(np.isfinite(pair).sum())
    wanted = min(candidates, 4 * top_k + 4)
    while wanted:
        spans: dict[tuple[int, int], float] = {}
        for index in np.argpartition(-pair, wanted - 1, axis=None)[:wanted]:
            i, j = np.unravel_index(index, pair.shape)
            span = bounds(int(i), int(j))
            spans[span] = max(spans.get(span, 0.0), float(np.exp(pair[i, j])))
        if len(spans) >= top_k or wanted == candidates:
            return spans
        wanted = min(candidates, 4 * wanted)
    return {}


def _passage_words(encoding: BatchEncoding) -> dict[int, tuple[int, int]]:
    """Character bounds of every passage word, joined over all windows: a window edge can cut a word in two."""
    words: dict[int, tuple[int, int]] = {}
    for window in encoding.encodings:
        for word, sequence, (start, end) in zip(window.word_ids, window.sequence_ids, window.offsets):
            if sequence == 1:
                known = words.get(word)
                words[word] = (start, end) if known is None else (min(known[0], start), max(known[1], end))
    return words


def _whole_words(
    passage: str, words: dict[int, tuple[int, int]], word_ids: list, positions: np.ndarray, first: int, last: int
) -> tuple[int, int]:
    """Character bounds of the whole words that the passage tokens ``first..last`` of one window touch."""
    start = words[word_ids[positions[first]]][0]
    end = words[word_ids[positions[last]]][1]
    # The normalizer strips accents, so a word's offsets stop before a trailing combining mark (e + U+0301).
    while end < len(passage) and unicodedata.category(passage[end]) in ("Mn", "Me"):
        end += 1
    return start, end
