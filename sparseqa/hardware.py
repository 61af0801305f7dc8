"""What this machine is: CPU, cores, the instruction sets that matter for BERT inference, and what OpenVINO uses."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass
from importlib import metadata


@dataclass(frozen=True)
class Machine:
    """The CPU facts that decide which precision OpenVINO picks and which kernel candidates exist here."""

    cpu: str
    logical_cores: int
    physical_cores: int
    avx512_vnni: bool
    avx512_bf16: bool
    amx: bool
    openvino_default_precision: str
    flags: tuple[str, ...] = ()  # every flag /proc/cpuinfo lists, for keys of what was measured on this CPU

    @property
    def sparse_weight_decompression(self) -> bool:
        """Whether OpenVINO can decompress sparse int8 weights here (it needs AMX); whether that is faster is
        measured, not assumed (sparseqa.choice)."""
        return self.amx

    def isa_flags(self) -> str:
        """The detected instruction sets, for one line of a header."""
        names = [("AVX-512 VNNI", self.avx512_vnni), ("AVX512-BF16", self.avx512_bf16), ("AMX", self.amx)]
        return ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in names)

    def as_dict(self) -> dict:
        """Plain values for JSON headers."""
        facts = {name: value for name, value in asdict(self).items() if name != "flags"}
        return facts | {"sparse_weight_decompression": self.sparse_weight_decompression}


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
        flags=tuple(sorted(flags)),
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
