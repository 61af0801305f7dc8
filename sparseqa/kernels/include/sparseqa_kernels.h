/* sparseqa kernels: y = x * W^T + b for weights stored as their nonzero blocks of 4 (int8, per-output-row scales).
 *
 * Blocks come in two orientations of PyTorch's (out, in) weight, each with its own kernel family: a 1x4 block is 4
 * consecutive inputs of one output row (TFLite / XNNPACK's "1x4"); a 4x1 block is 4 consecutive outputs at one input
 * (how Intel's Model-Compression-Research-Package prunes "1x4", SparseLib's "4x1"). Weights arrive in a format-neutral block-CSR form (what the
 * IR stores and the Python packer writes); sq_plan_create packs them once, for one ISA, into that kernel's layout.
 * Activations are quantized to 8 bits inside sq_linear, dynamically per token (symmetric, scale = max|x|/127);
 * products accumulate in int32 and are dequantized to fp32 with the bias added. The reference implementation
 * (sq_linear_reference) defines the result; every ISA kernel reproduces its int32 sums exactly.
 *
 * Plain C ABI so that both ctypes (tests, the kernel benchmark) and the OpenVINO extension can call it.
 */
#ifndef SPARSEQA_KERNELS_H
#define SPARSEQA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SQ_API __declspec(dllexport)
#else
#define SQ_API __attribute__((visibility("default")))
#endif

/* Format-neutral block-CSR weights. The caller keeps the arrays alive until sq_plan_create returns.
 * With block_rows = 1 (1x4 blocks) a "row" below is one output; with block_rows = 4 (4x1 blocks) it is a group of 4
 * consecutive outputs (4 g .. 4 g + 3), and n must be a multiple of 4. */
typedef struct sq_bcsr {
    int32_t n;                /* output features (rows of W) */
    int32_t k;                /* input features, a multiple of 4 */
    int32_t block_rows;       /* 1: 1x4 blocks, 4: 4x1 blocks */
    const int32_t* row_ptr;   /* n / block_rows + 1 entries: blocks of row r are [row_ptr[r], row_ptr[r + 1]) */
    const int32_t* block_col; /* one per nonzero block, ascending within a row: 1x4: its first input divided by 4;
                               * 4x1: its input */
    const int8_t* values;     /* 4 per nonzero block: 1x4: in input order; 4x1: in output order */
    const float* scales;      /* n: W[o, i] = scales[o] * int8 value */
    const float* bias;        /* n, or NULL for no bias */
} sq_bcsr;

typedef struct sq_plan sq_plan;

/* Comma-separated ISA paths this CPU can run, best first, e.g. "avx512vnni,avxvnni,avx2,scalar". The environment
 * variable SPARSEQA_KERNEL_MAX_ISA (read once) caps it, to test or measure a lesser CPU's paths on this one. */
SQ_API const char* sq_cpu_isas(void);

/* Pack ``weights`` for ``isa`` ("avx512vnni", "avxvnni", "avx2", "scalar", or NULL / "auto" for the best this CPU
 * runs). Returns NULL and writes a one-line reason into ``error`` (if not NULL) when the ISA is unknown or missing. */
SQ_API sq_plan* sq_plan_create(const sq_bcsr* weights, const char* isa, char* error, size_t error_size);
SQ_API void sq_plan_destroy(sq_plan* plan);
SQ_API const char* sq_plan_isa(const sq_plan* plan);
SQ_API int32_t sq_plan_block_rows(const sq_plan* plan); /* 1 (1x4 blocks) or 4 (4x1 blocks) */
SQ_API int32_t sq_plan_n(const sq_plan* plan);
SQ_API int32_t sq_plan_k(const sq_plan* plan);

/* y[m, n] = x[m, k] * W^T + b with ``threads`` worker threads (0 = all cores). Returns 0, or -1 on bad arguments
 * or when out of memory.
 * Safe to call from several threads at once on one plan. */
SQ_API int sq_linear(const sq_plan* plan, const float* x, int64_t m, float* y, int threads);

/* sq_linear with its n outputs written as ``parts`` equal arrays: outputs [p n / parts, (p + 1) n / parts) of each
 * token go to ys[p], a row-major (m, n / parts) array. So Linears that share their input (a transformer's query, key
 * and value) run as one plan: one quantization of x, one parallel call, and no copy to split the result. */
SQ_API int sq_linear_parts(const sq_plan* plan, const float* x, int64_t m, float* const* ys, int parts, int threads);
/* 1 when ``plan``'s outputs split into ``parts`` equal arrays: parts = 1, or n / parts a whole multiple of 16 (the
 * kernels write 16 consecutive outputs at a time). */
SQ_API int sq_parts_fit(const sq_plan* plan, int parts);

/* The same computation as tasks, for a host thread pool (e.g. ov::parallel_for) instead of the library's own:
 *   workspace = 64-byte aligned memory of sq_workspace_size(plan, m) bytes (one per concurrent call);
 *   run sq_quantize_task(plan, x, m, workspace, i) for every i < sq_quantize_task_count(plan, m), in any order or
 *   in parallel; then, after all of them, sq_compute_task(plan, workspace, m, y, i) for every
 *   i < sq_compute_task_count(plan, m). Tasks write disjoint memory. The split depends only on the plan and m, and
 *   the result is the same whatever the order or the number of threads. Each returns 0, or -1 on bad arguments.
 * Compute task i reads only what quantize task i % sq_quantize_task_count(plan, m) wrote (one block of tokens), so a
 * host may start it as soon as that one is done; consecutive compute tasks share their rows (their weights). */
SQ_API size_t sq_workspace_size(const sq_plan* plan, int64_t m);
SQ_API int64_t sq_quantize_task_count(const sq_plan* plan, int64_t m);
SQ_API int sq_quantize_task(const sq_plan* plan, const float* x, int64_t m, void* workspace, int64_t task);
SQ_API int64_t sq_compute_task_count(const sq_plan* plan, int64_t m);
SQ_API int sq_compute_task(const sq_plan* plan, const void* workspace, int64_t m, float* y, int64_t task);
/* The output tile compute task ``task`` writes: tokens [token_begin, token_end) x outputs [row_begin, row_end), so a
 * host can apply an elementwise post-op to it while it is still in cache. Returns 0, or -1 on bad arguments. */
SQ_API int sq_compute_task_tile(const sq_plan* plan, int64_t m, int64_t task, int64_t* token_begin,
                                int64_t* token_end, int32_t* row_begin, int32_t* row_end);

/* sq_linear on a host's threads (e.g. OpenVINO's), with an optional post-op on each output tile while it is in cache.
 * The library schedules the tasks above (quantize tasks claimed first, then each participant's contiguous share of
 * the compute tasks, then what is left of the others'); the host only provides the threads: ``parallel(host,
 * participants, work, job)`` must call ``work(job, i)`` once for every i < participants, concurrently or one after
 * another, and return when all are done. ``post`` (or NULL) gets each compute task's tile: tokens [token_begin,
 * token_end) x outputs [row_begin, row_end) of y, whose rows are n floats apart. Uses the calling thread's cached
 * workspace. Returns 0, or -1 on bad arguments or when out of memory. */
typedef void (*sq_work_fn)(void* job, int participant);
typedef void (*sq_parallel_fn)(void* host, int participants, sq_work_fn work, void* job);
typedef void (*sq_tile_fn)(void* context, float* y, int64_t n, int64_t token_begin, int64_t token_end,
                           int32_t row_begin, int32_t row_end);
SQ_API int sq_linear_hosted(const sq_plan* plan, const float* x, int64_t m, float* y, int participants,
                            sq_parallel_fn parallel, void* host, sq_tile_fn post, void* post_context);
/* sq_linear_hosted writing ``parts`` arrays as sq_linear_parts does; ``post`` must be NULL when parts > 1. */
SQ_API int sq_linear_hosted_parts(const sq_plan* plan, const float* x, int64_t m, float* const* ys, int parts,
                                  int participants, sq_parallel_fn parallel, void* host, sq_tile_fn post,
                                  void* post_context);

/* y = second(between(first(x))): two Linears of which the second takes the first's outputs (a transformer's
 * feed-forward: 768 -> 3072, GELU, 3072 -> 768), in one parallel call. The first's outputs never go to memory in
 * (m, n) order: its kernels leave each tile as they compute it, output by output (TOKEN_BLOCK = 64 tokens per row),
 * ``between`` (or NULL) runs on that tile while it is in cache, and the tile's per-token amax is kept; once a block of
 * tokens is complete its rows are quantized straight into the second's activation panel, with no transpose either
 * way and no second pass over them. The result is bit for bit that of sq_linear(first), ``between`` on its outputs,
 * then sq_linear(second). ``between(context, rows, stride, row_begin, row_end, count)`` gets outputs [row_begin,
 * row_end) of one block of tokens: ``count`` consecutive floats per output (tokens past m among them: any finite
 * value, ignored), consecutive outputs ``stride`` floats apart; it must compute each value from that value alone
 * (an elementwise activation), in place. The plans may have different block orientations and ISAs.
 * Returns 0, or -1 on bad arguments (sq_chain_fits false) or when out of memory. */
typedef void (*sq_rows_fn)(void* context, float* rows, int64_t stride, int32_t row_begin, int32_t row_end,
                           int32_t count);
/* 1 when ``second`` takes ``first``'s outputs as its inputs (its k is first's n). */
SQ_API int sq_chain_fits(const sq_plan* first, const sq_plan* second);
SQ_API int sq_chain(const sq_plan* first, const sq_plan* second, const float* x, int64_t m, float* y, int threads,
                    sq_rows_fn between, void* between_context);
SQ_API int sq_chain_hosted(const sq_plan* first, const sq_plan* second, const float* x, int64_t m, float* y,
                           int participants, sq_parallel_fn parallel, void* host, sq_rows_fn between,
                           void* between_context);

/* The same result by the plainest loops: what every ISA kernel is tested against. */
SQ_API int sq_linear_reference(const sq_bcsr* weights, const float* x, int64_t m, float* y);

#ifdef __cplusplus
}
#endif

#endif /* SPARSEQA_KERNELS_H */
