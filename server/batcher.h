// batcher.h: dynamic batching, the merging of concurrent calls into one run.
//
// Concurrent RunModel calls on the same model whose inputs agree in every
// dimension but N (dimension 0) can run as one call of their inputs
// concatenated along N: one pass over the weights and one compute pool item
// instead of many (gRPC's own per-call work is not merged; what that buys on
// 2 cores is in bench/RPC_RESULTS.md, "Dynamic batching"). Each sample's
// values do not depend on its neighbours in the batch (the kernels partition
// their work per sample and reduce each output over the same taps in the
// same order whatever N is), so every call gets exactly the bits it would
// get alone.
//
// How calls are grouped (as Triton's dynamic batcher does):
//  - A call is queued under its key (the model and the input's shape without
//    N); keys with different shapes never merge.
//  - A batch is due when the calls waiting under a key hold max_batch_size
//    samples, or when the oldest of them has waited max_queue_delay. Then one
//    work item is submitted to the compute pool.
//  - The work item takes its calls when it starts, not when it is submitted:
//    the oldest waiting calls, in arrival order, while their samples fit in
//    max_batch_size. Calls that arrived while the pool was busy with others
//    therefore join it, so the busier the pool the fuller the batches, and a
//    delay of 0 merges exactly the calls that queued up meanwhile.
//  - A call whose own N is above max_batch_size runs alone, at once.
//  - A call that can no longer run (cancelled, deadline passed: see
//    BatchItem::Abandoned) is taken out and failed when the next batch of its
//    key is formed, at the latest once the delay has passed and the pool
//    reaches the batch's work item; it never holds up its batch mates.
//  - Shutdown() submits every waiting call at once and from then on submits
//    each new one without waiting.
//
// The batcher knows nothing of models or gRPC: it groups BatchItems and hands
// each batch to the key's run function on the compute pool, which must
// complete every item of it. Thread-safe.
#ifndef CONVSERVE_SERVER_BATCHER_H_
#define CONVSERVE_SERVER_BATCHER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace convserve {

// The bounds of the batching settings (DynamicBatching in the proto).
constexpr int64_t kMaxBatchSizeLimit = 1024;
constexpr int64_t kMaxQueueDelayUsLimit = 1'000'000;  // 1 s

// A model's dynamic batching settings. Off when max_batch_size is 0.
struct BatchingOptions {
  int64_t max_batch_size = 0;      // samples (sum of N) per run; 0: off
  int64_t max_queue_delay_us = 0;  // how long the oldest call may wait

  bool enabled() const { return max_batch_size > 0; }
};

// INVALID_ARGUMENT naming `field_prefix` + the field, the bounds and the value
// received, if `options` is out of bounds: max_batch_size in [0, 1024] and
// max_queue_delay_us in [0, 1000000].
absl::Status CheckBatchingOptions(const std::string& field_prefix, const BatchingOptions& options);

// One call waiting to be batched.
class BatchItem {
 public:
  virtual ~BatchItem() = default;
  // The call's N, >= 1.
  virtual int64_t samples() const = 0;
  // Non-OK when the call should not run any more (cancelled, deadline passed,
  // server stopping): the status it must end with.
  virtual absl::Status Abandoned() const = 0;
  // Ends the call with `status` without running it. Called at most once, and
  // then the item is destroyed.
  virtual void Fail(const absl::Status& status) = 0;
};

// Which calls may merge: the same model (by identity: a replaced model is a
// different one) and the same input shape apart from N.
struct BatchKey {
  const void* model = nullptr;
  std::vector<int64_t> item_shape;  // the input's shape without dimension 0

  bool operator<(const BatchKey& other) const {
    return std::tie(model, item_shape) < std::tie(other.model, other.item_shape);
  }
};

class Batcher {
 public:
  using Clock = std::chrono::steady_clock;
  // Hands `work` to the compute pool (ComputePool::Submit). Non-OK: `work`
  // was dropped unrun. Must not run `work` before it returns (it is called
  // with the batcher's lock held).
  using SubmitFunction = std::function<absl::Status(std::function<void()> work)>;
  // Runs one batch on the compute pool and completes every item in it.
  // Items are in arrival order; none is abandoned when the batch starts.
  using RunFunction = std::function<void(std::vector<std::unique_ptr<BatchItem>> batch)>;

  explicit Batcher(SubmitFunction submit);
  // Shutdown(), then waits for its timer thread. Work items already submitted
  // keep what they need alive.
  ~Batcher();

  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues `item` under `key`. `run` runs the key's batches (every call of a
  // key passes an equivalent one; the first is kept). REQUIRES:
  // options.enabled(), item->samples() >= 1.
  void Add(BatchKey key, const BatchingOptions& options, std::unique_ptr<BatchItem> item,
           RunFunction run);

  // Submits every waiting call now; later calls are submitted as they come.
  void Shutdown();

  // Calls waiting (not yet taken by a work item). A snapshot, for tests.
  int64_t waiting() const;

 private:
  struct Waiting {
    std::unique_ptr<BatchItem> item;
    Clock::time_point since;
  };
  struct Group {
    BatchingOptions options;
    RunFunction run;
    std::deque<Waiting> waiting;  // arrival order
    int64_t waiting_samples = 0;
    int64_t submitted = 0;  // work items submitted and not started
  };
  // What the work items share with the batcher, alive as long as either.
  struct State {
    std::mutex mutex;
    std::condition_variable wake;                       // a group's delay or shutdown changed
    std::map<BatchKey, std::shared_ptr<Group>> groups;  // guarded by mutex
    bool shutdown = false;                              // guarded by mutex
    bool stop_timer = false;                            // guarded by mutex
  };

  // Submits work items for `group` while one is due. Items that cannot be
  // submitted are returned, to be failed outside the lock.
  static void SubmitDue(const std::shared_ptr<State>& state, const SubmitFunction& submit,
                        const BatchKey& key, const std::shared_ptr<Group>& group,
                        Clock::time_point now, std::vector<std::unique_ptr<BatchItem>>* refused,
                        absl::Status* refusal);
  // The body of a work item: takes its batch from `group` and runs it.
  static void RunDue(const std::shared_ptr<State>& state, const SubmitFunction& submit,
                     const BatchKey& key, const std::shared_ptr<Group>& group);
  void TimerLoop();

  const SubmitFunction submit_;
  const std::shared_ptr<State> state_;
  std::thread timer_;  // last: starts once the rest is built
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_BATCHER_H_
