// Batcher: which calls merge, when a batch is due, and what happens to the
// calls that cannot run. The compute pool is a queue the test runs by hand;
// the work is fake.
#include "server/batcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace convserve {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// The compute pool: work items wait until the test runs them.
class FakePool {
 public:
  absl::Status Submit(std::function<void()> work) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!refusal_.ok()) return refusal_;
    queue_.push_back(std::move(work));
    return absl::OkStatus();
  }
  // Runs the items queued now (and those they queue), in order.
  void RunAll() {
    for (;;) {
      std::function<void()> work;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (queue_.empty()) return;
        work = std::move(queue_.front());
        queue_.erase(queue_.begin());
      }
      work();
    }
  }
  size_t queued() {
    std::lock_guard<std::mutex> lock(mutex_);
    return queue_.size();
  }
  // Waits (up to 10 s) until an item is queued.
  bool WaitForWork() {
    for (const Clock::time_point end = Clock::now() + 10s; Clock::now() < end;) {
      if (queued() > 0) return true;
      std::this_thread::sleep_for(100us);
    }
    return false;
  }
  void Refuse(absl::Status status) {
    std::lock_guard<std::mutex> lock(mutex_);
    refusal_ = std::move(status);
  }
  Batcher::SubmitFunction submitter() {
    return [this](std::function<void()> work) { return Submit(std::move(work)); };
  }

 private:
  std::mutex mutex_;
  std::vector<std::function<void()>> queue_;
  absl::Status refusal_;
};

// What happened to the calls: the batches run (each as the calls' names)
// and the failures.
struct Outcomes {
  std::mutex mutex;
  std::vector<std::vector<std::string>> batches;
  std::vector<std::pair<std::string, absl::Status>> failures;
};

class FakeCall final : public BatchItem {
 public:
  FakeCall(std::string name, int64_t samples, Outcomes* outcomes,
           std::shared_ptr<absl::Status> abandoned = nullptr)
      : name_(std::move(name)),
        samples_(samples),
        outcomes_(outcomes),
        abandoned_(abandoned ? std::move(abandoned) : std::make_shared<absl::Status>()) {}
  int64_t samples() const override { return samples_; }
  absl::Status Abandoned() const override { return *abandoned_; }
  void Fail(const absl::Status& status) override {
    std::lock_guard<std::mutex> lock(outcomes_->mutex);
    outcomes_->failures.emplace_back(name_, status);
  }
  const std::string& name() const { return name_; }

 private:
  const std::string name_;
  const int64_t samples_;
  Outcomes* const outcomes_;
  const std::shared_ptr<absl::Status> abandoned_;
};

class BatcherTest : public ::testing::Test {
 protected:
  void Add(const std::string& name, int64_t samples, const BatchingOptions& options,
           std::vector<int64_t> shape = {16, 32, 32}, const void* model = nullptr,
           std::shared_ptr<absl::Status> abandoned = nullptr) {
    batcher_->Add(BatchKey{model != nullptr ? model : &model_a_, std::move(shape)}, options,
                  std::make_unique<FakeCall>(name, samples, &outcomes_, std::move(abandoned)),
                  [this](std::vector<std::unique_ptr<BatchItem>> batch) {
                    std::vector<std::string> names;
                    for (const auto& item : batch) {
                      names.push_back(static_cast<FakeCall*>(item.get())->name());
                    }
                    std::lock_guard<std::mutex> lock(outcomes_.mutex);
                    outcomes_.batches.push_back(std::move(names));
                  });
  }

  const int model_a_ = 0;
  const int model_b_ = 0;
  FakePool pool_;
  Outcomes outcomes_;
  std::optional<Batcher> batcher_{std::in_place, pool_.submitter()};
};

constexpr BatchingOptions kSlow{/*max_batch_size=*/4, /*max_queue_delay_us=*/1'000'000};

TEST_F(BatcherTest, FullBatchIsSubmittedAtOnce) {
  Add("a", 1, kSlow);
  Add("b", 1, kSlow);
  Add("c", 1, kSlow);
  EXPECT_EQ(pool_.queued(), 0u);  // 3 of 4 samples, and the delay is 1 s
  Add("d", 1, kSlow);
  EXPECT_EQ(pool_.queued(), 1u);
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches, ElementsAre(ElementsAre("a", "b", "c", "d")));
  EXPECT_EQ(batcher_->waiting(), 0);
}

TEST_F(BatcherTest, SamplesNotCallsFillABatch) {
  Add("a", 3, kSlow);
  Add("b", 2, kSlow);  // 5 samples waiting: due, but only "a" fits in 4
  ASSERT_EQ(pool_.queued(), 1u);
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches, ElementsAre(ElementsAre("a")));
  EXPECT_EQ(batcher_->waiting(), 1);  // "b" waits for its delay or others
  Add("c", 2, kSlow);
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches, ElementsAre(ElementsAre("a"), ElementsAre("b", "c")));
}

TEST_F(BatcherTest, DelayFlushesAPartialBatch) {
  const BatchingOptions options{/*max_batch_size=*/8, /*max_queue_delay_us=*/20'000};
  const Clock::time_point start = Clock::now();
  Add("a", 1, options);
  Add("b", 2, options);
  ASSERT_TRUE(pool_.WaitForWork());
  EXPECT_GE(Clock::now() - start, 20ms);  // not before the oldest call's delay
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches, ElementsAre(ElementsAre("a", "b")));
}

TEST_F(BatcherTest, CallsArrivingWhileTheBatchQueuesJoinIt) {
  const BatchingOptions options{/*max_batch_size=*/8, /*max_queue_delay_us=*/0};
  Add("a", 1, options);
  EXPECT_EQ(pool_.queued(), 1u);  // no delay: submitted at once
  Add("b", 1, options);
  Add("c", 1, options);
  EXPECT_EQ(pool_.queued(), 1u);  // the submitted item will take them
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches, ElementsAre(ElementsAre("a", "b", "c")));
}

TEST_F(BatcherTest, OversizeCallRunsAloneAtOnce) {
  Add("a", 1, kSlow);
  Add("big", 5, kSlow);
  EXPECT_EQ(pool_.queued(), 1u);
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches, ElementsAre(ElementsAre("big")));
  EXPECT_EQ(batcher_->waiting(), 1);
}

TEST_F(BatcherTest, DifferentShapesOrModelsDoNotMerge) {
  Add("a", 1, kSlow, {16, 32, 32});
  Add("b", 1, kSlow, {16, 32, 31});
  Add("c", 1, kSlow, {16, 32, 32}, &model_b_);
  Add("d", 1, kSlow, {16, 32, 32});
  Add("e", 1, kSlow, {16, 32, 32});
  Add("f", 1, kSlow, {16, 32, 32});
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches, ElementsAre(ElementsAre("a", "d", "e", "f")));
  EXPECT_EQ(batcher_->waiting(), 2);
  batcher_->Shutdown();
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches,
              ::testing::UnorderedElementsAre(ElementsAre("a", "d", "e", "f"), ElementsAre("b"),
                                              ElementsAre("c")));
}

TEST_F(BatcherTest, AbandonedCallsAreFailedAndLeftOut) {
  auto cancelled = std::make_shared<absl::Status>();
  auto late = std::make_shared<absl::Status>();
  Add("a", 1, kSlow);
  Add("cancelled", 1, kSlow, {16, 32, 32}, &model_a_, cancelled);
  Add("late", 1, kSlow, {16, 32, 32}, &model_a_, late);
  *cancelled = absl::CancelledError("the call was cancelled before its computation started");
  *late = absl::DeadlineExceededError("the call's deadline passed");
  Add("d", 1, kSlow);
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches, ElementsAre(ElementsAre("a", "d")));
  ASSERT_EQ(outcomes_.failures.size(), 2u);
  EXPECT_EQ(outcomes_.failures[0].first, "cancelled");
  EXPECT_EQ(outcomes_.failures[0].second.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(outcomes_.failures[1].first, "late");
  EXPECT_EQ(outcomes_.failures[1].second.code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(BatcherTest, AbandonedOversizeCallIsFailed) {
  auto cancelled = std::make_shared<absl::Status>();
  Add("big", 9, kSlow, {16, 32, 32}, &model_a_, cancelled);
  *cancelled = absl::CancelledError("cancelled");
  pool_.RunAll();
  EXPECT_TRUE(outcomes_.batches.empty());
  ASSERT_EQ(outcomes_.failures.size(), 1u);
  EXPECT_EQ(outcomes_.failures[0].second.code(), absl::StatusCode::kCancelled);
}

TEST_F(BatcherTest, ShutdownSubmitsWaitingCallsAndLaterOnesAtOnce) {
  Add("a", 1, kSlow);
  Add("b", 1, kSlow);
  EXPECT_EQ(pool_.queued(), 0u);
  batcher_->Shutdown();
  EXPECT_EQ(pool_.queued(), 1u);
  Add("c", 1, kSlow);
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches, ElementsAre(ElementsAre("a", "b", "c")));
  Add("d", 1, kSlow);
  EXPECT_EQ(pool_.queued(), 1u);
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches.back(), ElementsAre("d"));
}

TEST_F(BatcherTest, WorkSubmittedOutlivesTheBatcher) {
  Add("a", 1, kSlow);
  batcher_.reset();  // submits "a" first
  pool_.RunAll();
  EXPECT_THAT(outcomes_.batches, ElementsAre(ElementsAre("a")));
}

TEST_F(BatcherTest, RefusedSubmissionFailsTheCallsItWouldHaveRun) {
  pool_.Refuse(absl::ResourceExhaustedError("--max_queued_calls"));
  Add("a", 2, kSlow);
  Add("b", 2, kSlow);
  Add("big", 5, kSlow);
  EXPECT_TRUE(outcomes_.batches.empty());
  ASSERT_EQ(outcomes_.failures.size(), 3u);
  for (const auto& [name, status] : outcomes_.failures) {
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << name;
  }
  EXPECT_EQ(batcher_->waiting(), 0);
}

TEST(CheckBatchingOptionsTest, NamesTheFieldTheBoundsAndTheValue) {
  EXPECT_TRUE(CheckBatchingOptions("batching.", {0, 0}).ok());
  EXPECT_TRUE(CheckBatchingOptions("batching.", {1024, 1'000'000}).ok());
  const absl::Status size = CheckBatchingOptions("batching.", {1025, 0});
  EXPECT_EQ(size.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(size.message(), HasSubstr("batching.max_batch_size: expected 0 (batching off) to "
                                        "1024 samples, got 1025"));
  EXPECT_THAT(CheckBatchingOptions("batching.", {-1, 0}).message(), HasSubstr("got -1"));
  const absl::Status delay = CheckBatchingOptions("batching.", {8, 1'000'001});
  EXPECT_EQ(delay.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(delay.message(),
              HasSubstr("batching.max_queue_delay_us: expected 0 to 1000000 microseconds (1 s), "
                        "got 1000001"));
  EXPECT_THAT(CheckBatchingOptions("batching.", {8, -5}).message(), HasSubstr("got -5"));
}

}  // namespace
}  // namespace convserve
