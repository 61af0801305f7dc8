#include <openvino/core/extension.hpp>
#include <openvino/core/op_extension.hpp>

#include "sparse_linear_op.hpp"

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({
    std::make_shared<ov::OpExtension<sparseqa::SparseQALinear>>(),
}));
