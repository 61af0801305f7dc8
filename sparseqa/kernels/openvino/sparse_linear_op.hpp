// sparseqa.SparseQALinear: y = x * W^T + b for a Linear whose weights are stored as their nonzero 1x4 blocks.
//
// Inputs: x (f32 [..., k]) and five Constants holding the block-CSR weights described in sparseqa_kernels.h:
// row_ptr (i32 [n + 1]), block_col (i32 [blocks]), values (i8 [blocks * 4]), scales (f32 [n]), bias (f32 [n]).
// Output: f32 [..., n], passed through GELU (erf form) when the attribute activation is "gelu", as the Linear
// before BERT's GELU is fused with it; then, with a seventh input output_scale (f32 [n]), multiplied by it per
// output (NNCF's SmoothQuant scale for the next Linear's input). The op is a thin adapter: the kernel library packs the weights once (on the first
// evaluate) and runs the product with the threads of the OpenVINO stream it is called from.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include <openvino/op/op.hpp>

struct sq_plan;

namespace sparseqa {

class SparseQALinear : public ov::op::Op {
public:
    OPENVINO_OP("SparseQALinear", "sparseqa");

    SparseQALinear() = default;
    SparseQALinear(const ov::OutputVector& arguments, std::string activation);

    void validate_and_infer_types() override;
    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& new_args) const override;
    bool visit_attributes(ov::AttributeVisitor& visitor) override;
    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override;
    bool has_evaluate() const override;

private:
    const sq_plan* plan(const ov::TensorVector& inputs) const;

    std::string m_activation = "none";  // "none" or "gelu"

    // Packed once per op instance (the CPU plugin keeps one instance per compiled model); read by every request.
    mutable std::once_flag m_packed;
    mutable std::shared_ptr<sq_plan> m_plan;
};

}  // namespace sparseqa
