/* The 8-tokens-per-ymm kernel shared by the AVX2 and AVX-VNNI translation units (each compiles it under its own
 * flags, in an anonymous namespace, with its own dot product). Same structure as the AVX-512 kernel. */
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

template <class Dot, int NV>
void compute8(const Plan& plan, const void* workspace, int64_t m, float* y, const Task& task) {
    alignas(64) int32_t tile[MAX_TASK_ROWS][TOKEN_BLOCK];
    const uint8_t* base = panel(plan, workspace, m, task.token_block);
    const int32_t stride = plan.k_tiles + 1;
    for (int32_t kt = 0; kt < plan.k_tiles; ++kt) {
        for (int32_t o = task.r0; o < task.r1; ++o) {
            int32_t* out = tile[o - task.r0];
            __m256i a[NV];
            for (int j = 0; j < NV; ++j)
                a[j] = kt ? _mm256_load_si256(reinterpret_cast<const __m256i*>(out + 8 * j)) : _mm256_setzero_si256();
            const Block* block = plan.blocks + plan.tile_ptr[(int64_t)o * stride + kt];
            const Block* end = plan.blocks + plan.tile_ptr[(int64_t)o * stride + kt + 1];
            for (; block < end; ++block) {
                const typename Dot::Weights w = Dot::weights(block->weights);
                const uint8_t* p = base + block->offset;
                for (int j = 0; j < NV; ++j)
                    a[j] = Dot::accumulate(a[j], _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 32 * j)), w);
            }
            for (int j = 0; j < NV; ++j) _mm256_store_si256(reinterpret_cast<__m256i*>(out + 8 * j), a[j]);
        }
    }
    const float* scales_t = token_scales(workspace) + task.token_block * TOKEN_BLOCK;
    for (int32_t o = task.r0; o < task.r1; ++o) {
        int32_t* row = tile[o - task.r0];
        const __m256i offset = _mm256_set1_epi32(plan.offset_sum[o]);
        const __m256 scale = _mm256_set1_ps(plan.scales[o]), bias = _mm256_set1_ps(plan.bias[o]);
        for (int j = 0; j < NV; ++j) {
            const __m256i sums = _mm256_load_si256(reinterpret_cast<const __m256i*>(row + 8 * j));
            const __m256 acc = _mm256_cvtepi32_ps(_mm256_sub_epi32(sums, offset));
            const __m256 s = _mm256_mul_ps(_mm256_load_ps(scales_t + 8 * j), scale);
            _mm256_store_ps(reinterpret_cast<float*>(row + 8 * j), _mm256_fmadd_ps(acc, s, bias));
        }
    }
    const int64_t t0 = task.token_block * TOKEN_BLOCK;
    for (int32_t o0 = task.r0; o0 < task.r1; o0 += 8) {
        const int outputs = task.r1 - o0 < 8 ? task.r1 - o0 : 8;
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(outputs), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int j = 0; j < NV; ++j) {
            __m256 r[8];
            for (int i = 0; i < 8; ++i)
                r[i] = _mm256_load_ps(reinterpret_cast<const float*>(tile[o0 - task.r0 + (i < outputs ? i : 0)] + 8 * j));
            transpose8(r);
            const int tokens = task.tokens - 8 * j < 8 ? task.tokens - 8 * j : 8;
            for (int i = 0; i < tokens; ++i) _mm256_maskstore_ps(y + (t0 + 8 * j + i) * plan.n + o0, mask, r[i]);
        }
    }
}

template <class Dot>
void dispatch8(const Plan& plan, const void* workspace, int64_t m, float* y, const Task& task) {
    switch ((task.tokens + 7) / 8) {
        case 1: return compute8<Dot, 1>(plan, workspace, m, y, task);
        case 2: return compute8<Dot, 2>(plan, workspace, m, y, task);
        case 3: return compute8<Dot, 3>(plan, workspace, m, y, task);
        case 4: return compute8<Dot, 4>(plan, workspace, m, y, task);
        case 5: return compute8<Dot, 5>(plan, workspace, m, y, task);
        case 6: return compute8<Dot, 6>(plan, workspace, m, y, task);
        case 7: return compute8<Dot, 7>(plan, workspace, m, y, task);
        default: return compute8<Dot, 8>(plan, workspace, m, y, task);
    }
}

}  // namespace
}  // namespace sq
