/* What the 8-tokens-per-ymm kernels of both block orientations share (the AVX2 and AVX-VNNI translation units each
 * compile them under their own flags, in an anonymous namespace, with their own dot product): the last k tile's
 * dequantization and the 8 x 8 transpose of a task's outputs into y. Same structure as the AVX-512 kernels. */
#ifndef SPARSEQA_KERNEL8_H
#define SPARSEQA_KERNEL8_H

#include <immintrin.h>

#include "internal.h"

namespace sq {
namespace {

inline void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h) {
        s[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
        s[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
        s[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
        s[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
    }
    for (int c = 0; c < 4; ++c) {
        r[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
        r[c + 4] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
    }
}

/* One output's sums of 8 tokens (``token``: their scales) dequantized into ``to``. */
inline void dequantize8(const Plan& plan, int32_t o, __m256i sums, const float* token, float* to) {
    const __m256 acc = _mm256_cvtepi32_ps(_mm256_sub_epi32(sums, _mm256_set1_epi32(plan.offset_sum[o])));
    const __m256 s = _mm256_mul_ps(_mm256_load_ps(token), _mm256_set1_ps(plan.scales[o]));
    _mm256_store_ps(to, _mm256_fmadd_ps(acc, s, _mm256_set1_ps(plan.bias[o])));
}

/* A task's dequantized outputs (tile: rows r0.. x 64 tokens, NV vectors of 8 tokens) into y: 8 outputs x 8 tokens
 * transposed in registers. Nothing to do when the outputs stay rows. */
template <int NV>
void store_transposed8(const Output& out, const Task& task, float (*tile)[TOKEN_BLOCK]) {
    if (out.rows) return;
    const int64_t t0 = task.token_block * TOKEN_BLOCK;
    for (int j = 0; j < NV; ++j) {
        const int tokens = task.tokens - 8 * j < 8 ? task.tokens - 8 * j : 8;
        for (int32_t o0 = task.r0; o0 < task.r1; o0 += 8) {
            const int outputs = task.r1 - o0 < 8 ? task.r1 - o0 : 8;
            __m256 r[8];
            float* y = output_at(out, t0 + 8 * j, o0);
            if (outputs == 8 && tokens == 8) {  // the common case without a bound checked per row
                for (int i = 0; i < 8; ++i) r[i] = _mm256_load_ps(tile[o0 - task.r0 + i] + 8 * j);
                transpose8(r);
                for (int i = 0; i < 8; ++i) _mm256_storeu_ps(y + i * out.part_n, r[i]);
                continue;
            }
            const __m256i mask =
                _mm256_cmpgt_epi32(_mm256_set1_epi32(outputs), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            for (int i = 0; i < 8; ++i) r[i] = _mm256_load_ps(tile[o0 - task.r0 + (i < outputs ? i : 0)] + 8 * j);
            transpose8(r);
            for (int i = 0; i < tokens; ++i) _mm256_maskstore_ps(y + i * out.part_n, mask, r[i]);
        }
    }
}

}  // namespace
}  // namespace sq

#endif
