// call_observers.h: one CallObserver that tells several (access log, metrics, ...).
#ifndef CONVSERVE_SERVER_CALL_OBSERVERS_H_
#define CONVSERVE_SERVER_CALL_OBSERVERS_H_

#include <vector>

#include "server/call_record.h"

namespace convserve {

// Forwards every event to each observer added, in the order they were added.
// Add() them all before the first call: adding is not thread-safe, forwarding
// is as thread-safe as the observers are.
class CallObservers final : public CallObserver {
 public:
  // `observer` (ignored if null) must outlive this.
  void Add(CallObserver* observer) {
    if (observer != nullptr) observers_.push_back(observer);
  }
  bool empty() const { return observers_.empty(); }

  void OnCallStarted(const char* method) override {
    for (CallObserver* observer : observers_) observer->OnCallStarted(method);
  }
  void OnCallCompleted(const CallRecord& record) override {
    for (CallObserver* observer : observers_) observer->OnCallCompleted(record);
  }

 private:
  std::vector<CallObserver*> observers_;
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_CALL_OBSERVERS_H_
