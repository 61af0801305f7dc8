"""What this machine is: CPU, cores, the instruction sets that matter for BERT inference, and what OpenVINO uses."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass
from importlib import metadata


@dataclass(frozen=True)
class Machine:
    """The CPU facts that decide which precision OpenVINO picks and whether sparse weights are decompressed."""

    cpu: str
    logical_cores: int
    physical_cores: int
    avx512_vnni: bool
    avx512_bf16: bool
    amx: bool
    openvino_default_precision: str

    @property
    def sparse_weight_decompression(self) -> bool:
        """OpenVINO decompresses sparse int8 weights only with AMX; elsewhere a sparse model runs dense kernels."""
        return self.amx

    def isa_flags(self) -> str:
        """The detected instruction sets, for one line of a header."""
        names = [("AVX-512 VNNI", self.avx512_vnni), ("AVX512-BF16", self.avx512_bf16), ("AMX", self.amx)]
        return ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in names)

    def speedup_story(self, sparse_kernel_isa: str | None = None) -> str:
        """One honest sentence or two on where a sparse-vs-dense speedup comes from on this CPU.

        ``sparse_kernel_isa`` names the instruction-set path of sparseqa's 1x4 sparse kernels when they compute the
        sparse model's Linears (None when OpenVINO's own kernels do).
        """
        if self.amx and not sparse_kernel_isa:
            return (
                "On this CPU (AMX) OpenVINO decompresses the sparse int8 weights, so sparsity itself saves time on top "
                "of what the runtime and the lower precision give."
            )
        sources = ["the runtime (OpenVINO's kernels against PyTorch's)"]
        if self.avx512_bf16:
            sources.append("bf16, which this CPU computes natively (AVX512-BF16)")
        if self.avx512_vnni:
            sources.append("int8, through AVX-512 VNNI")
        if sparse_kernel_isa:
            story = (
                f"sparseqa's 1x4 block-sparse int8 kernels ({sparse_kernel_isa}) compute the sparse model's encoder "
                "Linears inside OpenVINO and skip its all-zero weight blocks, so the zeros themselves save time here "
                f"(the bench's `vs OpenVINO kernels` column measures how much), on top of {' and '.join(sources)}."
            )
        else:
            story = (
                "This CPU has no AMX, so OpenVINO runs the sparse model with dense kernels: the zeros themselves save "
                f"no time, and a speedup over dense PyTorch comes from {' and '.join(sources)}."
            )
        if not self.avx512_vnni:
            story += " Without VNNI, int8 gains little or nothing over fp32 here."
        return story

    def as_dict(self) -> dict:
        """Plain values for JSON headers."""
        return asdict(self) | {"sparse_weight_decompression": self.sparse_weight_decompression}


@functools.cache
def machine() -> Machine:
    """Read this machine's CPU once (``/proc/cpuinfo`` and OpenVINO's view of the CPU)."""
    flags: set[str] = set()
    cpu = platform.processor() or platform.machine()
    cores_by_package: set[tuple[str, str]] = set()
    physical_id = "0"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    cpu = value
                elif key == "flags":
                    flags.update(value.split())
                elif key == "physical id":
                    physical_id = value
                elif key == "core id":
                    cores_by_package.add((physical_id, value))
    except OSError:
        pass
    logical = os.cpu_count() or 1
    return Machine(
        cpu=cpu,
        logical_cores=logical,
        physical_cores=len(cores_by_package) or logical,
        avx512_vnni="avx512_vnni" in flags,
        avx512_bf16="avx512_bf16" in flags,
        amx="amx_int8" in flags or "amx_tile" in flags,
        openvino_default_precision=_openvino_default_precision(),
    )


def _openvino_default_precision() -> str:
    try:
        import openvino as ov

        hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    except Exception:  # OpenVINO missing or no CPU plugin: report it rather than fail a status panel
        return "unknown"
    # The hint is an ov.Type, whose str() is "<Type: 'float32'>"; its short type name is "f32", "bf16" or "f16".
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(name, name)


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour the numbers depend on."""
    versions = {}
    for package in ("torch", "transformers", "openvino", "optimum-intel", "nncf", "gradio"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
