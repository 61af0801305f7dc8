/* AVX-VNNI, 256-bit vpdpbusd (dot_avxvnni.h), 1x4 blocks (1 output x 4 consecutive inputs):
 * kernel8_1x4.h with this ISA's dot product. */
#include "dot_avxvnni.h"
#include "kernel8_1x4.h"

namespace sq {

void compute_1x4_avxvnni(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task) {
    dispatch8_1x4<VnniDot>(plan, workspace, m, out, task);
}

}  // namespace sq
