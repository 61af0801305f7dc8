/* The reference: the plainest loops over the block-CSR weights. It defines the result every ISA kernel reproduces.
 *
 * Per token t: amax = max |x[t, :]|; if amax < QUANT_MIN the token quantizes to zeros with scale 0, otherwise
 * scale = amax / 127 and q = clamp(nearbyint(x * (127 / amax)), -127, 127) (round half to even, float arithmetic).
 * Per output o: acc = sum over the nonzero blocks that hold its weights of q * w in int32 (1x4: its row's blocks;
 * 4x1: its 4-row group's blocks, one weight each), and
 * y[t, o] = fma(float(acc), scale_t * scales[o], bias[o])   (one rounding; bias 0 when there is none).
 */
#include <cmath>

#include "internal.h"
#include "sparseqa_kernels.h"

namespace sq {

float quantize_token(const float* x, int32_t k, int8_t* q) {
    float amax = 0.0f;
    for (int32_t i = 0; i < k; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    if (!(amax >= QUANT_MIN)) {
        for (int32_t i = 0; i < k; ++i) q[i] = 0;
        return 0.0f;
    }
    const float inverse = 127.0f / amax;
    for (int32_t i = 0; i < k; ++i) {
        float r = std::nearbyint(x[i] * inverse);
        r = std::fmin(127.0f, std::fmax(-127.0f, r));
        q[i] = static_cast<int8_t>(r);
    }
    return amax / 127.0f;
}

}  // namespace sq

extern "C" int sq_linear_reference(const sq_bcsr* w, const float* x, int64_t m, float* y) {
    if (!w || !x || !y || m < 0 || w->n < 0 || w->k <= 0 || w->k % 4 != 0) return -1;
    if (w->block_rows != 1 && !(w->block_rows == 4 && w->n % 4 == 0)) return -1;
    int8_t* q = new int8_t[w->k];
    for (int64_t t = 0; t < m; ++t) {
        const float token_scale = sq::quantize_token(x + t * w->k, w->k, q);
        for (int32_t o = 0; o < w->n; ++o) {
            int32_t acc = 0;
            if (w->block_rows == 1) {
                for (int32_t b = w->row_ptr[o]; b < w->row_ptr[o + 1]; ++b) {
                    const int8_t* a = q + 4 * w->block_col[b];
                    const int8_t* v = w->values + 4 * b;
                    acc += a[0] * v[0] + a[1] * v[1] + a[2] * v[2] + a[3] * v[3];
                }
            } else {
                const int32_t g = o / 4;
                for (int32_t b = w->row_ptr[g]; b < w->row_ptr[g + 1]; ++b)
                    acc += q[w->block_col[b]] * w->values[4 * b + o % 4];
            }
            const float bias = w->bias ? w->bias[o] : 0.0f;
            y[t * w->n + o] = std::fma(static_cast<float>(acc), token_scale * w->scales[o], bias);
        }
    }
    delete[] q;
    return 0;
}
