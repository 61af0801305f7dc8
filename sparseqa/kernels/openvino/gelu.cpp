// GELU for SparseQALinear's fused activation: the exact (erf) form OpenVINO's Gelu computes by default, one
// function per ISA (the same arithmetic 16, 8 or 1 lanes at a time), chosen by the kernel path the op runs.
#include "gelu.hpp"

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace sparseqa {

namespace {

// erf by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7; GELU's absolute error stays below 5e-7), with
// exp(-a^2) as 2^k * e^r, |r| <= ln2/2, r by a degree-6 polynomial (relative error ~2e-7).
constexpr float ERF_P = 0.3275911f;
constexpr float ERF_A[] = {1.061405429f, -1.453152027f, 1.421413741f, -0.284496736f, 0.254829592f};
constexpr float EXP_C[] = {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f};
constexpr float LOG2E = 1.44269504f, LN2_HIGH = 0.693145752f, LN2_LOW = 1.42860677e-6f;
constexpr float EXP_MIN = -87.0f;  // e^-87 is still a normal float
constexpr float SHIFT = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits
constexpr float FRAC_1_SQRT2 = 0.707106781f;

inline float gelu_scalar(float x) {
    const float z = x * FRAC_1_SQRT2;
    const float a = z < 0.0f ? -z : z;
    const float t = 1.0f / (1.0f + ERF_P * a);
    float p = ERF_A[0];
    for (int i = 1; i < 5; ++i) p = p * t + ERF_A[i];
    float v = -a * a;
    v = v < EXP_MIN ? EXP_MIN : v;
    const float k = (v * LOG2E + SHIFT) - SHIFT;
    const float r = (v - k * LN2_HIGH) - k * LN2_LOW;
    float e = EXP_C[0];
    for (int i = 1; i < 7; ++i) e = e * r + EXP_C[i];
    int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
    float two_k;
    std::memcpy(&two_k, &bits, sizeof two_k);
    const float erf_a = 1.0f - p * t * (e * two_k);
    return 0.5f * x * (1.0f + (z < 0.0f ? -erf_a : erf_a));
}

void gelu_portable(float* data, const float* scale, size_t count) {
    for (size_t i = 0; i < count; ++i) data[i] = scale ? gelu_scalar(data[i]) * scale[i] : gelu_scalar(data[i]);
}

__attribute__((target("avx2,fma"))) inline __m256 gelu8(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(FRAC_1_SQRT2));
    const __m256 a = _mm256_andnot_ps(sign, z);
    const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_set1_ps(ERF_P), a, _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(ERF_A[0]);
    for (int i = 1; i < 5; ++i) p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(ERF_A[i]));
    const __m256 v = _mm256_max_ps(_mm256_xor_ps(_mm256_mul_ps(a, a), sign), _mm256_set1_ps(EXP_MIN));
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_LOW), _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_HIGH), v));
    __m256 e = _mm256_set1_ps(EXP_C[0]);
    for (int i = 1; i < 7; ++i) e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(EXP_C[i]));
    const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    e = _mm256_mul_ps(e, _mm256_castsi256_ps(exponent));
    const __m256 erf_a = _mm256_fnmadd_ps(_mm256_mul_ps(p, t), e, _mm256_set1_ps(1.0f));
    const __m256 erf_z = _mm256_or_ps(erf_a, _mm256_and_ps(z, sign));  // erf is odd; erf_a >= 0
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), erf_z));
}

__attribute__((target("avx2,fma"))) void gelu_avx2(float* data, const float* scale, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256 y = gelu8(_mm256_loadu_ps(data + i));
        if (scale) y = _mm256_mul_ps(y, _mm256_loadu_ps(scale + i));
        _mm256_storeu_ps(data + i, y);
    }
    gelu_portable(data + i, scale ? scale + i : nullptr, count - i);
}

__attribute__((target("avx512f"))) inline __m512 gelu16(__m512 x) {
    const __m512i sign = _mm512_set1_epi32(INT32_MIN);
    const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(FRAC_1_SQRT2));
    const __m512 a = _mm512_abs_ps(z);
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(_mm512_set1_ps(ERF_P), a, _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(ERF_A[0]);
    for (int i = 1; i < 5; ++i) p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(ERF_A[i]));
    const __m512 v = _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)), _mm512_set1_ps(EXP_MIN));
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_LOW), _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_HIGH), v));
    __m512 e = _mm512_set1_ps(EXP_C[0]);
    for (int i = 1; i < 7; ++i) e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(EXP_C[i]));
    e = _mm512_scalef_ps(e, k);  // e * 2^k
    const __m512 erf_a = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), e, _mm512_set1_ps(1.0f));
    const __m512 erf_z = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_castps_si512(erf_a), _mm512_and_si512(_mm512_castps_si512(z), sign)));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), erf_z));
}

__attribute__((target("avx512f"))) void gelu_avx512(float* data, const float* scale, size_t count) {
    for (size_t i = 0; i < count; i += 16) {
        const __mmask16 mask = count - i >= 16 ? 0xffff : static_cast<__mmask16>((1u << (count - i)) - 1);
        __m512 y = gelu16(_mm512_maskz_loadu_ps(mask, data + i));
        if (scale) y = _mm512_mul_ps(y, _mm512_maskz_loadu_ps(mask, scale + i));
        _mm512_mask_storeu_ps(data + i, mask, y);
    }
}

}  // namespace

GeluFn gelu_for(const char* kernel_isa) {
    const std::string isa = kernel_isa ? kernel_isa : "";
    if (isa == "avx512vnni") return gelu_avx512;
    if (isa == "avxvnni" || isa == "avx2") return gelu_avx2;
    return gelu_portable;
}

}  // namespace sparseqa
