// compute_pool.cc: the FIFO queue and the dispatcher that runs its items in a TBB arena.
#include "server/compute_pool.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace convserve {

ComputePool::ComputePool(int threads, int64_t max_queued)
    : threads_(threads),
      max_queued_(max_queued),
      worker_limit_(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(threads)),
      // One slot for the dispatcher, the others for TBB workers.
      arena_(threads, /*reserved_for_masters=*/1),
      dispatcher_([this] { Dispatch(); }) {}

ComputePool::~ComputePool() {
  Drain();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  dispatcher_.join();
}

absl::Status ComputePool::Submit(std::function<void()> work) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (static_cast<int64_t>(queue_.size()) >= max_queued_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the server's compute queue is full: ", queue_.size(),
          " calls are waiting for the compute threads (--max_queued_calls=", max_queued_,
          "); retry later"));
    }
    queue_.push_back(std::move(work));  // may throw: then nothing was submitted
    ++pending_;
  }
  ready_.notify_one();
  return absl::OkStatus();
}

void ComputePool::Dispatch() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left
    std::function<void()> work = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    try {
      arena_.execute([&work] { work(); });
    } catch (...) {
      // Handlers finish their calls on every path and do not throw; nothing
      // may end the dispatcher.
    }
    work = nullptr;  // the item's captures go before it counts as done
    lock.lock();
    if (--pending_ == 0) idle_.notify_all();
  }
}

int64_t ComputePool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(queue_.size());
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
