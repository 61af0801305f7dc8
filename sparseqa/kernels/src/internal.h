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

/* Activations are quantized per block of TOKEN_BLOCK tokens into a panel of k * TOKEN_BLOCK bytes, laid out for the
 * plan's block orientation:
 * - 1x4 blocks: [k / 4][TOKEN_BLOCK] 4-byte lanes: the 4 consecutive inputs a 1x4 weight block multiplies, for
 *   TOKEN_BLOCK consecutive tokens.
 * - 4x1 blocks: [k][TOKEN_BLOCK] bytes: one 64-byte line per input, its tokens in COLUMN_ORDER (below), so that
 *   interleaving 4 inputs' lines with byte and word unpacks (which work within 16-byte lanes) yields 4-byte lanes of
 *   16 consecutive tokens per 64 bytes, as vpdpbusd takes them. */
constexpr int TOKEN_BLOCK = 64;
constexpr int64_t GROUP_BYTES = TOKEN_BLOCK * 4;  /* one input group of one token block */
constexpr size_t ALIGN = 64;
/* A token whose largest |x| is below this quantizes to zeros (127 / amax would overflow float). */
constexpr float QUANT_MIN = 1e-30f;

/* The byte of a 4x1 panel line that holds token t of its block: byte 16 L + 4 j + u holds token 16 j + 4 L + u
 * (L: 16-byte lane, j: which 16 tokens, u: position in the 4-byte lane). */
inline int column_position(int t) { return 16 * ((t >> 2) & 3) + 4 * (t >> 4) + (t & 3); }

enum Orientation : int { ROWS_1X4 = 0, COLUMNS_4X1 = 1 };

struct Block {
    int32_t offset; /* the block's input group times GROUP_BYTES: its byte offset within a token block's panel */
    int32_t weights; /* the block's 4 int8 weights, in input order, as one little-endian 32-bit word */
};

/* 4 nonzero 4x1 blocks of one 4-output row group (padded with zero blocks to a multiple of 4): their inputs' byte
 * offsets within a token block's panel, and for each of the 4 outputs its 4 weights (one per input, in the order of
 * ``offset``) as one little-endian 32-bit word, which vpdpbusd multiplies with the 4 inputs' interleaved lines. */
struct alignas(32) Quad {
    int32_t offset[4];
    int32_t weights[4];
};

enum Isa : int { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVXVNNI = 2, ISA_AVX512VNNI = 3 };

struct Plan {
    Isa isa;
    Orientation orientation;
    int32_t n, k, groups;    /* groups = k / 4: a panel holds groups * GROUP_BYTES bytes per token block */
    int32_t k_tiles;         /* the inputs are split into k_tiles tiles of tile_inputs (the last may be shorter): */
    int32_t tile_inputs;     /* input groups of 4 for 1x4 blocks, inputs for 4x1 blocks */
    uint8_t act_offset;      /* 128 when activations are stored as u8 = q + 128 (vpdpbusd), 0 when stored as s8 */
    const Block* blocks;     /* 1x4: by ROW_GROUP rows, then k tile, then row (the order kernels read them);
                              * ascending input within a row's k tile */
    const Quad* quads;       /* 4x1: by ROW_GROUP rows, then k tile, then 4-row group; ascending input */
    const int32_t* segments; /* 1x4: per row and k tile (row-major): its first block and the block after its last;
                              * 4x1: the same per 4-row group and k tile, in quads */
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

/* Where a call writes its n outputs: ``parts`` row-major arrays of part_n outputs each (one (m, n) array when
 * parts = 1, part_n = n). Output o of token t goes to y[o / part_n][t * part_n + o % part_n]. Kernels write up to 16
 * consecutive outputs starting at a multiple of 16 at once, so with several parts part_n is a multiple of 16.
 * With ``rows`` set (a Linear whose outputs feed the next Linear of a chain) y is unused and the outputs stay in the
 * kernels' own order, untransposed: per token block, per output, a row of TOKEN_BLOCK tokens (tokens past m are 0),
 * at rows + (token_block * n + o) * TOKEN_BLOCK. */
struct Output {
    float* const* y;
    int32_t part_n;
    float* rows = nullptr;
};

/* The row of output o of token block ``token_block`` in an Output with rows. */
static inline float* output_row(const Output& out, int32_t n, int64_t token_block, int32_t o) {
    return out.rows + (token_block * n + o) * TOKEN_BLOCK;
}

/* Where a task's last k tile writes output o's dequantized sums: its output row when the outputs stay rows, else
 * its row of the task's tile (rows r0.. x TOKEN_BLOCK tokens), from which the kernel transposes them into y. */
static inline float* destination(const Output& out, int32_t n, const Task& task, float (*tile)[TOKEN_BLOCK], int32_t o) {
    return out.rows ? output_row(out, n, task.token_block, o) : tile[o - task.r0];
}

/* Where outputs o .. (up to the next multiple of 16) of token t go; consecutive tokens are part_n floats apart. */
static inline float* output_at(const Output& out, int64_t t, int32_t o) {
    return out.y[o / out.part_n] + t * out.part_n + o % out.part_n;
}

typedef void (*ComputeFn)(const Plan& plan, const void* workspace, int64_t m, const Output& out, const Task& task);
/* Quantizes tokens [token_block * TOKEN_BLOCK, +TOKEN_BLOCK) of x into their panel and token scales, with the bytes
 * quantize_token writes for finite inputs; tokens past m become zeros. The kernels leave out its clamp to +-127: a
 * finite |x| * (127 / amax) is at most 127 (1 + 2^-22), which rounds to 127 (measured: ~1% of a layer's time). */
typedef void (*QuantizeFn)(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block);

/* Quantizes inputs [i0, i1) of ``plan`` for the tokens of one token block straight from the previous Linear's
 * output rows (``rows``: input i0's TOKEN_BLOCK tokens first, consecutive inputs TOKEN_BLOCK floats apart) into
 * their panel, with ``inverse`` (TOKEN_BLOCK floats) each token's 127 / amax: the bytes the plan's quantizer writes
 * from the same values, without transposing them first. i0 and i1 are multiples of 4. */
typedef void (*HandoffFn)(const Plan& plan, const float* rows, int32_t i0, int32_t i1, const float* inverse,
                          void* workspace, int64_t m, int64_t token_block);

/* Kernels, one translation unit per block orientation and ISA (kernel_<isa>_<orientation>.cpp), and the quantizers
 * that lay out their panels (the 1x4 ones beside their kernels, quantize_sse2.cpp for the portable pair). */
void compute_1x4_scalar(const Plan&, const void*, int64_t, const Output&, const Task&);
void compute_1x4_avx2(const Plan&, const void*, int64_t, const Output&, const Task&);
void compute_1x4_avxvnni(const Plan&, const void*, int64_t, const Output&, const Task&);
void compute_1x4_avx512vnni(const Plan&, const void*, int64_t, const Output&, const Task&);
void compute_4x1_scalar(const Plan&, const void*, int64_t, const Output&, const Task&);
void compute_4x1_avx2(const Plan&, const void*, int64_t, const Output&, const Task&);
void compute_4x1_avxvnni(const Plan&, const void*, int64_t, const Output&, const Task&);
void compute_4x1_avx512vnni(const Plan&, const void*, int64_t, const Output&, const Task&);
void quantize_1x4_sse2(const Plan&, const float*, int64_t, void*, int64_t);
void quantize_1x4_avx2(const Plan&, const float*, int64_t, void*, int64_t);
void quantize_1x4_avx512(const Plan&, const float*, int64_t, void*, int64_t);
void quantize_4x1_sse2(const Plan&, const float*, int64_t, void*, int64_t);
void quantize_4x1_avx512(const Plan&, const float*, int64_t, void*, int64_t);

/* Each token's largest |value| over ``count`` output rows of one token block (TOKEN_BLOCK floats apart) into
 * peak[TOKEN_BLOCK]: what the handoff's token scales come from. */
typedef void (*PeaksFn)(const float* rows, int32_t count, float* peak);
void peaks_sse2(const float*, int32_t, float*);
void peaks_avx512(const float*, int32_t, float*);
void handoff_sse2(const Plan&, const float*, int32_t, int32_t, const float*, void*, int64_t, int64_t);
void handoff_avx512(const Plan&, const float*, int32_t, int32_t, const float*, void*, int64_t, int64_t);

/* A token's scale and 127 / amax from its largest |x|, as quantize_token computes them (both 0 for a token that
 * quantizes to zeros). Static: each ISA translation unit keeps its own copy (see the top of this file). */
static inline void token_scale(float amax, float* scale, float* inverse) {
    const bool zero = !(amax >= QUANT_MIN);
    *scale = zero ? 0.0f : amax / 127.0f;
    *inverse = zero ? 0.0f : 127.0f / amax;
}

/* Quantizes one token as the reference defines (see reference.cpp); returns its scale. */
float quantize_token(const float* x, int32_t k, int8_t* q);

/* The quads of 4-row group g (outputs 4 g .. 4 g + 3) in k tile kt. */
static inline const Quad* quads_begin(const Plan& plan, int32_t g, int32_t kt) {
    return plan.quads + plan.segments[(static_cast<int64_t>(g) * plan.k_tiles + kt) * 2];
}
static inline const Quad* quads_end(const Plan& plan, int32_t g, int32_t kt) {
    return plan.quads + plan.segments[(static_cast<int64_t>(g) * plan.k_tiles + kt) * 2 + 1];
}

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
