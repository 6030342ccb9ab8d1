// report.cc: text, JSON, CSV and HTML (inline SVG) renderings of a load Report.
#include "bench/load/report.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace convserve::load {
namespace {

// The percentiles every report shows, with their labels.
struct Percentile {
  double value;
  const char* text;  // column title
  const char* key;   // JSON key / CSV column stem
};
constexpr Percentile kPercentiles[] = {{50, "p50", "p50"},
                                       {90, "p90", "p90"},
                                       {95, "p95", "p95"},
                                       {99, "p99", "p99"},
                                       {99.9, "p99.9", "p99_9"}};

double Ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }
double Us(uint64_t ns) { return static_cast<double>(ns) / 1e3; }

std::string ErrorsByCode(const CallStats& stats, const char* pair_separator,
                         const char* list_separator) {
  std::vector<std::string> parts;
  for (const auto& [code, count] : stats.errors) {
    parts.push_back(absl::StrCat(code, pair_separator, count));
  }
  return absl::StrJoin(parts, list_separator);
}

// "DEADLINE_EXCEEDED 3, UNAVAILABLE 3", then per kind of call when there are several:
// " (health: UNAVAILABLE 3; conv: DEADLINE_EXCEEDED 3)".
std::string ErrorsDetail(const RunResult& run) {
  std::string out = ErrorsByCode(run.total, " ", ", ");
  if (run.by_call.size() > 1) {
    std::vector<std::string> parts;
    for (const CallStats& stats : run.by_call) {
      if (stats.error_count() > 0) {
        parts.push_back(absl::StrCat(stats.name, ": ", ErrorsByCode(stats, " ", ", ")));
      }
    }
    absl::StrAppend(&out, " (", absl::StrJoin(parts, "; "), ")");
  }
  return out;
}

std::string RunHeading(const RunResult& run) {
  if (run.open_loop) {
    return absl::StrFormat("open loop, %s arrivals at %g calls/s", run.arrival, run.requested_rps);
  }
  return absl::StrFormat("closed loop, concurrency %d", run.concurrency);
}

std::string RunMode(const RunResult& run) { return run.open_loop ? "open" : "closed"; }

// --- text --------------------------------------------------------------------------------

std::string LatencyRow(const std::string& label, const Histogram& histogram) {
  std::string row = absl::StrFormat("  %-26s %9.3f", label, Ms(histogram.min()));
  for (const Percentile& p : kPercentiles) {
    absl::StrAppendFormat(&row, " %9.3f", Ms(histogram.ValueAtPercentile(p.value)));
  }
  absl::StrAppendFormat(&row, " %9.3f %9.3f\n", Ms(histogram.max()), histogram.mean() / 1e6);
  return row;
}

std::string TextRun(const RunResult& run) {
  std::string out =
      absl::StrFormat("\n== %s: %.2f s measured", RunHeading(run), run.window_seconds);
  if (run.warmup_seconds > 0)
    absl::StrAppendFormat(&out, " after %g s warm-up", run.warmup_seconds);
  out += " ==\n";
  absl::StrAppendFormat(&out, "  calls %d, ok %d, errors %d; throughput %.1f calls/s\n",
                        run.total.calls, run.total.ok, run.total.error_count(), run.throughput());
  if (run.open_loop) {
    absl::StrAppendFormat(
        &out,
        "  due %d (%.1f calls/s offered over %.2f s); send lag behind schedule p50 %.3f ms, "
        "p99 %.3f ms, max %.3f ms\n",
        run.scheduled, run.offered_rps(), run.planned_seconds,
        Ms(run.send_lag.ValueAtPercentile(50)), Ms(run.send_lag.ValueAtPercentile(99)),
        Ms(run.send_lag.max()));
  }
  if (run.total.error_count() > 0) {
    absl::StrAppend(&out, "  errors by code: ", ErrorsDetail(run), "\n");
  }
  absl::StrAppendFormat(&out, "  %-26s %9s", "latency (ms)", "min");
  for (const Percentile& p : kPercentiles) absl::StrAppendFormat(&out, " %9s", p.text);
  absl::StrAppendFormat(&out, " %9s %9s\n", "max", "mean");
  if (run.total.ok > 0) out += LatencyRow("all", run.total.latency);
  for (const CallStats& stats : run.by_call) {
    if (run.by_call.size() > 1 && stats.ok > 0) out += LatencyRow(stats.name, stats.latency);
  }
  for (const CallStats& stats : run.by_call) {
    if (stats.compute.count() == 0) continue;
    out += LatencyRow(stats.name + " server compute", stats.compute);
    out += LatencyRow(stats.name + " rest", stats.rest);
  }
  for (const CallStats& stats : run.by_call) {
    if (stats.compute.count() == 0 || stats.latency.mean() <= 0) continue;
    absl::StrAppendFormat(&out,
                          "  %s: the server's compute is %.1f %% of the mean latency; the rest "
                          "(transport, queueing, (de)serialization) %.3f ms a call\n",
                          stats.name, 100.0 * stats.compute.mean() / stats.latency.mean(),
                          stats.rest.mean() / 1e6);
  }
  return out;
}

// --- JSON --------------------------------------------------------------------------------

nlohmann::json PercentilesJson(const Histogram& histogram) {
  nlohmann::json out = nlohmann::json::object();
  out["count"] = histogram.count();
  out["min"] = Us(histogram.min());
  for (const Percentile& p : kPercentiles) out[p.key] = Us(histogram.ValueAtPercentile(p.value));
  out["max"] = Us(histogram.max());
  out["mean"] = histogram.mean() / 1e3;
  return out;
}

nlohmann::json StatsJson(const CallStats& stats, double window_seconds, bool with_buckets) {
  nlohmann::json out;
  out["name"] = stats.name;
  out["calls"] = stats.calls;
  out["ok"] = stats.ok;
  out["errors"] = stats.error_count();
  out["errors_by_code"] = nlohmann::json::object();
  for (const auto& [code, count] : stats.errors) out["errors_by_code"][code] = count;
  out["completed_in_window"] = stats.completed_in_window;
  out["throughput_per_s"] = window_seconds > 0 ? stats.completed_in_window / window_seconds : 0.0;
  out["latency_us"] = PercentilesJson(stats.latency);
  if (stats.compute.count() > 0) {
    out["server_compute_us"] = PercentilesJson(stats.compute);
    out["rest_us"] = PercentilesJson(stats.rest);
  }
  if (with_buckets) {
    nlohmann::json buckets = nlohmann::json::array();
    for (const Histogram::Bucket& bucket : stats.latency.Buckets()) {
      buckets.push_back({bucket.lower, bucket.upper, bucket.count});
    }
    out["latency_histogram_ns"] = std::move(buckets);  // [lower, upper (inclusive), count]
  }
  return out;
}

// --- CSV ---------------------------------------------------------------------------------

std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

std::string CsvRow(const RunResult& run, const CallStats& stats) {
  std::vector<std::string> fields = {
      CsvField(run.label),
      RunMode(run),
      run.open_loop ? "" : absl::StrCat(run.concurrency),
      run.open_loop ? absl::StrFormat("%g", run.requested_rps) : "",
      run.open_loop ? run.arrival : "",
      CsvField(stats.name),
      absl::StrCat(stats.calls),
      absl::StrCat(stats.ok),
      absl::StrCat(stats.error_count()),
      absl::StrFormat(
          "%.3f", run.window_seconds > 0 ? stats.completed_in_window / run.window_seconds : 0.0),
      absl::StrFormat("%.1f", Us(stats.latency.min()))};
  for (const Percentile& p : kPercentiles) {
    fields.push_back(absl::StrFormat("%.1f", Us(stats.latency.ValueAtPercentile(p.value))));
  }
  fields.push_back(absl::StrFormat("%.1f", Us(stats.latency.max())));
  fields.push_back(absl::StrFormat("%.1f", stats.latency.mean() / 1e3));
  const bool compute = stats.compute.count() > 0;
  fields.push_back(compute ? absl::StrFormat("%.1f", Us(stats.compute.ValueAtPercentile(50))) : "");
  fields.push_back(compute ? absl::StrFormat("%.1f", stats.compute.mean() / 1e3) : "");
  fields.push_back(compute ? absl::StrFormat("%.1f", Us(stats.rest.ValueAtPercentile(50))) : "");
  fields.push_back(compute ? absl::StrFormat("%.1f", stats.rest.mean() / 1e3) : "");
  fields.push_back(CsvField(ErrorsByCode(stats, "=", ";")));
  return absl::StrJoin(fields, ",") + "\n";
}

// --- HTML --------------------------------------------------------------------------------

std::string Escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A unit for durations up to `max_ns`: the divisor and its name.
std::pair<double, const char*> TimeUnit(uint64_t max_ns) {
  if (max_ns >= 10'000'000'000ULL) return {1e9, "s"};
  if (max_ns >= 10'000'000ULL) return {1e6, "ms"};
  return {1e3, "us"};
}

// Round tick steps: 1, 2 or 5 times a power of ten, about `count` of them up to `max`.
double TickStep(double max, int count) {
  if (!(max > 0)) return 1;
  const double raw = max / count;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

std::string Number(double value) { return absl::StrFormat("%.6g", value); }

// An SVG plot area with axes; x linear or log10, y linear from 0.
class Chart {
 public:
  static constexpr double kWidth = 720, kHeight = 260;
  static constexpr double kLeft = 70, kRight = 20, kTop = 30, kBottom = 45;

  Chart(std::string title, double x_min, double x_max, bool log_x, double y_max)
      : title_(std::move(title)), x_min_(x_min), x_max_(x_max), log_x_(log_x), y_max_(y_max) {
    if (!(x_max_ > x_min_)) x_max_ = x_min_ + 1;
    if (!(y_max_ > 0)) y_max_ = 1;
  }

  double X(double x) const {
    const double fraction =
        log_x_ ? (std::log10(x) - std::log10(x_min_)) / (std::log10(x_max_) - std::log10(x_min_))
               : (x - x_min_) / (x_max_ - x_min_);
    return kLeft + fraction * (kWidth - kLeft - kRight);
  }
  double Y(double y) const { return kHeight - kBottom - y / y_max_ * (kHeight - kTop - kBottom); }

  void Add(const std::string& element) { body_ += element; }

  void Polyline(const std::vector<std::pair<double, double>>& points, const char* color) {
    if (points.empty()) return;
    std::string coordinates;
    for (const auto& [x, y] : points)
      absl::StrAppend(&coordinates, Number(X(x)), ",", Number(Y(y)), " ");
    absl::StrAppend(&body_, "<polyline fill=\"none\" stroke=\"", color,
                    "\" stroke-width=\"1.5\" points=\"", coordinates, "\"/>\n");
    for (const auto& [x, y] : points) {
      absl::StrAppend(&body_, "<circle cx=\"", Number(X(x)), "\" cy=\"", Number(Y(y)),
                      "\" r=\"2\" fill=\"", color, "\"/>\n");
    }
  }

  void Legend(const std::vector<std::pair<std::string, const char*>>& entries) {
    double x = kWidth - kRight - 110.0 * entries.size();
    for (const auto& [name, color] : entries) {
      absl::StrAppend(&body_, "<rect x=\"", Number(x),
                      "\" y=\"8\" width=\"12\" height=\"12\" fill=\"", color, "\"/><text x=\"",
                      Number(x + 16), "\" y=\"18\">", Escape(name), "</text>\n");
      x += 110;
    }
  }

  std::string Svg(const std::string& x_label, const std::string& y_label) const {
    std::string svg = absl::StrFormat(
        "<svg width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" role=\"img\" "
        "font-family=\"sans-serif\" font-size=\"11\">\n<title>%s</title>\n",
        kWidth, kHeight, kWidth, kHeight, Escape(title_));
    absl::StrAppendFormat(
        &svg, "<text x=\"%g\" y=\"18\" font-size=\"13\" font-weight=\"bold\">%s</text>\n", kLeft,
        Escape(title_));
    // Axes.
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#333\"/>\n"
                          "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#333\"/>\n",
                          kLeft, kTop, kLeft, kHeight - kBottom, kLeft, kHeight - kBottom,
                          kWidth - kRight, kHeight - kBottom);
    // y ticks.
    const double y_step = TickStep(y_max_, 5);
    for (double y = 0; y <= y_max_ * 1.0001; y += y_step) {
      absl::StrAppendFormat(&svg,
                            "<line x1=\"%g\" y1=\"%s\" x2=\"%g\" y2=\"%s\" stroke=\"#ddd\"/>"
                            "<text x=\"%g\" y=\"%s\" text-anchor=\"end\">%s</text>\n",
                            kLeft, Number(Y(y)), kWidth - kRight, Number(Y(y)), kLeft - 5,
                            Number(Y(y) + 4), Number(y));
    }
    // x ticks.
    std::vector<double> x_ticks;
    if (log_x_) {
      for (double decade = std::pow(10.0, std::floor(std::log10(x_min_))); decade <= x_max_;
           decade *= 10) {
        for (double m : {1.0, 2.0, 5.0}) {
          if (m * decade >= x_min_ && m * decade <= x_max_) x_ticks.push_back(m * decade);
        }
      }
    } else {
      const double step = TickStep(x_max_ - x_min_, 8);
      for (double x = std::ceil(x_min_ / step) * step; x <= x_max_ * 1.0001; x += step) {
        x_ticks.push_back(x);
      }
    }
    for (double x : x_ticks) {
      absl::StrAppendFormat(&svg,
                            "<line x1=\"%s\" y1=\"%g\" x2=\"%s\" y2=\"%g\" stroke=\"#333\"/>"
                            "<text x=\"%s\" y=\"%g\" text-anchor=\"middle\">%s</text>\n",
                            Number(X(x)), kHeight - kBottom, Number(X(x)), kHeight - kBottom + 4,
                            Number(X(x)), kHeight - kBottom + 16, Number(x));
    }
    absl::StrAppendFormat(&svg,
                          "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%s</text>\n"
                          "<text x=\"14\" y=\"%g\" text-anchor=\"middle\" "
                          "transform=\"rotate(-90 14 %g)\">%s</text>\n",
                          (kLeft + kWidth - kRight) / 2, kHeight - 8, Escape(x_label),
                          (kTop + kHeight - kBottom) / 2, (kTop + kHeight - kBottom) / 2,
                          Escape(y_label));
    return svg + body_ + "</svg>\n";
  }

 private:
  std::string title_;
  double x_min_, x_max_;
  bool log_x_;
  double y_max_;
  std::string body_;
};

// Latency histogram: the log-linear buckets regrouped into 60 bins of equal width on a log
// axis, with p50, p99 and p99.9 marked.
std::string HistogramSvg(const CallStats& stats) {
  const Histogram& latency = stats.latency;
  const auto [divisor, unit] = TimeUnit(latency.max());
  const double low = std::max(1.0, static_cast<double>(latency.min())) * 0.97;
  const double high = std::max(low * 1.1, static_cast<double>(latency.max()) * 1.03);
  constexpr int kBins = 60;
  std::vector<uint64_t> bins(kBins, 0);
  const double log_low = std::log10(low), log_high = std::log10(high);
  for (const Histogram::Bucket& bucket : latency.Buckets()) {
    const double middle = std::clamp(
        (static_cast<double>(bucket.lower) + static_cast<double>(bucket.upper)) / 2, low, high);
    const int bin =
        std::clamp(static_cast<int>((std::log10(middle) - log_low) / (log_high - log_low) * kBins),
                   0, kBins - 1);
    bins[static_cast<size_t>(bin)] += bucket.count;
  }
  const uint64_t tallest = *std::max_element(bins.begin(), bins.end());
  Chart chart(absl::StrCat("Latency histogram (", stats.ok, " successful calls)"), low / divisor,
              high / divisor, /*log_x=*/true, static_cast<double>(tallest) * 1.1);
  for (int i = 0; i < kBins; ++i) {
    if (bins[static_cast<size_t>(i)] == 0) continue;
    const double x0 = std::pow(10.0, log_low + (log_high - log_low) * i / kBins) / divisor;
    const double x1 = std::pow(10.0, log_low + (log_high - log_low) * (i + 1) / kBins) / divisor;
    const double count = static_cast<double>(bins[static_cast<size_t>(i)]);
    chart.Add(absl::StrCat("<rect x=\"", Number(chart.X(x0)), "\" y=\"", Number(chart.Y(count)),
                           "\" width=\"", Number(std::max(1.0, chart.X(x1) - chart.X(x0) - 1)),
                           "\" height=\"", Number(chart.Y(0) - chart.Y(count)),
                           "\" fill=\"#4c78a8\"><title>", Number(x0), "-", Number(x1), " ", unit,
                           ": ", bins[static_cast<size_t>(i)], " calls</title></rect>\n"));
  }
  const std::pair<double, const char*> marks[] = {{50, "p50"}, {99, "p99"}, {99.9, "p99.9"}};
  for (const auto& [percentile, name] : marks) {
    const double x = chart.X(static_cast<double>(latency.ValueAtPercentile(percentile)) / divisor);
    chart.Add(absl::StrCat("<line x1=\"", Number(x), "\" y1=\"", Number(Chart::kTop), "\" x2=\"",
                           Number(x), "\" y2=\"", Number(chart.Y(0)),
                           "\" stroke=\"#e45756\" stroke-dasharray=\"4 3\"/><text x=\"",
                           Number(x + 3), "\" y=\"", Number(Chart::kTop + 10),
                           "\" fill=\"#e45756\">", name, "</text>\n"));
  }
  return chart.Svg(absl::StrCat("latency (", unit, ", log scale)"), "calls");
}

std::string LatencyOverTimeSvg(const RunResult& run) {
  uint64_t highest = 0;
  double last = 0;
  for (const TimelinePoint& point : run.timeline) {
    highest = std::max(highest, point.p99_ns);
    last = std::max(last, point.end_seconds);
  }
  const auto [divisor, unit] = TimeUnit(highest);
  Chart chart("Latency per second", 0, last, /*log_x=*/false,
              static_cast<double>(highest) / divisor * 1.1);
  std::vector<std::pair<double, double>> p50, p99;
  for (const TimelinePoint& point : run.timeline) {
    if (point.calls == point.errors) continue;  // no successful call: no latency
    p50.emplace_back(point.end_seconds, static_cast<double>(point.p50_ns) / divisor);
    p99.emplace_back(point.end_seconds, static_cast<double>(point.p99_ns) / divisor);
  }
  chart.Polyline(p99, "#f58518");
  chart.Polyline(p50, "#4c78a8");
  chart.Legend({{"p50", "#4c78a8"}, {"p99", "#f58518"}});
  return chart.Svg("seconds into the measuring window", absl::StrCat("latency (", unit, ")"));
}

std::string ThroughputOverTimeSvg(const RunResult& run) {
  double highest = 0, last = 0;
  std::vector<std::pair<double, double>> ok, errors;
  for (const TimelinePoint& point : run.timeline) {
    if (point.length_seconds <= 0) continue;
    const double ok_rate = (point.calls - point.errors) / point.length_seconds;
    const double error_rate = point.errors / point.length_seconds;
    highest = std::max({highest, ok_rate, error_rate});
    last = std::max(last, point.end_seconds);
    ok.emplace_back(point.end_seconds, ok_rate);
    errors.emplace_back(point.end_seconds, error_rate);
  }
  Chart chart("Throughput per second", 0, last, /*log_x=*/false, highest * 1.1);
  chart.Polyline(ok, "#54a24b");
  if (run.total.error_count() > 0) {
    chart.Polyline(errors, "#e45756");
    chart.Legend({{"successful", "#54a24b"}, {"errors", "#e45756"}});
  } else {
    chart.Legend({{"successful", "#54a24b"}});
  }
  return chart.Svg("seconds into the measuring window", "calls/s");
}

std::string HtmlLatencyTable(const RunResult& run) {
  std::string out = "<table>\n<tr><th>latency (ms)</th><th>min</th>";
  for (const Percentile& p : kPercentiles) absl::StrAppend(&out, "<th>", p.text, "</th>");
  out += "<th>max</th><th>mean</th></tr>\n";
  auto row = [&out](const std::string& label, const Histogram& histogram) {
    absl::StrAppend(&out, "<tr><td>", Escape(label), "</td><td>",
                    absl::StrFormat("%.3f", Ms(histogram.min())), "</td>");
    for (const Percentile& p : kPercentiles) {
      absl::StrAppend(&out, "<td>",
                      absl::StrFormat("%.3f", Ms(histogram.ValueAtPercentile(p.value))), "</td>");
    }
    absl::StrAppend(&out, "<td>", absl::StrFormat("%.3f", Ms(histogram.max())), "</td><td>",
                    absl::StrFormat("%.3f", histogram.mean() / 1e6), "</td></tr>\n");
  };
  if (run.total.ok > 0) row("all", run.total.latency);
  for (const CallStats& stats : run.by_call) {
    if (run.by_call.size() > 1 && stats.ok > 0) row(stats.name, stats.latency);
  }
  for (const CallStats& stats : run.by_call) {
    if (stats.compute.count() == 0) continue;
    row(stats.name + " server compute", stats.compute);
    row(stats.name + " rest", stats.rest);
  }
  return out + "</table>\n";
}

}  // namespace

absl::StatusOr<Format> ParseFormat(const std::string& text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "text") return Format::kText;
  if (lower == "json") return Format::kJson;
  if (lower == "csv") return Format::kCsv;
  if (lower == "html") return Format::kHtml;
  return absl::InvalidArgumentError(
      absl::StrCat("--format: expected text, json, csv or html, got '", text, "'"));
}

std::string FormatText(const Report& report) {
  std::string out = absl::StrCat("convserve_load, started ", report.started_utc, "\n");
  if (!report.machine.empty()) absl::StrAppend(&out, "  machine      ", report.machine, "\n");
  for (const auto& [key, value] : report.settings) {
    absl::StrAppendFormat(&out, "  %-12s %s\n", key, value);
  }
  for (const auto& [name, description] : report.calls) {
    absl::StrAppendFormat(&out, "  call %-7s %s\n", name, description);
  }
  for (const RunResult& run : report.runs) out += TextRun(run);
  if (report.runs.size() > 1) {
    absl::StrAppendFormat(&out, "\n== summary ==\n  %-24s %10s %9s %9s %9s %9s\n", "level",
                          "calls/s", "p50 ms", "p99 ms", "p99.9 ms", "errors");
    for (const RunResult& run : report.runs) {
      absl::StrAppendFormat(&out, "  %-24s %10.1f %9.3f %9.3f %9.3f %9d\n", run.label,
                            run.throughput(), Ms(run.total.latency.ValueAtPercentile(50)),
                            Ms(run.total.latency.ValueAtPercentile(99)),
                            Ms(run.total.latency.ValueAtPercentile(99.9)), run.total.error_count());
    }
  }
  return out;
}

std::string FormatJson(const Report& report) {
  nlohmann::json out;
  out["tool"] = "convserve_load";
  out["started_utc"] = report.started_utc;
  out["machine"] = report.machine;
  out["settings"] = nlohmann::json::object();
  for (const auto& [key, value] : report.settings) out["settings"][key] = value;
  out["calls"] = nlohmann::json::object();
  for (const auto& [name, description] : report.calls) out["calls"][name] = description;
  out["errors"] = report.error_count();
  out["runs"] = nlohmann::json::array();
  for (const RunResult& run : report.runs) {
    nlohmann::json item;
    item["label"] = run.label;
    item["mode"] = RunMode(run);
    if (run.open_loop) {
      item["requested_rps"] = run.requested_rps;
      item["arrival"] = run.arrival;
      item["scheduled"] = run.scheduled;
      item["offered_rps"] = run.offered_rps();
      item["send_lag_us"] = PercentilesJson(run.send_lag);
    } else {
      item["concurrency"] = run.concurrency;
    }
    item["warmup_s"] = run.warmup_seconds;
    item["window_s"] = run.window_seconds;
    item["throughput_per_s"] = run.throughput();
    item["total"] = StatsJson(run.total, run.window_seconds, /*with_buckets=*/true);
    item["by_call"] = nlohmann::json::array();
    for (const CallStats& stats : run.by_call) {
      item["by_call"].push_back(StatsJson(stats, run.window_seconds, /*with_buckets=*/false));
    }
    item["timeline"] = nlohmann::json::array();
    for (const TimelinePoint& point : run.timeline) {
      item["timeline"].push_back(
          {{"end_s", point.end_seconds},
           {"length_s", point.length_seconds},
           {"calls", point.calls},
           {"errors", point.errors},
           {"calls_per_s", point.length_seconds > 0 ? point.calls / point.length_seconds : 0.0},
           {"p50_us", Us(point.p50_ns)},
           {"p99_us", Us(point.p99_ns)}});
    }
    out["runs"].push_back(std::move(item));
  }
  return out.dump(2) + "\n";
}

const std::string& CsvHeader() {
  static const std::string* const header = [] {
    std::vector<std::string> columns = {
        "run",   "mode", "concurrency", "requested_rps",    "arrival",       "call",
        "calls", "ok",   "errors",      "throughput_per_s", "latency_min_us"};
    for (const Percentile& p : kPercentiles)
      columns.push_back(absl::StrCat("latency_", p.key, "_us"));
    for (const char* column :
         {"latency_max_us", "latency_mean_us", "compute_p50_us", "compute_mean_us", "rest_p50_us",
          "rest_mean_us", "errors_by_code"}) {
      columns.push_back(column);
    }
    return new std::string(absl::StrJoin(columns, ","));
  }();
  return *header;
}

std::string FormatCsv(const Report& report) {
  std::string out = CsvHeader() + "\n";
  for (const RunResult& run : report.runs) {
    out += CsvRow(run, run.total);
    for (const CallStats& stats : run.by_call) out += CsvRow(run, stats);
  }
  return out;
}

std::string FormatHtml(const Report& report) {
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<title>convserve_load report</title>\n<style>\n"
      "body { font-family: sans-serif; margin: 2em; color: #222; }\n"
      "table { border-collapse: collapse; margin: 0.5em 0 1em; }\n"
      "td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }\n"
      "td:first-child, th:first-child { text-align: left; }\n"
      "pre { background: #f6f6f6; padding: 0.5em; }\n"
      "svg { display: block; margin: 0.5em 0; }\n"
      "</style>\n</head>\n<body>\n<h1>convserve_load report</h1>\n";
  absl::StrAppend(&out, "<p>Started ", Escape(report.started_utc));
  if (!report.machine.empty()) absl::StrAppend(&out, " on ", Escape(report.machine));
  out += ".</p>\n<table>\n";
  for (const auto& [key, value] : report.settings) {
    absl::StrAppend(&out, "<tr><td>", Escape(key), "</td><td style=\"text-align:left\">",
                    Escape(value), "</td></tr>\n");
  }
  for (const auto& [name, description] : report.calls) {
    absl::StrAppend(&out, "<tr><td>call ", Escape(name), "</td><td style=\"text-align:left\">",
                    Escape(description), "</td></tr>\n");
  }
  out += "</table>\n";
  if (report.runs.size() > 1) {
    out +=
        "<h2>Summary</h2>\n<table>\n<tr><th>level</th><th>calls/s</th><th>p50 ms</th>"
        "<th>p99 ms</th><th>p99.9 ms</th><th>errors</th></tr>\n";
    for (const RunResult& run : report.runs) {
      absl::StrAppendFormat(&out,
                            "<tr><td>%s</td><td>%.1f</td><td>%.3f</td><td>%.3f</td><td>%.3f</td>"
                            "<td>%d</td></tr>\n",
                            Escape(run.label), run.throughput(),
                            Ms(run.total.latency.ValueAtPercentile(50)),
                            Ms(run.total.latency.ValueAtPercentile(99)),
                            Ms(run.total.latency.ValueAtPercentile(99.9)), run.total.error_count());
    }
    out += "</table>\n";
  }
  for (const RunResult& run : report.runs) {
    absl::StrAppend(&out, "<h2>", Escape(RunHeading(run)), "</h2>\n<p>");
    absl::StrAppendFormat(&out, "%d calls, %d ok, %d errors in %.2f s measured", run.total.calls,
                          run.total.ok, run.total.error_count(), run.window_seconds);
    if (run.warmup_seconds > 0)
      absl::StrAppendFormat(&out, " after %g s warm-up", run.warmup_seconds);
    absl::StrAppendFormat(&out, ": <b>%.1f calls/s</b>.", run.throughput());
    if (run.open_loop) {
      absl::StrAppendFormat(&out,
                            " %d calls due (%.1f/s offered); send lag behind schedule p99 %.3f "
                            "ms, max %.3f ms.",
                            run.scheduled, run.offered_rps(),
                            Ms(run.send_lag.ValueAtPercentile(99)), Ms(run.send_lag.max()));
    }
    out += "</p>\n";
    if (run.total.error_count() > 0) {
      absl::StrAppend(&out, "<p>Errors by code: ", Escape(ErrorsDetail(run)), ".</p>\n");
    }
    out += HtmlLatencyTable(run);
    if (run.total.ok > 0) out += HistogramSvg(run.total);
    if (!run.timeline.empty()) {
      out += LatencyOverTimeSvg(run);
      out += ThroughputOverTimeSvg(run);
    }
  }
  out += "</body>\n</html>\n";
  return out;
}

std::string FormatReport(const Report& report, Format format) {
  switch (format) {
    case Format::kJson:
      return FormatJson(report);
    case Format::kCsv:
      return FormatCsv(report);
    case Format::kHtml:
      return FormatHtml(report);
    case Format::kText:
      break;
  }
  return FormatText(report);
}

}  // namespace convserve::load
