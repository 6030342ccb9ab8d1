// compute_pool.h: where convolution work runs, apart from gRPC's threads.
//
// A oneTBB arena of a fixed number of threads. Handlers Submit() work and
// return to gRPC at once; the work finishes the call itself. ConvOperator::Run
// parallelizes inside the arena of the thread that calls it, so one call may
// use every compute thread and concurrent calls share them.
#ifndef CONVSERVE_SERVER_COMPUTE_POOL_H_
#define CONVSERVE_SERVER_COMPUTE_POOL_H_

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

namespace convserve {

class ComputePool {
 public:
  // REQUIRES: threads >= 1.
  explicit ComputePool(int threads);
  // Waits for submitted work (Drain()) before tearing down the arena.
  ~ComputePool();

  ComputePool(const ComputePool&) = delete;
  ComputePool& operator=(const ComputePool&) = delete;

  // Runs `work` on a compute thread, later. Never blocks. `work` must not
  // throw (exceptions are caught and dropped as a last resort).
  void Submit(std::function<void()> work);

  // Blocks until every submitted work item has returned.
  void Drain();

  // Drain() for at most `timeout`; true if the pool is idle.
  bool DrainFor(std::chrono::milliseconds timeout);

  int threads() const { return threads_; }

 private:
  void Done();  // one submitted work item has returned (or was never enqueued)

  const int threads_;
  // TBB starts (hardware concurrency - 1) workers by default; an arena that
  // only receives enqueued work needs `threads_` workers of its own.
  tbb::global_control worker_limit_;
  tbb::task_arena arena_;

  std::mutex mutex_;
  std::condition_variable idle_;
  int64_t pending_ = 0;  // guarded by mutex_
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_COMPUTE_POOL_H_
