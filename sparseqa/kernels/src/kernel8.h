/* The 8-tokens-per-ymm kernels (1x4 and 4x1 blocks) shared by the AVX2 and AVX-VNNI translation units (each
 * compiles them under its own flags, in an anonymous namespace, with its own dot product). Same structure as the
 * AVX-512 kernels. */
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

/* The int32 sums of a task's rows stay in ``tile`` between k tiles; the last k tile dequantizes them in registers
 * (in rows, the vectors past NV are zeroed). */
template <class Dot, int NV>
void compute8(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
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

/* 4x1 blocks, 8 tokens per ymm: per quad, the 4 inputs' panel lines are interleaved by byte and word unpacks into
 * 4-byte lanes of 8 consecutive tokens, each vector feeding all 4 outputs. A 64-token line spans two ymm (h) and each
 * byte unpack half (s) gives two token vectors, so the quads are read in up to 4 passes of 4 outputs x 16 tokens
 * (8 accumulators: AVX2 has 16 ymm registers). Pass (h, s) covers tokens 32 s + 8 h + [0, 8) and [16, 24). The last
 * k tile dequantizes the token vectors that hold tokens (vectors = their count); in rows, the others are zeroed. */
template <class Dot>
void compute_columns8(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
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

/* As quantize_avx512, 8 tokens x 8 groups at a time. */
inline void quantize8(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
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
void dispatch8(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    switch ((task.tokens + 7) / 8) {
        case 1: return compute8<Dot, 1>(plan, workspace, m, out, task);
        case 2: return compute8<Dot, 2>(plan, workspace, m, out, task);
        case 3: return compute8<Dot, 3>(plan, workspace, m, out, task);
        case 4: return compute8<Dot, 4>(plan, workspace, m, out, task);
        case 5: return compute8<Dot, 5>(plan, workspace, m, out, task);
        case 6: return compute8<Dot, 6>(plan, workspace, m, out, task);
        case 7: return compute8<Dot, 7>(plan, workspace, m, out, task);
        default: return compute8<Dot, 8>(plan, workspace, m, out, task);
    }
}

}  // namespace
}  // namespace sq
