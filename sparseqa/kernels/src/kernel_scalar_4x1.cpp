/* The portable kernel for 4x1 blocks (4 consecutive outputs x 1 input). */
#include "scalar.h"

namespace sq {

void compute_4x1_scalar(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    const int8_t* base = reinterpret_cast<const int8_t*>(panel(plan, workspace, m, task.token_block));
    const float* scales_t = token_scales(workspace) + task.token_block * TOKEN_BLOCK;
    int position[TOKEN_BLOCK];
    for (int t = 0; t < task.tokens; ++t) position[t] = column_position(t);
    int32_t acc[4][TOKEN_BLOCK];
    for (int32_t g = task.r0 / 4; g < task.r1 / 4; ++g) {
        for (int r = 0; r < 4; ++r)
            for (int t = 0; t < task.tokens; ++t) acc[r][t] = 0;
        for (int32_t kt = 0; kt < plan.k_tiles; ++kt) {
            for (const Quad* quad = quads_begin(plan, g, kt); quad < quads_end(plan, g, kt); ++quad) {
                for (int i = 0; i < 4; ++i) {
                    const int8_t* line = base + quad->offset[i];
                    for (int r = 0; r < 4; ++r) {
                        const int32_t w = (int8_t)(quad->weights[r] >> (8 * i));
                        for (int t = 0; t < task.tokens; ++t) acc[r][t] += line[position[t]] * w;
                    }
                }
            }
        }
        for (int r = 0; r < 4; ++r) {
            store(plan, out, task, 4 * g + r, acc[r], scales_t);
        }
    }
}

}  // namespace sq
