// metrics.h: Prometheus metrics: a registry that writes the text exposition format, and the call
// metrics.
//
// MetricsRegistry holds metric families in the order they were added and
// writes them all in Prometheus' text exposition format (version 0.0.4) with
// Render(). Three kinds of family:
//   - counters and histograms the server updates as things happen (one mutex
//     per family: an update is a map lookup and an addition);
//   - families read at scrape time through a callback (AddCallback,
//     AddGauge), for values another object already keeps (the compute pool's
//     queue, the memory budget): the registry stays decoupled from them.
// CallMetrics is the CallObserver that feeds the per-call families
// (convserve_requests_total, the duration histograms, ...).
//
// Thread-safe: updates, Render() and registration may run concurrently.
#ifndef CONVSERVE_SERVER_METRICS_H_
#define CONVSERVE_SERVER_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/call_record.h"

namespace convserve {

// `value` with \ " and newline escaped as \\ \" \n, as a label value must be.
std::string EscapeLabelValue(absl::string_view value);
// `text` with \ and newline escaped as \\ \n, as a HELP line must be.
std::string EscapeHelp(absl::string_view text);
// A sample value: integers without a fraction ("3"), others in the shortest
// form that reads back as the same double ("0.25", "5e-05"), "+Inf", "-Inf", "NaN".
std::string FormatMetricValue(double value);

// The histogram buckets for durations, in seconds: 50 µs to 30 s.
const std::vector<double>& DurationBuckets();

class MetricsRegistry {
 public:
  // Label values, in the order of the family's label names.
  using Labels = std::vector<std::string>;
  using Sample = std::pair<Labels, double>;

  // A family of base class; Render appends its HELP, TYPE and sample lines.
  class Family {
   public:
    Family(std::string name, std::string help, std::string type,
           std::vector<std::string> label_names);
    virtual ~Family() = default;
    void Render(std::string* out) const;
    const std::string& name() const { return name_; }

   protected:
    virtual void RenderSamples(std::string* out) const = 0;
    // Appends `name_suffix{labels...,extra}` then ` value\n`. `extra` is one
    // more label already formatted (`le="0.5"`), or empty.
    void AppendSample(const char* name_suffix, const Labels& labels, absl::string_view extra,
                      double value, std::string* out) const;
    const std::vector<std::string>& label_names() const { return label_names_; }

   private:
    const std::string name_;
    const std::string help_;
    const std::string type_;
    const std::vector<std::string> label_names_;
  };

  // A monotonic counter per label set; a label set appears once incremented.
  class Counter final : public Family {
   public:
    Counter(std::string name, std::string help, std::vector<std::string> label_names);
    // REQUIRES: `labels` has one value per label name; by >= 0.
    void Increment(const Labels& labels, double by = 1);
    // The current value (0 for a label set never incremented); for tests.
    double Value(const Labels& labels) const;

   private:
    void RenderSamples(std::string* out) const override;
    mutable std::mutex mutex_;
    std::map<Labels, double> values_;  // guarded by mutex_
  };

  // Observations counted in buckets of upper bounds `bounds` (and +Inf).
  class Histogram final : public Family {
   public:
    // REQUIRES: `bounds` strictly increasing and finite.
    Histogram(std::string name, std::string help, std::vector<std::string> label_names,
              std::vector<double> bounds);
    // REQUIRES: `labels` has one value per label name.
    void Observe(const Labels& labels, double value);
    // How many observations the label set has had; for tests.
    uint64_t Count(const Labels& labels) const;

   private:
    struct Series {
      std::vector<uint64_t> buckets;  // per bound, not cumulative; [bounds.size()] = above all
      double sum = 0;
      uint64_t count = 0;
    };
    void RenderSamples(std::string* out) const override;
    const std::vector<double> bounds_;
    mutable std::mutex mutex_;
    std::map<Labels, Series> series_;  // guarded by mutex_
  };

  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Adds a family and returns it (owned by the registry, valid as long as
  // it). Names must be valid Prometheus names ([a-zA-Z_:][a-zA-Z0-9_:]*,
  // labels [a-zA-Z_][a-zA-Z0-9_]*) and unique; they are fixed by the code,
  // never taken from a request.
  Counter* AddCounter(std::string name, std::string help, std::vector<std::string> label_names);
  Histogram* AddHistogram(std::string name, std::string help, std::vector<std::string> label_names,
                          std::vector<double> bounds);
  // A family whose samples `read` returns at each Render(); `type` is
  // "gauge" or "counter". `read` runs on the scraping thread and must be
  // thread-safe; its samples must have one value per label name.
  void AddCallback(std::string name, std::string help, std::string type,
                   std::vector<std::string> label_names, std::function<std::vector<Sample>()> read);
  // A gauge without labels, read at each Render().
  void AddGauge(std::string name, std::string help, std::function<double()> read);

  // Every family, in the order added, in the text exposition format.
  std::string Render() const;

 private:
  template <typename T>
  T* Add(std::unique_ptr<T> family);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Family>> families_;  // guarded by mutex_
};

// The per-call families, fed by the calls' CallRecords:
//   convserve_requests_total{method,code}          counter
//   convserve_request_duration_seconds{method}     histogram, arrival to completion
//   convserve_queue_wait_seconds{method}           histogram, waiting for the compute pool
//   convserve_compute_duration_seconds{method}     histogram, running on the compute pool
//   convserve_request_bytes_total{method,direction="in|out"}  counter
//   convserve_inflight_requests                    gauge, started and not completed
// The queue and compute histograms only count calls that reached the compute
// pool (those whose CallRecord has compute_seconds > 0: steady_clock ticks
// in nanoseconds, so a call that ran there never measures 0).
class CallMetrics final : public CallObserver {
 public:
  // Adds the families to `registry`, which must outlive this.
  explicit CallMetrics(MetricsRegistry* registry);

  void OnCallStarted(const char* method) override;
  void OnCallCompleted(const CallRecord& record) override;

  int64_t inflight() const { return inflight_.load(std::memory_order_relaxed); }

 private:
  MetricsRegistry::Counter* const requests_;
  MetricsRegistry::Histogram* const request_duration_;
  MetricsRegistry::Histogram* const queue_wait_;
  MetricsRegistry::Histogram* const compute_duration_;
  MetricsRegistry::Counter* const bytes_;
  std::atomic<int64_t> inflight_{0};
};

// The standard process_* families, read from /proc/self at each scrape:
// process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds,
// process_start_time_seconds, process_threads. A value /proc does not give
// (another OS) is left out rather than reported wrong.
void AddProcessMetrics(MetricsRegistry* registry);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_METRICS_H_
