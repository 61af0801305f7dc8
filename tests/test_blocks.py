"""Block orientations read from the weights (both shapes of "1x4", unstructured matrices, ragged edges), and block
pruning in either orientation."""

import numpy as np
import pytest

from sparseqa.blocks import block_magnitudes, describe, prune_mask, weight_pattern, zero_block_share, zero_blocks


def pruned(shape: tuple[int, int], orientation: str, share: float = 0.8, seed: int = 0) -> np.ndarray:
    """A random matrix with ``share`` of its blocks of ``orientation`` zeroed (whole blocks only)."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal(shape).astype(np.float32)
    out_features, in_features = shape
    if orientation == "1x4":
        blocks = weight[:, : in_features // 4 * 4].reshape(out_features, in_features // 4, 4)
        blocks[rng.random(blocks.shape[:2]) < share] = 0
    else:
        view = weight[: out_features // 4 * 4].reshape(out_features // 4, 4, in_features).transpose(0, 2, 1)
        view[rng.random(view.shape[:2]) < share] = 0
    return weight


def test_one_row_blocks_are_four_inputs_of_one_output():
    weight = np.ones((4, 8), np.float32)
    weight[1, 4:8] = 0
    assert zero_blocks(weight, "1x4").tolist() == [[False, False], [False, True], [False, False], [False, False]]
    assert not zero_blocks(weight, "4x1").any()


def test_one_column_blocks_are_four_outputs_of_one_input():
    weight = np.ones((8, 3), np.float32)
    weight[4:8, 2] = 0
    assert zero_blocks(weight, "4x1").tolist() == [[False, False, False], [False, False, True]]
    assert not zero_blocks(weight, "1x4").any()


@pytest.mark.parametrize("orientation", ["1x4", "4x1"])
def test_a_matrix_pruned_either_way_is_named_by_its_own_orientation(orientation):
    weight = pruned((96, 64), orientation)
    other = "4x1" if orientation == "1x4" else "1x4"
    assert zero_block_share(weight, orientation) == pytest.approx(0.8, abs=0.05)
    assert zero_block_share(weight, other) < 0.55
    assert weight_pattern(weight) == orientation


def test_unstructured_zeros_name_no_pattern():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((128, 128)).astype(np.float32)
    weight[rng.random(weight.shape) < 0.8] = 0
    assert zero_block_share(weight, "1x4") == pytest.approx(0.8**4, abs=0.05)
    assert weight_pattern(weight) is None
    assert weight_pattern(np.ones((8, 8), np.float32)) is None


def test_output_count_not_a_multiple_of_four_counts_whole_blocks_only():
    weight = pruned((30, 16), "4x1")  # 7 whole row groups; the last 2 rows belong to no block
    assert zero_blocks(weight, "4x1").shape == (7, 16)
    assert weight_pattern(weight) == "4x1"


def test_orientations_are_described_in_words():
    assert describe("4x1") == "4x1 (4 consecutive outputs × 1 input)"
    assert describe("1x4") == "1x4 (1 output × 4 consecutive inputs)"
    assert describe(None) == "unstructured"
    with pytest.raises(ValueError, match="choose 1x4 or 4x1"):
        describe("2x2")


@pytest.mark.parametrize("orientation", ["1x4", "4x1"])
def test_magnitude_pruning_zeroes_the_blocks_with_the_lowest_mean_absolute_weight(orientation):
    weight = np.random.default_rng(2).standard_normal((24, 40)).astype(np.float32)
    keep = prune_mask(weight, 0.8, orientation)
    kept = ~zero_blocks(keep, orientation)  # a block of the mask is all False where it is pruned
    assert (zero_blocks(keep, orientation) | zero_blocks(~keep, orientation)).all(), "whole blocks only"
    assert int((~kept).sum()) == round(0.8 * kept.size)
    scores = block_magnitudes(weight, orientation)
    assert scores[kept].min() >= scores[~kept].max()
    assert weight_pattern(weight * keep) == orientation


def test_block_magnitudes_are_the_mean_absolute_weight_of_each_block():
    weight = np.array([[1, -2, 0, 4], [3, 0, 0, -4], [-5, 2, 0, 4], [3, -4, 0, 4]], np.float32)
    assert block_magnitudes(weight, "1x4").tolist() == [[1.75], [1.75], [2.75], [2.75]]
    assert block_magnitudes(weight, "4x1").tolist() == [[3.0, 2.0, 0.0, 4.0]]


@pytest.mark.parametrize("orientation", ["1x4", "4x1"])
def test_random_pruning_zeroes_whole_blocks_drawn_by_the_generator(orientation):
    weight = np.ones((16, 32), np.float32)
    first = prune_mask(weight, 0.5, orientation, "random", np.random.default_rng(7))
    again = prune_mask(weight, 0.5, orientation, "random", np.random.default_rng(7))
    other = prune_mask(weight, 0.5, orientation, "random", np.random.default_rng(8))
    assert (first == again).all() and (first != other).any()
    assert zero_block_share(weight * first, orientation) == 0.5
    # Ones everywhere give magnitude pruning nothing to rank: ties go in a fixed order, the same every time.
    assert (prune_mask(weight, 0.5, orientation) == prune_mask(weight, 0.5, orientation)).all()


def test_pruning_keeps_the_weights_outside_whole_blocks():
    weight = np.random.default_rng(4).standard_normal((30, 18)).astype(np.float32)
    assert prune_mask(weight, 1.0, "4x1")[28:].all() and not prune_mask(weight, 1.0, "4x1")[:28].any()
    assert prune_mask(weight, 1.0, "1x4")[:, 16:].all() and not prune_mask(weight, 1.0, "1x4")[:, :16].any()
    assert prune_mask(weight, 0.0, "4x1").all()


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ((0.8, "2x2"), "choose 1x4 or 4x1"),
        ((0.8, "4x1", "l2"), "choose magnitude or random"),
        ((1.5, "4x1"), "between 0 and 1"),
    ],
)
def test_pruning_refuses_unknown_orientations_methods_and_shares(arguments, says):
    with pytest.raises(ValueError, match=says):
        prune_mask(np.ones((8, 8), np.float32), *arguments)
