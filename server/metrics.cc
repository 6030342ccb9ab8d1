// metrics.cc: the metrics registry, its text exposition, the call metrics and the process metrics.
#include "server/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace convserve {
namespace {

bool IsValidName(absl::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_' ||
                    (allow_colon && c == ':') ||
                    (i > 0 && absl::ascii_isdigit(static_cast<unsigned char>(c)));
    if (!ok) return false;
  }
  return true;
}

// Names are fixed by the code: a bad one is a programming error, caught by
// the tests before it ships.
void CheckNames(absl::string_view name, const std::vector<std::string>& label_names) {
  if (!IsValidName(name, /*allow_colon=*/true)) {
    throw std::invalid_argument(
        absl::StrCat("metric name: expected [a-zA-Z_:][a-zA-Z0-9_:]*, got '", name, "'"));
  }
  for (const std::string& label : label_names) {
    if (!IsValidName(label, /*allow_colon=*/false) || absl::StartsWith(label, "__") ||
        label == "le") {
      throw std::invalid_argument(absl::StrCat(
          name,
          ": label name: expected [a-zA-Z_][a-zA-Z0-9_]*, not starting with __ nor 'le', "
          "got '",
          label, "'"));
    }
  }
}

// A /proc file's whole text, or empty.
std::string ReadProcFile(const char* path) {
  std::ifstream file(path);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// The fields of /proc/self/stat after the command name (which may hold
// spaces and parentheses, hence the last ')'): [0] is field 3 (state).
std::vector<std::string> ProcSelfStatFields() {
  const std::string stat = ReadProcFile("/proc/self/stat");
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return {};
  return absl::StrSplit(absl::string_view(stat).substr(close + 1), ' ', absl::SkipEmpty());
}

// Field `number` (1-based, as proc(5) numbers them) of /proc/self/stat.
bool StatField(const std::vector<std::string>& fields, size_t number, double* value) {
  const size_t index = number - 3;
  if (number < 3 || index >= fields.size()) return false;
  return absl::SimpleAtod(fields[index], value);
}

}  // namespace

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapeHelp(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::trunc(value) && std::fabs(value) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  char buffer[32];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  return buffer;
}

const std::vector<double>& DurationBuckets() {
  static const std::vector<double> buckets = {5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3,
                                              5e-3, 0.01, 0.025,  0.05, 0.1,  0.25,
                                              0.5,  1,    2.5,    5,    10,   30};
  return buckets;
}

// --- Family ---------------------------------------------------------------

MetricsRegistry::Family::Family(std::string name, std::string help, std::string type,
                                std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(std::move(type)),
      label_names_(std::move(label_names)) {
  CheckNames(name_, label_names_);
}

void MetricsRegistry::Family::Render(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name_, " ", EscapeHelp(help_), "\n# TYPE ", name_, " ", type_,
                  "\n");
  RenderSamples(out);
}

void MetricsRegistry::Family::AppendSample(const char* name_suffix, const Labels& labels,
                                           absl::string_view extra, double value,
                                           std::string* out) const {
  absl::StrAppend(out, name_, name_suffix);
  if (!label_names_.empty() || !extra.empty()) {
    out->push_back('{');
    for (size_t i = 0; i < label_names_.size(); ++i) {
      if (i > 0) out->push_back(',');
      absl::StrAppend(out, label_names_[i], "=\"",
                      EscapeLabelValue(i < labels.size() ? labels[i] : ""), "\"");
    }
    if (!extra.empty()) {
      if (!label_names_.empty()) out->push_back(',');
      absl::StrAppend(out, extra);
    }
    out->push_back('}');
  }
  absl::StrAppend(out, " ", FormatMetricValue(value), "\n");
}

// --- Counter --------------------------------------------------------------

MetricsRegistry::Counter::Counter(std::string name, std::string help,
                                  std::vector<std::string> label_names)
    : Family(std::move(name), std::move(help), "counter", std::move(label_names)) {}

void MetricsRegistry::Counter::Increment(const Labels& labels, double by) {
  std::lock_guard<std::mutex> lock(mutex_);
  values_[labels] += by;
}

double MetricsRegistry::Counter::Value(const Labels& labels) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = values_.find(labels);
  return found == values_.end() ? 0 : found->second;
}

void MetricsRegistry::Counter::RenderSamples(std::string* out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [labels, value] : values_) AppendSample("", labels, "", value, out);
}

// --- Histogram ------------------------------------------------------------

MetricsRegistry::Histogram::Histogram(std::string name, std::string help,
                                      std::vector<std::string> label_names,
                                      std::vector<double> bounds)
    : Family(std::move(name), std::move(help), "histogram", std::move(label_names)),
      bounds_(std::move(bounds)) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
      throw std::invalid_argument(absl::StrCat(
          this->name(), ": bucket bounds: expected finite and strictly increasing, got ",
          FormatMetricValue(bounds_[i]), " at index ", i));
    }
  }
}

void MetricsRegistry::Histogram::Observe(const Labels& labels, double value) {
  // The first bound >= value: Prometheus buckets count value <= le.
  size_t bucket = 0;
  while (bucket < bounds_.size() && value > bounds_[bucket]) ++bucket;
  std::lock_guard<std::mutex> lock(mutex_);
  Series& series = series_[labels];
  if (series.buckets.empty()) series.buckets.assign(bounds_.size() + 1, 0);
  ++series.buckets[bucket];
  series.sum += value;
  ++series.count;
}

uint64_t MetricsRegistry::Histogram::Count(const Labels& labels) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = series_.find(labels);
  return found == series_.end() ? 0 : found->second.count;
}

void MetricsRegistry::Histogram::RenderSamples(std::string* out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [labels, series] : series_) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += series.buckets[i];
      AppendSample("_bucket", labels, absl::StrCat("le=\"", FormatMetricValue(bounds_[i]), "\""),
                   static_cast<double>(cumulative), out);
    }
    AppendSample("_bucket", labels, "le=\"+Inf\"", static_cast<double>(series.count), out);
    AppendSample("_sum", labels, "", series.sum, out);
    AppendSample("_count", labels, "", static_cast<double>(series.count), out);
  }
}

// --- Callback families ----------------------------------------------------

namespace {

class CallbackFamily final : public MetricsRegistry::Family {
 public:
  CallbackFamily(std::string name, std::string help, std::string type,
                 std::vector<std::string> label_names,
                 std::function<std::vector<MetricsRegistry::Sample>()> read)
      : Family(std::move(name), std::move(help), std::move(type), std::move(label_names)),
        read_(std::move(read)) {}

 private:
  void RenderSamples(std::string* out) const override {
    for (const MetricsRegistry::Sample& sample : read_()) {
      AppendSample("", sample.first, "", sample.second, out);
    }
  }
  const std::function<std::vector<MetricsRegistry::Sample>()> read_;
};

}  // namespace

// --- Registry -------------------------------------------------------------

template <typename T>
T* MetricsRegistry::Add(std::unique_ptr<T> family) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& existing : families_) {
    if (existing->name() == family->name()) {
      throw std::invalid_argument(
          absl::StrCat("metric name: '", family->name(), "' is already registered"));
    }
  }
  T* added = family.get();
  families_.push_back(std::move(family));
  return added;
}

MetricsRegistry::Counter* MetricsRegistry::AddCounter(std::string name, std::string help,
                                                      std::vector<std::string> label_names) {
  return Add(std::make_unique<Counter>(std::move(name), std::move(help), std::move(label_names)));
}

MetricsRegistry::Histogram* MetricsRegistry::AddHistogram(std::string name, std::string help,
                                                          std::vector<std::string> label_names,
                                                          std::vector<double> bounds) {
  return Add(std::make_unique<Histogram>(std::move(name), std::move(help), std::move(label_names),
                                         std::move(bounds)));
}

void MetricsRegistry::AddCallback(std::string name, std::string help, std::string type,
                                  std::vector<std::string> label_names,
                                  std::function<std::vector<Sample>()> read) {
  if (type != "gauge" && type != "counter") {
    throw std::invalid_argument(
        absl::StrCat(name, ": type: expected gauge or counter, got '", type, "'"));
  }
  Add(std::make_unique<CallbackFamily>(std::move(name), std::move(help), std::move(type),
                                       std::move(label_names), std::move(read)));
}

void MetricsRegistry::AddGauge(std::string name, std::string help, std::function<double()> read) {
  AddCallback(std::move(name), std::move(help), "gauge", {},
              [read = std::move(read)]() -> std::vector<Sample> {
                return {{{}, read()}};
              });
}

std::string MetricsRegistry::Render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  for (const auto& family : families_) family->Render(&out);
  return out;
}

// --- CallMetrics ----------------------------------------------------------

CallMetrics::CallMetrics(MetricsRegistry* registry)
    : requests_(registry->AddCounter("convserve_requests_total",
                                     "ConvService calls completed, by method and gRPC status code.",
                                     {"method", "code"})),
      request_duration_(
          registry->AddHistogram("convserve_request_duration_seconds",
                                 "Time from a call's arrival to its completion, in seconds.",
                                 {"method"}, DurationBuckets())),
      queue_wait_(registry->AddHistogram(
          "convserve_queue_wait_seconds",
          "Time calls that ran on the compute pool waited for it, in seconds.", {"method"},
          DurationBuckets())),
      compute_duration_(registry->AddHistogram(
          "convserve_compute_duration_seconds",
          "Time calls that ran on the compute pool spent running there, in seconds.", {"method"},
          DurationBuckets())),
      bytes_(registry->AddCounter("convserve_request_bytes_total",
                                  "Serialized message bytes of completed calls: in = requests, "
                                  "out = responses (0 for a failed call).",
                                  {"method", "direction"})) {
  registry->AddGauge("convserve_inflight_requests",
                     "ConvService calls that have arrived and not completed yet.",
                     [this] { return static_cast<double>(inflight()); });
}

void CallMetrics::OnCallStarted(const char* method) {
  (void)method;
  inflight_.fetch_add(1, std::memory_order_relaxed);
}

void CallMetrics::OnCallCompleted(const CallRecord& record) {
  inflight_.fetch_sub(1, std::memory_order_relaxed);
  const std::string method = record.method;
  requests_->Increment({method, absl::StatusCodeToString(record.code)});
  request_duration_->Observe({method}, record.total_seconds);
  if (record.compute_seconds > 0) {
    queue_wait_->Observe({method}, record.queue_seconds);
    compute_duration_->Observe({method}, record.compute_seconds);
  }
  bytes_->Increment({method, "in"}, static_cast<double>(record.request_bytes));
  bytes_->Increment({method, "out"}, static_cast<double>(record.response_bytes));
}

// --- Process metrics ------------------------------------------------------

void AddProcessMetrics(MetricsRegistry* registry) {
  using Samples = std::vector<MetricsRegistry::Sample>;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page_bytes = static_cast<double>(sysconf(_SC_PAGESIZE));
  // One stat field as a family of at most one sample.
  const auto stat_field = [](size_t number, double scale) {
    return [number, scale]() -> Samples {
      double value = 0;
      if (!StatField(ProcSelfStatFields(), number, &value)) return {};
      return {{{}, value * scale}};
    };
  };
  registry->AddCallback(
      "process_cpu_seconds_total", "Total user and system CPU time spent, in seconds.", "counter",
      {}, [ticks]() -> Samples {
        const std::vector<std::string> fields = ProcSelfStatFields();
        double user = 0;
        double system = 0;
        if (ticks <= 0 || !StatField(fields, 14, &user) || !StatField(fields, 15, &system)) {
          return {};
        }
        return {{{}, (user + system) / ticks}};
      });
  registry->AddCallback("process_resident_memory_bytes", "Resident memory size, in bytes.", "gauge",
                        {}, stat_field(24, page_bytes));
  registry->AddCallback("process_virtual_memory_bytes", "Virtual memory size, in bytes.", "gauge",
                        {}, stat_field(23, 1));
  registry->AddCallback("process_threads", "Threads of the process.", "gauge", {},
                        stat_field(20, 1));
  registry->AddCallback("process_open_fds", "Open file descriptors.", "gauge", {}, []() -> Samples {
    DIR* directory = opendir("/proc/self/fd");
    if (directory == nullptr) return {};
    double count = 0;
    while (const dirent* entry = readdir(directory)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(directory);
    return {{{}, count - 1}};  // less the directory's own descriptor
  });
  registry->AddCallback(
      "process_max_fds", "The limit of open file descriptors.", "gauge", {}, []() -> Samples {
        rlimit limit{};
        if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
          return {};
        }
        return {{{}, static_cast<double>(limit.rlim_cur)}};
      });
  // Field 22 is the start in clock ticks after boot; /proc/stat's btime is
  // the boot in seconds since the epoch. Both are fixed: read once.
  double start_seconds = -1;
  {
    double start_ticks = 0;
    double boot = 0;
    std::istringstream stat(ReadProcFile("/proc/stat"));
    std::string line;
    while (std::getline(stat, line)) {
      if (absl::StartsWith(line, "btime ") && absl::SimpleAtod(line.substr(6), &boot)) break;
    }
    if (ticks > 0 && boot > 0 && StatField(ProcSelfStatFields(), 22, &start_ticks)) {
      start_seconds = boot + start_ticks / ticks;
    }
  }
  registry->AddCallback("process_start_time_seconds",
                        "Start time of the process since the Unix epoch, in seconds.", "gauge", {},
                        [start_seconds]() -> Samples {
                          if (start_seconds < 0) return {};
                          return {{{}, start_seconds}};
                        });
}

}  // namespace convserve
