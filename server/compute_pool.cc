#include "server/compute_pool.h"

#include <utility>

namespace convserve {

ComputePool::ComputePool(int threads)
    : threads_(threads),
      worker_limit_(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(threads) + 1),
      // No slots reserved for external threads: nobody calls execute(), all
      // work arrives through enqueue() and runs on workers.
      arena_(threads, /*reserved_for_masters=*/0) {}

ComputePool::~ComputePool() { Drain(); }

void ComputePool::Submit(std::function<void()> work) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++pending_;
  }
  try {
    arena_.enqueue([this, work = std::move(work)] {
      try {
        work();
      } catch (...) {
        // Handlers finish their calls on every path and do not throw; nothing
        // may escape into TBB (it would terminate the process).
      }
      Done();
    });
  } catch (...) {
    Done();  // never enqueued: Drain() must not wait for it.
    throw;
  }
}

void ComputePool::Done() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (--pending_ == 0) idle_.notify_all();
}

void ComputePool::Drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  idle_.wait(lock, [this] { return pending_ == 0; });
}

bool ComputePool::DrainFor(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return idle_.wait_for(lock, timeout, [this] { return pending_ == 0; });
}

}  // namespace convserve
