/* AVX2 without VNNI: vpmaddubsw multiplies u8 by s8 into saturating int16 pairs, so the weight's magnitude (<= 128)
 * is the unsigned operand and its sign moves onto the s8 activation (|q| <= 127): a pair is at most 2 * 128 * 127,
 * which never saturates, and vpmaddwd by ones completes the 4-product sum exactly in int32. */
#include "kernel8.h"

namespace sq {
namespace {

struct Avx2Dot {
    struct Weights {
        __m256i signs, magnitudes;
    };
    static Weights weights(int32_t word) {
        const __m256i w = _mm256_set1_epi32(word);
        return Weights{w, _mm256_abs_epi8(w)};
    }
    static __m256i accumulate(__m256i acc, __m256i activations, const Weights& w) {
        const __m256i pairs = _mm256_maddubs_epi16(w.magnitudes, _mm256_sign_epi8(activations, w.signs));
        return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
    }
};

}  // namespace

void quantize_avx2(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
    quantize8(plan, x, m, workspace, token_block);
}

void compute_avx2(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    dispatch8<Avx2Dot>(plan, workspace, m, out, task);
}

void compute_columns_avx2(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    compute_columns8<Avx2Dot>(plan, workspace, m, out, task);
}

}  // namespace sq
