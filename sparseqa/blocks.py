"""Block orientations: which 4 weights of a Linear's ``(out, in)`` matrix a "1x4 block" means, read from the weights.

"1x4" names opposite shapes in different ecosystems. TFLite, XNNPACK and ``torch.ao`` mean 1 output × 4 consecutive
inputs. Intel's Model-Compression-Research-Package (which pruned the Prune OFA models) swaps its block dimensions
onto PyTorch's ``(out, in)`` weight, so its "1x4" is 4 consecutive outputs × 1 input, which Intel's SparseLib and
Neural Compressor call "4x1" (N outputs × M inputs). Here an orientation is always named by the block's shape in
the ``(out, in)`` weight, and shown in words:

- ``"1x4"``: 1 output × 4 consecutive inputs (a block of one row);
- ``"4x1"``: 4 consecutive outputs × 1 input (a block of one column).

A matrix whose size is not a multiple of the block along its dimension counts only its whole blocks.
"""

from __future__ import annotations

import numpy as np

BLOCK = 4
ORIENTATIONS = ("1x4", "4x1")
DESCRIPTIONS = {
    "1x4": "1 output × 4 consecutive inputs",
    "4x1": "4 consecutive outputs × 1 input",
}
# A matrix is blocked in an orientation when at least this share of its blocks there is all zero (also what the graph
# pass asks of a Linear before it hands it to sparseqa's kernels).
MIN_BLOCKED_SHARE = 0.5


def describe(orientation: str | None) -> str:
    """The orientation in words, e.g. "4x1 (4 consecutive outputs × 1 input)"; "unstructured" for None."""
    if orientation is None:
        return "unstructured"
    check(orientation)
    return f"{orientation} ({DESCRIPTIONS[orientation]})"


def check(orientation: str) -> str:
    """``orientation`` if it is one of ORIENTATIONS, else ValueError with the choices."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown block orientation {orientation!r}: choose {' or '.join(ORIENTATIONS)}")
    return orientation


def zero_blocks(weight: np.ndarray, orientation: str) -> np.ndarray:
    """A boolean array with one entry per whole block of ``weight`` (out, in): True where the block is all zero.

    "1x4" gives shape (out, in // 4), "4x1" gives (out // 4, in)."""
    check(orientation)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (outputs, inputs), got shape {weight.shape}")
    zero = np.asarray(weight) == 0
    out_features, in_features = zero.shape
    if orientation == "1x4":
        usable = in_features - in_features % BLOCK
        return zero[:, :usable].reshape(out_features, usable // BLOCK, BLOCK).all(axis=2)
    usable = out_features - out_features % BLOCK
    return zero[:usable].reshape(usable // BLOCK, BLOCK, in_features).all(axis=1)


def zero_block_share(weight: np.ndarray, orientation: str) -> float:
    """The share of ``weight``'s whole blocks of ``orientation`` that are entirely zero (0 when it has none)."""
    blocks = zero_blocks(weight, orientation)
    return float(blocks.mean()) if blocks.size else 0.0


def chance_share(zero_weights: float) -> float:
    """The share of all-zero blocks an unstructured matrix with this share of zero weights has by chance."""
    return float(zero_weights) ** BLOCK


def pattern(zero_weights: float, shares: dict[str, float]) -> str | None:
    """The orientation whose blocks are zero (``shares`` per orientation, from zero_block_share), or None when
    neither is. Blocked means at least MIN_BLOCKED_SHARE of the blocks are zero, and clearly more than chance: at
    least halfway from the chance share to 1 (80% zeros scattered at random leave 41% of blocks zero, so 70.5% is
    needed; 80% zeros pruned in blocks leave 80%)."""
    best = max(ORIENTATIONS, key=lambda orientation: shares.get(orientation, 0.0))
    share = shares.get(best, 0.0)
    if share >= MIN_BLOCKED_SHARE and share >= (1 + chance_share(zero_weights)) / 2:
        return best
    return None


def weight_pattern(weight: np.ndarray) -> str | None:
    """The block orientation ``weight`` (out, in) is pruned in, or None when it is unstructured (see pattern)."""
    zero_weights = float((np.asarray(weight) == 0).mean()) if weight.size else 0.0
    return pattern(zero_weights, {orientation: zero_block_share(weight, orientation) for orientation in ORIENTATIONS})
