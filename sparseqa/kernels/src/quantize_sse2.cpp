/* The portable quantizers (baseline x86-64 SSE2) of both block orientations, and the feed-forward chain's portable
 * handoff and peaks. */
#include <emmintrin.h>
#include <string.h>

#include <algorithm>

#include "internal.h"

namespace sq {

/* Per-token scales of one token block (as quantize_token computes them): the scale into the workspace, 127 / amax
 * into ``inverse``; tokens past m get 0. */
inline void token_block_scales(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block,
                               float* inverse) {
    float* scales_t = static_cast<float*>(workspace) + token_block * TOKEN_BLOCK;
    const int64_t t0 = token_block * TOKEN_BLOCK;
    const __m128 sign = _mm_set1_ps(-0.0f);
    for (int t = 0; t < TOKEN_BLOCK; ++t) {
        if (t0 + t >= m) {
            scales_t[t] = inverse[t] = 0.0f;
            continue;
        }
        const float* row = x + (t0 + t) * plan.k;
        __m128 peak = _mm_setzero_ps();
        for (int32_t i = 0; i < plan.k; i += 4) peak = _mm_max_ps(peak, _mm_andnot_ps(sign, _mm_loadu_ps(row + i)));
        float lanes[4];
        _mm_storeu_ps(lanes, peak);
        const float amax = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
        token_scale(amax, scales_t + t, inverse + t);
    }
}

/* The portable quantizer, 4 lanes at a time with baseline x86-64 SSE2 (cvtps rounds half to even like nearbyint). */
void quantize_1x4_sse2(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
    float inverses[TOKEN_BLOCK];
    token_block_scales(plan, x, m, workspace, token_block, inverses);
    uint8_t* out = panel(plan, workspace, m, token_block);
    const int64_t t0 = token_block * TOKEN_BLOCK;
    const int tokens = static_cast<int>(std::min<int64_t>(TOKEN_BLOCK, m - t0));
    const __m128i offset = _mm_set1_epi8(static_cast<char>(plan.act_offset));
    for (int t = 0; t < TOKEN_BLOCK; ++t) {
        uint8_t* lane = out + t * 4;
        if (t >= tokens) {
            for (int32_t g = 0; g < plan.groups; ++g) memcpy(lane + g * GROUP_BYTES, &offset, 4);
            continue;
        }
        const float* row = x + (t0 + t) * plan.k;
        const __m128 inverse = _mm_set1_ps(inverses[t]);
        for (int32_t g = 0; g < plan.groups; ++g) {
            __m128i q = _mm_cvtps_epi32(_mm_mul_ps(_mm_loadu_ps(row + 4 * g), inverse));
            q = _mm_packs_epi32(q, q);
            q = _mm_packs_epi16(q, q);
            q = _mm_add_epi8(q, offset);
            const int32_t word = _mm_cvtsi128_si32(q);
            memcpy(lane + g * GROUP_BYTES, &word, 4);
        }
    }
}


/* 16 rows of 16 bytes -> 16 columns: r[c] byte i becomes r[i] byte c (unpacks of 8, 16, 32 and 64 bits). */
inline void transpose16x16_epi8(__m128i r[16]) {
    __m128i a[16], b[16];
    for (int p = 0; p < 8; ++p) {
        a[2 * p] = _mm_unpacklo_epi8(r[2 * p], r[2 * p + 1]);
        a[2 * p + 1] = _mm_unpackhi_epi8(r[2 * p], r[2 * p + 1]);
    }
    // b[4 q + c]: rows 4 q .. 4 q + 3 of columns 4 c .. 4 c + 3, one 4-byte lane per column.
    for (int q = 0; q < 4; ++q)
        for (int h = 0; h < 2; ++h) {
            b[4 * q + 2 * h] = _mm_unpacklo_epi16(a[4 * q + h], a[4 * q + 2 + h]);
            b[4 * q + 2 * h + 1] = _mm_unpackhi_epi16(a[4 * q + h], a[4 * q + 2 + h]);
        }
    // a[8 z + 2 c + s]: rows 8 z .. 8 z + 7 of columns 4 c + 2 s and 4 c + 2 s + 1, one 8-byte half per column.
    for (int z = 0; z < 2; ++z)
        for (int c = 0; c < 4; ++c) {
            a[8 * z + 2 * c] = _mm_unpacklo_epi32(b[8 * z + c], b[8 * z + 4 + c]);
            a[8 * z + 2 * c + 1] = _mm_unpackhi_epi32(b[8 * z + c], b[8 * z + 4 + c]);
        }
    for (int c = 0; c < 4; ++c)
        for (int s = 0; s < 2; ++s) {
            r[4 * c + 2 * s] = _mm_unpacklo_epi64(a[2 * c + s], a[8 + 2 * c + s]);
            r[4 * c + 2 * s + 1] = _mm_unpackhi_epi64(a[2 * c + s], a[8 + 2 * c + s]);
        }
}

/* The portable 4x1 quantizer: per 16-byte lane L of the panel lines and 16 inputs, the 16 tokens that lane holds
 * (column_position) as rows of 16 quantized inputs, transposed into one 16-byte piece of 16 lines. */
void quantize_4x1_sse2(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
    float inverse[TOKEN_BLOCK];
    token_block_scales(plan, x, m, workspace, token_block, inverse);
    uint8_t* out = panel(plan, workspace, m, token_block);
    const int64_t t0 = token_block * TOKEN_BLOCK;
    const __m128i offset = _mm_set1_epi8(static_cast<char>(plan.act_offset));
    for (int32_t c0 = 0; c0 < plan.k; c0 += 16) {
        const int inputs = std::min<int32_t>(16, plan.k - c0);
        for (int lane = 0; lane < 4; ++lane) {
            __m128i r[16];
            for (int row = 0; row < 16; ++row) {
                const int t = 16 * (row >> 2) + 4 * lane + (row & 3);
                if (t0 + t >= m) {
                    r[row] = _mm_setzero_si128();
                    continue;
                }
                alignas(16) float tail[16] = {};
                const float* source = x + (t0 + t) * plan.k + c0;
                if (inputs < 16) source = static_cast<const float*>(memcpy(tail, source, 4 * inputs));
                const __m128 scale = _mm_set1_ps(inverse[t]);
                __m128i q[4];
                for (int c = 0; c < 4; ++c) {
                    const __m128 v = _mm_mul_ps(_mm_loadu_ps(source + 4 * c), scale);
                    q[c] = _mm_cvtps_epi32(v);
                }
                r[row] = _mm_packs_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3]));
            }
            transpose16x16_epi8(r);
            for (int c = 0; c < inputs; ++c)
                _mm_store_si128(reinterpret_cast<__m128i*>(out + (c0 + c) * TOKEN_BLOCK + 16 * lane),
                                _mm_add_epi8(r[c], offset));
        }
    }
}

void peaks_sse2(const float* rows, int32_t count, float* peak) {
    const __m128 sign = _mm_set1_ps(-0.0f);
    for (int t = 0; t < TOKEN_BLOCK; t += 4) {
        __m128 high = _mm_setzero_ps();
        for (int32_t r = 0; r < count; ++r) high = _mm_max_ps(high, _mm_andnot_ps(sign, _mm_loadu_ps(rows + r * TOKEN_BLOCK + t)));
        _mm_storeu_ps(peak + t, high);
    }
}

/* The portable handoff, 16 tokens at a time: for 16-byte lane L of a panel line (tokens 16 j + 4 L + u at byte
 * 4 j + u, column_position), the 4 tokens 16 j + 4 L .. of each j are 4 consecutive floats of the row, so rounding
 * them and packing the four j by packs_epi32 and packs_epi16 yields the lane in order. For 1x4 blocks, 4 inputs'
 * lanes are interleaved by byte and word unpacks into 4-byte lanes of consecutive tokens, as the 4x1 kernels do. */
void handoff_sse2(const Plan& plan, const float* rows, int32_t i0, int32_t i1, const float* inverse, void* workspace,
                  int64_t m, int64_t token_block) {
    uint8_t* out = panel(plan, workspace, m, token_block);
    const __m128i offset = _mm_set1_epi8(static_cast<char>(plan.act_offset));
    __m128 inverses[16];
    for (int i = 0; i < 16; ++i) inverses[i] = _mm_loadu_ps(inverse + 4 * i);
    // Lane L of input i's panel line.
    const auto lane = [&](int32_t i, int L) {
        const float* row = rows + static_cast<int64_t>(i - i0) * TOKEN_BLOCK + 4 * L;
        __m128i q[4];
        for (int j = 0; j < 4; ++j) {
            const __m128 v = _mm_mul_ps(_mm_loadu_ps(row + 16 * j), inverses[4 * j + L]);
            q[j] = _mm_cvtps_epi32(v);
        }
        return _mm_packs_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3]));
    };
    if (plan.orientation == COLUMNS_4X1) {
        for (int32_t i = i0; i < i1; ++i)
            for (int L = 0; L < 4; ++L)
                _mm_store_si128(reinterpret_cast<__m128i*>(out + static_cast<int64_t>(i) * TOKEN_BLOCK + 16 * L),
                                _mm_add_epi8(lane(i, L), offset));
        return;
    }
    for (int32_t i = i0; i < i1; i += 4) {
        uint8_t* group = out + static_cast<int64_t>(i / 4) * GROUP_BYTES;
        for (int L = 0; L < 4; ++L) {
            const __m128i c0 = lane(i, L), c1 = lane(i + 1, L), c2 = lane(i + 2, L), c3 = lane(i + 3, L);
            const __m128i low01 = _mm_unpacklo_epi8(c0, c1), low23 = _mm_unpacklo_epi8(c2, c3);
            const __m128i high01 = _mm_unpackhi_epi8(c0, c1), high23 = _mm_unpackhi_epi8(c2, c3);
            // Tokens 16 j + 4 L .. + 3, 4 bytes each: at byte 4 (16 j + 4 L) of the group's line.
            const __m128i tokens[4] = {_mm_unpacklo_epi16(low01, low23), _mm_unpackhi_epi16(low01, low23),
                                       _mm_unpacklo_epi16(high01, high23), _mm_unpackhi_epi16(high01, high23)};
            for (int j = 0; j < 4; ++j)
                _mm_store_si128(reinterpret_cast<__m128i*>(group + 4 * (16 * j + 4 * L)), _mm_add_epi8(tokens[j], offset));
        }
    }
}

}  // namespace sq
