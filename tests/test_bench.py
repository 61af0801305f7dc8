"""The benchmark sweep on the tiny models: the command end to end, its JSON and PNG, and the API's progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sparseqa.bench import BenchSettings, plan, run_benchmark
from sparseqa.timing import OtherCpuUse
from sparseqa.cli import main
from sparseqa.hardware import Machine, machine
from sparseqa.runtimes import default_threads

SEQ_LENS = (32, 48)
REPO = Path(__file__).resolve().parent.parent


def expected_configurations(cpu: Machine) -> set[tuple[str, str, str]]:
    """(role, runtime, precision) the issue asks for on ``cpu``, written out rather than taken from ``plan``."""
    wanted = {
        ("dense", "pytorch", "fp32"),
        ("sparse", "pytorch", "fp32"),
        ("dense", "openvino", "fp32"),
        ("sparse", "openvino", "fp32"),
        ("dense", "openvino", "int8"),
        ("sparse", "openvino", "int8"),
    }
    if cpu.avx512_bf16 or cpu.amx:
        wanted |= {("dense", "openvino", "bf16"), ("sparse", "openvino", "bf16")}
    if cpu.amx:
        wanted.add(("sparse", "openvino + sparse weights", "int8"))
    wanted.add(("sparse", "openvino + sparseqa kernels", "int8"))  # every x86-64 CPU runs at least the scalar path
    return wanted


@pytest.fixture(scope="module")
def bench_run(tiny_sparse_model_4x1, tiny_dense_model, tmp_path_factory) -> dict:
    """One ``python -m sparseqa bench`` run on the tiny models (the sparse one pruned the seed's way, in 4x1 blocks):
    its output, JSON and plot path."""
    out = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable, "-m", "sparseqa", "bench",
        "--model", str(tiny_sparse_model_4x1),
        "--dense-model", str(tiny_dense_model),
        "--seq-lens", ",".join(map(str, SEQ_LENS)),
        "--runs", "2",
        "--warmup", "1",
        "--json", str(out / "bench.json"),
        "--plot", str(out / "bench.png"),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return {
        "stdout": completed.stdout,
        "stderr": completed.stderr,
        "json": json.loads((out / "bench.json").read_text()),
        "plot": out / "bench.png",
    }


def test_json_has_every_configuration_at_every_length(bench_run):
    rows = bench_run["json"]["rows"]
    measured = {(row["role"], row["runtime"], row["precision"], row["seq_len"]) for row in rows}
    wanted = {config + (seq_len,) for config in expected_configurations(machine()) for seq_len in SEQ_LENS}
    assert measured == wanted
    assert len(rows) == len(wanted)
    for row in rows:
        assert set(row) >= {"model", "runtime", "precision", "seq_len", "median_ms", "p90_ms", "speedup", "vs_dense_same_runtime"}
        assert 0 < row["median_ms"] <= row["p90_ms"]
        assert row["runs"] == 2


def test_json_names_what_this_cpu_cannot_run_and_why(bench_run):
    absent = {item["configuration"]: item["reason"] for item in bench_run["json"]["absent"]}
    cpu = machine()
    if not cpu.amx:
        assert "needs AMX, which this CPU lacks" in absent["sparse · openvino + sparse weights int8"]
        assert "needs AMX, which this CPU lacks" in bench_run["stdout"]
    if not (cpu.avx512_bf16 or cpu.amx):
        assert set(absent) >= {"dense · openvino bf16", "sparse · openvino bf16"}
        assert "bf16 needs AVX512-BF16 or AMX" in absent["sparse · openvino bf16"]
    measured = {f"{row['role']} · {row['runtime']} {row['precision']}" for row in bench_run["json"]["rows"]}
    assert not measured & set(absent)


def test_speedups_are_relative_to_dense_pytorch_fp32(bench_run):
    rows = bench_run["json"]["rows"]
    baseline = {
        row["seq_len"]: row
        for row in rows
        if (row["role"], row["runtime"], row["precision"]) == ("dense", "pytorch", "fp32")
    }
    assert sorted(baseline) == list(SEQ_LENS)
    for row in baseline.values():
        assert row["speedup"] == 1.0
    for row in rows:
        assert row["speedup"] == pytest.approx(baseline[row["seq_len"]]["median_ms"] / row["median_ms"])


def test_vs_dense_same_runtime_divides_medians_at_the_same_runtime_and_precision(bench_run):
    rows = bench_run["json"]["rows"]
    dense = {(row["runtime"], row["precision"], row["seq_len"]): row["median_ms"] for row in rows if row["role"] == "dense"}
    sparse_rows = [row for row in rows if row["role"] == "sparse"]
    assert sparse_rows
    for row in sparse_rows:
        runtime = "openvino" if row["runtime"].startswith("openvino + ") else row["runtime"]
        expected = dense[(runtime, row["precision"], row["seq_len"])] / row["median_ms"]
        assert row["vs_dense_same_runtime"] == pytest.approx(expected)
    assert all(row["vs_dense_same_runtime"] is None for row in rows if row["role"] == "dense")


def test_sparse_kernel_rows_compare_with_the_same_model_on_openvino_kernels(bench_run):
    from sparseqa import native

    rows = bench_run["json"]["rows"]
    assert {row["kernels"] for row in rows if row["runtime"] == "pytorch"} == {"pytorch"}
    own = {
        row["seq_len"]: row["median_ms"]
        for row in rows
        if (row["role"], row["runtime"], row["precision"]) == ("sparse", "openvino", "int8")
    }
    assert all(row["kernels"] == "openvino" for row in rows if row["runtime"] == "openvino")
    ours = [row for row in rows if row["runtime"] == "openvino + sparseqa kernels"]
    assert sorted(row["seq_len"] for row in ours) == list(SEQ_LENS)
    for row in ours:
        assert (row["role"], row["precision"], row["kernels"]) == ("sparse", "int8", "sparseqa")
        assert row["vs_openvino_kernels"] == pytest.approx(own[row["seq_len"]] / row["median_ms"])
    assert all(row["vs_openvino_kernels"] is None for row in rows if row["kernels"] != "sparseqa")
    assert bench_run["json"]["machine"]["kernel_isa"] == native.chosen_isa()
    assert "vs OpenVINO kernels" in bench_run["stdout"]
    # Which block orientation the sparse-kernel rows ran, in the JSON and in words on the page.
    assert bench_run["json"]["machine"]["kernel_blocks"] == "4x1"
    assert {row["kernel_blocks"] for row in ours} == {"4x1"}
    assert all("kernel_blocks" not in row for row in rows if row["kernels"] != "sparseqa")
    expected = f"openvino + sparseqa kernels: the {native.chosen_isa()} path, on 4x1 (4 consecutive outputs × 1 input)"
    assert expected in bench_run["stdout"]


def test_logits_of_every_int8_path_are_compared_with_fp32(bench_run):
    fidelity = {item["configuration"]: item for item in bench_run["json"]["logits_vs_fp32"]}
    expected = {"sparse · openvino int8", "sparse · openvino + sparseqa kernels int8"}
    if machine().amx:
        expected.add("sparse · openvino + sparse weights int8")
    assert set(fidelity) == expected
    assert fidelity["sparse · openvino + sparseqa kernels int8"]["kernels"] == "sparseqa"
    for item in fidelity.values():
        # int8 weights and activations on a random 32-wide model: close to fp32, yet not identical to it.
        assert 0 < item["max_abs_diff"] < 0.1
        assert 0.999 < item["cosine"] <= 1.0 + 1e-9
        assert f"{item['configuration']}: max abs difference {item['max_abs_diff']:.4f}" in bench_run["stdout"]


def test_json_header_describes_the_machine_and_threads(bench_run):
    header = bench_run["json"]["machine"]
    cpu = machine()
    assert header["cpu"] == cpu.cpu
    assert header["cores"] == cpu.physical_cores
    assert header["threads"] == default_threads()
    assert header["isa"] == {"avx512_vnni": cpu.avx512_vnni, "avx512_bf16": cpu.avx512_bf16, "amx": cpu.amx}
    assert {"torch", "transformers", "openvino", "optimum-intel", "nncf"} <= set(header["libraries"])
    assert header["date"][:4].isdigit()
    assert 0.0 <= header["other_cpu_share"] <= 1.0
    assert bench_run["json"]["settings"]["seq_lens"] == list(SEQ_LENS)


def test_stdout_table_has_one_line_per_row_and_progress_goes_to_stderr(bench_run):
    lines = bench_run["stdout"].splitlines()
    header = next(index for index, line in enumerate(lines) if line.split()[:3] == ["model", "runtime", "precision"])
    for column in ("seq_len", "median_ms", "p90_ms", "speedup", "vs dense same runtime"):
        assert column in lines[header]
    table_lines = lines[header + 1 : header + 1 + len(bench_run["json"]["rows"])]
    first_median = bench_run["json"]["rows"][0]["median_ms"]
    assert all(len(line.split()) >= 7 for line in table_lines)
    assert any(f"{first_median:.1f}" in line for line in table_lines)
    assert "done" in bench_run["stderr"]
    assert "%|" not in bench_run["stdout"]


def test_plot_is_a_png_of_sensible_size(bench_run):
    with Image.open(bench_run["plot"]) as image:
        assert image.format == "PNG"
        width, height = image.size
        image.verify()
    assert 800 <= width <= 3000
    assert 400 <= height <= 2000


def test_api_reports_progress_and_returns_table_and_figure(tiny_sparse_model, tiny_dense_model):
    reports: list[tuple[float, str]] = []
    settings = BenchSettings(model=str(tiny_sparse_model), dense_model=str(tiny_dense_model), seq_lens=(32,), runs=1, warmup=0)
    result = run_benchmark(settings, lambda fraction, description: reports.append((fraction, description)))
    fractions = [fraction for fraction, _ in reports]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    configurations, _ = plan(settings)
    descriptions = [description for _, description in reports]
    for config in configurations:
        assert f"loading {config.name}" in descriptions
    assert descriptions.index("timing every configuration at 32 tokens") > descriptions.index(
        f"loading {configurations[-1].name}"
    ), "every engine is loaded before any is timed"
    assert "timing at 32 tokens: round 1 of 1" in descriptions
    table = result.table()
    assert list(table.columns) == [
        "model", "runtime", "precision", "seq_len", "median_ms", "p90_ms", "speedup", "vs dense same runtime",
        "vs OpenVINO kernels",
    ]  # fmt: skip
    assert len(table) == len(configurations)
    latency_axes = result.figure().axes[0]
    assert len(latency_axes.get_lines()) >= len(configurations)
    medians = [row.latency.median_ms for row in result.rows]
    assert latency_axes.get_yscale() == ("log" if max(medians) > 10 * min(medians) else "linear")
    assert latency_axes.get_xlabel() and latency_axes.get_ylabel()


AMX = Machine("Xeon", 8, 4, True, True, True, "bf16", flags=("amx_int8", "avx512_vnni", "avx512_bf16"))
VNNI = Machine("EPYC", 8, 4, True, True, False, "bf16", flags=("avx512_vnni", "avx512_bf16"))
AVX2_ONLY = Machine("Old", 8, 4, False, False, False, "fp32", flags=("avx2",))


@pytest.mark.parametrize(
    ("cpu", "absent"),
    [
        (AMX, []),
        (VNNI, ["sparse · openvino + sparse weights int8"]),
        (AVX2_ONLY, ["dense · openvino bf16", "sparse · openvino bf16", "sparse · openvino + sparse weights int8"]),
    ],
    ids=["amx", "vnni", "avx2-only"],
)
def test_plan_adds_bf16_and_sparse_decompression_where_the_cpu_has_them(cpu, absent):
    planned, left_out = plan(BenchSettings(model="s", dense_model="d"), cpu)
    assert {(c.role, c.runtime_label, c.precision) for c in planned} == expected_configurations(cpu)
    assert [item.configuration for item in left_out] == absent
    assert planned[0].role == "dense" and (planned[0].runtime, planned[0].precision) == ("pytorch", "fp32")


def test_the_header_says_which_kernels_auto_chose_and_how_it_did_in_this_run(bench_run):
    """The run measured every candidate itself; `auto` chose from a cached measurement, else by the same rule on
    this run's medians, and the summary says how the chosen one compares with the fastest sparse int8 row."""
    document = bench_run["json"]
    choice, comparison = document["auto_choice"], document["auto_choice_vs_fastest"]
    assert choice["chosen"] in {"openvino", "openvino-sparse-weights", "sparseqa"} and choice["reason"]
    assert f"--kernels auto chooses {choice['chosen']} here" in bench_run["stdout"]
    assert sorted(int(length) for length in comparison) == list(SEQ_LENS)
    rows = {(row["runtime"], row["seq_len"]): row["median_ms"] for row in document["rows"] if row["role"] == "sparse"
            and row["precision"] == "int8"}  # fmt: skip
    for length, item in comparison.items():
        fastest = min(median for (runtime, seq_len), median in rows.items() if seq_len == int(length))
        assert item["fastest_ms"] == fastest
        assert item["slower_by"] == pytest.approx(item["chosen_ms"] / fastest - 1)
    assert "where the speedup comes from: The runtime gave" in bench_run["stdout"]


def test_other_cpu_use_sees_a_process_spinning_beside_it():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        meter = OtherCpuUse()
        with meter:
            subprocess.run([sys.executable, "-c", "import time; time.sleep(1.5)"], check=True)
    finally:
        spinner.kill()
        spinner.wait()
    # One spinning process keeps one core busy; the sleeping child and this process use next to none.
    assert meter.share >= 0.5 / os.cpu_count()


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["--seq-lens", "64,abc"], 2, "comma-separated whole numbers"),
        (["--seq-lens", "8"], 1, "use lengths from 32 to 512"),
        (["--runs", "0"], 1, "timed runs must be at least 1"),
        (["--json", "/no/such/dir/out.json"], 2, "its directory does not exist"),
    ],
)
def test_bad_arguments_end_with_one_line_before_loading_anything(arguments, code, message, capsys):
    # An unreachable model name: reaching the loader would fail with a different message.
    argv = ["bench", "--model", "/no/such/model", "--dense-model", "/no/such/dense", *arguments]
    try:
        returned = main(argv)
    except SystemExit as exit:
        returned = exit.code
    assert returned == code
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error


def test_the_page_reads_the_latest_run_only_for_the_same_model_files(bench_run, tiny_sparse_model_4x1, tmp_path):
    from sparseqa.bench import latest_bench

    # The bench subprocess saved its run in the session's cache; a synthetic model of another block pattern has the
    # same name, so the saved run names the model's revision too.
    record = latest_bench(machine().cpu, str(tiny_sparse_model_4x1))
    assert record is not None and record["model_revision"]
    (tiny_sparse_model_4x1 / "sparseqa-touched.txt").write_text("another revision")
    try:
        assert latest_bench(machine().cpu, str(tiny_sparse_model_4x1)) is None
    finally:
        (tiny_sparse_model_4x1 / "sparseqa-touched.txt").unlink()
    assert latest_bench(machine().cpu, str(tiny_sparse_model_4x1)) == record
