/* What the portable kernels of both block orientations share: no ISA extension, the same panel layouts and int32
 * sums as the vector kernels. */
#ifndef SPARSEQA_SCALAR_H
#define SPARSEQA_SCALAR_H

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
}  // namespace sq

#endif
