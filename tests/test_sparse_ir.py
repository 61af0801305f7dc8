"""sparseqa's kernels inside OpenVINO: the custom op in small models, the graph pass on the tiny sparse model, and
load_engine's kernel choice, fallback and IR cache key."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sparseqa import native
from sparseqa.blocks import BLOCK, ORIENTATIONS
from sparseqa.hardware import machine
from sparseqa.sparse_kernels import numpy_linear, pack_bcsr
from sparseqa.sparse_ir import OP_TYPE, kernel_orientation, sparsify

QUESTION = "Where did the probe land?"
PASSAGE = "The probe landed on the moon in 1969 after a long trip through space."


@pytest.fixture(scope="module")
def extension() -> Path:
    """The OpenVINO extension, built once into the session's cache (CI has a compiler: a failed build fails here)."""
    return native.extension_library()


@pytest.fixture(scope="module")
def core(extension):
    import openvino as ov

    core = ov.Core()
    core.add_extension(str(extension))
    return core


def sparse_int8_weight(
    rng: np.random.Generator, n: int, k: int, density: float = 0.2, orientation: str = "1x4"
) -> np.ndarray:
    """fp32 weights [n, k] with ``1 - density`` of their blocks of ``orientation`` zero, each row exactly
    representable as int8 times its per-row scale (max |q| = 127), so the op's weight quantization is lossless and
    only activations round."""
    quantized = rng.integers(-127, 128, size=(n, k)).astype(np.float32)
    if orientation == "1x4":
        keep = rng.random((n, k // BLOCK)) < density
        keep[:, 0] = True  # every row keeps a block, so its peak can be 127
        quantized *= np.repeat(keep, BLOCK, axis=1)
    else:
        keep = rng.random((n // BLOCK, k)) < density
        keep[:, 0] = True
        quantized *= np.repeat(keep, BLOCK, axis=0)
    rows = np.arange(n)
    quantized[rows, np.argmax(quantized != 0, axis=1)] = 127
    quantized[n // 2] = 0  # one output row with no nonzero block
    return quantized * rng.uniform(0.001, 0.02, size=(n, 1)).astype(np.float32)


def linear_model(layers: list[tuple[np.ndarray, np.ndarray]], k: int, gelu: bool = True):
    """x [?, ?, k] → (MatMul(W^T) + b → GELU) per layer, the last without GELU (or with, for a single layer): the
    shape of an encoder's Linears."""
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([-1, -1, k], np.float32, name="x")
    out = x
    for index, (weight, bias) in enumerate(layers):
        out = ops.add(ops.matmul(out, ops.constant(weight), False, True), ops.constant(bias))
        if gelu and (index < len(layers) - 1 or len(layers) == 1):
            out = ops.gelu(out, "erf")
    return ov.Model([out], [x], "linears")


def run(core, model, x: np.ndarray) -> np.ndarray:
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "2"})
    return compiled.create_infer_request().infer({0: x})[compiled.output(0)]


def op_count(model) -> int:
    return sum(node.get_type_name() == OP_TYPE for node in model.get_ordered_ops())


def op_blocks(model) -> list[str]:
    """The block orientation of each sparseqa op in ``model``, in graph order."""
    return [node.get_attributes()["blocks"] for node in model.get_ordered_ops() if node.get_type_name() == OP_TYPE]


def op_then_outputs(model) -> list[int]:
    """The outputs of the second Linear each sparseqa op computes after its first (0: one Linear), in graph order."""
    return [
        int(node.get_attributes().get("then_outputs", 0)) for node in model.get_ordered_ops() if node.get_type_name() == OP_TYPE
    ]


def op_parts(model) -> list[int]:
    """How many Linears each sparseqa op in ``model`` stands for (its outputs), in graph order."""
    return [int(node.get_attributes().get("parts", 1)) for node in model.get_ordered_ops() if node.get_type_name() == OP_TYPE]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_linears_of_one_input_become_one_op_with_an_output_each(core, extension, orientation):
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(12)
    x = ops.parameter([-1, -1, 64], np.float32, name="x")
    # Query, key and value (32 outputs each) read x, and so do a wider Linear and one with a GELU: those stay alone.
    shapes = [(32, False), (32, False), (48, False), (32, False), (32, True)]
    layers = [(sparse_int8_weight(rng, n, 64, orientation=orientation), rng.normal(size=n).astype(np.float32)) for n, _ in shapes]
    outputs = []
    for (weight, bias), (_, gelu) in zip(layers, shapes):
        out = ops.add(ops.matmul(x, ops.constant(weight), False, True), ops.constant(bias))
        outputs.append(ops.gelu(out, "erf") if gelu else out)
    model = ov.Model(outputs, [x], "shared input")
    assert list(sparsify(model, extension).values()) == [orientation] * 5
    assert sorted(op_parts(model)) == [1, 1, 3] and op_blocks(model) == [orientation] * 3
    inputs = rng.normal(size=(1, 70, 64)).astype(np.float32)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "2"})
    results = compiled.create_infer_request().infer({0: inputs})
    for index in range(5):  # the three parts each give their own Linear's result
        weight, bias = layers[index]
        expected = numpy_linear(pack_bcsr(weight, bias, orientation), inputs.reshape(-1, 64)).reshape(1, 70, -1)
        if shapes[index][1]:
            expected = 0.5 * expected * (1 + np.vectorize(math.erf)(expected.astype(np.float64) / math.sqrt(2)))
        np.testing.assert_allclose(results[compiled.output(index)], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (2, 130), (1, 384)])
def test_op_computes_what_the_kernel_reference_computes(core, extension, shape, orientation):
    rng = np.random.default_rng(sum(shape))
    weight = sparse_int8_weight(rng, 48, 64, orientation=orientation)
    bias = rng.normal(size=48).astype(np.float32)
    x = rng.normal(size=shape + (64,)).astype(np.float32)
    x[..., 3] = 40.0  # one large activation per token: the quantization limit is reached
    expected = numpy_linear(pack_bcsr(weight, bias, orientation), x.reshape(-1, 64)).reshape(shape + (48,))
    model = linear_model([(weight, bias)], 64, gelu=False)
    assert list(sparsify(model, extension).values()) == [orientation]
    assert op_blocks(model) == [orientation]
    np.testing.assert_allclose(run(core, model, x), expected, rtol=1e-5, atol=1e-5)
    # The GELU after it is computed inside the op, in erf form (to within its rational erf's 1.1e-6).
    fused = linear_model([(weight, bias)], 64, gelu=True)
    assert len(sparsify(fused, extension)) == 1
    assert [node.get_attributes()["activation"] for node in fused.get_ordered_ops() if node.get_type_name() == OP_TYPE] == ["gelu"]
    assert not any(node.get_type_name() == "Gelu" for node in fused.get_ordered_ops())
    exact_gelu = 0.5 * expected * (1 + np.vectorize(math.erf)(expected.astype(np.float64) / math.sqrt(2)))
    np.testing.assert_allclose(run(core, fused, x), exact_gelu, rtol=1e-5, atol=2e-6)
    # So is a per-feature constant Multiply after the GELU (NNCF's SmoothQuant scale for the next Linear).
    from openvino import opset13 as ops

    scale = rng.uniform(0.5, 2.0, size=48).astype(np.float32)
    scaled = linear_model([(weight, bias)], 64, gelu=True)
    result = scaled.get_results()[0]
    result.input(0).replace_source_output(ops.multiply(result.input_value(0), ops.constant(scale.reshape(1, 1, 48))).output(0))
    assert len(sparsify(scaled, extension)) == 1
    assert not any(node.get_type_name() in ("Gelu", "Multiply") for node in scaled.get_ordered_ops())
    np.testing.assert_allclose(run(core, scaled, x), exact_gelu * scale, rtol=1e-5, atol=4e-6)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("isa", ["avx512vnni", "avxvnni", "avx2", "scalar"])
def test_fused_gelu_of_every_isa_path_matches_erf_gelu_including_vector_tails(
    core, extension, isa, orientation, monkeypatch
):
    if isa not in native.cpu_isas():
        pytest.skip(f"this CPU lacks {isa} (it runs {', '.join(native.cpu_isas())})")
    # The op picks its GELU by the kernel path: 16 lanes, 8 lanes or one. 44 outputs in row chunks of 16 leave a
    # 12-output tail (a masked AVX-512 vector; 8 AVX2 lanes and 4 scalar ones).
    monkeypatch.setenv("SPARSEQA_KERNEL_ISA", isa)
    rng = np.random.default_rng(11)
    weight = sparse_int8_weight(rng, 44, 64, orientation=orientation)
    bias = rng.normal(size=44).astype(np.float32)
    x = (rng.normal(size=(1, 70, 64)) * 3).astype(np.float32)
    expected = numpy_linear(pack_bcsr(weight, bias, orientation), x.reshape(-1, 64)).reshape(1, 70, 44)
    assert np.abs(expected).max() > 9  # far into both tails of erf
    fused = linear_model([(weight, bias)], 64, gelu=True)
    assert len(sparsify(fused, extension)) == 1
    exact_gelu = 0.5 * expected * (1 + np.vectorize(math.erf)(expected.astype(np.float64) / math.sqrt(2)))
    np.testing.assert_allclose(run(core, fused, x), exact_gelu, rtol=1e-5, atol=2e-6)


def test_op_reads_a_weights_blob_at_any_byte_of_the_ir_file(core, extension, tmp_path):
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(5)
    weight = sparse_int8_weight(rng, 24, 32)
    bias = rng.normal(size=24).astype(np.float32)
    x = ops.parameter([-1, 32], np.float32, name="x")
    # A 3-byte constant saved before the op's: the .bin file packs constants back to back, so the blob starts at
    # byte 3 of it.
    odd = ops.convert(ops.constant(np.arange(3, dtype=np.uint8)), ov.Type.f32)
    linear = ops.add(ops.matmul(x, ops.constant(weight), False, True), ops.constant(bias))
    model = ov.Model([linear, odd], [x])
    assert len(sparsify(model, extension)) == 1
    ov.save_model(model, tmp_path / "m.xml", compress_to_fp16=False)
    saved = core.read_model(tmp_path / "m.xml")
    blob = next(node for node in saved.get_ordered_ops() if node.get_type_name() == "Constant" and node.get_output_shape(0) != [3])
    assert blob.get_data().ctypes.data % 4 != 0
    inputs = rng.normal(size=(9, 32)).astype(np.float32)
    compiled = core.compile_model(saved, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    expected = numpy_linear(pack_bcsr(weight, bias), inputs)
    np.testing.assert_allclose(compiled({0: inputs})[compiled.output(0)], expected, rtol=1e-5, atol=1e-5)


def test_op_inside_a_small_model_stays_close_to_the_same_model_without_it(core, extension):
    rng = np.random.default_rng(7)
    # Each Linear on the kernels of its own block orientation, read from its weights.
    sizes = [(64, 32, "4x1"), (32, 64, "1x4"), (16, 32, "4x1")]
    layers = [
        (sparse_int8_weight(rng, n, k, orientation=orientation), rng.normal(scale=0.1, size=n).astype(np.float32))
        for n, k, orientation in sizes
    ]
    dense = linear_model(layers, 32)
    sparse = linear_model(layers, 32)
    assert list(sparsify(sparse, extension).values()) == ["4x1", "1x4", "4x1"] and op_count(sparse) == 2
    # The last two (GELU between, none after) are one op; the first, whose GELU feeds a Linear with a GELU, alone.
    assert op_blocks(sparse) == ["4x1", "1x4"] and op_then_outputs(sparse) == [0, 16]
    assert not any(node.get_type_name() == "Gelu" for node in sparse.get_ordered_ops())
    x = rng.normal(size=(2, 50, 32)).astype(np.float32)
    expected, actual = run(core, dense, x), run(core, sparse, x)
    # The weights are exact in int8; only activations are rounded, to 1/254 of each token's largest |x| per element.
    # Those errors are independent across a row's inputs and partly cancel: over three layers the outputs stay
    # within 2% of their own range, well outside what a wrong block, scale or bias would give.
    assert np.abs(actual - expected).max() <= 0.02 * np.abs(expected).max()
    cosine = float(actual.ravel() @ expected.ravel() / np.linalg.norm(actual) / np.linalg.norm(expected))
    assert cosine > 0.9995


@pytest.mark.parametrize("second", ORIENTATIONS)
@pytest.mark.parametrize("first", ORIENTATIONS)
def test_feed_forward_as_one_op_gives_bit_for_bit_the_two_ops_result(core, extension, first, second):
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(21)
    intermediate = (sparse_int8_weight(rng, 96, 64, orientation=first), rng.normal(size=96).astype(np.float32))
    output = (sparse_int8_weight(rng, 40, 96, orientation=second), rng.normal(size=40).astype(np.float32))
    scale = rng.uniform(0.5, 2.0, size=96).astype(np.float32)

    def feed_forward():
        # As NNCF leaves BERT's: Linear, GELU, a per-feature SmoothQuant scale, Linear.
        x = ops.parameter([-1, -1, 64], np.float32, name="x")
        hidden = ops.gelu(ops.add(ops.matmul(x, ops.constant(intermediate[0]), False, True), ops.constant(intermediate[1])), "erf")
        hidden = ops.multiply(hidden, ops.constant(scale))
        y = ops.add(ops.matmul(hidden, ops.constant(output[0]), False, True), ops.constant(output[1]))
        return ov.Model([y], [x], "feed-forward")

    chained, separate, dense = feed_forward(), feed_forward(), feed_forward()
    assert list(sparsify(chained, extension).values()) == [first, second]
    assert op_count(chained) == 1 and op_then_outputs(chained) == [40]
    assert list(sparsify(separate, extension, chain=False).values()) == [first, second] and op_count(separate) == 2
    x = rng.normal(size=(1, 150, 64)).astype(np.float32)  # three token blocks, the last one partly full
    one, two = run(core, chained, x), run(core, separate, x)
    np.testing.assert_array_equal(one, two)
    expected = run(core, dense, x)
    assert np.abs(one - expected).max() <= 0.02 * np.abs(expected).max()


def test_a_gelu_output_read_twice_is_not_chained(core, extension):
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(22)
    weights = [sparse_int8_weight(rng, 32, 32, orientation="4x1") for _ in range(2)]
    x = ops.parameter([-1, 32], np.float32, name="x")
    hidden = ops.gelu(ops.matmul(x, ops.constant(weights[0]), False, True), "erf")
    y = ops.matmul(hidden, ops.constant(weights[1]), False, True)
    model = ov.Model([y, hidden], [x], "hidden also a result")
    assert len(sparsify(model, extension)) == 2
    assert op_count(model) == 2 and op_then_outputs(model) == [0, 0]


def test_pass_leaves_dense_and_non_multiple_of_4_matmuls_to_openvino(extension):
    rng = np.random.default_rng(3)
    dense_weight = rng.normal(size=(16, 32)).astype(np.float32)
    model = linear_model([(dense_weight, np.zeros(16, np.float32))], 32)
    assert sparsify(model, extension) == {}
    odd = linear_model([(np.zeros((8, 30), np.float32), np.zeros(8, np.float32))], 30)
    assert sparsify(odd, extension) == {}


def test_orientation_is_read_per_linear_from_its_zero_blocks():
    rng = np.random.default_rng(4)
    assert kernel_orientation(sparse_int8_weight(rng, 64, 64, orientation="4x1")) == "4x1"
    assert kernel_orientation(sparse_int8_weight(rng, 64, 64, orientation="1x4")) == "1x4"
    scattered = rng.normal(size=(64, 64)) * (rng.random((64, 64)) < 0.2)  # 80% zeros, no blocks
    assert kernel_orientation(scattered) is None
    # 4x1 blocks need whole 4-output groups: 62 outputs leave it to 1x4 or to OpenVINO.
    assert kernel_orientation(sparse_int8_weight(rng, 64, 64, orientation="4x1")[:62]) is None


def encoder_linears(core, ir_xml: Path) -> set[str]:
    model = core.read_model(ir_xml)
    return {
        node.get_friendly_name()
        for node in model.get_ordered_ops()
        if node.get_type_name() == "MatMul" and ".encoder." in node.get_friendly_name() and "linear" in node.get_friendly_name()
    }


def tiny_irs(model: Path) -> dict[str, Path]:
    from sparseqa.models import resolve
    from sparseqa.runtimes import _load_tokenizer, cached_ir

    local = resolve(str(model))
    tokenizer = _load_tokenizer(local)
    return {
        precision: cached_ir(local, tokenizer, quantized=precision == "int8", calibration_samples=20) / "openvino_model.xml"
        for precision in ("fp32", "int8")
    }


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_pass_replaces_exactly_the_encoder_linears_of_the_tiny_sparse_model(
    core, extension, precision, orientation, request
):
    from sparseqa.sparse_ir import sparsify_ir

    source = tiny_irs(request.getfixturevalue(f"tiny_sparse_model_{orientation}"))[precision]
    linears = encoder_linears(core, source)
    assert len(linears) == 2 * 6  # 2 layers × (query, key, value, attention output, intermediate, output)
    target = source.parent.parent / f"sparse-pass-{precision}-{orientation}" / "openvino_model.xml"
    target.parent.mkdir(exist_ok=True)
    replaced = sparsify_ir(source, target, extension)
    assert set(replaced) == linears and set(replaced.values()) == {orientation}
    model = core.read_model(target)
    # Per layer: query, key and value as one op with an output each, the attention output, then intermediate and
    # output as one op.
    assert op_count(model) == 2 * 3 and set(op_blocks(model)) == {orientation}
    assert sorted(op_parts(model)) == [1] * 4 + [3] * 2
    assert sorted(op_then_outputs(model)) == [0] * 4 + [32] * 2
    assert not encoder_linears(core, target)
    remaining = [node.get_friendly_name() for node in model.get_ordered_ops() if node.get_type_name() == "MatMul"]
    assert any("qa_outputs" in name for name in remaining)  # the dense QA head stays with OpenVINO
    if precision == "int8":
        kinds = {node.get_type_name() for node in model.get_ordered_ops()}
        assert "FakeQuantize" in kinds  # attention stays int8 on OpenVINO
        # Outside attention OpenVINO keeps fp32 even where its default precision is bf16; attention may go lower.
        compiled = core.compile_model(target, "CPU", {"INFERENCE_NUM_THREADS": "1"})
        runtime = [(node.get_rt_info()["layerType"].astype(str), node.get_rt_info()["runtimePrecision"].astype(str))
                   for node in compiled.get_runtime_model().get_ordered_ops()]
        assert {precision for kind, precision in runtime if kind in ("MVN", "Reference")} == {"f32"}
        if native_bf16():
            assert "bf16" in {precision for kind, precision in runtime if kind in ("Transpose", "Reshape")}


def native_bf16() -> bool:
    from sparseqa.hardware import machine

    return machine().avx512_bf16 or machine().amx


def tiny_inputs(engine) -> dict[str, np.ndarray]:
    from sparseqa import decoding

    return decoding.model_inputs(decoding.encode(engine.tokenizer, QUESTION, PASSAGE), engine.input_names)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_load_engine_kernels_auto_sparseqa_and_openvino(orientation, request):
    from sparseqa.runtimes import load_engine

    model = str(request.getfixturevalue(f"tiny_sparse_model_{orientation}"))
    engines = {kernels: load_engine(model, "openvino", "int8", kernels=kernels) for kernels in ("auto", "sparseqa", "openvino")}
    isa = native.chosen_isa()
    engine = engines["sparseqa"]
    assert (engine.kernels, engine.kernel_isa, engine.kernel_blocks) == ("sparseqa", isa, orientation)
    assert (engine.kernel_choice.chosen, engine.kernel_choice.how) == ("sparseqa", "forced")
    assert f"sparseqa kernels ({isa}, {orientation} blocks)" in engine.label
    assert any(f"sparseqa {isa} kernels for the 12 sparse Linears: 12 in {orientation} (" in note for note in engine.notes)
    answer = engine.answer(QUESTION, PASSAGE).as_dict()
    assert (answer["kernels"], answer["kernel_isa"], answer["kernel_blocks"]) == ("sparseqa", isa, orientation)
    assert PASSAGE[answer["start"] : answer["end"]] == answer["answer"]
    # auto runs whichever candidate its measurement chose (the tiny model's winner is the machine's business).
    auto = engines["auto"]
    assert auto.kernel_choice.how in ("measured", "cached") and "sparseqa" in auto.kernel_choice.medians_ms
    assert auto.kernels == ("sparseqa" if auto.kernel_choice.chosen == "sparseqa" else "openvino")
    openvino = engines["openvino"]
    assert (openvino.kernels, openvino.kernel_isa) == ("openvino", None)
    assert "sparseqa" not in openvino.label
    assert openvino.answer(QUESTION, PASSAGE).as_dict()["kernels"] == "openvino"
    inputs = tiny_inputs(openvino)
    reference = np.concatenate(openvino.infer(inputs), axis=None)
    ours = np.concatenate(engines["sparseqa"].infer(inputs), axis=None)
    assert float(ours @ reference / np.linalg.norm(ours) / np.linalg.norm(reference)) > 0.99


def test_kernels_come_from_the_environment_and_bad_names_are_one_line_errors(tiny_sparse_model, monkeypatch):
    from sparseqa.runtimes import load_engine

    monkeypatch.setenv("SPARSEQA_KERNELS", "openvino")
    assert load_engine(str(tiny_sparse_model), "openvino", "int8").kernels == "openvino"
    monkeypatch.setenv("SPARSEQA_KERNELS", "fastest")
    with pytest.raises(ValueError, match="unknown kernels 'fastest'"):
        load_engine(str(tiny_sparse_model), "openvino", "int8")
    monkeypatch.delenv("SPARSEQA_KERNELS")
    with pytest.raises(ValueError, match="int8 on OpenVINO"):
        load_engine(str(tiny_sparse_model), "openvino", "fp32", kernels="sparseqa")
    if not machine().amx:
        with pytest.raises(ValueError, match="sparse weight decompression needs AMX, which this CPU lacks"):
            load_engine(str(tiny_sparse_model), "openvino", "int8", kernels="openvino-sparse-weights")
    engine = load_engine(str(tiny_sparse_model), "pytorch", "fp32")
    assert (engine.kernels, engine.kernel_isa) == ("pytorch", None)


def test_failed_build_falls_back_to_openvino_kernels_with_a_one_line_note(tiny_sparse_model, monkeypatch):
    from sparseqa.runtimes import load_engine

    # A compiler that fails makes a new build key, so the cached build is not reused: the build runs and fails.
    monkeypatch.setenv("CXX", "/bin/false")
    engine = load_engine(str(tiny_sparse_model), "openvino", "int8")
    assert (engine.kernels, engine.kernel_isa) == ("openvino", None)
    assert engine.kernel_choice.how == ("measured" if machine().amx else "only candidate")
    assert "sparseqa" not in engine.kernel_choice.medians_ms
    if not machine().amx:
        assert engine.kernel_fallback.startswith("OpenVINO kernels: the sparseqa kernels are unavailable (")
    assert "\n" not in engine.kernel_fallback and engine.kernel_fallback in engine.notes
    assert engine.answer(QUESTION, PASSAGE).kernels == "openvino"
    with pytest.raises(ValueError, match="the sparseqa kernels are unavailable") as raised:
        load_engine(str(tiny_sparse_model), "openvino", "int8", kernels="sparseqa")
    assert "\n" not in str(raised.value)


def test_ir_cache_key_names_the_kernel_build_and_isa(tiny_sparse_model, monkeypatch):
    from sparseqa.models import resolve
    from sparseqa.runtimes import cache_key, choose_kernels

    local = resolve(str(tiny_sparse_model))
    monkeypatch.setenv("SPARSEQA_KERNEL_ISA", "scalar")
    scalar = choose_kernels("sparseqa", "openvino", "int8")
    assert scalar.isa == "scalar"
    # Every ISA name gets its own key, whichever of them this CPU runs.
    keys = {cache_key(local, True, 20, replace(scalar, isa=isa)) for isa in native.ISAS}
    assert len(keys) == len(native.ISAS)
    assert all(native.build_key() in key for key in keys)
    assert cache_key(local, True, 20, scalar).endswith("-blocks1x4+4x1-scalar")
    assert cache_key(local, True, 20) not in keys


def test_export_writes_the_sparse_kernel_ir_only_when_asked(tiny_sparse_model, core, tmp_path, capsys):
    from sparseqa.cli import main

    plain, ours = tmp_path / "plain", tmp_path / "ours"
    assert main(["export", "--model", str(tiny_sparse_model), "--precision", "int8", "--out", str(plain)]) == 0
    assert OP_TYPE not in (plain / "openvino_model.xml").read_text()
    argv = ["export", "--model", str(tiny_sparse_model), "--precision", "int8", "--kernels", "sparseqa", "--out", str(ours)]
    assert main(argv) == 0
    assert "12 sparse Linears run on sparseqa's op" in capsys.readouterr().out
    # Per layer: query, key and value share one op, intermediate and output another.
    assert op_count(core.read_model(ours / "openvino_model.xml")) == 2 * 3


def test_app_and_cli_take_kernels_from_flag_or_environment():
    from sparseqa.cli import build_parser
    from sparseqa.interface import parse_options

    assert parse_options([], environ={}).settings.kernels == "auto"
    assert parse_options([], environ={"SPARSEQA_KERNELS": "openvino"}).settings.kernels == "openvino"
    assert parse_options(["--kernels", "sparseqa"], environ={"SPARSEQA_KERNELS": "openvino"}).settings.kernels == "sparseqa"
    with pytest.raises(SystemExit):
        parse_options([], environ={"SPARSEQA_KERNELS": "fastest"})
    parser = build_parser()
    for command in (["ask", "-q", "q", "-c", "c"], ["bench"], ["eval", "--data", "d.json"], ["export", "--out", "o"]):
        assert parser.parse_args(command + ["--kernels", "openvino"]).kernels == "openvino"


def test_eval_compare_leaves_out_the_sparse_kernels_where_they_cannot_load(tiny_sparse_model, monkeypatch):
    from sparseqa.evaluate import compare_configurations, load_squad, run_configurations

    monkeypatch.setenv("CXX", "/bin/false")  # a new build key whose build fails
    questions = load_squad(Path(__file__).parent / "data" / "squad_tiny.json")[:2]
    configurations = [c for c in compare_configurations(str(tiny_sparse_model), "unused") if c[1] == "openvino"]
    reports: list[str] = []
    runs = run_configurations(configurations, questions, "tiny", report=reports.append, progress=False)
    assert [(run.precision, run.kernels) for run in runs] == [("fp32", "openvino"), ("int8", "openvino")]
    assert any(line.startswith("  left out: the sparseqa kernels are unavailable") for line in reports)
