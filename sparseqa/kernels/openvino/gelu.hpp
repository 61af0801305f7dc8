#pragma once

#include <cstddef>

namespace sparseqa {

// x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) in place, times scale[i] unless scale is null, vectorized for the CPU
// it runs on.
void gelu_erf(float* data, const float* scale, size_t count);

}  // namespace sparseqa
