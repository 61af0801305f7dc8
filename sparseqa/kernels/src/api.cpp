/* The C API: CPU detection and dispatch, packing block-CSR weights into a plan, activation quantization, the task
 * split and a persistent worker pool. */
#include <emmintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "internal.h"
#include "sparseqa_kernels.h"

struct sq_plan {
    sq::Plan plan;
};

namespace sq {
namespace {

const char* const ISA_NAMES[] = {"scalar", "avx2", "avxvnni", "avx512vnni"};
const ComputeFn KERNELS[] = {compute_scalar, compute_avx2, compute_avxvnni, compute_avx512vnni};
const QuantizeFn QUANTIZERS[] = {quantize_sse2, quantize_avx2, quantize_avx2, quantize_avx512};

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

/* The library's own workers: persistent threads that spin briefly after a job (so consecutive calls and layers find
 * them awake) and then sleep on a condition variable. The caller works too. One parallel job at a time. */
class Pool {
   public:
    ~Pool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_.store(true);
        }
        wake_.notify_all();
        for (auto& worker : workers_) worker.join();
    }

    /* Runs fn(0..count-1) on up to ``threads`` threads (the caller included); returns when all are done. */
    template <class Fn>
    void run(int64_t count, int threads, const Fn& fn) {
        if (threads <= 1 || count <= 1) {
            for (int64_t i = 0; i < count; ++i) fn(i);
            return;
        }
        std::lock_guard<std::mutex> call(call_mutex_);
        const int helpers = static_cast<int>(std::min<int64_t>(std::min(threads, MAX_THREADS), count)) - 1;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const uint64_t generation = state_.load() >> 8;
            while (static_cast<int>(workers_.size()) < helpers)
                workers_.emplace_back([this, id = static_cast<int>(workers_.size()), generation] { work(id, generation); });
            job_ = [&fn](int64_t i) { fn(i); };
            count_ = count;
            next_.store(0);
            pending_.store(helpers);
            // Generation and helper count in one word, so a worker never pairs one job's count with another's.
            state_.store(((generation + 1) << 8) | static_cast<uint64_t>(helpers));
        }
        wake_.notify_all();
        drain();
        if (!spin_until([this] { return pending_.load() == 0; })) {
            std::unique_lock<std::mutex> lock(mutex_);
            done_.wait(lock, [this] { return pending_.load() == 0; });
        }
        job_ = nullptr;
    }

   private:
    static constexpr int MAX_THREADS = 255;

    template <class Ready>
    static bool spin_until(const Ready& ready) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
        for (int i = 0;; ++i) {
            if (ready()) return true;
            _mm_pause();
            if ((i & 63) == 63) {
                if (std::chrono::steady_clock::now() > until) return false;
                // On a shared machine the thread we wait for may be queued behind us on this very core.
                std::this_thread::yield();
            }
        }
    }

    void drain() {
        for (int64_t i = next_.fetch_add(1); i < count_; i = next_.fetch_add(1)) job_(i);
    }

    void work(int id, uint64_t seen) {
        for (;;) {
            uint64_t state = 0;
            const auto fresh = [&] {
                state = state_.load();
                return stop_.load() || (state >> 8) != seen;
            };
            if (!spin_until(fresh)) {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, fresh);
            }
            if (stop_.load()) return;
            seen = state >> 8;
            if (id >= static_cast<int>(state & 0xff)) continue;
            drain();
            if (pending_.fetch_sub(1) == 1) {
                std::lock_guard<std::mutex> lock(mutex_);
                done_.notify_one();
            }
        }
    }

    std::mutex call_mutex_, mutex_;
    std::condition_variable wake_, done_;
    std::vector<std::thread> workers_;
    std::function<void(int64_t)> job_;
    std::atomic<int64_t> next_{0};
    std::atomic<int> pending_{0};
    std::atomic<uint64_t> state_{0};
    std::atomic<bool> stop_{false};
    int64_t count_ = 0;
};

Pool& pool() {
    static Pool instance;
    return instance;
}

int64_t token_blocks(int64_t m) { return padded_tokens(m) / TOKEN_BLOCK; }

void* aligned(size_t bytes) { return ::operator new(bytes, std::align_val_t(ALIGN), std::nothrow); }
void release(void* p) {
    if (p) ::operator delete(p, std::align_val_t(ALIGN));
}

/* The calling thread's largest workspace so far: no allocation (and no fresh pages to fault in) per call. */
void* cached_workspace(size_t bytes) {
    thread_local struct Workspace {
        void* memory = nullptr;
        size_t bytes = 0;
        ~Workspace() { release(memory); }
    } cached;
    if (bytes > cached.bytes) {
        release(cached.memory);
        cached.memory = aligned(bytes);
        cached.bytes = cached.memory ? bytes : 0;
    }
    return cached.memory;
}

/* Rows per compute task: as many as the accumulator tile holds, fewer when that leaves under 16 tasks to balance. */
int32_t rows_per_task(const Plan& plan, int64_t m) {
    int32_t rows = TILE_BYTES / (4 * TOKEN_BLOCK);
    while (rows > 16 && token_blocks(m) * ((plan.n + rows - 1) / rows) < 16) rows /= 2;
    return rows;
}

/* One sq_linear_hosted call's shared state. Every participant first claims quantize tasks until none is left, then
 * runs its own contiguous share of the compute tasks (numbered row chunk by row chunk, so a share reuses its weights
 * from cache), then helps with what is left of the others' shares: on a shared machine a participant that lost its
 * core would otherwise hold up the whole call. A compute task waits for its token block's panel only while another
 * running participant quantizes it (all are claimed first), so this cannot deadlock even when the host runs the
 * participants one after another. One parallel region per call: a quantize region and a compute region cost ~5%
 * more of an op inside OpenVINO (measured at 384 tokens, 2 threads). */
class Job {
   public:
    Job(const sq_plan* plan, const float* x, int64_t m, float* y, void* workspace, int participants, sq_tile_fn post,
        void* post_context)
        : plan_(plan), x_(x), m_(m), y_(y), workspace_(workspace), participants_(participants), post_(post),
          post_context_(post_context), quantize_tasks_(sq_quantize_task_count(plan, m)),
          shares_(new (std::nothrow) Share[participants]),
          quantized_(new (std::nothrow) std::atomic<bool>[quantize_tasks_]) {
        if (!ready()) return;
        const int64_t tasks = sq_compute_task_count(plan, m);
        for (int i = 0; i < participants; ++i) {
            shares_[i].next.store(tasks * i / participants, std::memory_order_relaxed);
            shares_[i].end = tasks * (i + 1) / participants;
        }
        for (int64_t i = 0; i < quantize_tasks_; ++i) quantized_[i].store(false, std::memory_order_relaxed);
    }

    bool ready() const { return shares_ && quantized_; }

    void work(int participant) {
        for (int64_t block; (block = next_quantize_.fetch_add(1, std::memory_order_relaxed)) < quantize_tasks_;) {
            sq_quantize_task(plan_, x_, m_, workspace_, block);
            quantized_[block].store(true, std::memory_order_release);
        }
        for (int k = 0; k < participants_; ++k) {
            Share& share = shares_[(participant + k) % participants_];
            for (int64_t task; (task = share.next.fetch_add(1, std::memory_order_relaxed)) < share.end;) compute(task);
        }
    }

   private:
    struct alignas(64) Share {
        std::atomic<int64_t> next{0};
        int64_t end = 0;
    };

    void compute(int64_t task) {
        // Its token block's quantizer may still run on another thread; yield now and then in case it lost its core.
        for (int spins = 1; !quantized_[task % quantize_tasks_].load(std::memory_order_acquire); ++spins) {
            _mm_pause();
            if (spins % 64 == 0) std::this_thread::yield();
        }
        sq_compute_task(plan_, workspace_, m_, y_, task);
        if (post_) {
            int64_t token_begin, token_end;
            int32_t row_begin, row_end;
            sq_compute_task_tile(plan_, m_, task, &token_begin, &token_end, &row_begin, &row_end);
            post_(post_context_, y_, plan_->plan.n, token_begin, token_end, row_begin, row_end);
        }
    }

    const sq_plan* plan_;
    const float* x_;
    int64_t m_;
    float* y_;
    void* workspace_;
    int participants_;
    sq_tile_fn post_;
    void* post_context_;
    int64_t quantize_tasks_;
    std::unique_ptr<Share[]> shares_;
    std::unique_ptr<std::atomic<bool>[]> quantized_;
    std::atomic<int64_t> next_quantize_{0};
};

}  // namespace

/* The portable quantizer, 4 lanes at a time with baseline x86-64 SSE2 (cvtps rounds half to even like nearbyint). */
void quantize_sse2(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
    float* scales_t = static_cast<float*>(workspace) + token_block * TOKEN_BLOCK;
    uint8_t* out = panel(plan, workspace, m, token_block);
    const int64_t t0 = token_block * TOKEN_BLOCK;
    const int tokens = static_cast<int>(std::min<int64_t>(TOKEN_BLOCK, m - t0));
    const __m128i offset = _mm_set1_epi8(static_cast<char>(plan.act_offset));
    const __m128 sign = _mm_set1_ps(-0.0f);
    for (int t = 0; t < TOKEN_BLOCK; ++t) {
        uint8_t* lane = out + t * 4;
        if (t >= tokens) {
            for (int32_t g = 0; g < plan.groups; ++g) memcpy(lane + g * GROUP_BYTES, &offset, 4);
            scales_t[t] = 0.0f;
            continue;
        }
        const float* row = x + (t0 + t) * plan.k;
        __m128 peak = _mm_setzero_ps();
        for (int32_t i = 0; i < plan.k; i += 4) peak = _mm_max_ps(peak, _mm_andnot_ps(sign, _mm_loadu_ps(row + i)));
        float lanes[4];
        _mm_storeu_ps(lanes, peak);
        const float amax = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
        const bool zero = !(amax >= QUANT_MIN);
        scales_t[t] = zero ? 0.0f : amax / 127.0f;
        const __m128 inverse = _mm_set1_ps(zero ? 0.0f : 127.0f / amax);
        const __m128 low = _mm_set1_ps(-127.0f), high = _mm_set1_ps(127.0f);
        for (int32_t g = 0; g < plan.groups; ++g) {
            __m128 v = _mm_mul_ps(_mm_loadu_ps(row + 4 * g), inverse);
            v = _mm_min_ps(high, _mm_max_ps(low, v));  // clamping before rounding is the same: ±127 are integers
            __m128i q = _mm_cvtps_epi32(v);
            q = _mm_packs_epi32(q, q);
            q = _mm_packs_epi16(q, q);
            q = _mm_add_epi8(q, offset);
            const int32_t word = _mm_cvtsi128_si32(q);
            memcpy(lane + g * GROUP_BYTES, &word, 4);
        }
    }
}

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
    if (!w || w->n < 0 || w->k <= 0 || w->k % 4 != 0 || !w->row_ptr || !w->scales ||
        (w->row_ptr[w->n] > 0 && (!w->block_col || !w->values))) {
        set_error(error, error_size, "bad weights: need n >= 0, k a positive multiple of 4, row_ptr, scales");
        return nullptr;
    }
    const int32_t groups = w->k / 4;
    if (w->row_ptr[0] != 0) {
        set_error(error, error_size, "bad weights: row_ptr[0] must be 0");
        return nullptr;
    }
    for (int32_t o = 0; o < w->n; ++o) {
        if (w->row_ptr[o + 1] < w->row_ptr[o]) {
            set_error(error, error_size, "bad weights: row_ptr must not decrease");
            return nullptr;
        }
        for (int32_t b = w->row_ptr[o]; b < w->row_ptr[o + 1]; ++b)
            if (w->block_col[b] < 0 || w->block_col[b] >= groups || (b > w->row_ptr[o] && w->block_col[b] <= w->block_col[b - 1])) {
                set_error(error, error_size, "bad weights: block_col must ascend within a row and lie below k / 4");
                return nullptr;
            }
    }
    const int32_t blocks = w->row_ptr[w->n];
    // K tiles keep one token block's panel tile (tile_groups * GROUP_BYTES) within L1 while a task's rows reuse it.
    const int32_t max_tile_groups = isa == ISA_SCALAR ? groups : 128;
    const int32_t k_tiles = (groups + max_tile_groups - 1) / max_tile_groups;
    const int32_t tile_groups = (groups + k_tiles - 1) / k_tiles;

    const size_t block_bytes = sizeof(Block) * std::max(blocks, 1);
    const size_t tile_bytes = sizeof(int32_t) * static_cast<size_t>(w->n) * 2 * k_tiles;
    const size_t row_bytes = sizeof(float) * std::max(w->n, 1);
    char* storage = static_cast<char*>(aligned(block_bytes + tile_bytes + 3 * row_bytes));
    if (!storage) {
        set_error(error, error_size, "out of memory packing the weights");
        return nullptr;
    }
    Block* packed = reinterpret_cast<Block*>(storage);
    int32_t* segments = reinterpret_cast<int32_t*>(storage + block_bytes);
    int32_t* offset_sum = reinterpret_cast<int32_t*>(storage + block_bytes + tile_bytes);
    float* scales = reinterpret_cast<float*>(storage + block_bytes + tile_bytes + row_bytes);
    float* bias = reinterpret_cast<float*>(storage + block_bytes + tile_bytes + 2 * row_bytes);
    const uint8_t act_offset = (isa == ISA_AVXVNNI || isa == ISA_AVX512VNNI) ? 128 : 0;
    // Blocks are stored in the order the kernels read them: row group by row group, within a group k tile by k tile,
    // within a k tile row by row. So a task's pass over one k tile reads one contiguous run of memory, which the
    // hardware prefetcher streams from DRAM (a model's weights do not stay in cache between requests).
    // Columns ascend within a row, so a row's blocks of k tile kt are the run after those of tile kt - 1.
    std::unique_ptr<int32_t[]> cursor(new (std::nothrow) int32_t[std::max(w->n, 1)]);
    if (!cursor) {
        release(storage);
        set_error(error, error_size, "out of memory packing the weights");
        return nullptr;
    }
    std::copy(w->row_ptr, w->row_ptr + w->n, cursor.get());
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
    for (int32_t o = 0; o < w->n; ++o) {
        int32_t sum = 0;
        for (int32_t b = w->row_ptr[o]; b < w->row_ptr[o + 1]; ++b) {
            const int8_t* v = w->values + 4 * static_cast<int64_t>(b);
            sum += v[0] + v[1] + v[2] + v[3];
        }
        offset_sum[o] = act_offset * sum;
        scales[o] = w->scales[o];
        bias[o] = w->bias ? w->bias[o] : 0.0f;
    }
    sq_plan* plan = new (std::nothrow) sq_plan;
    if (!plan) {
        release(storage);
        set_error(error, error_size, "out of memory packing the weights");
        return nullptr;
    }
    plan->plan = Plan{isa, w->n, w->k, groups, k_tiles, tile_groups, act_offset, packed, segments, offset_sum,
                      scales, bias, storage};
    return plan;
}

void sq_plan_destroy(sq_plan* plan) {
    if (!plan) return;
    release(plan->plan.storage);
    delete plan;
}

const char* sq_plan_isa(const sq_plan* plan) { return ISA_NAMES[plan->plan.isa]; }
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
    QUANTIZERS[plan->plan.isa](plan->plan, x, m, workspace, task);
    return 0;
}

int64_t sq_compute_task_count(const sq_plan* plan, int64_t m) {
    if (!plan || m <= 0) return 0;
    const int32_t rows = rows_per_task(plan->plan, m);
    return token_blocks(m) * ((plan->plan.n + rows - 1) / rows);
}

int sq_compute_task(const sq_plan* plan, const void* workspace, int64_t m, float* y, int64_t task) {
    if (!plan || !workspace || !y || task < 0 || task >= sq_compute_task_count(plan, m)) return -1;
    const Plan& p = plan->plan;
    const int32_t rows = rows_per_task(p, m);
    // Consecutive tasks share a row chunk, so its packed weights stay in cache while the token panels stream by.
    Task t;
    t.token_block = task % token_blocks(m);
    t.tokens = static_cast<int32_t>(std::min<int64_t>(TOKEN_BLOCK, m - t.token_block * TOKEN_BLOCK));
    t.r0 = static_cast<int32_t>(task / token_blocks(m)) * rows;
    t.r1 = std::min(p.n, t.r0 + rows);
    KERNELS[p.isa](p, workspace, m, y, t);
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
    if (threads < 0) return -1;
    if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const sq_parallel_fn own_pool = [](void*, int participants, sq_work_fn work, void* job) {
        pool().run(participants, participants, [&](int64_t i) { work(job, static_cast<int>(i)); });
    };
    return sq_linear_hosted(plan, x, m, y, threads, own_pool, nullptr, nullptr, nullptr);
}

int sq_linear_hosted(const sq_plan* plan, const float* x, int64_t m, float* y, int participants,
                     sq_parallel_fn parallel, void* host, sq_tile_fn post, void* post_context) {
    if (!plan || m < 0 || (m > 0 && (!x || !y)) || participants < 1 || !parallel) return -1;
    if (m == 0 || plan->plan.n == 0) return 0;
    void* workspace = cached_workspace(sq_workspace_size(plan, m));
    if (!workspace) return -1;
    Job job(plan, x, m, y, workspace, participants, post, post_context);
    if (!job.ready()) return -1;
    parallel(host, participants, [](void* state, int participant) { static_cast<Job*>(state)->work(participant); },
             &job);
    return 0;
}

}  // extern "C"
