/* What the portable translation units (the C API, packing, the parallel runtime) share. Unlike internal.h it uses the
 * C++ library: no ISA translation unit includes it. */
#ifndef SPARSEQA_CORE_H
#define SPARSEQA_CORE_H

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "internal.h"
#include "sparseqa_kernels.h"

namespace sq {

/* Memory aligned to ALIGN, or null when out of memory; release(null) does nothing. */
void* aligned(size_t bytes);
void release(void* p);

/* Bytes rounded up to whole 64-byte lines, so the pieces of one workspace stay aligned. */
inline size_t lines(size_t bytes) { return (bytes + ALIGN - 1) / ALIGN * ALIGN; }

/* Checks the block-CSR arrays; returns an empty string or the reason they are bad. */
std::string bad_weights(const sq_bcsr* w);

/* Packs valid weights ``w`` (bad_weights is empty) for ``isa`` into ``plan``, which owns plan->storage; false when out
 * of memory. */
bool pack(const sq_bcsr* w, Isa isa, Plan* plan);

/* The calling thread's largest workspace so far: no allocation (and no fresh pages to fault in) per call. */
void* cached_workspace(size_t bytes);

/* Until ``counter`` reaches ``value``; what it waits for may run on a thread that lost its core, so yield now and
 * then. */
void wait_for(const std::atomic<int64_t>& counter, int64_t value);

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

    Segments(int participants, std::vector<Segment> segments);

    bool ready() const { return shares_ != nullptr; }

    void work(int participant);

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
bool run_segments(int participants, sq_parallel_fn parallel, void* host, std::vector<Segments::Segment> segments);

/* Counters that tasks raise when done and later tasks wait on, zeroed; null when out of memory. */
std::unique_ptr<std::atomic<int64_t>[]> counters(int64_t count);

/* The library's own workers as a host (sq_parallel_fn) for the calls that take a thread count. */
void own_pool(void*, int participants, sq_work_fn work, void* job);

/* ``threads``, or every core the machine has when it is 0. */
int all_cores_if_zero(int threads);

}  // namespace sq

#endif
