"""The kernel-only benchmark: each BERT-base encoder Linear shape alone, sparseqa's block-sparse int8 kernels
against OpenVINO's dense int8 FullyConnected on the same shape, same thread count, timed interleaved in one run.

The weights are random with 80% of their blocks zero, in the block orientations asked for (default 4x1, 4
consecutive outputs × 1 input: how the Prune-OFA model was pruned; 1x4 too for comparison). Both sides are the same
OpenVINO model in the int8 pattern NNCF writes (FakeQuantize on the activations, int8 weights with Convert and
Multiply) of one MatMul, of the three that share their input (query, key, value), or of the feed-forward block
(intermediate, GELU, output): as it is, which the CPU plugin compiles to one int8 FullyConnected per MatMul (checked
in the runtime model; it fuses the GELU and the next quantization into the first), and after the graph pass that
hands the MatMuls to one ``sparseqa.SparseQALinear``, as it does inside the model. So both run on OpenVINO's own
threads as they do inside the model; calling the kernel library through its own thread pool instead would pit its
workers against OpenVINO's still-spinning ones between interleaved runs. One element of the output is the model's
result, so neither side pays a copy of its whole output into the caller's tensor, which it would not inside a model
(OpenVINO writes a FullyConnected's output there in place, a custom op's it copies).
``gmacs`` counts useful multiply-adds (nonzero weights x tokens) per second; ``openvino_gmacs`` all n x k x tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import native
from .blocks import check, describe
from .hardware import library_versions, machine
from .timing import OtherCpuUse, interleave

SPARSITY = 0.8
DEFAULT_BLOCKS = ("4x1",)
DEFAULT_SEQ_LENS = (128, 384)


@dataclass(frozen=True)
class LinearShape:
    """Linears of one BERT-base encoder layer that run as one op: ``linears`` of n outputs on the same k inputs, or
    with ``hidden``, two Linears k -> hidden, GELU, hidden -> n (a feed-forward block)."""

    n: int
    k: int
    linears: int = 1
    what: str = ""
    hidden: int = 0

    @property
    def label(self) -> str:
        if self.hidden:
            return f"{self.k}->{self.hidden}->{self.n} ({self.what})"
        return f"{self.k}->{self.n}" + (f" x{self.linears} ({self.what})" if self.linears > 1 else "")

    @property
    def macs_per_token(self) -> int:
        """Multiply-adds of the dense Linears per token."""
        return self.hidden * (self.k + self.n) if self.hidden else self.linears * self.n * self.k

    def weight_shapes(self) -> list[tuple[int, int]]:
        """(outputs, inputs) of each Linear."""
        return [(self.hidden, self.k), (self.n, self.hidden)] if self.hidden else [(self.n, self.k)] * self.linears


# One encoder layer's six Linears as the graph pass runs them: query, key and value (one input) as one op, the
# attention output alone, the intermediate (with its GELU) and the output as one op.
ENCODER_LINEARS = (
    LinearShape(768, 768, 3, "query, key, value: one op"),
    LinearShape(768, 768),
    LinearShape(768, 768, 2, "intermediate, GELU, output: one op", hidden=3072),
)


class OpenVINONotInt8(RuntimeError):
    """OpenVINO compiled the baseline MatMul to something other than an int8 FullyConnected."""


@dataclass(frozen=True)
class KernelRow:
    """One shape at one sequence length: medians of interleaved runs, in milliseconds."""

    n: int
    k: int
    seq_len: int
    blocks: str  # the block orientation of the weights sparseqa's kernel ran on
    linears: int  # Linears timed together (sparseqa: one op; OpenVINO: one each)
    sparseqa_ms: float
    openvino_int8_ms: float
    speedup: float
    gmacs: float
    openvino_gmacs: float
    hidden: int = 0  # the intermediate's outputs when the row is a feed-forward block (k -> hidden -> n)
    two_ops_ms: float | None = None  # a feed-forward block on sparseqa's kernels as two ops (no sq_chain)


@dataclass
class KernelBenchResult:
    """Every shape at every sequence length, with what measured them."""

    kernel_isa: str
    openvino_int8: str
    threads: int
    runs: int
    blocks: tuple[str, ...] = DEFAULT_BLOCKS
    rows: list[KernelRow] = field(default_factory=list)
    other_cpu_share: float | None = None
    date: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def encoder_layer(self) -> list[dict]:
        """Per sequence length and block orientation, the sum over one encoder layer's six Linears (query, key and
        value together, attention output, intermediate, output)."""
        shapes = {(shape.n, shape.k, shape.linears, shape.hidden) for shape in ENCODER_LINEARS}
        layers = []
        for seq_len, blocks in sorted({(row.seq_len, row.blocks) for row in self.rows}):
            rows = [row for row in self.rows if (row.seq_len, row.blocks) == (seq_len, blocks)]
            if {(row.n, row.k, row.linears, row.hidden) for row in rows} != shapes:
                continue
            sparse = sum(row.sparseqa_ms for row in rows)
            dense = sum(row.openvino_int8_ms for row in rows)
            layers.append(
                {"seq_len": seq_len, "blocks": blocks, "sparseqa_ms": sparse, "openvino_int8_ms": dense,
                 "speedup": dense / sparse}
            )
        return layers

    def table(self) -> pd.DataFrame:
        """One line per shape and length, then one per length for a whole encoder layer."""
        labels = {(shape.n, shape.k, shape.linears, shape.hidden): shape.label for shape in ENCODER_LINEARS}
        records = [
            {
                "layer": labels[row.n, row.k, row.linears, row.hidden],
                "seq_len": row.seq_len,
                "blocks": row.blocks,
                "sparseqa ms": round(row.sparseqa_ms, 3),
                "OpenVINO int8 ms": round(row.openvino_int8_ms, 3),
                "speedup": f"{row.speedup:.2f}x",
                "sparseqa GMAC/s": round(row.gmacs, 1),
                "OpenVINO GMAC/s": round(row.openvino_gmacs, 1),
            }
            for row in sorted(self.rows, key=lambda row: (row.seq_len, row.hidden, -row.linears, row.blocks))
        ]
        records += [
            {
                "layer": "encoder layer (6 Linears)",
                "seq_len": layer["seq_len"],
                "blocks": layer["blocks"],
                "sparseqa ms": round(layer["sparseqa_ms"], 3),
                "OpenVINO int8 ms": round(layer["openvino_int8_ms"], 3),
                "speedup": f"{layer['speedup']:.2f}x",
            }
            for layer in self.encoder_layer()
        ]
        return pd.DataFrame(records)

    def chain_lines(self) -> list[str]:
        """How much running the feed-forward block as one op saved against two sparseqa ops, per length and
        orientation (the same weights, timed in the same interleaved loop)."""
        return [
            f"feed-forward block at {row.seq_len} tokens, {row.blocks}: one op {row.sparseqa_ms:.3f} ms, as two ops "
            f"{row.two_ops_ms:.3f} ms ({row.two_ops_ms / row.sparseqa_ms:.2f}x)"
            for row in sorted(self.rows, key=lambda row: (row.seq_len, row.blocks))
            if row.two_ops_ms is not None
        ]

    def header_lines(self) -> list[str]:
        """What ran: the machine, the kernel path, OpenVINO's compiled layer, threads and runs."""
        cpu = machine()
        lines = [
            f"{cpu.cpu}, {cpu.physical_cores} cores; {self.threads} threads; median of {self.runs} interleaved runs",
            f"sparseqa kernel: {self.kernel_isa}, {SPARSITY:.0%} of the blocks zero; OpenVINO: {self.openvino_int8}",
            "blocks: " + "; ".join(describe(blocks) for blocks in self.blocks),
        ]
        if self.other_cpu_share is not None:
            lines.append(f"other processes used {self.other_cpu_share:.0%} of the CPU during the timings")
        return lines

    def as_dict(self) -> dict:
        """The JSON document: a header naming the machine and kernel path, then the rows and per-layer sums."""
        return {
            "machine": machine().as_dict()
            | {"threads": self.threads, "libraries": library_versions(), "date": self.date,
               "other_cpu_share": self.other_cpu_share},
            "kernel_isa": self.kernel_isa,
            "cpu_kernel_isas": native.cpu_isas(),
            "openvino_int8": self.openvino_int8,
            "sparsity": SPARSITY,
            "blocks": list(self.blocks),
            "runs": self.runs,
            "rows": [asdict(row) for row in self.rows],
            "encoder_layer": self.encoder_layer(),
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=2) + "\n")


def pruned_weight(n: int, k: int, sparsity: float = SPARSITY, seed: int = 0, blocks: str = "4x1") -> np.ndarray:
    """Random (n, k) fp32 weights with ``sparsity`` of their ``blocks`` blocks zeroed, chosen at random over the
    matrix."""
    check(blocks)
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
    # Each block as one row of a view: 4 consecutive inputs (1x4), or 4 consecutive outputs of one input (4x1).
    view = weight.reshape(-1, 4) if blocks == "1x4" else weight.reshape(n // 4, 4, k).transpose(0, 2, 1).reshape(-1, 4)
    view[rng.choice(len(view), size=round(sparsity * len(view)), replace=False)] = 0.0
    if blocks == "4x1":
        weight = np.ascontiguousarray(view.reshape(n // 4, k, 4).transpose(0, 2, 1).reshape(n, k))
    return weight


def _int8_linear(x, weight: np.ndarray, bias: np.ndarray):
    """``x @ weight.T + bias`` in NNCF's int8 pattern: the activations through a symmetric 8-bit FakeQuantize over a
    fixed range (as NNCF writes it for a signed input), int8 weights with a Convert and per-row scales."""
    import openvino as ov
    import openvino.opset13 as ops

    limit = np.float32(4.0)
    quantized_x = ops.fake_quantize(x, -limit, limit * 127 / 128, -limit, limit * 127 / 128, 256)
    scales = (np.abs(weight).max(axis=1, keepdims=True) / 127).astype(np.float32)
    scales[scales == 0] = 1.0
    int8 = np.clip(np.rint(weight / scales), -127, 127).astype(np.int8)
    dequantized = ops.multiply(ops.convert(ops.constant(int8), ov.Type.f32), ops.constant(scales))
    return ops.add(ops.matmul(quantized_x, dequantized, False, True), ops.constant(bias.astype(np.float32)))


def int8_linear_model(shape: LinearShape, weights: list[np.ndarray], biases: list[np.ndarray], seq_len: int):
    """An OpenVINO model of ``shape``'s Linears in NNCF's int8 pattern: each of ``weights`` on one input ``x``, or
    (a feed-forward block) the first, GELU, then the second; one element of each output as the model's results."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([seq_len, shape.k], ov.Type.f32, name="x")
    if shape.hidden:
        hidden = ops.gelu(_int8_linear(x, weights[0], biases[0]), "erf")
        outputs = [_int8_linear(hidden, weights[1], biases[1])]
    else:
        outputs = [_int8_linear(x, weight, bias) for weight, bias in zip(weights, biases)]
    results = [ops.slice(output, np.array([0, 0]), np.array([1, 1]), np.array([1, 1])) for output in outputs]
    return ov.Model(results, [x], f"linears_{shape.label}")


def compile_linears(
    shape: LinearShape, weights: list[np.ndarray], biases: list[np.ndarray], seq_len: int, threads: int, extension: Path
):
    """(OpenVINO's int8 model, the same model on sparseqa's kernel, for a feed-forward block the same on two sparseqa
    ops or else None, what OpenVINO runs), all compiled for ``threads``.

    Raises OpenVINONotInt8 when the CPU plugin does not compile each MatMul to an int8 FullyConnected.
    """
    import openvino as ov

    from .sparse_ir import OP_TYPE, sparsify

    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    core = ov.Core()
    core.add_extension(str(extension))
    dense = core.compile_model(int8_linear_model(shape, weights, biases, seq_len), "CPU", config)
    layers = []
    for op in dense.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "FullyConnected":
            layers.append((info["primitiveType"].astype(str), info["runtimePrecision"].astype(str)))
    if len(layers) != len(weights) or any(precision not in ("u8", "i8") for _, precision in layers):
        raise OpenVINONotInt8(f"OpenVINO compiled the int8 MatMuls to {layers or 'no FullyConnected'}, not int8")

    def sparse(chain: bool):
        model = int8_linear_model(shape, weights, biases, seq_len)
        if len(sparsify(model, extension, chain=chain)) != len(weights):
            raise RuntimeError("the graph pass left a MatMul of the benchmark alone")
        ops = 2 if shape.hidden and not chain else 1
        if sum(op.get_type_name() == OP_TYPE for op in model.get_ordered_ops()) != ops:
            raise RuntimeError(f"the graph pass did not make the benchmark's Linears {ops} op(s)")
        return core.compile_model(model, "CPU", config)

    primitive, precision = layers[0]
    two_ops = sparse(chain=False) if shape.hidden else None
    return dense, sparse(chain=True), two_ops, f"FullyConnected {primitive}, {precision} activations x i8 weights"


def run_kernel_benchmark(
    seq_lens: tuple[int, ...] = DEFAULT_SEQ_LENS,
    runs: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    progress: Callable[[float, str], object] | None = None,
    blocks: tuple[str, ...] = DEFAULT_BLOCKS,
) -> KernelBenchResult:
    """Time every encoder Linear shape at every sequence length: sparseqa (on weights pruned in each of ``blocks``'
    orientations) against OpenVINO dense int8, all interleaved in one loop per shape and length.

    Raises native.NativeUnavailable when the kernels cannot be built, OpenVINONotInt8 when the baseline is not int8.
    """
    import openvino as ov

    from .runtimes import default_threads
    from .sparse_kernels import pack_bcsr

    threads = threads or default_threads()
    extension = native.extension_library()
    isa = native.chosen_isa()
    result: KernelBenchResult | None = None
    other = OtherCpuUse()
    steps = len(ENCODER_LINEARS) * len(seq_lens)
    for index, (seq_len, shape) in enumerate((s, shape) for s in seq_lens for shape in ENCODER_LINEARS):
        if progress:
            progress(index / steps, f"{shape.label} at {seq_len} tokens")
        rng = np.random.default_rng(index)
        biases = [rng.standard_normal(n).astype(np.float32) for n, _ in shape.weight_shapes()]
        x = ov.Tensor(np.random.default_rng(100 + index).standard_normal((seq_len, shape.k)).astype(np.float32))
        requests, useful = {}, {}
        for orientation in blocks:
            weights = [
                pruned_weight(n, k, seed=index + 1000 * i, blocks=orientation)
                for i, (n, k) in enumerate(shape.weight_shapes())
            ]
            dense, sparse, two_ops, openvino_layer = compile_linears(shape, weights, biases, seq_len, threads, extension)
            requests[orientation] = sparse.create_infer_request()
            if two_ops is not None:
                requests[f"{orientation} two ops"] = two_ops.create_infer_request()
            useful[orientation] = sum(pack_bcsr(w, None, orientation).nonzero_weights for w in weights) * seq_len
        # OpenVINO's dense kernel takes as long on either pattern: it is timed once, on the last one's weights.
        requests["openvino"] = dense.create_infer_request()
        for request in requests.values():
            request.set_input_tensor(0, x)
        if result is None:
            result = KernelBenchResult(
                kernel_isa=isa, openvino_int8=openvino_layer, threads=threads, runs=runs, blocks=tuple(blocks)
            )
        with other:
            stats = interleave({name: request.infer for name, request in requests.items()}, runs=runs, warmup=warmup)
        dense_ms = stats["openvino"].median_ms
        for orientation in blocks:
            sparse_ms = stats[orientation].median_ms
            result.rows.append(
                KernelRow(
                    n=shape.n,
                    k=shape.k,
                    seq_len=seq_len,
                    blocks=orientation,
                    linears=shape.linears,
                    sparseqa_ms=sparse_ms,
                    openvino_int8_ms=dense_ms,
                    speedup=dense_ms / sparse_ms,
                    gmacs=useful[orientation] / sparse_ms / 1e6,
                    openvino_gmacs=shape.macs_per_token * seq_len / dense_ms / 1e6,
                    hidden=shape.hidden,
                    two_ops_ms=stats[f"{orientation} two ops"].median_ms if shape.hidden else None,
                )
            )
    assert result is not None
    result.other_cpu_share = other.share
    if progress:
        progress(1.0, "done")
    return result
