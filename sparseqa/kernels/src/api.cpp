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
/* By orientation, then ISA. */
const ComputeFn KERNELS[2][4] = {
    {compute_scalar, compute_avx2, compute_avxvnni, compute_avx512vnni},
    {compute_columns_scalar, compute_columns_avx2, compute_columns_avxvnni, compute_columns_avx512vnni}};
/* By ISA of the Linear that takes the handed-off rows. */
const HandoffFn HANDOFFS[4] = {handoff_sse2, handoff_sse2, handoff_sse2, handoff_avx512};
const PeaksFn PEAKS[4] = {peaks_sse2, peaks_sse2, peaks_sse2, peaks_avx512};
const QuantizeFn QUANTIZERS[2][4] = {
    {quantize_sse2, quantize_avx2, quantize_avx2, quantize_avx512},
    {quantize_columns_sse2, quantize_columns_sse2, quantize_columns_sse2, quantize_columns_avx512}};

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

/* Until ``counter`` reaches ``value``; what it waits for may run on a thread that lost its core, so yield now and
 * then. */
void wait_for(const std::atomic<int64_t>& counter, int64_t value) {
    for (int spins = 1; counter.load(std::memory_order_acquire) < value; ++spins) {
        _mm_pause();
        if (spins % 64 == 0) std::this_thread::yield();
    }
}

/* One parallel call's shared state: segments of tasks that participants claim in order, a segment's tasks all
 * claimed before anyone claims the next segment's. A task waits (wait_for) only for tasks of earlier segments, which
 * running participants have therefore claimed, so this cannot deadlock even when the host runs the participants one
 * after another. A segment either hands out its tasks one at a time or splits them into a contiguous share per
 * participant (computing: consecutive tasks share a row chunk, so a share reuses its weights from cache, and each
 * thread keeps to the same rows); a participant then helps with what is left of the others' shares, since on a
 * shared machine one that lost its core would otherwise hold up the call. One parallel region per call: separate
 * regions cost ~5% more of an op inside OpenVINO (measured at 384 tokens, 2 threads). */
class Segments {
   public:
    struct Segment {
        int64_t count;
        bool shares;  // one contiguous share per participant, or one task at a time
        std::function<void(int64_t task)> run;
    };

    Segments(int participants, std::vector<Segment> segments)
        : participants_(participants), segments_(std::move(segments)),
          shares_(new (std::nothrow) Share[segments_.size() * participants]) {
        if (!ready()) return;
        for (size_t s = 0; s < segments_.size(); ++s) {
            const int split = segments_[s].shares ? participants : 1;
            for (int i = 0; i < split; ++i) {
                Share& share = shares_[s * participants + i];
                share.next.store(segments_[s].count * i / split, std::memory_order_relaxed);
                share.end = segments_[s].count * (i + 1) / split;
            }
        }
    }

    bool ready() const { return shares_ != nullptr; }

    void work(int participant) {
        for (size_t s = 0; s < segments_.size(); ++s) {
            const int split = segments_[s].shares ? participants_ : 1;
            for (int k = 0; k < split; ++k) {
                Share& share = shares_[s * participants_ + (participant + k) % split];
                for (int64_t task; (task = share.next.fetch_add(1, std::memory_order_relaxed)) < share.end;)
                    segments_[s].run(task);
            }
        }
    }

   private:
    struct alignas(64) Share {
        std::atomic<int64_t> next{0};
        int64_t end = 0;
    };

    int participants_;
    std::vector<Segment> segments_;
    std::unique_ptr<Share[]> shares_;
};

/* Runs ``segments`` on the host's participants; false when out of memory. */
bool run_segments(int participants, sq_parallel_fn parallel, void* host, std::vector<Segments::Segment> segments) {
    Segments job(participants, std::move(segments));
    if (!job.ready()) return false;
    parallel(host, participants, [](void* state, int participant) { static_cast<Segments*>(state)->work(participant); },
             &job);
    return true;
}

/* Counters that tasks raise when done and later tasks wait on, zeroed; null when out of memory. */
std::unique_ptr<std::atomic<int64_t>[]> counters(int64_t count) {
    std::unique_ptr<std::atomic<int64_t>[]> made(new (std::nothrow) std::atomic<int64_t>[count]);
    if (made)
        for (int64_t i = 0; i < count; ++i) made[i].store(0, std::memory_order_relaxed);
    return made;
}

/* The library's own workers as a host (sq_parallel_fn) for the calls that take a thread count. */
void own_pool(void*, int participants, sq_work_fn work, void* job) {
    pool().run(participants, participants, [&](int64_t i) { work(job, static_cast<int>(i)); });
}

int all_cores_if_zero(int threads) {
    return threads ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

/* The segment of a call that quantizes x token block by token block into ``workspace``, raising quantized[block]. */
Segments::Segment quantize_segment(const sq_plan* plan, const float* x, int64_t m, void* workspace,
                                   std::atomic<int64_t>* quantized) {
    return {token_blocks(m), false, [=](int64_t block) {
                sq_quantize_task(plan, x, m, workspace, block);
                quantized[block].store(1, std::memory_order_release);
            }};
}

/* Bytes rounded up to whole 64-byte lines, so the pieces of one workspace stay aligned. */
size_t lines(size_t bytes) { return (bytes + ALIGN - 1) / ALIGN * ALIGN; }

}  // namespace

/* Per-token scales of one token block (as quantize_token computes them): the scale into the workspace, 127 / amax
 * into ``inverse``; tokens past m get 0. */
inline void token_block_scales(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block,
                               float* inverse) {
    float* scales_t = static_cast<float*>(workspace) + token_block * TOKEN_BLOCK;
    const int64_t t0 = token_block * TOKEN_BLOCK;
    const __m128 sign = _mm_set1_ps(-0.0f);
    for (int t = 0; t < TOKEN_BLOCK; ++t) {
        if (t0 + t >= m) {
            scales_t[t] = inverse[t] = 0.0f;
            continue;
        }
        const float* row = x + (t0 + t) * plan.k;
        __m128 peak = _mm_setzero_ps();
        for (int32_t i = 0; i < plan.k; i += 4) peak = _mm_max_ps(peak, _mm_andnot_ps(sign, _mm_loadu_ps(row + i)));
        float lanes[4];
        _mm_storeu_ps(lanes, peak);
        const float amax = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
        token_scale(amax, scales_t + t, inverse + t);
    }
}

/* The portable quantizer, 4 lanes at a time with baseline x86-64 SSE2 (cvtps rounds half to even like nearbyint). */
void quantize_sse2(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
    float inverses[TOKEN_BLOCK];
    token_block_scales(plan, x, m, workspace, token_block, inverses);
    uint8_t* out = panel(plan, workspace, m, token_block);
    const int64_t t0 = token_block * TOKEN_BLOCK;
    const int tokens = static_cast<int>(std::min<int64_t>(TOKEN_BLOCK, m - t0));
    const __m128i offset = _mm_set1_epi8(static_cast<char>(plan.act_offset));
    for (int t = 0; t < TOKEN_BLOCK; ++t) {
        uint8_t* lane = out + t * 4;
        if (t >= tokens) {
            for (int32_t g = 0; g < plan.groups; ++g) memcpy(lane + g * GROUP_BYTES, &offset, 4);
            continue;
        }
        const float* row = x + (t0 + t) * plan.k;
        const __m128 inverse = _mm_set1_ps(inverses[t]);
        for (int32_t g = 0; g < plan.groups; ++g) {
            __m128i q = _mm_cvtps_epi32(_mm_mul_ps(_mm_loadu_ps(row + 4 * g), inverse));
            q = _mm_packs_epi32(q, q);
            q = _mm_packs_epi16(q, q);
            q = _mm_add_epi8(q, offset);
            const int32_t word = _mm_cvtsi128_si32(q);
            memcpy(lane + g * GROUP_BYTES, &word, 4);
        }
    }
}


/* 16 rows of 16 bytes -> 16 columns: r[c] byte i becomes r[i] byte c (unpacks of 8, 16, 32 and 64 bits). */
inline void transpose16x16_epi8(__m128i r[16]) {
    __m128i a[16], b[16];
    for (int p = 0; p < 8; ++p) {
        a[2 * p] = _mm_unpacklo_epi8(r[2 * p], r[2 * p + 1]);
        a[2 * p + 1] = _mm_unpackhi_epi8(r[2 * p], r[2 * p + 1]);
    }
    // b[4 q + c]: rows 4 q .. 4 q + 3 of columns 4 c .. 4 c + 3, one 4-byte lane per column.
    for (int q = 0; q < 4; ++q)
        for (int h = 0; h < 2; ++h) {
            b[4 * q + 2 * h] = _mm_unpacklo_epi16(a[4 * q + h], a[4 * q + 2 + h]);
            b[4 * q + 2 * h + 1] = _mm_unpackhi_epi16(a[4 * q + h], a[4 * q + 2 + h]);
        }
    // a[8 z + 2 c + s]: rows 8 z .. 8 z + 7 of columns 4 c + 2 s and 4 c + 2 s + 1, one 8-byte half per column.
    for (int z = 0; z < 2; ++z)
        for (int c = 0; c < 4; ++c) {
            a[8 * z + 2 * c] = _mm_unpacklo_epi32(b[8 * z + c], b[8 * z + 4 + c]);
            a[8 * z + 2 * c + 1] = _mm_unpackhi_epi32(b[8 * z + c], b[8 * z + 4 + c]);
        }
    for (int c = 0; c < 4; ++c)
        for (int s = 0; s < 2; ++s) {
            r[4 * c + 2 * s] = _mm_unpacklo_epi64(a[2 * c + s], a[8 + 2 * c + s]);
            r[4 * c + 2 * s + 1] = _mm_unpackhi_epi64(a[2 * c + s], a[8 + 2 * c + s]);
        }
}

/* The portable 4x1 quantizer: per 16-byte lane L of the panel lines and 16 inputs, the 16 tokens that lane holds
 * (column_position) as rows of 16 quantized inputs, transposed into one 16-byte piece of 16 lines. */
void quantize_columns_sse2(const Plan& plan, const float* x, int64_t m, void* workspace, int64_t token_block) {
    float inverse[TOKEN_BLOCK];
    token_block_scales(plan, x, m, workspace, token_block, inverse);
    uint8_t* out = panel(plan, workspace, m, token_block);
    const int64_t t0 = token_block * TOKEN_BLOCK;
    const __m128i offset = _mm_set1_epi8(static_cast<char>(plan.act_offset));
    for (int32_t c0 = 0; c0 < plan.k; c0 += 16) {
        const int inputs = std::min<int32_t>(16, plan.k - c0);
        for (int lane = 0; lane < 4; ++lane) {
            __m128i r[16];
            for (int row = 0; row < 16; ++row) {
                const int t = 16 * (row >> 2) + 4 * lane + (row & 3);
                if (t0 + t >= m) {
                    r[row] = _mm_setzero_si128();
                    continue;
                }
                alignas(16) float tail[16] = {};
                const float* source = x + (t0 + t) * plan.k + c0;
                if (inputs < 16) source = static_cast<const float*>(memcpy(tail, source, 4 * inputs));
                const __m128 scale = _mm_set1_ps(inverse[t]);
                __m128i q[4];
                for (int c = 0; c < 4; ++c) {
                    const __m128 v = _mm_mul_ps(_mm_loadu_ps(source + 4 * c), scale);
                    q[c] = _mm_cvtps_epi32(v);
                }
                r[row] = _mm_packs_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3]));
            }
            transpose16x16_epi8(r);
            for (int c = 0; c < inputs; ++c)
                _mm_store_si128(reinterpret_cast<__m128i*>(out + (c0 + c) * TOKEN_BLOCK + 16 * lane),
                                _mm_add_epi8(r[c], offset));
        }
    }
}

void peaks_sse2(const float* rows, int32_t count, float* peak) {
    const __m128 sign = _mm_set1_ps(-0.0f);
    for (int t = 0; t < TOKEN_BLOCK; t += 4) {
        __m128 high = _mm_setzero_ps();
        for (int32_t r = 0; r < count; ++r) high = _mm_max_ps(high, _mm_andnot_ps(sign, _mm_loadu_ps(rows + r * TOKEN_BLOCK + t)));
        _mm_storeu_ps(peak + t, high);
    }
}

/* The portable handoff, 16 tokens at a time: for 16-byte lane L of a panel line (tokens 16 j + 4 L + u at byte
 * 4 j + u, column_position), the 4 tokens 16 j + 4 L .. of each j are 4 consecutive floats of the row, so rounding
 * them and packing the four j by packs_epi32 and packs_epi16 yields the lane in order. For 1x4 blocks, 4 inputs'
 * lanes are interleaved by byte and word unpacks into 4-byte lanes of consecutive tokens, as the 4x1 kernels do. */
void handoff_sse2(const Plan& plan, const float* rows, int32_t i0, int32_t i1, const float* inverse, void* workspace,
                  int64_t m, int64_t token_block) {
    uint8_t* out = panel(plan, workspace, m, token_block);
    const __m128i offset = _mm_set1_epi8(static_cast<char>(plan.act_offset));
    __m128 inverses[16];
    for (int i = 0; i < 16; ++i) inverses[i] = _mm_loadu_ps(inverse + 4 * i);
    // Lane L of input i's panel line.
    const auto lane = [&](int32_t i, int L) {
        const float* row = rows + static_cast<int64_t>(i - i0) * TOKEN_BLOCK + 4 * L;
        __m128i q[4];
        for (int j = 0; j < 4; ++j) {
            const __m128 v = _mm_mul_ps(_mm_loadu_ps(row + 16 * j), inverses[4 * j + L]);
            q[j] = _mm_cvtps_epi32(v);
        }
        return _mm_packs_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3]));
    };
    if (plan.orientation == COLUMNS_4X1) {
        for (int32_t i = i0; i < i1; ++i)
            for (int L = 0; L < 4; ++L)
                _mm_store_si128(reinterpret_cast<__m128i*>(out + static_cast<int64_t>(i) * TOKEN_BLOCK + 16 * L),
                                _mm_add_epi8(lane(i, L), offset));
        return;
    }
    for (int32_t i = i0; i < i1; i += 4) {
        uint8_t* group = out + static_cast<int64_t>(i / 4) * GROUP_BYTES;
        for (int L = 0; L < 4; ++L) {
            const __m128i c0 = lane(i, L), c1 = lane(i + 1, L), c2 = lane(i + 2, L), c3 = lane(i + 3, L);
            const __m128i low01 = _mm_unpacklo_epi8(c0, c1), low23 = _mm_unpacklo_epi8(c2, c3);
            const __m128i high01 = _mm_unpackhi_epi8(c0, c1), high23 = _mm_unpackhi_epi8(c2, c3);
            // Tokens 16 j + 4 L .. + 3, 4 bytes each: at byte 4 (16 j + 4 L) of the group's line.
            const __m128i tokens[4] = {_mm_unpacklo_epi16(low01, low23), _mm_unpackhi_epi16(low01, low23),
                                       _mm_unpacklo_epi16(high01, high23), _mm_unpackhi_epi16(high01, high23)};
            for (int j = 0; j < 4; ++j)
                _mm_store_si128(reinterpret_cast<__m128i*>(group + 4 * (16 * j + 4 * L)), _mm_add_epi8(tokens[j], offset));
        }
    }
}
}  // namespace sq

namespace sq {
namespace {

/* Checks the block-CSR arrays; returns an empty string or the reason they are bad. */
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
        set_error(error, error_size, "out of memory packing the weights");
        return nullptr;
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
    sq_plan* plan = new (std::nothrow) sq_plan;
    if (!plan) {
        release(storage.memory);
        set_error(error, error_size, "out of memory packing the weights");
        return nullptr;
    }
    const bool by_rows = orientation == ROWS_1X4;
    plan->plan = Plan{isa,
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
