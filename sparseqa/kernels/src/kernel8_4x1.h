/* 4x1 blocks, 8 tokens per ymm, for any Dot (dot_avx2.h, dot_avxvnni.h). */
#ifndef SPARSEQA_KERNEL8_4X1_H
#define SPARSEQA_KERNEL8_4X1_H

#include "kernel8.h"

namespace sq {
namespace {

/* 4x1 blocks, 8 tokens per ymm: per quad, the 4 inputs' panel lines are interleaved by byte and word unpacks into
 * 4-byte lanes of 8 consecutive tokens, each vector feeding all 4 outputs. A 64-token line spans two ymm (h) and each
 * byte unpack half (s) gives two token vectors, so the quads are read in up to 4 passes of 4 outputs x 16 tokens
 * (8 accumulators: AVX2 has 16 ymm registers). Pass (h, s) covers tokens 32 s + 8 h + [0, 8) and [16, 24). The last
 * k tile dequantizes the token vectors that hold tokens (vectors = their count); in rows, the others are zeroed. */
template <class Dot>
void compute8_4x1(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    alignas(64) float tile[ROW_GROUP][TOKEN_BLOCK];
    const uint8_t* base = panel(plan, workspace, m, task.token_block);
    const float* token = token_scales(workspace) + task.token_block * TOKEN_BLOCK;
    const int vectors = (task.tokens + 7) / 8;
    for (int32_t kt = 0; kt < plan.k_tiles; ++kt) {
        const bool last = kt + 1 == plan.k_tiles;
        for (int32_t g = task.r0 / 4; g < task.r1 / 4; ++g) {
            int32_t* held = reinterpret_cast<int32_t*>(tile[4 * g - task.r0]);
            for (int pass = 0; pass < 4; ++pass) {
                const int h = pass & 1, s = pass >> 1;
                const int first = 32 * s + 8 * h;  // tokens first + [0, 8) and first + 16 + [0, 8)
                if (first >= task.tokens) {
                    if (last && out.rows)
                        for (int r = 0; r < 4; ++r)
                            for (int j = 0; j < 2; ++j)
                                _mm256_store_ps(destination(out, plan.n, task, tile, 4 * g + r) + first + 16 * j,
                                                _mm256_setzero_ps());
                    continue;
                }
                __m256i acc[4][2];
                for (int r = 0; r < 4; ++r)
                    for (int j = 0; j < 2; ++j)
                        acc[r][j] = kt ? _mm256_load_si256(reinterpret_cast<const __m256i*>(held + TOKEN_BLOCK * r + first + 16 * j))
                                       : _mm256_setzero_si256();
                for (const Quad *quad = quads_begin(plan, g, kt), *end = quads_end(plan, g, kt); quad < end; ++quad) {
                    __m256i c[4];
                    for (int i = 0; i < 4; ++i)
                        c[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(base + quad->offset[i] + 32 * h));
                    const __m256i x01 = s ? _mm256_unpackhi_epi8(c[0], c[1]) : _mm256_unpacklo_epi8(c[0], c[1]);
                    const __m256i x23 = s ? _mm256_unpackhi_epi8(c[2], c[3]) : _mm256_unpacklo_epi8(c[2], c[3]);
                    const __m256i v0 = _mm256_unpacklo_epi16(x01, x23), v1 = _mm256_unpackhi_epi16(x01, x23);
                    for (int r = 0; r < 4; ++r) {
                        const typename Dot::Weights w = Dot::weights(quad->weights[r]);
                        acc[r][0] = Dot::accumulate(acc[r][0], v0, w);
                        acc[r][1] = Dot::accumulate(acc[r][1], v1, w);
                    }
                }
                for (int r = 0; r < 4; ++r) {
                    const int32_t o = 4 * g + r;
                    for (int j = 0; j < 2; ++j) {
                        const int t = first + 16 * j;
                        if (!last)
                            _mm256_store_si256(reinterpret_cast<__m256i*>(held + TOKEN_BLOCK * r + t), acc[r][j]);
                        else if (t / 8 < vectors)
                            dequantize8(plan, o, acc[r][j], token + t, destination(out, plan.n, task, tile, o) + t);
                        else if (out.rows)
                            _mm256_store_ps(destination(out, plan.n, task, tile, o) + t, _mm256_setzero_ps());
                    }
                }
            }
        }
    }
    switch (vectors) {
        case 1: return store_transposed8<1>(out, task, tile);
        case 2: return store_transposed8<2>(out, task, tile);
        case 3: return store_transposed8<3>(out, task, tile);
        case 4: return store_transposed8<4>(out, task, tile);
        case 5: return store_transposed8<5>(out, task, tile);
        case 6: return store_transposed8<6>(out, task, tile);
        case 7: return store_transposed8<7>(out, task, tile);
        default: return store_transposed8<8>(out, task, tile);
    }
}

}  // namespace
}  // namespace sq

#endif
