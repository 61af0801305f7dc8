/* AVX-512 VNNI, 4x1 blocks (4 consecutive outputs x 1 input): per 4 nonzero blocks of a 4-output group (a quad), the
 * 4 inputs' 64-token panel lines are interleaved by byte and word unpacks into 4-byte lanes of 16 tokens, and each
 * such vector feeds all 4 outputs: 16 vpdpbusd per 4 line loads and 8 unpacks. */
#include "avx512.h"

namespace sq {
namespace {

template <int NV>
void compute_4x1(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
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

/* As quantize_4x1_sse2, in two passes over one token block.
 * 1. Four consecutive tokens 4 g .. 4 g + 3 at a time, so that x is read in order and each row is still in cache when
 *    it is rounded: per 16 inputs, the 4 tokens are quantized and packed into one zmm whose lane l holds their inputs
 *    4 l .. 4 l + 3 (byte 4 u + v: token u, input 4 l + v), and a byte shuffle makes that byte 4 v + u, so dword v of
 *    lane l is input 4 l + v for the 4 tokens. It is stored chunk-major (per 16 inputs, the 16 zmm of the 64 tokens:
 *    1 KB) in the panel itself: a chunk's KB is where its 16 lines go (a chunk short of 16 inputs uses a buffer).
 * 2. Chunk by chunk, its KB in 16 registers to its 16 lines. Tokens 4 g + u = 16 j + 4 L + u: transposing the dwords
 *    over j and then the lanes over L puts, for input 4 l + v, the 4 tokens 16 j + 4 L + .. at dword j of lane L:
 *    byte 16 L + 4 j + u of its line, as column_position says. */
void quantize_4x1_avx512(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
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

void compute_4x1_avx512vnni(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    switch ((task.tokens + 15) / 16) {
        case 1: return compute_4x1<1>(plan, workspace, m, out, task);
        case 2: return compute_4x1<2>(plan, workspace, m, out, task);
        case 3: return compute_4x1<3>(plan, workspace, m, out, task);
        default: return compute_4x1<4>(plan, workspace, m, out, task);
    }
}

}  // namespace sq
