/* The portable kernels: no ISA extension, the same panel layouts and int32 sums as the vector kernels. */
#include <math.h>

#include "internal.h"

namespace sq {
namespace {

/* Output o's sums of one task, dequantized with the bias added, to y or (zeros past the last token) to its row. */
void store(const Plan& plan, const Output& out, const Task& task, int32_t o, const int32_t* acc, const float* scales_t) {
    float* row = out.rows ? output_row(out, plan.n, task.token_block, o) : nullptr;
    float* y = out.rows ? nullptr : output_at(out, task.token_block * TOKEN_BLOCK, o);
    for (int t = 0; t < task.tokens; ++t) {
        const float value = fmaf((float)(acc[t] - plan.offset_sum[o]), scales_t[t] * plan.scales[o], plan.bias[o]);
        if (row)
            row[t] = value;
        else
            y[t * out.part_n] = value;
    }
    if (row)
        for (int t = task.tokens; t < TOKEN_BLOCK; ++t) row[t] = 0.0f;
}

}  // namespace

void compute_scalar(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
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

void compute_columns_scalar(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
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
