"""Sentences on where a speedup comes from, built from measured ratios only: the runtime, the precision, the zeros.

Nothing here reads CPU flags: what the zeros bought on a CPU is what was measured on it, "nothing" and "they cost
time" included. Two medians count as the same within the noise of their ratio: the noise a kernel decision
measured, or in a benchmark run two standard errors of it from the two rows' interleaved samples
(``choice.ratio_noise``); never less than ``choice.MIN_NOISE``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .choice import (
    DESCRIPTIONS,
    MIN_NOISE,
    OPENVINO,
    SPARSE_KERNELS_RUNTIME,
    SPARSE_WEIGHTS_RUNTIME,
    KernelDecision,
    ratio_noise,
)

SAVED, NOTHING, COST = "saved time", "bought nothing measurable", "cost time"


def verdict(ratio: float, noise: float = MIN_NOISE) -> str:
    """What a speedup ratio (old time over new time) means for the zeros: saved time, bought nothing or cost time."""
    if ratio > 1 + noise:
        return SAVED
    if ratio < 1 - noise:
        return COST
    return NOTHING


def ratios_text(ratios: Mapping[int, float]) -> str:
    """``{128: 1.52, 384: 1.49}`` → ``1.52x at 128 tokens, 1.49x at 384``."""
    items = sorted(ratios.items())
    return ", ".join(
        f"{ratio:.2f}x at {length}" + (" tokens" if index == 0 else "") for index, (length, ratio) in enumerate(items)
    )


def zeros_sentence(path: str, ratios: Mapping[int, float], against: str, noise: float = MIN_NOISE) -> str:
    """"With PATH the zeros saved time: 1.52x AGAINST at 128 tokens ..." — or bought nothing, or cost time, per
    length where the lengths disagree."""
    groups: dict[str, dict[int, float]] = {}
    for length, ratio in sorted(ratios.items()):
        groups.setdefault(verdict(ratio, noise), {})[length] = ratio
    parts = [f"{said} ({ratios_text(values)})" for said, values in groups.items()]
    return f"With {path} the zeros {' and '.join(parts)} against {against}."


def decision_sentences(decision: KernelDecision | None) -> list[str]:
    """What the kernel measurement at load says about the zeros: one sentence per sparse-aware candidate."""
    if decision is None or not decision.medians_ms:
        return []
    noise = decision.noise or MIN_NOISE
    return [
        zeros_sentence(
            DESCRIPTIONS[name],
            {length: decision.speedup(name, length) for length in decision.seq_lens},
            "OpenVINO's kernels on the same int8 model",
            noise,
        )
        for name in decision.medians_ms
        if name != OPENVINO
    ]


def _rows(rows: Iterable[Mapping], role: str, runtime: str, precision: str) -> dict[int, Mapping]:
    return {
        row["seq_len"]: row for row in rows if (row["role"], row["runtime"], row["precision"]) == (role, runtime, precision)
    }


def _ratio(slow: Mapping[int, Mapping], fast: Mapping[int, Mapping]) -> dict[int, float]:
    return {length: slow[length]["median_ms"] / fast[length]["median_ms"] for length in sorted(slow.keys() & fast.keys())}


def _noise(slow: Mapping[int, Mapping], fast: Mapping[int, Mapping]) -> float:
    """How far from 1 the ratios of two sets of rows must be to say the zeros did something: two standard errors
    (``ratio_noise`` of their samples, the median over the lengths), at least ``MIN_NOISE``. Twice what the kernel
    choice allows, because a sentence claims a saving where the choice only breaks a tie (rows written before the
    samples were kept count ``MIN_NOISE``)."""
    spreads = [
        ratio_noise(fast[length]["samples_ms"], slow[length]["samples_ms"])
        for length in slow.keys() & fast.keys()
        if slow[length].get("samples_ms") and len(slow[length]["samples_ms"]) == len(fast[length].get("samples_ms", ()))
    ]
    return max(MIN_NOISE, 2 * float(np.median(spreads)) if spreads else 0.0)


def bench_sentences(rows: list[Mapping]) -> list[str]:
    """Where the speedup comes from in a benchmark's rows (``BenchRow.as_dict()`` values): the runtime (the sparse
    model on OpenVINO fp32 against PyTorch fp32), the precision (int8 and bf16 against fp32 on OpenVINO), and the
    zeros (the sparse model against the dense one on OpenVINO's own int8 kernels, and each sparse path against
    OpenVINO's kernels on the same sparse model)."""
    sentences = []
    fp32 = _rows(rows, "sparse", "openvino", "fp32")
    runtime = _ratio(_rows(rows, "sparse", "pytorch", "fp32"), fp32)
    if runtime:
        sentences.append(
            f"The runtime gave {ratios_text(runtime)} (the sparse model on OpenVINO fp32 against PyTorch fp32)."
        )
    for precision in ("bf16", "int8"):
        lower = _ratio(fp32, _rows(rows, "sparse", "openvino", precision))
        if lower:
            sentences.append(f"The precision: {precision} gave {ratios_text(lower)} against fp32 on OpenVINO.")
    plain = _rows(rows, "sparse", "openvino", "int8")
    dense = _rows(rows, "dense", "openvino", "int8")
    own = _ratio(dense, plain)
    if own:
        sentences.append(zeros_sentence("OpenVINO's own int8 kernels", own, "the dense model", _noise(dense, plain)))
    paths = ((SPARSE_WEIGHTS_RUNTIME, "sparse weight decompression"), (SPARSE_KERNELS_RUNTIME, "sparseqa's kernels"))
    for runtime_label, path in paths:
        sparse = _rows(rows, "sparse", runtime_label, "int8")
        ratios = _ratio(plain, sparse)
        if ratios:
            sentences.append(
                zeros_sentence(path, ratios, "OpenVINO's kernels on the same sparse model", _noise(plain, sparse))
            )
    return sentences
