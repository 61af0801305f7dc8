/* What the C API, the reference and the ISA kernels share: the packed plan and the activation workspace layout.
 *
 * Kept to plain C types on purpose: every ISA translation unit includes this header under its own -m flags, and an
 * inline C++ library function instantiated there could be picked by the linker for the portable code (and then run
 * an instruction the CPU lacks).
 */
#ifndef SPARSEQA_INTERNAL_H
#define SPARSEQA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

namespace sq {

/* Activations are quantized per block of TOKEN_BLOCK tokens into a panel laid out [k / 4][TOKEN_BLOCK] of 4-byte
 * lanes: the 4 consecutive inputs a 1x4 weight block multiplies, for TOKEN_BLOCK consecutive tokens. */
constexpr int TOKEN_BLOCK = 64;
constexpr int64_t GROUP_BYTES = TOKEN_BLOCK * 4;  /* one input group of one token block */
constexpr size_t ALIGN = 64;
/* A token whose largest |x| is below this quantizes to zeros (127 / amax would overflow float). */
constexpr float QUANT_MIN = 1e-30f;

struct Block {
    int32_t offset; /* the block's input group times GROUP_BYTES: its byte offset within a token block's panel */
    int32_t weights; /* the block's 4 int8 weights, in input order, as one little-endian 32-bit word */
};

enum Isa : int { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVXVNNI = 2, ISA_AVX512VNNI = 3 };

struct Plan {
    Isa isa;
    int32_t n, k, groups;
    int32_t k_tiles;         /* the input groups are split into k_tiles tiles of tile_groups (the last may be shorter) */
    int32_t tile_groups;
    uint8_t act_offset;      /* 128 when activations are stored as u8 = q + 128 (vpdpbusd), 0 when stored as s8 */
    const Block* blocks;     /* by ROW_GROUP rows, then k tile, then row (the order kernels read them); ascending
                              * input within a row's k tile */
    const int32_t* segments; /* per row and k tile (row-major): its first block and the block after its last */
    const int32_t* offset_sum; /* per row: act_offset * (sum of the row's int8 weights), subtracted from the sums */
    const float* scales;
    const float* bias;       /* zeros when the weights have none */
    void* storage;
};

/* The workspace of one call: token scales (m rounded up to TOKEN_BLOCK floats), then the panels. */
inline int64_t padded_tokens(int64_t m) { return (m + TOKEN_BLOCK - 1) / TOKEN_BLOCK * TOKEN_BLOCK; }
inline const float* token_scales(const void* workspace) { return static_cast<const float*>(workspace); }
inline const uint8_t* panel(const Plan& plan, const void* workspace, int64_t m, int64_t token_block) {
    return static_cast<const uint8_t*>(workspace) + padded_tokens(m) * 4 + token_block * plan.groups * GROUP_BYTES;
}
inline uint8_t* panel(const Plan& plan, void* workspace, int64_t m, int64_t token_block) {
    return static_cast<uint8_t*>(workspace) + padded_tokens(m) * 4 + token_block * plan.groups * GROUP_BYTES;
}

/* One compute task: the first `tokens` tokens of token block `token_block` (at most TOKEN_BLOCK), rows [r0, r1). */
struct Task {
    int64_t token_block;
    int32_t tokens;
    int32_t r0, r1;
};

typedef void (*ComputeFn)(const Plan& plan, const void* workspace, int64_t m, float* y, const Task& task);
/* Quantizes tokens [token_block * TOKEN_BLOCK, +TOKEN_BLOCK) of x into their panel and token scales, with the same
 * arithmetic as quantize_token (clamping before rounding changes nothing: +-127 are integers); tokens past m become
 * zeros. */
typedef void (*QuantizeFn)(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block);

/* Kernels, one per ISA translation unit. */
void compute_scalar(const Plan&, const void*, int64_t, float*, const Task&);
void compute_avx2(const Plan&, const void*, int64_t, float*, const Task&);
void compute_avxvnni(const Plan&, const void*, int64_t, float*, const Task&);
void compute_avx512vnni(const Plan&, const void*, int64_t, float*, const Task&);
void quantize_sse2(const Plan&, const float*, int64_t, void*, int64_t);
void quantize_avx2(const Plan&, const float*, int64_t, void*, int64_t);
void quantize_avx512(const Plan&, const float*, int64_t, void*, int64_t);

/* Quantizes one token as the reference defines (see reference.cpp); returns its scale. */
float quantize_token(const float* x, int32_t k, int8_t* q);

/* The blocks of row o in k tile kt. */
static inline const Block* segment_begin(const Plan& plan, int32_t o, int32_t kt) {
    return plan.blocks + plan.segments[(static_cast<int64_t>(o) * plan.k_tiles + kt) * 2];
}
static inline const Block* segment_end(const Plan& plan, int32_t o, int32_t kt) {
    return plan.blocks + plan.segments[(static_cast<int64_t>(o) * plan.k_tiles + kt) * 2 + 1];
}

/* Kernels keep a task's int32 accumulators (rows x tokens) in a tile of this many bytes on the stack. */
constexpr int TILE_BYTES = 32768;
/* Rows whose blocks are stored together, k tile by k tile: the most rows a compute task takes, so that a task's
 * pass over one k tile reads one contiguous run of memory. */
constexpr int ROW_GROUP = TILE_BYTES / (4 * TOKEN_BLOCK);

}  // namespace sq

#endif
