// results.cc: per-kind call statistics, merging, and the thread-safe recorder.
#include "bench/load/results.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace convserve::load {

std::string StatusCodeName(int code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int>(std::size(kNames))) return kNames[code];
  return absl::StrCat("CODE_", code);
}

void CallStats::Record(const Outcome& outcome) {
  ++calls;
  if (!outcome.error.empty()) {
    ++errors[outcome.error];
    return;
  }
  ++ok;
  latency.Record(outcome.latency_ns);
  if (outcome.compute_ns >= 0) {
    const uint64_t compute = static_cast<uint64_t>(outcome.compute_ns);
    this->compute.Record(compute);
    rest.Record(outcome.latency_ns > compute ? outcome.latency_ns - compute : 0);
  }
}

void CallStats::Merge(const CallStats& other) {
  calls += other.calls;
  ok += other.ok;
  completed_in_window += other.completed_in_window;
  for (const auto& [code, count] : other.errors) errors[code] += count;
  latency.Merge(other.latency);
  compute.Merge(other.compute);
  rest.Merge(other.rest);
}

uint64_t Report::error_count() const {
  uint64_t errors = 0;
  for (const RunResult& run : runs) errors += run.total.error_count();
  return errors;
}

Recorder::Recorder(const std::vector<std::string>& call_names) {
  for (const std::string& name : call_names) {
    by_call_.emplace_back();
    by_call_.back().name = name;
  }
  total_.name = "all";
}

void Recorder::Record(size_t call_index, const Outcome& outcome, bool measured, bool in_window) {
  std::lock_guard<std::mutex> lock(mutex_);
  interval_all_.Record(outcome);
  if (in_window) {
    interval_window_.Record(outcome);
    if (outcome.error.empty()) {
      ++by_call_[call_index].completed_in_window;
      ++total_.completed_in_window;
    }
  }
  if (!measured) return;
  by_call_[call_index].Record(outcome);
  total_.Record(outcome);
}

void Recorder::RecordSendLag(uint64_t lag_ns) {
  std::lock_guard<std::mutex> lock(mutex_);
  send_lag_.Record(lag_ns);
}

Recorder::Interval Recorder::Tick(double window_seconds, double length_seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  Interval interval;
  interval.calls = interval_all_.calls;
  interval.errors = interval_all_.error_count();
  interval.p50_ns = interval_all_.latency.ValueAtPercentile(50);
  interval.p99_ns = interval_all_.latency.ValueAtPercentile(99);
  interval.measured_calls = total_.calls;
  interval.measured_errors = total_.error_count();
  if (window_seconds > 0) {
    TimelinePoint point;
    point.end_seconds = window_seconds;
    point.length_seconds = length_seconds;
    point.calls = interval_window_.calls;
    point.errors = interval_window_.error_count();
    point.p50_ns = interval_window_.latency.ValueAtPercentile(50);
    point.p99_ns = interval_window_.latency.ValueAtPercentile(99);
    timeline_.push_back(point);
  }
  // Reset keeps the histograms' storage: no allocation once per second.
  for (CallStats* stats : {&interval_all_, &interval_window_}) {
    stats->calls = 0;
    stats->ok = 0;
    stats->completed_in_window = 0;
    stats->errors.clear();
    stats->latency.Reset();
    stats->compute.Reset();
    stats->rest.Reset();
  }
  return interval;
}

void Recorder::Collect(RunResult* result) const {
  std::lock_guard<std::mutex> lock(mutex_);
  result->total = total_;
  result->by_call = by_call_;
  result->timeline = timeline_;
  result->send_lag = send_lag_;
}

}  // namespace convserve::load
