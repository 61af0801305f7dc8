"""The benchmark sweep: every model × runtime × precision at every sequence length, in one run, on one machine.

The table separates the three causes of a speedup: the runtime (the same model on PyTorch and on OpenVINO), the
precision (fp32, bf16, int8 on OpenVINO) and the sparsity (the dense and the sparse model on the same runtime at the
same precision, the ``vs dense same runtime`` column). Every ``speedup`` is relative to the dense model on PyTorch
fp32, the way the baseline is usually run. Where sparseqa's kernels build, the sparse model also runs on OpenVINO int8
with its sparse Linears on those kernels, and ``vs OpenVINO kernels`` compares it with the same model, same precision
on OpenVINO's own kernels: what the zeros buy. Beside the timings, every sparse int8 configuration's start/end logits
on the bundled examples are compared with the sparse model's OpenVINO fp32 logits (max abs difference, cosine).

``run_benchmark(settings, progress)`` is the one entry point for the CLI and the web page; its ``BenchResult`` gives
the table (pandas), the plot (matplotlib) and the JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from . import decoding
from .blocks import describe
from .calibration import example_pairs
from .hardware import Machine, library_versions, machine
from .models import DENSE_ID, SPARSE_ID, SYNTHETIC_DENSE, SYNTHETIC_SPARSE, card_for
from .choice import AUTO_RUNTIMES, OPENVINO, SPARSE_KERNELS_RUNTIME, SPARSE_WEIGHTS_RUNTIME, KernelDecision, decide
from .explain import bench_sentences
from .models import ModelLoadError, cache_root, resolve
from .runtimes import QAEngine, cached_kernel_decision, choose_kernels, default_threads, load_engine
from .timing import BUSY_SHARE, LatencyStats, OtherCpuUse, interleave
from .workload import forward_pass

log = logging.getLogger(__name__)

DEFAULT_SEQ_LENS = (64, 128, 256, 384)
MIN_SEQ_LEN = 32
MAX_SEQ_LEN = 512  # BERT's position embeddings
TABLE_COLUMNS = [
    "model",
    "runtime",
    "precision",
    "seq_len",
    "median_ms",
    "p90_ms",
    "speedup",
    "vs dense same runtime",
    "vs OpenVINO kernels",
]

# Called as progress(fraction_done, description): the shape gradio.Progress accepts, so a handler can pass its own.
ProgressCallback = Callable[[float, str], object]


@dataclass(frozen=True)
class BenchSettings:
    """What to measure: the two models, the sequence lengths, and how many runs at each."""

    model: str = SPARSE_ID
    dense_model: str = DENSE_ID
    seq_lens: tuple[int, ...] = DEFAULT_SEQ_LENS
    runs: int = 10
    warmup: int = 2
    threads: int | None = None
    kernels: str | None = None  # auto, sparseqa or openvino (None: SPARSEQA_KERNELS, else auto)

    @classmethod
    def synthetic_models(cls, **overrides) -> BenchSettings:
        """The random-weight BERT-base pair: real latency without a download."""
        return cls(model=SYNTHETIC_SPARSE, dense_model=SYNTHETIC_DENSE, **overrides)

    def check(self) -> None:
        """Raise ValueError with a one-line message when a setting is out of range."""
        if not self.seq_lens:
            raise ValueError("give at least one sequence length, e.g. 128,384")
        for seq_len in self.seq_lens:
            if not MIN_SEQ_LEN <= seq_len <= MAX_SEQ_LEN:
                raise ValueError(
                    f"sequence length {seq_len} is out of range: use lengths from {MIN_SEQ_LEN} to {MAX_SEQ_LEN} tokens"
                )
        if self.runs < 1:
            raise ValueError("timed runs must be at least 1")
        if self.warmup < 0:
            raise ValueError("warm-up runs cannot be negative")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be at least 1")


@dataclass(frozen=True)
class Configuration:
    """One model on one runtime at one precision."""

    role: str  # "dense" or "sparse"
    model: str
    runtime: str
    precision: str
    sparse_decompression: bool = False
    sparse_kernels: bool = False  # the sparse Linears on sparseqa's kernels

    @property
    def runtime_label(self) -> str:
        """The runtime as the table shows it; OpenVINO's sparse weight decompression and OpenVINO with sparseqa's
        kernels count as runtimes of their own."""
        if self.sparse_kernels:
            return SPARSE_KERNELS_RUNTIME
        return SPARSE_WEIGHTS_RUNTIME if self.sparse_decompression else self.runtime

    @property
    def kernels(self) -> str:
        """Whose kernels compute its Linears: "sparseqa", "openvino" or "pytorch"."""
        return "sparseqa" if self.sparse_kernels else self.runtime

    @property
    def name(self) -> str:
        """A short name for legends and messages, e.g. ``sparse · openvino int8``."""
        return f"{self.role} · {self.runtime_label} {self.precision}"

    @property
    def is_baseline(self) -> bool:
        """Whether this is the dense model on PyTorch fp32, which every ``speedup`` divides."""
        return (self.role, self.runtime, self.precision) == ("dense", "pytorch", "fp32")

    @property
    def same_runtime_key(self) -> tuple[str, str]:
        """The (runtime, precision) its dense counterpart ran at: decompression only changes sparse weights."""
        return self.runtime, self.precision


@dataclass(frozen=True)
class Absent:
    """A configuration this machine cannot run, and why."""

    configuration: str
    reason: str


@dataclass(frozen=True)
class BenchRow:
    """One configuration at one sequence length, with its ratios to the dense baselines."""

    configuration: Configuration
    seq_len: int
    latency: LatencyStats
    speedup: float
    vs_dense_same_runtime: float | None
    vs_openvino_kernels: float | None = None

    def as_dict(self) -> dict:
        """Plain values for JSON."""
        config = self.configuration
        return {
            "model": config.model,
            "role": config.role,
            "runtime": config.runtime_label,
            "precision": config.precision,
            "kernels": config.kernels,
            "seq_len": self.seq_len,
            "median_ms": self.latency.median_ms,
            "p90_ms": self.latency.p90_ms,
            "runs": self.latency.runs,
            "samples_ms": list(self.latency.samples_ms),
            "speedup": self.speedup,
            "vs_dense_same_runtime": self.vs_dense_same_runtime,
            "vs_openvino_kernels": self.vs_openvino_kernels,
        }


@dataclass(frozen=True)
class Fidelity:
    """How close one configuration's start/end logits on the bundled examples are to the same model's OpenVINO fp32."""

    configuration: Configuration
    max_abs_diff: float
    cosine: float

    def as_dict(self) -> dict:
        """Plain values for JSON."""
        return {
            "configuration": self.configuration.name,
            "kernels": self.configuration.kernels,
            "max_abs_diff": self.max_abs_diff,
            "cosine": self.cosine,
        }


@dataclass(frozen=True)
class BenchResult:
    """Everything one benchmark run measured, on which machine, with which settings."""

    settings: BenchSettings
    threads: int
    machine: Machine
    versions: dict[str, str]
    date: str
    rows: list[BenchRow]
    absent: list[Absent] = field(default_factory=list)
    other_cpu_share: float | None = None  # see OtherCpuUse
    kernel_isa: str | None = None  # the ISA path of sparseqa's kernels in the measured rows, if any
    kernel_blocks: str | None = None  # the block orientation(s) those kernels ran ("4x1", "1x4" or "1x4+4x1")
    fidelity: list[Fidelity] = field(default_factory=list)
    # What `--kernels auto` chose for the sparse int8 model here: its cached decision, else its rule on this run.
    auto_choice: KernelDecision | None = None

    def table(self) -> pd.DataFrame:
        """One row per configuration and sequence length, grouped by length, the dense PyTorch baseline first."""
        records = [
            [
                card_for(row.configuration.model).label,
                row.configuration.runtime_label,
                row.configuration.precision,
                row.seq_len,
                round(row.latency.median_ms, 1),
                round(row.latency.p90_ms, 1),
                round(row.speedup, 2),
                None if row.vs_dense_same_runtime is None else round(row.vs_dense_same_runtime, 2),
                None if row.vs_openvino_kernels is None else round(row.vs_openvino_kernels, 2),
            ]
            for row in sorted(self.rows, key=lambda row: row.seq_len)
        ]
        return pd.DataFrame(records, columns=TABLE_COLUMNS)

    def machine_header(self) -> dict:
        """The machine, the thread count and the library versions the numbers were measured with."""
        return {
            "cpu": self.machine.cpu,
            "cores": self.machine.physical_cores,
            "logical_cores": self.machine.logical_cores,
            "threads": self.threads,
            "isa": {
                "avx512_vnni": self.machine.avx512_vnni,
                "avx512_bf16": self.machine.avx512_bf16,
                "amx": self.machine.amx,
            },
            "libraries": self.versions,
            "kernel_isa": self.kernel_isa,
            "kernel_blocks": self.kernel_blocks,
            "date": self.date,
            "other_cpu_share": self.other_cpu_share,
        }

    def as_dict(self) -> dict:
        """The JSON document: machine header, settings, measured rows, and the configurations left out."""
        return {
            "machine": self.machine_header(),
            "settings": {
                "model": self.settings.model,
                "dense_model": self.settings.dense_model,
                "seq_lens": list(self.settings.seq_lens),
                "runs": self.settings.runs,
                "warmup": self.settings.warmup,
                "batch": 1,
            },
            "rows": [
                row.as_dict() | ({"kernel_blocks": self.kernel_blocks} if row.configuration.sparse_kernels else {})
                for row in self.rows
            ],
            "absent": [{"configuration": item.configuration, "reason": item.reason} for item in self.absent],
            "logits_vs_fp32": [item.as_dict() for item in self.fidelity],
            "auto_choice": None if self.auto_choice is None else self.auto_choice.as_dict(),
            "auto_choice_vs_fastest": self.auto_choice_vs_fastest(),
        }

    def auto_choice_vs_fastest(self) -> dict[int, dict] | None:
        """At each length: the configuration ``auto`` chose, the fastest sparse int8 configuration of this run, and
        how much slower the chosen one ran (0 when it is the fastest)."""
        if self.auto_choice is None:
            return None
        chosen_label = AUTO_RUNTIMES[self.auto_choice.chosen]
        comparison = {}
        for seq_len in sorted(set(self.settings.seq_lens)):
            rows = [
                row
                for row in self.rows
                if row.seq_len == seq_len
                and (row.configuration.role, row.configuration.precision) == ("sparse", "int8")
                and row.configuration.runtime_label in AUTO_RUNTIMES.values()
            ]
            chosen = [row for row in rows if row.configuration.runtime_label == chosen_label]
            if not chosen:
                continue
            fastest = min(rows, key=lambda row: row.latency.median_ms)
            comparison[seq_len] = {
                "chosen": chosen[0].configuration.name,
                "chosen_ms": chosen[0].latency.median_ms,
                "fastest": fastest.configuration.name,
                "fastest_ms": fastest.latency.median_ms,
                "slower_by": chosen[0].latency.median_ms / fastest.latency.median_ms - 1,
            }
        return comparison

    def headline(self) -> str | None:
        """The fastest sparse configuration against the dense PyTorch fp32 baseline at the longest sequence."""
        longest = max(self.settings.seq_lens)
        at_longest = [row for row in self.rows if row.seq_len == longest]
        sparse_rows = [row for row in at_longest if row.configuration.role == "sparse"]
        if not sparse_rows:
            return None
        best = max(sparse_rows, key=lambda row: row.speedup)
        (baseline,) = [row for row in at_longest if row.configuration.is_baseline]
        return (
            f"at {longest} tokens the fastest sparse configuration, {best.configuration.name}, took "
            f"{best.latency.median_ms:.1f} ms (median) against {baseline.latency.median_ms:.1f} ms for "
            f"{baseline.configuration.name}: speedup {best.speedup:.2f}x"
        )

    def summary_lines(self) -> list[str]:
        """Plain-text lines for above or below the table: machine, threads, runs, and what was left out and why."""
        lines = [
            f"machine: {self.machine.cpu}, {self.machine.physical_cores} physical cores; {self.machine.isa_flags()}",
            f"{self.threads} threads for every runtime; batch 1; median and p90 of {self.settings.runs} timed runs "
            f"per configuration, interleaved round by round, after {self.settings.warmup} warm-up runs",
        ]
        if self.other_cpu_share is not None and self.other_cpu_share >= BUSY_SHARE:
            lines.append(
                f"warning: other work (other processes, or the hypervisor of a VM) used {self.other_cpu_share:.0%} of "
                "the CPU while the timings ran: they are noisy; re-run when the machine is idle"
            )
        if self.kernel_blocks:
            blocks = " and ".join(describe(blocks) for blocks in self.kernel_blocks.split("+"))
            lines.append(f"{SPARSE_KERNELS_RUNTIME}: the {self.kernel_isa} path, on {blocks} blocks")
        lines += [f"absent: {item.configuration}: {item.reason}" for item in self.absent]
        lines += self.kernel_lines()
        if not (self.machine.avx512_vnni or self.machine.amx):
            lines.append(
                "note: this CPU has neither AVX-512 VNNI nor AMX, the int8 dot-product instructions OpenVINO's int8 "
                "kernels are built for, so int8 may gain little over fp32 here"
            )
        headline = self.headline()
        if headline:
            lines.append(headline)
        if self.fidelity:
            lines.append(
                f"start/end logits on the {len(example_pairs())} bundled examples against sparse · openvino fp32:"
            )
            lines += [
                f"  {item.configuration.name}: max abs difference {item.max_abs_diff:.4f}, cosine {item.cosine:.6f}"
                for item in self.fidelity
            ]
        return lines

    def kernel_lines(self) -> list[str]:
        """Which kernels `auto` picks here and why, how that compares with this run, and where the speedup comes from
        in this run's ratios."""
        lines = ["kernels: every row forces its own (the sparse int8 rows: OpenVINO's, and each sparse path)"]
        decision = self.auto_choice
        if decision is not None:
            source = (
                "no load measured it yet for these settings, so its rule applied to this run's medians"
                if decision.how == "from this run"
                else f"{decision.how} at load on {(decision.measured_at or '?')[:10]}"
            )
            lines.append(f"--kernels auto chooses {decision.chosen} here ({source}): {decision.reason}")
            for seq_len, item in (self.auto_choice_vs_fastest() or {}).items():
                verdict = "the fastest" if item["slower_by"] <= 0 else (
                    f"{item['slower_by']:.1%} slower than the fastest, {item['fastest']} ({item['fastest_ms']:.1f} ms)"
                )
                lines.append(
                    f"  in this run at {seq_len} tokens: {item['chosen']} took {item['chosen_ms']:.1f} ms, {verdict}"
                )
        sentences = bench_sentences([row.as_dict() for row in self.rows])
        lines += [f"where the speedup comes from: {sentence}" for sentence in sentences]
        return lines

    def figure(self) -> Figure:
        """Median latency against sequence length for every configuration (p90 as the upper error bar)."""
        return latency_figure(self)

    def write_json(self, path: str | Path) -> None:
        """Write ``as_dict()`` as indented JSON."""
        Path(path).write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")

    def write_plot(self, path: str | Path) -> None:
        """Write the figure as a PNG."""
        self.figure().savefig(path, format="png", dpi=120)


def plan(settings: BenchSettings, cpu: Machine | None = None) -> tuple[list[Configuration], list[Absent]]:
    """The configurations to measure on this CPU, dense PyTorch fp32 first, and those it cannot run with the reason."""
    cpu = cpu or machine()
    dense, sparse = settings.dense_model, settings.model
    configurations = [
        Configuration("dense", dense, "pytorch", "fp32"),
        Configuration("sparse", sparse, "pytorch", "fp32"),
    ]
    absent = []
    for precision in ("fp32", "bf16", "int8"):
        pair = [Configuration("dense", dense, "openvino", precision), Configuration("sparse", sparse, "openvino", precision)]
        if precision == "bf16" and not (cpu.avx512_bf16 or cpu.amx):
            absent += [Absent(config.name, "bf16 needs AVX512-BF16 or AMX, which this CPU lacks") for config in pair]
            continue
        configurations += pair
    decompressed = Configuration("sparse", sparse, "openvino", "int8", sparse_decompression=True)
    if cpu.sparse_weight_decompression:
        configurations.append(decompressed)
    else:
        absent.append(Absent(decompressed.name, "sparse weight decompression needs AMX, which this CPU lacks"))
    sparse_kernels = Configuration("sparse", sparse, "openvino", "int8", sparse_kernels=True)
    kernels = choose_kernels(settings.kernels, "openvino", "int8")
    if kernels.sparse:
        configurations.append(sparse_kernels)
    else:
        absent.append(Absent(sparse_kernels.name, kernels.reason or "OpenVINO kernels chosen"))
    return configurations, absent


def run_benchmark(settings: BenchSettings, progress: ProgressCallback | None = None) -> BenchResult:
    """Measure every configuration ``plan`` chooses at every sequence length, interleaved (``timing.interleave``).

    All engines are loaded and compiled first (with six BERT-base engines the process peaks near 4 GB), then each
    length times every configuration round by round. ``progress(fraction, description)`` is called before each
    engine loads, after each round, and at the end with 1.0. Raises ValueError (settings) or ModelLoadError with a
    one-line message.
    """
    settings.check()
    # Not `progress or ...`: gradio.Progress has a __len__ and is falsy before it tracks anything.
    report = progress if progress is not None else (lambda fraction, description: None)
    threads = settings.threads or default_threads()
    seq_lens = sorted(set(settings.seq_lens))
    configurations, absent = plan(settings)
    steps = len(configurations) + len(seq_lens) * settings.runs
    engines: dict[Configuration, QAEngine] = {}
    for done, config in enumerate(configurations):
        report(done / steps, f"loading {config.name}")
        try:
            engine = load_engine(
                config.model,
                config.runtime,
                config.precision,
                threads=threads,
                sparse_decompression=config.sparse_decompression,
                # Each row forces its kernels, so it measures one path; OpenVINO's own are what the others compare with.
                kernels="sparseqa" if config.sparse_kernels else "openvino",
            )
        except ValueError as problem:
            if not config.sparse_kernels:
                raise
            absent.append(Absent(config.name, str(problem)))
            continue
        engines[config] = engine
    configurations = list(engines)
    other_use = OtherCpuUse()
    measured: list[tuple[Configuration, int, LatencyStats]] = []
    for length_index, seq_len in enumerate(seq_lens):
        done = len(configurations) + length_index * settings.runs
        report(done / steps, f"timing every configuration at {seq_len} tokens")
        calls = {config: forward_pass(engine, seq_len) for config, engine in engines.items()}

        def after_round(rounds: int, done: int = done, seq_len: int = seq_len) -> None:
            report((done + rounds) / steps, f"timing at {seq_len} tokens: round {rounds} of {settings.runs}")

        with other_use:
            stats = interleave(calls, settings.runs, settings.warmup, after_round)
        measured += [(config, seq_len, stats[config]) for config in configurations]
    report(1.0, "done")
    result = BenchResult(
        settings=replace(settings, seq_lens=tuple(seq_lens), threads=threads),
        threads=threads,
        machine=machine(),
        versions=library_versions(),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        rows=with_ratios(measured),
        absent=absent,
        other_cpu_share=other_use.share,
        kernel_isa=next((engine.kernel_isa for engine in engines.values() if engine.kernel_isa), None),
        kernel_blocks=next((engine.kernel_blocks for engine in engines.values() if engine.kernel_blocks), None),
        fidelity=logits_fidelity(engines),
        auto_choice=auto_choice(settings.model, threads, measured),
    )
    save_latest(result)
    return result


def auto_choice(
    model: str, threads: int, measured: list[tuple[Configuration, int, LatencyStats]]
) -> KernelDecision | None:
    """What ``--kernels auto`` chose for ``model`` at int8 here: the cached decision of an earlier load, else the
    same rule (``choice.decide``) applied to this run's sparse int8 timings (``how`` = "from this run")."""
    try:
        cached = cached_kernel_decision(model, threads)
    except (ValueError, OSError, ModelLoadError) as problem:
        log.warning("could not read the cached kernel choice: %s", problem)
        cached = None
    if cached is not None:
        return cached
    by_label = {label: name for name, label in AUTO_RUNTIMES.items()}
    stats = {
        (by_label[config.runtime_label], seq_len): latency
        for config, seq_len, latency in measured
        if (config.role, config.precision) == ("sparse", "int8") and config.runtime_label in by_label
    }
    if len({name for name, _ in stats}) < 2 or OPENVINO not in {name for name, _ in stats}:
        return None
    chosen, reason, noise = decide(stats)
    medians = {}
    for (name, seq_len), latency in stats.items():
        medians.setdefault(name, {})[seq_len] = latency.median_ms
    return KernelDecision(chosen, "from this run", reason, medians, noise, next(iter(stats.values())).runs)


LATEST_BENCH = "latest.json"


def save_latest(result: BenchResult) -> None:
    """Keep the run's JSON in the cache, where About this machine reads the ratios it measured, with the sparse
    model's revision (a synthetic model of another block pattern has the same name)."""
    directory = cache_root() / "bench"
    try:
        record = result.as_dict() | {"model_revision": _revision(result.settings.model)}
        directory.mkdir(parents=True, exist_ok=True)
        staging = directory / f".{LATEST_BENCH}.tmp"
        staging.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        staging.replace(directory / LATEST_BENCH)
    except OSError as problem:  # an unwritable cache costs the page a sentence, not the benchmark its result
        log.warning("could not save the benchmark result: %s", problem)


def latest_bench(cpu: str, model: str) -> dict | None:
    """The last saved benchmark run of ``model`` on a CPU named ``cpu``, or None."""
    try:
        record = json.loads((cache_root() / "bench" / LATEST_BENCH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("machine", {}).get("cpu") != cpu or record.get("settings", {}).get("model") != model:
        return None
    if record.get("model_revision") != _revision(model):
        return None
    return record


def _revision(model: str) -> str | None:
    """The revision of ``model``'s local files (None when it cannot be resolved)."""
    try:
        return resolve(model).revision
    except (ModelLoadError, OSError, ValueError):
        return None


def logits_fidelity(engines: dict[Configuration, QAEngine]) -> list[Fidelity]:
    """Each sparse int8 configuration's start/end logits on the bundled examples (every window, natural length)
    against the sparse model's OpenVINO fp32 logits: the largest absolute difference and the cosine similarity."""
    reference = next(
        (engine for config, engine in engines.items() if (config.role, config.runtime_label, config.precision) == ("sparse", "openvino", "fp32")),
        None,
    )
    if reference is None:
        return []

    def logits(engine: QAEngine) -> np.ndarray:
        pieces = []
        for question, passage in example_pairs():
            encoding = decoding.encode(engine.tokenizer, question, passage)
            start, end = engine.infer(decoding.model_inputs(encoding, engine.input_names))
            pieces += [start.ravel(), end.ravel()]
        return np.concatenate(pieces).astype(np.float64)

    expected = logits(reference)
    fidelity = []
    for config, engine in engines.items():
        if config.role == "sparse" and config.precision == "int8":
            actual = logits(engine)
            cosine = float(actual @ expected / (np.linalg.norm(actual) * np.linalg.norm(expected)))
            fidelity.append(Fidelity(config, float(np.abs(actual - expected).max()), cosine))
    return fidelity


def with_ratios(measured: list[tuple[Configuration, int, LatencyStats]]) -> list[BenchRow]:
    """Rows with ``speedup`` (dense PyTorch fp32 median / this median), for sparse rows ``vs dense same runtime``
    (the dense model's median at the same runtime, precision and length / this median), and for sparse-kernel rows
    ``vs OpenVINO kernels`` (the same model's median at the same precision and length on OpenVINO's kernels / this)."""
    own_kernels = {
        (config.model, config.precision, seq_len): stats.median_ms
        for config, seq_len, stats in measured
        if config.runtime == "openvino" and not (config.sparse_kernels or config.sparse_decompression)
    }
    dense_medians = {
        (config.same_runtime_key, seq_len): stats.median_ms
        for config, seq_len, stats in measured
        if config.role == "dense"
    }
    baselines = {seq_len: stats.median_ms for config, seq_len, stats in measured if config.is_baseline}
    rows = []
    for config, seq_len, stats in measured:
        baseline = baselines[seq_len]
        same_runtime = dense_medians.get((config.same_runtime_key, seq_len)) if config.role == "sparse" else None
        rows.append(
            BenchRow(
                configuration=config,
                seq_len=seq_len,
                latency=stats,
                speedup=baseline / stats.median_ms,
                vs_dense_same_runtime=None if same_runtime is None else same_runtime / stats.median_ms,
                vs_openvino_kernels=(
                    own_kernels[(config.model, config.precision, seq_len)] / stats.median_ms
                    if config.sparse_kernels
                    else None
                ),
            )
        )
    return rows


# Latencies spread over more than this factor are drawn on a log scale, where a narrower spread would get few ticks.
LOG_SCALE_SPREAD = 10

# One colour per runtime and precision, so each dense/sparse pair shares a colour; dense dashed, sparse solid.
COLOURS = {
    ("pytorch", "fp32"): "#7f7f7f",
    ("openvino", "fp32"): "#1f77b4",
    ("openvino", "bf16"): "#9467bd",
    ("openvino", "int8"): "#2ca02c",
    (SPARSE_WEIGHTS_RUNTIME, "int8"): "#d62728",
    (SPARSE_KERNELS_RUNTIME, "int8"): "#ff7f0e",
}


def latency_figure(result: BenchResult) -> Figure:
    """Two panels: median latency per configuration (log scale, p90 error bars) and speedup over dense PyTorch fp32."""
    figure = Figure(figsize=(12, 5.2), layout="constrained")
    latency_axes, speedup_axes = figure.subplots(1, 2)
    seq_lens = sorted(set(row.seq_len for row in result.rows))
    configurations = list(dict.fromkeys(row.configuration for row in result.rows))
    for config in configurations:
        rows = sorted((row for row in result.rows if row.configuration == config), key=lambda row: row.seq_len)
        lengths = [row.seq_len for row in rows]
        medians = np.array([row.latency.median_ms for row in rows])
        p90s = np.array([row.latency.p90_ms for row in rows])
        style = {
            "color": COLOURS.get((config.runtime_label, config.precision), "#000000"),
            "linestyle": "--" if config.role == "dense" else "-",
            "marker": "s" if config.role == "dense" else "o",
            "linewidth": 1.8,
            "markersize": 5,
            "label": config.name,
        }
        latency_axes.errorbar(lengths, medians, yerr=[np.zeros_like(medians), p90s - medians], capsize=3, **style)
        speedup_axes.plot(lengths, [row.speedup for row in rows], **style)
    for axes in (latency_axes, speedup_axes):
        axes.set_xlabel("sequence length (tokens, batch 1)")
        axes.set_xticks(seq_lens)
        axes.grid(True, which="both", alpha=0.3)
    medians = [row.latency.median_ms for row in result.rows]
    if max(medians) > LOG_SCALE_SPREAD * min(medians):
        latency_axes.set_yscale("log")
        # Ticks at 1, 2 and 5 times powers of ten, written as plain milliseconds rather than 2×10².
        latency_axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        latency_axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        latency_axes.yaxis.set_minor_formatter(NullFormatter())
        latency_axes.set_ylabel("forward-pass latency, median ms (bar to p90, log scale)")
    else:
        latency_axes.set_ylim(bottom=0)
        latency_axes.set_ylabel("forward-pass latency, median ms (bar to p90)")
    latency_axes.set_title("Latency")
    speedup_axes.axhline(1.0, color="black", linewidth=0.8)
    speedup_axes.set_ylabel("speedup over dense · pytorch fp32 (x)")
    speedup_axes.set_title("Speedup over the dense PyTorch fp32 baseline")
    speedup_axes.set_ylim(bottom=0)
    handles, labels = latency_axes.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), frameon=False)
    models = f"sparse = {card_for(result.settings.model).label}, dense = {card_for(result.settings.dense_model).label}"
    title = [
        f"BERT question answering on {result.machine.cpu}, {result.threads} threads",
        f"{models}; median of {result.settings.runs} runs",
    ]
    reasons = dict.fromkeys(item.reason for item in result.absent)
    for reason in reasons:
        names = [item.configuration for item in result.absent if item.reason == reason]
        title.append(f"not measured: {', '.join(names)} ({reason})")
    figure.suptitle("\n".join(title), fontsize=10)
    return figure


def parse_seq_lens(text: str) -> tuple[int, ...]:
    """``"64,128,256"`` → ``(64, 128, 256)``; ValueError with a one-line message otherwise."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--seq-lens takes comma-separated whole numbers such as 64,128,384, not {text!r}") from None
    if not values:
        raise ValueError("--seq-lens takes comma-separated whole numbers such as 64,128,384")
    return values
