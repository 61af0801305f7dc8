"""Random Unicode questions and passages: every one ends in a clear InputError or an exact passage substring."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from sparseqa.decoding import InputError, demo_spans, encode
from sparseqa.runtimes import load_engine

# Pieces that have broken tokenizers and offset mapping before: controls, NUL, zero-width and bidi marks, combining
# marks, emoji sequences, CJK, RTL, odd whitespace, HTML, a byte-order mark and lone surrogates.
AWKWARD = [
    "\x00", "\x07", "\x1c", "\x7f", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "  ",
    "\u200b", "\u200d", "\u202e", "\u202c", "\ufeff", "\u00ad", "\ufe0f",
    "\u0301", "e\u0301", "a\u0308\u0301", "z\u0336",
    "🚀", "👩\u200d👩\u200d👧", "🇫🇷", "👍🏽",
    "東京", "港区", "한국어", "مرحبا", "שלום",
    "<b>", "</b>", "<script>alert(1)</script>", "&amp;", "&#x27;",
    "\ud800", "\udcff",
    "Paris", "the river", "1889", "Café", "naïve", "ß", "İ", "ﬁ",
]
PIECES = st.one_of(st.sampled_from(AWKWARD), st.text(st.characters(), max_size=12))
QUESTIONS = st.lists(PIECES, max_size=12).map("".join)
# Up to a few hundred words, so some passages need more than one window.
PASSAGES = st.tuples(st.lists(PIECES, max_size=40), st.integers(0, 450)).map(
    lambda parts: " ".join(["harbour"] * parts[1]) + "".join(parts[0])
)


@pytest.fixture(scope="module")
def tokenizer(tiny_dense_model):
    return AutoTokenizer.from_pretrained(tiny_dense_model)


@pytest.fixture(scope="module")
def engine(tiny_dense_model):
    return load_engine(str(tiny_dense_model), "pytorch", "fp32")


def assert_exact_spans(spans, passage: str, windows: int) -> None:
    assert spans
    for span in spans:
        assert span.text and passage[span.start : span.end] == span.text
        # A probability per window, summed over the windows that found the same text.
        assert 0 < span.score <= windows
    assert len({span.text.lower() for span in spans}) == len(spans)
    scores = [span.score for span in spans]
    assert scores == sorted(scores, reverse=True)


@settings(max_examples=150, deadline=None)
@given(question=QUESTIONS, passage=PASSAGES, seed=st.integers(0, 2**32 - 1))
def test_decoding_random_text_gives_an_input_error_or_exact_spans(tokenizer, question, passage, seed):
    try:
        encoding = encode(tokenizer, question, passage)
    except InputError as error:
        assert ": " in str(error), "the message should say what to do"
        return
    generator = np.random.default_rng(seed)
    start = generator.normal(0, 3, encoding["input_ids"].shape).astype(np.float32)
    end = generator.normal(0, 3, encoding["input_ids"].shape).astype(np.float32)

    spans = demo_spans(start, end, encoding, passage, top_k=3)

    assert_exact_spans(spans, passage, encoding["input_ids"].shape[0])
    for span in spans:
        assert span.text == span.text.strip(), "a span is whole words, never surrounding whitespace"


@settings(max_examples=40, deadline=None)
@given(question=QUESTIONS, passage=PASSAGES)
def test_the_engine_answers_random_text_or_refuses_it_clearly(engine, question, passage):
    try:
        answer = engine.answer(question, passage, top_k=3)
    except InputError as error:
        assert ": " in str(error), "the message should say what to do"
        return

    assert_exact_spans([answer, *answer.alternatives], passage, answer.windows)
    assert answer.windows >= 1 and answer.tokens > 0
