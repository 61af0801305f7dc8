"""The command line: ``python -m sparseqa ask | inspect | export ...``.

Each command parses its arguments, calls the backend, and prints. Expected failures (a model that cannot be
loaded, bad input, a file that cannot be read) end with one line on stderr and exit code 1 or 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from .decoding import DECODINGS, RUN_QA, RUN_QA_NO_SPAN, InputError
from .models import SYNTHETIC_SPARSE, ModelLoadError, card_for
from .options import (
    SYNTHETIC_NOTE,
    UsageError,
    add_kernels_argument,
    add_model_arguments,
    chosen_models,
    quiet_libraries,
)
from .runtimes import KERNELS, PRECISIONS, RUNTIMES, default_precision
from .timing import RequestTimeout
from .blocks import ORIENTATIONS, describe
from .tinytrain import DEFAULT_PATTERN as DEFAULT_TINY_PATTERN
from .tinytrain import DEFAULT_STEPS as DEFAULT_TINY_STEPS

MAX_TOP_K = 20
PRECISION_HELP = "precision of the sparse model (default int8 on openvino, fp32 on pytorch)"
EXPECTED_ERRORS = (ModelLoadError, InputError, RequestTimeout, ValueError, OSError, RuntimeError)


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
    from .service import Limits, QAService, Settings

    sparse, dense = chosen_models(args)
    if not 1 <= args.top_k <= MAX_TOP_K:
        raise UsageError(f"--top-k must be between 1 and {MAX_TOP_K}")
    for option, value, least in (("--warmup", args.warmup, 0), ("--threads", args.threads, 1)):
        if value is not None and value < least:
            raise UsageError(f"{option} must be at least {least}")
    passage = read_passage(args)
    settings = Settings(
        model=sparse,
        dense_model=dense,
        runtime=args.runtime,
        precision=args.precision,
        threads=args.threads,
        limits=Limits.from_env(),
        kernels=args.kernels,
    )
    settings.limits.check(passage, args.question, args.runs)
    service = QAService.load(settings, compare=args.compare, report=lambda line: print(line, file=sys.stderr))
    if service.sparse.kernel_fallback:
        print(f"note: {service.sparse.kernel_fallback}", file=sys.stderr)
    comparison = service.ask(passage, args.question, runs=args.runs, warmup=args.warmup, top_k=args.top_k)
    if args.json:
        print(json.dumps(comparison.as_dict(), ensure_ascii=False, indent=2))
        return 0
    for answer, latency in ((comparison.sparse, comparison.sparse_latency), (comparison.dense, comparison.dense_latency)):
        if answer is None:
            continue
        kernels = ""
        if answer.kernels == "sparseqa":
            kernels = f" · sparseqa kernels ({answer.kernel_isa}, {answer.kernel_blocks} blocks)"
        print(f"{card_for(answer.model).label} · {answer.runtime} {answer.precision}{kernels}")
        print(f"  answer: {answer.text!r}  (characters {answer.start}-{answer.end}, p={answer.score:.3f})")
        for rank, span in enumerate(answer.alternatives, start=2):
            print(f"    #{rank}: {span.text!r}  (p={span.score:.3f})")
        print(f"  latency: median {latency.median_ms:.1f} ms, p90 {latency.p90_ms:.1f} ms over {latency.runs} runs")
        if answer.kernel_choice is not None:
            print(f"  kernels: {answer.kernel_choice.chosen} ({answer.kernel_choice.short_reason()})")
    if comparison.speedup is not None:
        agreement = "the same span" if comparison.agree else "different spans"
        print(f"speedup vs dense: {comparison.speedup:.2f}x; both models chose {agreement}")
    if comparison.sparse.synthetic:
        print(f"note: {SYNTHETIC_NOTE}")
    return 0


MAX_NAMED_LINEARS = 5


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print the sparsity report of a model's encoder Linear weights: zeros, all-zero blocks of both orientations,
    and the pattern they have, overall and per layer (or per Linear)."""
    from .blocks import DESCRIPTIONS
    from .sparsity import inspect_model, share_column

    model, _ = chosen_models(args)
    report = inspect_model(model)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return 0
    labels = {
        orientation: f"all-zero {orientation} blocks ({DESCRIPTIONS[orientation]}):" for orientation in ORIENTATIONS
    }
    width = max(map(len, labels.values()))
    print(f"{model}: {len(report.layers)} encoder Linear matrices")
    print(f"  {'zero weights:':<{width}} {report.zeros:6.1%}")
    for orientation, label in labels.items():
        print(f"  {label:<{width}} {report.block_share(orientation):6.1%}")
    print(f"  pattern: {describe(report.pattern)}")
    linears = report.per_linear()
    others = linears[linears["pattern"].map(lambda pattern: pattern != report.pattern)]
    if len(others):
        named = ", ".join(
            f"layer {row.layer} {row.name} ({describe(row.pattern)})"
            for row in others.head(MAX_NAMED_LINEARS).itertuples()
        )
        more = f" and {len(others) - MAX_NAMED_LINEARS} more" if len(others) > MAX_NAMED_LINEARS else ""
        print(f"  {len(others)} of {len(linears)} Linears have another pattern: {named}{more}")
    table = linears if args.linears else report.per_layer()
    for column in ["zeros"] + [share_column(orientation) for orientation in ORIENTATIONS]:
        table[column] = table[column].map("{:.1%}".format)
    table["pattern"] = table["pattern"].map(lambda pattern: pattern or "unstructured")
    print(table.to_string(index=False))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the OpenVINO IR (with tokenizer and config) of a model to a directory."""
    from .models import resolve
    from .runtimes import COMPLETE_MARKER, _load_tokenizer, choose_kernels, ir_to_compile

    if args.precision == "bf16":
        raise UsageError(
            "bf16 is chosen when OpenVINO compiles the model, not stored in the IR: export fp32 and run it with "
            "--precision bf16"
        )
    model, _ = chosen_models(args)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty directory: choose a new directory")
    local = resolve(model)
    tokenizer = _load_tokenizer(local)
    # A portable IR unless asked: sparseqa's op loads only where its extension is added to OpenVINO.
    kernels = choose_kernels(args.kernels or "openvino", "openvino", args.precision)
    ir, replaced = ir_to_compile(local, tokenizer, args.precision, args.calibration_samples, kernels)
    if replaced:
        print(
            f"{replaced} sparse Linears run on sparseqa's op: load it with "
            f"core.add_extension({str(kernels.extension)!r})"
        )
    elif args.kernels and kernels.reason:
        print(f"note: {kernels.reason}", file=sys.stderr)
    # File by file into a directory made with the user's umask: copytree would carry over the cache's private 0700.
    out.mkdir(parents=True, exist_ok=True)
    for file in ir.iterdir():
        if file.name != COMPLETE_MARKER:
            shutil.copy2(file, out / file.name)
    print(f"wrote {args.precision} OpenVINO IR of {model} to {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Time every model × runtime × precision at every sequence length; print the table, write JSON and a plot."""
    from tqdm import tqdm
    from transformers.utils import logging as transformers_logging

    from .bench import BenchSettings, parse_seq_lens, run_benchmark

    if args.kernels_only:
        return cmd_kernel_bench(args)
    sparse, dense = chosen_models(args)
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path and not Path(path).resolve().parent.is_dir():
            raise UsageError(f"{option} {path}: its directory does not exist; create it or choose another path")
    try:
        seq_lens = parse_seq_lens(args.seq_lens)
    except ValueError as error:
        raise UsageError(str(error)) from None
    settings = BenchSettings(
        model=sparse,
        dense_model=dense,
        seq_lens=seq_lens,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        kernels=args.kernels,
    )
    settings.check()
    # Loading weights and writing shards draw their own bars, which would break ours.
    transformers_logging.disable_progress_bar()
    with tqdm(total=100, file=sys.stderr, bar_format="{percentage:3.0f}%|{bar:24}| {elapsed} {desc}") as bar:

        def progress(fraction: float, description: str) -> None:
            bar.set_description_str(description, refresh=False)
            bar.update(round(fraction * 100) - bar.n)

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


def cmd_kernel_bench(args: argparse.Namespace) -> int:
    """Time each encoder Linear shape alone: sparseqa's sparse kernel against OpenVINO's dense int8 FullyConnected."""
    from tqdm import tqdm

    from .bench import MAX_SEQ_LEN, MIN_SEQ_LEN, parse_seq_lens
    from .kernel_bench import OpenVINONotInt8, run_kernel_benchmark
    from .native import NativeUnavailable

    if args.plot:
        raise UsageError("--plot draws the model benchmark; with --kernels-only use --json")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise UsageError(f"--json {args.json}: its directory does not exist; create it or choose another path")
    if args.runs < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise UsageError("--runs must be at least 1, --warmup at least 0 and --threads at least 1")
    try:
        seq_lens = parse_seq_lens(args.seq_lens)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not all(MIN_SEQ_LEN <= seq_len <= MAX_SEQ_LEN for seq_len in seq_lens):
        raise UsageError(f"--seq-lens {args.seq_lens}: use lengths from {MIN_SEQ_LEN} to {MAX_SEQ_LEN} tokens")
    blocks = tuple(dict.fromkeys(part.strip() for part in args.blocks.split(",") if part.strip()))
    if not blocks or not set(blocks) <= set(ORIENTATIONS):
        raise UsageError(f"--blocks {args.blocks}: choose 4x1, 1x4 or both (4x1,1x4)")
    with tqdm(total=100, file=sys.stderr, bar_format="{percentage:3.0f}%|{bar:24}| {elapsed} {desc}") as bar:

        def progress(fraction: float, description: str) -> None:
            bar.set_description_str(description, refresh=False)
            bar.update(round(fraction * 100) - bar.n)

        try:
            result = run_kernel_benchmark(seq_lens, args.runs, args.warmup, args.threads, progress, blocks)
        except (NativeUnavailable, OpenVINONotInt8, ValueError) as error:
            raise UsageError(f"cannot run the kernel benchmark: {error}") from None
    print("\n".join(result.header_lines()))
    print(result.table().to_string(index=False, na_rep="-"))
    print("\n".join(result.chain_lines()))
    if args.json:
        result.write_json(args.json)
        print(f"wrote {args.json}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Answer SQuAD v1.1 questions with one configuration (or the three of --compare); print EM, F1 and speed."""
    from .evaluate import (
        HUB_DATA,
        SYNTHETIC_EVAL_NOTE,
        compare_configurations,
        compare_table,
        evaluate_configuration,
        load_hub_squad,
        load_squad,
        results_dir,
        run_configurations,
    )

    check_eval_arguments(args)
    sparse, dense = chosen_models(args)
    if args.ray:
        from .ray_eval import ray_evaluator  # imports Ray: only for --ray

        evaluate = ray_evaluator(args.ray_address, args.ray_workers, args.threads)
    else:
        evaluate = evaluate_configuration
    questions, data = (load_hub_squad(), HUB_DATA) if args.hub else (load_squad(args.data), args.data)
    questions = questions[: args.limit]
    if not questions:
        raise ValueError(f"{data} has no questions: pass a SQuAD v1.1 file with at least one")
    if args.compare:
        configurations = compare_configurations(sparse, dense)
    else:
        runtime = args.runtime or "openvino"
        configurations = [(sparse, runtime, args.precision or default_precision(runtime), args.kernels)]
    runs = run_configurations(
        configurations,
        questions,
        data,
        decoding=args.decoding,
        threads=args.threads,
        report=lambda line: print(line, file=sys.stderr),
        evaluate=evaluate,
    )
    synthetic = any(run.synthetic for run in runs)
    if args.compare:
        reference = runs[1]
        reference_label = f"{card_for(reference.model).label} · {reference.runtime} {reference.precision}"
        print(
            f"{len(questions):,} questions from {data}, {args.decoding} decoding; agreement: the same span as "
            f"{reference_label}"
        )
        print(compare_table(runs, reference).to_string(index=False, float_format="{:.2f}".format))
        output = {
            "data": data,
            "n": len(questions),
            "reference": {"model": reference.model, "runtime": reference.runtime, "precision": reference.precision},
            "configurations": [run.summary() | {"agreement": run.agreement(reference)} for run in runs],
            "synthetic": synthetic,
        }
    else:
        (run,) = runs
        print(f"{card_for(run.model).label} · {run.runtime} {run.precision} on {data}, {run.decoding} decoding")
        print(f"  exact match  {run.exact_match:.2f}")
        print(f"  F1           {run.f1:.2f}")
        unanswered = f" ({run.unanswered:,} the model could not take, scored 0)" if run.unanswered else ""
        print(f"  questions    {run.n:,}{unanswered}")
        if run.no_span:
            print(
                f"  no span      {run.no_span:,} (no valid span among run_qa's best starts and ends: answered "
                f"{RUN_QA_NO_SPAN!r}, as run_qa does)"
            )
        print(
            f"  speed        {run.questions_per_second:.2f} questions/s, median {run.median_latency_ms:.1f} ms per "
            f"question ({run.threads} threads)"
        )
        output = run.summary()
        if args.predictions_out:
            predictions = json.dumps(run.predictions, ensure_ascii=False, indent=2)
            Path(args.predictions_out).write_text(predictions, encoding="utf-8")
            print(f"wrote {args.predictions_out}")
    for model in dict.fromkeys(run.model for run in runs):
        card = card_for(model)
        if card.exact_match is not None:
            print(f"model card of {card.label}: EM {card.exact_match:.2f}, F1 {card.f1:.2f} on SQuAD v1.1 dev")
    if synthetic:
        output["note"] = SYNTHETIC_EVAL_NOTE
    if args.json:
        Path(args.json).write_text(json.dumps(output, ensure_ascii=False, indent=2), encoding="utf-8")
        print(f"wrote {args.json}")
    print(f"results saved in {results_dir()}")
    if synthetic:
        print(f"note: {SYNTHETIC_EVAL_NOTE}")
    return 0


def check_eval_arguments(args: argparse.Namespace) -> None:
    """Refuse eval options that do not fit together, before any data or model is loaded."""
    if args.compare and (args.runtime or args.precision or args.kernels):
        raise UsageError(
            "--compare runs dense PyTorch fp32, sparse OpenVINO fp32 and int8 on both kernels: "
            "drop --runtime/--precision/--kernels"
        )
    if args.compare and args.predictions_out:
        raise UsageError("--predictions-out writes one configuration's answers: drop it or --compare")
    if not args.ray and (args.ray_address or args.ray_workers is not None):
        raise UsageError("--ray-address and --ray-workers go with --ray")
    if not args.compare and args.dense_model:
        raise UsageError("--dense-model is only used with --compare")
    if args.runtime == "pytorch" and args.precision == "int8":
        raise UsageError("int8 runs on OpenVINO only: use --runtime openvino or --precision fp32")
    for option, value in (("--limit", args.limit), ("--threads", args.threads), ("--ray-workers", args.ray_workers)):
        if value is not None and value < 1:
            raise UsageError(f"{option} must be at least 1")
    for option, path in (("--json", args.json), ("--predictions-out", args.predictions_out)):
        if path and not Path(path).resolve().parent.is_dir():
            raise UsageError(f"{option} {path}: its directory does not exist; create it or choose another path")


def cmd_serve(args: argparse.Namespace) -> int:
    """The web demo on Ray Serve replicas (``ray_serve``; imports Ray and Gradio only for this command)."""
    from .ray_serve import main as serve_main

    return serve_main(args.serve_args)


def cmd_loadtest(args: argparse.Namespace) -> int:
    """Load-test a running demo's /ask (``loadtest``) at each level of --clients."""
    from .loadtest import check_loopback, main as loadtest_main

    try:
        levels = [int(level) for level in args.clients.split(",")]
    except ValueError:
        raise UsageError(f"--clients {args.clients!r} is not a comma-separated list of whole numbers") from None
    if min(levels) < 1 or args.requests < 1 or args.runs < 1 or args.timeout <= 0:
        raise UsageError("--clients, --requests, --runs and --timeout must be positive")
    check_loopback(args.url)
    return loadtest_main(args.url, levels, args.requests, args.runs, args.timeout, args.json)


def cmd_score(args: argparse.Namespace) -> int:
    """Official SQuAD v1.1 EM and F1 of a predictions file ({question id: answer text}) against a data file."""
    from .evaluate import load_predictions, load_squad, score_predictions

    questions = load_squad(args.data)
    predictions = load_predictions(args.predictions)
    scores = score_predictions(questions, predictions)
    unknown = len(predictions.keys() - {question.id for question in questions})
    if args.json:
        print(json.dumps(scores | {"unknown_ids": unknown}))
        return 0
    print(f"exact match  {scores['exact_match']:.2f}")
    print(f"F1           {scores['f1']:.2f}")
    missing = f" ({scores['missing']:,} without a prediction, scored 0)" if scores["missing"] else ""
    print(f"questions    {scores['n']:,}{missing}")
    if unknown:
        print(f"note: {unknown:,} prediction ids are not in {args.data}: check that the predictions belong to it")
    return 0


def cmd_train_tiny(args: argparse.Namespace) -> int:
    """Train the small 80% block-sparse QA model on generated questions; write it and its held-out questions."""
    from transformers.utils import logging as transformers_logging

    from .tinytrain import train_tiny

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty directory: choose a new directory")
    if args.steps < 1:
        raise UsageError("--steps must be at least 1")
    transformers_logging.disable_progress_bar()
    summary = train_tiny(out, seed=args.seed, steps=args.steps, pattern=args.pattern)
    print("\n".join(summary.lines()))
    print(f"try: python -m sparseqa eval --compare --model {out} --dense-model {out} --data {summary.heldout_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="python -m sparseqa",
        description="Question answering with Intel's 80% block-sparse BERT (Prune OFA, OpenVINO) beside a dense "
        "baseline.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ask = commands.add_parser("ask", help="answer a question about a passage")
    ask.add_argument("--question", "-q", required=True, help="the question")
    source = ask.add_mutually_exclusive_group(required=True)
    source.add_argument("--context", "-c", help="the passage, as text")
    source.add_argument("--context-file", help="the passage, from a UTF-8 text file")
    add_model_arguments(ask)
    ask.add_argument("--runtime", choices=RUNTIMES, default="openvino", help="runtime of the sparse model")
    ask.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    ask.add_argument("--top-k", type=int, default=3, help=f"how many candidate spans to show, 1 to {MAX_TOP_K} (default 3)")
    ask.add_argument("--compare", action="store_true", help="also answer with the dense PyTorch fp32 baseline")
    ask.add_argument("--runs", type=int, default=5, help="timed runs per model (default 5)")
    ask.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs per model (default 1)")
    ask.add_argument("--threads", type=int, help="inference threads for every runtime (default: physical cores)")
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    add_kernels_argument(ask)
    ask.set_defaults(run=cmd_ask)

    inspect = commands.add_parser(
        "inspect",
        help="report the share of zero weights, of all-zero blocks of both orientations (1 output × 4 inputs, "
        "4 outputs × 1 input) and the block pattern the weights have",
    )
    add_model_arguments(inspect, dense=False)
    inspect.add_argument("--linears", action="store_true", help="one row per encoder Linear instead of per layer")
    inspect.add_argument("--json", action="store_true", help="print one JSON object (overall, per layer, per Linear)")
    inspect.set_defaults(run=cmd_inspect)

    export = commands.add_parser("export", help="write a model's OpenVINO IR, tokenizer and config to a directory")
    add_model_arguments(export, dense=False)
    export.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32 or int8 (NNCF)")
    export.add_argument("--calibration-samples", type=int, default=300, help="int8 calibration pairs (default 300)")
    export.add_argument("--out", required=True, help="directory to write")
    export.add_argument(
        "--kernels",
        choices=KERNELS,
        help="sparseqa (or auto): int8 IR whose sparse Linears are sparseqa's op, which needs its extension to load; "
        "default openvino: a plain IR any OpenVINO loads",
    )
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
    add_kernels_argument(bench)
    bench.add_argument(
        "--kernels-only",
        action="store_true",
        help="time each encoder Linear shape alone: sparseqa's sparse kernel against OpenVINO's dense int8",
    )
    bench.add_argument(
        "--blocks",
        default="4x1",
        help="with --kernels-only: the block orientations to prune the weights in, comma-separated: 4x1 (4 outputs x "
        "1 input, how the seed model was pruned; the default) and/or 1x4 (1 output x 4 inputs)",
    )
    bench.set_defaults(run=cmd_bench)

    evaluate = commands.add_parser("eval", help="measure EM and F1 on SQuAD v1.1 (a local file or the hub)")
    add_model_arguments(evaluate)
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="FILE.json", help="a SQuAD v1.1 file, such as dev-v1.1.json")
    source.add_argument("--hub", action="store_true", help="the SQuAD v1.1 dev set from the Hugging Face hub")
    evaluate.add_argument("--runtime", choices=RUNTIMES, help="runtime of the sparse model (default openvino)")
    evaluate.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    evaluate.add_argument(
        "--compare", action="store_true", help="run dense PyTorch fp32, sparse OpenVINO fp32 and int8; print a table"
    )
    evaluate.add_argument(
        "--decoding",
        choices=DECODINGS,
        default=RUN_QA,
        help="run_qa: answers picked as transformers' run_qa.py evaluation picks them, as for model cards' EM/F1 "
        "(default); demo: the answers the demo shows",
    )
    evaluate.add_argument("--limit", type=int, help="only the first N questions")
    evaluate.add_argument(
        "--threads", type=int, help="inference threads (default: physical cores; with --ray: per worker, default 1)"
    )
    evaluate.add_argument("--json", metavar="OUT.json", help="write the scores and speed as JSON")
    evaluate.add_argument(
        "--predictions-out", metavar="PRED.json", help="write {question id: answer} as the official script reads"
    )
    add_kernels_argument(evaluate)
    evaluate.add_argument(
        "--ray", action="store_true", help="spread the questions over Ray workers, one engine each (--threads each)"
    )
    evaluate.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: start a local one)")
    evaluate.add_argument(
        "--ray-workers", type=int, metavar="N", help="Ray workers (default: as many as the cluster's CPUs hold)"
    )
    evaluate.set_defaults(run=cmd_eval)

    serve = commands.add_parser(
        "serve",
        help="the web demo, its models answered by replicas on Ray Serve (serve --help lists the options)",
        add_help=False,
        prefix_chars="\0",  # every argument goes to serve's own parser (app.py's options and the replicas')
    )
    serve.add_argument("serve_args", nargs=argparse.REMAINDER)
    serve.set_defaults(run=cmd_serve)

    loadtest = commands.add_parser(
        "loadtest", help="throughput and p50/p90 latency of a running demo's /ask under concurrent clients"
    )
    loadtest.add_argument(
        "--url", default="http://127.0.0.1:7860/", help="the demo on this machine (default %(default)s)"
    )
    loadtest.add_argument(
        "--clients", default="8,16,32", help="concurrent clients, one level after another (default %(default)s)"
    )
    loadtest.add_argument("--requests", type=int, default=64, help="questions per level (default %(default)s)")
    loadtest.add_argument(
        "--runs", type=int, default=3, help="timed runs per model per question (default 3, the page's)"
    )
    loadtest.add_argument("--timeout", type=float, default=300.0, help="seconds one request may take (default 300)")
    loadtest.add_argument("--json", metavar="OUT.json", help="write every level's numbers as JSON")
    loadtest.set_defaults(run=cmd_loadtest)

    score = commands.add_parser("score", help="official SQuAD v1.1 EM and F1 of any predictions file")
    score.add_argument("--data", required=True, metavar="FILE.json", help="the SQuAD v1.1 file the predictions answer")
    score.add_argument("--predictions", required=True, metavar="PRED.json", help="{question id: answer text}")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.set_defaults(run=cmd_score)

    train = commands.add_parser(
        "train-tiny",
        help="train a small 80%% block-sparse QA model on generated questions (a test instrument, minutes)",
    )
    train.add_argument("--out", required=True, help="directory to write (model, tokenizer, held-out SQuAD file)")
    train.add_argument("--seed", type=int, default=0, help="the same seed gives the same data and weights (default 0)")
    train.add_argument(
        "--steps", type=int, default=DEFAULT_TINY_STEPS, help=f"training steps (default {DEFAULT_TINY_STEPS})"
    )
    train.add_argument(
        "--pattern",
        choices=ORIENTATIONS,
        default=DEFAULT_TINY_PATTERN,
        help="the blocks pruned, ranked by mean |w|: "
        + "; ".join(describe(orientation) for orientation in ORIENTATIONS)
        + f" (default {DEFAULT_TINY_PATTERN}, the seed model's)",
    )
    train.set_defaults(run=cmd_train_tiny)
    return parser


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
