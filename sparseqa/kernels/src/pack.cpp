/* Packing block-CSR weights into a plan: blocks in the order the kernels read them, once, when a model loads. */
#include <string.h>

#include <algorithm>
#include <memory>
#include <new>
#include <string>

#include "core.h"

namespace sq {
namespace {

/* The packed arrays of one plan in one allocation: blocks (1x4) or quads (4x1), segments, then per output
 * offset_sum, scales and bias. */
struct Storage {
    char* memory = nullptr;
    void* packed = nullptr;
    int32_t* segments = nullptr;
    int32_t* offset_sum = nullptr;
    float* scales = nullptr;
    float* bias = nullptr;

    bool allocate(size_t packed_bytes, size_t segment_count, int32_t n) {
        const size_t segment_bytes = (sizeof(int32_t) * segment_count + ALIGN - 1) / ALIGN * ALIGN;
        const size_t row_bytes = sizeof(float) * std::max(n, 1);
        packed_bytes = (std::max<size_t>(packed_bytes, 1) + ALIGN - 1) / ALIGN * ALIGN;
        memory = static_cast<char*>(aligned(packed_bytes + segment_bytes + 3 * row_bytes));
        if (!memory) return false;
        packed = memory;
        segments = reinterpret_cast<int32_t*>(memory + packed_bytes);
        offset_sum = reinterpret_cast<int32_t*>(memory + packed_bytes + segment_bytes);
        scales = reinterpret_cast<float*>(memory + packed_bytes + segment_bytes + row_bytes);
        bias = reinterpret_cast<float*>(memory + packed_bytes + segment_bytes + 2 * row_bytes);
        return true;
    }
};

/* 1x4: blocks in the order the kernels read them: row group by row group, within a group k tile by k tile, within a
 * k tile row by row. So a task's pass over one k tile reads one contiguous run of memory, which the hardware
 * prefetcher streams from DRAM (a model's weights do not stay in cache between requests). Columns ascend within a
 * row, so a row's blocks of k tile kt are the run after those of tile kt - 1. */
void pack_rows(const sq_bcsr* w, int32_t k_tiles, int32_t tile_groups, Block* packed, int32_t* segments,
               int32_t* cursor) {
    std::copy(w->row_ptr, w->row_ptr + w->n, cursor);
    int32_t next = 0;
    for (int32_t g0 = 0; g0 < w->n; g0 += ROW_GROUP) {
        const int32_t g1 = std::min(w->n, g0 + ROW_GROUP);
        for (int32_t kt = 0; kt < k_tiles; ++kt) {
            for (int32_t o = g0; o < g1; ++o) {
                int32_t* segment = segments + (static_cast<int64_t>(o) * k_tiles + kt) * 2;
                segment[0] = next;
                for (int32_t& b = cursor[o]; b < w->row_ptr[o + 1] && w->block_col[b] / tile_groups == kt; ++b, ++next) {
                    packed[next].offset = w->block_col[b] * static_cast<int32_t>(GROUP_BYTES);
                    memcpy(&packed[next].weights, w->values + 4 * static_cast<int64_t>(b), 4);
                }
                segment[1] = next;
            }
        }
    }
}

/* How many quads 4x1 packing needs: per 4-row group and k tile, its blocks rounded up to a multiple of 4. */
int64_t quad_count(const sq_bcsr* w, int32_t k_tiles, int32_t tile_inputs) {
    int64_t quads = 0;
    for (int32_t g = 0; g < w->n / 4; ++g) {
        int32_t b = w->row_ptr[g];
        for (int32_t kt = 0; kt < k_tiles; ++kt) {
            int32_t blocks = 0;
            for (; b < w->row_ptr[g + 1] && w->block_col[b] / tile_inputs == kt; ++b) ++blocks;
            quads += (blocks + 3) / 4;
        }
    }
    return quads;
}

/* 4x1: the same order as pack_rows with 4-row groups for rows, 4 blocks to a quad. A quad short of 4 blocks repeats
 * its last input with zero weights, so kernels always take 4 inputs (and a row group's sums stay exact). */
void pack_columns(const sq_bcsr* w, int32_t k_tiles, int32_t tile_inputs, Quad* packed, int32_t* segments,
                  int32_t* cursor) {
    const int32_t groups = w->n / 4;
    std::copy(w->row_ptr, w->row_ptr + groups, cursor);
    int32_t next = 0;
    for (int32_t g0 = 0; g0 < groups; g0 += ROW_GROUP / 4) {
        const int32_t g1 = std::min(groups, g0 + ROW_GROUP / 4);
        for (int32_t kt = 0; kt < k_tiles; ++kt) {
            for (int32_t g = g0; g < g1; ++g) {
                int32_t* segment = segments + (static_cast<int64_t>(g) * k_tiles + kt) * 2;
                segment[0] = next;
                int32_t& b = cursor[g];
                while (b < w->row_ptr[g + 1] && w->block_col[b] / tile_inputs == kt) {
                    Quad& quad = packed[next++];
                    int8_t weights[4][4] = {};
                    int32_t last = 0;
                    for (int i = 0; i < 4; ++i) {
                        const bool real = b < w->row_ptr[g + 1] && w->block_col[b] / tile_inputs == kt;
                        if (real) {
                            last = w->block_col[b];
                            for (int r = 0; r < 4; ++r) weights[r][i] = w->values[4 * static_cast<int64_t>(b) + r];
                            ++b;
                        }
                        quad.offset[i] = last * TOKEN_BLOCK;
                    }
                    memcpy(quad.weights, weights, sizeof weights);
                }
                segment[1] = next;
            }
        }
    }
}

}  // namespace

std::string bad_weights(const sq_bcsr* w) {
    if (!w || w->n < 0 || w->k <= 0 || w->k % 4 != 0 || !w->row_ptr || !w->scales)
        return "bad weights: need n >= 0, k a positive multiple of 4, row_ptr, scales";
    if (w->block_rows != 1 && w->block_rows != 4) return "bad weights: block_rows must be 1 (1x4) or 4 (4x1)";
    if (w->n % w->block_rows != 0) return "bad weights: 4x1 blocks need n a multiple of 4";
    const int32_t rows = w->n / w->block_rows;
    const int32_t columns = w->block_rows == 1 ? w->k / 4 : w->k;
    if (w->row_ptr[0] != 0) return "bad weights: row_ptr[0] must be 0";
    if (w->row_ptr[rows] > 0 && (!w->block_col || !w->values)) return "bad weights: blocks without block_col or values";
    for (int32_t r = 0; r < rows; ++r) {
        if (w->row_ptr[r + 1] < w->row_ptr[r]) return "bad weights: row_ptr must not decrease";
        for (int32_t b = w->row_ptr[r]; b < w->row_ptr[r + 1]; ++b)
            if (w->block_col[b] < 0 || w->block_col[b] >= columns || (b > w->row_ptr[r] && w->block_col[b] <= w->block_col[b - 1]))
                return w->block_rows == 1 ? "bad weights: block_col must ascend within a row and lie below k / 4"
                                          : "bad weights: block_col must ascend within a row group and lie below k";
    }
    return "";
}

bool pack(const sq_bcsr* w, Isa isa, Plan* plan) {
    const Orientation orientation = w->block_rows == 1 ? ROWS_1X4 : COLUMNS_4X1;
    const int32_t groups = w->k / 4;
    const int32_t rows = w->n / w->block_rows;
    // K tiles bound the part of a token block's panel that a task's rows reuse: 128 input groups of 1x4 blocks (32
    // KB, within L1); 1024 inputs of 4x1 blocks (64 KB, from L2), because each k tile costs a 4-row group a spill and
    // reload of its 16 accumulators and a loop exit, which cost more than the L1 misses: 512-input tiles were 5-7%
    // slower per task on every encoder shape (C harness, AMD EPYC Zen 4), and 768 inputs then take one tile.
    const int32_t inputs = orientation == ROWS_1X4 ? groups : w->k;
    const int32_t max_tile = isa == ISA_SCALAR ? inputs : orientation == ROWS_1X4 ? 128 : 1024;
    const int32_t k_tiles = (inputs + max_tile - 1) / max_tile;
    const int32_t tile_inputs = (inputs + k_tiles - 1) / k_tiles;

    const int64_t packed_count = orientation == ROWS_1X4 ? w->row_ptr[w->n] : quad_count(w, k_tiles, tile_inputs);
    const size_t packed_bytes = (orientation == ROWS_1X4 ? sizeof(Block) : sizeof(Quad)) * packed_count;
    Storage storage;
    std::unique_ptr<int32_t[]> cursor(new (std::nothrow) int32_t[std::max(rows, 1)]);
    if (!cursor || !storage.allocate(packed_bytes, static_cast<size_t>(rows) * 2 * k_tiles, w->n)) {
        release(storage.memory);
        return false;
    }
    if (orientation == ROWS_1X4)
        pack_rows(w, k_tiles, tile_inputs, static_cast<Block*>(storage.packed), storage.segments, cursor.get());
    else
        pack_columns(w, k_tiles, tile_inputs, static_cast<Quad*>(storage.packed), storage.segments, cursor.get());
    const uint8_t act_offset = (isa == ISA_AVXVNNI || isa == ISA_AVX512VNNI) ? 128 : 0;
    for (int32_t o = 0; o < w->n; ++o) storage.offset_sum[o] = 0;
    for (int32_t r = 0; r < rows; ++r) {
        for (int32_t b = w->row_ptr[r]; b < w->row_ptr[r + 1]; ++b) {
            const int8_t* v = w->values + 4 * static_cast<int64_t>(b);
            if (orientation == ROWS_1X4)
                storage.offset_sum[r] += v[0] + v[1] + v[2] + v[3];
            else
                for (int i = 0; i < 4; ++i) storage.offset_sum[4 * r + i] += v[i];
        }
    }
    for (int32_t o = 0; o < w->n; ++o) {
        storage.offset_sum[o] *= act_offset;
        storage.scales[o] = w->scales[o];
        storage.bias[o] = w->bias ? w->bias[o] : 0.0f;
    }
    const bool by_rows = orientation == ROWS_1X4;
    *plan = Plan{isa,
                 orientation,
                 w->n,
                 w->k,
                 groups,
                 k_tiles,
                 tile_inputs,
                 act_offset,
                 by_rows ? static_cast<const Block*>(storage.packed) : nullptr,
                 by_rows ? nullptr : static_cast<const Quad*>(storage.packed),
                 storage.segments,
                 storage.offset_sum,
                 storage.scales,
                 storage.bias,
                 storage.memory};
    return true;
}

}  // namespace sq
