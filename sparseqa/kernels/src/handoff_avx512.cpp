/* AVX-512 (F and BW): the feed-forward chain's handoff of the intermediate Linear's output rows into the output
 * Linear's activation panel, for both block orientations, and the per-token peaks its token scales come from. */
#include "avx512.h"

namespace sq {

void peaks_avx512(const float* rows, int32_t count, float* peak) {
    __m512 high[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int32_t r = 0; r < count; ++r)
        for (int j = 0; j < 4; ++j) high[j] = _mm512_max_ps(high[j], _mm512_abs_ps(_mm512_load_ps(rows + r * TOKEN_BLOCK + 16 * j)));
    for (int j = 0; j < 4; ++j) _mm512_storeu_ps(peak + 16 * j, high[j]);
}

/* As handoff_sse2, a whole 64-token row at a time: its 4 token vectors rounded and packed by packs_epi32 and
 * packs_epi16, which work within 128-bit lanes, so that dword j of lane L holds tokens 16 j + 4 L .. + 3: the row's
 * panel line in column order as it comes. For 1x4 blocks, 4 inputs' lines are interleaved as compute_4x1 does. */
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

}  // namespace sq
