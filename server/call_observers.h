// call_observers.h: one CallObserver that tells several (metrics, access log, ...) about every
// call.
#ifndef CONVSERVE_SERVER_CALL_OBSERVERS_H_
#define CONVSERVE_SERVER_CALL_OBSERVERS_H_

#include <vector>

#include "server/call_record.h"

namespace convserve {

// Forwards each event to every observer added, in the order added. Add them
// all before the first call: Add() is not synchronized with the calls.
class CallObservers final : public CallObserver {
 public:
  // `observer` must outlive this; null is ignored.
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
