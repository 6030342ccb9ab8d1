// report_test.cc: the text, JSON, CSV and HTML renderings of a load report.
#include "bench/load/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace convserve::load {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Two load levels with random latencies: a closed loop of health and conv calls with errors,
// and an open loop of conv calls only.
Report SampleReport() {
  std::mt19937_64 rng(1);
  std::lognormal_distribution<double> latency(13, 0.8);
  Report report;
  report.started_utc = "2026-11-26T05:00:00Z";
  report.machine = "Test CPU, CPU family 26, 2 CPUs";
  report.settings = {{"target", "127.0.0.1:50051"}, {"note", "<b>bold</b> & \"quoted\""}};
  report.calls = {{"health", "grpc.health.v1.Health/Check"}, {"conv", "layer x: input 1x3x8x8"}};

  RunResult closed;
  closed.label = "concurrency 4";
  closed.concurrency = 4;
  closed.warmup_seconds = 1;
  closed.window_seconds = 3;
  Recorder recorder({"health", "conv"});
  for (int second = 0; second < 3; ++second) {
    for (int i = 0; i < 500; ++i) {
      const uint64_t ns = static_cast<uint64_t>(latency(rng));
      if (i % 2 == 0) {
        recorder.Record(0, Outcome{"", ns, -1}, true, true);
      } else {
        recorder.Record(1, Outcome{"", ns * 3, static_cast<int64_t>(ns)}, true, true);
      }
    }
    recorder.Record(1, Outcome{"DEADLINE_EXCEEDED", 0, -1}, true, true);
    recorder.Record(0, Outcome{"UNAVAILABLE", 0, -1}, true, true);
    recorder.Tick(second + 1, 1);
  }
  recorder.Collect(&closed);
  report.runs.push_back(closed);

  RunResult open;
  open.label = "rps 100, \"poisson\"";  // a label CSV must quote
  open.open_loop = true;
  open.requested_rps = 100;
  open.arrival = "poisson";
  open.window_seconds = 2;
  open.planned_seconds = 2;
  open.scheduled = 200;
  Recorder open_recorder({"conv"});
  for (int i = 0; i < 200; ++i) {
    const uint64_t ns = static_cast<uint64_t>(latency(rng));
    open_recorder.Record(0, Outcome{"", ns, static_cast<int64_t>(ns / 2)}, true, true);
    open_recorder.RecordSendLag(1000 + i);
    if (i % 100 == 99) open_recorder.Tick((i + 1) / 100, 1);
  }
  open_recorder.Collect(&open);
  report.runs.push_back(open);
  return report;
}

TEST(LoadReportTest, ParsesFormatNames) {
  EXPECT_EQ(*ParseFormat("text"), Format::kText);
  EXPECT_EQ(*ParseFormat("JSON"), Format::kJson);
  EXPECT_EQ(*ParseFormat("csv"), Format::kCsv);
  EXPECT_EQ(*ParseFormat("html"), Format::kHtml);
  const absl::StatusOr<Format> bad = ParseFormat("pdf");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("--format: expected text, json, csv or html"));
  EXPECT_THAT(bad.status().message(), HasSubstr("'pdf'"));
}

TEST(LoadReportTest, TextHasEveryLevelErrorsByCodeAndASummary) {
  const Report report = SampleReport();
  const std::string text = FormatText(report);
  EXPECT_THAT(text, HasSubstr("closed loop, concurrency 4"));
  EXPECT_THAT(text, HasSubstr("open loop, poisson arrivals at 100 calls/s"));
  EXPECT_THAT(text, HasSubstr("calls 1506, ok 1500, errors 6"));
  EXPECT_THAT(text, HasSubstr("errors by code: DEADLINE_EXCEEDED 3, UNAVAILABLE 3 (health: "
                              "UNAVAILABLE 3; conv: DEADLINE_EXCEEDED 3)"));
  EXPECT_THAT(text, HasSubstr("conv server compute"));
  EXPECT_THAT(text, HasSubstr("== summary =="));
  EXPECT_THAT(text, HasSubstr("Test CPU, CPU family 26"));
  EXPECT_EQ(FormatReport(report, Format::kText), text);
}

TEST(LoadReportTest, JsonParsesAndCarriesTheNumbers) {
  const Report report = SampleReport();
  const nlohmann::json json = nlohmann::json::parse(FormatJson(report));
  EXPECT_EQ(json["tool"], "convserve_load");
  EXPECT_EQ(json["errors"], 6);
  EXPECT_EQ(json["settings"]["note"], "<b>bold</b> & \"quoted\"");
  ASSERT_EQ(json["runs"].size(), 2u);
  const nlohmann::json& closed = json["runs"][0];
  const RunResult& run = report.runs[0];
  EXPECT_EQ(closed["mode"], "closed");
  EXPECT_EQ(closed["concurrency"], 4);
  EXPECT_EQ(closed["total"]["calls"], run.total.calls);
  EXPECT_EQ(closed["total"]["errors_by_code"]["DEADLINE_EXCEEDED"], 3);
  EXPECT_EQ(closed["total"]["errors_by_code"]["UNAVAILABLE"], 3);
  EXPECT_DOUBLE_EQ(closed["total"]["latency_us"]["p99"].get<double>(),
                   run.total.latency.ValueAtPercentile(99) / 1e3);
  EXPECT_DOUBLE_EQ(closed["throughput_per_s"].get<double>(), run.throughput());
  uint64_t histogram_total = 0;
  for (const nlohmann::json& bucket : closed["total"]["latency_histogram_ns"]) {
    EXPECT_LE(bucket[0].get<uint64_t>(), bucket[1].get<uint64_t>());
    histogram_total += bucket[2].get<uint64_t>();
  }
  EXPECT_EQ(histogram_total, run.total.ok);
  ASSERT_EQ(closed["by_call"].size(), 2u);
  EXPECT_EQ(closed["by_call"][1]["name"], "conv");
  EXPECT_TRUE(closed["by_call"][1].contains("server_compute_us"));
  EXPECT_FALSE(closed["by_call"][0].contains("server_compute_us"));
  EXPECT_EQ(closed["timeline"].size(), 3u);
  const nlohmann::json& open = json["runs"][1];
  EXPECT_EQ(open["mode"], "open");
  EXPECT_EQ(open["requested_rps"], 100);
  EXPECT_EQ(open["scheduled"], 200);
  EXPECT_DOUBLE_EQ(open["offered_rps"].get<double>(), 100);
  EXPECT_EQ(open["send_lag_us"]["count"], 200);
}

// Splits one CSV line into fields, undoing the quoting.
std::vector<std::string> CsvFields(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      fields.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

TEST(LoadReportTest, CsvHasTheHeaderAndOneRowPerLevelAndCall) {
  const Report report = SampleReport();
  const std::string csv = FormatCsv(report);
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u + 3u + 2u);  // header; all, health, conv; all, conv
  EXPECT_EQ(lines[0], CsvHeader());
  const std::vector<std::string> header = CsvFields(lines[0]);
  for (size_t i = 1; i < lines.size(); ++i) {
    EXPECT_EQ(CsvFields(lines[i]).size(), header.size()) << lines[i];
  }
  auto column = [&header](const std::string& name) {
    return static_cast<size_t>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  const std::vector<std::string> all = CsvFields(lines[1]);
  EXPECT_EQ(all[column("run")], "concurrency 4");
  EXPECT_EQ(all[column("call")], "all");
  EXPECT_EQ(all[column("calls")], std::to_string(report.runs[0].total.calls));
  EXPECT_EQ(all[column("errors")], "6");
  EXPECT_EQ(all[column("errors_by_code")], "DEADLINE_EXCEEDED=3;UNAVAILABLE=3");
  const std::vector<std::string> conv = CsvFields(lines[3]);
  EXPECT_EQ(conv[column("call")], "conv");
  EXPECT_FALSE(conv[column("compute_p50_us")].empty());
  EXPECT_TRUE(CsvFields(lines[2])[column("compute_p50_us")].empty());  // health has none
  const std::vector<std::string> open = CsvFields(lines[4]);
  EXPECT_EQ(open[column("run")], "rps 100, \"poisson\"");
  EXPECT_EQ(open[column("mode")], "open");
  EXPECT_EQ(open[column("arrival")], "poisson");
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(LoadReportTest, HtmlIsSelfContainedWithThreeChartsPerLevel) {
  const std::string html = FormatHtml(SampleReport());
  EXPECT_TRUE(absl::StartsWith(html, "<!DOCTYPE html>"));
  EXPECT_EQ(Count(html, "<svg"), 6);
  EXPECT_EQ(Count(html, "</svg>"), 6);
  EXPECT_THAT(html, HasSubstr("Latency histogram"));
  EXPECT_THAT(html, HasSubstr("Latency per second"));
  EXPECT_THAT(html, HasSubstr("Throughput per second"));
  EXPECT_THAT(html, HasSubstr("<polyline"));
  EXPECT_THAT(html, HasSubstr("<rect"));
  for (const char* external :
       {"http:", "https:", "//", "<script", "src=", "href=", "url(", "@import"}) {
    EXPECT_THAT(html, Not(HasSubstr(external))) << external;
  }
  // Text from the report is escaped.
  EXPECT_THAT(html, Not(HasSubstr("<b>bold</b>")));
  EXPECT_THAT(html, HasSubstr("&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;"));
}

TEST(LoadReportTest, HtmlOfARunWithoutSuccessesHasNoCharts) {
  Report report;
  RunResult run;
  run.label = "concurrency 1";
  run.concurrency = 1;
  run.total.Record(Outcome{"UNAVAILABLE", 0, -1});
  report.runs.push_back(run);
  const std::string html = FormatHtml(report);
  EXPECT_EQ(Count(html, "<svg"), 0);
  EXPECT_THAT(html, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(FormatText(report), HasSubstr("errors 1"));
}

}  // namespace
}  // namespace convserve::load
