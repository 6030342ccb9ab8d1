// MetricsRegistry, CallMetrics and the process metrics: the Prometheus text exposition they write.
#include "server/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace convserve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The sample lines of `text` (no comments), as "name{labels}" -> value.
std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line.front() == '#') continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    EXPECT_NE(space, absl::string_view::npos) << line;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &value)) << line;
    EXPECT_TRUE(samples.emplace(std::string(line.substr(0, space)), value).second)
        << "sample twice: " << line;
  }
  return samples;
}

TEST(MetricsFormatTest, ValuesReadBackExactly) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(3), "3");
  EXPECT_EQ(FormatMetricValue(-7), "-7");
  EXPECT_EQ(FormatMetricValue(2147483648.0), "2147483648");
  EXPECT_EQ(FormatMetricValue(0.25), "0.25");
  EXPECT_EQ(FormatMetricValue(5e-5), "5e-05");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatMetricValue(std::nan("")), "NaN");
  for (double value : {0.1, 1.0 / 3, 2.5e-4, 1e300, 123456.789, 1e15 + 0.5}) {
    EXPECT_EQ(std::strtod(FormatMetricValue(value).c_str(), nullptr), value) << value;
  }
}

TEST(MetricsFormatTest, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeHelp("a\\b\"c\nd"), "a\\\\b\"c\\nd");  // quotes stay in HELP
}

TEST(MetricsRegistryTest, CounterExposition) {
  MetricsRegistry registry;
  MetricsRegistry::Counter* counter =
      registry.AddCounter("test_events_total", "Events.\nBy kind.", {"kind", "code"});
  EXPECT_EQ(registry.Render(),
            "# HELP test_events_total Events.\\nBy kind.\n"
            "# TYPE test_events_total counter\n");
  counter->Increment({"b", "OK"});
  counter->Increment({"a", "OK"}, 2.5);
  counter->Increment({"b", "OK"});
  counter->Increment({"quote\"back\\slash\nnewline", "X"});
  EXPECT_EQ(registry.Render(),
            "# HELP test_events_total Events.\\nBy kind.\n"
            "# TYPE test_events_total counter\n"
            "test_events_total{kind=\"a\",code=\"OK\"} 2.5\n"
            "test_events_total{kind=\"b\",code=\"OK\"} 2\n"
            "test_events_total{kind=\"quote\\\"back\\\\slash\\nnewline\",code=\"X\"} 1\n");
  EXPECT_EQ(counter->Value({"b", "OK"}), 2);
  EXPECT_EQ(counter->Value({"never", "seen"}), 0);
}

TEST(MetricsRegistryTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  MetricsRegistry registry;
  MetricsRegistry::Histogram* histogram =
      registry.AddHistogram("test_seconds", "Durations.", {"method"}, {0.1, 1, 10});
  // A bucket counts the observations <= its bound: 0.1 falls in le="0.1".
  const std::vector<double> observed = {0.05, 0.1, 0.5, 20, 1};
  for (double value : observed) histogram->Observe({"Conv"}, value);
  histogram->Observe({"Health"}, 0.01);
  double sum = 0;
  for (double value : observed) sum += value;
  EXPECT_EQ(registry.Render(),
            "# HELP test_seconds Durations.\n"
            "# TYPE test_seconds histogram\n"
            "test_seconds_bucket{method=\"Conv\",le=\"0.1\"} 2\n"
            "test_seconds_bucket{method=\"Conv\",le=\"1\"} 4\n"
            "test_seconds_bucket{method=\"Conv\",le=\"10\"} 4\n"
            "test_seconds_bucket{method=\"Conv\",le=\"+Inf\"} 5\n"
            "test_seconds_sum{method=\"Conv\"} " +
                FormatMetricValue(sum) +
                "\n"
                "test_seconds_count{method=\"Conv\"} 5\n"
                "test_seconds_bucket{method=\"Health\",le=\"0.1\"} 1\n"
                "test_seconds_bucket{method=\"Health\",le=\"1\"} 1\n"
                "test_seconds_bucket{method=\"Health\",le=\"10\"} 1\n"
                "test_seconds_bucket{method=\"Health\",le=\"+Inf\"} 1\n"
                "test_seconds_sum{method=\"Health\"} 0.01\n"
                "test_seconds_count{method=\"Health\"} 1\n");
  EXPECT_EQ(histogram->Count({"Conv"}), observed.size());
}

TEST(MetricsRegistryTest, HistogramWithoutLabels) {
  MetricsRegistry registry;
  registry.AddHistogram("test_plain", "Plain.", {}, {1})->Observe({}, 2);
  EXPECT_EQ(registry.Render(),
            "# HELP test_plain Plain.\n# TYPE test_plain histogram\n"
            "test_plain_bucket{le=\"1\"} 0\ntest_plain_bucket{le=\"+Inf\"} 1\n"
            "test_plain_sum 2\ntest_plain_count 1\n");
}

TEST(MetricsRegistryTest, DurationBucketsSpan50MicrosecondsTo30Seconds) {
  const std::vector<double>& buckets = DurationBuckets();
  ASSERT_FALSE(buckets.empty());
  EXPECT_EQ(buckets.front(), 5e-5);
  EXPECT_EQ(buckets.back(), 30);
  for (size_t i = 1; i < buckets.size(); ++i) EXPECT_LT(buckets[i - 1], buckets[i]);
}

TEST(MetricsRegistryTest, CallbacksAreReadAtEachRender) {
  MetricsRegistry registry;
  std::atomic<int> depth{3};
  registry.AddGauge("test_depth", "Depth.", [&depth] { return depth.load(); });
  registry.AddCallback("test_budget_bytes", "Budget.", "gauge", {"state"}, [] {
    return std::vector<MetricsRegistry::Sample>{{{"limit"}, 10}};
  });
  EXPECT_THAT(registry.Render(), HasSubstr("\ntest_depth 3\n"));
  depth = 5;
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("# TYPE test_depth gauge\ntest_depth 5\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE test_budget_bytes gauge\n"
                              "test_budget_bytes{state=\"limit\"} 10\n"));
}

TEST(MetricsRegistryTest, RejectsBadAndDuplicateNames) {
  MetricsRegistry registry;
  registry.AddCounter("test_total", "x", {});
  EXPECT_THROW(registry.AddCounter("test_total", "again", {}), std::invalid_argument);
  EXPECT_THROW(registry.AddCounter("9starts_with_digit", "x", {}), std::invalid_argument);
  EXPECT_THROW(registry.AddCounter("has-dash", "x", {}), std::invalid_argument);
  EXPECT_THROW(registry.AddCounter("ok_name", "x", {"bad:label"}), std::invalid_argument);
  EXPECT_THROW(registry.AddHistogram("ok_hist", "x", {"le"}, {1}), std::invalid_argument);
  EXPECT_THROW(registry.AddHistogram("ok_hist", "x", {}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(registry.AddCallback("ok_cb", "x", "summary", {}, {}), std::invalid_argument);
  EXPECT_NO_THROW(registry.AddCounter("ok:name_2", "x", {"_label2"}));
}

TEST(MetricsRegistryTest, ConcurrentIncrementsAllCount) {
  MetricsRegistry registry;
  MetricsRegistry::Counter* counter = registry.AddCounter("test_total", "x", {"thread"});
  MetricsRegistry::Histogram* histogram = registry.AddHistogram("test_h", "x", {}, {1});
  constexpr int kThreads = 4;
  constexpr int kEach = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        counter->Increment({"shared"});
        counter->Increment({std::to_string(t)});
        histogram->Observe({}, 0.5);
        if (i % 1000 == 0) registry.Render();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(counter->Value({"shared"}), kThreads * kEach);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(counter->Value({std::to_string(t)}), kEach);
  EXPECT_EQ(histogram->Count({}), static_cast<uint64_t>(kThreads * kEach));
}

CallRecord Record(const char* method, absl::StatusCode code, int64_t in, int64_t out, double total,
                  double queue, double compute) {
  CallRecord record;
  record.method = method;
  record.code = code;
  record.request_bytes = in;
  record.response_bytes = out;
  record.total_seconds = total;
  record.queue_seconds = queue;
  record.compute_seconds = compute;
  return record;
}

TEST(CallMetricsTest, CountsCallsBytesDurationsAndInflight) {
  MetricsRegistry registry;
  CallMetrics metrics(&registry);
  metrics.OnCallStarted("Conv");
  metrics.OnCallStarted("Conv");
  metrics.OnCallStarted("ValidateShape");
  EXPECT_EQ(metrics.inflight(), 3);
  EXPECT_EQ(Samples(registry.Render())["convserve_inflight_requests"], 3);

  // A Conv that ran on the compute pool, one refused before it, a ValidateShape.
  metrics.OnCallCompleted(Record("Conv", absl::StatusCode::kOk, 1000, 400, 0.02, 0.001, 0.015));
  metrics.OnCallCompleted(Record("Conv", absl::StatusCode::kInvalidArgument, 300, 0, 0.0001, 0, 0));
  metrics.OnCallCompleted(Record("ValidateShape", absl::StatusCode::kOk, 50, 70, 0.0002, 0, 0));
  EXPECT_EQ(metrics.inflight(), 0);

  const std::string text = registry.Render();
  std::map<std::string, double> samples = Samples(text);
  EXPECT_EQ(samples["convserve_inflight_requests"], 0);
  EXPECT_EQ(samples["convserve_requests_total{method=\"Conv\",code=\"OK\"}"], 1);
  EXPECT_EQ(samples["convserve_requests_total{method=\"Conv\",code=\"INVALID_ARGUMENT\"}"], 1);
  EXPECT_EQ(samples["convserve_requests_total{method=\"ValidateShape\",code=\"OK\"}"], 1);
  EXPECT_EQ(samples["convserve_request_bytes_total{method=\"Conv\",direction=\"in\"}"], 1300);
  EXPECT_EQ(samples["convserve_request_bytes_total{method=\"Conv\",direction=\"out\"}"], 400);
  EXPECT_EQ(samples["convserve_request_bytes_total{method=\"ValidateShape\",direction=\"out\"}"],
            70);
  EXPECT_EQ(samples["convserve_request_duration_seconds_count{method=\"Conv\"}"], 2);
  EXPECT_EQ(samples["convserve_request_duration_seconds_count{method=\"ValidateShape\"}"], 1);
  // Only the call that ran on the pool is in the queue and compute histograms.
  EXPECT_EQ(samples["convserve_compute_duration_seconds_count{method=\"Conv\"}"], 1);
  EXPECT_EQ(samples["convserve_compute_duration_seconds_sum{method=\"Conv\"}"], 0.015);
  EXPECT_EQ(samples["convserve_queue_wait_seconds_sum{method=\"Conv\"}"], 0.001);
  EXPECT_THAT(text, Not(HasSubstr("convserve_compute_duration_seconds_count{method=\"Validate")));
  // 0.015 s: above le="0.01", within le="0.025".
  EXPECT_EQ(samples["convserve_compute_duration_seconds_bucket{method=\"Conv\",le=\"0.01\"}"], 0);
  EXPECT_EQ(samples["convserve_compute_duration_seconds_bucket{method=\"Conv\",le=\"0.025\"}"], 1);
}

TEST(ProcessMetricsTest, ReadsProcSelf) {
  MetricsRegistry registry;
  AddProcessMetrics(&registry);
  std::map<std::string, double> samples = Samples(registry.Render());
  for (const char* name : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                           "process_start_time_seconds", "process_threads"}) {
    EXPECT_EQ(samples.count(name), 1u) << name;
  }
  EXPECT_GT(samples["process_resident_memory_bytes"], 0);
  EXPECT_GE(samples["process_virtual_memory_bytes"], samples["process_resident_memory_bytes"]);
  EXPECT_GE(samples["process_threads"], 1);
  EXPECT_LE(samples["process_start_time_seconds"], static_cast<double>(std::time(nullptr)) + 1);
  EXPECT_GT(samples["process_start_time_seconds"], 1e9);  // after 2001: read, not zero

  // Opening a descriptor shows in the next scrape.
  const double before = samples["process_open_fds"];
  EXPECT_GE(before, 3);  // stdin, stdout, stderr
  const int fd = dup(1);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Samples(registry.Render())["process_open_fds"], before + 1);
  close(fd);
}

}  // namespace
}  // namespace convserve
