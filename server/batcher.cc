// batcher.cc: the per-key queues, the delay timer and the work items that take their batches.
#include "server/batcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace convserve {

absl::Status CheckBatchingOptions(const std::string& field_prefix, const BatchingOptions& options) {
  if (options.max_batch_size < 0 || options.max_batch_size > kMaxBatchSizeLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat(field_prefix, "max_batch_size: expected 0 (batching off) to ",
                     kMaxBatchSizeLimit, " samples, got ", options.max_batch_size));
  }
  if (options.max_queue_delay_us < 0 || options.max_queue_delay_us > kMaxQueueDelayUsLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat(field_prefix, "max_queue_delay_us: expected 0 to ", kMaxQueueDelayUsLimit,
                     " microseconds (1 s), got ", options.max_queue_delay_us));
  }
  return absl::OkStatus();
}

namespace {

// Fails every item of `items` with `status`.
void FailAll(std::vector<std::unique_ptr<BatchItem>>* items, const absl::Status& status) {
  for (std::unique_ptr<BatchItem>& item : *items) item->Fail(status);
  items->clear();
}

// Runs `item` as a batch of one unless it has been abandoned meanwhile.
void RunAlone(std::unique_ptr<BatchItem> item, const Batcher::RunFunction& run) {
  const absl::Status abandoned = item->Abandoned();
  if (!abandoned.ok()) {
    item->Fail(abandoned);
    return;
  }
  std::vector<std::unique_ptr<BatchItem>> batch;
  batch.push_back(std::move(item));
  run(std::move(batch));
}

}  // namespace

Batcher::Batcher(SubmitFunction submit)
    : submit_(std::move(submit)),
      state_(std::make_shared<State>()),
      timer_([this] { TimerLoop(); }) {}

Batcher::~Batcher() {
  Shutdown();
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop_timer = true;
  }
  state_->wake.notify_all();
  timer_.join();
}

void Batcher::Add(BatchKey key, const BatchingOptions& options, std::unique_ptr<BatchItem> item,
                  RunFunction run) {
  if (item->samples() > options.max_batch_size) {
    // Already a batch by itself: no reason to wait for others.
    auto alone = std::make_shared<std::unique_ptr<BatchItem>>(std::move(item));
    absl::Status queued =
        submit_([alone, run = std::move(run)] { RunAlone(std::move(*alone), run); });
    if (!queued.ok() && *alone != nullptr) (*alone)->Fail(queued);
    return;
  }
  std::vector<std::unique_ptr<BatchItem>> refused;
  absl::Status refusal;
  bool wake_timer = false;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    std::shared_ptr<Group>& slot = state_->groups[key];
    if (slot == nullptr) {
      slot = std::make_shared<Group>();
      slot->run = std::move(run);
    }
    const std::shared_ptr<Group> group = slot;
    group->options = options;
    const Clock::time_point now = Clock::now();
    group->waiting_samples += item->samples();
    group->waiting.push_back({std::move(item), now});
    SubmitDue(state_, submit_, key, group, now, &refused, &refusal);
    // A call that is the oldest of its key (nothing submitted to take it)
    // needs the timer; the others are taken with it.
    wake_timer = group->submitted == 0 && group->waiting.size() == 1;
  }
  if (wake_timer) state_->wake.notify_all();
  FailAll(&refused, refusal);
}

void Batcher::SubmitDue(const std::shared_ptr<State>& state, const SubmitFunction& submit,
                        const BatchKey& key, const std::shared_ptr<Group>& group,
                        Clock::time_point now, std::vector<std::unique_ptr<BatchItem>>* refused,
                        absl::Status* refusal) {
  const int64_t max_batch = group->options.max_batch_size;
  const auto delay = std::chrono::microseconds(group->options.max_queue_delay_us);
  while (!group->waiting.empty()) {
    // Each work item submitted and not started will take up to max_batch
    // samples; a batch is due for the samples beyond those.
    const int64_t unclaimed = group->waiting_samples - group->submitted * max_batch;
    const bool full = unclaimed >= max_batch;
    const bool timed_out =
        group->submitted == 0 && (state->shutdown || now - group->waiting.front().since >= delay);
    if (!full && !timed_out) return;
    ++group->submitted;
    absl::Status queued =
        submit([state, submit, key, group] { RunDue(state, submit, key, group); });
    if (queued.ok()) continue;
    // The pool is full: the calls this work item would have taken fail now.
    --group->submitted;
    *refusal = queued;
    int64_t taken = 0;
    while (!group->waiting.empty() &&
           (taken == 0 || taken + group->waiting.front().item->samples() <= max_batch)) {
      taken += group->waiting.front().item->samples();
      refused->push_back(std::move(group->waiting.front().item));
      group->waiting.pop_front();
    }
    group->waiting_samples -= taken;
  }
}

void Batcher::RunDue(const std::shared_ptr<State>& state, const SubmitFunction& submit,
                     const BatchKey& key, const std::shared_ptr<Group>& group) {
  std::vector<std::unique_ptr<BatchItem>> batch;
  std::vector<std::pair<std::unique_ptr<BatchItem>, absl::Status>> abandoned;
  std::vector<std::unique_ptr<BatchItem>> refused;
  absl::Status refusal;
  bool wake_timer = false;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    --group->submitted;
    const int64_t max_batch = group->options.max_batch_size;
    int64_t taken = 0;
    size_t next = 0;
    for (; next < group->waiting.size(); ++next) {
      std::unique_ptr<BatchItem>& item = group->waiting[next].item;
      absl::Status gone = item->Abandoned();
      const int64_t samples = item->samples();
      if (!gone.ok()) {
        group->waiting_samples -= samples;
        abandoned.emplace_back(std::move(item), std::move(gone));
        continue;
      }
      if (taken + samples > max_batch) break;  // first come, first served
      taken += samples;
      group->waiting_samples -= samples;
      batch.push_back(std::move(item));
    }
    group->waiting.erase(group->waiting.begin(), group->waiting.begin() + next);
    if (group->waiting.empty() && group->submitted == 0) {
      auto found = state->groups.find(key);
      if (found != state->groups.end() && found->second == group) state->groups.erase(found);
    } else {
      // What is left may be due already (it waited while this batch queued).
      SubmitDue(state, submit, key, group, Clock::now(), &refused, &refusal);
      wake_timer = group->submitted == 0 && !group->waiting.empty();  // a new oldest call
    }
  }
  if (wake_timer) state->wake.notify_all();
  for (auto& [item, status] : abandoned) item->Fail(status);
  FailAll(&refused, refusal);
  if (!batch.empty()) group->run(std::move(batch));
}

void Batcher::Shutdown() {
  std::vector<std::unique_ptr<BatchItem>> refused;
  absl::Status refusal;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->shutdown = true;
    const Clock::time_point now = Clock::now();
    for (auto& [key, group] : state_->groups) {
      SubmitDue(state_, submit_, key, group, now, &refused, &refusal);
    }
  }
  FailAll(&refused, refusal);
}

int64_t Batcher::waiting() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  int64_t count = 0;
  for (const auto& [key, group] : state_->groups) {
    count += static_cast<int64_t>(group->waiting.size());
  }
  return count;
}

void Batcher::TimerLoop() {
  std::unique_lock<std::mutex> lock(state_->mutex);
  while (!state_->stop_timer) {
    const Clock::time_point now = Clock::now();
    Clock::time_point next = Clock::time_point::max();
    std::vector<std::unique_ptr<BatchItem>> refused;
    absl::Status refusal;
    for (auto& [key, group] : state_->groups) {
      SubmitDue(state_, submit_, key, group, now, &refused, &refusal);
      if (group->submitted == 0 && !group->waiting.empty()) {
        next = std::min(next, group->waiting.front().since +
                                  std::chrono::microseconds(group->options.max_queue_delay_us));
      }
    }
    if (!refused.empty()) {
      lock.unlock();
      FailAll(&refused, refusal);
      lock.lock();
      continue;
    }
    if (next == Clock::time_point::max()) {
      state_->wake.wait(lock);
    } else {
      state_->wake.wait_until(lock, next);
    }
  }
}

}  // namespace convserve
