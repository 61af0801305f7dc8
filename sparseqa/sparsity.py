"""The sparsity report: how many encoder weights are zero, how many blocks of each orientation are entirely zero, and
which block pattern the weights have (read from them, never assumed from a model's name; see ``blocks``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import blocks
from .models import resolve

# Encoder Linear weights of BERT-style checkpoints: "bert.encoder.layer.3.attention.self.query.weight".
ENCODER_LINEAR = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.(.+)\.weight$")
COUNTS = ["weights", "zero_weights"] + [
    column for orientation in blocks.ORIENTATIONS for column in (f"blocks {orientation}", f"zero_blocks {orientation}")
]


def share_column(orientation: str) -> str:
    """The name of the column holding the share of all-zero ``orientation`` blocks, e.g. "4x1 blocks zero"."""
    return f"{blocks.check(orientation)} blocks zero"


@dataclass(frozen=True)
class SparsityReport:
    """Per-matrix and overall shares of zero weights and of all-zero blocks of both orientations in the encoder
    Linears, and the block pattern they have."""

    model: str
    # One row per matrix: layer, name, shape, weights, zero_weights, and "blocks O" / "zero_blocks O" per orientation.
    layers: pd.DataFrame

    @property
    def zeros(self) -> float:
        """Share of encoder Linear weights that are exactly zero."""
        return float(self.layers["zero_weights"].sum() / self.layers["weights"].sum())

    def block_share(self, orientation: str) -> float:
        """Share of all the encoder Linears' whole ``orientation`` blocks that are entirely zero."""
        total = self.layers[f"blocks {blocks.check(orientation)}"].sum()
        return float(self.layers[f"zero_blocks {orientation}"].sum() / total) if total else 0.0

    @property
    def block_shares(self) -> dict[str, float]:
        """block_share of each orientation."""
        return {orientation: self.block_share(orientation) for orientation in blocks.ORIENTATIONS}

    @property
    def pattern(self) -> str | None:
        """The orientation the encoder Linears are pruned in, over all of them, or None when unstructured."""
        return blocks.pattern(self.zeros, self.block_shares)

    @staticmethod
    def _shares(counts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        """The ``keys`` columns of ``counts``, then its shares of zero weights and of all-zero blocks of each
        orientation, and the pattern those shares make (None when unstructured)."""
        table = counts[keys].copy()
        table["zeros"] = counts["zero_weights"] / counts["weights"]
        for orientation in blocks.ORIENTATIONS:
            total = counts[f"blocks {orientation}"]
            table[share_column(orientation)] = (counts[f"zero_blocks {orientation}"] / total.where(total > 0)).fillna(0)
        columns = {orientation: share_column(orientation) for orientation in blocks.ORIENTATIONS}
        patterns = [
            blocks.pattern(row["zeros"], {orientation: row[column] for orientation, column in columns.items()})
            for _, row in table.iterrows()
        ]
        table["pattern"] = pd.Series(patterns, index=table.index, dtype=object)
        return table

    def per_layer(self) -> pd.DataFrame:
        """For each encoder layer (all its matrices together): the shares of zero weights and of all-zero blocks of
        each orientation, and its pattern (None when unstructured)."""
        return self._shares(self.layers.groupby("layer", as_index=False)[COUNTS].sum(), ["layer"])

    def per_linear(self) -> pd.DataFrame:
        """The same for each encoder Linear: layer, name, shape, shares and pattern."""
        return self._shares(self.layers, ["layer", "name", "shape"])

    def as_dict(self) -> dict:
        """Plain values for JSON: overall shares and pattern, then per layer and per Linear."""
        return {
            "model": self.model,
            "zeros": self.zeros,
            "zero_blocks": self.block_shares,
            "pattern": self.pattern,
            "pattern_description": blocks.describe(self.pattern),
            "matrices": len(self.layers),
            "per_layer": _records(self.per_layer()),
            "linears": _records(self.per_linear()),
        }


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as dicts, the per-orientation shares nested as ``zero_blocks: {orientation: share}``."""
    records = []
    for row in table.to_dict(orient="records"):
        shares = {orientation: row.pop(share_column(orientation)) for orientation in blocks.ORIENTATIONS}
        pattern = row.pop("pattern")
        records.append(row | {"zero_blocks": shares, "pattern": pattern})
    return records


def matrix_sparsity(weight: np.ndarray) -> dict[str, int]:
    """Counts of one (out, in) weight matrix: its weights, zero weights, and per orientation its whole blocks and
    all-zero blocks (keys as in COUNTS)."""
    counts = {"weights": int(weight.size), "zero_weights": int((weight == 0).sum())}
    for orientation in blocks.ORIENTATIONS:
        zero = blocks.zero_blocks(weight, orientation)
        counts[f"blocks {orientation}"] = int(zero.size)
        counts[f"zero_blocks {orientation}"] = int(zero.sum())
    return counts


def inspect_weights(named_weights, model: str) -> SparsityReport:
    """The report over ``(name, array)`` pairs; only 2-D encoder Linear weights count."""
    rows = []
    for name, weight in named_weights:
        match = ENCODER_LINEAR.search(name)
        if match is None or weight.ndim != 2:
            continue
        rows.append(
            {
                "layer": int(match.group(1)),
                "name": match.group(2),
                "shape": "x".join(map(str, weight.shape)),
                **matrix_sparsity(weight),
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
