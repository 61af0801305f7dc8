/* The portable kernel for 1x4 blocks (1 output x 4 consecutive inputs). */
#include "scalar.h"

namespace sq {

void compute_1x4_scalar(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    const uint8_t* base = panel(plan, workspace, m, task.token_block);
    const float* scales_t = token_scales(workspace) + task.token_block * TOKEN_BLOCK;
    int32_t acc[TOKEN_BLOCK];
    for (int32_t o = task.r0; o < task.r1; ++o) {
        for (int t = 0; t < task.tokens; ++t) acc[t] = 0;
        for (int32_t kt = 0; kt < plan.k_tiles; ++kt) {
            for (const Block* block = segment_begin(plan, o, kt); block < segment_end(plan, o, kt); ++block) {
                const int8_t* a = reinterpret_cast<const int8_t*>(base + block->offset);
                const int32_t word = block->weights;
                const int32_t w0 = (int8_t)(word), w1 = (int8_t)(word >> 8), w2 = (int8_t)(word >> 16),
                              w3 = (int8_t)(word >> 24);
                for (int t = 0; t < task.tokens; ++t)
                    acc[t] += a[4 * t] * w0 + a[4 * t + 1] * w1 + a[4 * t + 2] * w2 + a[4 * t + 3] * w3;
            }
        }
        store(plan, out, task, o, acc, scales_t);
    }
}

}  // namespace sq
