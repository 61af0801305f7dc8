"""The sparse int8 kernels from Python: packing weights into block-CSR, running a packed layer, the references.

Blocks come in two orientations of the ``(out, in)`` weight (see ``blocks``): "1x4" (1 output × 4 consecutive
inputs) and "4x1" (4 consecutive outputs × 1 input), each with its own kernel family in the native library.
``pack_bcsr`` turns a dense fp32 weight matrix into its nonzero blocks (int8, one scale per output row); the
OpenVINO graph pass stores exactly these arrays as Constants. ``SparseLinear`` packs them once for one ISA path and
runs ``y = x @ W.T + b`` through the native library (built on first use, see ``native``). ``reference_linear`` runs
the library's plain reference and ``numpy_linear`` the same arithmetic in NumPy, for tests.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import native
from .blocks import BLOCK, check

QUANT_MIN = np.float32(1e-30)  # as the reference: a token whose largest |x| is below this quantizes to zeros


@dataclass(frozen=True)
class BlockCSR:
    """Weights as their nonzero blocks of 4.

    "1x4": row ``o``'s blocks are ``row_ptr[o]:row_ptr[o + 1]``, ``block_col`` is each block's first input divided
    by 4 and ``values`` its 4 int8 weights in input order. "4x1": the blocks of outputs ``4 g .. 4 g + 3`` are
    ``row_ptr[g]:row_ptr[g + 1]``, ``block_col`` is each block's input and ``values`` its 4 weights in output order.
    ``block_col`` ascends within a row (group); ``W[o, i] = scales[o] * value``; ``bias`` is None or one float per
    output.
    """

    n: int
    k: int
    row_ptr: np.ndarray  # int32 (n + 1,)
    block_col: np.ndarray  # int32 (blocks,)
    values: np.ndarray  # int8 (blocks, 4)
    scales: np.ndarray  # float32 (n,)
    bias: np.ndarray | None  # float32 (n,)
    orientation: str = "1x4"

    @property
    def block_rows(self) -> int:
        """Outputs per block: 1 for "1x4", 4 for "4x1"."""
        return 1 if self.orientation == "1x4" else BLOCK

    @property
    def blocks(self) -> int:
        """How many nonzero blocks are stored."""
        return int(self.row_ptr[-1])

    @property
    def nonzero_weights(self) -> int:
        """Weights the kernels multiply (4 per stored block): the useful multiply-adds per token."""
        return BLOCK * self.blocks

    def dequantized(self) -> np.ndarray:
        """The (n, k) fp32 weights these blocks stand for."""
        return self.int8_weights() * self.scales[:, None]

    def int8_weights(self) -> np.ndarray:
        """The (n, k) int8 weights, zeros where no block is stored."""
        rows = np.repeat(np.arange(len(self.row_ptr) - 1), np.diff(self.row_ptr))
        if self.orientation == "1x4":
            dense = np.zeros((self.n, self.k // BLOCK, BLOCK), np.int8)
            dense[rows, self.block_col] = self.values
            return dense.reshape(self.n, self.k)
        dense = np.zeros((self.n // BLOCK, self.k, BLOCK), np.int8)
        dense[rows, self.block_col] = self.values
        return dense.transpose(0, 2, 1).reshape(self.n, self.k)


def pack_bcsr(weight: np.ndarray, bias: np.ndarray | None = None, orientation: str = "1x4") -> BlockCSR:
    """Quantize ``weight`` (n, k) per output row to symmetric int8 and keep its nonzero blocks of ``orientation``.

    Row scale = max |W[o, :]| / 127; a block whose 4 int8 values are all zero is dropped. ``k`` must be a multiple
    of 4 (and ``n`` too for "4x1"). ``bias`` (n,) is kept in fp32.
    """
    n, k = _check_weight(weight, orientation)
    weight = np.asarray(weight, np.float32)
    peak = np.abs(weight).max(axis=1) if k else np.zeros(n, np.float32)
    scales = np.where(peak > 0, peak / np.float32(127), np.float32(1)).astype(np.float32)
    quantized = np.clip(np.rint(weight / scales[:, None]), -127, 127).astype(np.int8)
    return int8_bcsr(quantized, scales, bias, orientation)


def int8_bcsr(
    quantized: np.ndarray, scales: np.ndarray, bias: np.ndarray | None, orientation: str = "1x4"
) -> BlockCSR:
    """The nonzero blocks of ``orientation`` of already-quantized int8 weights [n, k] with per-row ``scales`` [n],
    kept as they are (``pack_bcsr`` quantizes fp32 weights itself)."""
    n, k = _check_weight(quantized, orientation)
    if orientation == "1x4":
        blocks = quantized.reshape(n, k // BLOCK, BLOCK)
    else:
        blocks = quantized.reshape(n // BLOCK, BLOCK, k).transpose(0, 2, 1)  # [group, input, 4 outputs]
    nonzero = np.any(blocks != 0, axis=2)
    rows, cols = np.nonzero(nonzero)  # row-major: columns ascend within each row (group)
    row_ptr = np.zeros(nonzero.shape[0] + 1, np.int32)
    np.cumsum(nonzero.sum(axis=1), out=row_ptr[1:])
    if bias is not None:
        bias = np.ascontiguousarray(bias, np.float32).reshape(-1)
        if bias.shape != (n,):
            raise ValueError(f"bias has {bias.shape[0]} values for {n} outputs")
    return BlockCSR(
        n=n,
        k=k,
        row_ptr=row_ptr,
        block_col=cols.astype(np.int32),
        values=np.ascontiguousarray(blocks[rows, cols], dtype=np.int8),
        scales=np.ascontiguousarray(scales, dtype=np.float32).reshape(n),
        bias=bias,
        orientation=orientation,
    )


def stack_bcsr(parts: list[BlockCSR]) -> BlockCSR:
    """One BlockCSR of ``parts``' outputs one after the other (Linears of one input and orientation: a transformer's
    query, key and value), for one plan whose outputs split back into the parts (``SparseLinear.parts``)."""
    first = parts[0]
    if any(part.k != first.k or part.orientation != first.orientation for part in parts):
        raise ValueError("stacked Linears need the same inputs and block orientation")
    offsets = np.cumsum([0] + [part.blocks for part in parts[:-1]])
    row_ptr = np.concatenate([parts[0].row_ptr[:1]] + [part.row_ptr[1:] + offset for part, offset in zip(parts, offsets)])
    biased = any(part.bias is not None for part in parts)
    return BlockCSR(
        n=sum(part.n for part in parts),
        k=first.k,
        row_ptr=row_ptr.astype(np.int32),
        block_col=np.concatenate([part.block_col for part in parts]).astype(np.int32),
        values=np.concatenate([part.values for part in parts]).astype(np.int8),
        scales=np.concatenate([part.scales for part in parts]).astype(np.float32),
        bias=np.concatenate([np.zeros(part.n, np.float32) if part.bias is None else part.bias for part in parts])
        if biased
        else None,
        orientation=first.orientation,
    )


def _check_weight(weight: np.ndarray, orientation: str) -> tuple[int, int]:
    check(orientation)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (outputs, inputs), got shape {weight.shape}")
    n, k = weight.shape
    if k % BLOCK:
        raise ValueError(f"inputs ({k}) must be a multiple of {BLOCK}")
    if orientation == "4x1" and n % BLOCK:
        raise ValueError(f"outputs ({n}) must be a multiple of {BLOCK} for 4x1 blocks")
    return n, k


class _Bcsr(ctypes.Structure):
    _fields_ = [
        ("n", ctypes.c_int32),
        ("k", ctypes.c_int32),
        ("block_rows", ctypes.c_int32),
        ("row_ptr", ctypes.c_void_p),
        ("block_col", ctypes.c_void_p),
        ("values", ctypes.c_void_p),
        ("scales", ctypes.c_void_p),
        ("bias", ctypes.c_void_p),
    ]


def _struct(weights: BlockCSR) -> _Bcsr:
    """A C view of ``weights``' arrays (the arrays must outlive the struct's use)."""

    def pointer(array: np.ndarray | None) -> int | None:
        return None if array is None else array.ctypes.data

    return _Bcsr(
        weights.n,
        weights.k,
        weights.block_rows,
        pointer(weights.row_ptr),
        pointer(weights.block_col),
        pointer(weights.values),
        pointer(weights.scales),
        pointer(weights.bias),
    )


# sq_rows_fn: (context, rows, stride, row_begin, row_end, count), an elementwise op in place on a tile of outputs.
ROWS_FN = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32
)


@functools.cache
def _library() -> ctypes.CDLL:
    library = ctypes.CDLL(str(native.kernel_library()))
    pointer, size = ctypes.c_void_p, ctypes.c_size_t
    signatures = {
        "sq_plan_create": (pointer, [ctypes.POINTER(_Bcsr), ctypes.c_char_p, ctypes.c_char_p, size]),
        "sq_plan_destroy": (None, [pointer]),
        "sq_plan_isa": (ctypes.c_char_p, [pointer]),
        "sq_linear": (ctypes.c_int, [pointer, pointer, ctypes.c_int64, pointer, ctypes.c_int]),
        "sq_linear_parts": (
            ctypes.c_int, [pointer, pointer, ctypes.c_int64, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        ),
        "sq_parts_fit": (ctypes.c_int, [pointer, ctypes.c_int]),
        "sq_chain_fits": (ctypes.c_int, [pointer, pointer]),
        "sq_chain": (
            ctypes.c_int,
            [pointer, pointer, pointer, ctypes.c_int64, pointer, ctypes.c_int, ROWS_FN, pointer],
        ),
        "sq_linear_reference": (ctypes.c_int, [ctypes.POINTER(_Bcsr), pointer, ctypes.c_int64, pointer]),
    }
    for name, (result, arguments) in signatures.items():
        function = getattr(library, name)
        function.restype, function.argtypes = result, arguments
    return library


def _activations(x: np.ndarray, k: int) -> np.ndarray:
    x = np.ascontiguousarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != k:
        raise ValueError(f"activations must have shape (tokens, {k}), got {x.shape}")
    return x


class SparseLinear:
    """A layer packed once for one ISA path: ``layer(x, threads)`` returns ``x @ W.T + b`` as float32 (m, n).

    ``isa`` None means ``SPARSEQA_KERNEL_ISA`` or the best this CPU runs; one the CPU lacks raises ValueError.
    """

    def __init__(self, weights: BlockCSR, isa: str | None = None):
        self.weights = weights
        library = _library()
        error = ctypes.create_string_buffer(256)
        self._plan = library.sq_plan_create(
            ctypes.byref(_struct(weights)), native.chosen_isa(isa).encode(), error, len(error)
        )
        if not self._plan:
            raise ValueError(error.value.decode())
        self.isa: str = library.sq_plan_isa(self._plan).decode()

    def __call__(self, x: np.ndarray, threads: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        """Run the layer on ``x`` (tokens, k) with ``threads`` threads (0: all cores), into ``out`` if given."""
        x = _activations(x, self.weights.k)
        shape = (x.shape[0], self.weights.n)
        if out is None:
            out = aligned_empty(shape)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 array of shape {shape}")
        y = out
        if _library().sq_linear(self._plan, x.ctypes.data, x.shape[0], y.ctypes.data, threads) != 0:
            raise ValueError(f"sq_linear failed (threads={threads}): bad arguments or out of memory")
        return y

    def parts(self, x: np.ndarray, parts: int, threads: int = 0) -> list[np.ndarray]:
        """``self(x)`` written as ``parts`` arrays of n / parts outputs each, as the OpenVINO op writes stacked
        Linears (``stack_bcsr``) straight into their own outputs; n / parts must be a multiple of 16."""
        x = _activations(x, self.weights.k)
        library = _library()
        if not library.sq_parts_fit(self._plan, parts):
            raise ValueError(f"{self.weights.n} outputs do not split into {parts} parts of a multiple of 16")
        outputs = [aligned_empty((x.shape[0], self.weights.n // parts)) for _ in range(parts)]
        pointers = (ctypes.c_void_p * parts)(*(out.ctypes.data for out in outputs))
        if library.sq_linear_parts(self._plan, x.ctypes.data, x.shape[0], pointers, parts, threads) != 0:
            raise ValueError(f"sq_linear_parts failed (threads={threads}): bad arguments or out of memory")
        return outputs

    def __del__(self) -> None:
        if getattr(self, "_plan", None):
            _library().sq_plan_destroy(self._plan)
            self._plan = None


def chain(
    first: SparseLinear,
    second: SparseLinear,
    x: np.ndarray,
    threads: int = 0,
    between: Callable[[np.ndarray, int], None] | None = None,
) -> np.ndarray:
    """``second(between(first(x)))`` in one native call, the first's outputs handed to the second as its quantized
    activations without going through (tokens, n) memory; bit for bit the three steps one after another.
    ``between(tile, row_begin)`` (or None) changes in place a (rows, 64) tile of the first's outputs, one row per
    output from ``row_begin``, one column per token of a block of 64, elementwise. It is called from the kernels'
    worker threads, so from Python it is for tests, not speed."""
    x = _activations(x, first.weights.k)
    library = _library()
    if not library.sq_chain_fits(first._plan, second._plan):
        raise ValueError(f"the second Linear takes {second.weights.k} inputs, not the first's {first.weights.n} outputs")
    y = aligned_empty((x.shape[0], second.weights.n))

    def rows(_context, data, stride, row_begin, row_end, count):
        tile = np.ctypeslib.as_array(data, shape=((row_end - row_begin) * stride,))
        between(tile.reshape(row_end - row_begin, stride)[:, :count], row_begin)

    callback = ROWS_FN(rows) if between is not None else ROWS_FN()
    if library.sq_chain(first._plan, second._plan, x.ctypes.data, x.shape[0], y.ctypes.data, threads, callback, None):
        raise ValueError(f"sq_chain failed (threads={threads}): bad arguments or out of memory")
    return y


def aligned_empty(shape: tuple[int, ...], alignment: int = 64) -> np.ndarray:
    """An uninitialized float32 array starting on an ``alignment``-byte boundary.

    The kernels write whole 64-byte lines of output; NumPy's large arrays start 16 bytes into a page, which makes
    every line store touch two cache lines (about 12% slower on 3072 outputs at 384 tokens).
    """
    count = int(np.prod(shape))
    raw = np.empty(count * 4 + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start : start + count * 4].view(np.float32).reshape(shape)


def reference_linear(weights: BlockCSR, x: np.ndarray) -> np.ndarray:
    """The native reference implementation's result (what every ISA kernel must reproduce exactly)."""
    x = _activations(x, weights.k)
    y = np.empty((x.shape[0], weights.n), np.float32)
    if _library().sq_linear_reference(ctypes.byref(_struct(weights)), x.ctypes.data, x.shape[0], y.ctypes.data):
        raise ValueError("sq_linear_reference rejected its arguments")
    return y


def quantize_activations(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token symmetric int8 as the reference defines it: (int8 values (m, k), float32 scales (m,))."""
    x = np.asarray(x, np.float32)
    peak = np.abs(x).max(axis=1)
    live = peak >= QUANT_MIN
    inverse = np.where(live, np.float32(127) / np.where(live, peak, 1), 0).astype(np.float32)
    quantized = np.clip(np.rint(x * inverse[:, None]), -127, 127).astype(np.int8)
    return quantized, np.where(live, peak / np.float32(127), 0).astype(np.float32)


def numpy_linear(weights: BlockCSR, x: np.ndarray) -> np.ndarray:
    """The reference's arithmetic in NumPy: exact int sums; the final fma done in float64 (rarely 1 ulp apart)."""
    quantized, token_scales = quantize_activations(_activations(x, weights.k))
    # Integer sums of int8 products are exact in float64 (far below 2**53), whatever order BLAS adds them in.
    sums = quantized.astype(np.float64) @ weights.int8_weights().astype(np.float64).T
    scale = token_scales[:, None] * weights.scales[None, :]
    bias = np.zeros(weights.n, np.float32) if weights.bias is None else weights.bias
    return (sums.astype(np.float32).astype(np.float64) * scale.astype(np.float64) + bias).astype(np.float32)
