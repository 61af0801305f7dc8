/* AVX-512 VNNI: 16 tokens per zmm, one broadcast weight word and one vpdpbusd per nonzero block per 16 tokens.
 * Accumulators hold 16 tokens of one output; 16 outputs at a time are dequantized and transposed in registers. */
#include <immintrin.h>
#include <string.h>

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

template <int NV>
void compute(const Plan& plan, const void* workspace, int64_t m, float* y, const Task& task) {
    alignas(64) int32_t tile[TILE_BYTES / (4 * TOKEN_BLOCK)][TOKEN_BLOCK];
    const uint8_t* base = panel(plan, workspace, m, task.token_block);
    for (int32_t kt = 0; kt < plan.k_tiles; ++kt) {
        for (int32_t o = task.r0; o < task.r1; ++o) {
            int32_t* out = tile[o - task.r0];
            // Named accumulators (not arrays): GCC then keeps them in place instead of shuffling copies each step.
            __m512i a0, a1, a2, a3, b0, b1, b2, b3;
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = _mm512_setzero_si512();
            if (kt) {
                a0 = _mm512_load_si512(out);
                if (NV > 1) a1 = _mm512_load_si512(out + 16);
                if (NV > 2) a2 = _mm512_load_si512(out + 32);
                if (NV > 3) a3 = _mm512_load_si512(out + 48);
            }
            // Eight distinct registers from here on: GCC 12 otherwise merges the zeros and copies them every step.
            asm("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(b0), "+v"(b1), "+v"(b2), "+v"(b3));
            const Block* block = segment_begin(plan, o, kt);
            const Block* end = segment_end(plan, o, kt);
            if (o + 2 < task.r1) {
                // The row after next's blocks into L1 ahead of use.
                const char* later = reinterpret_cast<const char*>(segment_begin(plan, o + 2, kt));
                _mm_prefetch(later, _MM_HINT_T0);
                _mm_prefetch(later + 64, _MM_HINT_T0);
                _mm_prefetch(later + 128, _MM_HINT_T0);
                _mm_prefetch(later + 192, _MM_HINT_T0);
            }
            // Two blocks per step into two accumulator sets: twice the independent vpdpbusd chains.
            for (; block + 1 < end; block += 2) {
                // Each block as one 64-bit load (offset low, weights high): one load fewer per block than two
                // 32-bit ones; the barrier keeps GCC from splitting it back.
                uint64_t word0, word1;
                memcpy(&word0, block, 8);
                memcpy(&word1, block + 1, 8);
                asm("" : "+r"(word0), "+r"(word1));
                const __m512i w0 = _mm512_set1_epi32(static_cast<int32_t>(word0 >> 32));
                const __m512i w1 = _mm512_set1_epi32(static_cast<int32_t>(word1 >> 32));
                const uint8_t* p0 = base + static_cast<int32_t>(word0);
                const uint8_t* p1 = base + static_cast<int32_t>(word1);
                a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(p0), w0);
                b0 = _mm512_dpbusd_epi32(b0, _mm512_load_si512(p1), w1);
                if (NV > 1) a1 = _mm512_dpbusd_epi32(a1, _mm512_load_si512(p0 + 64), w0);
                if (NV > 1) b1 = _mm512_dpbusd_epi32(b1, _mm512_load_si512(p1 + 64), w1);
                if (NV > 2) a2 = _mm512_dpbusd_epi32(a2, _mm512_load_si512(p0 + 128), w0);
                if (NV > 2) b2 = _mm512_dpbusd_epi32(b2, _mm512_load_si512(p1 + 128), w1);
                if (NV > 3) a3 = _mm512_dpbusd_epi32(a3, _mm512_load_si512(p0 + 192), w0);
                if (NV > 3) b3 = _mm512_dpbusd_epi32(b3, _mm512_load_si512(p1 + 192), w1);
            }
            if (block < end) {
                const __m512i w0 = _mm512_set1_epi32(block[0].weights);
                const uint8_t* p0 = base + block[0].offset;
                a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(p0), w0);
                if (NV > 1) a1 = _mm512_dpbusd_epi32(a1, _mm512_load_si512(p0 + 64), w0);
                if (NV > 2) a2 = _mm512_dpbusd_epi32(a2, _mm512_load_si512(p0 + 128), w0);
                if (NV > 3) a3 = _mm512_dpbusd_epi32(a3, _mm512_load_si512(p0 + 192), w0);
            }
            _mm512_store_si512(out, _mm512_add_epi32(a0, b0));
            if (NV > 1) _mm512_store_si512(out + 16, _mm512_add_epi32(a1, b1));
            if (NV > 2) _mm512_store_si512(out + 32, _mm512_add_epi32(a2, b2));
            if (NV > 3) _mm512_store_si512(out + 48, _mm512_add_epi32(a3, b3));
        }
    }
    // Dequantize in place (row by row, 16 tokens per vector), then transpose 16 outputs x 16 tokens into y.
    const float* scales_t = token_scales(workspace) + task.token_block * TOKEN_BLOCK;
    for (int32_t o = task.r0; o < task.r1; ++o) {
        int32_t* row = tile[o - task.r0];
        const __m512i offset = _mm512_set1_epi32(plan.offset_sum[o]);
        const __m512 scale = _mm512_set1_ps(plan.scales[o]), bias = _mm512_set1_ps(plan.bias[o]);
        for (int j = 0; j < NV; ++j) {
            const __m512 acc = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(row + 16 * j), offset));
            const __m512 s = _mm512_mul_ps(_mm512_load_ps(scales_t + 16 * j), scale);
            _mm512_store_ps(reinterpret_cast<float*>(row + 16 * j), _mm512_fmadd_ps(acc, s, bias));
        }
    }
    const int64_t t0 = task.token_block * TOKEN_BLOCK;
    // Token vector outermost: one token row's outputs of this task (up to 256 contiguous bytes) are written together.
    for (int j = 0; j < NV; ++j) {
        for (int32_t o0 = task.r0; o0 < task.r1; o0 += 16) {
            const int outputs = task.r1 - o0 < 16 ? task.r1 - o0 : 16;
            const __mmask16 mask = static_cast<__mmask16>((1u << outputs) - 1);
            __m512 r[16];
            for (int i = 0; i < 16; ++i)
                r[i] = _mm512_load_ps(reinterpret_cast<const float*>(tile[o0 - task.r0 + (i < outputs ? i : 0)] + 16 * j));
            transpose16(r);
            const int tokens = task.tokens - 16 * j < 16 ? task.tokens - 16 * j : 16;
            for (int i = 0; i < tokens; ++i) _mm512_mask_storeu_ps(y + (t0 + 16 * j + i) * plan.n + o0, mask, r[i]);
        }
    }
}

}  // namespace

void quantize_avx512(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
    float* scales_t = static_cast<float*>(workspace) + token_block * TOKEN_BLOCK;
    uint8_t* out = panel(plan, workspace, m, token_block);
    const int64_t t0 = token_block * TOKEN_BLOCK;
    const int tokens = m - t0 < TOKEN_BLOCK ? static_cast<int>(m - t0) : TOKEN_BLOCK;
    const int32_t k = plan.k;
    const __mmask16 tail = static_cast<__mmask16>((1u << (k % 16)) - 1);
    float inverse[TOKEN_BLOCK];
    for (int t = 0; t < TOKEN_BLOCK; ++t) {
        if (t >= tokens) {
            scales_t[t] = inverse[t] = 0.0f;
            continue;
        }
        const float* row = x + (t0 + t) * k;
        __m512 peak = _mm512_setzero_ps();
        int32_t i = 0;
        for (; i + 16 <= k; i += 16) peak = _mm512_max_ps(peak, _mm512_abs_ps(_mm512_loadu_ps(row + i)));
        if (tail) peak = _mm512_max_ps(peak, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, row + i)));
        const float amax = _mm512_reduce_max_ps(peak);
        const bool zero = !(amax >= QUANT_MIN);
        scales_t[t] = zero ? 0.0f : amax / 127.0f;
        inverse[t] = zero ? 0.0f : 127.0f / amax;
    }
    // 16 tokens x 16 groups at a time: quantize each token's 64 inputs into one zmm of 16 4-byte lanes, then
    // transpose so that each zmm holds one group for 16 tokens, which is a 64-byte line of the panel.
    const __m512 low = _mm512_set1_ps(-127.0f), high = _mm512_set1_ps(127.0f);
    const __m512i offset = _mm512_set1_epi8(static_cast<char>(plan.act_offset));
    for (int t = 0; t < TOKEN_BLOCK; t += 16) {
        for (int32_t g0 = 0; g0 < plan.groups; g0 += 16) {
            const int groups = plan.groups - g0 < 16 ? plan.groups - g0 : 16;
            __m512 r[16];
            for (int i = 0; i < 16; ++i) {
                if (t + i >= tokens) {
                    r[i] = _mm512_castsi512_ps(offset);
                    continue;
                }
                const float* row = x + (t0 + t + i) * k + 4 * g0;
                const __m512 scale = _mm512_set1_ps(inverse[t + i]);
                __m128i bytes[4];
                for (int c = 0; c < 4; ++c) {
                    const int left = 4 * groups - 16 * c;
                    const __mmask16 mask = left >= 16 ? 0xffff : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1);
                    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, row + 16 * c), scale);
                    v = _mm512_min_ps(high, _mm512_max_ps(low, v));
                    bytes[c] = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v));
                }
                __m512i line = _mm512_castsi128_si512(bytes[0]);
                line = _mm512_inserti32x4(line, bytes[1], 1);
                line = _mm512_inserti32x4(line, bytes[2], 2);
                line = _mm512_inserti32x4(line, bytes[3], 3);
                r[i] = _mm512_castsi512_ps(_mm512_add_epi8(line, offset));
            }
            transpose16(r);
            for (int g = 0; g < groups; ++g)
                _mm512_store_ps(reinterpret_cast<float*>(out + (g0 + g) * GROUP_BYTES + 4 * t), r[g]);
        }
    }
}

void compute_avx512vnni(const Plan& plan, const void* workspace, int64_t m, float* y, const Task& task) {
    switch ((task.tokens + 15) / 16) {
        case 1: return compute<1>(plan, workspace, m, y, task);
        case 2: return compute<2>(plan, workspace, m, y, task);
        case 3: return compute<3>(plan, workspace, m, y, task);
        default: return compute<4>(plan, workspace, m, y, task);
    }
}

}  // namespace sq
