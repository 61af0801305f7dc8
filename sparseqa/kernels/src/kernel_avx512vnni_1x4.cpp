/* AVX-512 VNNI, 1x4 blocks (1 output x 4 consecutive inputs): one broadcast weight word and one vpdpbusd per nonzero
 * block per 16 tokens; accumulators hold 16 tokens of one output. Activations are packed 4 inputs per 32-bit lane. */
#include <string.h>

#include "avx512.h"

namespace sq {
namespace {

/* The int32 sums of a task's rows stay in ``tile`` between k tiles; the last k tile dequantizes them in registers. */
template <int NV>
void compute_1x4(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    alignas(64) float tile[TILE_BYTES / (4 * TOKEN_BLOCK)][TOKEN_BLOCK];
    const uint8_t* base = panel(plan, workspace, m, task.token_block);
    __m512 token[NV];
    load_token_scales<NV>(workspace, task, token);
    for (int32_t kt = 0; kt < plan.k_tiles; ++kt) {
        const bool last = kt + 1 == plan.k_tiles;
        for (int32_t o = task.r0; o < task.r1; ++o) {
            int32_t* held = reinterpret_cast<int32_t*>(tile[o - task.r0]);
            // Named accumulators (not arrays): GCC then keeps them in place instead of shuffling copies each step.
            __m512i a0, a1, a2, a3, b0, b1, b2, b3;
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = _mm512_setzero_si512();
            if (kt) {
                a0 = _mm512_load_si512(held);
                if (NV > 1) a1 = _mm512_load_si512(held + 16);
                if (NV > 2) a2 = _mm512_load_si512(held + 32);
                if (NV > 3) a3 = _mm512_load_si512(held + 48);
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
            const __m512i sums[4] = {_mm512_add_epi32(a0, b0), _mm512_add_epi32(a1, b1), _mm512_add_epi32(a2, b2),
                                     _mm512_add_epi32(a3, b3)};
            if (last) {
                dequantize<NV>(plan, o, sums, token, destination(out, plan.n, task, tile, o), out.rows);
                continue;
            }
            for (int j = 0; j < NV; ++j) _mm512_store_si512(held + 16 * j, sums[j]);
        }
    }
    store_transposed<NV>(out, task, tile);
}

}  // namespace

void quantize_1x4_avx512(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
    uint8_t* out = panel(plan, workspace, m, token_block);
    const int64_t t0 = token_block * TOKEN_BLOCK;
    const int tokens = m - t0 < TOKEN_BLOCK ? static_cast<int>(m - t0) : TOKEN_BLOCK;
    const int32_t k = plan.k;
    float inverse[TOKEN_BLOCK];
    token_scales_avx512(plan, x, m, workspace, token_block, inverse);
    // 16 tokens x 16 groups at a time: quantize each token's 64 inputs into one zmm of 16 4-byte lanes, then
    // transpose so that each zmm holds one group for 16 tokens, which is a 64-byte line of the panel.
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
                    bytes[c] = _mm512_cvtepi32_epi8(rounded(_mm512_maskz_loadu_ps(mask, row + 16 * c), scale));
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

void compute_1x4_avx512vnni(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    switch ((task.tokens + 15) / 16) {
        case 1: return compute_1x4<1>(plan, workspace, m, out, task);
        case 2: return compute_1x4<2>(plan, workspace, m, out, task);
        case 3: return compute_1x4<3>(plan, workspace, m, out, task);
        default: return compute_1x4<4>(plan, workspace, m, out, task);
    }
}

}  // namespace sq
