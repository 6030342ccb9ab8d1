// report.h: a load Report as text, JSON, CSV or one self-contained HTML page.
//
//   text  what a person reads on a terminal: settings, then per load level the calls, errors
//         by status code, throughput, a latency table (min/p50/p90/p95/p99/p99.9/max/mean) per
//         kind of call with the server's compute time and the rest, and a summary across
//         levels when there are several.
//   json  the same numbers for programs (latencies in microseconds), plus the total latency
//         histogram's non-empty buckets and the per-second timeline.
//   csv   one header line, then one row per load level and kind of call ("all" first).
//   html  the text report's tables plus, per level, three inline SVG charts: the latency
//         histogram, p50/p99 latency per second, and throughput per second. No scripts, no
//         external resources: the file can be mailed or committed as is.
#ifndef CONVSERVE_BENCH_LOAD_REPORT_H_
#define CONVSERVE_BENCH_LOAD_REPORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "bench/load/results.h"

namespace convserve::load {

enum class Format { kText, kJson, kCsv, kHtml };

// "text", "json", "csv" or "html"; INVALID_ARGUMENT naming --format otherwise.
absl::StatusOr<Format> ParseFormat(const std::string& text);

std::string FormatText(const Report& report);
std::string FormatJson(const Report& report);
std::string FormatCsv(const Report& report);
std::string FormatHtml(const Report& report);
std::string FormatReport(const Report& report, Format format);

// The CSV header line (without newline), for readers of FormatCsv.
const std::string& CsvHeader();

}  // namespace convserve::load

#endif  // CONVSERVE_BENCH_LOAD_REPORT_H_
