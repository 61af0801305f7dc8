/* The AVX2 dot product without VNNI: vpmaddubsw multiplies u8 by s8 into saturating int16 pairs, so the weight's
 * magnitude (<= 128) is the unsigned operand and its sign moves onto the s8 activation (|q| <= 127): a pair is at most
 * 2 * 128 * 127, which never saturates, and vpmaddwd by ones completes the 4-product sum exactly in int32. */
#ifndef SPARSEQA_DOT_AVX2_H
#define SPARSEQA_DOT_AVX2_H

#include <immintrin.h>

#include <stdint.h>

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
}  // namespace sq

#endif
