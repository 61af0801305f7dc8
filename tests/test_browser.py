"""The served page in headless Chromium (Debian's package; Playwright never downloads a browser here).

Without Chromium these tests skip, saying how to install it; CI (``.ci/run``) sets ``SPARSEQA_REQUIRE_BROWSER=1``,
which makes a missing browser a failure there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from sparseqa.blocks import describe
from sparseqa.interface import BOTH_LABEL, DENSE_LABEL, HIGHLIGHT_COLOURS, SPARSE_LABEL, load_examples

CHROMIUM = "/usr/bin/chromium"
SHARED_SCREENSHOT = "/tmp/sparseqa-screenshot.png"
ANSWER_TIMEOUT_MS = 60_000
BENCH_TIMEOUT_MS = 300_000  # may include exporting and quantizing the tiny models on first use
MARKUP = "<script>alert(1)</script><img src=x onerror=alert(2)>"
REQUIRE_BROWSER = "SPARSEQA_REQUIRE_BROWSER"


def require_browser(executable: str, environ: Mapping[str, str]) -> None:
    """Skip the calling test when ``executable`` is missing, or fail it where ``REQUIRE_BROWSER`` is set (CI)."""
    if os.path.exists(executable):
        return
    message = f"{executable} is missing: install Debian's Chromium with `apt-get install -y chromium`"
    if environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{message} ({REQUIRE_BROWSER}=1: the browser tests must run here)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser(CHROMIUM, os.environ)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, demo_server) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(demo_server.url)
    yield page
    page.close()


def shown_passage(page: Page) -> list[tuple[str, str]]:
    """The highlighted passage as (text, background colour) pieces, once an answer has arrived."""
    expect(page.locator("#highlighted .token.highlighted .text").first).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#latency")).to_contain_text("openvino", timeout=ANSWER_TIMEOUT_MS)
    return page.locator("#highlighted .token").evaluate_all(
        "tokens => tokens.map(t => [t.querySelector('.text').textContent, t.style.backgroundColor])"
    )


# Each word of a table's column headers whose letters the browser laid out on more than one line.
BROKEN_HEADER_WORDS_JS = """table => {
  const broken = [];
  for (const header of table.querySelectorAll('th')) {
    const walker = document.createTreeWalker(header, NodeFilter.SHOW_TEXT);
    for (let text = walker.nextNode(); text; text = walker.nextNode()) {
      for (const word of text.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(text, word.index);
        range.setEnd(text, word.index + word[0].length);
        const lines = new Set([...range.getClientRects()].map(rect => Math.round(rect.top)));
        if (lines.size > 1) broken.push(word[0]);
      }
    }
  }
  return broken;
}"""


def broken_header_words(page: Page, selector: str) -> list[str]:
    """The header words of the table at ``selector`` that wrap mid-word (none, in a table laid out well)."""
    return page.locator(selector).evaluate(BROKEN_HEADER_WORDS_JS)


def text_in_colours(pieces: list[tuple[str, str]], labels: tuple[str, ...]) -> str:
    """The text of the pieces painted in the highlight colour of any of ``labels``."""
    colours = tuple("rgba({}, {}, {},".format(*bytes.fromhex(HIGHLIGHT_COLOURS[label][1:])) for label in labels)
    return "".join(text for text, background in pieces if background.startswith(colours))


def test_clicking_an_example_and_ask_highlights_the_answer(page, demo_server, tmp_path):
    example = next(example for example in load_examples() if example["title"] == "The Kestrel Probe")
    page.get_by_role("button", name=example["title"]).click()
    expect(page.get_by_label("Question")).to_have_value(example["question"])
    expect(page.get_by_label("Passage")).to_have_value(example["passage"])
    page.get_by_role("button", name="Ask", exact=True).click()

    pieces = shown_passage(page)
    expect(page.locator("#latency")).to_contain_text("pytorch")

    comparison = demo_server.service.ask(example["passage"], example["question"], runs=1)
    assert "".join(text for text, _ in pieces) == example["passage"]
    assert text_in_colours(pieces, (SPARSE_LABEL, BOTH_LABEL)) == comparison.sparse.text
    assert text_in_colours(pieces, (DENSE_LABEL, BOTH_LABEL)) == comparison.dense.text
    expect(page.locator("#answers")).to_contain_text(comparison.sparse.text)
    page.locator("#latency-chart canvas, #latency-chart svg").first.wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert broken_header_words(page, "#answers") == []
    assert broken_header_words(page, "#latency") == []
    page.screenshot(path=tmp_path / "ask.png", full_page=True)
    shutil.copy(tmp_path / "ask.png", SHARED_SCREENSHOT)


def test_markup_in_a_passage_is_shown_as_text_and_never_run(page, tmp_path):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    passage = f"{MARKUP} The Kestrel probe landed on Sarrow Flats after seven years. {MARKUP}"
    page.get_by_label("Passage").fill(passage)
    page.get_by_label("Question").fill("Where did the probe land?")
    page.get_by_label("Question").press("Enter")

    pieces = shown_passage(page)
    page.screenshot(path=tmp_path / "markup.png", full_page=True)

    assert "".join(text for text, _ in pieces) == passage
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("#highlighted script").count() == 0
    assert dialogs == []


def test_model_facts_show_the_cards_accuracy_and_the_measured_sparsity(page, tmp_path):
    page.get_by_role("tab", name="Model facts").click()
    accuracy = page.locator("#accuracy")
    expect(accuracy).to_contain_text("model card")
    expect(accuracy).to_contain_text("81.29")
    # The demo server's sparse model is pruned 4x1, as the seed model: the page says so in words, in the text, the
    # table and the plot.
    pattern = describe("4x1")
    expect(page.get_by_text(f"so its weights are pruned in {pattern} blocks")).to_be_visible()
    expect(page.locator("#sparsity")).to_contain_text(pattern)
    expect(page.locator("#sparsity")).to_contain_text("all-zero 1x4 blocks")
    expect(page.locator("#sparsity-plot img")).to_be_visible()
    page.screenshot(path=tmp_path / "facts.png", full_page=True)


def test_the_benchmark_tab_shows_progress_then_the_table_and_plot(page, tmp_path):
    page.get_by_role("tab", name="Benchmark").click()
    for length in ("128", "384"):
        page.get_by_label(length, exact=True).uncheck()
    page.get_by_label("64", exact=True).check()
    page.get_by_role("button", name="Run benchmark").click()

    # The progress line names configurations too, so wait for the summary that comes with the finished table.
    expect(page.locator("#bench-summary")).to_contain_text("speedup", timeout=BENCH_TIMEOUT_MS)
    table = page.locator("#bench-table")
    expect(table).to_contain_text("openvino")
    expect(table).to_contain_text("pytorch")
    expect(page.locator("#bench-plot img")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    assert broken_header_words(page, "#bench-table") == []
    page.screenshot(path=tmp_path / "bench.png", full_page=True)
    shutil.copy(tmp_path / "bench.png", "/tmp/sparseqa-bench-screenshot.png")


def test_without_chromium_the_browser_tests_skip_saying_how_to_install_it(tmp_path):
    with pytest.raises(pytest.skip.Exception, match=r"missing: install Debian's Chromium with `apt-get install -y chro"):
        require_browser(str(tmp_path / "chromium"), {})


def test_without_chromium_the_browser_tests_fail_where_ci_requires_them(tmp_path):
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y chromium.*SPARSEQA_REQUIRE_BROWSER=1"):
        require_browser(str(tmp_path / "chromium"), {REQUIRE_BROWSER: "1"})
