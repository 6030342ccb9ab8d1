// CallObservers: every event reaches every observer added, in order.
#include "server/call_observers.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace convserve {
namespace {

class Recorder final : public CallObserver {
 public:
  Recorder(std::string name, std::vector<std::string>* events) : name_(name), events_(events) {}
  void OnCallStarted(const char* method) override {
    events_->push_back(name_ + " started " + method);
  }
  void OnCallCompleted(const CallRecord& record) override {
    events_->push_back(name_ + " completed " + record.method + " " +
                       std::to_string(record.request_bytes));
  }

 private:
  const std::string name_;
  std::vector<std::string>* const events_;
};

TEST(CallObserversTest, ForwardsEveryEventToEachObserverInOrder) {
  std::vector<std::string> events;
  Recorder metrics("metrics", &events);
  Recorder access_log("log", &events);
  CallObservers observers;
  EXPECT_TRUE(observers.empty());
  observers.Add(&metrics);
  observers.Add(nullptr);  // ignored
  observers.Add(&access_log);
  EXPECT_FALSE(observers.empty());

  CallRecord record;
  record.method = "Conv";
  record.request_bytes = 42;
  observers.OnCallStarted("Conv");
  observers.OnCallCompleted(record);
  EXPECT_EQ(events,
            (std::vector<std::string>{"metrics started Conv", "log started Conv",
                                      "metrics completed Conv 42", "log completed Conv 42"}));
}

}  // namespace
}  // namespace convserve
