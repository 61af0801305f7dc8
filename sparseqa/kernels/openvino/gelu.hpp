#pragma once

#include <cstddef>
#include <cstdint>

namespace sparseqa {

// x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) in place, times scale[i] unless scale is null.
using GeluFn = void (*)(float* data, const float* scale, size_t count);

// The same on ``row_count`` rows of ``count`` values, ``stride`` floats apart, row r times scale[r] unless scale is
// null: a chain's tile of output rows, with the same arithmetic per value as GeluFn.
using GeluRowsFn = void (*)(float* rows, int64_t stride, int32_t row_count, int32_t count, const float* scale);

struct Gelu {
    GeluFn values;
    GeluRowsFn rows;
};

// The GELU for the CPU features a kernel path needs: 16 lanes for "avx512vnni", 8 for "avxvnni" and "avx2", one
// otherwise (so forcing a kernel ISA also forces the matching GELU).
Gelu gelu_for(const char* kernel_isa);

}  // namespace sparseqa
