// ComputePool: first-in first-out, one item at a time on all its threads,
// drained before it goes; the small lane beside it, single-threaded, never
// behind the large lane's items.
#include "server/compute_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace convserve {
namespace {

using namespace std::chrono_literals;

// Holds the pool's dispatcher inside the first item until Open().
class Gate {
 public:
  void Wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    opened_.wait(lock, [this] { return open_; });
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      open_ = true;
    }
    opened_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = false;  // guarded by mutex_
};

// Submits `work` to a pool without a queue bound, where Submit() cannot refuse.
void SubmitOk(ComputePool& pool, std::function<void()> work) {
  EXPECT_TRUE(pool.Submit(std::move(work)).ok());
}

TEST(ComputePoolTest, QueuedCountsItemsWaitingNotTheOneRunning) {
  ComputePool pool(1);
  EXPECT_EQ(pool.queued(), 0);
  Gate started;
  Gate gate;
  SubmitOk(pool, [&] {
    started.Open();
    gate.Wait();
  });
  started.Wait();  // the first item runs: it is no longer queued
  EXPECT_EQ(pool.queued(), 0);
  constexpr int kWaiting = 3;
  for (int i = 0; i < kWaiting; ++i) SubmitOk(pool, [] {});
  EXPECT_EQ(pool.queued(), kWaiting);
  gate.Open();
  pool.Drain();
  EXPECT_EQ(pool.queued(), 0);
}

TEST(ComputePoolTest, RunsItemsInTheOrderSubmitted) {
  ComputePool pool(2);
  Gate gate;
  std::mutex mutex;
  std::vector<int> order;  // guarded by mutex
  SubmitOk(pool, [&gate] { gate.Wait(); });
  for (int i = 0; i < 50; ++i) {
    SubmitOk(pool, [&, i] {
      std::lock_guard<std::mutex> lock(mutex);
      order.push_back(i);
    });
  }
  gate.Open();  // all 50 are queued behind the first by now
  pool.Drain();
  std::vector<int> expected(50);
  for (int i = 0; i < 50; ++i) expected[i] = i;
  EXPECT_EQ(order, expected);
}

TEST(ComputePoolTest, RunsOneItemAtATime) {
  ComputePool pool(2);
  std::atomic<int> running{0};
  std::atomic<int> most_running{0};
  for (int i = 0; i < 20; ++i) {
    SubmitOk(pool, [&] {
      const int now = ++running;
      int most = most_running.load();
      while (now > most && !most_running.compare_exchange_weak(most, now)) {
      }
      std::this_thread::sleep_for(1ms);
      --running;
    });
  }
  pool.Drain();
  EXPECT_EQ(most_running.load(), 1);
}

TEST(ComputePoolTest, DrainWaitsForEveryItem) {
  ComputePool pool(2);
  std::atomic<int> done{0};
  for (int i = 0; i < 10; ++i) {
    SubmitOk(pool, [&done] {
      std::this_thread::sleep_for(5ms);
      ++done;
    });
  }
  pool.Drain();
  EXPECT_EQ(done.load(), 10);
  EXPECT_TRUE(pool.DrainFor(0ms));  // idle now
}

TEST(ComputePoolTest, DrainForTimesOutWhileBusy) {
  ComputePool pool(1);
  Gate gate;
  SubmitOk(pool, [&gate] { gate.Wait(); });
  EXPECT_FALSE(pool.DrainFor(20ms));
  gate.Open();
  EXPECT_TRUE(pool.DrainFor(60s));
}

// Runs in the pool's arena: as many threads as the pool has, whatever the
// machine (one more than its cores here, so that the default arena, which
// has as many as the cores, would not pass).
TEST(ComputePoolTest, EveryItemRunsInAnArenaOfThePoolsThreads) {
  for (int threads : {1, static_cast<int>(std::thread::hardware_concurrency()) + 1}) {
    SCOPED_TRACE(threads);
    ComputePool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    std::vector<int> concurrency(5, 0);
    for (int i = 0; i < 5; ++i) {
      SubmitOk(pool,
               [&concurrency, i] { concurrency[i] = tbb::this_task_arena::max_concurrency(); });
    }
    pool.Drain();
    EXPECT_THAT(concurrency, testing::Each(threads));
  }
}

TEST(ComputePoolTest, DestructorWaitsForQueuedItems) {
  std::atomic<int> done{0};
  {
    ComputePool pool(2);
    for (int i = 0; i < 10; ++i) {
      SubmitOk(pool, [&done] {
        std::this_thread::sleep_for(5ms);
        ++done;
      });
    }
  }
  EXPECT_EQ(done.load(), 10);
}

TEST(ComputePoolTest, AThrowingItemDoesNotStopTheOthers) {
  for (ComputePool::Lane lane : {ComputePool::Lane::kLarge, ComputePool::Lane::kSmall}) {
    ComputePool pool(1);
    std::atomic<int> done{0};
    EXPECT_TRUE(
        pool.Submit(lane, [] { throw std::runtime_error("an item broke its contract"); }).ok());
    EXPECT_TRUE(pool.Submit(lane, [&done] { ++done; }).ok());
    pool.Drain();
    EXPECT_EQ(done.load(), 1);
  }
}

TEST(ComputePoolTest, ItemsCapturesAreReleasedBeforeDrainReturns) {
  ComputePool pool(1);
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  SubmitOk(pool, [token = std::move(token)] { ++*token; });
  pool.Drain();
  EXPECT_TRUE(watch.expired());
}

}  // namespace
}  // namespace convserve

namespace convserve {
namespace {

TEST(ComputePoolTest, RefusesWorkBeyondTheQueueBound) {
  ComputePool pool(1, /*max_queued=*/3);
  Gate gate;
  std::atomic<bool> started{false};
  std::atomic<int> ran{0};
  ASSERT_TRUE(pool.Submit([&] {
                    started = true;
                    gate.Wait();
                  })
                  .ok());
  while (!started) std::this_thread::sleep_for(1ms);  // the running item is not queued
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(pool.Submit([&ran] { ++ran; }).ok());
  const absl::Status refused = pool.Submit([&ran] { ran += 100; });
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.message()),
              ::testing::HasSubstr("3 calls are waiting for the compute threads "
                                   "(--max_queued_calls=3)"));
  gate.Open();
  pool.Drain();
  EXPECT_EQ(ran, 3);  // the refused item never ran
  EXPECT_TRUE(pool.Submit([&ran] { ++ran; }).ok());
  pool.Drain();
  EXPECT_EQ(ran, 4);
}

}  // namespace
}  // namespace convserve

namespace convserve {
namespace {

using Lane = ComputePool::Lane;

// Submits `work` to `lane` of a pool without a queue bound.
void SubmitSmallOk(ComputePool& pool, std::function<void()> work) {
  EXPECT_TRUE(pool.Submit(Lane::kSmall, std::move(work)).ok());
}

TEST(ComputePoolSmallLaneTest, SmallItemsRunWhileALargeItemRuns) {
  ComputePool pool(2);
  Gate large_started;
  Gate large_gate;
  std::atomic<bool> large_done{false};
  SubmitOk(pool, [&] {
    large_started.Open();
    large_gate.Wait();
    large_done = true;
  });
  SubmitOk(pool, [] {});  // a second large item, queued behind the first
  large_started.Wait();
  std::atomic<int> small_done{0};
  std::atomic<bool> ran_beside_large{true};
  Gate smalls_done;
  constexpr int kSmall = 5;
  for (int i = 0; i < kSmall; ++i) {
    SubmitSmallOk(pool, [&] {
      if (large_done) ran_beside_large = false;
      if (++small_done == kSmall) smalls_done.Open();
    });
  }
  smalls_done.Wait();  // would never return if the small items waited for the large one
  EXPECT_EQ(small_done.load(), kSmall);
  EXPECT_TRUE(ran_beside_large.load());
  EXPECT_EQ(pool.queued(Lane::kLarge), 1);
  EXPECT_EQ(pool.queued(Lane::kSmall), 0);
  large_gate.Open();
  pool.Drain();
  EXPECT_TRUE(large_done.load());
}

TEST(ComputePoolSmallLaneTest, LargeItemsKeepTheirOrderAndTheWholeArenaAmongSmallOnes) {
  const int threads = static_cast<int>(std::thread::hardware_concurrency()) + 1;
  ComputePool pool(threads);
  Gate gate;
  std::mutex mutex;
  std::vector<int> order;        // guarded by mutex
  std::vector<int> concurrency;  // of each large item; guarded by mutex
  SubmitOk(pool, [&gate] { gate.Wait(); });
  for (int i = 0; i < 30; ++i) {
    SubmitOk(pool, [&, i] {
      std::lock_guard<std::mutex> lock(mutex);
      order.push_back(i);
      concurrency.push_back(tbb::this_task_arena::max_concurrency());
    });
    SubmitSmallOk(pool, [] {});
  }
  gate.Open();
  pool.Drain();
  std::vector<int> expected(30);
  for (int i = 0; i < 30; ++i) expected[i] = i;
  EXPECT_EQ(order, expected);
  EXPECT_THAT(concurrency, testing::Each(threads));
}

// Single-threaded: an arena of one thread, so the work's parallel loops wake
// no TBB worker, and one item at a time per small-lane thread.
TEST(ComputePoolSmallLaneTest, SmallItemsRunSingleThreadedInFifoOrder) {
  ComputePool pool(4);
  EXPECT_EQ(pool.small_threads(), 1);
  Gate started;
  Gate gate;
  std::mutex mutex;
  std::vector<int> order;        // guarded by mutex
  std::vector<int> concurrency;  // guarded by mutex
  SubmitSmallOk(pool, [&] {
    started.Open();
    gate.Wait();
  });
  started.Wait();  // running, so no longer queued
  for (int i = 0; i < 20; ++i) {
    SubmitSmallOk(pool, [&, i] {
      std::lock_guard<std::mutex> lock(mutex);
      order.push_back(i);
      concurrency.push_back(tbb::this_task_arena::max_concurrency());
    });
  }
  EXPECT_EQ(pool.queued(Lane::kSmall), 20);
  EXPECT_EQ(pool.queued(), 20);  // the metrics' queue depth counts both lanes
  gate.Open();
  pool.Drain();
  std::vector<int> expected(20);
  for (int i = 0; i < 20; ++i) expected[i] = i;
  EXPECT_EQ(order, expected);
  EXPECT_THAT(concurrency, testing::Each(1));
}

TEST(ComputePoolSmallLaneTest, EachLaneHasItsOwnQueueBound) {
  ComputePool pool(1, /*max_queued=*/2);
  Gate large_gate;
  Gate small_gate;
  Gate large_started;
  Gate small_started;
  std::atomic<int> ran{0};
  ASSERT_TRUE(pool.Submit([&] {
                    large_started.Open();
                    large_gate.Wait();
                  })
                  .ok());
  ASSERT_TRUE(pool.Submit(Lane::kSmall,
                          [&] {
                            small_started.Open();
                            small_gate.Wait();
                          })
                  .ok());
  large_started.Wait();
  small_started.Wait();
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(pool.Submit([&ran] { ++ran; }).ok());
  // The large queue is full; the small one still takes its own two.
  EXPECT_EQ(pool.Submit([&ran] { ran += 100; }).code(), absl::StatusCode::kResourceExhausted);
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(pool.Submit(Lane::kSmall, [&ran] { ++ran; }).ok());
  const absl::Status refused = pool.Submit(Lane::kSmall, [&ran] { ran += 100; });
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.message()),
              ::testing::HasSubstr("2 small calls (below --small_call_macs) are waiting for the "
                                   "small-call threads (--max_queued_calls=2 per queue)"));
  large_gate.Open();
  small_gate.Open();
  pool.Drain();
  EXPECT_EQ(ran, 4);  // the refused items never ran
}

TEST(ComputePoolSmallLaneTest, DrainAndTheDestructorWaitForBothLanes) {
  std::atomic<int> done{0};
  {
    ComputePool pool(1);
    Gate gate;
    SubmitOk(pool, [&] {
      gate.Wait();
      ++done;
    });
    for (int i = 0; i < 5; ++i) {
      SubmitSmallOk(pool, [&done] {
        std::this_thread::sleep_for(2ms);
        ++done;
      });
    }
    EXPECT_FALSE(pool.DrainFor(0ms));
    gate.Open();
    pool.Drain();
    EXPECT_EQ(done.load(), 6);
    for (int i = 0; i < 5; ++i) {
      SubmitSmallOk(pool, [&done] {
        std::this_thread::sleep_for(2ms);
        ++done;
      });
    }
  }  // the destructor waits for the small items queued just now
  EXPECT_EQ(done.load(), 11);
}

}  // namespace
}  // namespace convserve
