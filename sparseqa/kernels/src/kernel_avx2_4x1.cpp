/* AVX2 without VNNI (dot_avx2.h), 4x1 blocks (4 consecutive outputs x 1 input):
 * kernel8_4x1.h with this ISA's dot product. */
#include "dot_avx2.h"
#include "kernel8_4x1.h"

namespace sq {

void compute_4x1_avx2(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    compute8_4x1<Avx2Dot>(plan, workspace, m, out, task);
}

}  // namespace sq
