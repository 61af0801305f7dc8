"""Sentences on where a speedup comes from, built from measured ratios only: the runtime, the precision, the zeros.

Nothing here reads CPU flags: what the zeros bought on a CPU is what was measured on it, "nothing" and "they cost
time" included. Two medians within ``choice.MIN_NOISE`` of each other count as the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .choice import DESCRIPTIONS, MIN_NOISE, OPENVINO, SPARSE_KERNELS_RUNTIME, SPARSE_WEIGHTS_RUNTIME, KernelDecision

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


def _medians(rows: Iterable[Mapping], role: str, runtime: str, precision: str) -> dict[int, float]:
    return {
        row["seq_len"]: row["median_ms"]
        for row in rows
        if (row["role"], row["runtime"], row["precision"]) == (role, runtime, precision)
    }


def _ratio(slow: Mapping[int, float], fast: Mapping[int, float]) -> dict[int, float]:
    return {length: slow[length] / fast[length] for length in sorted(slow.keys() & fast.keys())}


def bench_sentences(rows: list[Mapping]) -> list[str]:
    """Where the speedup comes from in a benchmark's rows (``BenchRow.as_dict()`` values): the runtime (the sparse
    model on OpenVINO fp32 against PyTorch fp32), the precision (int8 and bf16 against fp32 on OpenVINO), and the
    zeros (the sparse model against the dense one on OpenVINO's own int8 kernels, and each sparse path against
    OpenVINO's kernels on the same sparse model)."""
    sentences = []
    runtime = _ratio(_medians(rows, "sparse", "pytorch", "fp32"), _medians(rows, "sparse", "openvino", "fp32"))
    if runtime:
        sentences.append(
            f"The runtime gave {ratios_text(runtime)} (the sparse model on OpenVINO fp32 against PyTorch fp32)."
        )
    fp32 = _medians(rows, "sparse", "openvino", "fp32")
    for precision in ("bf16", "int8"):
        lower = _ratio(fp32, _medians(rows, "sparse", "openvino", precision))
        if lower:
            sentences.append(f"The precision: {precision} gave {ratios_text(lower)} against fp32 on OpenVINO.")
    plain = _medians(rows, "sparse", "openvino", "int8")
    own = _ratio(_medians(rows, "dense", "openvino", "int8"), plain)
    if own:
        sentences.append(zeros_sentence("OpenVINO's own int8 kernels", own, "the dense model"))
    paths = ((SPARSE_WEIGHTS_RUNTIME, "sparse weight decompression"), (SPARSE_KERNELS_RUNTIME, "sparseqa's kernels"))
    for runtime_label, path in paths:
        ratios = _ratio(plain, _medians(rows, "sparse", runtime_label, "int8"))
        if ratios:
            sentences.append(zeros_sentence(path, ratios, "OpenVINO's kernels on the same sparse model"))
    return sentences
