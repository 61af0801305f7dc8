"""``python -m sparseqa bench --kernels-only``: each encoder Linear shape, sparseqa's kernel beside OpenVINO int8."""

from __future__ import annotations

import json

import pytest

from sparseqa import native
from sparseqa.cli import main
from sparseqa.blocks import ORIENTATIONS, zero_block_share
from sparseqa.kernel_bench import pruned_weight
from sparseqa.sparse_kernels import pack_bcsr


def test_kernels_only_times_every_shape_and_sums_an_encoder_layer(tmp_path, capsys):
    out = tmp_path / "kernels.json"
    arguments = ["bench", "--kernels-only", "--seq-lens", "32", "--runs", "2", "--warmup", "0", "--json", str(out)]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["blocks"] == ["4x1"]  # the seed model's orientation by default
    assert {row["blocks"] for row in document["rows"]} == {"4x1"}
    assert "blocks: 4x1 (4 consecutive outputs × 1 input)" in printed
    assert document["kernel_isa"] == native.chosen_isa() == document["cpu_kernel_isas"][0]
    assert document["openvino_int8"].startswith("FullyConnected ") and "i8 weights" in document["openvino_int8"]
    assert document["machine"]["threads"] >= 1 and "cpu" in document["machine"]
    rows = {(row["n"], row["k"], row["linears"], row["hidden"]): row for row in document["rows"]}
    # The six Linears of a layer as the graph pass runs them: query, key and value as one op, the attention output
    # alone, the intermediate (768 -> 3072, GELU) and the output (3072 -> 768) as one op.
    assert set(rows) == {(768, 768, 3, 0), (768, 768, 1, 0), (768, 768, 2, 3072)}
    assert sum(linears for _, _, linears, _ in rows) == 6
    for (n, k, linears, hidden), row in rows.items():
        assert row["seq_len"] == 32
        assert row["speedup"] == pytest.approx(row["openvino_int8_ms"] / row["sparseqa_ms"])
        # 80% of blocks zero: the useful multiply-adds are a fifth of OpenVINO's dense ones.
        dense_macs = (hidden * k + n * hidden if hidden else linears * n * k) * 32
        assert row["gmacs"] * row["sparseqa_ms"] * 1e6 == pytest.approx(0.2 * dense_macs, rel=1e-3)
        assert row["openvino_gmacs"] * row["openvino_int8_ms"] * 1e6 == pytest.approx(dense_macs)
    [layer] = document["encoder_layer"]
    assert layer["sparseqa_ms"] == pytest.approx(sum(row["sparseqa_ms"] for row in rows.values()))
    assert layer["openvino_int8_ms"] == pytest.approx(sum(row["openvino_int8_ms"] for row in rows.values()))
    assert f"sparseqa kernel: {document['kernel_isa']}" in printed
    assert "encoder layer (6 Linears)" in printed and "768->3072->768 (intermediate, GELU, output: one op)" in printed
    assert "768->768 x3 (query, key, value: one op)" in printed
    # The feed-forward block is also timed as two sparseqa ops, to show what one op saves.
    feed_forward = rows[768, 768, 2, 3072]
    assert feed_forward["two_ops_ms"] > 0 and all(row["two_ops_ms"] is None for row in rows.values() if not row["hidden"])
    ratio = feed_forward["two_ops_ms"] / feed_forward["sparseqa_ms"]
    assert f"feed-forward block at 32 tokens, 4x1: one op {feed_forward['sparseqa_ms']:.3f} ms" in printed
    assert f"({ratio:.2f}x)" in printed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--seq-lens", "8"], "use lengths from 32 to 512"),
        (["--runs", "0"], "--runs must be at least 1"),
        (["--json", "/no/such/dir/out.json"], "its directory does not exist"),
        (["--plot", "out.png"], "with --kernels-only use --json"),
        (["--blocks", "2x2"], "--blocks 2x2: choose 4x1, 1x4 or both"),
    ],
)
def test_kernels_only_bad_arguments_are_one_line_usage_errors(arguments, message, capsys):
    try:
        returned = main(["bench", "--kernels-only", *arguments])
    except SystemExit as exit:
        returned = exit.code
    assert returned != 0
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_kernels_only_times_both_orientations_against_one_openvino_timing(tmp_path):
    out = tmp_path / "kernels.json"
    arguments = ["bench", "--kernels-only", "--seq-lens", "32", "--runs", "1", "--warmup", "0", "--blocks", "1x4,4x1"]
    assert main([*arguments, "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["blocks"] == ["1x4", "4x1"]
    by_shape = {}
    for row in document["rows"]:
        by_shape.setdefault((row["n"], row["k"], row["linears"], row["hidden"]), {})[row["blocks"]] = row
    assert all(set(rows) == {"1x4", "4x1"} for rows in by_shape.values())
    assert all(rows["1x4"]["openvino_int8_ms"] == rows["4x1"]["openvino_int8_ms"] for rows in by_shape.values())
    assert {layer["blocks"] for layer in document["encoder_layer"]} == {"1x4", "4x1"}


@pytest.mark.parametrize("blocks", ORIENTATIONS)
def test_pruned_weight_zeroes_exactly_the_share_of_blocks(blocks):
    weight = pruned_weight(64, 96, 0.8, seed=1, blocks=blocks)
    assert zero_block_share(weight, blocks) == pytest.approx(0.8, abs=1 / (64 * 24))
    assert pack_bcsr(weight, None, blocks).blocks == round(0.2 * 64 * 24)
    other = "1x4" if blocks == "4x1" else "4x1"
    assert zero_block_share(weight, other) < 0.5
