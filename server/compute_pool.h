// compute_pool.h: where convolution work runs, apart from gRPC's threads.
//
// Two lanes, each a first-in first-out queue with its own threads:
//
// - The large lane: one dispatcher thread that runs its items one at a time
//   inside a oneTBB arena of `threads` threads: ConvOperator::Run
//   parallelizes inside the arena of the thread that calls it, so each item
//   uses every compute thread (the dispatcher and `threads - 1` TBB workers)
//   and finishes as early as it can, in the order the items arrived.
// - The small lane: `small_threads` threads of their own, each running one
//   item at a time inside an arena of its own of one thread: the work runs
//   single-threaded on that thread and wakes no TBB worker. The server sends
//   calls too small to gain from more threads here (--small_call_macs), so
//   they never queue behind a large item, nor pay for waking the arena's
//   workers, which costs more than their whole computation. A small item may
//   run beside a large one; the large lane keeps its arena.
//
// Handlers Submit() work and return to gRPC at once; the work finishes the
// call itself. Each lane holds at most `max_queued` waiting items.
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
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace convserve {

class ComputePool {
 public:
  enum class Lane {
    kLarge,  // FIFO, one item at a time on every compute thread
    kSmall,  // FIFO, each item single-threaded on a small-lane thread
  };

  // REQUIRES: threads >= 1, max_queued >= 1 (--max_queued_calls),
  // small_threads >= 1.
  explicit ComputePool(int threads, int64_t max_queued = INT64_MAX, int small_threads = 1);
  // Waits for submitted work (Drain()), then stops the lanes' threads.
  ~ComputePool();

  ComputePool(const ComputePool&) = delete;
  ComputePool& operator=(const ComputePool&) = delete;

  // Runs `work` on `lane`'s threads, later, after the work submitted to the
  // lane before it. Never blocks. `work` must not throw (exceptions are
  // caught and dropped as a last resort). RESOURCE_EXHAUSTED naming
  // --max_queued_calls and the lane, and `work` dropped unrun, when
  // max_queued items are already waiting in the lane (not counting those
  // running).
  absl::Status Submit(Lane lane, std::function<void()> work);
  absl::Status Submit(std::function<void()> work) { return Submit(Lane::kLarge, std::move(work)); }

  // Blocks until every submitted work item (both lanes) has returned.
  void Drain();

  // Drain() for at most `timeout`; true if the pool is idle.
  bool DrainFor(std::chrono::milliseconds timeout);

  // The large lane's threads (the arena's).
  int threads() const { return threads_; }
  // --max_queued_calls: the bound of each lane's queue.
  int64_t max_queued() const { return max_queued_; }
  int small_threads() const { return static_cast<int>(small_workers_.size()); }

  // Work items submitted and not started yet, in both lanes or in one
  // (those running are not counted). A snapshot, for the metrics.
  int64_t queued() const;
  int64_t queued(Lane lane) const;

 private:
  struct Queue {
    std::condition_variable ready;            // items not empty, or stopping_
    std::deque<std::function<void()>> items;  // guarded by mutex_
  };

  // A lane thread's loop: runs `queue`'s items in `arena` until stopping_
  // and the queue is empty.
  void Serve(Queue* queue, tbb::task_arena* arena);
  Queue& QueueOf(Lane lane) { return lane == Lane::kSmall ? small_ : large_; }
  const Queue& QueueOf(Lane lane) const { return lane == Lane::kSmall ? small_ : large_; }

  const int threads_;
  const int64_t max_queued_;
  // TBB starts (hardware concurrency - 1) workers by default; the arena
  // needs `threads_ - 1` of them besides the dispatcher.
  tbb::global_control worker_limit_;
  tbb::task_arena arena_;

  mutable std::mutex mutex_;
  std::condition_variable idle_;  // pending_ == 0
  Queue large_;
  Queue small_;
  int64_t pending_ = 0;    // queued or running, both lanes; guarded by mutex_
  bool stopping_ = false;  // guarded by mutex_
  // Last: they start once the rest is built.
  std::thread dispatcher_;  // the large lane
  std::vector<std::thread> small_workers_;
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_COMPUTE_POOL_H_
