/* AVX2 without VNNI (dot_avx2.h), 1x4 blocks (1 output x 4 consecutive inputs):
 * kernel8_1x4.h with this ISA's dot product. */
#include "dot_avx2.h"
#include "kernel8_1x4.h"

namespace sq {

void quantize_1x4_avx2(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
    quantize8_1x4(plan, x, m, workspace, token_block);
}

void compute_1x4_avx2(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    dispatch8_1x4<Avx2Dot>(plan, workspace, m, out, task);
}

}  // namespace sq
