// logging_test.cc: the text and JSON log formats, their fields and gRPC's lines through them.
#include "server/logging.h"

#include <grpc/support/log.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "tests/server/log_capture.h"

namespace convserve {
namespace {

using LoggingTest = LogCaptureTest;

// A caller-chosen name that tries to end its line and start a forged one,
// and to break out of quotes.
const std::string kForged = "m\n[2026-01-01 00:00:00.000] [critical] FORGED \"x\" \\ \r\x1b[31m";

nlohmann::json ParseOnlyLine(const std::vector<std::string>& lines) {
  EXPECT_EQ(lines.size(), 1u);
  if (lines.size() != 1) return nullptr;
  return nlohmann::json::parse(lines[0]);
}

TEST(ParseLogFormatTest, TakesTextAndJson) {
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
}

TEST(ParseLogFormatTest, RefusesAnythingElseNamingTheFlag) {
  const absl::StatusOr<LogFormat> format = ParseLogFormat("JSON\n");
  ASSERT_FALSE(format.ok());
  EXPECT_EQ(format.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(format.status().message(), "--log_format: expected text or json, got 'JSON\\n'");
}

TEST_F(LoggingTest, JsonFieldsCannotForgeALine) {
  SetLogFormat(LogFormat::kJson);
  LogEvent(spdlog::level::info, "access", {{"model", kForged}, {"bytes_in", 12}, {"total_s", 0.5}});
  const nlohmann::json line = ParseOnlyLine(Lines());
  ASSERT_TRUE(line.is_object());
  EXPECT_EQ(line["message"], "access");
  EXPECT_EQ(line["model"], kForged);  // the original string, whole
  EXPECT_EQ(line["bytes_in"], 12);
  EXPECT_EQ(line["total_s"], 0.5);
}

TEST_F(LoggingTest, JsonMessagesCannotForgeALineEither) {
  SetLogFormat(LogFormat::kJson);
  spdlog::warn("no model named '{}'", kForged);
  const nlohmann::json line = ParseOnlyLine(Lines());
  ASSERT_TRUE(line.is_object());
  EXPECT_EQ(line["message"], "no model named '" + kForged + "'");
  EXPECT_EQ(line["level"], "warning");
}

TEST_F(LoggingTest, JsonLinesHaveTimeLevelMessageThenFieldsInOrder) {
  SetLogFormat(LogFormat::kJson);
  LogEvent(spdlog::level::err, "failed", {{"request_id", "abc"}, {"peer", "ipv4:127.0.0.1:1"}});
  const nlohmann::json line = ParseOnlyLine(Lines());
  ASSERT_TRUE(line.is_object());
  const std::string time = line["time"];
  EXPECT_TRUE(std::regex_match(time, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
      << time;
  EXPECT_EQ(line["level"], "error");
  std::vector<std::string> keys;
  const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(Lines()[0]);
  for (const auto& item : ordered.items()) {
    keys.push_back(item.key());
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"time", "level", "message", "request_id", "peer"}));
}

TEST_F(LoggingTest, JsonReplacesInvalidUtf8AndBoundsLongFields) {
  SetLogFormat(LogFormat::kJson);
  const std::string long_name(300, 'n');
  LogEvent(spdlog::level::info, "bad \xff utf-8", {{"model", long_name}});
  const nlohmann::json line = ParseOnlyLine(Lines());
  ASSERT_TRUE(line.is_object());
  EXPECT_EQ(line["message"], "bad \xef\xbf\xbd utf-8");  // U+FFFD
  EXPECT_EQ(line["model"], std::string(128, 'n') + "...(300 bytes)");
}

TEST_F(LoggingTest, TextEscapesWhatWouldBreakTheLine) {
  spdlog::warn("no model named '{}'", kForged);
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u) << Output();
  EXPECT_TRUE(std::regex_match(
      lines[0], std::regex(R"(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \[warning\] .*)")))
      << lines[0];
  EXPECT_NE(lines[0].find("no model named 'm\\n[2026-01-01 00:00:00.000] [critical] FORGED "
                          "\"x\" \\ \\r\\x1b[31m'"),
            std::string::npos)
      << lines[0];
}

TEST_F(LoggingTest, TextFieldsAreBareOrQuotedAndEscaped) {
  LogEvent(spdlog::level::info, "access",
           {{"method", "Conv"},
            {"model", ""},
            {"peer", "ipv6:[::1]:5000"},
            {"name", kForged},
            {"bytes_in", int64_t{1} << 40},
            {"total_s", 0.0123456789}});
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u) << Output();
  const std::string expected =
      "access method=Conv model=\"\" peer=ipv6:[::1]:5000 name=\"m\\n[2026-01-01 00:00:00.000] "
      "[critical] FORGED \\\"x\\\" \\\\ \\r\\x1b[31m\" bytes_in=1099511627776 total_s=0.012346";
  const size_t at = lines[0].find("] access ");
  ASSERT_NE(at, std::string::npos) << lines[0];
  EXPECT_EQ(lines[0].substr(at + 2), expected);
}

TEST(TextFieldValueTest, QuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(TextFieldValue("0123abcdef"), "0123abcdef");
  EXPECT_EQ(TextFieldValue("resnet-50_v2.1"), "resnet-50_v2.1");
  EXPECT_EQ(TextFieldValue(""), "\"\"");
  EXPECT_EQ(TextFieldValue("a b"), "\"a b\"");
  EXPECT_EQ(TextFieldValue("a=b"), "\"a=b\"");
  EXPECT_EQ(TextFieldValue("\"x\""), "\"\\\"x\\\"\"");
}

TEST(TextFieldValueTest, BoundsLongTextAsJsonDoes) {
  // RELIABILITY row 11: an 8 MiB model name wrote two 8 MiB access log lines.
  EXPECT_EQ(TextFieldValue(std::string(128, 'n')), std::string(128, 'n'));
  EXPECT_EQ(TextFieldValue(std::string(8 << 20, 'n')),
            "\"" + std::string(128, 'n') + "...(8388608 bytes)\"");
}

TEST_F(LoggingTest, NothingBelowTheLevel) {
  LogEvent(spdlog::level::debug, "hidden", {{"request_id", "abc"}});
  SetLogFormat(LogFormat::kJson);
  LogEvent(spdlog::level::debug, "hidden", {{"request_id", "abc"}});
  EXPECT_EQ(Output(), "");
}

TEST_F(LoggingTest, FieldsBelongToTheirOwnLineOnly) {
  SetLogFormat(LogFormat::kJson);
  LogEvent(spdlog::level::info, "first", {{"request_id", "abc"}});
  spdlog::info("second");
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u) << Output();
  EXPECT_EQ(nlohmann::json::parse(lines[0])["request_id"], "abc");
  EXPECT_FALSE(nlohmann::json::parse(lines[1]).contains("request_id")) << lines[1];
}

// gRPC logs nothing until its verbosity is read (grpc_init() does it): here
// GRPC_VERBOSITY, by default ERROR.
void RouteGrpcLogsAsAServerDoes() {
  gpr_log_verbosity_init();
  RouteGrpcLogs();
}

TEST_F(LoggingTest, GrpcLinesGoThroughTheSameFormat) {
  RouteGrpcLogsAsAServerDoes();
  SetLogFormat(LogFormat::kJson);
  gpr_log(__FILE__, 42, GPR_LOG_SEVERITY_ERROR, "transport says %s", "\"hi\"\n");
  const nlohmann::json line = ParseOnlyLine(Lines());
  ASSERT_TRUE(line.is_object());
  EXPECT_EQ(line["level"], "error");
  EXPECT_EQ(line["message"], "transport says \"hi\"\n");
  EXPECT_EQ(line["source"], "grpc");
  EXPECT_EQ(line["file"], "logging_test.cc");
  EXPECT_EQ(line["line"], 42);
}

TEST_F(LoggingTest, GrpcLinesInText) {
  RouteGrpcLogsAsAServerDoes();
  gpr_log(__FILE__, 7, GPR_LOG_SEVERITY_ERROR, "transport says %s", "hi");
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u) << Output();
  EXPECT_NE(lines[0].find("[error] transport says hi source=grpc file=logging_test.cc line=7"),
            std::string::npos)
      << lines[0];
}

}  // namespace
}  // namespace convserve
