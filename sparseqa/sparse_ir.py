"""The graph pass that hands sparse Linears to sparseqa's kernels: MatMul (+ bias Add) → one SparseQALinear op.

It reads an OpenVINO IR and replaces each MatMul whose weight is a constant with at least half of its blocks of 4 all
zero in one orientation (``blocks``: "1x4", 1 output × 4 consecutive inputs, or "4x1", 4 consecutive outputs × 1
input; read from the weights, the more zero one wins) by the custom op ``sparseqa.SparseQALinear`` (built from
sparseqa/kernels/openvino), which holds the nonzero blocks in block-CSR form with per-output-row int8 scales and runs
the kernel family of that orientation.
Linears without an activation that read the same input (an attention's query, key and value) become one op that
stacks their weights and has one output per Linear, which the kernels write directly: one quantization of the input
and one parallel call for all three instead of one each.
A Linear with a GELU whose one reader is another Linear without activation (a feed-forward block: intermediate,
GELU, output) becomes one op with it (attributes then_outputs and then_blocks, the second Linear's weights as a
third input), which hands the first's outputs to the second as its quantized activations without writing them out
as a tensor (bit for bit the two ops' result; ``bench --kernels-only`` times it both ways).
A GELU (erf form) that follows a replaced Linear is computed inside the op, on each output tile while it is in
cache, as OpenVINO fuses it into its own FullyConnected, and so is a per-feature constant Multiply after that GELU
(NNCF's SmoothQuant scale of the next Linear's input). Attention, LayerNorm and everything else stay with OpenVINO,
marked to run in fp32 where OpenVINO's default precision is lower, attention excepted (see outside_attention).

Starting from NNCF's int8 IR (what ``load_engine`` does) the op takes NNCF's int8 weights and per-row scales as they
are, and is fed the input of the activation FakeQuantize: the op quantizes activations itself, per token. From an
fp32 IR the weights are quantized here, per output row (symmetric, scale = max|w| / 127).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .blocks import BLOCK, MIN_BLOCKED_SHARE, ORIENTATIONS, zero_block_share
from .sparse_kernels import BlockCSR, int8_bcsr, pack_bcsr, stack_bcsr

OP_TYPE = "SparseQALinear"


def kernel_orientation(weight: np.ndarray, min_block_sparsity: float = MIN_BLOCKED_SHARE) -> str | None:
    """The block orientation whose kernels should compute ``weight`` (n, k): the one with the larger share of
    all-zero blocks, if that share reaches ``min_block_sparsity`` and the kernels take the shape; else None."""
    n, k = weight.shape
    if k % BLOCK:
        return None
    shapes_fit = {"1x4": True, "4x1": n % BLOCK == 0}
    shares = {o: zero_block_share(weight, o) for o in ORIENTATIONS if shapes_fit[o]}
    best = max(shares, key=shares.get)
    return best if shares[best] >= min_block_sparsity else None


def weights_blob(weights: BlockCSR, output_scale: np.ndarray | None = None) -> np.ndarray:
    """The op's one weights input: row_ptr, block_col, values, scales, bias (zeros if none) and output_scale (if
    any), one after the other as bytes, each array a multiple of 4 bytes long (the layout sparse_linear_op.hpp
    states)."""
    bias = np.zeros(weights.n, np.float32) if weights.bias is None else weights.bias
    arrays = [
        weights.row_ptr.astype("<i4"),
        weights.block_col.astype("<i4"),
        weights.values.reshape(-1).astype(np.int8),
        weights.scales.astype("<f4"),
        np.asarray(bias).astype("<f4"),
    ]
    if output_scale is not None:
        arrays.append(np.asarray(output_scale).astype("<f4"))
    return np.concatenate([array.view(np.uint8) for array in arrays])


def pass_key() -> str:
    """A short hash of this module's source, for the key of the IRs it writes (a changed pass writes new ones)."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]


_factories: dict[Path, object] = {}


def _node_factory(extension: Path):
    """A NodeFactory that knows the op; kept for the process's life, because the op's code lives in the extension
    library, which the factory unloads when it is collected while nodes made from it still exist."""
    from openvino.utils.node_factory import NodeFactory

    if extension not in _factories:
        factory = NodeFactory()
        factory.add_extension(str(extension))
        _factories[extension] = factory
    return _factories[extension]


def sparsify(
    model, extension: Path, min_block_sparsity: float = MIN_BLOCKED_SHARE, chain: bool = True
) -> dict[str, str]:
    """Replace each sparse constant-weight MatMul (+ bias Add) of ``model`` in place; the replaced MatMuls' names,
    each with the block orientation its kernels use. Linears that read the same input (an attention's query, key and
    value) become one op with one output per Linear; with ``chain``, a Linear with GELU whose only reader is another
    Linear (a feed-forward's intermediate and output) becomes one op with it."""
    from openvino import opset13 as ops

    factory = _node_factory(Path(extension))
    linears = [
        linear
        for matmul in model.get_ordered_ops()
        if matmul.get_type_name() == "MatMul" and (linear := _sparse_linear(matmul, min_block_sparsity)) is not None
    ]
    chains = _chains(linears) if chain else []
    chained = {id(linear) for pair in chains for linear in pair}
    replaced = {}
    for first, second in chains:
        attributes = {
            "outputs": first.weights.n,
            "activation": first.activation,
            "blocks": first.weights.orientation,
            "then_outputs": second.weights.n,
            "then_blocks": second.weights.orientation,
        }
        blobs = [ops.constant(weights_blob(first.weights, first.output_scale)), ops.constant(weights_blob(second.weights))]
        op = factory.create(OP_TYPE, [_activation_input(first.matmul), *blobs], attributes)
        op.set_friendly_name(f"{first.name} + {second.name}")
        second.output.replace(op.output(0))
        replaced[first.name], replaced[second.name] = first.weights.orientation, second.weights.orientation
    for group in _shared_input_groups([linear for linear in linears if id(linear) not in chained]):
        first = group[0]
        weights = stack_bcsr([linear.weights for linear in group]) if len(group) > 1 else first.weights
        blob = ops.constant(weights_blob(weights, first.output_scale))
        attributes = {"outputs": weights.n, "activation": first.activation, "blocks": weights.orientation}
        if len(group) > 1:
            attributes["parts"] = len(group)
        # Read now, not when the group was found: the Linear that feeds this one may have been replaced since.
        op = factory.create(OP_TYPE, [_activation_input(first.matmul), blob], attributes)
        op.set_friendly_name(" + ".join(linear.name for linear in group))
        for index, linear in enumerate(group):
            linear.output.replace(op.output(index))
            replaced[linear.name] = weights.orientation
    model.validate_nodes_and_infer_types()
    return {linear.name: replaced[linear.name] for linear in linears}


def _chains(linears: list[_Linear]) -> list[tuple[_Linear, _Linear]]:
    """Pairs (first, second) of ``linears`` where second reads only first's output, after its GELU (and scale), and
    has no activation itself: a feed-forward block, which one op computes without its intermediate tensor."""
    producers = {(linear.output.get_node().get_name(), linear.output.get_index()): linear for linear in linears}
    pairs = []
    for second in linears:
        source = second.activations
        first = producers.get((source.get_node().get_name(), source.get_index()))
        if (
            first is not None
            and first.activation == "gelu"
            and second.activation == "none"
            and second.output_scale is None
            and first.weights.n % BLOCK == 0
            and len(first.output.get_target_inputs()) == 1
        ):
            pairs.append((first, second))
    return pairs


def _shared_input_groups(linears: list[_Linear]) -> list[list[_Linear]]:
    """``linears`` in groups for one op each: those without an activation that read the same input with the same
    block orientation and output count (a multiple of 16, as the kernels' split outputs need) together, in graph
    order; every other Linear alone."""
    groups: dict[tuple, list[_Linear]] = {}
    for index, linear in enumerate(linears):
        source = linear.activations
        stackable = linear.activation == "none" and linear.output_scale is None and linear.weights.n % 16 == 0
        key = (
            (source.get_node().get_name(), source.get_index(), linear.weights.orientation, linear.weights.n)
            if stackable
            else index
        )
        groups.setdefault(key, []).append(linear)
    return list(groups.values())


def sparsify_ir(source_xml: Path, target_xml: Path, extension: Path) -> dict[str, str]:
    """Read the IR at ``source_xml``, replace its sparse Linears, write it to ``target_xml``; the replaced names with
    their block orientations."""
    import openvino as ov

    model = ov.Core().read_model(source_xml)
    replaced = sparsify(model, extension)
    ov.save_model(model, target_xml, compress_to_fp16=False)
    _keep_precision(target_xml, outside_attention(model))
    return replaced


# Data movement between the Linears and the attention they feed, which may run at the attention's precision.
_ATTENTION_DATA = {"Reshape", "Transpose", "FakeQuantize", "Convert", "Squeeze", "Unsqueeze"}
_NOT_COMPUTED = {"Constant", "Parameter", "Result", OP_TYPE}


def outside_attention(model) -> set[str]:
    """Names of the nodes OpenVINO should compute in fp32 even where its default precision is lower (bf16 on CPUs
    with AVX512-BF16): all but ScaledDotProductAttention and the reshapes and quantizers between it and the Linears.

    The sparse op reads and writes fp32; in bf16, the residual stream, LayerNorms and every op's input would round
    to bf16 (measured on the synthetic model: logits further from fp32 than NNCF int8's), while attention in bf16
    costs no measurable accuracy and saves ~20% of its time."""
    attention = set()

    def walk(node, upstream: bool) -> None:
        for port in node.inputs() if upstream else [i for o in node.outputs() for i in o.get_target_inputs()]:
            other = port.get_source_output().get_node() if upstream else port.get_node()
            if other.get_type_name() in _ATTENTION_DATA and other.get_friendly_name() not in attention:
                attention.add(other.get_friendly_name())
                walk(other, upstream)

    for node in model.get_ordered_ops():
        if node.get_type_name() == "ScaledDotProductAttention":
            attention.add(node.get_friendly_name())
            walk(node, upstream=True)
            walk(node, upstream=False)
    return {
        node.get_friendly_name()
        for node in model.get_ordered_ops()
        if node.get_type_name() not in _NOT_COMPUTED and node.get_friendly_name() not in attention
    }


def _keep_precision(xml: Path, names: set[str]) -> None:
    """Mark the IR's layers named ``names`` so that OpenVINO keeps their original (fp32) precision: the rt_info
    attribute ov::disable_conversion writes (the CPU plugin then keeps the node's precision), which Python cannot
    set on a node."""
    import xml.etree.ElementTree as ET

    tree = ET.parse(xml)
    for layer in tree.getroot().iter("layer"):
        if layer.get("name") in names:
            rt_info = layer.find("rt_info")
            if rt_info is None:
                rt_info = ET.SubElement(layer, "rt_info")
            attribute = {"name": "DisablePrecisionConversion", "version": "0", "value": "dynamic:bf16,f16"}
            ET.SubElement(rt_info, "attribute", attribute)
    tree.write(xml, encoding="utf-8", xml_declaration=True)


@dataclass(frozen=True)
class _Linear:
    """A sparse Linear the pass replaces: what its op reads, computes and stands in for."""

    matmul: object
    name: str  # the MatMul's
    activations: object  # the ov Output the op reads, as the pass found it: what groups Linears of one input
    weights: BlockCSR
    output: object  # the ov Output the op's output replaces (after the bias Add, GELU and scale it absorbs)
    activation: str  # "none" or "gelu"
    output_scale: np.ndarray | None


def _sparse_linear(matmul, min_block_sparsity: float) -> _Linear | None:
    """The sparse Linear ``matmul`` starts (with the bias Add, GELU and per-feature scale after it that the op
    computes too), or None to leave it alone."""
    attributes = matmul.get_attributes()
    if attributes.get("transpose_a") or not attributes.get("transpose_b"):
        return None
    activations = matmul.input(0).get_source_output()
    if activations.get_element_type().get_type_name() != "f32" or activations.get_partial_shape().rank.is_dynamic:
        return None
    weight = _constant_weight(matmul.input(1).get_source_output().get_node())
    if weight is None:
        return None
    orientation = kernel_orientation(weight[0], min_block_sparsity)
    if orientation is None:
        return None
    n = weight[0].shape[0]
    activations = _activation_input(matmul)
    output, bias = matmul.output(0), None
    consumers = list(output.get_target_inputs())
    if len(consumers) == 1 and consumers[0].get_node().get_type_name() == "Add":
        add = consumers[0].get_node()
        other = add.input(1 - consumers[0].get_index()).get_source_output().get_node()
        if other.get_type_name() == "Constant" and other.get_output_size() == 1:
            values = other.get_data()
            if values.size == n and values.shape[-1] == n:
                bias, output = values.reshape(n), add.output(0)
    activation, output_scale = "none", None
    consumers = list(output.get_target_inputs())
    if len(consumers) == 1 and consumers[0].get_node().get_type_name() == "Gelu":
        gelu = consumers[0].get_node()
        if str(gelu.get_attributes().get("approximation_mode", "")).upper() == "ERF":
            output, activation = gelu.output(0), "gelu"
            output_scale, output = _per_output_scale(output, n)
    if weight[1] is None:
        packed = pack_bcsr(weight[0], bias, orientation)
    else:
        packed = int8_bcsr(weight[0], weight[1], bias, orientation)
    return _Linear(matmul, matmul.get_friendly_name(), activations, packed, output, activation, output_scale)


def _activation_input(matmul):
    """What the op of ``matmul`` reads: its activation input, before NNCF's FakeQuantize if it has one (the op's
    dynamic per-token quantization replaces NNCF's static one)."""
    activations = matmul.input(0).get_source_output()
    if activations.get_node().get_type_name() == "FakeQuantize":
        activations = activations.get_node().input(0).get_source_output()
    return activations


def _per_output_scale(output, n: int):
    """(scale [n], its output) when ``output``'s one consumer multiplies it by a constant per feature (NNCF's
    SmoothQuant scale for the next Linear: a separate pass over memory otherwise), else (None, ``output``)."""
    consumers = list(output.get_target_inputs())
    if len(consumers) != 1 or consumers[0].get_node().get_type_name() != "Multiply":
        return None, output
    multiply = consumers[0].get_node()
    other = multiply.input(1 - consumers[0].get_index()).get_source_output().get_node()
    if other.get_type_name() != "Constant" or other.get_output_size() != 1:
        return None, output
    values = other.get_data()
    if values.size != n or values.shape[-1] != n or values.dtype != np.float32:
        return None, output
    return np.ascontiguousarray(values.reshape(n)), multiply.output(0)


def _constant_weight(node) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A constant weight [n, k]: NNCF's (int8 values, per-row scales), or (fp32 values, None)."""
    kind = node.get_type_name()
    if kind == "Constant":
        weight = node.get_data()
        if weight.ndim != 2 or weight.dtype != np.float32:
            return None
        return weight, None
    if kind != "Multiply":
        return None
    convert, scale = (node.input(i).get_source_output().get_node() for i in (0, 1))
    if convert.get_type_name() != "Convert" or scale.get_type_name() != "Constant":
        convert, scale = scale, convert
    if convert.get_type_name() != "Convert" or scale.get_type_name() != "Constant":
        return None
    source = convert.input(0).get_source_output().get_node()
    if source.get_type_name() != "Constant":
        return None
    quantized = source.get_data()
    if quantized.dtype != np.int8 or quantized.ndim != 2:
        return None
    n = quantized.shape[0]
    scales = scale.get_data().astype(np.float32)
    if scales.size == 1:
        scales = np.full(n, scales.reshape(()), np.float32)
    elif scales.shape not in ((n, 1), (n,)):
        return None
    return quantized, scales.reshape(n)
