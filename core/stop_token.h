// stop_token.h: a cheap signal that asks a running convolution to stop early.
//
// The caller owns the flags and keeps them alive while a Run() that was given
// the token is running; the operator only reads them. A run checks the token
// between work items (tiles of output pixels and channel blocks, never inside
// a micro-kernel) and between the steps it takes, so a stop takes effect within
// one work item (well under a millisecond to a few milliseconds) and costs one
// relaxed load per flag and one clock read per item. Thread-safe: reading a
// token is; setting its flags is the owner's business (std::atomic).
#ifndef CONVSERVE_CORE_STOP_TOKEN_H_
#define CONVSERVE_CORE_STOP_TOKEN_H_

#include <atomic>
#include <chrono>

namespace convserve {

class StopToken {
 public:
  using Clock = std::chrono::steady_clock;

  // A token that never stops anything.
  StopToken() = default;

  // Stops once `flag` or `other_flag` (either may be null) is true, or once
  // `deadline` has passed (Clock::time_point::max(): no deadline).
  // REQUIRES: the flags outlive every Run() given this token.
  explicit StopToken(const std::atomic<bool>* flag, const std::atomic<bool>* other_flag = nullptr,
                     Clock::time_point deadline = Clock::time_point::max())
      : flag_(flag), other_flag_(other_flag), deadline_(deadline) {}

  // Whether the work should stop now.
  bool StopRequested() const {
    if (flag_ != nullptr && flag_->load(std::memory_order_relaxed)) return true;
    if (other_flag_ != nullptr && other_flag_->load(std::memory_order_relaxed)) return true;
    return deadline_ != Clock::time_point::max() && Clock::now() >= deadline_;
  }

  // Whether this token can ever stop anything (lets a run skip the checks).
  bool CanStop() const {
    return flag_ != nullptr || other_flag_ != nullptr || deadline_ != Clock::time_point::max();
  }

 private:
  const std::atomic<bool>* flag_ = nullptr;
  const std::atomic<bool>* other_flag_ = nullptr;
  Clock::time_point deadline_ = Clock::time_point::max();
};

}  // namespace convserve

#endif  // CONVSERVE_CORE_STOP_TOKEN_H_
