"""Question/passage windows and the two answer-span decodings.

transformers 5 dropped the question-answering pipeline, so the span search lives here. The tokenizer does the
windows and the character offsets; this module picks answers from the model's start/end logits in one of two ways,
each reproducing a transformers reference step for step:

- ``run_qa``: the evaluation procedure of transformers' ``examples/pytorch/question-answering/run_qa.py`` and
  ``utils_qa.postprocess_qa_predictions``, which produced the EM/F1 on model cards (``eval`` uses it).
- ``demo``: the ranking of the transformers 4.x ``QuestionAnsweringPipeline``, which model-card widgets and most
  tutorials show (``ask``, the API and the web page use it).
"""

from __future__ import annotations

import re
import threading
import unicodedata
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # transformers takes seconds to import; the CLI's argument errors should not wait for it
    from transformers import BatchEncoding, PreTrainedTokenizerFast

MAX_LENGTH = 384
STRIDE = 128
MAX_ANSWER_TOKENS = 30
N_BEST = 20
RUN_QA = "run_qa"
DEMO = "demo"
DECODINGS = (RUN_QA, DEMO)
# What utils_qa answers when none of its n-best (start, end) pairs is a valid span.
RUN_QA_NO_SPAN = "empty"
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
CLS_POSITION = 0  # BERT windows are [CLS] question [SEP] passage [SEP]
MASKED_LOGIT = -10000.0  # what the pipeline puts in place of the logits of tokens that cannot be in an answer


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
    max_length: int | None = None,
    stride: int = STRIDE,
    max_windows: int | None = None,
    decoding: str = DEMO,
) -> BatchEncoding:
    """Tokenize question + passage into overlapping windows of at most ``max_length`` tokens.

    ``max_length`` defaults to 384 or the model's limit if lower. Only the passage is truncated, so every window
    holds the whole question; consecutive windows share ``stride`` passage tokens so an answer near a window edge
    is seen whole in the next one. More than ``max_windows`` windows is refused rather than searched partially.
    As its reference does, ``run_qa`` left-strips the question and pads every window to ``max_length`` (the padding
    tokens' logits take part in its n-best search); ``demo`` takes the question as typed.
    """
    if decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}: choose one of {', '.join(DECODINGS)}")
    check_text(question, passage)
    if max_length is None:
        max_length = min(MAX_LENGTH, tokenizer.model_max_length)
    if decoding == RUN_QA:
        question = question.lstrip()
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
            padding="max_length" if decoding == RUN_QA else "longest",
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


class NoSpanError(RuntimeError):
    """No candidate pair of the run_qa procedure is a valid span; run_qa then answers ``RUN_QA_NO_SPAN``."""


def run_qa_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    encoding: BatchEncoding,
    passage: str,
    n_best: int = N_BEST,
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
) -> list[Span]:
    """The n-best answers of ``utils_qa.postprocess_qa_predictions`` (SQuAD v1.1), best first: the first is its answer.

    In every window, each pair of one of the ``n_best`` highest start logits and one of the ``n_best`` highest end
    logits (ranked by ``np.argsort`` over all the window's tokens, question and padding included) is a candidate
    when both tokens are passage tokens, the end is not before the start and the span has at most
    ``max_answer_tokens`` tokens. Its score is start logit + end logit, compared across all windows; its text runs
    from the start token's first character to the end token's last, as the tokens cut it (no widening to words).
    Each span's ``score`` is utils_qa's probability, a softmax over the n-best scores; a span found in two windows
    is listed once, at its better rank. No candidate (or a single empty one) gives ``[]``: utils_qa then answers
    ``RUN_QA_NO_SPAN``.
    """
    candidates: list[tuple[np.floating, int, int]] = []
    for window in range(start_logits.shape[0]):
        starts, ends = start_logits[window], end_logits[window]
        in_passage = [sequence == 1 for sequence in encoding.sequence_ids(window)]
        offsets = encoding["offset_mapping"][window]
        # As utils_qa ranks them: the tie order of np.argsort decides which of equal logits make the n-best.
        best_starts = np.argsort(starts)[-1 : -n_best - 1 : -1].tolist()
        best_ends = np.argsort(ends)[-1 : -n_best - 1 : -1].tolist()
        for first in best_starts:
            for last in best_ends:
                if not (in_passage[first] and in_passage[last]):
                    continue
                if last < first or last - first + 1 > max_answer_tokens:
                    continue
                candidates.append((starts[first] + ends[last], int(offsets[first][0]), int(offsets[last][1])))
    # sorted() is stable, so equal scores keep utils_qa's order: window, then start rank, then end rank.
    ranked = sorted(candidates, key=lambda candidate: candidate[0], reverse=True)[:n_best]
    if not ranked or (len(ranked) == 1 and ranked[0][1] >= ranked[0][2]):
        return []
    scores = np.array([score for score, _, _ in ranked])
    probabilities = np.exp(scores - scores.max())
    probabilities = probabilities / probabilities.sum()
    spans: dict[tuple[int, int], Span] = {}
    for (_, start, end), probability in zip(ranked, probabilities):
        spans.setdefault((start, end), Span(passage[start:end], start, end, float(probability)))
    return list(spans.values())


def demo_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    encoding: BatchEncoding,
    passage: str,
    top_k: int = 1,
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
    cls_token_id: int | None = None,
) -> list[Span]:
    """The ``top_k`` answers of the transformers 4.x question-answering pipeline (words aligned, no empty answer).

    In every window, as the pipeline's ``select_starts_ends`` and ``decode_spans`` do in float32: logits of tokens
    outside the passage become -10000 except those of [CLS] (``cls_token_id``, by default the id of each window's
    first token), which keeps its share of each softmax; a span's score is p(start) * p(end), with [CLS]'s
    probabilities then set to 0; of the spans of at most ``max_answer_tokens`` tokens the ``2 * top_k + 10`` best
    are widened to the whole words of the window that their first and last token belong to. Spans whose texts are
    equal ignoring case add up their scores, across windows too, and keep the offsets of the first one found; the
    answers are ranked by that sum, so a score can exceed 1 when a text is found in several windows.

    Left out where the pipeline would return them: spans scored 0 (it fills its candidates with them in windows
    with few spans, end before start included) and spans at a [CLS] typed in the question. One deliberate change:
    a span ends after any combining marks that follow its last word, which the tokenizer's offsets leave out, so
    "été" written with combining accents is never cut before its last accent.
    """
    answers: dict[str, list] = {}  # text.lower() -> [start, end, summed score], in the order first found
    for window in range(start_logits.shape[0]):
        # BERT tokenizers pad on the right; the pipeline decodes each window unpadded, so its arrays end here too.
        length = int(encoding["attention_mask"][window].sum())
        sequence_ids = encoding.sequence_ids(window)[:length]
        kept = np.array([sequence == 1 for sequence in sequence_ids])
        cls = encoding["input_ids"][window, CLS_POSITION] if cls_token_id is None else cls_token_id
        kept |= encoding["input_ids"][window, :length] == cls
        window_encoding = encoding.encodings[window]
        candidates = _pipeline_candidates(
            start_logits[window, :length], end_logits[window, :length], kept, 2 * top_k + 10, max_answer_tokens
        )
        for first, last, score in candidates:
            if not (score > 0 and sequence_ids[first] == 1 and sequence_ids[last] == 1):
                continue
            start, end = _aligned_to_words(window_encoding, first, last)
            end = _past_combining_marks(passage, end)
            found = answers.setdefault(passage[start:end].lower(), [start, end, 0.0])
            found[2] += float(score)
    ranked = sorted(answers.values(), key=lambda answer: answer[2], reverse=True)[:top_k]
    return [Span(passage[start:end], start, end, score) for start, end, score in ranked]


def _pipeline_candidates(
    start_logits: np.ndarray, end_logits: np.ndarray, kept: np.ndarray, wanted: int, max_answer_tokens: int
) -> list[tuple[int, int, np.float32]]:
    """One window's ``wanted`` best (first token, last token, p(start) * p(end)), best first, as the pipeline ranks
    them: the same float32 operations in the same order, so equal and nearly equal scores rank as they do there."""
    start = np.where(kept, np.asarray(start_logits, dtype=np.float32), MASKED_LOGIT)[None]
    end = np.where(kept, np.asarray(end_logits, dtype=np.float32), MASKED_LOGIT)[None]
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    start[0, CLS_POSITION] = end[0, CLS_POSITION] = 0.0
    pairs = np.tril(np.triu(np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))), max_answer_tokens - 1)
    flat = pairs.flatten()
    # The pipeline sorts everything when there are fewer pairs than wanted (and fails when there are exactly as many).
    if len(flat) <= wanted:
        order = np.argsort(-flat)
    else:
        best = np.argpartition(-flat, wanted)[:wanted]
        order = best[np.argsort(-flat[best])]
    firsts, lasts = np.unravel_index(order, pairs.shape)[1:]
    return [(int(first), int(last), pairs[0, first, last]) for first, last in zip(firsts, lasts)]


def _aligned_to_words(window_encoding, first: int, last: int) -> tuple[int, int]:
    """Character bounds of the words of one window that tokens ``first`` and ``last`` belong to (the pipeline's
    ``get_indices``): a word cut by the window's edge ends at the edge; tokens of no word keep their own offsets."""
    start_word, end_word = window_encoding.token_to_word(first), window_encoding.token_to_word(last)
    if start_word is not None and end_word is not None:
        start_chars = window_encoding.word_to_chars(start_word, 1)
        end_chars = window_encoding.word_to_chars(end_word, 1)
        if start_chars is not None and end_chars is not None:
            return start_chars[0], end_chars[1]
    return window_encoding.offsets[first][0], window_encoding.offsets[last][1]


def _past_combining_marks(passage: str, end: int) -> int:
    """``end`` moved past the combining marks that follow it: the normalizer strips accents, so a word's offsets
    stop before a trailing combining mark (e + U+0301)."""
    while end < len(passage) and unicodedata.category(passage[end]) in ("Mn", "Me"):
        end += 1
    return end
