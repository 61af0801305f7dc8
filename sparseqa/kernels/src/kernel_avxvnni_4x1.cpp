/* AVX-VNNI, 256-bit vpdpbusd (dot_avxvnni.h), 4x1 blocks (4 consecutive outputs x 1 input):
 * kernel8_4x1.h with this ISA's dot product. */
#include "dot_avxvnni.h"
#include "kernel8_4x1.h"

namespace sq {

void compute_4x1_avxvnni(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    compute8_4x1<VnniDot>(plan, workspace, m, out, task);
}

}  // namespace sq
