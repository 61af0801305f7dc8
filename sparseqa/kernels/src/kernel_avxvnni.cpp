/* AVX-VNNI (256-bit vpdpbusd): activations stored as u8 = q + 128, one vpdpbusd per block per 8 tokens. */
#include "kernel8.h"

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

void compute_avxvnni(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    dispatch8<VnniDot>(plan, workspace, m, out, task);
}

void compute_columns_avxvnni(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    compute_columns8<VnniDot>(plan, workspace, m, out, task);
}

}  // namespace sq
