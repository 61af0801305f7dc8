"""The web demo's handlers as plain functions, and the served page through real HTTP with gradio_client."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseqa.evaluate import model_key, save_result
from sparseqa.interface import (
    ACCURACY_COLUMNS,
    BENCH_MAX_RUNS,
    BOTH_LABEL,
    DENSE_LABEL,
    GENERIC_ERROR,
    SPARSE_LABEL,
    accuracy_table,
    ask,
    banner_text,
    benchmark,
    build_demo,
    highlight_segments,
    LINEAR_SPARSITY_COLUMNS,
    SPARSITY_COLUMNS,
    PageFacts,
    linear_sparsity_table,
    load_examples,
    machine_text,
    parse_options,
    sparsity_figure,
    sparsity_table,
    sparsity_text,
    summary_text,
)
from sparseqa.blocks import describe
from sparseqa.hardware import Machine, machine
from sparseqa.service import QAService, Settings
from sparseqa.sparsity import inspect_model, inspect_weights

EXAMPLES = load_examples()
KESTREL = next(example for example in EXAMPLES if example["title"] == "The Kestrel Probe")


def covered_by(segments: list[tuple[str, str | None]], labels: set[str]) -> tuple[int, int, str]:
    """(start, end, text) of the characters whose segment label is in ``labels`` (they must be contiguous)."""
    position, start, end, text = 0, None, None, ""
    for piece, label in segments:
        if label in labels:
            assert end is None or end == position, "a model's answer must be one contiguous stretch"
            start = position if start is None else start
            end = position + len(piece)
            text += piece
        position += len(piece)
    return start, end, text


@pytest.fixture(scope="module")
def service(demo_server) -> QAService:
    return demo_server.service


@pytest.fixture(scope="module")
def client(demo_server) -> Client:
    return Client(demo_server.url, verbose=False)


@pytest.mark.parametrize("index", [0, 9, 10, 11], ids=["short", "kestrel", "over-384-tokens", "non-ascii"])
def test_highlights_rebuild_the_passage_and_mark_each_models_answer(service, index):
    example = EXAMPLES[index]
    view = ask(service, example["passage"], example["question"], runs=1)

    assert "".join(piece for piece, _ in view.highlighted) == example["passage"]
    for answer, label in ((view.result, SPARSE_LABEL), (view.result["dense"], DENSE_LABEL)):
        start, end, text = covered_by(view.highlighted, {label, BOTH_LABEL})
        assert (start, end, text) == (answer["start"], answer["end"], answer["answer"])
    both = [piece for piece, label in view.highlighted if label == BOTH_LABEL]
    assert bool(both) == _overlap(view.result, view.result["dense"])


def _overlap(first: dict, second: dict) -> bool:
    return max(first["start"], second["start"]) < min(first["end"], second["end"])


@given(data=st.data())
@settings(max_examples=200, deadline=None)
def test_highlights_hold_for_any_two_spans(kestrel_comparison, data):
    passage = data.draw(st.text(min_size=1, max_size=60))
    bounds = st.integers(0, len(passage))
    sparse = sorted(data.draw(st.tuples(bounds, bounds)))
    dense = sorted(data.draw(st.tuples(bounds, bounds)))
    comparison = dataclasses.replace(
        kestrel_comparison,
        sparse=dataclasses.replace(kestrel_comparison.sparse, start=sparse[0], end=sparse[1]),
        dense=dataclasses.replace(kestrel_comparison.dense, start=dense[0], end=dense[1]),
    )

    segments = highlight_segments(passage, comparison)

    assert "".join(piece for piece, _ in segments) == passage
    assert all(piece for piece, _ in segments)
    for (start, end), label in ((sparse, SPARSE_LABEL), (dense, DENSE_LABEL)):
        if start < end:
            assert covered_by(segments, {label, BOTH_LABEL}) == (start, end, passage[start:end])
    if sparse == dense and sparse[0] < sparse[1]:
        assert {label for _, label in segments} <= {BOTH_LABEL, None}


@pytest.fixture(scope="module")
def kestrel_comparison(service):
    return service.ask(KESTREL["passage"], KESTREL["question"], runs=1)


def test_synthetic_answers_are_labelled_as_random_weights(kestrel_comparison):
    synthetic = dataclasses.replace(
        kestrel_comparison, sparse=dataclasses.replace(kestrel_comparison.sparse, synthetic=True)
    )
    assert "random weights" in summary_text(synthetic).lower()
    assert "random weights" not in summary_text(kestrel_comparison).lower()


def test_the_banner_names_synthetic_models_and_is_empty_otherwise(service):
    assert banner_text(service) == ""
    stand_in = dataclasses.make_dataclass("Engine", [("synthetic", bool), ("model_id", str)])
    synthetic = QAService(service.settings, stand_in(True, "synthetic-sparse"), service.dense)
    assert "random weights" in banner_text(synthetic).lower()


@pytest.mark.parametrize(
    ("passage", "question", "runs", "says"),
    [
        (KESTREL["passage"], "   ", 3, "the question is empty"),
        ("", KESTREL["question"], 3, "the passage is empty"),
        (KESTREL["passage"], KESTREL["question"], 500, "timed runs must be between 1 and"),
    ],
    ids=["empty-question", "empty-passage", "too-many-runs"],
)
def test_user_errors_are_one_line_gradio_errors(service, passage, question, runs, says):
    with pytest.raises(gr.Error) as raised:
        ask(service, passage, question, runs)
    assert says in raised.value.message
    assert "\n" not in raised.value.message


def test_unexpected_failures_are_logged_and_shown_as_one_generic_line(service, monkeypatch, caplog):
    broken = QAService(service.settings, service.sparse, service.dense)
    monkeypatch.setattr(broken, "ask", lambda *args, **kwargs: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="sparseqa.interface"), pytest.raises(gr.Error) as raised:
        ask(broken, KESTREL["passage"], KESTREL["question"])
    assert raised.value.message == GENERIC_ERROR
    assert "ZeroDivisionError" in caplog.text


def test_api_ask_takes_passage_and_question_with_runs_optional(client):
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/ask"]["parameters"]
    assert [(p["parameter_name"], p["parameter_has_default"]) for p in parameters] == [
        ("passage", False),
        ("question", False),
        ("runs", True),
    ]


def test_api_ask_returns_the_span_service_ask_finds(client, service):
    highlighted, summary, answers, latency, result = client.predict(
        KESTREL["passage"], KESTREL["question"], api_name="/ask"
    )
    direct = service.ask(KESTREL["passage"], KESTREL["question"], runs=1)

    assert (result["answer"], result["start"], result["end"]) == (direct.sparse.text, direct.sparse.start, direct.sparse.end)
    assert (result["dense"]["answer"], result["dense"]["start"]) == (direct.dense.text, direct.dense.start)
    assert result["runs"] == 3
    segments = [(token["token"], token["class_or_confidence"]) for token in highlighted]
    assert covered_by(segments, {SPARSE_LABEL, BOTH_LABEL})[2] == direct.sparse.text
    assert [row[2] for row in answers["data"] if row[1] == 1] == [direct.sparse.text, direct.dense.text]
    assert latency["headers"] == list(direct.table().columns)
    assert [row[:4] for row in latency["data"]] == direct.table().iloc[:, :4].values.tolist()
    assert "ms" in summary


def test_api_empty_question_is_a_clean_one_line_error(client):
    with pytest.raises(AppError) as raised:
        client.predict(KESTREL["passage"], "", api_name="/ask")
    message = str(raised.value)
    assert "the question is empty" in message
    assert "Traceback" not in message and "\n" not in message.strip()


def test_sixteen_simultaneous_api_calls_each_get_their_own_answer(client, service):
    requests = [(example["passage"], example["question"]) for example in EXAMPLES]
    requests += [(example["passage"], f"What is {example['title']}?") for example in EXAMPLES[:4]]
    expected = [service.ask(passage, question, runs=1).as_dict() for passage, question in requests]

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        results = list(pool.map(lambda request: client.predict(*request, 1, api_name="/ask")[-1], requests))

    assert len(results) == 16
    for got, want in zip(results, expected):
        assert (got["answer"], got["start"], got["end"]) == (want["answer"], want["start"], want["end"])
        assert (got["dense"]["answer"], got["dense"]["start"]) == (want["dense"]["answer"], want["dense"]["start"])


def test_an_unknown_sparse_model_starts_the_page_with_a_banner_and_refuses_questions():
    service = QAService.load(Settings(model="nobody/no-such-model", dense_model=None), strict=False, report=lambda _: None)
    demo = build_demo(service)

    banner = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "banner")
    assert banner.visible
    assert "could not load nobody/no-such-model" in banner.value
    assert "--synthetic" in banner.value
    ask_button = next(block for block in demo.blocks.values() if isinstance(block, gr.Button) and block.value == "Ask")
    assert ask_button.interactive is False
    with pytest.raises(gr.Error) as raised:
        ask(service, KESTREL["passage"], KESTREL["question"])
    assert "no sparse model is loaded" in raised.value.message


def test_options_come_from_arguments_then_environment_and_bind_locally_by_default():
    defaults = parse_options([], environ={})
    assert (defaults.host, defaults.port, defaults.auth, defaults.settings.precision) == ("127.0.0.1", None, None, "int8")

    space = {"SPARSEQA_SYNTHETIC": "1", "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7860", "SPARSEQA_AUTH": "ann:pw"}
    hosted = parse_options([], environ=space)
    assert (hosted.settings.model, hosted.settings.dense_model) == ("synthetic-sparse", "synthetic-dense")
    assert (hosted.host, hosted.port, hosted.auth) == ("0.0.0.0", 7860, ("ann", "pw"))

    explicit = parse_options(["--port", "9000", "--host", "127.0.0.2", "--precision", "fp32"], environ=space | {"SPARSEQA_PORT": "8000"})
    assert (explicit.host, explicit.port, explicit.settings.precision) == ("127.0.0.2", 9000, "fp32")
    assert parse_options([], environ={"SPARSEQA_PORT": "8000", "GRADIO_SERVER_PORT": "7860"}).port == 8000


@pytest.mark.parametrize(
    ("argv", "environ", "says"),
    [
        (["--auth", "no-colon"], {}, "--auth takes USER:PASSWORD"),
        (["--synthetic", "--model", "some/model"], {}, "exclude each other"),
        (["--precision", "fp64"], {}, "invalid choice"),
        ([], {"SPARSEQA_PORT": "http"}, "argument --port: invalid int value: 'http'"),
        ([], {"SPARSEQA_MAX_RUNS": "many"}, "SPARSEQA_MAX_RUNS='many' is not a positive whole number"),
    ],
    ids=["auth-without-password", "synthetic-and-model", "unknown-precision", "port-variable", "limit-variable"],
)
def test_bad_options_end_with_a_usage_error(argv, environ, says, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_options(argv, environ=environ)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert says in err
    assert "Traceback" not in err


def test_accuracy_shows_both_cards_and_the_latest_eval_of_each_loaded_configuration(service, monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSEQA_CACHE", str(tmp_path))
    before = accuracy_table(service)
    assert list(before.columns) == ACCURACY_COLUMNS
    assert before[["source", "exact match", "F1"]].values.tolist() == [["model card", 81.29, 88.47], ["model card", 80.9, 88.2]]

    sparse = service.sparse
    measured = {
        "model": model_key(sparse.model_id),
        "runtime": sparse.runtime,
        "precision": sparse.precision,
        "kernels": sparse.kernels,
    }
    data = str(tmp_path / "home" / "someone" / "dev.json")
    save_result(measured | {"decoding": "run_qa", "exact_match": 12.345, "f1": 20.0, "n": 1234, "data": data, "date": "2026-11-29T08:00:00+00:00"})
    save_result(measured | {"decoding": "demo", "exact_match": 11.0, "f1": 19.0, "n": 1234, "data": data, "date": "2026-11-29T09:00:00+00:00"})
    save_result(measured | {"decoding": "run_qa", "runtime": "pytorch", "exact_match": 99.0, "f1": 99.0, "n": 1, "data": "x", "date": "2027-01-01"})
    save_result(measured | {"exact_match": 98.0, "f1": 98.0, "n": 1, "data": "x", "date": "2027-01-01"})  # decoding unrecorded
    other_kernels = "openvino" if sparse.kernels == "sparseqa" else "sparseqa"  # whichever `auto` did not choose
    save_result(measured | {"decoding": "run_qa", "kernels": other_kernels, "exact_match": 97.0, "f1": 97.0, "n": 1,
                            "data": "x", "date": "2027-01-01"})  # fmt: skip

    after = accuracy_table(service)
    assert len(after) == 4
    row = after.iloc[2].to_dict()
    assert row == {
        "model": Path(sparse.model_id).name,
        "source": "measured here",
        "configuration": f"{sparse.runtime} {sparse.precision}"
        + (" · sparseqa kernels" if sparse.kernels == "sparseqa" else ""),
        "decoding": "run_qa",
        "exact match": 12.35,
        "F1": 20.0,
        "questions": "1,234",
        "data": "dev.json",
        "date": "2026-11-29",
    }
    assert after.iloc[3][["decoding", "exact match", "data"]].tolist() == ["demo", 11.0, "dev.json"]
    assert not any(str(tmp_path) in str(value) for value in after.values.ravel())


class ProgressRecorder(list):
    """Records ``progress(fraction, description)`` calls; empty, it is falsy, as a fresh ``gr.Progress`` is."""

    def __call__(self, fraction: float, description: str) -> None:
        self.append((fraction, description))


def test_benchmark_tab_runs_the_bench_code_with_progress(service):
    progress = ProgressRecorder()
    view = benchmark(service, [64], 1, progress)

    table = view.table
    assert set(table["seq_len"]) == {64}
    baseline = table[(table["runtime"] == "pytorch") & (table["precision"] == "fp32")].iloc[0]
    assert baseline["speedup"] == 1.0
    assert {"openvino"} <= set(table["runtime"]) and {"fp32", "int8"} <= set(table["precision"])
    assert (table["median_ms"] > 0).all()
    assert "speedup" in view.summary and "threads for every runtime" in view.summary
    assert view.figure.axes
    fractions = [fraction for fraction, _ in progress]
    assert fractions == sorted(fractions) and progress[-1] == (1.0, "done")
    assert any("timing" in description and "64 tokens" in description for _, description in progress)


@pytest.mark.parametrize(
    ("lengths", "runs", "says"),
    [([], 3, "give at least one sequence length"), ([128], BENCH_MAX_RUNS + 1, f"at most {BENCH_MAX_RUNS} timed runs")],
    ids=["no-lengths", "too-many-runs"],
)
def test_benchmark_settings_out_of_range_are_one_line_errors(service, lengths, runs, says):
    with pytest.raises(gr.Error) as raised:
        benchmark(service, lengths, runs)
    assert says in raised.value.message and raised.value.title == "Cannot benchmark"


def test_api_benchmark_returns_summary_table_and_plot(client):
    summary, table, plot = client.predict([64], 1, api_name="/benchmark")
    assert "speedup" in summary
    assert table["headers"][:4] == ["model", "runtime", "precision", "seq_len"]
    assert {row[3] for row in table["data"]} == {64}
    assert plot["type"] == "matplotlib" and plot["plot"]


def test_about_this_machine_names_the_kernels_that_run_and_why(service):
    from sparseqa import native

    text = machine_text(service, PageFacts.gather(service))
    sparse = service.sparse
    decision = sparse.kernel_choice
    assert decision.how in ("measured", "cached")
    if sparse.kernels == "sparseqa":
        isa = native.chosen_isa()
        isas = ", ".join(native.cpu_isas())
        assert f"| Kernels of the sparse model | sparseqa's, {isa} path (this CPU runs: {isas}) |" in text
    else:
        assert "| Kernels of the sparse model | OpenVINO's" in text
    assert f"| Why | {decision.reason} |" in text
    assert f"| Measured medians | {decision.medians_text()} |" in text
    assert "measured at load" in text and "cached for this machine" in text


AVX2_ONLY = Machine("Some AVX2 CPU", 2, 2, False, False, False, "fp32", flags=("avx2",))
VNNI = Machine("AMD EPYC", 2, 2, True, True, False, "bf16", flags=("avx2", "avx512_vnni"))
AMX = Machine("Intel Xeon (AMX)", 2, 2, True, True, True, "bf16", flags=("avx512_vnni", "amx_int8"))
# Medians (ms) at 128 and 384 tokens: the AMX Xeon's from issue 17, Zen 5's from an early bench run of the 1x4 kernels
# on a faster Zen 5 host (51 against 34 ms at 384 tokens).
MEASURED = {
    "amx": (AMX, {"openvino": (21.7, 106.3), "sparseqa": (27.4, 116.2), "openvino-sparse-weights": (23.5, 113.7)}),
    "vnni": (VNNI, {"openvino": (17.7, 51.1), "sparseqa": (11.5, 34.1)}),
    "avx2-only": (AVX2_ONLY, {"openvino": (60.0, 200.0), "sparseqa": (58.9, 197.0)}),
}


def with_decision(service: QAService, medians: dict[str, tuple[float, float]]) -> QAService:
    """The same service, its sparse engine as if `auto` had measured ``medians`` (ms at 128 and 384 tokens)."""
    from sparseqa.choice import SEQ_LENS, KernelDecision, decide
    from sparseqa.timing import LatencyStats

    stats = {
        (name, length): LatencyStats.from_samples([median * factor for factor in (0.99, 1.0, 1.01)])
        for name, values in medians.items()
        for length, median in zip(SEQ_LENS, values)
    }
    chosen, reason, noise = decide(stats)
    by_name = {name: dict(zip(SEQ_LENS, values)) for name, values in medians.items()}
    sparse = copy.copy(service.sparse)
    sparse.kernel_choice = KernelDecision(chosen, "measured", reason, by_name, noise, 3, 4.2, "2026-12-01T00:00:00")
    sparse.kernels = "sparseqa" if chosen == "sparseqa" else "openvino"
    sparse.kernel_isa = "avx2" if chosen == "sparseqa" else None
    sparse.sparse_weight_decompression = chosen == "openvino-sparse-weights"
    sparse.kernel_fallback = None if chosen == "sparseqa" else reason
    return QAService(service.settings, sparse, service.dense)

@pytest.mark.parametrize("name", list(MEASURED))
def test_about_this_machine_on_faked_cpus_says_what_was_measured_without_contradictions(service, name, monkeypatch):
    import sparseqa.interface as interface

    monkeypatch.setattr(interface, "latest_bench", lambda cpu, model: None)
    cpu, medians = MEASURED[name]
    faked = with_decision(service, medians)
    text = machine_text(faked, dataclasses.replace(PageFacts.gather(faked), machine=cpu))

    assert f"| CPU | {cpu.cpu} |" in text
    chosen = faked.sparse.kernel_choice.chosen
    assert chosen == {"amx": "openvino", "vnni": "sparseqa", "avx2-only": "openvino"}[name]
    if name == "amx":
        assert "| Sparse weight decompression | available (AMX); off for the sparse model" in text
        decompression = "With OpenVINO's sparse weight decompression the zeros cost time (0.92x at 128 tokens, 0.93x at"
        assert decompression in text
        assert "With sparseqa's kernels the zeros cost time (0.79x at 128 tokens, 0.91x at 384)" in text
    else:
        assert "| Sparse weight decompression | not available (it needs AMX) |" in text
    if name == "vnni":
        assert "With sparseqa's kernels the zeros saved time (1.54x at 128 tokens, 1.50x at 384)" in text
    if name == "avx2-only":
        assert "With sparseqa's kernels the zeros bought nothing measurable (1.02x at 128 tokens, 1.02x at 384)" in text
    assert ("sparse weight decompression on" in text) == faked.sparse.sparse_weight_decompression
    assert "has not been measured yet: the Benchmark tab" in text


@pytest.mark.parametrize(
    "how, reason",
    [
        ("forced", "forced with kernels=openvino (--kernels or SPARSEQA_KERNELS); nothing was measured"),
        ("only candidate", "OpenVINO kernels: the sparseqa kernels are unavailable (no C++ compiler found)"),
    ],
)
def test_about_this_machine_says_an_unmeasured_kernel_choice_once(service, how, reason):
    from sparseqa.choice import KernelDecision

    sparse = copy.copy(service.sparse)
    sparse.kernel_choice = KernelDecision("openvino", how, reason)
    faked = QAService(service.settings, sparse, service.dense)
    text = machine_text(faked, PageFacts.gather(faked))

    assert text.count(reason) == 1
    assert f"| How they were chosen | {'only candidate: ' if how == 'only candidate' else ''}{reason} |" in text
    assert "| Why |" not in text and "| Measured medians |" not in text


@given(
    plain=st.tuples(st.floats(5.0, 200.0), st.floats(5.0, 200.0)),
    slowdown=st.tuples(st.floats(0.5, 1.0), st.floats(0.5, 1.0)),
    amx=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_the_page_and_ask_never_claim_the_zeros_save_time_when_the_measurement_says_they_do_not(
    service, kestrel_comparison, plain, slowdown, amx
):
    import sparseqa.interface as interface

    # The sparse paths ran at most as fast as OpenVINO's kernels (speed ratios in slowdown, at most 1).
    medians = {"openvino": plain, "sparseqa": tuple(time / ratio for time, ratio in zip(plain, slowdown))}
    if amx:
        medians["openvino-sparse-weights"] = tuple(time / ratio for time, ratio in zip(plain, reversed(slowdown)))
    faked = with_decision(service, medians)
    previous, interface.latest_bench = interface.latest_bench, lambda cpu, model: None
    try:
        page = machine_text(faked, dataclasses.replace(PageFacts.gather(faked), machine=AMX if amx else VNNI))
    finally:
        interface.latest_bench = previous
    answered = dataclasses.replace(kestrel_comparison, sparse=dataclasses.replace(
        kestrel_comparison.sparse, kernel_choice=faked.sparse.kernel_choice))  # fmt: skip
    said = [page, summary_text(answered), answered.table().to_string(), json.dumps(answered.as_dict())]
    for text in said:
        assert "saved time" not in text and "save time" not in text and "saves time" not in text
    assert faked.sparse.kernel_choice.chosen == "openvino"
    assert "OpenVINO's kernels: no other candidate was faster" in said[3]


OTHER = {"1x4": "4x1", "4x1": "1x4"}


@pytest.fixture(scope="module")
def pruned_facts(tiny_sparse_model_1x4, tiny_sparse_model_4x1) -> dict[str, PageFacts]:
    """What the Model facts tab is built from, for the tiny model pruned each way."""
    models = {"1x4": tiny_sparse_model_1x4, "4x1": tiny_sparse_model_4x1}
    return {pattern: PageFacts(machine(), inspect_model(str(model)), None) for pattern, model in models.items()}


@pytest.mark.parametrize("pattern", ["1x4", "4x1"])
def test_model_facts_text_names_the_pattern_read_from_the_weights_in_words(pruned_facts, pattern):
    facts = pruned_facts[pattern]
    text = sparsity_text(facts)
    report = facts.sparsity

    assert f"**{report.zeros:.1%}** of the weights are zero" in text
    own = f"**{report.block_share(pattern):.1%}** of the {describe(pattern)} blocks"
    other = f"**{report.block_share(OTHER[pattern]):.1%}** of the {describe(OTHER[pattern])} blocks"
    assert own in text and other in text and text.index(own) < text.index(other), "the model's own pattern first"
    assert report.block_share(pattern) == pytest.approx(0.8, abs=0.01)
    assert f"so its weights are pruned in **{describe(pattern)}** blocks" in text
    assert "(out, in)" in text


@pytest.mark.parametrize("pattern", ["1x4", "4x1"])
def test_model_facts_table_and_plot_show_both_orientations_per_layer(pruned_facts, pattern):
    report = pruned_facts[pattern].sparsity
    table = sparsity_table(report)

    assert list(table.columns) == SPARSITY_COLUMNS
    assert table["layer"].tolist() == [0, 1]
    assert set(table["pattern"]) == {describe(pattern)}
    for orientation in ("1x4", "4x1"):
        expected = [f"{share:.1%}" for share in report.per_layer()[f"{orientation} blocks zero"]]
        assert table[f"all-zero {orientation} blocks"].tolist() == expected
    assert all(float(share.rstrip("%")) == pytest.approx(80, abs=1) for share in table[f"all-zero {pattern} blocks"])
    linears = linear_sparsity_table(report)
    assert list(linears.columns) == LINEAR_SPARSITY_COLUMNS and len(linears) == 12
    assert set(linears["pattern"]) == {describe(pattern)}

    axes = sparsity_figure(report).axes[0]
    bars = {container.get_label(): [bar.get_height() for bar in container] for container in axes.containers}
    assert set(bars) == {f"{describe(orientation)} blocks" for orientation in ("1x4", "4x1")}
    for orientation in ("1x4", "4x1"):
        shares = report.per_layer()[f"{orientation} blocks zero"] * 100
        assert bars[f"{describe(orientation)} blocks"] == pytest.approx(shares.tolist())
    assert describe(pattern) in axes.get_title()


def test_model_facts_say_when_the_zeros_are_unstructured_or_absent(tiny_dense_model):
    import numpy as np

    rng = np.random.default_rng(0)
    scattered = rng.standard_normal((64, 64)).astype(np.float32)
    scattered[rng.random(scattered.shape) < 0.8] = 0
    report = inspect_weights([("bert.encoder.layer.0.output.dense.weight", scattered)], "scattered")
    text = sparsity_text(PageFacts(machine(), report, None))
    assert "neither orientation is clearly blocked: its zeros are unstructured" in text
    assert set(sparsity_table(report)["pattern"]) == {"unstructured"}

    dense = sparsity_text(PageFacts(machine(), inspect_model(str(tiny_dense_model)), None))
    assert "so it is dense" in dense
    assert sparsity_text(PageFacts(machine(), None, "no sparse model is loaded")) == (
        "Sparsity could not be measured: no sparse model is loaded."
    )
