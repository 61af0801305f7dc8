"""Both span decodings against hand-made logits over real tokenizer encodings, and the input errors of ``encode``.

``demo_spans`` is the transformers 4.x pipeline's ranking, ``run_qa_spans`` the run_qa.py evaluation's; each test
pins down one of their rules with logits chosen so the expected answer and score can be worked out by hand.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from transformers import AutoTokenizer

from sparseqa.decoding import MAX_ANSWER_TOKENS, N_BEST, RUN_QA, InputError, demo_spans, encode, run_qa_spans

PASSAGE = "The Kestrel probe landed on Sarrow Flats after a journey of seven years."
QUESTION = "Where did the probe land?"


@pytest.fixture(scope="module")
def tokenizer(tiny_dense_model):
    """The tiny models' WordPiece tokenizer (lower-casing BERT normalizer, vocabulary of 2000)."""
    return AutoTokenizer.from_pretrained(tiny_dense_model)


def passage_tokens(encoding, window: int = 0) -> list[int]:
    """Positions of the passage tokens of one window."""
    return [position for position, sequence in enumerate(encoding.sequence_ids(window)) if sequence == 1]


def token_range(encoding, passage: str, text: str, window: int = 0) -> tuple[int, int]:
    """First and last token of the first ``text`` in ``passage``, in ``window``."""
    begin = passage.index(text)
    tokens = [encoding.char_to_token(window, char, sequence_index=1) for char in range(begin, begin + len(text))]
    # Characters the normalizer drops (trailing accents, controls) belong to no token: take the last one that does.
    last = next((token for token in reversed(tokens) if token is not None), None)
    assert tokens[0] is not None and last is not None, f"{text!r} is not whole in window {window}"
    return tokens[0], last


def planted_logits(encoding, plants: list[tuple[int, int, int]], high: float = 8.0):
    """Zero logits everywhere except ``high`` at the start and end token of each ``(window, first, last)``."""
    start = np.zeros(encoding["input_ids"].shape, dtype=np.float32)
    end = np.zeros_like(start)
    for window, first, last in plants:
        start[window, first] = high
        end[window, last] = high
    return start, end


def probability(high: float, tokens: int, cls: float = 0.0) -> float:
    """p(start) * p(end) of a span whose start and end logit is ``high``, the window's other ``tokens - 1`` passage
    tokens having logit 0 and [CLS] ``cls``: like the transformers 4.x pipeline, [CLS] shares the softmax."""
    one = np.exp(high) / (np.exp(high) + tokens - 1 + np.exp(cls))
    return float(one * one)


def token_chars(encoding, window: int, first: int, last: int) -> tuple[int, int]:
    """The characters from token ``first``'s start to token ``last``'s end: a span as run_qa cuts it."""
    return encoding.token_to_chars(window, first).start, encoding.token_to_chars(window, last).end


def long_passage(sentences: int) -> str:
    return " ".join(f"In year {n} the harbour of town {n} shipped grain and salt." for n in range(sentences))


# ---- demo decoding: the transformers 4.x pipeline's ranking ------------------------------------------------------


def test_the_planted_span_is_the_best_answer_with_its_probability(tokenizer):
    encoding = encode(tokenizer, QUESTION, PASSAGE)
    first, last = token_range(encoding, PASSAGE, "Sarrow Flats")
    start, end = planted_logits(encoding, [(0, first, last)])

    (span,) = demo_spans(start, end, encoding, PASSAGE, top_k=1)

    assert (span.text, span.start, span.end) == ("Sarrow Flats", PASSAGE.index("Sarrow"), PASSAGE.index(" after"))
    assert span.score == pytest.approx(probability(8.0, len(passage_tokens(encoding))))


def test_question_special_and_padding_tokens_are_never_chosen(tokenizer):
    passage = long_passage(30) + " The vault key hangs in the lighthouse."
    encoding = encode(tokenizer, QUESTION, passage)
    assert encoding["input_ids"].shape[0] == 2
    last_window_tokens = encoding.sequence_ids(1)
    assert None in last_window_tokens[last_window_tokens.index(1) :], "the last window should end in padding"
    first, last = token_range(encoding, passage, "lighthouse", window=1)
    start, end = planted_logits(encoding, [(1, first, last)], high=3.0)
    for window in range(2):
        outside = [position for position, sequence in enumerate(encoding.sequence_ids(window)) if sequence != 1]
        start[window, outside[1:]] = 50.0  # all but [CLS], which keeps its place in the softmax
        end[window, outside[1:]] = 50.0

    spans = demo_spans(start, end, encoding, passage, top_k=5)

    assert spans[0].text == "lighthouse"
    assert spans[0].score == pytest.approx(probability(3.0, len(passage_tokens(encoding, 1))))
    assert all(0 <= span.start < span.end <= len(passage) for span in spans)


def test_an_end_before_the_start_is_never_chosen(tokenizer):
    encoding = encode(tokenizer, QUESTION, PASSAGE)
    early_first, early_last = token_range(encoding, PASSAGE, "probe")
    late_first, late_last = token_range(encoding, PASSAGE, "journey")
    start, end = planted_logits(encoding, [])
    start[0, late_first] = 9.0  # the strongest start is after the strongest end
    end[0, early_last] = 9.0

    spans = demo_spans(start, end, encoding, PASSAGE, top_k=10)

    journey, probe_end = PASSAGE.index("journey"), PASSAGE.index("probe") + len("probe")
    assert spans, "some span must be valid"
    for span in spans:
        assert span.start < span.end
        assert span.start >= journey or span.end <= probe_end, f"{span.text!r} pairs the late start with the early end"


def test_spans_longer_than_the_answer_limit_are_never_chosen(tokenizer):
    word = "the "
    passage = word * 60
    encoding = encode(tokenizer, QUESTION, passage)
    tokens = passage_tokens(encoding)
    assert len(tokens) == 60, "each 'the' should be one token"
    start, end = planted_logits(encoding, [])
    start[0, tokens[5]] = end[0, tokens[5 + MAX_ANSWER_TOKENS]] = 9.0  # 31 tokens: too long
    end[0, tokens[5 + MAX_ANSWER_TOKENS - 1]] = 6.0  # exactly 30 tokens: allowed

    spans = demo_spans(start, end, encoding, passage, top_k=20)

    assert (spans[0].start, spans[0].end) == (5 * len(word), (5 + MAX_ANSWER_TOKENS) * len(word) - 1)
    assert all(len(span.text.split()) <= MAX_ANSWER_TOKENS for span in spans)


def test_top_k_answers_are_distinct_texts_best_first(tokenizer):
    encoding = encode(tokenizer, QUESTION, PASSAGE)
    generator = np.random.default_rng(7)
    start = generator.normal(0, 2, encoding["input_ids"].shape).astype(np.float32)
    end = generator.normal(0, 2, encoding["input_ids"].shape).astype(np.float32)

    spans = demo_spans(start, end, encoding, PASSAGE, top_k=8)

    assert len(spans) == 8
    assert len({span.text.lower() for span in spans}) == 8
    scores = [span.score for span in spans]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < score <= 1 for score in scores)


def test_with_every_pair_ranked_each_answer_scores_the_sum_of_the_token_spans_on_its_words(tokenizer):
    encoding = encode(tokenizer, QUESTION, PASSAGE)
    tokens = passage_tokens(encoding)
    generator = np.random.default_rng(3)
    start = generator.normal(0, 3, encoding["input_ids"].shape).astype(np.float32)
    end = generator.normal(0, 3, encoding["input_ids"].shape).astype(np.float32)
    # Worked out here in float64: p(start) * p(end) over [CLS] + passage, summed per whole-word text.
    scored = [0, *tokens]
    p_start = np.exp(start[0, scored].astype(np.float64)) / np.exp(start[0, scored].astype(np.float64)).sum()
    p_end = np.exp(end[0, scored].astype(np.float64)) / np.exp(end[0, scored].astype(np.float64)).sum()
    expected: dict[str, float] = {}
    for i, first in enumerate(tokens, start=1):
        for j, last in enumerate(tokens, start=1):
            if first <= last < first + MAX_ANSWER_TOKENS:
                begin = encoding.word_to_chars(0, encoding.token_to_word(0, first), sequence_index=1).start
                stop = encoding.word_to_chars(0, encoding.token_to_word(0, last), sequence_index=1).end
                text = PASSAGE[begin:stop]
                expected[text] = expected.get(text, 0.0) + p_start[i] * p_end[j]

    # 2 * top_k + 10 candidates per window: more than there are token pairs, so every pair is counted.
    spans = demo_spans(start, end, encoding, PASSAGE, top_k=len(tokens) ** 2)

    assert {span.text: span.score for span in spans} == pytest.approx(expected, rel=1e-5)
    assert [span.text for span in spans[:5]] == sorted(expected, key=expected.get, reverse=True)[:5]
    assert sum(span.score for span in spans) <= 1 + 1e-6


def test_a_word_reached_by_two_token_spans_scores_their_sum(tokenizer):
    encoding = encode(tokenizer, QUESTION, PASSAGE)
    first, last = token_range(encoding, PASSAGE, "landed")
    pieces = tokenizer.convert_ids_to_tokens(encoding["input_ids"][0, first : last + 1].tolist())
    assert len(pieces) >= 3 and all(piece.startswith("##") for piece in pieces[1:]), pieces
    start = np.full(encoding["input_ids"].shape, -20.0, dtype=np.float32)
    end = np.full_like(start, -20.0)
    start[0, first] = start[0, first + 1] = 8.0  # two starts inside "landed", equally likely
    end[0, last] = 8.0

    spans = demo_spans(start, end, encoding, PASSAGE, top_k=3)

    # Both token spans widen to "landed": the pipeline adds them up, about 1/2 + 1/2.
    assert spans[0].text == "landed"
    assert spans[0].score == pytest.approx(1.0, abs=1e-6)
    assert all(span.text != "landed" for span in spans[1:])


def test_the_same_text_in_two_places_is_one_answer_with_the_offsets_of_the_better(tokenizer):
    passage = "Paris is big. The city of paris is old."
    encoding = encode(tokenizer, QUESTION, passage)
    first_start, first_end = token_range(encoding, passage, "Paris")
    second_start, second_end = token_range(encoding, passage, "paris")
    start = np.full(encoding["input_ids"].shape, -20.0, dtype=np.float32)
    end = np.full_like(start, -20.0)
    start[0, first_start], end[0, first_end] = 7.9, 8.0
    start[0, second_start], end[0, second_end] = 8.0, 8.0

    spans = demo_spans(start, end, encoding, passage, top_k=3)

    # Equal ignoring case: one answer, at the lower-case "paris" (its pair ranks first), scored both pairs' sum.
    assert (spans[0].text, spans[0].start) == ("paris", passage.index("paris"))
    p_second = np.exp(8.0) / (np.exp(7.9) + np.exp(8.0))
    p_first = np.exp(7.9) / (np.exp(7.9) + np.exp(8.0))
    assert spans[0].score == pytest.approx(p_second * 0.5 + p_first * 0.5, rel=1e-5)
    assert all(span.text.lower() != "paris" for span in spans[1:])


def test_a_span_in_the_last_of_several_windows_is_found(tokenizer):
    passage = long_passage(120) + " The treasure lies under Marrow Bridge."
    encoding = encode(tokenizer, QUESTION, passage)
    windows = encoding["input_ids"].shape[0]
    assert windows >= 4
    assert encoding.char_to_token(windows - 2, passage.index("Marrow"), sequence_index=1) is None
    first, last = token_range(encoding, passage, "Marrow Bridge", window=windows - 1)
    start, end = planted_logits(encoding, [(windows - 1, first, last)])

    span = demo_spans(start, end, encoding, passage, top_k=3)[0]

    assert span.text == "Marrow Bridge"
    assert passage[span.start : span.end] == span.text


def overlap_target(encoding, passage: str) -> str:
    """A ``town N shipped`` whose tokens are in both windows of a two-window encoding."""
    return next(
        f"town {n} shipped"
        for n in range(30)
        if encoding.char_to_token(0, passage.index(f"town {n} shipped"), sequence_index=1) is not None
        and encoding.char_to_token(1, passage.index(f"town {n} shipped"), sequence_index=1) is not None
    )


def test_a_span_in_the_overlap_of_two_windows_is_one_answer_scored_the_sum_of_both(tokenizer):
    passage = long_passage(30)
    encoding = encode(tokenizer, QUESTION, passage)
    assert encoding["input_ids"].shape[0] == 2
    target = overlap_target(encoding, passage)
    plants = [(window, *token_range(encoding, passage, target, window=window)) for window in range(2)]
    start, end = planted_logits(encoding, plants[:1], high=6.0)
    second_start, second_end = planted_logits(encoding, plants[1:], high=7.0)
    start[1], end[1] = second_start[1], second_end[1]

    spans = demo_spans(start, end, encoding, passage, top_k=10)

    assert [span.text for span in spans].count(target) == 1
    assert spans[0].text == target
    expected = probability(6.0, len(passage_tokens(encoding, 0))) + probability(7.0, len(passage_tokens(encoding, 1)))
    assert spans[0].score == pytest.approx(expected, rel=1e-5)


def test_a_span_starting_and_ending_inside_words_is_widened_to_whole_words(tokenizer):
    passage = "Dessert was crème brûlée with raspberries."
    encoding = encode(tokenizer, QUESTION, passage)
    creme_first, creme_last = token_range(encoding, passage, "crème")
    brulee_first, brulee_last = token_range(encoding, passage, "brûlée")
    assert creme_last > creme_first and brulee_last > brulee_first, "both words should be several word pieces"
    start, end = planted_logits(encoding, [])
    start[0, creme_first + 1] = 9.0  # inside "crème"
    end[0, brulee_last - 1] = 9.0  # inside "brûlée"

    span = demo_spans(start, end, encoding, passage)[0]

    assert span.text == "crème brûlée"


def test_a_word_cut_by_a_window_edge_ends_at_the_edge_as_the_pipeline_aligns_it(tokenizer):
    words = [f"zyxwvutsrq{n}" for n in range(40)]
    passage = " ".join(words)
    encoding = encode(tokenizer, "what is it?", passage, max_length=64, stride=16)
    edge = passage_tokens(encoding, 0)[-1]
    cut_word = words[encoding.token_to_word(0, edge)]
    edge_end = encoding.token_to_chars(0, edge).end
    assert edge_end < passage.index(cut_word) + len(cut_word), "the edge should cut a word"
    start, end = planted_logits(encoding, [(0, edge, edge)])

    span = demo_spans(start, end, encoding, passage)[0]

    # The pipeline widens to the word as far as this window holds it.
    assert (span.start, span.end) == (passage.index(cut_word), edge_end)


def test_when_all_candidate_pairs_fall_in_one_word_the_pipeline_returns_that_word_alone(tokenizer):
    passage = "Before it came pneumonoultramicroscopicsilicovolcanoconiosis and after it came rest."
    encoding = encode(tokenizer, QUESTION, passage)
    first, last = token_range(encoding, passage, "pneumonoultramicroscopicsilicovolcanoconiosis")
    assert last - first >= 8, "the long word should be many word pieces"
    start, end = planted_logits(encoding, [])
    start[0, first : last + 1] = 5.0
    end[0, first : last + 1] = 5.0

    spans = demo_spans(start, end, encoding, passage, top_k=3)

    # The 2 * 3 + 10 best pairs all lie inside the word: one answer, scored their sum.
    assert [span.text for span in spans] == ["pneumonoultramicroscopicsilicovolcanoconiosis"]
    tokens, pieces = len(passage_tokens(encoding)), last - first + 1
    one = np.exp(5.0) / (pieces * np.exp(5.0) + tokens - pieces + 1)
    assert spans[0].score == pytest.approx(16 * one * one, rel=1e-5)


# ---- run_qa decoding: transformers' run_qa.py / utils_qa evaluation ------------------------------------------------


def run_qa_encoding(tokenizer, question: str, passage: str, **options):
    encoding = encode(tokenizer, question, passage, decoding=RUN_QA, **options)
    assert encoding["input_ids"].shape[1] == 384, "run_qa pads every window to 384 tokens"
    return encoding


def test_run_qa_takes_the_best_start_plus_end_logit_cut_at_the_tokens(tokenizer):
    passage = "Dessert was crème brûlée with raspberries."
    encoding = run_qa_encoding(tokenizer, QUESTION, passage)
    creme_first, _ = token_range(encoding, passage, "crème")
    _, brulee_last = token_range(encoding, passage, "brûlée")
    start, end = planted_logits(encoding, [])
    start[0, creme_first + 1] = 9.0  # inside "crème"
    end[0, brulee_last - 1] = 9.0  # inside "brûlée"

    spans = run_qa_spans(start, end, encoding, passage)

    # No widening to words: the answer starts and ends mid-word, where the tokens do.
    begin, stop = token_chars(encoding, 0, creme_first + 1, brulee_last - 1)
    assert (spans[0].start, spans[0].end) == (begin, stop)
    assert spans[0].text == passage[begin:stop] == "rème brûlé"  # "crème" is c ##r ##e ##m ##e: not in the vocabulary
    assert len(spans) <= N_BEST and all(passage[span.start : span.end] == span.text for span in spans)


def test_run_qa_never_pairs_a_start_outside_its_twenty_best_starts(tokenizer):
    passage = "the " * 80
    encoding = run_qa_encoding(tokenizer, QUESTION, passage)
    tokens = passage_tokens(encoding)
    assert len(tokens) == 80, "each 'the' should be one token"
    start, end = planted_logits(encoding, [])
    for rank in range(N_BEST):  # the 20 best starts all come after the best end
        start[0, tokens[40 + rank]] = 5.0 - 0.001 * rank
    start[0, tokens[30]] = 4.9  # the 21st best start
    end[0, tokens[31]] = 10.0  # best end: 4.9 + 10 is the best valid pair, but its start is not in the top 20
    end[0, tokens[65]] = 1.0

    best = run_qa_spans(start, end, encoding, passage)[0]

    assert (best.start, best.end) == token_chars(encoding, 0, tokens[40], tokens[65])
    # The demo's ranking looks at pairs, not at the 20 best starts: it finds the pair run_qa cannot.
    demo = demo_spans(start, end, encoding, passage)[0]
    assert (demo.start, demo.end) == token_chars(encoding, 0, tokens[30], tokens[31])


def test_run_qa_has_no_span_when_its_twenty_best_starts_are_question_or_padding(tokenizer):
    encoding = run_qa_encoding(tokenizer, QUESTION, PASSAGE)
    outside = [position for position, sequence in enumerate(encoding.sequence_ids(0)) if sequence != 1]
    start, end = planted_logits(encoding, [(0, *token_range(encoding, PASSAGE, "Sarrow Flats"))])
    start[0, outside[-N_BEST:]] = 9.0  # 20 padding positions outrank every passage token

    assert run_qa_spans(start, end, encoding, PASSAGE) == []


def test_run_qa_breaks_a_tie_in_favour_of_the_earlier_window(tokenizer):
    passage = long_passage(30)
    encoding = run_qa_encoding(tokenizer, QUESTION, passage)
    assert encoding["input_ids"].shape[0] == 2
    early = "town 0 shipped"  # only in the first window
    late = "town 29 shipped"  # only in the second
    assert encoding.char_to_token(1, passage.index(early), sequence_index=1) is None
    assert encoding.char_to_token(0, passage.index(late), sequence_index=1) is None
    plants = [(0, *token_range(encoding, passage, early)), (1, *token_range(encoding, passage, late, window=1))]
    start, end = planted_logits(encoding, plants)

    first, second = run_qa_spans(start, end, encoding, passage)[:2]

    assert (first.text, second.text) == (early, late)
    assert first.score == second.score


def test_run_qa_lists_a_span_found_in_two_windows_once_with_its_better_score(tokenizer):
    passage = long_passage(30)
    encoding = run_qa_encoding(tokenizer, QUESTION, passage)
    target = overlap_target(encoding, passage)
    plants = [(window, *token_range(encoding, passage, target, window=window)) for window in range(2)]
    start, end = planted_logits(encoding, plants[:1], high=6.0)
    second_start, second_end = planted_logits(encoding, plants[1:], high=7.0)
    start[1], end[1] = second_start[1], second_end[1]

    spans = run_qa_spans(start, end, encoding, passage)

    assert spans[0].text == target
    assert [span.text for span in spans].count(target) == 1
    # utils_qa's probability: a softmax over the n-best scores, so below 1 and above every other span's.
    assert 1 > spans[0].score > spans[1].score > 0
    assert sum(span.score for span in spans) <= 1 + 1e-6


UNICODE_CASES = [
    ("Le café de la Comète ouvre à l'aube.", "Comète"),
    ("Der Fluß heißt Ästuar Übermaß.", "Ästuar Übermaß"),
    ("東京タワーは東京都港区にある電波塔です。", "港区"),
    ("The rocket 🚀 lifted off at dawn.", "🚀"),
    ("Family 👩\u200d👩\u200d👧 emoji and flags 🇫🇷 here.", "👩\u200d👩\u200d👧"),
    ("A decomposed e\u0301te\u0301 and cafe\u0301 stay whole.", "e\u0301te\u0301"),
    ("Stacked a\u0301\u0302 marks x\u0336\u0337y here.", "x\u0336\u0337y"),
    ("Tabs\tand  double  spaces,\u00a0NBSP\u00a0and\nnewlines\r\nPort\u00a0Louis\tis  far.", "Port\u00a0Louis"),
    ("Between\u2003em\u2003spaces the  Red\t\tRiver flows.", "Red\t\tRiver"),
    ("\u202eمرحبا بالعالم\u202c means hello world.", "بالعالم"),
    ("<b>Paris</b> &amp; <i>Lyon</i>", "Paris"),
    ("Null\x00bytes and\x07bells: answer\x00here end.", "answer\x00here"),
    ("Zero\u200bwidth space and soft\u00adhyphen words.", "soft\u00adhyphen"),
]


@pytest.mark.parametrize(("passage", "planted"), UNICODE_CASES)
def test_unicode_answers_are_exact_passage_substrings(tokenizer, passage, planted):
    encoding = encode(tokenizer, QUESTION, passage)
    first, last = token_range(encoding, passage, planted)
    start, end = planted_logits(encoding, [(0, first, last)])

    span = demo_spans(start, end, encoding, passage, top_k=3)[0]

    assert span.text == planted
    assert passage[span.start : span.end] == span.text


@pytest.mark.parametrize(
    ("question", "passage", "advice"),
    [
        ("", PASSAGE, "type a question"),
        (" \t\n ", PASSAGE, "type a question"),
        (QUESTION, "", "paste the text"),
        (QUESTION, " \n\t\u00a0 ", "paste the text"),
        ("\x00\x01", PASSAGE, "ask it with letters or digits"),
        (QUESTION, "\x00\x01\x02\x07", "paste text with letters or digits"),
        (QUESTION, "\u200b\u200b\u200b", "paste text with letters or digits"),
        (QUESTION, "\u0301\u0302", "paste text with letters or digits"),
    ],
)
def test_unanswerable_input_is_an_input_error_saying_what_to_do(tokenizer, question, passage, advice):
    with pytest.raises(InputError, match=advice):
        encode(tokenizer, question, passage)


@pytest.mark.parametrize(
    ("question", "passage", "message"),
    [
        ("what \udcff?", PASSAGE, r"the question is not valid Unicode \(character 5 is a lone surrogate\)"),
        (QUESTION, "abc \ud800 def", r"the passage is not valid Unicode \(character 4 is a lone surrogate\)"),
    ],
)
def test_lone_surrogates_are_an_input_error_not_a_tokenizer_crash(tokenizer, question, passage, message):
    # Python decodes undecodable command-line bytes to lone surrogates; the Rust tokenizer refuses them with a TypeError.
    with pytest.raises(InputError, match=message + ": enter it as UTF-8 text"):
        encode(tokenizer, question, passage)


def test_a_question_too_long_for_the_window_is_refused_with_the_limit(tokenizer):
    question = " ".join(["the"] * 300) + "?"
    with pytest.raises(InputError, match=r"question is too long \(301 tokens\): keep it under 253 tokens"):
        encode(tokenizer, question, PASSAGE)


def test_a_question_just_under_the_limit_is_accepted(tokenizer):
    question = " ".join(["the"] * 252)
    encoding = encode(tokenizer, question, PASSAGE)
    assert len(passage_tokens(encoding)) > 0


def test_more_windows_than_allowed_is_refused_naming_the_limit(tokenizer):
    passage = long_passage(120)
    windows = encode(tokenizer, QUESTION, passage)["input_ids"].shape[0]
    with pytest.raises(InputError, match=f"needs {windows} windows .* the limit is 2; shorten it"):
        encode(tokenizer, QUESTION, passage, max_windows=2)


def test_an_emoji_only_passage_is_answered_with_the_emoji(tokenizer):
    passage = "🚀🛰️"
    encoding = encode(tokenizer, QUESTION, passage)
    start, end = planted_logits(encoding, [])

    span = demo_spans(start, end, encoding, passage)[0]

    assert span.text == passage


def test_concurrent_encoding_matches_sequential_encoding(tokenizer):
    cases = [(f"What did town {n} ship?", long_passage(20 + 15 * n)) for n in range(8)]
    expected = [encode(tokenizer, question, passage)["input_ids"] for question, passage in cases]
    results: dict[int, list] = {n: [] for n in range(8)}
    errors: list[Exception] = []

    def work(n: int) -> None:
        question, passage = cases[n]
        try:
            for _ in range(30):
                results[n].append(encode(tokenizer, question, passage)["input_ids"])
        except Exception as error:  # noqa: BLE001 - reported below with the thread's case
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for n in range(8):
        assert all(np.array_equal(ids, expected[n]) for ids in results[n])
