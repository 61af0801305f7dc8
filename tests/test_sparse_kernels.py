"""The native block-sparse int8 kernels: every ISA path this CPU runs, for both block orientations (1x4: 1 output ×
4 inputs; 4x1: 4 outputs × 1 input), against the reference; the packer, the build cache and its fallback when the
build fails."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseqa import native
from sparseqa.blocks import ORIENTATIONS, zero_block_share
from sparseqa.sparse_kernels import (
    BlockCSR,
    SparseLinear,
    chain,
    numpy_linear,
    pack_bcsr,
    reference_linear,
    stack_bcsr,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cpu_isas() -> list[str]:
    """Builds the kernel library once per session (in the session's cache) and lists the ISA paths it runs here."""
    native.kernel_library()
    return native.cpu_isas()


@pytest.fixture(params=native.ISAS)
def isa(request: pytest.FixtureRequest, cpu_isas: list[str]) -> str:
    if request.param not in cpu_isas:
        pytest.skip(f"this CPU lacks {request.param}")
    return request.param


@pytest.fixture(params=ORIENTATIONS)
def orientation(request: pytest.FixtureRequest) -> str:
    return request.param


def sparse_weight(
    n: int, k: int, density: float, seed: int = 0, *, negative: bool = False, orientation: str = "1x4"
) -> np.ndarray:
    """A random (n, k) weight with ``density`` of its blocks of ``orientation`` nonzero."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((n, k)).astype(np.float32)
    if negative:
        weight = -np.abs(weight)
    if orientation == "1x4":
        keep = rng.random((n, k // 4)) < density
        return (weight.reshape(n, k // 4, 4) * keep[:, :, None]).reshape(n, k)
    keep = rng.random((n // 4, k)) < density
    return (weight.reshape(n // 4, 4, k) * keep[:, None, :]).reshape(n, k)


def activations(m: int, k: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((m, k)) * 3).astype(np.float32)


def assert_matches_reference(layer: SparseLinear, weights: BlockCSR, x: np.ndarray, threads: int = 2) -> np.ndarray:
    """The kernel equals the native reference exactly, and the reference the NumPy arithmetic to an ulp or so."""
    expected = reference_linear(weights, x)
    got = layer(x, threads)
    assert got.shape == (x.shape[0], weights.n)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(expected, numpy_linear(weights, x), rtol=1e-6, atol=1e-6 * max(1.0, np.abs(expected).max()))
    return got


@pytest.mark.parametrize("tokens", [1, 7, 16, 383, 384, 1000])
@pytest.mark.parametrize("density", [0.0, 0.2, 1.0])
def test_kernel_equals_reference_for_token_counts_and_densities(
    isa: str, orientation: str, tokens: int, density: float
) -> None:
    # 72 outputs and 100 inputs: neither a multiple of 16 nor of 8, so every tail path runs.
    weight = sparse_weight(72, 100, density, orientation=orientation)
    weights = pack_bcsr(weight, np.linspace(-1, 1, 72, dtype=np.float32), orientation)
    assert_matches_reference(SparseLinear(weights, isa), weights, activations(tokens, 100))


@pytest.mark.parametrize(("n", "k", "tokens"), [(3072, 768, 17), (768, 3072, 65), (4, 4, 3), (8, 1028, 40)])
def test_kernel_equals_reference_on_bert_and_odd_shapes(isa: str, orientation: str, n: int, k: int, tokens: int) -> None:
    weights = pack_bcsr(sparse_weight(n, k, 0.2, orientation=orientation), np.ones(n, np.float32), orientation)
    assert_matches_reference(SparseLinear(weights, isa), weights, activations(tokens, k))


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_thread_count_does_not_change_the_result(isa: str, orientation: str, threads: int) -> None:
    weights = pack_bcsr(sparse_weight(200, 64, 0.3, orientation=orientation), None, orientation)
    x = activations(300, 64)
    layer = SparseLinear(weights, isa)
    np.testing.assert_array_equal(layer(x, threads), reference_linear(weights, x))


def test_concurrent_calls_on_one_plan_each_get_their_own_result(isa: str, orientation: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    weights = pack_bcsr(sparse_weight(96, 128, 0.3, orientation=orientation), None, orientation)
    layer = SparseLinear(weights, isa)
    inputs = [activations(50 + 40 * i, 128, seed=i) for i in range(6)]
    with ThreadPoolExecutor(max_workers=3) as pool:  # ctypes releases the GIL: the calls really overlap
        results = list(pool.map(lambda pair: layer(pair[1], 1 + pair[0] % 2), enumerate(inputs)))
    for x, y in zip(inputs, results):
        np.testing.assert_array_equal(y, reference_linear(weights, x))


def test_output_row_without_blocks_is_its_bias_and_no_bias_means_zero(isa: str, orientation: str) -> None:
    weight = sparse_weight(40, 64, 0.5, orientation=orientation)
    weight[3] = 0.0
    weight[17] = 0.0
    weight[8:12] = 0.0  # an empty 4-output group of 4x1 blocks
    bias = np.arange(40, dtype=np.float32)
    with_bias = pack_bcsr(weight, bias, orientation)
    empty = (3, 4) if orientation == "1x4" else (2, 3)  # row (1x4) or row group (4x1) without blocks
    assert with_bias.row_ptr[empty[1]] == with_bias.row_ptr[empty[0]]
    y = assert_matches_reference(SparseLinear(with_bias, isa), with_bias, activations(20, 64))
    assert np.all(y[:, 3] == 3.0) and np.all(y[:, 17] == 17.0) and np.all(y[:, 8:12] == bias[8:12])
    without_bias = pack_bcsr(weight, None, orientation)
    y = assert_matches_reference(SparseLinear(without_bias, isa), without_bias, activations(20, 64))
    assert np.all(y[:, 3] == 0.0)


def test_negative_weights_and_the_int8_extremes(isa: str, orientation: str) -> None:
    negative = pack_bcsr(sparse_weight(48, 64, 0.4, negative=True, orientation=orientation), None, orientation)
    assert negative.values.min() == -127
    assert_matches_reference(SparseLinear(negative, isa), negative, activations(33, 64))
    # -128 is outside what pack_bcsr writes but a valid int8: the AVX2 sign trick must handle it too.
    n, k = 24, 32
    rows, columns = (n, k // 4) if orientation == "1x4" else (n // 4, k)  # every block stored
    rng = np.random.default_rng(5)
    values = rng.choice(np.array([-128, -127, 127, -1, 0, 1], np.int8), size=(rows * columns, 4))
    extreme = BlockCSR(
        n=n,
        k=k,
        row_ptr=np.arange(0, rows * columns + 1, columns, dtype=np.int32),
        block_col=np.tile(np.arange(columns, dtype=np.int32), rows),
        values=values,
        scales=np.full(n, 0.01, np.float32),
        bias=None,
        orientation=orientation,
    )
    x = np.where(rng.random((19, k)) < 0.5, -1.0, 1.0).astype(np.float32)  # every activation quantizes to +-127
    assert_matches_reference(SparseLinear(extreme, isa), extreme, x)


def test_activations_at_the_quantization_limits(isa: str, orientation: str) -> None:
    k = 64
    weights = pack_bcsr(sparse_weight(36, k, 0.5, orientation=orientation), np.full(36, 0.5, np.float32), orientation)
    ties = np.zeros(k, np.float32)
    ties[0] = 127.0  # scale 1: the others are exact halves, rounded half to even
    ties[1:9] = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5]
    x = np.stack(
        [
            np.full(k, 2.5, np.float32),  # equal magnitudes: all +127
            np.where(np.arange(k) % 2, -7.0, 7.0).astype(np.float32),  # equal magnitudes, both signs
            np.zeros(k, np.float32),  # scale 0: the output is the bias
            np.full(k, 1e-35, np.float32),  # below the quantization floor: zeros too
            ties,
            np.full(k, 1e30, np.float32),  # huge but finite outputs
        ]
    )
    y = assert_matches_reference(SparseLinear(weights, isa), weights, x)
    assert np.all(y[2] == 0.5) and np.all(y[3] == 0.5)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40).map(lambda v: 4 * v),
    k=st.integers(1, 40).map(lambda v: 4 * v),
    tokens=st.integers(1, 150),
    density=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    seed=st.integers(0, 2**16),
    bias=st.booleans(),
    orientation=st.sampled_from(ORIENTATIONS),
)
def test_fuzz_every_isa_equals_reference(
    cpu_isas: list[str], n: int, k: int, tokens: int, density: float, seed: int, bias: bool, orientation: str
) -> None:
    weight = sparse_weight(n, k, density, seed, orientation=orientation)
    weights = pack_bcsr(weight, np.ones(n, np.float32) if bias else None, orientation)
    x = activations(tokens, k, seed + 1)
    expected = reference_linear(weights, x)
    for name in cpu_isas:
        np.testing.assert_array_equal(SparseLinear(weights, name)(x, 2), expected)


def test_task_api_in_any_order_equals_sq_linear(isa: str, orientation: str) -> None:
    """What a host thread pool (the OpenVINO op) does: quantize tasks, then compute tasks, in any order."""
    from sparseqa.sparse_kernels import _library

    weight = sparse_weight(100, 96, 0.3, orientation=orientation)
    weights = pack_bcsr(weight, np.ones(100, np.float32), orientation)
    layer = SparseLinear(weights, isa)
    x = activations(130, 96)
    library = _library()
    plan = ctypes.c_void_p(layer._plan)
    library.sq_workspace_size.restype = ctypes.c_size_t
    library.sq_quantize_task_count.restype = library.sq_compute_task_count.restype = ctypes.c_int64
    for function in ("sq_workspace_size", "sq_quantize_task_count", "sq_compute_task_count"):
        getattr(library, function).argtypes = [ctypes.c_void_p, ctypes.c_int64]
    workspace = np.zeros(library.sq_workspace_size(plan, 130) + 64, np.uint8)
    aligned = workspace.ctypes.data + (-workspace.ctypes.data) % 64
    y = np.empty((130, 100), np.float32)
    order = np.random.default_rng(0)
    for i in order.permutation(library.sq_quantize_task_count(plan, 130)):
        assert library.sq_quantize_task(plan, x.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(130),
                                         ctypes.c_void_p(aligned), ctypes.c_int64(int(i))) == 0
    for i in order.permutation(library.sq_compute_task_count(plan, 130)):
        assert library.sq_compute_task(plan, ctypes.c_void_p(aligned), ctypes.c_int64(130),
                                       y.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(int(i))) == 0
    np.testing.assert_array_equal(y, layer(x, 1))


@pytest.mark.parametrize(("part_n", "tokens"), [(16, 1), (32, 70), (48, 130), (768, 65)])
def test_stacked_linears_split_into_their_own_outputs_equal_each_alone(
    isa: str, orientation: str, part_n: int, tokens: int
) -> None:
    # Three Linears of one input (query, key, value) as one plan: each part is what its Linear gives alone.
    k = 96
    alone = [
        pack_bcsr(sparse_weight(part_n, k, 0.3, seed=i, orientation=orientation), np.full(part_n, i, np.float32), orientation)
        for i in range(3)
    ]
    stacked = SparseLinear(stack_bcsr(alone), isa)
    x = activations(tokens, k)
    for threads in (1, 2):
        outputs = stacked.parts(x, 3, threads)
        assert [out.shape for out in outputs] == [(tokens, part_n)] * 3
        for out, weights in zip(outputs, alone):
            np.testing.assert_array_equal(out, reference_linear(weights, x))
    np.testing.assert_array_equal(np.concatenate(outputs, axis=1), stacked(x, 2))


@pytest.mark.parametrize("second_orientation", ORIENTATIONS)
@pytest.mark.parametrize(("hidden", "tokens"), [(8, 1), (260, 70), (516, 130), (3072, 65)])
def test_chain_equals_the_two_linears_one_after_the_other_with_the_step_between(
    isa: str, orientation: str, second_orientation: str, hidden: int, tokens: int
) -> None:
    # A feed-forward block: the first Linear's outputs, changed elementwise, are the second's inputs, and the chain
    # hands them over in the kernels' own layout; the result is bit for bit that of three separate steps.
    k, n = 64, 36
    first = SparseLinear(pack_bcsr(sparse_weight(hidden, k, 0.3, seed=1, orientation=orientation),
                                   np.linspace(-2, 2, hidden, dtype=np.float32), orientation), isa)
    second_weights = sparse_weight(n, hidden, 0.3, seed=2, negative=True, orientation=second_orientation)
    second = SparseLinear(pack_bcsr(second_weights, np.ones(n, np.float32), second_orientation), isa)
    x = activations(tokens, k)
    x[tokens // 2] = 0.0  # a token whose first outputs are the bias alone

    def step(tile: np.ndarray, row_begin: int) -> None:
        # Depends on the output, so a tile handed to the wrong rows would show.
        rows = np.arange(row_begin, row_begin + tile.shape[0], dtype=np.float32)[:, None]
        np.multiply(np.maximum(tile, 0), 1 + rows / hidden, out=tile)

    hidden_out = first(x, 1)
    stepped = np.maximum(hidden_out, 0) * (1 + np.arange(hidden, dtype=np.float32) / hidden)
    for threads in (1, 2):
        np.testing.assert_array_equal(chain(first, second, x, threads, step), second(stepped, threads))
        np.testing.assert_array_equal(chain(first, second, x, threads), second(hidden_out, threads))


def test_chain_refuses_a_second_linear_of_other_inputs(cpu_isas: list[str]) -> None:
    first = SparseLinear(pack_bcsr(sparse_weight(32, 16, 0.5), None), cpu_isas[0])
    second = SparseLinear(pack_bcsr(sparse_weight(8, 48, 0.5), None), cpu_isas[0])
    with pytest.raises(ValueError, match="takes 48 inputs, not the first's 32 outputs"):
        chain(first, second, activations(3, 16))


def test_parts_that_are_not_whole_multiples_of_16_are_refused(cpu_isas: list[str]) -> None:
    layer = SparseLinear(pack_bcsr(sparse_weight(72, 32, 0.5), None), cpu_isas[0])
    with pytest.raises(ValueError, match="do not split into 3 parts"):
        layer.parts(activations(5, 32), 3)  # 24 outputs each
    with pytest.raises(ValueError, match="do not split into 5 parts"):
        layer.parts(activations(5, 32), 5)
    assert [out.shape for out in layer.parts(activations(5, 32), 1)] == [(5, 72)]


def test_stack_bcsr_keeps_each_part_and_refuses_mixed_ones() -> None:
    first = pack_bcsr(sparse_weight(8, 16, 0.5, seed=1), np.ones(8, np.float32))
    second = pack_bcsr(sparse_weight(4, 16, 0.5, seed=2), None)
    stacked = stack_bcsr([first, second])
    np.testing.assert_array_equal(stacked.int8_weights(), np.concatenate([first.int8_weights(), second.int8_weights()]))
    np.testing.assert_array_equal(stacked.bias, np.concatenate([np.ones(8), np.zeros(4)]).astype(np.float32))
    assert stacked.blocks == first.blocks + second.blocks
    with pytest.raises(ValueError, match="same inputs and block orientation"):
        stack_bcsr([first, pack_bcsr(sparse_weight(8, 16, 0.5, orientation="4x1"), None, "4x1")])


def test_results_do_not_depend_on_output_alignment(isa: str, orientation: str) -> None:
    weights = pack_bcsr(sparse_weight(64, 32, 0.5, orientation=orientation), None, orientation)
    x = activations(70, 32)
    expected = reference_linear(weights, x)
    assert SparseLinear(weights, isa)(x).ctypes.data % 64 == 0
    for shift in (1, 4, 15):  # floats: 4, 16 and 60 bytes past a line
        buffer = np.empty(70 * 64 + 64, np.float32)
        start = (-buffer.ctypes.data % 64) // 4 + shift
        out = buffer[start : start + 70 * 64].reshape(70, 64)
        SparseLinear(weights, isa)(x, 2, out)
        np.testing.assert_array_equal(out, expected)


def test_pack_bcsr_keeps_nonzero_blocks_and_per_row_scales() -> None:
    weight = sparse_weight(64, 128, 0.25, seed=3)
    weight[5] = 0.0
    packed = pack_bcsr(weight)
    nonzero_blocks = np.any(weight.reshape(64, 32, 4) != 0, axis=2)
    assert packed.blocks == nonzero_blocks.sum()
    assert np.all(np.diff(packed.row_ptr) == nonzero_blocks.sum(axis=1))
    assert np.all(np.abs(packed.values) <= 127) and np.all(packed.values.any(axis=1))
    for row in range(64):
        columns = packed.block_col[packed.row_ptr[row] : packed.row_ptr[row + 1]]
        assert np.all(np.diff(columns) > 0)
    # Per-row symmetric int8: each weight within half a step of its row's scale.
    assert np.all(np.abs(packed.dequantized() - weight) <= packed.scales[:, None] * (0.5 + 1e-6))
    assert zero_block_share(weight, "1x4") == pytest.approx(1 - nonzero_blocks.mean())


def test_pack_bcsr_keeps_nonzero_4x1_blocks_by_output_group() -> None:
    weight = sparse_weight(64, 40, 0.25, seed=3, orientation="4x1")
    weight[8:12] = 0.0
    packed = pack_bcsr(weight, None, "4x1")
    nonzero_blocks = np.any(weight.reshape(16, 4, 40) != 0, axis=1)  # [group, input]
    assert packed.block_rows == 4 and packed.blocks == nonzero_blocks.sum()
    assert np.all(np.diff(packed.row_ptr) == nonzero_blocks.sum(axis=1)) and len(packed.row_ptr) == 17
    assert packed.row_ptr[3] == packed.row_ptr[2]
    # Group 5's first block: outputs 20..23 at one input, in output order.
    input_index = packed.block_col[packed.row_ptr[5]]
    quantized = np.rint(weight[20:24, input_index] / packed.scales[20:24])
    assert packed.values[packed.row_ptr[5]].tolist() == quantized.astype(int).tolist()
    assert np.all(np.abs(packed.dequantized() - weight) <= packed.scales[:, None] * (0.5 + 1e-6))
    expected = np.clip(np.rint(weight / packed.scales[:, None]), -127, 127)
    np.testing.assert_array_equal(packed.int8_weights(), expected)


def test_pack_bcsr_rejects_shapes_the_kernels_cannot_take() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        pack_bcsr(np.ones((4, 6)))
    with pytest.raises(ValueError, match=r"outputs \(6\) must be a multiple of 4 for 4x1"):
        pack_bcsr(np.ones((6, 8)), None, "4x1")
    with pytest.raises(ValueError, match="choose 1x4 or 4x1"):
        pack_bcsr(np.ones((4, 8)), None, "2x2")
    with pytest.raises(ValueError, match="2-D"):
        pack_bcsr(np.ones(8))
    with pytest.raises(ValueError, match="bias"):
        pack_bcsr(np.ones((4, 8)), np.ones(3))


def test_unknown_isa_is_a_one_line_error(cpu_isas: list[str]) -> None:
    with pytest.raises(ValueError, match="unknown kernel ISA 'sse9'"):
        native.chosen_isa("sse9")
    assert native.chosen_isa() == cpu_isas[0]
    assert native.chosen_isa("scalar") == "scalar"


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


def test_isa_the_cpu_lacks_is_a_one_line_error(cpu_isas: list[str]) -> None:
    # SPARSEQA_KERNEL_MAX_ISA makes this CPU look like an AVX2-only one, so the check runs on any machine.
    result = run_python(
        """
        import numpy as np
        from sparseqa import native
        from sparseqa.sparse_kernels import SparseLinear, pack_bcsr
        print(native.cpu_isas())
        for ask in (lambda: native.chosen_isa("avx512vnni"), lambda: native.chosen_isa(),
                    lambda: SparseLinear(pack_bcsr(np.ones((4, 8))), "avxvnni")):
            try:
                ask()
            except ValueError as error:
                print(error)
        """,
        # A cap already below AVX2 (a run emulating a lesser CPU) stays in force.
        SPARSEQA_KERNEL_MAX_ISA="scalar" if os.environ.get("SPARSEQA_KERNEL_MAX_ISA") == "scalar" else "avx2",
        SPARSEQA_KERNEL_ISA="avx512vnni",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = [isa for isa in cpu_isas if isa in ("avx2", "scalar")]
    assert lines[0] == repr(expected)
    assert lines[1:] == [
        f"this CPU lacks avx512vnni: it runs {', '.join(expected)}",
        f"this CPU lacks avx512vnni: it runs {', '.join(expected)}",
        f"this CPU lacks avxvnni: it runs {', '.join(expected)}",
    ]


def test_failed_build_is_one_line_remembered_for_the_process(tmp_path: Path) -> None:
    result = run_python(
        """
        from sparseqa import native
        for attempt in range(2):
            try:
                native.kernel_library()
            except native.NativeUnavailable as error:
                print(error)
        """,
        CXX="/bin/false",
        SPARSEQA_CACHE=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    reasons = result.stdout.splitlines()
    assert len(reasons) == 2 and reasons[0] == reasons[1]
    assert reasons[0].startswith("sparse kernel build failed: ")
    assert result.stderr.count("building sparseqa kernels (once)") == 1  # not retried on the second call
    assert not [path for path in (tmp_path / "kernels").iterdir() if path.is_dir()]  # nothing half-built published


def test_missing_compiler_is_one_line(tmp_path: Path) -> None:
    result = run_python(
        """
        from sparseqa import native
        try:
            native.kernel_library()
        except native.NativeUnavailable as error:
            print(error)
        """,
        CXX=str(tmp_path / "no-such-compiler"),
        SPARSEQA_CACHE=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"the C++ compiler {tmp_path / 'no-such-compiler'} (CXX) was not found: install it or fix CXX"
    ]


def test_build_key_names_sources_and_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "kernels"
    shutil.copytree(native.KERNEL_SOURCES, sources)
    monkeypatch.setattr(native, "KERNEL_SOURCES", sources)
    original = native.build_key()
    assert native.build_key() == original
    kernel = sources / "src" / "kernel_avx2_4x1.cpp"
    kernel.write_text(kernel.read_text() + "\n// changed\n")
    changed = native.build_key()
    assert changed != original
    (sources / "openvino").mkdir(exist_ok=True)
    (sources / "openvino" / "extra.cpp").write_text("// the OpenVINO op's sources count too\n")
    assert native.build_key() != changed
    monkeypatch.setenv("CXX", "/bin/false")
    assert native.build_key() != changed


def test_built_library_is_cached_under_its_key(cpu_isas: list[str], sparseqa_cache: Path) -> None:
    library = native.kernel_library()
    assert library.parent == sparseqa_cache / "kernels" / native.build_key()
    assert library.is_file()
