// results.h: what a load run measured, and the thread-safe recorder that gathers it.
//
// A Report holds the settings and one RunResult per load level (each concurrency of a closed
// loop sweep, each rate of an open loop sweep). A RunResult has one CallStats per kind of call
// (health, conv, run_model) and their total, plus a per-second timeline. report.h turns it into
// text, JSON, CSV or HTML. Nothing here knows gRPC: outcomes arrive as status code names.
#ifndef CONVSERVE_BENCH_LOAD_RESULTS_H_
#define CONVSERVE_BENCH_LOAD_RESULTS_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bench/load/histogram.h"

namespace convserve::load {

// The canonical name of gRPC status code `code` ("OK", "DEADLINE_EXCEEDED", ...), or
// "CODE_<n>" for a number gRPC does not define.
std::string StatusCodeName(int code);

// How one call ended.
struct Outcome {
  // Empty for a successful call, else the status code name ("UNAVAILABLE", ...) or a name of
  // the tool's own ("BAD_RESPONSE": OK status but a response that does not parse or has the
  // wrong output size; "NOT_SERVING": a health answer other than SERVING).
  std::string error;
  // From the call's scheduled send time to its completion.
  uint64_t latency_ns = 0;
  // The server's compute_time_ns, or -1 if the response has none (health, errors).
  int64_t compute_ns = -1;
};

// The measured calls of one kind (or of all kinds).
struct CallStats {
  std::string name;
  uint64_t calls = 0;  // ok + errors
  uint64_t ok = 0;
  // Successful calls that completed inside the measuring window, including calls sent during
  // warm-up: throughput is this over the window's length. Kept by Recorder, not by Record.
  uint64_t completed_in_window = 0;
  std::map<std::string, uint64_t> errors;  // by Outcome::error
  Histogram latency;                       // successful calls only
  Histogram compute;                       // server compute time of successful calls with one
  Histogram rest;                          // latency - compute of those calls, clamped at 0

  uint64_t error_count() const { return calls - ok; }
  void Record(const Outcome& outcome);
  void Merge(const CallStats& other);
};

// One second (or the last, shorter interval) of a run's measuring window: the calls that
// completed in it.
struct TimelinePoint {
  double end_seconds = 0;     // since the measuring window opened
  double length_seconds = 0;  // of this interval
  uint64_t calls = 0;
  uint64_t errors = 0;
  uint64_t p50_ns = 0;  // of its successful calls; 0 if none
  uint64_t p99_ns = 0;
};

// One load level.
struct RunResult {
  std::string label;  // "concurrency 8", "rps 200 poisson"
  bool open_loop = false;
  int concurrency = 0;       // closed loop
  double requested_rps = 0;  // open loop
  std::string arrival;       // open loop: constant or poisson
  double warmup_seconds = 0;
  // The measuring window: --duration, or with --requests from its opening to the last measured
  // call's completion. Throughput is the successful calls that completed inside it, per second.
  double window_seconds = 0;
  // Open loop: calls due in the measuring window, and how late the sender sent them (actual
  // send - scheduled time; large values mean the load generator, not the server, fell behind).
  uint64_t scheduled = 0;
  double planned_seconds = 0;  // open loop: the window the calls were due in
  Histogram send_lag;
  CallStats total;
  std::vector<CallStats> by_call;
  std::vector<TimelinePoint> timeline;

  double throughput() const {
    return window_seconds > 0 ? total.completed_in_window / window_seconds : 0;
  }
  // Open loop: calls due per second of the planned window.
  double offered_rps() const { return planned_seconds > 0 ? scheduled / planned_seconds : 0; }
};

struct Report {
  std::string started_utc;  // ISO 8601
  std::string machine;      // CPU model name, if known
  // Settings in the order they are printed: ("target", "127.0.0.1:50051"), ...
  std::vector<std::pair<std::string, std::string>> settings;
  // Each kind of call and what it sends: ("conv", "layer rn50.res2.3x3: ...").
  std::vector<std::pair<std::string, std::string>> calls;
  std::vector<RunResult> runs;

  uint64_t error_count() const;
};

// Gathers outcomes from many threads into one RunResult, and closes a timeline interval each
// time Tick is called. Thread-safe.
class Recorder {
 public:
  explicit Recorder(const std::vector<std::string>& call_names);

  // `measured`: the call was due inside the measuring window (not in warm-up); only those are
  // in the statistics. `in_window`: it completed inside the measuring window; those make the
  // throughput and the timeline.
  void Record(size_t call_index, const Outcome& outcome, bool measured, bool in_window);
  void RecordSendLag(uint64_t lag_ns);

  // What Tick reports about the interval it closes, for the progress line.
  struct Interval {
    uint64_t calls = 0;  // measured or not
    uint64_t errors = 0;
    uint64_t p50_ns = 0;
    uint64_t p99_ns = 0;
    uint64_t measured_calls = 0;  // total so far
    uint64_t measured_errors = 0;
  };
  // Closes the interval since the previous Tick. If `window_seconds` > 0 (the measuring window
  // is open, and has been for that long), appends a TimelinePoint of the calls that completed
  // inside the window in it, `length_seconds` long.
  Interval Tick(double window_seconds, double length_seconds);

  // The totals so far; `result` gets total, by_call, timeline and send_lag.
  void Collect(RunResult* result) const;

 private:
  mutable std::mutex mutex_;
  std::vector<CallStats> by_call_;
  CallStats total_;
  Histogram send_lag_;
  CallStats interval_all_;     // every call since the last Tick
  CallStats interval_window_;  // calls completed inside the window since the last Tick
  std::vector<TimelinePoint> timeline_;
};

}  // namespace convserve::load

#endif  // CONVSERVE_BENCH_LOAD_RESULTS_H_
