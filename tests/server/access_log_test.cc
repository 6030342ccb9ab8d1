// access_log_test.cc: the access line's fields in both formats, and the observers' fan-out.
#include "server/access_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/call_observers.h"
#include "tests/server/log_capture.h"

namespace convserve {
namespace {

using AccessLogTest = LogCaptureTest;

CallRecord SampleRecord() {
  CallRecord record;
  record.method = "RunModel";
  record.model = "resnet";
  record.request_id = "req-1";
  record.peer = "ipv4:127.0.0.1:5000";
  record.code = absl::StatusCode::kNotFound;
  record.caller_fault = true;
  record.request_bytes = 1234;
  record.response_bytes = 56;
  record.queue_seconds = 0.0015;
  record.compute_seconds = 0.25;
  record.total_seconds = 0.3;
  return record;
}

TEST_F(AccessLogTest, TextLineHasEveryField) {
  LogAccessLine(SampleRecord());
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u) << Output();
  const std::string expected =
      "[info] access method=RunModel model=resnet request_id=req-1 peer=ipv4:127.0.0.1:5000 "
      "code=NOT_FOUND bytes_in=1234 bytes_out=56 queue_s=0.001500 compute_s=0.250000 "
      "total_s=0.300000";
  ASSERT_GE(lines[0].size(), expected.size());
  EXPECT_EQ(lines[0].substr(lines[0].size() - expected.size()), expected) << lines[0];
}

TEST_F(AccessLogTest, JsonLineHasEveryFieldAsAKey) {
  SetLogFormat(LogFormat::kJson);
  LogAccessLine(SampleRecord());
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u) << Output();
  nlohmann::ordered_json line = nlohmann::ordered_json::parse(lines[0]);
  line.erase("time");
  const nlohmann::ordered_json expected = {
      {"level", "info"},     {"message", "access"},   {"method", "RunModel"},
      {"model", "resnet"},   {"request_id", "req-1"}, {"peer", "ipv4:127.0.0.1:5000"},
      {"code", "NOT_FOUND"}, {"bytes_in", 1234},      {"bytes_out", 56},
      {"queue_s", 0.0015},   {"compute_s", 0.25},     {"total_s", 0.3}};
  EXPECT_EQ(line, expected) << lines[0];
}

TEST_F(AccessLogTest, CallerTextIsEscapedInTextAndWholeInJson) {
  CallRecord record = SampleRecord();
  record.model = "x\n[critical] FORGED";
  record.request_id = "id with \"quotes\"";
  LogAccessLine(record);
  SetLogFormat(LogFormat::kJson);
  LogAccessLine(record);
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u) << Output();
  EXPECT_NE(
      lines[0].find(" model=\"x\\n[critical] FORGED\" request_id=\"id with \\\"quotes\\\"\" "),
      std::string::npos)
      << lines[0];
  const nlohmann::json json = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(json["model"], record.model);
  EXPECT_EQ(json["request_id"], record.request_id);
}

TEST_F(AccessLogTest, SilentAboveInfo) {
  spdlog::default_logger()->set_level(spdlog::level::warn);
  LogAccessLine(SampleRecord());
  EXPECT_EQ(Output(), "");
}

TEST_F(AccessLogTest, IsACallObserver) {
  AccessLog access_log;
  CallObservers observers;
  observers.Add(&access_log);
  observers.OnCallStarted("RunModel");
  EXPECT_EQ(Output(), "");  // a line per finished call, none per start
  observers.OnCallCompleted(SampleRecord());
  EXPECT_EQ(Lines().size(), 1u) << Output();
}

// Records what it is told, naming itself.
class Recorder final : public CallObserver {
 public:
  Recorder(std::string name, std::vector<std::string>* events)
      : name_(std::move(name)), events_(events) {}
  void OnCallStarted(const char* method) override {
    events_->push_back(name_ + " started " + method);
  }
  void OnCallCompleted(const CallRecord& record) override {
    events_->push_back(name_ + " completed " + record.request_id);
  }

 private:
  std::string name_;
  std::vector<std::string>* events_;
};

TEST(CallObserversTest, ForwardsEveryEventToEachObserverInOrder) {
  std::vector<std::string> events;
  Recorder first("first", &events), second("second", &events);
  CallObservers observers;
  EXPECT_TRUE(observers.empty());
  observers.Add(&first);
  observers.Add(nullptr);  // ignored
  observers.Add(&second);
  EXPECT_FALSE(observers.empty());
  observers.OnCallStarted("Conv");
  CallRecord record;
  record.request_id = "r1";
  observers.OnCallCompleted(record);
  EXPECT_EQ(events, (std::vector<std::string>{"first started Conv", "second started Conv",
                                              "first completed r1", "second completed r1"}));
}

}  // namespace
}  // namespace convserve
