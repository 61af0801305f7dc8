"""What the page and the benchmark read about the CPU."""

from __future__ import annotations

from sparseqa.hardware import Machine, machine


def test_openvino_default_precision_is_a_precision_name():
    assert machine().openvino_default_precision in ("fp32", "bf16", "fp16")


def test_the_machine_keeps_its_flags_out_of_json_headers():
    cpu = machine()
    assert isinstance(cpu.flags, tuple) and cpu.flags == tuple(sorted(cpu.flags))
    assert cpu.amx == any(flag in cpu.flags for flag in ("amx_int8", "amx_tile"))
    assert "flags" not in cpu.as_dict()
    faked = Machine("Xeon", 2, 2, True, True, True, "bf16", flags=("amx_int8",))
    assert faked.as_dict()["sparse_weight_decompression"] is True
