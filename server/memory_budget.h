// memory_budget.h: admission control by working memory.
//
// Each call reserves the memory it is about to allocate (outputs, packed
// weights, intermediates) before it allocates it; a call that does not fit in
// what is left is refused at once with RESOURCE_EXHAUSTED instead of pushing
// the process towards the OOM killer. Thread-safe.
#ifndef CONVSERVE_SERVER_MEMORY_BUDGET_H_
#define CONVSERVE_SERVER_MEMORY_BUDGET_H_

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace convserve {

class MemoryBudget {
 public:
  // Releases its bytes when destroyed. Movable, not copyable.
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept { *this = std::move(other); }
    Reservation& operator=(Reservation&& other) noexcept {
      Release();
      budget_ = std::exchange(other.budget_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
      return *this;
    }
    ~Reservation() { Release(); }

    void Release() {
      if (budget_ != nullptr) budget_->Give(bytes_);
      budget_ = nullptr;
      bytes_ = 0;
    }
    int64_t bytes() const { return bytes_; }

   private:
    friend class MemoryBudget;
    Reservation(MemoryBudget* budget, int64_t bytes) : budget_(budget), bytes_(bytes) {}
    MemoryBudget* budget_ = nullptr;
    int64_t bytes_ = 0;
  };

  explicit MemoryBudget(int64_t limit_bytes) : limit_(limit_bytes) {}

  // Reserves `bytes` (>= 0) for `what` or fails with RESOURCE_EXHAUSTED naming
  // the request's need, what is in use and the limit (--memory_budget_bytes).
  absl::StatusOr<Reservation> Reserve(const std::string& what, int64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (bytes < 0 || bytes > limit_ - in_use_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          what, ": needs ", bytes, " bytes of working memory but only ", limit_ - in_use_,
          " of the server's memory budget (--memory_budget_bytes=", limit_,
          ") are free now; retry later or send a smaller request"));
    }
    in_use_ += bytes;
    return Reservation(this, bytes);
  }

  int64_t in_use() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return in_use_;
  }
  int64_t limit() const { return limit_; }

 private:
  void Give(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    in_use_ -= bytes;
  }

  const int64_t limit_;
  mutable std::mutex mutex_;
  int64_t in_use_ = 0;  // guarded by mutex_
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_MEMORY_BUDGET_H_
