// compute_pool.h: where convolution work runs, apart from gRPC's threads.
//
// A first-in first-out queue of work items and one dispatcher thread that
// runs them one at a time inside a oneTBB arena of `threads` threads:
// ConvOperator::Run parallelizes inside the arena of the thread that calls
// it, so each item uses every compute thread (the dispatcher and
// `threads - 1` TBB workers) and finishes as early as it can, in the order
// the items arrived. Handlers Submit() work and return to gRPC at once; the
// work finishes the call itself.
//
// Why not tbb::task_arena::enqueue() for every item: enqueued tasks are
// taken from several lanes in no guaranteed order, each worker takes one
// and the items in flight then split the threads between them, so under
// load every call waits for all the others it runs beside (and its memory
// stays allocated meanwhile); with one item at a time, a call waits only
// for the ones ahead of it and then gets the whole machine.
#ifndef CONVSERVE_SERVER_COMPUTE_POOL_H_
#define CONVSERVE_SERVER_COMPUTE_POOL_H_

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/status/status.h"

namespace convserve {

class ComputePool {
 public:
  // REQUIRES: threads >= 1, max_queued >= 1 (--max_queued_calls).
  explicit ComputePool(int threads, int64_t max_queued = INT64_MAX);
  // Waits for submitted work (Drain()), then stops the dispatcher.
  ~ComputePool();

  ComputePool(const ComputePool&) = delete;
  ComputePool& operator=(const ComputePool&) = delete;

  // Runs `work` on the compute threads, later, after the work submitted
  // before it. Never blocks. `work` must not throw (exceptions are caught
  // and dropped as a last resort). RESOURCE_EXHAUSTED naming
  // --max_queued_calls, and `work` dropped unrun, when max_queued items are
  // already waiting (not counting the one running).
  absl::Status Submit(std::function<void()> work);

  // Blocks until every submitted work item has returned.
  void Drain();

  // Drain() for at most `timeout`; true if the pool is idle.
  bool DrainFor(std::chrono::milliseconds timeout);

  int threads() const { return threads_; }

  // Work items submitted and not started yet (the one running is not
  // counted). A snapshot, for the metrics.
  int64_t queued() const;

 private:
  void Dispatch();  // the dispatcher thread's loop

  const int threads_;
  const int64_t max_queued_;
  // TBB starts (hardware concurrency - 1) workers by default; the arena
  // needs `threads_ - 1` of them besides the dispatcher.
  tbb::global_control worker_limit_;
  tbb::task_arena arena_;

  mutable std::mutex mutex_;
  std::condition_variable ready_;            // queue_ not empty, or stopping_
  std::condition_variable idle_;             // pending_ == 0
  std::deque<std::function<void()>> queue_;  // guarded by mutex_
  int64_t pending_ = 0;                      // queued or running; guarded by mutex_
  bool stopping_ = false;                    // guarded by mutex_
  std::thread dispatcher_;                   // last: starts once the rest is built
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_COMPUTE_POOL_H_
