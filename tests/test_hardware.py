"""What the page and the benchmark say about the CPU."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sparseqa.hardware import Machine, machine

AVX2_ONLY = Machine("Some CPU", 2, 2, avx512_vnni=False, avx512_bf16=False, amx=False, openvino_default_precision="fp32")


def test_openvino_default_precision_is_a_precision_name():
    assert machine().openvino_default_precision in ("fp32", "bf16", "fp16")


@pytest.mark.parametrize(
    ("cpu", "says", "does_not_say"),
    [
        (AVX2_ONLY, ["zeros themselves save no time", "the runtime", "int8 gains little"], ["bf16", "through AVX-512 VNNI"]),
        (
            replace(AVX2_ONLY, avx512_vnni=True, avx512_bf16=True, openvino_default_precision="bf16"),
            ["zeros themselves save no time", "bf16, which this CPU computes natively", "int8, through AVX-512 VNNI"],
            ["int8 gains little"],
        ),
        (replace(AVX2_ONLY, amx=True), ["sparsity itself saves time"], ["save no time"]),
    ],
    ids=["avx2-only", "vnni-and-bf16", "amx"],
)
def test_the_speedup_story_names_only_what_this_cpu_can_use(cpu, says, does_not_say):
    story = cpu.speedup_story()
    for phrase in says:
        assert phrase in story
    for phrase in does_not_say:
        assert phrase not in story


@pytest.mark.parametrize(
    ("cpu", "isa", "says", "does_not_say"),
    [
        (AVX2_ONLY, "avx2", ["kernels (avx2)", "zeros themselves save time here", "int8 gains little"], ["no time"]),
        (replace(AVX2_ONLY, avx512_vnni=True, amx=True), "avx512vnni", ["kernels (avx512vnni)", "through AVX-512 VNNI"],
         ["decompresses", "int8 gains little"]),
    ],
    ids=["avx2-only", "amx"],
)
def test_with_sparseqas_kernels_the_story_says_the_zeros_save_time(cpu, isa, says, does_not_say):
    story = cpu.speedup_story(isa)
    for phrase in says:
        assert phrase in story
    for phrase in does_not_say:
        assert phrase not in story
