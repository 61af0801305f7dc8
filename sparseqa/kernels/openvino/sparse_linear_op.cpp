#include "sparse_linear_op.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <openvino/core/parallel.hpp>

#include "gelu.hpp"
#include "sparseqa_kernels.h"

namespace sparseqa {

namespace {
enum Input { X, WEIGHTS, THEN_WEIGHTS };

// Where each array of the weights blob starts, in bytes; the blob's size says whether output_scale is there.
struct BlobLayout {
    int64_t row_ptr = 0, block_col = 0, values = 0, scales = 0, bias = 0, output_scale = -1;
};

BlobLayout blob_layout(const ov::Tensor& blob, int64_t n, int64_t rows) {
    const int64_t bytes = static_cast<int64_t>(blob.get_byte_size());
    OPENVINO_ASSERT(bytes >= 4 * (rows + 1), "SparseQALinear: the weights blob is shorter than its row_ptr");
    int32_t blocks = 0;  // row_ptr[rows]
    std::memcpy(&blocks, static_cast<const char*>(blob.data()) + 4 * rows, sizeof blocks);
    BlobLayout layout;
    layout.block_col = 4 * (rows + 1);
    layout.values = layout.block_col + 4 * blocks;
    layout.scales = layout.values + 4 * blocks;
    layout.bias = layout.scales + 4 * n;
    const int64_t end = layout.bias + 4 * n;
    OPENVINO_ASSERT(blocks >= 0 && (bytes == end || bytes == end + 4 * n), "SparseQALinear: the weights blob holds ",
                    bytes, " bytes, not ", end, " (or ", end + 4 * n, " with output_scale) for ", n, " outputs and ",
                    blocks, " blocks");
    if (bytes > end) layout.output_scale = end;
    return layout;
}

// A plan of the block-CSR weights in ``blob`` for n outputs of k inputs, for the ISA the engine chose; with
// output_scale (if the blob has it, and ``output_scale`` is not null) copied out.
std::shared_ptr<sq_plan> packed_plan(const ov::Tensor& blob, int64_t n, int64_t k, const std::string& blocks,
                                     std::vector<float>* output_scale) {
    const int32_t block_rows = blocks == "4x1" ? 4 : 1;
    const BlobLayout layout = blob_layout(blob, n, n / block_rows);
    const auto* bytes = static_cast<const char*>(blob.data());
    // An IR's .bin file packs constants back to back, so the blob may start at any byte: read it from a copy then.
    std::vector<int32_t> aligned_copy;
    if (reinterpret_cast<uintptr_t>(bytes) % alignof(int32_t) != 0) {
        aligned_copy.resize((blob.get_byte_size() + sizeof(int32_t) - 1) / sizeof(int32_t));
        std::memcpy(aligned_copy.data(), bytes, blob.get_byte_size());
        bytes = reinterpret_cast<const char*>(aligned_copy.data());
    }
    sq_bcsr weights{};
    weights.n = static_cast<int32_t>(n);
    weights.k = static_cast<int32_t>(k);
    weights.block_rows = block_rows;
    weights.row_ptr = reinterpret_cast<const int32_t*>(bytes + layout.row_ptr);
    weights.block_col = reinterpret_cast<const int32_t*>(bytes + layout.block_col);
    weights.values = reinterpret_cast<const int8_t*>(bytes + layout.values);
    weights.scales = reinterpret_cast<const float*>(bytes + layout.scales);
    weights.bias = reinterpret_cast<const float*>(bytes + layout.bias);
    if (layout.output_scale >= 0) {
        OPENVINO_ASSERT(output_scale != nullptr, "SparseQALinear: output_scale where none is taken");
        const auto* scale = reinterpret_cast<const float*>(bytes + layout.output_scale);
        output_scale->assign(scale, scale + n);
    }
    // The ISA the engine chose (and reports with every answer) reaches the op through the environment.
    const char* isa = std::getenv("SPARSEQA_KERNEL_ISA");
    char error[256] = {0};
    sq_plan* created = sq_plan_create(&weights, isa && *isa ? isa : nullptr, error, sizeof error);
    OPENVINO_ASSERT(created != nullptr, "sparseqa kernels: ", error);
    return std::shared_ptr<sq_plan>(created, sq_plan_destroy);
}
}  // namespace

SparseQALinear::SparseQALinear(const ov::OutputVector& arguments, int64_t outputs, std::string activation,
                               std::string blocks, int64_t parts, int64_t then_outputs, std::string then_blocks)
    : Op(arguments), m_outputs(outputs), m_activation(std::move(activation)), m_blocks(std::move(blocks)),
      m_parts(parts), m_then_outputs(then_outputs), m_then_blocks(std::move(then_blocks)) {
    constructor_validate_and_infer_types();
}

void SparseQALinear::validate_and_infer_types() {
    NODE_VALIDATION_CHECK(this, m_then_outputs >= 0, "then_outputs must be 0 or positive, got ", m_then_outputs);
    const bool chained = m_then_outputs > 0;
    NODE_VALIDATION_CHECK(this, get_input_size() == (chained ? 3u : 2u),
                          chained ? "expects 3 inputs: x and two weights blobs" : "expects 2 inputs: x and the weights blob");
    NODE_VALIDATION_CHECK(this, !chained || m_then_blocks == "1x4" || (m_then_blocks == "4x1" && m_then_outputs % 4 == 0),
                          "then_blocks must be 1x4, or 4x1 with then_outputs a multiple of 4; got ", m_then_blocks,
                          " for ", m_then_outputs, " outputs");
    NODE_VALIDATION_CHECK(this, !chained || (m_parts == 1 && m_outputs % 4 == 0),
                          "a second Linear needs parts 1 and outputs a multiple of 4");
    NODE_VALIDATION_CHECK(this, !chained || get_input_element_type(THEN_WEIGHTS) == ov::element::u8,
                          "the second weights blob must be u8");
    NODE_VALIDATION_CHECK(this, m_activation == "none" || m_activation == "gelu", "activation must be none or gelu, got ",
                          m_activation);
    NODE_VALIDATION_CHECK(this, m_outputs > 0, "outputs must be positive, got ", m_outputs);
    NODE_VALIDATION_CHECK(this, m_blocks == "1x4" || (m_blocks == "4x1" && m_outputs % 4 == 0),
                          "blocks must be 1x4, or 4x1 with outputs a multiple of 4; got ", m_blocks, " for ",
                          m_outputs, " outputs");
    NODE_VALIDATION_CHECK(this, get_input_element_type(X) == ov::element::f32, "x must be f32, got ",
                          get_input_element_type(X));
    NODE_VALIDATION_CHECK(this, get_input_element_type(WEIGHTS) == ov::element::u8, "the weights blob must be u8, got ",
                          get_input_element_type(WEIGHTS));
    NODE_VALIDATION_CHECK(this, m_parts == 1 || (m_parts > 1 && m_outputs % m_parts == 0 && (m_outputs / m_parts) % 16 == 0),
                          "parts must be 1, or split outputs into equal multiples of 16; got ", m_parts, " for ",
                          m_outputs, " outputs");
    NODE_VALIDATION_CHECK(this, m_parts == 1 || m_activation == "none", "parts > 1 takes no activation");
    ov::PartialShape output = get_input_partial_shape(X);
    NODE_VALIDATION_CHECK(this, output.rank().is_static() && output.rank().get_length() >= 1, "x needs a static rank >= 1");
    output[output.rank().get_length() - 1] = chained ? m_then_outputs : m_outputs / m_parts;
    set_output_size(static_cast<size_t>(m_parts));
    for (int64_t part = 0; part < m_parts; ++part) set_output_type(static_cast<size_t>(part), ov::element::f32, output);
}

std::shared_ptr<ov::Node> SparseQALinear::clone_with_new_inputs(const ov::OutputVector& new_args) const {
    check_new_args_count(this, new_args);
    return std::make_shared<SparseQALinear>(new_args, m_outputs, m_activation, m_blocks, m_parts, m_then_outputs,
                                            m_then_blocks);
}

bool SparseQALinear::visit_attributes(ov::AttributeVisitor& visitor) {
    visitor.on_attribute("outputs", m_outputs);
    visitor.on_attribute("activation", m_activation);
    visitor.on_attribute("blocks", m_blocks);
    visitor.on_attribute("parts", m_parts);
    visitor.on_attribute("then_outputs", m_then_outputs);
    visitor.on_attribute("then_blocks", m_then_blocks);
    return true;
}

bool SparseQALinear::has_evaluate() const {
    return get_input_element_type(X) == ov::element::f32;
}

void SparseQALinear::pack(const ov::TensorVector& inputs) const {
    std::call_once(m_packed, [&] {
        const int64_t k = static_cast<int64_t>(inputs[X].get_shape().back());
        m_plan = packed_plan(inputs[WEIGHTS], m_outputs, k, m_blocks, &m_output_scale);
        OPENVINO_ASSERT(m_output_scale.empty() || m_activation == "gelu", "SparseQALinear: output_scale needs activation gelu");
        if (m_then_outputs > 0) m_then_plan = packed_plan(inputs[THEN_WEIGHTS], m_then_outputs, m_outputs, m_then_blocks, nullptr);
    });
}

namespace {

// The kernel library's tasks run on OpenVINO's own TBB pool: the CPU plugin calls evaluate inside its stream's arena,
// so they get the engine's INFERENCE_NUM_THREADS threads, already awake, and no second pool competes (measured: the
// library's own pool inside OpenVINO is ~1.5x slower).
void openvino_threads(void*, int participants, sq_work_fn work, void* job) {
    ov::parallel_nt(participants, [&](int participant, int) { work(job, participant); });
}

struct GeluPost {
    Gelu gelu;
    const float* scale;  // per output, or null
};

// The same on a chain's tile of the first Linear's outputs: one row of ``count`` tokens per output.
void gelu_rows(void* context, float* rows, int64_t stride, int32_t row_begin, int32_t row_end, int32_t count) {
    const auto* post = static_cast<const GeluPost*>(context);
    post->gelu.rows(rows, stride, row_end - row_begin, count, post->scale ? post->scale + row_begin : nullptr);
}

// GELU on each output tile while it is still in L1 (a separate GELU node costs a pass over memory: ~5 ms of a
// 384-token BERT-base request on one core).
void gelu_tile(void* context, float* y, int64_t n, int64_t token_begin, int64_t token_end, int32_t row_begin,
               int32_t row_end) {
    const auto* post = static_cast<const GeluPost*>(context);
    for (int64_t token = token_begin; token < token_end; ++token) {
        post->gelu.values(y + token * n + row_begin, post->scale ? post->scale + row_begin : nullptr,
                   static_cast<size_t>(row_end - row_begin));
    }
}

}  // namespace

bool SparseQALinear::evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const {
    const ov::Tensor& x = inputs[X];
    pack(inputs);
    const sq_plan* packed = m_plan.get();
    ov::Shape shape = x.get_shape();
    OPENVINO_ASSERT(!shape.empty() && static_cast<int64_t>(shape.back()) == sq_plan_k(packed),
                    "SparseQALinear: x's last dimension ", shape.back(), " is not the weights' ", sq_plan_k(packed));
    const int64_t m = static_cast<int64_t>(ov::shape_size(shape) / shape.back());
    const bool gelu = m_activation == "gelu";
    GeluPost post{gelu ? gelu_for(sq_plan_isa(packed)) : Gelu{}, m_output_scale.empty() ? nullptr : m_output_scale.data()};
    const int threads = std::max(1, parallel_get_max_threads());
    if (m_then_plan) {
        shape.back() = static_cast<size_t>(m_then_outputs);
        outputs[0].set_shape(shape);
        const int result = sq_chain_hosted(packed, m_then_plan.get(), x.data<const float>(), m, outputs[0].data<float>(),
                                           threads, openvino_threads, nullptr, gelu ? gelu_rows : nullptr, &post);
        OPENVINO_ASSERT(result == 0, "SparseQALinear: the sparseqa kernels ran out of memory");
        return true;
    }
    shape.back() = static_cast<size_t>(sq_plan_n(packed) / m_parts);
    std::vector<float*> ys;
    for (auto& output : outputs) {
        output.set_shape(shape);
        ys.push_back(output.data<float>());
    }
    const int result = sq_linear_hosted_parts(packed, x.data<const float>(), m, ys.data(), static_cast<int>(ys.size()),
                                              threads, openvino_threads, nullptr, gelu ? gelu_tile : nullptr,
                                              &post);
    OPENVINO_ASSERT(result == 0, "SparseQALinear: the sparseqa kernels ran out of memory");
    return true;
}

}  // namespace sparseqa
