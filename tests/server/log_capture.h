// log_capture.h: a test fixture that captures what spdlog's default logger writes.
#ifndef CONVSERVE_TESTS_SERVER_LOG_CAPTURE_H_
#define CONVSERVE_TESTS_SERVER_LOG_CAPTURE_H_

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "server/logging.h"

namespace convserve {

// Replaces the default logger by one writing into a string (level info,
// text format) for the test, and restores it after.
class LogCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(output_);
    auto logger = std::make_shared<spdlog::logger>("", sink);
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
    SetLogFormat(LogFormat::kText);
  }
  void TearDown() override {
    SetLogFormat(LogFormat::kText);
    spdlog::set_default_logger(previous_);
  }

  // Everything written so far.
  std::string Output() const { return output_.str(); }

  // The lines written so far, without their newlines; the output must end
  // with one.
  std::vector<std::string> Lines() const {
    std::string text = Output();
    EXPECT_TRUE(text.empty() || text.back() == '\n') << text;
    if (!text.empty()) text.pop_back();
    if (text.empty()) return {};
    return absl::StrSplit(text, '\n');
  }

 private:
  std::ostringstream output_;
  std::shared_ptr<spdlog::logger> previous_;
};

}  // namespace convserve

#endif  // CONVSERVE_TESTS_SERVER_LOG_CAPTURE_H_
