/* The AVX-VNNI dot product (256-bit vpdpbusd): activations stored as u8 = q + 128, one vpdpbusd per 4 products of 8
 * tokens. */
#ifndef SPARSEQA_DOT_AVXVNNI_H
#define SPARSEQA_DOT_AVXVNNI_H

#include <immintrin.h>

#include <stdint.h>

namespace sq {
namespace {

struct VnniDot {
    typedef __m256i Weights;
    static Weights weights(int32_t word) { return _mm256_set1_epi32(word); }
    static __m256i accumulate(__m256i acc, __m256i activations, Weights w) {
        return _mm256_dpbusd_avx_epi32(acc, activations, w);
    }
};

}  // namespace
}  // namespace sq

#endif
