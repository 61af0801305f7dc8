"""The Gradio web demo: ask a question about a passage, see both models' answers highlighted, and how fast each was.

The layout is declared once in ``build_demo``; the event handlers (``ask``, ``latency_chart``) are plain functions
over plain values, so they are tested without a browser. Everything the page shows about the models and the machine
is gathered once at start-up (``PageFacts.gather``); requests only run the already loaded engines.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import NamedTuple

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .bench import DEFAULT_SEQ_LENS, BenchResult, BenchSettings, ProgressCallback, latest_bench
from .bench import TABLE_COLUMNS as BENCH_COLUMNS  # the service's TABLE_COLUMNS are the Ask tab's
from .options import KERNELS_HELP, SYNTHETIC_NOTE, UsageError, add_model_arguments, chosen_models, quiet_libraries
from .decoding import DECODINGS, InputError
from .choice import KernelDecision
from .evaluate import latest_result
from .explain import bench_sentences, decision_sentences
from . import blocks, native
from .blocks import ORIENTATIONS
from .hardware import Machine, library_versions, machine
from .models import ASSETS, DENSE_ID, SPARSE_ID, ModelLoadError, card_for, is_synthetic
from .runtimes import KERNELS, PRECISIONS, QAEngine
from .service import TABLE_COLUMNS, Comparison, Limits, QAService, Settings
from .sparsity import SparsityReport, inspect_model, share_column
from .timing import RequestTimeout

log = logging.getLogger(__name__)

SPARSE_LABEL = "sparse model"
DENSE_LABEL = "dense model"
BOTH_LABEL = "both models"
HIGHLIGHT_COLOURS = {SPARSE_LABEL: "#f59e0b", DENSE_LABEL: "#3b82f6", BOTH_LABEL: "#10b981"}
ANSWER_COLUMNS = ["model", "rank", "answer", "confidence", "characters"]
DEFAULT_RUNS = 3
# Two requests at a time keep both cores busy; timed runs are serialized anyway (timing.MEASURE_LOCK).
CONCURRENCY_LIMIT = 2
QUEUE_SIZE = 64
STYLE = ASSETS / "style.css"
EXAMPLES = ASSETS / "examples.json"
THEME = gr.themes.Soft(primary_hue="blue", neutral_hue="slate").set(
    button_primary_background_fill="*primary_600",
    button_primary_background_fill_hover="*primary_700",
    button_primary_text_color="white",
)
GENERIC_ERROR = "something went wrong while answering; the server log has the details"
# The web benchmark is a short version of `python -m sparseqa bench`: the page stays responsive, the CLI goes long.
BENCH_SEQ_LENS = DEFAULT_SEQ_LENS
BENCH_DEFAULT_SEQ_LENS = [128, 384]
BENCH_DEFAULT_RUNS = 3
BENCH_MAX_RUNS = 10
ACCURACY_COLUMNS = ["model", "source", "configuration", "decoding", "exact match", "F1", "questions", "data", "date"]
INTRO = (
    "Intel's BERT-base fine-tuned on SQuAD v1.1 with 80% of its encoder weights pruned in blocks of four weights "
    "(Prune OFA; *Model facts* shows which way its blocks run, read from the weights), run with OpenVINO, answers "
    "beside a dense BERT-base run the usual way (transformers + PyTorch fp32). Paste a passage, ask a question about "
    "it, and see where each model finds the answer and how long each took on this machine."
)
SPARSITY_COLUMNS = ["layer", "zero weights", "all-zero 1x4 blocks", "all-zero 4x1 blocks", "pattern"]
LINEAR_SPARSITY_COLUMNS = ["layer", "Linear", "shape (out x in)", *SPARSITY_COLUMNS[1:]]
ORIENTATION_COLOURS = {"1x4": "#3b82f6", "4x1": "#f59e0b"}


class AskView(NamedTuple):
    """What one question shows: the outputs of the ``/ask`` API, in order."""

    highlighted: list[tuple[str, str | None]]
    summary: str
    answers: pd.DataFrame
    latency: pd.DataFrame
    result: dict


def highlight_segments(passage: str, comparison: Comparison) -> list[tuple[str, str | None]]:
    """The passage cut into consecutive pieces, each labelled by which models' answers cover it (or None).

    The pieces join back into the passage exactly; where both models chose the same characters the label is
    ``both models``, so the page needs only three colours.
    """
    spans = {SPARSE_LABEL: (comparison.sparse.start, comparison.sparse.end)}
    if comparison.dense is not None:
        spans[DENSE_LABEL] = (comparison.dense.start, comparison.dense.end)
    cuts = sorted({0, len(passage), *(bound for span in spans.values() for bound in span)})
    segments = []
    for start, end in zip(cuts, cuts[1:]):
        covering = [label for label, (first, last) in spans.items() if first <= start and end <= last]
        label = BOTH_LABEL if len(covering) == 2 else (covering[0] if covering else None)
        segments.append((passage[start:end], label))
    return segments


def answers_table(comparison: Comparison) -> pd.DataFrame:
    """Each model's best answer and its runners-up, with the model's confidence in each."""
    rows = []
    for answer in (comparison.sparse, comparison.dense):
        if answer is None:
            continue
        label = card_for(answer.model).label
        best = [(answer.text, answer.score, answer.start, answer.end)]
        runners_up = [(span.text, span.score, span.start, span.end) for span in answer.alternatives]
        for rank, (text, score, start, end) in enumerate(best + runners_up, start=1):
            rows.append([label, rank, text, f"{score:.1%}" if score >= 0.001 else "<0.1%", f"{start}–{end}"])
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS)


def summary_text(comparison: Comparison) -> str:
    """One paragraph on how fast each model answered and whether they agree (no passage text, so no markup risk)."""
    sparse, latency = comparison.sparse, comparison.sparse_latency
    lines = []
    if sparse.synthetic:
        lines.append(f"**{SYNTHETIC_NOTE.capitalize()}.**")
    sparse_part = (
        f"The **{card_for(sparse.model).label}** model ({sparse.runtime} {sparse.precision}) answered in "
        f"**{latency.median_ms:.1f} ms** (median of {latency.runs} runs, {sparse.tokens} tokens)"
    )
    if comparison.dense is None:
        lines.append(sparse_part + "; the dense baseline is not loaded.")
    else:
        dense, dense_latency = comparison.dense, comparison.dense_latency
        agreement = "Both models chose the same span." if comparison.agree else "The models chose different spans."
        lines.append(
            f"{sparse_part}, **{comparison.speedup:.2f}x** the speed of the **{card_for(dense.model).label}** model "
            f"({dense.runtime} {dense.precision}, {dense_latency.median_ms:.1f} ms). {agreement}"
        )
    if comparison.served_by is not None:
        lines.append(f"Served by {comparison.served_by.text()}.")
    return "\n\n".join(lines)


def ask(service: QAService, passage: str | None, question: str | None, runs: float | None = DEFAULT_RUNS) -> AskView:
    """Answer ``question`` about ``passage`` with both models and build everything the page shows.

    A problem the user can fix (empty or oversized input, too many runs, a timeout, no model loaded) raises
    ``gr.Error`` with one line saying what to do; anything else is logged here and shown as one generic line.
    """
    if service.sparse is None:
        raise user_error(f"no sparse model is loaded: {service.load_error or 'start the demo with a model'}")
    passage, question = passage or "", question or ""
    try:
        comparison = service.ask(passage, question, runs=int(runs if runs is not None else DEFAULT_RUNS))
    except (InputError, RequestTimeout) as problem:
        raise user_error(str(problem)) from None
    except Exception:
        log.exception("answering failed")
        raise user_error(GENERIC_ERROR) from None
    return AskView(
        highlighted=highlight_segments(passage, comparison),
        summary=summary_text(comparison),
        answers=answers_table(comparison),
        latency=comparison.table(),
        result=comparison.as_dict(),
    )


class BenchView(NamedTuple):
    """What one web benchmark run shows: the outputs of the ``/benchmark`` API, in order."""

    summary: str
    table: pd.DataFrame
    figure: Figure


def benchmark(
    service: QAService, seq_lens: list | None, runs: float | None, progress: ProgressCallback | None = None
) -> BenchView:
    """A short benchmark sweep of the page's two models (the CLI's ``bench`` code) at the chosen lengths.

    Settings out of range, or a model that cannot be loaded, raise ``gr.Error`` with one line saying what to do.
    """
    if service.sparse is None:
        raise user_error(f"no sparse model is loaded: {service.load_error or 'start the demo with a model'}")
    settings = BenchSettings(
        model=service.settings.model,
        dense_model=service.settings.dense_model or DENSE_ID,
        seq_lens=tuple(sorted(int(length) for length in seq_lens or ())),
        runs=int(runs if runs is not None else BENCH_DEFAULT_RUNS),
        warmup=1,
        threads=service.settings.threads,
    )
    try:
        settings.check()
        if settings.runs > BENCH_MAX_RUNS:
            raise ValueError(f"at most {BENCH_MAX_RUNS} timed runs here; `python -m sparseqa bench` takes more")
        result = service.benchmark(settings, progress)
    except (ValueError, ModelLoadError) as problem:
        raise user_error(str(problem), title="Cannot benchmark") from None
    except Exception:
        log.exception("benchmark failed")
        raise user_error(GENERIC_ERROR, title="Cannot benchmark") from None
    return BenchView(bench_summary(result), bench_table(result), result.figure())


def bench_summary(result: BenchResult) -> str:
    """The headline speedup first, then the machine, the method and what was not measured, as Markdown."""
    lines = result.summary_lines()
    headline = result.headline()
    details = [line for line in lines if line != headline]
    parts = [f"**{headline[0].upper()}{headline[1:]}.**"] if headline else []
    if is_synthetic(result.settings.model):
        parts.append(f"*{SYNTHETIC_NOTE.capitalize()}.*")
    parts.append("\n".join(f"- {line}" for line in details))
    return "\n\n".join(parts)


def bench_table(result: BenchResult) -> pd.DataFrame:
    """The benchmark table with empty cells (not NaN) where a ratio does not apply."""
    return result.table().astype(object).fillna("")


def user_error(message: str, title: str = "Cannot answer") -> gr.Error:
    """A one-line error for the page; Gradio renders its message as HTML, so it is escaped."""
    first_line = message.strip().splitlines()[0] if message.strip() else GENERIC_ERROR
    return gr.Error(html.escape(first_line, quote=False), title=title, print_exception=False)


def model_colours(service: QAService) -> dict[str, str]:
    """The loaded models' table labels mapped to their highlight colours, so chart and passage tell one story."""
    colours = {}
    for engine, label in ((service.sparse, SPARSE_LABEL), (service.dense, DENSE_LABEL)):
        if engine is not None:
            colours[card_for(engine.model_id).label] = HIGHLIGHT_COLOURS[label]
    return colours


def latency_chart(latency: pd.DataFrame | None) -> pd.DataFrame:
    """The latency table's model and median columns, for the bar chart."""
    if latency is None or latency.empty:
        return pd.DataFrame({"model": [], "median ms": []})
    return latency[["model", "median ms"]].astype({"median ms": float})


@dataclass(frozen=True)
class PageFacts:
    """What the page says about the loaded models and the machine; gathered once at start-up."""

    machine: Machine
    sparsity: SparsityReport | None
    sparsity_error: str | None

    @classmethod
    def gather(cls, service: QAService) -> PageFacts:
        """Read the machine and measure the loaded sparse model's sparsity (its checkpoint's weights)."""
        if service.sparse is None:
            return cls(machine(), None, "no sparse model is loaded")
        try:
            return cls(machine(), inspect_model(service.sparse.model_id), None)
        except Exception as problem:  # a missing or unusual checkpoint must not stop the page from starting
            log.warning("could not measure the sparsity of %s: %s", service.sparse.model_id, problem)
            return cls(machine(), None, str(problem).splitlines()[0] if str(problem) else type(problem).__name__)


def banner_text(service: QAService) -> str:
    """The warning at the top of the page: a model that failed to load, or random weights; empty when all is well."""
    settings = service.settings
    if service.sparse is None:
        return (
            f"**The sparse model could not be loaded**, so the demo cannot answer yet. {service.load_error}. "
            "To try the page without downloading anything, start it with `python app.py --synthetic`."
        )
    lines = []
    if service.sparse.synthetic:
        lines.append(f"**{SYNTHETIC_NOTE.capitalize()}.**")
    if settings.dense_model and service.dense is None:
        lines.append(f"**The dense baseline could not be loaded**: {service.load_error}.")
    return "\n\n".join(lines)


def machine_text(service: QAService, facts: PageFacts) -> str:
    """The "About this machine" panel: CPU, instruction sets, which kernels run and why, and where a speedup comes
    from here, in measured ratios only (the kernel measurement at load, the latest benchmark run)."""
    cpu = facts.machine
    sparse = service.sparse
    rows = [
        ("CPU", cpu.cpu),
        ("Cores", f"{cpu.physical_cores} physical, {cpu.logical_cores} logical"),
        ("Instruction sets", cpu.isa_flags()),
        ("OpenVINO default precision", cpu.openvino_default_precision),
        ("Sparse weight decompression", decompression_text(cpu, sparse)),
    ]
    decision = sparse.kernel_choice if sparse is not None else None
    if sparse is not None and sparse.runtime == "openvino":
        rows.append(("Kernels of the sparse model", sparse_kernels_text(sparse)))
    if decision is not None:
        rows.append(("How they were chosen", how_chosen_text(decision)))
        if decision.how in ("measured", "cached"):  # otherwise the reason is how they were chosen
            rows.append(("Why", decision.reason))
        if decision.medians_ms:
            rows.append(("Measured medians", decision.medians_text()))
    for role, engine in (("Sparse model", sparse), ("Dense baseline", service.dense)):
        if engine is not None:
            rows.append((role, f"{engine.label}, {engine.threads} threads"))
            # The kernels' reason already has its own row above.
            rows += [(f"{role} note", note) for note in engine.notes if note != engine.kernel_fallback]
    versions = ", ".join(f"{name} {version}" for name, version in library_versions().items())
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    story = speedup_story(cpu, sparse)
    return f"| Property | Value |\n|---|---|\n{table}\n\n{story}\n\nLibraries: {versions}."


def decompression_text(cpu: Machine, engine: QAEngine | None) -> str:
    """Whether OpenVINO's sparse weight decompression exists on this CPU and whether the sparse model uses it."""
    if not cpu.sparse_weight_decompression:
        return "not available (it needs AMX)"
    used = engine is not None and engine.sparse_weight_decompression
    return f"available (AMX); {'on' if used else 'off'} for the sparse model (see why below)"


def how_chosen_text(decision: KernelDecision) -> str:
    """How the kernel decision was made: measured now, read from the cache, forced, or the only candidate."""
    if decision.how in ("measured", "cached"):
        when = f"on {decision.measured_at[:10]}" if decision.measured_at else ""
        cost = f", {decision.wall_s:.1f} s once" if decision.wall_s is not None else ""
        cached = "read from the cache; " if decision.how == "cached" else ""
        return (
            f"`auto`: {cached}measured at load {when} ({decision.runs} interleaved runs per candidate and length"
            f"{cost}), cached for this machine, model, libraries, kernel build and thread count"
        )
    return f"{decision.how}: {decision.reason}" if decision.how == "only candidate" else decision.reason


def speedup_story(cpu: Machine, sparse: QAEngine | None) -> str:
    """Where a speedup comes from on this machine, from measurements: what the zeros bought in the kernel
    measurement at load, and the runtime's and the precision's share from the latest benchmark run here."""
    sentences = decision_sentences(sparse.kernel_choice if sparse is not None else None)
    bench = latest_bench(cpu.cpu, sparse.model_id) if sparse is not None else None
    if bench is not None:
        date = str(bench["machine"].get("date", ""))[:10]
        sentences.append(f"From the latest benchmark run here ({date}):")
        sentences += bench_sentences(bench["rows"])
    else:
        sentences.append(
            "What the runtime and the precision give on this machine has not been measured yet: the Benchmark tab "
            "(or `python -m sparseqa bench`) measures it, and this panel then shows its ratios."
        )
    return "**Where a speedup comes from here (measured).** " + " ".join(sentences)


def sparse_kernels_text(engine: QAEngine) -> str:
    """Who computes the sparse model's Linears: sparseqa's kernels and their ISA path, or OpenVINO's."""
    if engine.kernels == "sparseqa":
        return f"sparseqa's, {engine.kernel_isa} path (this CPU runs: {', '.join(native.cpu_isas())})"
    if engine.sparse_weight_decompression:
        return "OpenVINO's, with sparse weight decompression"
    return "OpenVINO's own"


def accuracy_table(service: QAService) -> pd.DataFrame:
    """SQuAD v1.1 EM/F1: what the two published models' cards report, and the latest ``sparseqa eval`` result
    measured here with each decoding for each loaded model at the runtime, precision and kernels the page runs it.

    Read on every page load, so an ``eval`` that finishes while the demo runs shows up on the next visit.
    """
    rows = []
    for model in (SPARSE_ID, DENSE_ID):
        card = card_for(model)
        rows.append([card.label, "model card", "as published", "", card.exact_match, card.f1, "", "SQuAD v1.1 dev", ""])
    for engine in (engine for engine in (service.sparse, service.dense) if engine is not None):
        for decoding in DECODINGS:
            result = latest_result(
                engine.model_id,
                runtime=engine.runtime,
                precision=engine.precision,
                decoding=decoding,
                kernels=engine.kernels,
            )
            if result is not None:
                rows.append(
                    [
                        card_for(engine.model_id).label,
                        "measured here",
                        f"{result['runtime']} {result['precision']}"
                        + (" · sparseqa kernels" if engine.kernels == "sparseqa" else ""),
                        decoding,
                        round(result["exact_match"], 2),
                        round(result["f1"], 2),
                        f"{result['n']:,}",
                        file_name(str(result["data"])),
                        str(result["date"])[:10],
                    ]
                )
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS)


def file_name(path: str) -> str:
    """The last part of a path, whichever separator it uses: the page may be public, where a path tells too much."""
    return PureWindowsPath(path).name or path


def loaded_models_text(service: QAService) -> str:
    """Which models this page runs, and whether the card scores above are theirs."""
    notes = []
    for role, engine in (("sparse", service.sparse), ("dense", service.dense)):
        if engine is None:
            continue
        card = card_for(engine.model_id)
        if card.exact_match is not None:
            notes.append(f"the {role} model is `{card.model_id}`, whose card reports the scores above")
        elif engine.synthetic:
            notes.append(
                f"the {role} model is a random-weight stand-in with BERT-base's shape, so any EM/F1 measured for it "
                "is meaningless"
            )
        else:
            notes.append(f"the {role} model is a local copy ({card.label}), whose accuracy is not reported here")
    running = f"Running here: {'; '.join(notes)}." if notes else ""
    how = (
        "Rows marked *measured here* come from `python -m sparseqa eval` on this machine (its latest result for the "
        "runtime and precision the page runs); `python -m sparseqa eval --hub` checks the card's numbers on the "
        "full SQuAD v1.1 dev set. *run_qa* rows pick answers as transformers' run_qa.py evaluation does, as the "
        "cards' numbers were measured; *demo* rows score the answers this page shows."
    )
    return f"{running}\n\n{how}"


def sparsity_text(facts: PageFacts) -> str:
    """Measured zeros of the loaded sparse model, its all-zero blocks of both orientations and the pattern they
    make, in words; or why they could not be measured."""
    if facts.sparsity is None:
        return f"Sparsity could not be measured: {facts.sparsity_error}."
    report = facts.sparsity
    shares = " and ".join(
        f"**{report.block_share(orientation):.1%}** of the {blocks.describe(orientation)} blocks"
        for orientation in sorted(ORIENTATIONS, key=lambda orientation: orientation != report.pattern)
    )
    if report.pattern is not None:
        verdict = f"so its weights are pruned in **{blocks.describe(report.pattern)}** blocks"
    elif report.zeros == 0:
        verdict = "so it is dense"
    else:
        verdict = (
            "so neither orientation is clearly blocked: its zeros are unstructured (scattered at random, "
            f"{report.zeros:.0%} zeros leave {blocks.chance_share(report.zeros):.0%} of the blocks of either kind "
            "zero by chance)"
        )
    return (
        f"Measured in the loaded sparse model's checkpoint ({card_for(report.model).label}), over its "
        f"{len(report.layers)} encoder Linear matrices: **{report.zeros:.1%}** of the weights are zero; {shares} "
        f"are entirely zero, {verdict}. All-zero blocks are what sparse kernels can skip. \"1x4\" names opposite "
        "shapes in different ecosystems, so a block is named here by its shape in PyTorch's (out, in) weight and "
        "always said in words."
    )


def _sparsity_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Shares as percentages and the pattern in words, for the page's tables."""
    shown = pd.DataFrame({"zero weights": table["zeros"].map("{:.1%}".format)})
    for orientation in ORIENTATIONS:
        shown[f"all-zero {orientation} blocks"] = table[share_column(orientation)].map("{:.1%}".format)
    shown["pattern"] = table["pattern"].map(blocks.describe)
    return shown


def sparsity_table(report: SparsityReport) -> pd.DataFrame:
    """Per encoder layer: zero weights, all-zero blocks of each orientation and the pattern (SPARSITY_COLUMNS)."""
    per_layer = report.per_layer()
    return pd.concat([per_layer[["layer"]], _sparsity_rows(per_layer)], axis=1)[SPARSITY_COLUMNS]


def linear_sparsity_table(report: SparsityReport) -> pd.DataFrame:
    """The same for every encoder Linear (LINEAR_SPARSITY_COLUMNS)."""
    per_linear = report.per_linear()
    names = per_linear[["layer", "name", "shape"]].set_axis(LINEAR_SPARSITY_COLUMNS[:3], axis=1)
    return pd.concat([names, _sparsity_rows(per_linear)], axis=1)[LINEAR_SPARSITY_COLUMNS]


def sparsity_figure(report: SparsityReport) -> Figure:
    """Per encoder layer, the share of all-zero blocks of each orientation side by side, with the share scattered
    zeros would leave by chance: the blocked orientation stands out at the pruned share."""
    per_layer = report.per_layer()
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(per_layer))
    width = 0.38
    for index, orientation in enumerate(ORIENTATIONS):
        axes.bar(
            positions + (index - 0.5) * width,
            per_layer[share_column(orientation)] * 100,
            width,
            color=ORIENTATION_COLOURS[orientation],
            label=f"{blocks.describe(orientation)} blocks",
        )
    axes.axhline(
        blocks.chance_share(report.zeros) * 100,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"by chance, if the {report.zeros:.0%} zeros were scattered",
    )
    axes.set_xticks(positions, [str(layer) for layer in per_layer["layer"]])
    axes.set_xlabel("encoder layer")
    axes.set_ylabel("all-zero blocks (%)")
    axes.set_ylim(0, 100)
    axes.grid(True, axis="y", alpha=0.3)
    axes.set_title(f"All-zero blocks per encoder layer: pattern {blocks.describe(report.pattern)}", fontsize=10)
    # Below the axes: inside them it would cover the bars.
    figure.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return figure


def load_examples() -> list[dict]:
    """The bundled example passages and questions (title, passage, question, answer)."""
    return json.loads(EXAMPLES.read_text(encoding="utf-8"))


def read_only_table(value: object = None, **options) -> gr.Dataframe:
    """A table the user reads, not edits, whose long cells wrap: every table on the page."""
    return gr.Dataframe(value, interactive=False, wrap=True, **options)


def build_demo(service: QAService, facts: PageFacts | None = None) -> gr.Blocks:
    """The page, in reading order: the title and any banner, then the tabs "Ask", "Model facts", "Benchmark" and
    "About this machine" (one function each, below)."""
    facts = facts or PageFacts.gather(service)
    with gr.Blocks(title="sparseqa: sparse BERT question answering", analytics_enabled=False) as demo:
        gr.Markdown(f"# Sparse BERT question answering\n\n{INTRO}", elem_classes="intro")
        banner = banner_text(service)
        gr.Markdown(banner, visible=bool(banner), elem_id="banner", elem_classes="banner")
        with gr.Tabs():
            ask_tab(service)
            facts_tab(service, facts)
            benchmark_tab(service)
            machine_tab(service, facts)
    return demo


def ask_tab(service: QAService) -> None:
    """Passage, question and runs; the examples; then the answers in the passage, the runners-up and the latency."""
    limits = service.settings.limits
    examples = load_examples()
    ready = service.sparse is not None

    def ask_models(passage: str, question: str, runs: float = DEFAULT_RUNS) -> AskView:
        """Answer a question about a passage with the sparse model and the dense baseline, timing each."""
        return ask(service, passage, question, runs)

    with gr.Tab("Ask", id="ask"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                passage = gr.Textbox(
                    label="Passage",
                    lines=9,
                    max_lines=18,
                    placeholder="Paste the text the answer should come from",
                )
            with gr.Column(scale=2):
                question = gr.Textbox(
                    label="Question",
                    lines=1,
                    placeholder="Ask about the passage, then press Enter",
                )
                runs = gr.Slider(
                    1,
                    limits.max_runs,
                    value=DEFAULT_RUNS,
                    step=1,
                    label="Timed runs per model",
                    info="after one untimed warm-up; the page shows the median",
                )
                ask_button = gr.Button("Ask", variant="primary", interactive=ready)
        gr.Examples(
            [[example["passage"], example["question"]] for example in examples],
            inputs=[passage, question],
            example_labels=[example["title"] for example in examples],
            label="Examples: click one to fill in the passage and the question",
            examples_per_page=12,
        )
        with gr.Column(visible=False) as results:
            highlighted = gr.HighlightedText(
                label="The answers in the passage",
                color_map=HIGHLIGHT_COLOURS,
                show_legend=True,
                show_inline_category=False,
                elem_id="highlighted",
            )
            summary = gr.Markdown(label="Summary", elem_id="summary")
            answers = read_only_table(
                headers=ANSWER_COLUMNS,
                label="Answers and runners-up",
                column_widths=["22%", "7%", "49%", "11%", "11%"],
                elem_id="answers",
            )
            # The whole width: nine columns beside the chart broke one-word headers mid-word.
            latency = read_only_table(
                headers=TABLE_COLUMNS,
                label="Latency",
                column_widths=["12%", "9%", "9%", "12%", "24%", "7%", "9%", "8%", "10%"],
                elem_id="latency",
            )
            chart = gr.BarPlot(
                x="model",
                y="median ms",
                color="model",
                color_map=model_colours(service),
                colors_in_legend=[],
                y_lim=[0, None],
                x_title=" ",
                label="Median latency (ms, lower is faster)",
                elem_id="latency-chart",
            )
            with gr.Accordion("The full result as JSON (what the API returns)", open=False):
                result = gr.JSON(label="Result", show_label=False)
        gr.on(
            triggers=[ask_button.click, question.submit],
            fn=ask_models,
            inputs=[passage, question, runs],
            outputs=[highlighted, summary, answers, latency, result],
            api_name="ask",
        ).success(latency_chart, inputs=latency, outputs=chart, api_visibility="private")
        # Shown at once, beside the answer being computed, so the progress shows where the answer will be.
        gr.on(
            triggers=[ask_button.click, question.submit],
            fn=lambda: gr.Column(visible=True),
            outputs=results,
            queue=False,
            api_visibility="private",
        )


def facts_tab(service: QAService, facts: PageFacts) -> None:
    """The sparsity measured in the loaded sparse model, and SQuAD accuracy: the cards' and this machine's."""
    with gr.Tab("Model facts", id="facts"):
        gr.Markdown("### Sparsity of the loaded sparse model")
        gr.Markdown(sparsity_text(facts))
        if facts.sparsity is not None:
            gr.Plot(sparsity_figure(facts.sparsity), show_label=False, elem_id="sparsity-plot")
            read_only_table(
                sparsity_table(facts.sparsity),
                headers=SPARSITY_COLUMNS,
                label="Zeros per encoder layer",
                elem_id="sparsity",
                elem_classes="facts-table",
            )
            with gr.Accordion("Every encoder Linear", open=False):
                read_only_table(
                    linear_sparsity_table(facts.sparsity),
                    headers=LINEAR_SPARSITY_COLUMNS,
                    show_label=False,
                    elem_id="sparsity-linears",
                    elem_classes="facts-table",
                )
        gr.Markdown("### Accuracy on SQuAD v1.1")
        read_only_table(
            lambda: accuracy_table(service),
            headers=ACCURACY_COLUMNS,
            show_label=False,
            elem_id="accuracy",
            elem_classes="facts-table",
        )
        gr.Markdown(loaded_models_text(service))


def benchmark_tab(service: QAService) -> None:
    """A short benchmark run from the page: lengths and runs in, progress, then the summary, table and plot."""
    ready = service.sparse is not None

    def run_bench(lengths: list, runs: float, progress=gr.Progress()) -> BenchView:
        """Time both models on every runtime and precision at the chosen sequence lengths."""
        return benchmark(service, lengths, runs, progress)

    with gr.Tab("Benchmark", id="benchmark"):
        gr.Markdown(
            "A short version of `python -m sparseqa bench`: both models on every runtime and precision this "
            "CPU supports, at batch 1, on the bundled questions padded to each length. The first run exports "
            "and quantizes models it has not cached yet, which takes minutes; requests to the Ask tab wait "
            "while a length is being timed."
        )
        with gr.Row(equal_height=False):
            bench_lengths = gr.CheckboxGroup(
                list(BENCH_SEQ_LENS),
                value=BENCH_DEFAULT_SEQ_LENS,
                label="Sequence lengths (tokens)",
            )
            bench_runs = gr.Slider(
                1,
                BENCH_MAX_RUNS,
                value=BENCH_DEFAULT_RUNS,
                step=1,
                label="Timed runs per configuration and length",
                info="after one untimed warm-up; the table shows median and p90",
            )
            bench_button = gr.Button("Run benchmark", variant="primary", interactive=ready)
        bench_summary_view = gr.Markdown(elem_id="bench-summary")
        bench_table_view = read_only_table(
            headers=BENCH_COLUMNS,
            label="Latency per configuration (ms); speedup over dense PyTorch fp32",
            column_widths=["17%", "15%", "9%", "8%", "10%", "8%", "9%", "12%", "12%"],
            elem_id="bench-table",
        )
        bench_plot = gr.Plot(
            label="Latency and speedup against sequence length", show_label=False, elem_id="bench-plot"
        )

        bench_button.click(
            run_bench,
            inputs=[bench_lengths, bench_runs],
            outputs=[bench_summary_view, bench_table_view, bench_plot],
            api_name="benchmark",
            concurrency_limit=1,
            concurrency_id="benchmark",
        )


def machine_tab(service: QAService, facts: PageFacts) -> None:
    """What this machine is and what it gives each runtime."""
    with gr.Tab("About this machine", id="machine"):
        # Read on every page load, so a benchmark run since start-up adds its ratios.
        gr.Markdown(lambda: machine_text(service, facts))


def launch(
    demo: gr.Blocks,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    auth: tuple[str, str] | None = None,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    concurrency_limit: int = CONCURRENCY_LIMIT,
) -> None:
    """Serve ``demo`` with a bounded queue, ``concurrency_limit`` requests at a time (more when replicas answer);
    only our own one-line ``gr.Error`` messages reach the browser."""
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=QUEUE_SIZE)
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        auth=auth,
        show_error=False,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        theme=THEME,
        css_paths=[STYLE],
    )


# ---- the app's command line (app.py) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AppOptions:
    """How to start the demo: which models, and where to serve them."""

    settings: Settings
    host: str
    port: int | None
    share: bool
    auth: tuple[str, str] | None


def app_parser(environ: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    """``python app.py`` arguments; each defaults to an environment variable so a hosted Space can set it."""
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Web demo: Intel's 80% block-sparse BERT (Prune OFA, OpenVINO) beside a dense baseline.",
        epilog="Environment: SPARSEQA_MODEL, SPARSEQA_DENSE_MODEL, SPARSEQA_PRECISION, SPARSEQA_KERNELS, SPARSEQA_SYNTHETIC=1, "
        "SPARSEQA_HOST (or GRADIO_SERVER_NAME), SPARSEQA_PORT (or GRADIO_SERVER_PORT), SPARSEQA_SHARE=1, "
        "SPARSEQA_AUTH=user:password; limits: SPARSEQA_MAX_PASSAGE_CHARS, SPARSEQA_MAX_RUNS and the like.",
    )
    add_model_arguments(parser)
    parser.add_argument("--precision", choices=PRECISIONS, help="precision of the sparse model on OpenVINO (default int8)")
    parser.add_argument("--kernels", help=KERNELS_HELP)
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, help="port (default 7860, or the next free one)")
    parser.add_argument("--share", action="store_true", help="also make a temporary public link through Gradio")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="ask for this user name and password")
    parser.set_defaults(
        model=environ.get("SPARSEQA_MODEL") or None,
        dense_model=environ.get("SPARSEQA_DENSE_MODEL") or None,
        precision=environ.get("SPARSEQA_PRECISION") or None,
        kernels=environ.get("SPARSEQA_KERNELS") or "auto",
        synthetic=_flag(environ.get("SPARSEQA_SYNTHETIC")),
        host=environ.get("SPARSEQA_HOST") or environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
        port=environ.get("SPARSEQA_PORT") or environ.get("GRADIO_SERVER_PORT") or None,
        share=_flag(environ.get("SPARSEQA_SHARE")),
        auth=environ.get("SPARSEQA_AUTH") or None,
    )
    return parser


def parse_options(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> AppOptions:
    """The app's options from ``argv`` and ``environ``; bad values exit with argparse's one-line usage error."""
    parser = app_parser(environ)
    return options_from_args(parser, parser.parse_args(argv), environ)


def options_from_args(
    parser: argparse.ArgumentParser, args: argparse.Namespace, environ: Mapping[str, str] = os.environ
) -> AppOptions:
    """The app's options from parsed ``app_parser`` arguments (``serve`` adds its own to the same parser)."""
    if args.precision is not None and args.precision not in PRECISIONS:
        parser.error(f"precision {args.precision!r} is not one of {', '.join(PRECISIONS)}")
    if args.kernels not in KERNELS:
        parser.error(f"kernels {args.kernels!r} is not one of {', '.join(KERNELS)}")
    try:
        sparse, dense = chosen_models(args)
        limits = Limits.from_env(environ)
    except (UsageError, ValueError) as problem:
        parser.error(str(problem))
    auth = None
    if args.auth:
        user, separator, password = args.auth.partition(":")
        if not (separator and user and password):
            parser.error("--auth takes USER:PASSWORD, both non-empty")
        auth = (user, password)
    settings = Settings(model=sparse, dense_model=dense, precision=args.precision, limits=limits, kernels=args.kernels)
    return AppOptions(settings, args.host, args.port, args.share, auth)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def load_service(settings: Settings) -> QAService:
    """Load (and compile) the models once, printing progress; a model that fails leaves a reason for the banner."""
    quiet_libraries()
    service = QAService.load(settings, strict=False, report=print)
    if service.load_error:
        print(f"warning: {service.load_error}")
    return service
