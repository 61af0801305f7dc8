// GELU for SparseQALinear's fused activation: the exact (erf) form OpenVINO's Gelu computes by default.
#include "gelu.hpp"

#include <cstdint>
#include <cstring>

namespace sparseqa {

namespace {
inline float bits_to_float(int32_t bits) { float f; std::memcpy(&f, &bits, sizeof f); return f; }

// exp(v) for v in [-88, 0]: 2^k * e^r with |r| <= ln2/2, r by a degree-6 polynomial (relative error ~2e-7).
inline float exp_nonpositive(float v) {
    v = v < -87.0f ? -87.0f : v;
    const float shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits
    const float k = (v * 1.44269504f + shift) - shift;
    const float r = (v - k * 0.693145752f) - k * 1.42860677e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * bits_to_float((static_cast<int32_t>(k) + 127) << 23);
}

// erf by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7; GELU's absolute error stays below 5e-7), written
// without branches or library calls so that each clone vectorizes.
inline float gelu(float x) {
    const float z = x * 0.707106781f;
    const float a = z < 0.0f ? -z : z;
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const float erf_a = 1.0f - p * t * exp_nonpositive(-a * a);
    const float erf_z = z < 0.0f ? -erf_a : erf_a;
    return 0.5f * x * (1.0f + erf_z);
}
}  // namespace

__attribute__((target_clones("avx512f", "avx2", "default")))
void gelu_erf(float* data, const float* scale, size_t count) {
    if (scale) {
        for (size_t i = 0; i < count; ++i) data[i] = gelu(data[i]) * scale[i];
    } else {
        for (size_t i = 0; i < count; ++i) data[i] = gelu(data[i]);
    }
}

}  // namespace sparseqa
