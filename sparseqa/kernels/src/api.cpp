/* The C API: CPU detection and dispatch by orientation and ISA, the task split of a call, and the calls themselves
 * (one Linear, stacked Linears, the feed-forward chain) on the parallel runtime (parallel.cpp). Packing is pack.cpp. */
#include <emmintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "core.h"

struct sq_plan {
    sq::Plan plan;
};

namespace sq {
namespace {

const char* const ISA_NAMES[] = {"scalar", "avx2", "avxvnni", "avx512vnni"};
/* By orientation, then ISA. */
const ComputeFn KERNELS[2][4] = {
    {compute_1x4_scalar, compute_1x4_avx2, compute_1x4_avxvnni, compute_1x4_avx512vnni},
    {compute_4x1_scalar, compute_4x1_avx2, compute_4x1_avxvnni, compute_4x1_avx512vnni}};
/* By ISA of the Linear that takes the handed-off rows. */
const HandoffFn HANDOFFS[4] = {handoff_sse2, handoff_sse2, handoff_sse2, handoff_avx512};
const PeaksFn PEAKS[4] = {peaks_sse2, peaks_sse2, peaks_sse2, peaks_avx512};
const QuantizeFn QUANTIZERS[2][4] = {
    {quantize_1x4_sse2, quantize_1x4_avx2, quantize_1x4_avx2, quantize_1x4_avx512},
    {quantize_4x1_sse2, quantize_4x1_sse2, quantize_4x1_sse2, quantize_4x1_avx512}};

Isa isa_named(const char* name, Isa otherwise) {
    for (int i = 0; i < 4; ++i)
        if (name && strcmp(name, ISA_NAMES[i]) == 0) return static_cast<Isa>(i);
    return otherwise;
}

/* SPARSEQA_KERNEL_MAX_ISA caps what the CPU is taken to have (as oneDNN's ONEDNN_MAX_CPU_ISA does): to test or
 * measure a machine with fewer ISA extensions on this one. */
Isa max_isa() {
    static const Isa cap = isa_named(getenv("SPARSEQA_KERNEL_MAX_ISA"), ISA_AVX512VNNI);
    return cap;
}

bool cpu_has(Isa isa) {
    __builtin_cpu_init();
    if (isa > max_isa()) return false;
    switch (isa) {
        case ISA_SCALAR:
            return true;
        case ISA_AVX2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case ISA_AVXVNNI:
            return __builtin_cpu_supports("avxvnni") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case ISA_AVX512VNNI:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    }
    return false;
}

Isa best_isa() {
    for (int i = ISA_AVX512VNNI; i > ISA_SCALAR; --i)
        if (cpu_has(static_cast<Isa>(i))) return static_cast<Isa>(i);
    return ISA_SCALAR;
}

void set_error(char* error, size_t size, const std::string& message) {
    if (error && size) snprintf(error, size, "%s", message.c_str());
}

int64_t token_blocks(int64_t m) { return padded_tokens(m) / TOKEN_BLOCK; }

/* Rows per compute task: as many as the accumulator tile holds, fewer when that leaves under 16 tasks to balance. */
int32_t rows_per_task(const Plan& plan, int64_t m) {
    int32_t rows = TILE_BYTES / (4 * TOKEN_BLOCK);
    while (rows > 16 && token_blocks(m) * ((plan.n + rows - 1) / rows) < 16) rows /= 2;
    return rows;
}

/* Compute task ``task`` (see sq_compute_task) into ``out``. */
void compute_task(const Plan& p, const void* workspace, int64_t m, const Output& out, int64_t task) {
    const int32_t rows = rows_per_task(p, m);
    // Consecutive tasks share a row chunk, so its packed weights stay in cache while the token panels stream by.
    Task t;
    t.token_block = task % token_blocks(m);
    t.tokens = static_cast<int32_t>(std::min<int64_t>(TOKEN_BLOCK, m - t.token_block * TOKEN_BLOCK));
    t.r0 = static_cast<int32_t>(task / token_blocks(m)) * rows;
    t.r1 = std::min(p.n, t.r0 + rows);
    KERNELS[p.orientation][p.isa](p, workspace, m, out, t);
}
/* The segment of a call that quantizes x token block by token block into ``workspace``, raising quantized[block]. */
Segments::Segment quantize_segment(const sq_plan* plan, const float* x, int64_t m, void* workspace,
                                   std::atomic<int64_t>* quantized) {
    return {token_blocks(m), false, [=](int64_t block) {
                sq_quantize_task(plan, x, m, workspace, block);
                quantized[block].store(1, std::memory_order_release);
            }};
}

}  // namespace
}  // namespace sq

using namespace sq;

extern "C" {

const char* sq_cpu_isas(void) {
    static const std::string names = [] {
        std::string s;
        for (int i = ISA_AVX512VNNI; i >= ISA_SCALAR; --i)
            if (cpu_has(static_cast<Isa>(i))) s += std::string(s.empty() ? "" : ",") + ISA_NAMES[i];
        return s;
    }();
    return names.c_str();
}

sq_plan* sq_plan_create(const sq_bcsr* w, const char* isa_name, char* error, size_t error_size) {
    Isa isa = best_isa();
    if (isa_name && *isa_name && strcmp(isa_name, "auto") != 0) {
        const int found = static_cast<int>(isa_named(isa_name, static_cast<Isa>(-1)));
        if (found < 0) {
            set_error(error, error_size,
                      std::string("unknown kernel ISA '") + isa_name + "': choose avx512vnni, avxvnni, avx2 or scalar");
            return nullptr;
        }
        if (!cpu_has(static_cast<Isa>(found))) {
            set_error(error, error_size,
                      std::string("this CPU lacks ") + isa_name + ": it runs " + sq_cpu_isas());
            return nullptr;
        }
        isa = static_cast<Isa>(found);
    }
    const std::string bad = bad_weights(w);
    if (!bad.empty()) {
        set_error(error, error_size, bad);
        return nullptr;
    }
    sq_plan* plan = new (std::nothrow) sq_plan;
    if (!plan || !pack(w, isa, &plan->plan)) {
        delete plan;
        set_error(error, error_size, "out of memory packing the weights");
        return nullptr;
    }
    return plan;
}

void sq_plan_destroy(sq_plan* plan) {
    if (!plan) return;
    release(plan->plan.storage);
    delete plan;
}

int sq_parts_fit(const sq_plan* plan, int parts) {
    if (!plan || parts < 1) return 0;
    const int32_t n = plan->plan.n;
    return parts == 1 || (n % parts == 0 && (n / parts) % 16 == 0);
}

const char* sq_plan_isa(const sq_plan* plan) { return ISA_NAMES[plan->plan.isa]; }
int32_t sq_plan_block_rows(const sq_plan* plan) { return plan->plan.orientation == ROWS_1X4 ? 1 : 4; }
int32_t sq_plan_n(const sq_plan* plan) { return plan->plan.n; }
int32_t sq_plan_k(const sq_plan* plan) { return plan->plan.k; }

size_t sq_workspace_size(const sq_plan* plan, int64_t m) {
    if (!plan || m < 0) return 0;
    const int64_t padded = padded_tokens(m);
    return static_cast<size_t>(padded * 4 + padded * plan->plan.groups * 4);
}

int64_t sq_quantize_task_count(const sq_plan* plan, int64_t m) {
    return plan && m > 0 ? token_blocks(m) : 0;
}

int sq_quantize_task(const sq_plan* plan, const float* x, int64_t m, void* workspace, int64_t task) {
    if (!plan || !x || !workspace || task < 0 || task >= sq_quantize_task_count(plan, m)) return -1;
    QUANTIZERS[plan->plan.orientation][plan->plan.isa](plan->plan, x, m, workspace, task);
    return 0;
}

int64_t sq_compute_task_count(const sq_plan* plan, int64_t m) {
    if (!plan || m <= 0) return 0;
    const int32_t rows = rows_per_task(plan->plan, m);
    return token_blocks(m) * ((plan->plan.n + rows - 1) / rows);
}

int sq_compute_task(const sq_plan* plan, const void* workspace, int64_t m, float* y, int64_t task) {
    if (!plan || !workspace || !y || task < 0 || task >= sq_compute_task_count(plan, m)) return -1;
    compute_task(plan->plan, workspace, m, Output{&y, plan->plan.n}, task);
    return 0;
}

int sq_compute_task_tile(const sq_plan* plan, int64_t m, int64_t task, int64_t* token_begin, int64_t* token_end,
                         int32_t* row_begin, int32_t* row_end) {
    if (!plan || !token_begin || !token_end || !row_begin || !row_end || task < 0 ||
        task >= sq_compute_task_count(plan, m))
        return -1;
    const Plan& p = plan->plan;
    const int32_t rows = rows_per_task(p, m);
    *token_begin = task % token_blocks(m) * TOKEN_BLOCK;
    *token_end = std::min<int64_t>(m, *token_begin + TOKEN_BLOCK);
    *row_begin = static_cast<int32_t>(task / token_blocks(m)) * rows;
    *row_end = std::min(p.n, *row_begin + rows);
    return 0;
}

int sq_linear(const sq_plan* plan, const float* x, int64_t m, float* y, int threads) {
    return sq_linear_parts(plan, x, m, &y, 1, threads);
}

int sq_linear_parts(const sq_plan* plan, const float* x, int64_t m, float* const* ys, int parts, int threads) {
    if (threads < 0) return -1;
    return sq_linear_hosted_parts(plan, x, m, ys, parts, all_cores_if_zero(threads), own_pool, nullptr, nullptr, nullptr);
}

int sq_linear_hosted(const sq_plan* plan, const float* x, int64_t m, float* y, int participants,
                     sq_parallel_fn parallel, void* host, sq_tile_fn post, void* post_context) {
    return sq_linear_hosted_parts(plan, x, m, &y, 1, participants, parallel, host, post, post_context);
}

int sq_linear_hosted_parts(const sq_plan* plan, const float* x, int64_t m, float* const* ys, int parts,
                           int participants, sq_parallel_fn parallel, void* host, sq_tile_fn post, void* post_context) {
    if (!plan || m < 0 || participants < 1 || !parallel || !ys || !sq_parts_fit(plan, parts) || (post && parts > 1))
        return -1;
    if (m > 0 && (!x || std::find(ys, ys + parts, nullptr) != ys + parts)) return -1;
    if (m == 0 || plan->plan.n == 0) return 0;
    void* workspace = cached_workspace(sq_workspace_size(plan, m));
    if (!workspace) return -1;
    const Output out{ys, plan->plan.n / parts};
    const auto compute = [&](int64_t task) {
        compute_task(plan->plan, workspace, m, out, task);
        if (post) {
            int64_t token_begin, token_end;
            int32_t row_begin, row_end;
            sq_compute_task_tile(plan, m, task, &token_begin, &token_end, &row_begin, &row_end);
            post(post_context, ys[0], plan->plan.n, token_begin, token_end, row_begin, row_end);
        }
    };
    const int64_t blocks = token_blocks(m);
    const auto quantized = counters(blocks);
    if (!quantized) return -1;
    // A compute task reads only its own token block's panel.
    const bool ran = run_segments(participants, parallel, host,
                                  {quantize_segment(plan, x, m, workspace, quantized.get()),
                                   {sq_compute_task_count(plan, m), true, [&](int64_t task) {
                                        wait_for(quantized[task % blocks], 1);
                                        compute(task);
                                    }}});
    return ran ? 0 : -1;
}

int sq_chain_fits(const sq_plan* first, const sq_plan* second) {
    return first && second && second->plan.k == first->plan.n;
}

int sq_chain(const sq_plan* first, const sq_plan* second, const float* x, int64_t m, float* y, int threads,
             sq_rows_fn between, void* between_context) {
    if (threads < 0) return -1;
    return sq_chain_hosted(first, second, x, m, y, all_cores_if_zero(threads), own_pool, nullptr, between, between_context);
}

int sq_chain_hosted(const sq_plan* first, const sq_plan* second, const float* x, int64_t m, float* y,
                    int participants, sq_parallel_fn parallel, void* host, sq_rows_fn between,
                    void* between_context) {
    if (!sq_chain_fits(first, second) || m < 0 || participants < 1 || !parallel) return -1;
    if (m > 0 && (!x || !y)) return -1;
    if (m == 0 || second->plan.n == 0) return 0;
    const Plan& p1 = first->plan;
    const Plan& p2 = second->plan;
    const int64_t blocks = token_blocks(m);
    const int64_t padded = padded_tokens(m);
    // Rows of the handoff tasks: 256 inputs, a multiple of 4 as 1x4 groups need.
    const int32_t handoff_rows = 256;
    const int64_t chunks = sq_compute_task_count(first, m) / blocks;  // row chunks of the first Linear
    const int64_t handoffs = (p1.n + handoff_rows - 1) / handoff_rows;
    // One workspace: the first's, its output rows, each row chunk's per-token amax, the tokens' 127 / amax, the
    // second's.
    const size_t first_bytes = lines(sq_workspace_size(first, m));
    const size_t rows_bytes = lines(sizeof(float) * padded * std::max(p1.n, 1));
    const size_t amax_bytes = lines(sizeof(float) * padded * chunks);
    const size_t inverse_bytes = lines(sizeof(float) * padded);
    char* workspace = static_cast<char*>(cached_workspace(first_bytes + rows_bytes + amax_bytes + inverse_bytes +
                                                          lines(sq_workspace_size(second, m))));
    if (!workspace) return -1;
    void* first_workspace = workspace;
    float* amax = reinterpret_cast<float*>(workspace + first_bytes + rows_bytes);
    float* inverses = reinterpret_cast<float*>(workspace + first_bytes + rows_bytes + amax_bytes);
    void* second_workspace = workspace + first_bytes + rows_bytes + amax_bytes + inverse_bytes;
    const Output hidden{nullptr, p1.n, reinterpret_cast<float*>(workspace + first_bytes)};
    const Output out{&y, p2.n};

    // One task of the first Linear into its rows, ``between`` on the tile, and the tile's largest |value| per token.
    const auto compute_first = [&](int64_t block, int64_t chunk) {
        const int64_t task = chunk * blocks + block;
        compute_task(p1, first_workspace, m, hidden, task);
        int64_t token_begin, token_end;
        int32_t row_begin, row_end;
        sq_compute_task_tile(first, m, task, &token_begin, &token_end, &row_begin, &row_end);
        float* tile = output_row(hidden, p1.n, block, row_begin);
        if (between) between(between_context, tile, TOKEN_BLOCK, row_begin, row_end, TOKEN_BLOCK);
        PEAKS[p2.isa](tile, row_end - row_begin, amax + chunk * padded + block * TOKEN_BLOCK);
    };
    // A block's token scales from its chunks' amax, as quantize_token computes them (tokens past m get 0): the
    // scale into the second's workspace, 127 / amax into inverses.
    const auto scale_block = [&](int64_t block) {
        float* scales_t = static_cast<float*>(second_workspace) + block * TOKEN_BLOCK;
        for (int t = 0; t < TOKEN_BLOCK; t += 4) {
            __m128 peak = _mm_load_ps(amax + block * TOKEN_BLOCK + t);
            for (int64_t c = 1; c < chunks; ++c) peak = _mm_max_ps(peak, _mm_load_ps(amax + c * padded + block * TOKEN_BLOCK + t));
            alignas(16) float lanes[4];
            _mm_store_ps(lanes, peak);
            for (int u = 0; u < 4; ++u)
                token_scale(block * TOKEN_BLOCK + t + u < m ? lanes[u] : 0.0f, scales_t + t + u,
                            inverses + block * TOKEN_BLOCK + t + u);
        }
    };
    // Rows [i0, i1) of a block into the second's panel.
    const auto handoff = [&](int64_t block, int32_t i0) {
        const int32_t i1 = std::min(p1.n, i0 + handoff_rows);
        HANDOFFS[p2.isa](p2, output_row(hidden, p1.n, block, i0), i0, i1, inverses + block * TOKEN_BLOCK,
                         second_workspace, m, block);
    };
    // The first Linear as sq_linear runs it, chunk by chunk of its rows (each reusing its weights over all token
    // blocks); a block's handoff tasks once all its chunks are done; the second Linear's tasks once their token block
    // is handed off. Its rows stay ordered by token block, which measured faster at 384 tokens than going block by
    // block with only two blocks' rows in memory (AMD EPYC Zen 4: the first Linear's weights then left the cache
    // between blocks).
    const auto done = counters(4 * blocks);
    if (!done) return -1;
    std::atomic<int64_t>*quantized = done.get(), *computed = quantized + blocks, *scaled = computed + blocks,
                        *handed = scaled + blocks;
    std::vector<Segments::Segment> segments;
    segments.push_back(quantize_segment(first, x, m, first_workspace, quantized));
    segments.push_back({chunks * blocks, true, [&](int64_t task) {
                            const int64_t block = task % blocks;
                            wait_for(quantized[block], 1);
                            compute_first(block, task / blocks);
                            // The block's last chunk to finish (on whichever thread) computes its token scales.
                            if (computed[block].fetch_add(1, std::memory_order_acq_rel) == chunks - 1) {
                                scale_block(block);
                                scaled[block].store(1, std::memory_order_release);
                            }
                        }});
    segments.push_back({handoffs * blocks, false, [&](int64_t task) {
                            const int64_t block = task % blocks;
                            wait_for(scaled[block], 1);
                            handoff(block, static_cast<int32_t>(task / blocks) * handoff_rows);
                            handed[block].fetch_add(1, std::memory_order_release);
                        }});
    segments.push_back({sq_compute_task_count(second, m), true, [&](int64_t task) {
                            wait_for(handed[task % blocks], handoffs);
                            compute_task(p2, second_workspace, m, out, task);
                        }});
    const bool ran = run_segments(participants, parallel, host, std::move(segments));
    return ran ? 0 : -1;
}

}  // extern "C"
