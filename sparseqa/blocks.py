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


def block_view(array: np.ndarray, orientation: str) -> tuple[np.ndarray, int]:
    """``array``'s whole blocks of ``orientation`` and the axis that runs along a block:
    "1x4": (out, in // 4, 4), axis 2; "4x1": (out // 4, 4, in), axis 1."""
    out_features, in_features = array.shape
    if orientation == "1x4":
        usable = in_features - in_features % BLOCK
        return array[:, :usable].reshape(out_features, usable // BLOCK, BLOCK), 2
    usable = out_features - out_features % BLOCK
    return array[:usable].reshape(usable // BLOCK, BLOCK, in_features), 1


def zero_blocks(weight: np.ndarray, orientation: str) -> np.ndarray:
    """A boolean array with one entry per whole block of ``weight`` (out, in): True where the block is all zero.

    "1x4" gives shape (out, in // 4), "4x1" gives (out // 4, in)."""
    check(orientation)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (outputs, inputs), got shape {weight.shape}")
    blocks, axis = block_view(np.asarray(weight) == 0, orientation)
    return blocks.all(axis=axis)


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


# ---- pruning ---------------------------------------------------------------------------------------------------

PRUNING_METHODS = {
    "magnitude": "blocks ranked by their mean |w|, the lowest zeroed",
    "random": "blocks chosen at random",
}


def block_magnitudes(weight: np.ndarray, orientation: str) -> np.ndarray:
    """The mean |w| of each whole block of ``orientation`` in ``weight`` (out, in), shaped as zero_blocks' result:
    the score Model-Compression-Research-Package ranks blocks by (average pooling of |w| over the block)."""
    check(orientation)
    blocks, axis = block_view(np.abs(np.asarray(weight, dtype=np.float32)), orientation)
    return blocks.mean(axis=axis)


def prune_mask(
    weight: np.ndarray,
    sparsity: float,
    orientation: str,
    method: str = "magnitude",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A keep-mask (bool, ``weight``'s shape) that zeroes ``round(sparsity × blocks)`` whole blocks of
    ``orientation`` of one Linear's ``weight`` (out, in), chosen by ``method``:

    - ``"magnitude"``: the blocks with the lowest mean |w| (ties broken in a fixed order, so the same weights always
      give the same mask), as Model-Compression-Research-Package's block magnitude pruning does per Linear;
    - ``"random"``: blocks drawn uniformly by ``rng`` (default: a fresh generator seeded 0).

    Weights outside every whole block (a ragged edge) are kept."""
    check(orientation)
    if method not in PRUNING_METHODS:
        raise ValueError(f"unknown pruning method {method!r}: choose {' or '.join(PRUNING_METHODS)}")
    if not 0 <= sparsity <= 1:
        raise ValueError(f"sparsity must be between 0 and 1, got {sparsity}")
    scores = block_magnitudes(weight, orientation)
    pruned = round(sparsity * scores.size)
    if method == "magnitude":
        order = np.argsort(scores.ravel(), kind="stable")
    else:
        order = (rng or np.random.default_rng(0)).permutation(scores.size)
    kept = np.ones(scores.size, dtype=bool)
    kept[order[:pruned]] = False
    kept = kept.reshape(scores.shape)
    keep = np.ones(np.shape(weight), dtype=bool)
    if orientation == "1x4":
        keep[:, : kept.shape[1] * BLOCK] = np.repeat(kept, BLOCK, axis=1)
    else:
        keep[: kept.shape[0] * BLOCK] = np.repeat(kept, BLOCK, axis=0)
    return keep
