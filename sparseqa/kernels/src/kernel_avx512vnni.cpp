/* AVX-512 VNNI, 16 tokens per zmm.
 * 1x4 blocks: one broadcast weight word and one vpdpbusd per nonzero block per 16 tokens; accumulators hold 16 tokens
 * of one output. 4x1 blocks: per 4 nonzero blocks of a 4-output group (a quad), the 4 inputs' 64-token panel lines
 * are interleaved by byte and word unpacks into 4-byte lanes of 16 tokens, and each such vector feeds all 4 outputs:
 * 16 vpdpbusd per 4 line loads and 8 unpacks.
 * The last k tile dequantizes each output's sums in registers; 16 outputs x 16 tokens are then transposed in
 * registers into y. */
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

/* The int32 sums of a task's rows stay in ``tile`` between k tiles; the last k tile dequantizes them in registers. */
template <int NV>
void compute(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
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

template <int NV>
void compute_columns(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    alignas(64) float tile[ROW_GROUP][TOKEN_BLOCK];
    const uint8_t* base = panel(plan, workspace, m, task.token_block);
    __m512 token[NV];
    load_token_scales<NV>(workspace, task, token);
    for (int32_t kt = 0; kt < plan.k_tiles; ++kt) {
        const bool last = kt + 1 == plan.k_tiles;
        for (int32_t g = task.r0 / 4; g < task.r1 / 4; ++g) {
            int32_t* held = reinterpret_cast<int32_t*>(tile[4 * g - task.r0]);
            __m512i acc[4][NV];
            for (int r = 0; r < 4; ++r)
                for (int j = 0; j < NV; ++j)
                    acc[r][j] = kt ? _mm512_load_si512(held + TOKEN_BLOCK * r + 16 * j) : _mm512_setzero_si512();
            for (const Quad *quad = quads_begin(plan, g, kt), *end = quads_end(plan, g, kt); quad < end; ++quad) {
                const __m512i c0 = _mm512_load_si512(base + quad->offset[0]);
                const __m512i c1 = _mm512_load_si512(base + quad->offset[1]);
                const __m512i c2 = _mm512_load_si512(base + quad->offset[2]);
                const __m512i c3 = _mm512_load_si512(base + quad->offset[3]);
                // v[j]: 16 tokens 16 j .. 16 j + 15 (column_position), each a 4-byte lane of the quad's 4 inputs.
                __m512i v[4];
                const __m512i low01 = _mm512_unpacklo_epi8(c0, c1), low23 = _mm512_unpacklo_epi8(c2, c3);
                v[0] = _mm512_unpacklo_epi16(low01, low23);
                if (NV > 1) v[1] = _mm512_unpackhi_epi16(low01, low23);
                if (NV > 2) {
                    const __m512i high01 = _mm512_unpackhi_epi8(c0, c1), high23 = _mm512_unpackhi_epi8(c2, c3);
                    v[2] = _mm512_unpacklo_epi16(high01, high23);
                    if (NV > 3) v[3] = _mm512_unpackhi_epi16(high01, high23);
                }
                for (int r = 0; r < 4; ++r) {
                    const __m512i w = _mm512_set1_epi32(quad->weights[r]);
                    for (int j = 0; j < NV; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], v[j], w);
                }
            }
            for (int r = 0; r < 4; ++r) {
                if (last) {
                    const int32_t o = 4 * g + r;
                    dequantize<NV>(plan, o, acc[r], token, destination(out, plan.n, task, tile, o), out.rows);
                    continue;
                }
                for (int j = 0; j < NV; ++j) _mm512_store_si512(held + TOKEN_BLOCK * r + 16 * j, acc[r][j]);
            }
        }
    }
    store_transposed<NV>(out, task, tile);
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

/* The 4 x 4 dwords of each 128-bit lane of a[0..3] transposed: a[v] dword j becomes a[j] dword v. */
inline void transpose4x4_epi32_lanes(__m512i a[4]) {
    const __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
    a[0] = _mm512_unpacklo_epi64(t0, t2);
    a[1] = _mm512_unpackhi_epi64(t0, t2);
    a[2] = _mm512_unpacklo_epi64(t1, t3);
    a[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* The 4 x 4 128-bit lanes of b[0..3] transposed: b[L] lane l becomes b[l] lane L. */
inline void transpose4x4_lanes(__m512i b[4]) {
    const __m512i s0 = _mm512_shuffle_i32x4(b[0], b[1], 0x44), s1 = _mm512_shuffle_i32x4(b[0], b[1], 0xee);
    const __m512i s2 = _mm512_shuffle_i32x4(b[2], b[3], 0x44), s3 = _mm512_shuffle_i32x4(b[2], b[3], 0xee);
    b[0] = _mm512_shuffle_i32x4(s0, s2, 0x88);
    b[1] = _mm512_shuffle_i32x4(s0, s2, 0xdd);
    b[2] = _mm512_shuffle_i32x4(s1, s3, 0x88);
    b[3] = _mm512_shuffle_i32x4(s1, s3, 0xdd);
}

}  // namespace

/* As quantize_columns_sse2, in two passes over one token block.
 * 1. Four consecutive tokens 4 g .. 4 g + 3 at a time, so that x is read in order and each row is still in cache when
 *    it is rounded: per 16 inputs, the 4 tokens are quantized and packed into one zmm whose lane l holds their inputs
 *    4 l .. 4 l + 3 (byte 4 u + v: token u, input 4 l + v), and a byte shuffle makes that byte 4 v + u, so dword v of
 *    lane l is input 4 l + v for the 4 tokens. It is stored chunk-major (per 16 inputs, the 16 zmm of the 64 tokens:
 *    1 KB) in the panel itself: a chunk's KB is where its 16 lines go (a chunk short of 16 inputs uses a buffer).
 * 2. Chunk by chunk, its KB in 16 registers to its 16 lines. Tokens 4 g + u = 16 j + 4 L + u: transposing the dwords
 *    over j and then the lanes over L puts, for input 4 l + v, the 4 tokens 16 j + 4 L + .. at dword j of lane L:
 *    byte 16 L + 4 j + u of its line, as column_position says. */
void quantize_columns_avx512(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
    uint8_t* out = panel(plan, workspace, m, token_block);
    float* scales_t = static_cast<float*>(workspace) + token_block * TOKEN_BLOCK;
    const int64_t t0 = token_block * TOKEN_BLOCK;
    const int32_t k = plan.k;
    const int32_t whole = k / 16 * 16;  // inputs in chunks of 16
    const __mmask16 rest = static_cast<__mmask16>((1u << (k - whole)) - 1);
    // Per 16-byte lane, bytes 0, 4, 8, 12, 1, 5, 9, 13, ...: dword v of the result gathers byte v of each dword.
    const __m512i swap = _mm512_set4_epi32(0x0f0b0703, 0x0e0a0602, 0x0d090501, 0x0c080400);
    alignas(64) uint8_t short_chunk[TOKEN_BLOCK * 16];
    for (int g = 0; g < TOKEN_BLOCK / 4; ++g) {
        const float* rows[4];
        __m512 inverse[4];
        // Tokens past m are never read and become zeros.
        const int64_t left = m - (t0 + 4 * g);
        const int present = left < 0 ? 0 : left < 4 ? static_cast<int>(left) : 4;
        for (int u = 0; u < 4; ++u) {
            const int t = 4 * g + u;
            rows[u] = u < present ? x + (t0 + t) * k : x;
            float scale = 0.0f, inv = 0.0f;
            if (u < present) token_scale(token_amax_avx512(rows[u], k), &scale, &inv);
            scales_t[t] = scale;
            inverse[u] = _mm512_set1_ps(inv);
        }
        const auto four = [&](int32_t c0, __mmask16 mask) {
            __m512i q[4];
            for (int u = 0; u < 4; ++u)
                q[u] = u < present ? rounded(_mm512_maskz_loadu_ps(mask, rows[u] + c0), inverse[u]) : _mm512_setzero_si512();
            return _mm512_shuffle_epi8(_mm512_packs_epi16(_mm512_packs_epi32(q[0], q[1]), _mm512_packs_epi32(q[2], q[3])),
                                       swap);
        };
        for (int32_t c0 = 0; c0 < whole; c0 += 16) _mm512_store_si512(out + c0 * TOKEN_BLOCK + 64 * g, four(c0, 0xffff));
        if (rest) _mm512_store_si512(short_chunk + 64 * g, four(whole, rest));
    }
    const __m512i offset = _mm512_set1_epi8(static_cast<char>(plan.act_offset));
    for (int32_t c0 = 0; c0 < k; c0 += 16) {
        const int inputs = k - c0 < 16 ? k - c0 : 16;
        const uint8_t* chunk = c0 < whole ? out + c0 * TOKEN_BLOCK : short_chunk;
        __m512i lines[4][4];  // [L][j], then [L][v] after the dword transposes
        for (int L = 0; L < 4; ++L) {
            for (int j = 0; j < 4; ++j) lines[L][j] = _mm512_load_si512(chunk + 64 * (4 * j + L));
            transpose4x4_epi32_lanes(lines[L]);  // lines[L][v]: lane l, dword j = input 4 l + v of tokens 16 j + 4 L + ..
        }
        for (int v = 0; v < 4; ++v) {
            __m512i by_lane[4] = {lines[0][v], lines[1][v], lines[2][v], lines[3][v]};
            transpose4x4_lanes(by_lane);  // by_lane[l]: lane L, dword j, byte u: token 16 j + 4 L + u
            for (int l = 0; l < 4; ++l) {
                const int c = 4 * l + v;
                if (c < inputs)
                    _mm512_store_si512(out + static_cast<int64_t>(c0 + c) * TOKEN_BLOCK,
                                       _mm512_add_epi8(by_lane[l], offset));
            }
        }
    }
}

void peaks_avx512(const float* rows, int32_t count, float* peak) {
    __m512 high[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int32_t r = 0; r < count; ++r)
        for (int j = 0; j < 4; ++j) high[j] = _mm512_max_ps(high[j], _mm512_abs_ps(_mm512_load_ps(rows + r * TOKEN_BLOCK + 16 * j)));
    for (int j = 0; j < 4; ++j) _mm512_storeu_ps(peak + 16 * j, high[j]);
}

/* As handoff_sse2, a whole 64-token row at a time: its 4 token vectors rounded and packed by packs_epi32 and
 * packs_epi16, which work within 128-bit lanes, so that dword j of lane L holds tokens 16 j + 4 L .. + 3: the row's
 * panel line in column order as it comes. For 1x4 blocks, 4 inputs' lines are interleaved as compute_columns does. */
void handoff_avx512(const Plan& plan, const float* rows, int32_t i0, int32_t i1, const float* inverse, void* workspace,
                    int64_t m, int64_t token_block) {
    uint8_t* out = panel(plan, workspace, m, token_block);
    const __m512i offset = _mm512_set1_epi8(static_cast<char>(plan.act_offset));
    __m512 inverses[4];
    for (int j = 0; j < 4; ++j) inverses[j] = _mm512_loadu_ps(inverse + 16 * j);
    const auto line = [&](int32_t i) {
        const float* row = rows + static_cast<int64_t>(i - i0) * TOKEN_BLOCK;
        __m512i q[4];
        for (int j = 0; j < 4; ++j) q[j] = rounded(_mm512_load_ps(row + 16 * j), inverses[j]);
        return _mm512_packs_epi16(_mm512_packs_epi32(q[0], q[1]), _mm512_packs_epi32(q[2], q[3]));
    };
    if (plan.orientation == COLUMNS_4X1) {
        for (int32_t i = i0; i < i1; ++i)
            _mm512_store_si512(out + static_cast<int64_t>(i) * TOKEN_BLOCK, _mm512_add_epi8(line(i), offset));
        return;
    }
    for (int32_t i = i0; i < i1; i += 4) {
        const __m512i c0 = line(i), c1 = line(i + 1), c2 = line(i + 2), c3 = line(i + 3);
        const __m512i low01 = _mm512_unpacklo_epi8(c0, c1), low23 = _mm512_unpacklo_epi8(c2, c3);
        const __m512i high01 = _mm512_unpackhi_epi8(c0, c1), high23 = _mm512_unpackhi_epi8(c2, c3);
        uint8_t* group = out + static_cast<int64_t>(i / 4) * GROUP_BYTES;
        _mm512_store_si512(group, _mm512_add_epi8(_mm512_unpacklo_epi16(low01, low23), offset));
        _mm512_store_si512(group + 64, _mm512_add_epi8(_mm512_unpackhi_epi16(low01, low23), offset));
        _mm512_store_si512(group + 128, _mm512_add_epi8(_mm512_unpacklo_epi16(high01, high23), offset));
        _mm512_store_si512(group + 192, _mm512_add_epi8(_mm512_unpackhi_epi16(high01, high23), offset));
    }
}

void compute_columns_avx512vnni(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    switch ((task.tokens + 15) / 16) {
        case 1: return compute_columns<1>(plan, workspace, m, out, task);
        case 2: return compute_columns<2>(plan, workspace, m, out, task);
        case 3: return compute_columns<3>(plan, workspace, m, out, task);
        default: return compute_columns<4>(plan, workspace, m, out, task);
    }
}

void quantize_avx512(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
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

void compute_avx512vnni(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    switch ((task.tokens + 15) / 16) {
        case 1: return compute<1>(plan, workspace, m, out, task);
        case 2: return compute<2>(plan, workspace, m, out, task);
        case 3: return compute<3>(plan, workspace, m, out, task);
        default: return compute<4>(plan, workspace, m, out, task);
    }
}

}  // namespace sq
