"""The sparsity report: how many encoder weights are zero, and how many 1x4 blocks are entirely zero."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .models import resolve

BLOCK = 4
# Encoder Linear weights of BERT-style checkpoints: "bert.encoder.layer.3.attention.self.query.weight".
ENCODER_LINEAR = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.(.+)\.weight$")


@dataclass(frozen=True)
class SparsityReport:
    """Per-matrix and overall shares of zero weights and of all-zero 1x4 blocks in the encoder Linears."""

    model: str
    layers: pd.DataFrame  # one row per matrix: layer, name, shape, zeros, block_zeros

    @property
    def zeros(self) -> float:
        """Share of encoder Linear weights that are exactly zero."""
        return float(self.layers["zero_weights"].sum() / self.layers["weights"].sum())

    @property
    def block_zeros(self) -> float:
        """Share of 1x4 blocks (4 consecutive input weights of one output row) that are all zero."""
        return float(self.layers["zero_blocks"].sum() / self.layers["blocks"].sum())

    def per_layer(self) -> pd.DataFrame:
        """Shares of zero weights and zero blocks for each encoder layer (all its matrices together)."""
        grouped = self.layers.groupby("layer")[["weights", "zero_weights", "blocks", "zero_blocks"]].sum()
        return pd.DataFrame(
            {
                "layer": grouped.index,
                "zeros": grouped["zero_weights"] / grouped["weights"],
                "1x4 blocks zero": grouped["zero_blocks"] / grouped["blocks"],
            }
        ).reset_index(drop=True)

    def as_dict(self) -> dict:
        """Plain values for JSON."""
        return {
            "model": self.model,
            "zeros": self.zeros,
            "block_zeros": self.block_zeros,
            "matrices": len(self.layers),
            "per_layer": self.per_layer().to_dict(orient="records"),
        }


def matrix_sparsity(weight: np.ndarray, block: int = BLOCK) -> tuple[int, int, int, int]:
    """(weights, zero weights, 1 x block blocks, all-zero blocks) of one (out, in) weight matrix."""
    zero = weight == 0
    out_features, in_features = weight.shape
    usable = in_features - in_features % block
    blocks = zero[:, :usable].reshape(out_features, usable // block, block).all(axis=2)
    return weight.size, int(zero.sum()), blocks.size, int(blocks.sum())


def inspect_weights(named_weights, model: str) -> SparsityReport:
    """The report over ``(name, array)`` pairs; only 2-D encoder Linear weights count."""
    rows = []
    for name, weight in named_weights:
        match = ENCODER_LINEAR.search(name)
        if match is None or weight.ndim != 2:
            continue
        weights, zero_weights, blocks, zero_blocks = matrix_sparsity(weight)
        rows.append(
            {
                "layer": int(match.group(1)),
                "name": match.group(2),
                "shape": "x".join(map(str, weight.shape)),
                "weights": weights,
                "zero_weights": zero_weights,
                "blocks": blocks,
                "zero_blocks": zero_blocks,
            }
        )
    if not rows:
        raise ValueError(f"{model} has no encoder Linear weights named like 'encoder.layer.N....weight'")
    return SparsityReport(model, pd.DataFrame(rows).sort_values(["layer", "name"]).reset_index(drop=True))


def inspect_model(model: str) -> SparsityReport:
    """The sparsity report of a hub id, local directory or synthetic model, read from its checkpoint files."""
    path = resolve(model).path
    return inspect_weights(_checkpoint_weights(path), model)


def _checkpoint_weights(path: Path):
    files = sorted(path.glob("*.safetensors"))
    if files:
        from safetensors import safe_open

        for file in files:
            with safe_open(file, framework="pt") as checkpoint:
                for name in checkpoint.keys():
                    yield name, checkpoint.get_tensor(name).float().numpy()
        return
    import torch

    state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    for name, tensor in state.items():
        yield name, tensor.float().numpy()
