#pragma once

#include <cstddef>

namespace sparseqa {

// x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) in place, times scale[i] unless scale is null.
using GeluFn = void (*)(float* data, const float* scale, size_t count);

// The GELU for the CPU features a kernel path needs: 16 lanes for "avx512vnni", 8 for "avxvnni" and "avx2", one
// otherwise (so forcing a kernel ISA also forces the matching GELU).
GeluFn gelu_for(const char* kernel_isa);

}  // namespace sparseqa
