"""Question-answering engines: one model on one runtime at one precision, with one call shape for all of them.

``load_engine`` gives a ready engine: PyTorch (transformers, as people run the dense baseline) or OpenVINO through
Optimum Intel (exported once to IR, optionally quantized to int8 with NNCF, cached on disk). Engines are safe to
call from several threads: PyTorch inference holds no per-call state, and each thread gets its own OpenVINO infer
request.
With ``kernels`` the int8 sparse model's sparse encoder Linears run on sparseqa's own block-sparse kernels inside
OpenVINO (a custom op, see sparse_ir and sparseqa/kernels; each Linear on the kernel family of the block orientation
its zeros have, 1x4 or 4x1) instead of OpenVINO's dense ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import decoding
from .calibration import calibration_mode, calibration_pairs
from .choice import OPENVINO, SPARSE_WEIGHTS, SPARSEQA, KernelDecision, choose
from .decoding import Span
from .hardware import library_versions, machine
from .models import LocalModel, ModelLoadError, cache_root, card_for, is_synthetic, publish, resolve

log = logging.getLogger(__name__)

RUNTIMES = ("openvino", "pytorch")
PRECISIONS = ("fp32", "bf16", "int8")
KERNELS = ("auto", "sparseqa", "openvino", SPARSE_WEIGHTS)
NO_SPARSE_LINEAR = "half of its weight blocks zero (in 1x4 or in 4x1 blocks)"
DEFAULT_CALIBRATION_SAMPLES = 300


def default_precision(runtime: str) -> str:
    """The precision a runtime runs at unless told otherwise: int8 on OpenVINO, fp32 on PyTorch (no int8 there)."""
    return "fp32" if runtime == "pytorch" else "int8"


@dataclass(frozen=True)
class Timings:
    """Wall-clock milliseconds of one answer: tokenizing, the model's forward pass, and span decoding."""

    tokenize_ms: float
    infer_ms: float
    decode_ms: float

    @property
    def total_ms(self) -> float:
        return self.tokenize_ms + self.infer_ms + self.decode_ms


@dataclass(frozen=True)
class Answer:
    """A model's answer to one question about one passage: the best span, the runners-up, and what it cost."""

    text: str
    start: int
    end: int
    score: float
    alternatives: list[Span]
    timings: Timings
    model: str
    runtime: str
    precision: str
    tokens: int
    windows: int
    synthetic: bool
    kernels: str = "openvino"
    kernel_isa: str | None = None
    kernel_blocks: str | None = None
    kernel_choice: KernelDecision | None = None

    def as_dict(self) -> dict:
        """Plain values for JSON: the CLI's output and the API's."""
        return {
            "answer": self.text,
            "start": self.start,
            "end": self.end,
            "score": self.score,
            "alternatives": [vars(span) for span in self.alternatives],
            "latency_ms": self.timings.total_ms,
            "timings_ms": {
                "tokenize": self.timings.tokenize_ms,
                "infer": self.timings.infer_ms,
                "decode": self.timings.decode_ms,
            },
            "model": self.model,
            "runtime": self.runtime,
            "precision": self.precision,
            "tokens": self.tokens,
            "windows": self.windows,
            "synthetic": self.synthetic,
            "kernels": self.kernels,
            "kernel_isa": self.kernel_isa,
            "kernel_blocks": self.kernel_blocks,
            "kernel_choice": None if self.kernel_choice is None else self.kernel_choice.as_dict(),
        }


@dataclass
class QAEngine:
    """A loaded model ready to answer; subclasses supply the forward pass of their runtime."""

    model_id: str
    runtime: str
    precision: str
    tokenizer: object
    input_names: list[str]
    threads: int
    notes: list[str] = field(default_factory=list)
    kernels: str = "openvino"
    kernel_isa: str | None = None
    kernel_fallback: str | None = None  # why OpenVINO's kernels run where sparseqa's could have (also in notes)
    kernel_blocks: str | None = None  # the block orientation(s) sparseqa's kernels run: "4x1", "1x4" or "1x4+4x1"
    kernel_choice: KernelDecision | None = None  # how an int8 OpenVINO engine's kernels were chosen, and the numbers
    sparse_weight_decompression: bool = False

    @property
    def synthetic(self) -> bool:
        return is_synthetic(self.model_id)

    @property
    def label(self) -> str:
        """A short name for tables: which model, on what, at what precision, with whose kernels if not the runtime's."""
        label = f"{card_for(self.model_id).label} · {self.runtime} {self.precision}"
        if self.sparse_weight_decompression:
            label += " · sparse weight decompression"
        if self.kernels != "sparseqa":
            return label
        return label + f" · sparseqa kernels ({self.kernel_isa}, {self.kernel_blocks} blocks)"

    def infer(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits, shape (windows, tokens), for tokenized inputs."""
        raise NotImplementedError

    def answer(
        self,
        question: str,
        passage: str,
        top_k: int = 3,
        max_windows: int | None = None,
        decoding_method: str = decoding.DEMO,
    ) -> Answer:
        """The best answer span in ``passage`` and ``top_k - 1`` alternatives, with per-stage timings.

        ``decoding_method`` is ``demo`` (the transformers pipeline's ranking, what the page shows) or ``run_qa`` (the
        procedure behind model cards' EM/F1, which raises ``NoSpanError`` where it finds no valid span).
        """
        began = time.perf_counter()
        encoding = decoding.encode(
            self.tokenizer, question, passage, max_windows=max_windows, decoding=decoding_method
        )
        inputs = decoding.model_inputs(encoding, self.input_names)
        tokenized = time.perf_counter()
        start_logits, end_logits = self.infer(inputs)
        inferred = time.perf_counter()
        if not (np.isfinite(start_logits).all() and np.isfinite(end_logits).all()):
            raise RuntimeError(f"{self.label} returned non-finite start/end scores: its weights or IR may be broken")
        if decoding_method == decoding.RUN_QA:
            spans = decoding.run_qa_spans(start_logits, end_logits, encoding, passage)[: max(top_k, 1)]
            if not spans:
                raise decoding.NoSpanError(
                    f"none of the {decoding.N_BEST} best starts and ends of {self.label} makes a valid span"
                )
        else:
            spans = decoding.demo_spans(
                start_logits,
                end_logits,
                encoding,
                passage,
                top_k=max(top_k, 1),
                cls_token_id=getattr(self.tokenizer, "cls_token_id", None),
            )
        decoded = time.perf_counter()
        if not spans:
            raise RuntimeError(f"{self.label} gave no answer span a probability above 0: its weights may be broken")
        best = spans[0]
        return Answer(
            text=best.text,
            start=best.start,
            end=best.end,
            score=best.score,
            alternatives=spans[1:],
            timings=Timings(
                (tokenized - began) * 1e3, (inferred - tokenized) * 1e3, (decoded - inferred) * 1e3
            ),
            model=self.model_id,
            runtime=self.runtime,
            precision=self.precision,
            tokens=int(encoding["attention_mask"].sum()),
            windows=int(encoding["input_ids"].shape[0]),
            synthetic=self.synthetic,
            kernels=self.kernels,
            kernel_isa=self.kernel_isa,
            kernel_blocks=self.kernel_blocks,
            kernel_choice=self.kernel_choice,
        )


class PyTorchEngine(QAEngine):
    """transformers + PyTorch fp32 (or bf16 autocast), the way the dense baseline is usually run."""

    def __init__(self, model_id: str, model, tokenizer, precision: str, threads: int):
        import torch

        super().__init__(
            model_id, "pytorch", precision, tokenizer, _forward_input_names(model), threads, kernels="pytorch"
        )
        self._torch = torch
        self._model = model

    @property
    def torch_model(self):
        """The underlying transformers model, for weight inspection."""
        return self._model

    def infer(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        tensors = {name: torch.from_numpy(array) for name, array in inputs.items()}
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            output = self._model(**tensors)
        return output.start_logits.float().numpy(), output.end_logits.float().numpy()


class OpenVINOEngine(QAEngine):
    """Optimum Intel's OVModelForQuestionAnswering, with one infer request per calling thread."""

    def __init__(
        self,
        model_id: str,
        ov_model,
        tokenizer,
        precision: str,
        threads: int,
        notes: list[str],
        kernels: KernelChoice,
        kernel_blocks: str | None = None,
    ):
        super().__init__(
            model_id,
            "openvino",
            precision,
            tokenizer,
            list(ov_model.input_names),
            threads,
            notes,
            "sparseqa" if kernels.sparse else "openvino",
            kernels.isa if kernels.sparse else None,
            kernels.reason,
            kernel_blocks if kernels.sparse else None,
        )
        self._ov_model = ov_model
        self._compiled = ov_model.request
        self._local = threading.local()

    def infer(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        result = request.infer(inputs)
        return (
            np.array(result[self._compiled.output("start_logits")]),
            np.array(result[self._compiled.output("end_logits")]),
        )


def _forward_input_names(model) -> list[str]:
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted]


@dataclass(frozen=True)
class KernelChoice:
    """Whose kernels run the sparse Linears: sparseqa's (its extension library and ISA) or OpenVINO's (and why).

    ``requested`` is the resolved ``kernels`` value: ``auto`` measures the candidates at load (see sparseqa.choice).
    """

    extension: Path | None = None
    isa: str | None = None
    reason: str | None = None
    required: bool = False  # kernels="sparseqa": no falling back
    requested: str = "auto"

    @property
    def sparse(self) -> bool:
        return self.extension is not None


def choose_kernels(kernels: str | None, runtime: str, precision: str) -> KernelChoice:
    """Resolve ``kernels`` (default ``SPARSEQA_KERNELS``, else auto) for an engine, building the kernels if needed.

    The sparse kernels compute int8 Linears on OpenVINO; ``auto`` makes them a candidate wherever they built (the
    load measures which candidate is fastest), ``sparseqa`` insists (ValueError with the reason when they cannot run),
    ``openvino`` leaves every Linear to OpenVINO, ``openvino-sparse-weights`` too, with its sparse weight
    decompression (AMX only).
    """
    kernels = kernels or os.environ.get("SPARSEQA_KERNELS") or "auto"
    if kernels not in KERNELS:
        raise ValueError(f"unknown kernels {kernels!r}: choose one of {', '.join(KERNELS)}")
    if runtime != "openvino" or precision != "int8":
        if kernels in ("sparseqa", SPARSE_WEIGHTS):
            raise ValueError(
                f"the {kernels} kernels compute int8 on OpenVINO: use --runtime openvino --precision int8, "
                "or --kernels auto"
            )
        return KernelChoice(requested=kernels)
    if kernels == SPARSE_WEIGHTS and not machine().amx:
        raise ValueError("sparse weight decompression needs AMX, which this CPU lacks: use --kernels auto or openvino")
    if kernels in ("openvino", SPARSE_WEIGHTS):
        return KernelChoice(reason=f"OpenVINO kernels for every Linear (kernels={kernels})", requested=kernels)
    from . import native

    try:
        return KernelChoice(
            extension=native.extension_library(),
            isa=native.chosen_isa(),
            required=kernels == "sparseqa",
            requested=kernels,
        )
    except native.NativeUnavailable as error:
        if kernels == "sparseqa":
            raise ValueError(f"the sparseqa kernels are unavailable: {error}; use --kernels openvino or auto") from None
        return KernelChoice(reason=f"OpenVINO kernels: the sparseqa kernels are unavailable ({error})")


_registered_extensions: set[Path] = set()
_registration_lock = threading.Lock()


def register_extension(extension: Path) -> None:
    """Add the sparseqa OpenVINO extension to the Core Optimum Intel compiles with (once per process)."""
    from optimum.intel.openvino.modeling_base import core

    with _registration_lock:
        if extension not in _registered_extensions:
            core.add_extension(str(extension))
            _registered_extensions.add(extension)


def default_threads() -> int:
    """All physical cores: the same thread count for every runtime makes their timings comparable."""
    return machine().physical_cores


def load_engine(
    model: str,
    runtime: str = "openvino",
    precision: str = "fp32",
    *,
    threads: int | None = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    sparse_decompression: bool | None = None,
    kernels: str | None = None,
) -> QAEngine:
    """Load ``model`` (hub id, local directory or synthetic name) on ``runtime`` at ``precision``.

    OpenVINO IR (and its int8 version) is built once and cached under ``cache_root()/ir``, keyed by model revision,
    precision and library versions. ``kernels`` (see choose_kernels; default ``SPARSEQA_KERNELS``, else auto) chooses
    who computes the Linears of an int8 model: with ``auto`` the first load on a machine times the candidates
    (sparseqa.choice) and caches the decision, later loads read it; the engine's ``kernel_choice`` says what was
    chosen, how and with which numbers. ``sparse_decompression=True`` turns on OpenVINO's sparse weight
    decompression for a forced or non-int8 load (as the bench asks for it); ``auto`` uses it only where it measured
    fastest. Raises ModelLoadError or ValueError with a one-line message.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    allowed = ("fp32", "bf16") if runtime == "pytorch" else PRECISIONS
    if precision not in allowed:
        raise ValueError(f"precision {precision!r} is not available on {runtime}: choose one of {', '.join(allowed)}")
    threads = threads or default_threads()
    chosen = choose_kernels(kernels, runtime, precision)
    local = resolve(model)
    tokenizer = _load_tokenizer(local)
    if runtime == "pytorch":
        import torch
        from transformers import AutoModelForQuestionAnswering

        torch.set_num_threads(threads)
        try:
            torch_model = AutoModelForQuestionAnswering.from_pretrained(local.path, dtype=torch.float32).eval()
        except Exception as error:
            raise ModelLoadError(model, f"transformers could not read it ({_first_line(error)})") from error
        return PyTorchEngine(model, torch_model, tokenizer, precision, threads)
    if precision == "bf16" and not machine().avx512_bf16 and not machine().amx:
        raise ValueError("bf16 needs a CPU with AVX512-BF16 or AMX; this one has neither: use fp32 or int8")
    ir_dir, replaced = ir_to_compile(local, tokenizer, precision, calibration_samples, chosen)
    if chosen.sparse and not replaced:
        if chosen.required:
            raise ValueError(f"{model} has no Linear with {NO_SPARSE_LINEAR}: use --kernels openvino")
        chosen = KernelChoice(reason=f"OpenVINO kernels: no Linear has {NO_SPARSE_LINEAR}")
    plain_ir = cached_ir(local, tokenizer, quantized=precision == "int8", calibration_samples=calibration_samples)
    variants = {
        OPENVINO: _Variant(plain_ir, KernelChoice(reason=chosen.reason), False, replaced),
        SPARSE_WEIGHTS: _Variant(plain_ir, KernelChoice(reason=chosen.reason), True, replaced),
    }
    if chosen.sparse:
        variants[SPARSEQA] = _Variant(ir_dir, chosen, False, replaced)

    def build(name: str) -> OpenVINOEngine:
        return _compile(model, tokenizer, precision, threads, variants[name])

    if precision != "int8":
        return build(SPARSE_WEIGHTS if sparse_decompression else OPENVINO)
    if chosen.requested != "auto":
        if chosen.requested == "sparseqa":
            name = SPARSEQA
        else:
            name = SPARSE_WEIGHTS if chosen.requested == SPARSE_WEIGHTS or sparse_decompression else OPENVINO
        how = f"forced with kernels={chosen.requested} (--kernels or SPARSEQA_KERNELS)"
        if name == SPARSE_WEIGHTS and chosen.requested == "openvino":
            how = "asked for: OpenVINO's kernels with sparse weight decompression"
        return _with_decision(build(name), KernelDecision(name, "forced", f"{how}; nothing was measured"))
    candidates = auto_candidates(chosen.sparse)
    if len(candidates) == 1:
        decision = KernelDecision(OPENVINO, "only candidate", chosen.reason or "OpenVINO kernels: the only candidate")
        return _with_decision(build(OPENVINO), decision)
    key = decision_key(local, threads, {name: variants[name].ir_dir.name for name in candidates})
    decision, engines = choose(key, build, candidates)
    return _with_decision(engines.get(decision.chosen) or build(decision.chosen), decision)


@dataclass(frozen=True)
class _Variant:
    """One way to compile the model: which IR, whose kernels, and whether OpenVINO decompresses sparse weights."""

    ir_dir: Path
    kernels: KernelChoice
    decompression: bool
    sparse_linears: int


def _compile(model: str, tokenizer, precision: str, threads: int, variant: _Variant) -> OpenVINOEngine:
    """Compile one variant with Optimum Intel, with notes on what it runs."""
    from optimum.intel import OVModelForQuestionAnswering

    chosen = variant.kernels
    if chosen.sparse:
        register_extension(chosen.extension)
    ov_config = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(threads),
    }
    notes = [note for note in [calibration_note(variant.ir_dir)] if note]
    orientations = linear_orientations(variant.ir_dir) if chosen.sparse else {}
    if chosen.sparse:
        notes.append(
            f"sparseqa {chosen.isa} kernels for the {variant.sparse_linears} sparse Linears: "
            + orientation_note(orientations)
        )
    elif chosen.reason:
        notes.append(chosen.reason)
    if precision in ("fp32", "bf16"):
        ov_config["INFERENCE_PRECISION_HINT"] = "f32" if precision == "fp32" else "bf16"
    if variant.decompression:
        ov_config["CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"] = "0.5"
        notes.append("sparse weight decompression on")
    try:
        ov_model = OVModelForQuestionAnswering.from_pretrained(variant.ir_dir, ov_config=ov_config, compile=True)
    except Exception as error:
        raise ModelLoadError(
            model, f"OpenVINO could not compile the cached IR at {variant.ir_dir} ({_first_line(error)})"
        ) from error
    blocks = "+".join(sorted(set(orientations.values()))) or None
    engine = OpenVINOEngine(model, ov_model, tokenizer, precision, threads, notes, chosen, blocks)
    engine.sparse_weight_decompression = variant.decompression
    return engine


def _with_decision(engine: OpenVINOEngine, decision: KernelDecision) -> OpenVINOEngine:
    """The engine, with the kernel decision that chose it (and, where OpenVINO's kernels run, it as the reason)."""
    engine.kernel_choice = decision
    if engine.kernels != "sparseqa" and decision.how != "forced":
        engine.kernel_fallback = decision.reason
    return engine


def auto_candidates(sparse_kernels: bool) -> list[str]:
    """What ``auto`` times for an int8 model, simplest first: OpenVINO's kernels, their sparse weight decompression
    where the CPU has AMX, and sparseqa's kernels where they built and took over sparse Linears."""
    return [OPENVINO] + ([SPARSE_WEIGHTS] if machine().amx else []) + ([SPARSEQA] if sparse_kernels else [])


def cached_kernel_decision(
    model: str, threads: int | None = None, calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
) -> KernelDecision | None:
    """The decision ``auto`` made for ``model`` at int8 on this machine (from its cache, nothing is measured), or
    None when no load has measured it for these settings (or there was one candidate only)."""
    from .choice import read_cached

    chosen = choose_kernels("auto", "openvino", "int8")
    local = resolve(model)
    tokenizer = _load_tokenizer(local)
    sparse_ir, replaced = ir_to_compile(local, tokenizer, "int8", calibration_samples, chosen)
    plain = cached_ir(local, tokenizer, quantized=True, calibration_samples=calibration_samples)
    candidates = auto_candidates(chosen.sparse and bool(replaced))
    if len(candidates) == 1:
        return None
    irs = {name: (sparse_ir if name == SPARSEQA else plain).name for name in candidates}
    return read_cached(decision_key(local, threads or default_threads(), irs))


def decision_key(local: LocalModel, threads: int, irs: dict[str, str]) -> dict:
    """Everything the kernel decision depends on: the CPU (model and flags), the model and its revision, the IRs
    compared (their names hold the library versions, calibration, kernel build, graph pass and ISA), the libraries,
    the kernel build, the thread count and the measuring procedure."""
    from . import native
    from .choice import RULE_VERSION, RUNS, SEQ_LENS

    cpu = machine()
    try:
        build = native.build_key()
    except OSError:
        build = None
    return {
        "cpu": cpu.cpu,
        "cpu_flags": hashlib.sha256(" ".join(sorted(cpu.flags)).encode()).hexdigest()[:16],
        "model": local.model_id,
        "revision": local.revision,
        "irs": irs,
        "libraries": library_versions(),
        "kernel_build": build,
        "threads": threads,
        "procedure": {"rule": RULE_VERSION, "seq_lens": list(SEQ_LENS), "runs": RUNS},
    }


def _load_tokenizer(local: LocalModel):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(local.path)
    except Exception as error:
        raise ModelLoadError(local.model_id, f"no usable tokenizer ({_first_line(error)})") from error
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(local.model_id, "its tokenizer has no fast version, which the character offsets need")
    return tokenizer


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


# ---- the IR cache ----------------------------------------------------------------------------------------------

COMPLETE_MARKER = "sparseqa-complete.json"
CALIBRATION_FILE = "sparseqa-calibration.json"
SPARSE_LINEARS_FILE = "sparseqa-sparse-linears.json"


def cache_key(
    local: LocalModel, quantized: bool, calibration_samples: int, kernels: KernelChoice | None = None
) -> str:
    """Directory name of a cached IR: model, revision, precision and the versions of everything that built it."""
    versions = library_versions()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "--", local.model_id).strip("-")[-80:]
    parts = [slug, local.revision[:12], "int8" if quantized else "fp32"]
    parts += [f"ov{versions['openvino']}", f"oi{versions['optimum-intel']}", f"tf{versions['transformers']}"]
    if quantized:
        parts += [f"nncf{versions['nncf']}", f"cal{calibration_samples}{calibration_mode()}"]
    if kernels is not None and kernels.sparse:
        from . import native
        from .blocks import ORIENTATIONS
        from .sparse_ir import pass_key

        # The orientations the pass may give a Linear (each Linear's own is recorded in the IR, SPARSE_LINEARS_FILE).
        parts += [f"sq{native.build_key()}{pass_key()}", "blocks" + "+".join(ORIENTATIONS), kernels.isa]
    return "-".join(parts)


def cached_ir(
    local: LocalModel, tokenizer, *, quantized: bool, calibration_samples: int, kernels: KernelChoice | None = None
) -> Path:
    """The OpenVINO IR for ``local``, built and stored atomically on first use, rebuilt if the entry is damaged.

    With sparse ``kernels`` (int8 only): the int8 IR with its sparse Linears replaced by sparseqa's op.
    """
    target = cache_root() / "ir" / cache_key(local, quantized, calibration_samples, kernels)
    if _is_complete(target):
        return target
    if target.exists():
        log.warning("cached IR at %s is incomplete or damaged; rebuilding it", target)
        shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        # Export and NNCF draw progress on stdout, which belongs to the caller's results (a table, JSON).
        with contextlib.redirect_stdout(sys.stderr):
            if kernels is not None and kernels.sparse:
                source = cached_ir(local, tokenizer, quantized=True, calibration_samples=calibration_samples)
                sparse_kernel_ir(source, staging, kernels.extension)
            elif quantized:
                source = cached_ir(local, tokenizer, quantized=False, calibration_samples=calibration_samples)
                quantize_int8(source, tokenizer, staging, calibration_samples, model_dir=local.path)
            else:
                export_ir(local, staging)
        tokenizer.save_pretrained(staging)
        _mark_complete(staging)
        publish(staging, target, _is_complete)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def export_ir(local: LocalModel, out_dir: Path) -> None:
    """Export a transformers QA model to OpenVINO IR (fp32 weights) with Optimum Intel."""
    from optimum.intel import OVModelForQuestionAnswering

    log.info("exporting %s to OpenVINO IR (once; cached afterwards)", local.model_id)
    try:
        ov_model = OVModelForQuestionAnswering.from_pretrained(local.path, export=True, compile=False, load_in_8bit=False)
    except Exception as error:
        raise ModelLoadError(local.model_id, f"export to OpenVINO failed ({_first_line(error)})") from error
    ov_model.save_pretrained(out_dir)


def quantize_int8(
    fp32_dir: Path, tokenizer, out_dir: Path, calibration_samples: int, *, model_dir: Path | None = None
) -> None:
    """Post-training int8 quantization with NNCF, calibrated on tokenized question/passage pairs (the model's own,
    when ``model_dir`` ships them)."""
    import nncf
    import openvino as ov

    pairs, source = calibration_pairs(calibration_samples, model_dir)
    log.info("quantizing to int8 with NNCF on %d %s question/passage windows", len(pairs), source)
    core = ov.Core()
    model = core.read_model(fp32_dir / "openvino_model.xml")
    input_names = [port.get_any_name() for port in model.inputs]
    samples = []
    for question, passage in pairs:
        encoding = decoding.encode(tokenizer, question, passage)
        for window in range(encoding["input_ids"].shape[0]):
            samples.append({name: encoding[name][window : window + 1].astype(np.int64) for name in input_names})
    quantized = nncf.quantize(
        model,
        nncf.Dataset(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
    )
    ov.save_model(quantized, out_dir / "openvino_model.xml", compress_to_fp16=False)
    for name in ("config.json",):
        shutil.copy(fp32_dir / name, out_dir / name)
    (out_dir / CALIBRATION_FILE).write_text(json.dumps({"source": source, "pairs": len(pairs), "windows": len(samples)}))


def sparse_kernel_ir(int8_dir: Path, out_dir: Path, extension: Path) -> None:
    """The int8 IR with each sparse Linear replaced by sparseqa's op; records how many it replaced."""
    from .sparse_ir import sparsify_ir

    log.info("handing the sparse Linears of %s to the sparseqa kernels", int8_dir.name)
    replaced = sparsify_ir(int8_dir / "openvino_model.xml", out_dir / "openvino_model.xml", extension)
    for name in ("config.json", CALIBRATION_FILE):
        if (int8_dir / name).is_file():
            shutil.copy(int8_dir / name, out_dir / name)
    (out_dir / SPARSE_LINEARS_FILE).write_text(json.dumps({"replaced": replaced}))


def ir_to_compile(
    local: LocalModel, tokenizer, precision: str, calibration_samples: int, kernels: KernelChoice
) -> tuple[Path, int]:
    """The cached IR for ``precision`` and how many of its Linears run on sparseqa's op: with sparse ``kernels``, the
    graph pass's IR where it replaced any Linear, else the plain IR (0)."""
    ir_dir = cached_ir(local, tokenizer, quantized=precision == "int8", calibration_samples=calibration_samples)
    if kernels.sparse:
        sparse_ir_dir = cached_ir(
            local, tokenizer, quantized=True, calibration_samples=calibration_samples, kernels=kernels
        )
        replaced = sparse_linears(sparse_ir_dir)
        if replaced:
            return sparse_ir_dir, replaced
    return ir_dir, 0


def sparse_linears(ir_dir: Path) -> int:
    """How many Linears of a cached IR run on the sparseqa kernels (0 for an IR the graph pass did not touch)."""
    return len(linear_orientations(ir_dir))


def linear_orientations(ir_dir: Path) -> dict[str, str]:
    """The Linears of a cached IR that run on the sparseqa kernels, each with its block orientation ({} for an IR
    the graph pass did not touch)."""
    try:
        replaced = json.loads((ir_dir / SPARSE_LINEARS_FILE).read_text())["replaced"]
    except (OSError, ValueError, KeyError):
        return {}
    return replaced if isinstance(replaced, dict) else {}


def orientation_note(orientations: dict[str, str]) -> str:
    """How many Linears use each orientation, in words: "72 in 4x1 blocks (4 consecutive outputs × 1 input)"."""
    from .blocks import describe

    counts = {o: list(orientations.values()).count(o) for o in sorted(set(orientations.values()))}
    return ", ".join(f"{count} in {describe(o)} blocks" for o, count in counts.items())


def calibration_note(ir_dir: Path) -> str | None:
    """What an int8 IR was calibrated on, e.g. "int8 calibrated on 12 bundled example pairs (14 windows)"."""
    try:
        record = json.loads((ir_dir / CALIBRATION_FILE).read_text())
        return f"int8 calibrated on {record['pairs']} {record['source']} pairs ({record['windows']} windows)"
    except (OSError, ValueError, KeyError):
        return None


def _mark_complete(directory: Path) -> None:
    sizes = {file.name: file.stat().st_size for file in directory.iterdir() if file.suffix in (".xml", ".bin")}
    (directory / COMPLETE_MARKER).write_text(json.dumps(sizes))


def _is_complete(directory: Path) -> bool:
    """The entry finished writing and its IR files still have the sizes they were written with."""
    try:
        sizes = json.loads((directory / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not sizes:
        return False
    return all((directory / name).is_file() and (directory / name).stat().st_size == size for name, size in sizes.items())
