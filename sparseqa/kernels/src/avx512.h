/* What the AVX-512 kernels of both block orientations share: 16 tokens per zmm, the last k tile's dequantization in
 * registers and the 16 x 16 transpose of a task's outputs into y, and the per-token scales of the quantizers.
 * Included by the AVX-512 translation units only (each compiles it under its own -m flags, in an anonymous
 * namespace). */
#ifndef SPARSEQA_AVX512_H
#define SPARSEQA_AVX512_H

#include <immintrin.h>

#include "internal.h"

namespace sq {
namespace {

inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
        const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int c = 0; c < 4; ++c) {
        t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
        t[c + 4] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
        t[c + 8] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        t[c + 12] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    }
    for (int c = 0; c < 4; ++c) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[c + 8], 0x88);
        r[c + 8] = _mm512_shuffle_f32x4(t[c], t[c + 8], 0xdd);
        r[c + 4] = _mm512_shuffle_f32x4(t[c + 4], t[c + 12], 0x88);
        r[c + 12] = _mm512_shuffle_f32x4(t[c + 4], t[c + 12], 0xdd);
    }
}

/* Dequantizes one output's sums (NV vectors of 16 tokens, the last k tile's accumulators, still in registers) with
 * the token scales ``token``: into ``to`` (its tile row, or its output row when the outputs stay rows, where the
 * vectors past NV are zeroed). */
template <int NV>
inline void dequantize(const Plan& plan, int32_t o, const __m512i* sums, const __m512* token, float* to, bool rows) {
    const __m512i offset = _mm512_set1_epi32(plan.offset_sum[o]);
    const __m512 scale = _mm512_set1_ps(plan.scales[o]), bias = _mm512_set1_ps(plan.bias[o]);
    for (int j = 0; j < NV; ++j) {
        const __m512 acc = _mm512_cvtepi32_ps(_mm512_sub_epi32(sums[j], offset));
        _mm512_store_ps(to + 16 * j, _mm512_fmadd_ps(acc, _mm512_mul_ps(token[j], scale), bias));
    }
    if (rows)
        for (int j = NV; j < 4; ++j) _mm512_store_ps(to + 16 * j, _mm512_setzero_ps());
}

/* A task's dequantized outputs (tile: rows r0.. x 64 tokens) into y: 16 outputs x 16 tokens transposed in registers.
 * Nothing to do when the outputs stay rows. */
template <int NV>
void store_transposed(const Output& out, const Task& task, float (*tile)[TOKEN_BLOCK]) {
    if (out.rows) return;
    const int64_t t0 = task.token_block * TOKEN_BLOCK;
    // Token vector outermost: one token row's outputs of this task (up to 256 contiguous bytes) are written together.
    for (int j = 0; j < NV; ++j) {
        const int tokens = task.tokens - 16 * j < 16 ? task.tokens - 16 * j : 16;
        for (int32_t o0 = task.r0; o0 < task.r1; o0 += 16) {
            const int outputs = task.r1 - o0 < 16 ? task.r1 - o0 : 16;
            __m512 r[16];
            float* y = output_at(out, t0 + 16 * j, o0);
            if (outputs == 16 && tokens == 16) {  // the common case without a bound checked per row
                for (int i = 0; i < 16; ++i) r[i] = _mm512_load_ps(tile[o0 - task.r0 + i] + 16 * j);
                transpose16(r);
                for (int i = 0; i < 16; ++i) _mm512_storeu_ps(y + i * out.part_n, r[i]);
                continue;
            }
            const __mmask16 mask = static_cast<__mmask16>((1u << outputs) - 1);
            for (int i = 0; i < 16; ++i) r[i] = _mm512_load_ps(tile[o0 - task.r0 + (i < outputs ? i : 0)] + 16 * j);
            transpose16(r);
            for (int i = 0; i < tokens; ++i) _mm512_mask_storeu_ps(y + i * out.part_n, mask, r[i]);
        }
    }
}

/* The task's token scales, 16 tokens per vector. */
template <int NV>
inline void load_token_scales(const void* workspace, const Task& task, __m512* token) {
    const float* scales_t = token_scales(workspace) + task.token_block * TOKEN_BLOCK;
    for (int j = 0; j < NV; ++j) token[j] = _mm512_load_ps(scales_t + 16 * j);
}

/* The largest |x| of one token's k inputs. */
inline float token_amax_avx512(const float* row, int32_t k) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (k % 16)) - 1);
    __m512 peak = _mm512_setzero_ps();
    int32_t i = 0;
    for (; i + 16 <= k; i += 16) peak = _mm512_max_ps(peak, _mm512_abs_ps(_mm512_loadu_ps(row + i)));
    if (tail) peak = _mm512_max_ps(peak, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, row + i)));
    return _mm512_reduce_max_ps(peak);
}

/* The per-token scales of one token block: the scale into the workspace, 127 / amax into ``inverse``; tokens past m
 * get 0. */
inline void token_scales_avx512(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block,
                                float* inverse) {
    float* scales_t = static_cast<float*>(workspace) + token_block * TOKEN_BLOCK;
    const int64_t t0 = token_block * TOKEN_BLOCK;
    for (int t = 0; t < TOKEN_BLOCK; ++t) {
        if (t0 + t >= m)
            scales_t[t] = inverse[t] = 0.0f;
        else
            token_scale(token_amax_avx512(x + (t0 + t) * plan.k, plan.k), scales_t + t, inverse + t);
    }
}

/* 16 inputs times their token's 127 / amax, rounded as quantize_token does (see internal.h on its clamp), as int32
 * lanes. */
inline __m512i rounded(__m512 v, __m512 inverse) { return _mm512_cvtps_epi32(_mm512_mul_ps(v, inverse)); }

}  // namespace
}  // namespace sq

#endif
