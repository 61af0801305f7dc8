"""The command line: ``python -m sparseqa ask | inspect | export ...``.

Each command parses its arguments, calls the backend, and prints. Expected failures (a model that cannot be
loaded, bad input, a file that cannot be read) end with one line on stderr and exit code 1 or 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

from .decoding import InputError
from .models import DENSE_ID, SPARSE_ID, SYNTHETIC_DENSE, SYNTHETIC_SPARSE, ModelLoadError, card_for
from .runtimes import PRECISIONS, RUNTIMES
from .timing import RequestTimeout

SYNTHETIC_NOTE = "synthetic models have random weights: the answers are meaningless, the latencies are real"

EXPECTED_ERRORS = (ModelLoadError, InputError, RequestTimeout, ValueError, OSError, RuntimeError)


class UsageError(Exception):
    """Arguments that do not fit together; exit code 2 like argparse's own errors."""


def add_model_arguments(parser: argparse.ArgumentParser, *, dense: bool = True) -> None:
    """--model / --synthetic (and --dense-model), shared by every command that loads models."""
    parser.add_argument("--model", help=f"sparse model: hub id or local directory (default {SPARSE_ID})")
    if dense:
        parser.add_argument("--dense-model", help=f"dense baseline: hub id or local directory (default {DENSE_ID})")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="use locally built random-weight BERT-base models (no download; real latency, meaningless answers)",
    )


def chosen_models(args: argparse.Namespace) -> tuple[str, str]:
    """(sparse, dense) model names from --model, --dense-model and --synthetic."""
    if args.synthetic and args.model:
        raise UsageError("--synthetic and --model exclude each other: pass one")
    if args.synthetic:
        return SYNTHETIC_SPARSE, getattr(args, "dense_model", None) or SYNTHETIC_DENSE
    return args.model or SPARSE_ID, getattr(args, "dense_model", None) or DENSE_ID


def read_passage(args: argparse.Namespace) -> str:
    """The passage from --context or --context-file (UTF-8)."""
    if args.context is not None:
        return args.context
    try:
        data = Path(args.context_file).read_bytes()
    except OSError as error:
        raise OSError(f"cannot read {args.context_file}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{args.context_file} is not valid UTF-8 (byte {error.start}): save it as UTF-8 text"
        ) from None


def cmd_ask(args: argparse.Namespace) -> int:
    """Answer one question, optionally beside the dense baseline, and print it (or JSON)."""
    from .service import QAService, Settings

    sparse, dense = chosen_models(args)
    passage = read_passage(args)
    settings = Settings(
        model=sparse,
        dense_model=dense,
        runtime=args.runtime,
        precision=args.precision,
        threads=args.threads,
    )
    service = QAService.load(settings, compare=args.compare, report=lambda line: print(line, file=sys.stderr))
    comparison = service.ask(passage, args.question, runs=args.runs, warmup=args.warmup, top_k=args.top_k)
    if args.json:
        print(json.dumps(comparison.as_dict(), ensure_ascii=False, indent=2))
        return 0
    for answer, latency in ((comparison.sparse, comparison.sparse_latency), (comparison.dense, comparison.dense_latency)):
        if answer is None:
            continue
        print(f"{card_for(answer.model).label} · {answer.runtime} {answer.precision}")
        print(f"  answer: {answer.text!r}  (characters {answer.start}-{answer.end}, p={answer.score:.3f})")
        for rank, span in enumerate(answer.alternatives, start=2):
            print(f"    #{rank}: {span.text!r}  (p={span.score:.3f})")
        print(f"  latency: median {latency.median_ms:.1f} ms, p90 {latency.p90_ms:.1f} ms over {latency.runs} runs")
    if comparison.speedup is not None:
        agreement = "the same span" if comparison.agree else "different spans"
        print(f"speedup vs dense: {comparison.speedup:.2f}x; both models chose {agreement}")
    if comparison.sparse.synthetic:
        print(f"note: {SYNTHETIC_NOTE}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print the sparsity report of a model's encoder Linear weights."""
    from .sparsity import inspect_model

    model, _ = chosen_models(args)
    report = inspect_model(model)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    print(f"{model}: {len(report.layers)} encoder Linear matrices")
    print(f"  zero weights:        {report.zeros:.1%}")
    print(f"  all-zero 1x4 blocks: {report.block_zeros:.1%}")
    table = report.per_layer()
    table["zeros"] = table["zeros"].map("{:.1%}".format)
    table["1x4 blocks zero"] = table["1x4 blocks zero"].map("{:.1%}".format)
    print(table.to_string(index=False))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the OpenVINO IR (with tokenizer and config) of a model to a directory."""
    from .models import resolve
    from .runtimes import _load_tokenizer, cached_ir

    if args.precision == "bf16":
        raise UsageError(
            "bf16 is chosen when OpenVINO compiles the model, not stored in the IR: export fp32 and run it with "
            "--precision bf16"
        )
    model, _ = chosen_models(args)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty: choose a new directory")
    local = resolve(model)
    ir = cached_ir(local, _load_tokenizer(local), quantized=args.precision == "int8", calibration_samples=args.calibration_samples)
    shutil.copytree(ir, out, dirs_exist_ok=True)
    print(f"wrote {args.precision} OpenVINO IR of {model} to {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Time every model × runtime × precision at every sequence length; print the table, write JSON and a plot."""
    from tqdm import tqdm
    from transformers.utils import logging as transformers_logging

    from .bench import BenchSettings, parse_seq_lens, run_benchmark

    sparse, dense = chosen_models(args)
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path and not Path(path).resolve().parent.is_dir():
            raise UsageError(f"{option} {path}: its directory does not exist; create it or choose another path")
    try:
        seq_lens = parse_seq_lens(args.seq_lens)
    except ValueError as error:
        raise UsageError(str(error)) from None
    settings = BenchSettings(
        model=sparse, dense_model=dense, seq_lens=seq_lens, runs=args.runs, warmup=args.warmup, threads=args.threads
    )
    settings.check()
    # Loading weights and writing shards draw their own bars, which would break ours.
    transformers_logging.disable_progress_bar()
    with tqdm(total=100, file=sys.stderr, bar_format="{percentage:3.0f}%|{bar:24}| {elapsed} {desc}") as bar:

        def progress(fraction: float, description: str) -> None:
            bar.set_description_str(description, refresh=False)
            bar.update(round(fraction * 100) - bar.n)

        # NNCF draws its quantization progress on stdout; keep stdout for the table.
        with contextlib.redirect_stdout(sys.stderr):
            result = run_benchmark(settings, progress)
    lines = result.summary_lines()
    print("\n".join(lines[:2]))
    print(result.table().to_string(index=False, na_rep="-"))
    print("\n".join(lines[2:]))
    if sparse == SYNTHETIC_SPARSE:
        print(f"note: {SYNTHETIC_NOTE}")
    if args.json:
        result.write_json(args.json)
        print(f"wrote {args.json}")
    if args.plot:
        result.write_plot(args.plot)
        print(f"wrote {args.plot}")
    return 0



def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="python -m sparseqa",
        description="Question answering with Intel's 80%% 1x4 block-sparse BERT (OpenVINO) beside a dense baseline.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ask = commands.add_parser("ask", help="answer a question about a passage")
    ask.add_argument("--question", "-q", required=True, help="the question")
    source = ask.add_mutually_exclusive_group(required=True)
    source.add_argument("--context", "-c", help="the passage, as text")
    source.add_argument("--context-file", help="the passage, from a UTF-8 text file")
    add_model_arguments(ask)
    ask.add_argument("--runtime", choices=RUNTIMES, default="openvino", help="runtime of the sparse model")
    ask.add_argument("--precision", choices=PRECISIONS, default="int8", help="precision of the sparse model")
    ask.add_argument("--top-k", type=int, default=3, help="how many candidate spans to show (default 3)")
    ask.add_argument("--compare", action="store_true", help="also answer with the dense PyTorch fp32 baseline")
    ask.add_argument("--runs", type=int, default=5, help="timed runs per model (default 5)")
    ask.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs per model (default 1)")
    ask.add_argument("--threads", type=int, help="inference threads for every runtime (default: physical cores)")
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    ask.set_defaults(run=cmd_ask)

    inspect = commands.add_parser("inspect", help="report the share of zero weights and zero 1x4 blocks")
    add_model_arguments(inspect, dense=False)
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(run=cmd_inspect)

    export = commands.add_parser("export", help="write a model's OpenVINO IR, tokenizer and config to a directory")
    add_model_arguments(export, dense=False)
    export.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32 or int8 (NNCF)")
    export.add_argument("--calibration-samples", type=int, default=300, help="int8 calibration pairs (default 300)")
    export.add_argument("--out", required=True, help="directory to write")
    export.set_defaults(run=cmd_export)

    bench = commands.add_parser(
        "bench", help="time dense and sparse models on PyTorch and OpenVINO at every precision and sequence length"
    )
    add_model_arguments(bench)
    bench.add_argument(
        "--seq-lens", default="64,128,256,384", help="comma-separated sequence lengths in tokens (default 64,128,256,384)"
    )
    bench.add_argument("--runs", type=int, default=10, help="timed runs per configuration and length (default 10)")
    bench.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs before each (default 2)")
    bench.add_argument("--threads", type=int, help="inference threads for every runtime (default: physical cores)")
    bench.add_argument("--json", metavar="OUT.json", help="write machine, rows and absent configurations as JSON")
    bench.add_argument("--plot", metavar="OUT.png", help="write a PNG of latency and speedup against sequence length")
    bench.set_defaults(run=cmd_bench)
    return parser


def quiet_libraries() -> None:
    """Keep library chatter (progress bars, deprecation notes) out of the CLI's output."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("nncf", "huggingface_hub", "optimum", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Run one command; expected failures print ``error: ...`` on stderr and return a non-zero code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        return args.run(args)
    except UsageError as error:
        parser.error(str(error))
    except EXPECTED_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
