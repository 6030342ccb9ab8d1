// compute_pool.cc: the two FIFO lanes and the threads that run their items in TBB arenas.
#include "server/compute_pool.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace convserve {

ComputePool::ComputePool(int threads, int64_t max_queued, int small_threads)
    : threads_(threads),
      max_queued_(max_queued),
      worker_limit_(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(threads)),
      // One slot for the dispatcher, the others for TBB workers.
      arena_(threads, /*reserved_for_masters=*/1),
      dispatcher_([this] { Serve(&large_, &arena_); }) {
  small_workers_.reserve(static_cast<size_t>(small_threads));
  for (int i = 0; i < small_threads; ++i) {
    small_workers_.emplace_back([this] {
      // One slot, the thread's own: the arena has no room for a TBB worker,
      // so the work's parallel loops run on this thread and wake nobody.
      tbb::task_arena single(1, /*reserved_for_masters=*/1);
      Serve(&small_, &single);
    });
  }
}

ComputePool::~ComputePool() {
  Drain();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  large_.ready.notify_all();
  small_.ready.notify_all();
  dispatcher_.join();
  for (std::thread& worker : small_workers_) worker.join();
}

absl::Status ComputePool::Submit(Lane lane, std::function<void()> work) {
  Queue& queue = QueueOf(lane);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (static_cast<int64_t>(queue.items.size()) >= max_queued_) {
      return absl::ResourceExhaustedError(
          lane == Lane::kSmall
              ? absl::StrCat("the server's small-call queue is full: ", queue.items.size(),
                             " small calls (below --small_call_macs) are waiting for the "
                             "small-call threads (--max_queued_calls=",
                             max_queued_, " per queue); retry later")
              : absl::StrCat("the server's compute queue is full: ", queue.items.size(),
                             " calls are waiting for the compute threads (--max_queued_calls=",
                             max_queued_, "); retry later"));
    }
    queue.items.push_back(std::move(work));  // may throw: then nothing was submitted
    ++pending_;
  }
  queue.ready.notify_one();
  return absl::OkStatus();
}

void ComputePool::Serve(Queue* queue, tbb::task_arena* arena) {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    queue->ready.wait(lock, [this, queue] { return stopping_ || !queue->items.empty(); });
    if (queue->items.empty()) return;  // stopping, and nothing left
    std::function<void()> work = std::move(queue->items.front());
    queue->items.pop_front();
    lock.unlock();
    try {
      arena->execute([&work] { work(); });
    } catch (...) {
      // Handlers finish their calls on every path and do not throw; nothing
      // may end a lane's thread.
    }
    work = nullptr;  // the item's captures go before it counts as done
    lock.lock();
    if (--pending_ == 0) idle_.notify_all();
  }
}

int64_t ComputePool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(large_.items.size() + small_.items.size());
}

int64_t ComputePool::queued(Lane lane) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(QueueOf(lane).items.size());
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
