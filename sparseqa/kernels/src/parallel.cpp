/* The parallel runtime: the library's own worker pool, the segments a parallel call's participants claim, and the
 * per-thread workspace. */
#include <emmintrin.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>

#include "core.h"

namespace sq {
namespace {

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

}  // namespace

void* aligned(size_t bytes) { return ::operator new(bytes, std::align_val_t(ALIGN), std::nothrow); }
void release(void* p) {
    if (p) ::operator delete(p, std::align_val_t(ALIGN));
}

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

void wait_for(const std::atomic<int64_t>& counter, int64_t value) {
    for (int spins = 1; counter.load(std::memory_order_acquire) < value; ++spins) {
        _mm_pause();
        if (spins % 64 == 0) std::this_thread::yield();
    }
}

Segments::Segments(int participants, std::vector<Segment> segments)
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

void Segments::work(int participant) {
    for (size_t s = 0; s < segments_.size(); ++s) {
        const int split = segments_[s].shares ? participants_ : 1;
        for (int k = 0; k < split; ++k) {
            Share& share = shares_[s * participants_ + (participant + k) % split];
            for (int64_t task; (task = share.next.fetch_add(1, std::memory_order_relaxed)) < share.end;)
                segments_[s].run(task);
        }
    }
}

bool run_segments(int participants, sq_parallel_fn parallel, void* host, std::vector<Segments::Segment> segments) {
    Segments job(participants, std::move(segments));
    if (!job.ready()) return false;
    parallel(host, participants, [](void* state, int participant) { static_cast<Segments*>(state)->work(participant); },
             &job);
    return true;
}

std::unique_ptr<std::atomic<int64_t>[]> counters(int64_t count) {
    std::unique_ptr<std::atomic<int64_t>[]> made(new (std::nothrow) std::atomic<int64_t>[count]);
    if (made)
        for (int64_t i = 0; i < count; ++i) made[i].store(0, std::memory_order_relaxed);
    return made;
}

void own_pool(void*, int participants, sq_work_fn work, void* job) {
    pool().run(participants, participants, [&](int64_t i) { work(job, static_cast<int>(i)); });
}

int all_cores_if_zero(int threads) {
    return threads ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace sq
