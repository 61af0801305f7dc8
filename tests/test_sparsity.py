"""The sparsity report: exact shares of both block orientations on hand-made weights, the pattern it names, and the
tiny models of each orientation read from their checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from sparseqa.blocks import prune_mask
from sparseqa.sparsity import inspect_model, inspect_weights, matrix_sparsity

OTHER = {"1x4": "4x1", "4x1": "1x4"}


def patterned_weight(rows: int = 8, columns: int = 16) -> np.ndarray:
    """Half of the 1x4 blocks zero (alternating), plus one isolated zero in every non-zero 1x4 block.

    Zero weights are then 1/2 + 1/2 * 1/4 = 62.5% while all-zero 1x4 blocks stay at 50%. Every row is alike, so 10
    of the 16 columns are entirely zero: 62.5% of the 4x1 blocks.
    """
    weight = np.arange(1, rows * columns + 1, dtype=np.float32).reshape(rows, columns)
    blocks = weight.reshape(rows, columns // 4, 4)
    blocks[:, ::2, :] = 0.0
    blocks[:, 1::2, 0] = 0.0
    return weight


def pruned(shape: tuple[int, int], orientation: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal(shape).astype(np.float32)
    return weight * prune_mask(weight, 0.8, orientation)


def test_matrix_sparsity_counts_zero_weights_and_all_zero_blocks_of_each_orientation():
    assert matrix_sparsity(patterned_weight()) == {
        "weights": 128,
        "zero_weights": 80,
        "blocks 1x4": 32,
        "zero_blocks 1x4": 16,
        "blocks 4x1": 32,
        "zero_blocks 4x1": 20,
    }


def test_blocks_of_one_orientation_are_isolated_zeros_in_the_other():
    # Zeros down a column of four rows are one 4x1 block and four isolated zeros for 1x4.
    weight = np.ones((4, 8), dtype=np.float32)
    weight[:, 0] = 0.0
    counts = matrix_sparsity(weight)
    assert (counts["zero_weights"], counts["zero_blocks 1x4"], counts["zero_blocks 4x1"]) == (4, 0, 1)
    weight = np.ones((4, 8), dtype=np.float32)
    weight[0, :4] = 0.0
    counts = matrix_sparsity(weight)
    assert (counts["zero_weights"], counts["zero_blocks 1x4"], counts["zero_blocks 4x1"]) == (4, 1, 0)


def test_report_shares_are_exact_and_non_encoder_weights_are_ignored():
    dense = np.ones((8, 16), dtype=np.float32)
    named = [
        ("bert.encoder.layer.0.attention.self.query.weight", patterned_weight()),
        ("bert.encoder.layer.1.output.dense.weight", patterned_weight()),
        # Everything below is zero but must not count: not an encoder Linear weight, or not a matrix.
        ("bert.embeddings.word_embeddings.weight", np.zeros((50, 16), dtype=np.float32)),
        ("qa_outputs.weight", np.zeros((2, 16), dtype=np.float32)),
        ("bert.encoder.layer.0.attention.self.query.bias", np.zeros(8, dtype=np.float32)),
        ("bert.encoder.layer.0.attention.output.LayerNorm.weight", np.zeros(8, dtype=np.float32)),
        ("bert.encoder.layer.2.intermediate.dense.weight", dense),
    ]

    report = inspect_weights(named, "hand-made")

    assert len(report.layers) == 3
    assert report.zeros == pytest.approx(160 / 384)
    assert report.block_shares == pytest.approx({"1x4": 32 / 96, "4x1": 40 / 96})
    assert report.pattern is None, "42% of 4x1 blocks is under half"
    per_layer = report.per_layer()
    assert per_layer["layer"].tolist() == [0, 1, 2]
    assert per_layer["zeros"].tolist() == pytest.approx([0.625, 0.625, 0.0])
    assert per_layer["1x4 blocks zero"].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert per_layer["4x1 blocks zero"].tolist() == pytest.approx([0.625, 0.625, 0.0])
    # Whole zero columns in every row group are 4x1 blocks: more of them zero than chance (0.625 ** 4) explains.
    assert per_layer["pattern"].tolist() == ["4x1", "4x1", None]
    as_dict = report.as_dict()
    assert as_dict["matrices"] == 3 and as_dict["model"] == "hand-made"
    assert (as_dict["pattern"], as_dict["pattern_description"]) == (None, "unstructured")
    assert as_dict["zero_blocks"] == pytest.approx({"1x4": 32 / 96, "4x1": 40 / 96})
    assert [row["layer"] for row in as_dict["per_layer"]] == [0, 1, 2]
    assert as_dict["per_layer"][0]["zero_blocks"] == pytest.approx({"1x4": 0.5, "4x1": 0.625})
    assert [(row["name"], row["shape"], row["pattern"]) for row in as_dict["linears"]] == [
        ("attention.self.query", "8x16", "4x1"),
        ("output.dense", "8x16", "4x1"),
        ("intermediate.dense", "8x16", None),
    ]


@pytest.mark.parametrize("orientation", ["1x4", "4x1"])
def test_report_names_the_orientation_the_weights_are_pruned_in(orientation):
    named = [
        (f"bert.encoder.layer.{layer}.{name}.weight", pruned(shape, orientation, seed=layer))
        for layer in range(2)
        for name, shape in (("attention.self.query", (64, 64)), ("intermediate.dense", (256, 64)))
    ]
    report = inspect_weights(named, "pruned")

    assert report.pattern == orientation
    assert report.block_share(orientation) == pytest.approx(0.8, abs=0.005)
    assert report.block_share(OTHER[orientation]) == pytest.approx(0.8**4, abs=0.05)
    assert report.per_linear()["pattern"].tolist() == [orientation] * 4


def test_unstructured_zeros_and_a_matrix_with_another_pattern_are_told_apart():
    rng = np.random.default_rng(3)
    scattered = rng.standard_normal((64, 64)).astype(np.float32)
    scattered[rng.random(scattered.shape) < 0.8] = 0
    named = [
        ("bert.encoder.layer.0.attention.self.query.weight", pruned((64, 64), "4x1")),
        ("bert.encoder.layer.0.attention.self.key.weight", pruned((64, 64), "4x1", seed=1)),
        ("bert.encoder.layer.0.attention.self.value.weight", pruned((64, 64), "1x4")),
        ("bert.encoder.layer.1.attention.self.query.weight", scattered),
    ]
    report = inspect_weights(named, "mixed")

    by_name = report.per_linear().set_index(["layer", "name"])["pattern"].to_dict()
    assert by_name == {
        (0, "attention.self.key"): "4x1",
        (0, "attention.self.query"): "4x1",
        (0, "attention.self.value"): "1x4",
        (1, "attention.self.query"): None,
    }
    assert report.per_layer()["pattern"].tolist() == [None, None]
    assert report.pattern is None


def test_weights_without_encoder_linears_are_refused_with_a_message():
    with pytest.raises(ValueError, match="has no encoder Linear weights"):
        inspect_weights([("classifier.weight", np.zeros((2, 4), dtype=np.float32))], "not-bert")


@pytest.mark.parametrize("orientation", ["1x4", "4x1"])
def test_tiny_sparse_models_read_eighty_percent_in_their_own_orientation(
    orientation, tiny_sparse_model_1x4, tiny_sparse_model_4x1
):
    model = {"1x4": tiny_sparse_model_1x4, "4x1": tiny_sparse_model_4x1}[orientation]
    report = inspect_model(str(model))

    assert report.pattern == orientation
    assert report.block_share(orientation) == pytest.approx(0.8, abs=0.01)
    assert report.block_share(OTHER[orientation]) < 0.55
    # Random weights are never exactly zero, so the zeros are the zero blocks' weights.
    assert report.zeros == pytest.approx(report.block_share(orientation), abs=1e-6)
    assert len(report.layers) == 2 * 6  # query, key, value, attention output, intermediate, output per layer
    assert report.per_layer()[f"{orientation} blocks zero"].tolist() == pytest.approx([0.8, 0.8], abs=0.01)


def test_the_default_tiny_sparse_model_has_the_seed_models_pattern(tiny_sparse_model):
    assert inspect_model(str(tiny_sparse_model)).pattern == "4x1"


def test_tiny_dense_model_reads_no_zeros(tiny_dense_model):
    report = inspect_model(str(tiny_dense_model))

    assert report.zeros == pytest.approx(0.0, abs=1e-4)
    assert report.block_shares == {"1x4": 0.0, "4x1": 0.0}
    assert report.pattern is None
