/* 1x4 blocks, 8 tokens per ymm, for any Dot (dot_avx2.h, dot_avxvnni.h): one broadcast weight word and one dot
 * product per nonzero block per 8 tokens; and the 1x4 quantizer, 8 tokens x 8 input groups at a time. */
#ifndef SPARSEQA_KERNEL8_1X4_H
#define SPARSEQA_KERNEL8_1X4_H

#include "kernel8.h"

namespace sq {
namespace {

/* The int32 sums of a task's rows stay in ``tile`` between k tiles; the last k tile dequantizes them in registers
 * (in rows, the vectors past NV are zeroed). */
template <class Dot, int NV>
void compute8_1x4(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    alignas(64) float tile[TILE_BYTES / (4 * TOKEN_BLOCK)][TOKEN_BLOCK];
    const uint8_t* base = panel(plan, workspace, m, task.token_block);
    const float* token = token_scales(workspace) + task.token_block * TOKEN_BLOCK;
    for (int32_t kt = 0; kt < plan.k_tiles; ++kt) {
        const bool last = kt + 1 == plan.k_tiles;
        for (int32_t o = task.r0; o < task.r1; ++o) {
            int32_t* held = reinterpret_cast<int32_t*>(tile[o - task.r0]);
            __m256i a[NV];
            for (int j = 0; j < NV; ++j)
                a[j] = kt ? _mm256_load_si256(reinterpret_cast<const __m256i*>(held + 8 * j)) : _mm256_setzero_si256();
            const Block* block = segment_begin(plan, o, kt);
            const Block* end = segment_end(plan, o, kt);
            for (; block < end; ++block) {
                const typename Dot::Weights w = Dot::weights(block->weights);
                const uint8_t* p = base + block->offset;
                for (int j = 0; j < NV; ++j)
                    a[j] = Dot::accumulate(a[j], _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 32 * j)), w);
            }
            if (!last) {
                for (int j = 0; j < NV; ++j) _mm256_store_si256(reinterpret_cast<__m256i*>(held + 8 * j), a[j]);
                continue;
            }
            float* to = destination(out, plan.n, task, tile, o);
            for (int j = 0; j < NV; ++j) dequantize8(plan, o, a[j], token + 8 * j, to + 8 * j);
            if (out.rows)
                for (int j = NV; j < 8; ++j) _mm256_store_ps(to + 8 * j, _mm256_setzero_ps());
        }
    }
    store_transposed8<NV>(out, task, tile);
}

/* As quantize_1x4_avx512, 8 tokens x 8 groups at a time. */
inline void quantize8_1x4(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
    float* scales_t = static_cast<float*>(workspace) + token_block * TOKEN_BLOCK;
    uint8_t* out = panel(plan, workspace, m, token_block);
    const int64_t t0 = token_block * TOKEN_BLOCK;
    const int tokens = m - t0 < TOKEN_BLOCK ? static_cast<int>(m - t0) : TOKEN_BLOCK;
    const int32_t k = plan.k;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    float inverse[TOKEN_BLOCK];
    for (int t = 0; t < TOKEN_BLOCK; ++t) {
        if (t >= tokens) {
            scales_t[t] = inverse[t] = 0.0f;
            continue;
        }
        const float* row = x + (t0 + t) * k;
        __m256 peak = _mm256_setzero_ps();
        int32_t i = 0;
        for (; i + 8 <= k; i += 8) peak = _mm256_max_ps(peak, _mm256_andnot_ps(sign, _mm256_loadu_ps(row + i)));
        float lanes[8];
        _mm256_storeu_ps(lanes, peak);
        float amax = 0.0f;
        for (int j = 0; j < 8; ++j) amax = lanes[j] > amax ? lanes[j] : amax;
        for (; i < k; ++i) {
            const float a = row[i] < 0 ? -row[i] : row[i];
            amax = a > amax ? a : amax;
        }
        token_scale(amax, scales_t + t, inverse + t);
    }
    const __m256i offset = _mm256_set1_epi8(static_cast<char>(plan.act_offset));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int t = 0; t < TOKEN_BLOCK; t += 8) {
        for (int32_t g0 = 0; g0 < plan.groups; g0 += 8) {
            const int groups = plan.groups - g0 < 8 ? plan.groups - g0 : 8;
            __m256 r[8];
            for (int i = 0; i < 8; ++i) {
                if (t + i >= tokens) {
                    r[i] = _mm256_castsi256_ps(offset);
                    continue;
                }
                const float* row = x + (t0 + t + i) * k + 4 * g0;
                const __m256 scale = _mm256_set1_ps(inverse[t + i]);
                __m256i q[4];
                for (int c = 0; c < 4; ++c) {
                    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(4 * groups - 8 * c), lane);
                    q[c] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_maskload_ps(row + 8 * c, mask), scale));
                }
                // packs work within 128-bit lanes; the permute puts the 32 bytes back in input order.
                const __m256i words = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
                r[i] = _mm256_castsi256_ps(_mm256_add_epi8(_mm256_permutevar8x32_epi32(words, order), offset));
            }
            transpose8(r);
            for (int g = 0; g < groups; ++g)
                _mm256_store_ps(reinterpret_cast<float*>(out + (g0 + g) * GROUP_BYTES + 4 * t), r[g]);
        }
    }
}

template <class Dot>
void dispatch8_1x4(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    switch ((task.tokens + 7) / 8) {
        case 1: return compute8_1x4<Dot, 1>(plan, workspace, m, out, task);
        case 2: return compute8_1x4<Dot, 2>(plan, workspace, m, out, task);
        case 3: return compute8_1x4<Dot, 3>(plan, workspace, m, out, task);
        case 4: return compute8_1x4<Dot, 4>(plan, workspace, m, out, task);
        case 5: return compute8_1x4<Dot, 5>(plan, workspace, m, out, task);
        case 6: return compute8_1x4<Dot, 6>(plan, workspace, m, out, task);
        case 7: return compute8_1x4<Dot, 7>(plan, workspace, m, out, task);
        default: return compute8_1x4<Dot, 8>(plan, workspace, m, out, task);
    }
}

}  // namespace
}  // namespace sq

#endif
