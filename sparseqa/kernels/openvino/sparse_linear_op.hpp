// sparseqa.SparseQALinear: y = x * W^T + b for a Linear whose weights are stored as their nonzero blocks of 4.
//
// Inputs: x (f32 [..., k]) and one u8 Constant holding the block-CSR weights described in sparseqa_kernels.h, one
// array after the other (each 4-byte aligned): row_ptr (i32 [rows + 1], rows = n for 1x4 blocks, n / 4 for 4x1),
// block_col (i32 [blocks]), values (i8 [blocks * 4]), scales (f32 [n]), bias (f32 [n]) and, optionally,
// output_scale (f32 [n]). One blob rather than
// one input per array because the CPU plugin infers a custom op's shapes on every request of a dynamic-shape model
// by rebuilding the op from its inputs: with six inputs per op that took ~6% of a 128-token BERT-base request.
// Attributes: outputs (n), activation ("none" or "gelu"), blocks ("1x4": 1 output x 4 inputs, or "4x1": 4 outputs x
// 1 input; see sparseqa/blocks.py), parts (1 unless the weights are several Linears of the same input stacked).
// Output: f32 [..., n], passed through GELU (erf form) when activation is "gelu", as the Linear before BERT's GELU
// is fused with it; then, with output_scale, multiplied by it per output (NNCF's SmoothQuant scale for the next
// Linear's input). With parts > 1 (no activation; n / parts a multiple of 16), ``parts`` outputs f32 [..., n / parts],
// one per stacked Linear, which the kernels write directly: query, key and value cost one quantization of x and one
// parallel call, and nothing copies the result apart.
// With then_outputs > 0 the op is two Linears, the second (a third input: its weights blob, same layout without
// output_scale; attribute then_blocks) taking the first's outputs after the activation and output_scale: a
// transformer's feed-forward, 768 -> 3072, GELU, 3072 -> 768, as one call of the kernel library's sq_chain. The
// first's outputs then never go to memory as a tensor: each tile is activated in cache and quantized straight into
// the second's input panel (bit for bit the result of the two ops one after the other). Output: f32
// [..., then_outputs].
// The op is a thin adapter: the kernel library packs the weights once (on the first evaluate) and runs the product
// with the threads of the OpenVINO stream it is called from.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <openvino/op/op.hpp>

struct sq_plan;

namespace sparseqa {

class SparseQALinear : public ov::op::Op {
public:
    OPENVINO_OP("SparseQALinear", "sparseqa");

    SparseQALinear() = default;
    SparseQALinear(const ov::OutputVector& arguments, int64_t outputs, std::string activation, std::string blocks,
                   int64_t parts = 1, int64_t then_outputs = 0, std::string then_blocks = "1x4");

    void validate_and_infer_types() override;
    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& new_args) const override;
    bool visit_attributes(ov::AttributeVisitor& visitor) override;
    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override;
    bool has_evaluate() const override;

private:
    void pack(const ov::TensorVector& inputs) const;

    int64_t m_outputs = 0;
    std::string m_activation = "none";  // "none" or "gelu"
    std::string m_blocks = "1x4";       // "1x4" or "4x1"
    int64_t m_parts = 1;
    int64_t m_then_outputs = 0;         // 0: one Linear; else the second Linear's outputs
    std::string m_then_blocks = "1x4";

    // Packed once per op instance (the CPU plugin keeps one instance per compiled model); read by every request.
    mutable std::once_flag m_packed;
    mutable std::shared_ptr<sq_plan> m_plan;
    mutable std::shared_ptr<sq_plan> m_then_plan;  // null for one Linear
    mutable std::vector<float> m_output_scale;  // empty without output_scale
};

}  // namespace sparseqa
