"""The sparsity report: exact shares on hand-made weights, and the tiny models read from their checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from sparseqa.sparsity import inspect_model, inspect_weights, matrix_sparsity


def patterned_weight(rows: int = 8, columns: int = 16) -> np.ndarray:
    """Half of the 1x4 blocks zero (alternating), plus one isolated zero in every non-zero block.

    Zero weights are then 1/2 + 1/2 * 1/4 = 62.5% while all-zero blocks stay at 50%.
    """
    weight = np.arange(1, rows * columns + 1, dtype=np.float32).reshape(rows, columns)
    blocks = weight.reshape(rows, columns // 4, 4)
    blocks[:, ::2, :] = 0.0
    blocks[:, 1::2, 0] = 0.0
    return weight


def test_matrix_sparsity_counts_zero_weights_and_all_zero_blocks_separately():
    assert matrix_sparsity(patterned_weight()) == (128, 80, 32, 16)


def test_blocks_run_along_the_input_dimension_of_each_output_row():
    # Zeros down a column of four rows are four isolated zeros, not a 1x4 block.
    weight = np.ones((4, 8), dtype=np.float32)
    weight[:, 0] = 0.0
    assert matrix_sparsity(weight) == (32, 4, 8, 0)
    weight = np.ones((4, 8), dtype=np.float32)
    weight[0, :4] = 0.0
    assert matrix_sparsity(weight) == (32, 4, 8, 1)


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
    assert report.block_zeros == pytest.approx(32 / 96)
    per_layer = report.per_layer()
    assert per_layer["layer"].tolist() == [0, 1, 2]
    assert per_layer["zeros"].tolist() == pytest.approx([0.625, 0.625, 0.0])
    assert per_layer["1x4 blocks zero"].tolist() == pytest.approx([0.5, 0.5, 0.0])
    as_dict = report.as_dict()
    assert as_dict["matrices"] == 3 and as_dict["model"] == "hand-made"
    assert [row["layer"] for row in as_dict["per_layer"]] == [0, 1, 2]


def test_weights_without_encoder_linears_are_refused_with_a_message():
    with pytest.raises(ValueError, match="has no encoder Linear weights"):
        inspect_weights([("classifier.weight", np.zeros((2, 4), dtype=np.float32))], "not-bert")


def test_tiny_sparse_model_reads_eighty_percent(tiny_sparse_model):
    report = inspect_model(str(tiny_sparse_model))

    assert report.block_zeros == pytest.approx(0.8, abs=0.01)
    # Random weights are never exactly zero, so the zeros are the zero blocks' weights.
    assert report.zeros == pytest.approx(report.block_zeros, abs=1e-6)
    assert len(report.layers) == 2 * 6  # query, key, value, attention output, intermediate, output per layer
    assert report.per_layer()["1x4 blocks zero"].tolist() == pytest.approx([0.8, 0.8], abs=0.01)


def test_tiny_dense_model_reads_no_zeros(tiny_dense_model):
    report = inspect_model(str(tiny_dense_model))

    assert report.zeros == pytest.approx(0.0, abs=1e-4)
    assert report.block_zeros == 0.0
