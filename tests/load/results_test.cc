// results_test.cc: counting calls and errors by status code, and the per-second recorder.
#include "bench/load/results.h"

#include <gtest/gtest.h>

#include "absl/status/status.h"

namespace convserve::load {
namespace {

Outcome Ok(uint64_t latency_ns, int64_t compute_ns = -1) {
  return Outcome{"", latency_ns, compute_ns};
}
Outcome Failed(const std::string& code, uint64_t latency_ns = 1000) {
  return Outcome{code, latency_ns, -1};
}

TEST(LoadStatusCodeNameTest, CanonicalNames) {
  for (int code = 0; code <= 16; ++code) {
    EXPECT_EQ(StatusCodeName(code), absl::StatusCodeToString(static_cast<absl::StatusCode>(code)))
        << code;
  }
  EXPECT_EQ(StatusCodeName(99), "CODE_99");
  EXPECT_EQ(StatusCodeName(-1), "CODE_-1");
}

TEST(LoadCallStatsTest, CountsErrorsByCodeAndLatencyOfSuccessesOnly) {
  CallStats stats;
  for (int i = 0; i < 5; ++i) stats.Record(Ok(2000000, 1500000));
  for (int i = 0; i < 3; ++i) stats.Record(Ok(3000000));
  stats.Record(Failed("DEADLINE_EXCEEDED", 10000000000));
  stats.Record(Failed("DEADLINE_EXCEEDED"));
  stats.Record(Failed("UNAVAILABLE"));
  EXPECT_EQ(stats.calls, 11u);
  EXPECT_EQ(stats.ok, 8u);
  EXPECT_EQ(stats.error_count(), 3u);
  EXPECT_EQ(stats.errors.size(), 2u);
  EXPECT_EQ(stats.errors.at("DEADLINE_EXCEEDED"), 2u);
  EXPECT_EQ(stats.errors.at("UNAVAILABLE"), 1u);
  EXPECT_EQ(stats.latency.count(), 8u);
  EXPECT_EQ(stats.latency.max(), 3000000u);  // the 10 s deadline is not a latency
  EXPECT_EQ(stats.compute.count(), 5u);
  EXPECT_EQ(stats.compute.min(), 1500000u);
  EXPECT_EQ(stats.rest.count(), 5u);
  EXPECT_EQ(stats.rest.min(), 500000u);
  EXPECT_EQ(stats.rest.max(), 500000u);
}

TEST(LoadCallStatsTest, RestIsClampedAtZero) {
  CallStats stats;
  stats.Record(Ok(1000, 5000));  // clocks of two machines: compute may exceed the latency
  EXPECT_EQ(stats.rest.max(), 0u);
}

TEST(LoadCallStatsTest, MergeAddsCountsAndCodes) {
  CallStats a, b;
  a.Record(Ok(10));
  a.Record(Failed("UNAVAILABLE"));
  b.Record(Failed("UNAVAILABLE"));
  b.Record(Failed("INTERNAL"));
  b.Record(Ok(20, 5));
  a.Merge(b);
  EXPECT_EQ(a.calls, 5u);
  EXPECT_EQ(a.ok, 2u);
  EXPECT_EQ(a.errors.at("UNAVAILABLE"), 2u);
  EXPECT_EQ(a.errors.at("INTERNAL"), 1u);
  EXPECT_EQ(a.latency.count(), 2u);
  EXPECT_EQ(a.compute.count(), 1u);
}

TEST(LoadRecorderTest, OnlyMeasuredCallsMakeTheStatistics) {
  Recorder recorder({"health", "conv"});
  recorder.Record(0, Ok(100), /*measured=*/false, /*in_window=*/false);  // warm-up
  recorder.Record(1, Ok(200), /*measured=*/false, /*in_window=*/true);   // warm-up, late
  recorder.Record(1, Ok(300, 50), /*measured=*/true, /*in_window=*/true);
  recorder.Record(1, Failed("RESOURCE_EXHAUSTED"), true, true);
  recorder.Record(0, Ok(400), /*measured=*/true, /*in_window=*/false);  // after the window
  RunResult result;
  recorder.Collect(&result);
  EXPECT_EQ(result.total.calls, 3u);
  EXPECT_EQ(result.total.ok, 2u);
  EXPECT_EQ(result.total.errors.at("RESOURCE_EXHAUSTED"), 1u);
  ASSERT_EQ(result.by_call.size(), 2u);
  EXPECT_EQ(result.by_call[0].name, "health");
  EXPECT_EQ(result.by_call[0].calls, 1u);
  EXPECT_EQ(result.by_call[1].calls, 2u);
  EXPECT_EQ(result.by_call[1].error_count(), 1u);
  // Throughput counts successful completions inside the window, whenever they were sent.
  EXPECT_EQ(result.total.completed_in_window, 2u);
  EXPECT_EQ(result.by_call[1].completed_in_window, 2u);
  EXPECT_EQ(result.by_call[0].completed_in_window, 0u);
  result.window_seconds = 0.5;
  EXPECT_DOUBLE_EQ(result.throughput(), 4.0);
}

TEST(LoadRecorderTest, TicksCloseIntervalsAndBuildTheTimeline) {
  Recorder recorder({"health"});
  recorder.Record(0, Ok(1000), false, false);
  Recorder::Interval warmup = recorder.Tick(/*window_seconds=*/0, /*length_seconds=*/0);
  EXPECT_EQ(warmup.calls, 1u);
  for (int i = 0; i < 9; ++i) recorder.Record(0, Ok(2000), true, true);
  recorder.Record(0, Failed("UNAVAILABLE"), true, true);
  Recorder::Interval first = recorder.Tick(1.0, 1.0);
  EXPECT_EQ(first.calls, 10u);
  EXPECT_EQ(first.errors, 1u);
  EXPECT_EQ(first.p50_ns, 2000u);
  EXPECT_EQ(first.measured_calls, 10u);
  recorder.Record(0, Ok(4000), true, true);
  Recorder::Interval second = recorder.Tick(1.5, 0.5);
  EXPECT_EQ(second.calls, 1u);  // the interval restarted
  EXPECT_EQ(second.measured_calls, 11u);
  RunResult result;
  recorder.Collect(&result);
  ASSERT_EQ(result.timeline.size(), 2u);  // none for the warm-up tick
  EXPECT_EQ(result.timeline[0].calls, 10u);
  EXPECT_EQ(result.timeline[0].errors, 1u);
  EXPECT_EQ(result.timeline[0].p99_ns, 2000u);
  EXPECT_DOUBLE_EQ(result.timeline[1].end_seconds, 1.5);
  EXPECT_DOUBLE_EQ(result.timeline[1].length_seconds, 0.5);
  EXPECT_EQ(result.timeline[1].p50_ns, 4000u);
}

TEST(LoadResultsTest, ErrorCountSumsRuns) {
  Report report;
  report.runs.resize(2);
  report.runs[0].total.Record(Failed("UNAVAILABLE"));
  report.runs[1].total.Record(Failed("INTERNAL"));
  report.runs[1].total.Record(Ok(1));
  EXPECT_EQ(report.error_count(), 2u);
}

}  // namespace
}  // namespace convserve::load
