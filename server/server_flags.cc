// server_flags.cc: checking the server's flag values at start-up.
#include "server/server_flags.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/printable.h"

namespace convserve {
namespace {

absl::Status Invalid(absl::string_view flag, absl::string_view expected, absl::string_view got) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, ": expected ", expected, ", got ", got));
}

// OK if `value` is in [low, high].
absl::Status CheckRange(absl::string_view flag, int64_t value, int64_t low, int64_t high,
                        absl::string_view meaning = "") {
  if (value >= low && value <= high) return absl::OkStatus();
  return Invalid(flag, absl::StrCat("a value in ", low, "..", high, meaning), absl::StrCat(value));
}

bool IsHostNameCharacter(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

bool IsIpv6Character(char c) {
  // Hex digits, colons, dots (an embedded IPv4 address) and a zone ("%eth0").
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '.' || c == '%';
}

}  // namespace

absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view listen, absl::string_view flag) {
  const std::string shown = absl::StrCat("'", Printable(listen), "'");
  const size_t colon = listen.rfind(':');
  if (colon == absl::string_view::npos) {
    return Invalid(flag, "host:port (e.g. 0.0.0.0:50051, or [::]:50051 for IPv6)", shown);
  }
  const absl::string_view host = listen.substr(0, colon);
  const absl::string_view port_text = listen.substr(colon + 1);
  ListenAddress address;
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      return Invalid(flag, "an IPv6 address in brackets, e.g. [::1]:50051", shown);
    }
    const absl::string_view inside = host.substr(1, host.size() - 2);
    for (char c : inside) {
      if (!IsIpv6Character(c)) {
        return Invalid(flag, "an IPv6 address in brackets, e.g. [::1]:50051", shown);
      }
    }
    address.host = std::string(inside);
  } else {
    if (host.empty()) {
      return Invalid(flag, "a host before the port (0.0.0.0 for every IPv4 address)", shown);
    }
    for (char c : host) {
      if (c == ':' || c == '[' || c == ']') {
        return Invalid(flag, "an IPv6 address in brackets, e.g. [::1]:50051", shown);
      }
      if (!IsHostNameCharacter(c)) {
        return Invalid(flag, "a host name or IP address before the port", shown);
      }
    }
    address.host = std::string(host);
  }
  int port = -1;
  const bool digits =
      !port_text.empty() && port_text.size() <= 5 &&
      std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || !absl::SimpleAtoi(port_text, &port) || port > 65535) {
    return Invalid(flag, "a port in 0..65535 after the last ':'",
                   absl::StrCat("'", Printable(port_text), "' in ", shown));
  }
  address.port = port;
  return address;
}

int MaxComputeThreads(int usable_cpus) {
  const int64_t per_cpu = int64_t{kMaxComputeThreadsPerCpu} * (usable_cpus < 1 ? 1 : usable_cpus);
  return static_cast<int>(per_cpu < kMaxComputeThreads ? per_cpu : kMaxComputeThreads);
}

absl::Status CheckPortFileWritable(const std::string& path, absl::string_view flag) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": expected a file path, got ''"));
  }
  const std::string temporary = path + ".tmp";
  std::FILE* file = std::fopen(temporary.c_str(), "w");
  if (file == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, ": expected a file this process can write, but '", Printable(temporary),
        "' (written first, then renamed) cannot be created: ", std::strerror(errno)));
  }
  std::fclose(file);
  std::remove(temporary.c_str());
  return absl::OkStatus();
}

absl::Status ValidateServerFlags(const ServerFlagValues& values, int usable_cpus) {
  absl::StatusOr<ListenAddress> address = ParseListenAddress(values.listen);
  if (!address.ok()) return address.status();
  const int max_threads = MaxComputeThreads(usable_cpus);
  if (values.compute_threads < 0 || values.compute_threads > max_threads) {
    return Invalid("compute_threads",
                   absl::StrCat("0 (one per usable CPU) to ", max_threads, " (",
                                kMaxComputeThreadsPerCpu, " x the ", usable_cpus,
                                " CPUs this process may use, at most ", kMaxComputeThreads, ")"),
                   absl::StrCat(values.compute_threads));
  }
  for (absl::Status status :
       {CheckRange("max_message_bytes", values.max_message_bytes, 1024, INT_MAX),
        CheckRange("max_elements", values.max_elements, 1, INT64_MAX),
        CheckRange("max_macs", values.max_macs, 1, INT64_MAX),
        CheckRange("memory_budget_bytes", values.memory_budget_bytes, 0, INT64_MAX),
        CheckRange("max_model_bytes", values.max_model_bytes, 0, INT64_MAX),
        // Above --max_macs it only means every admitted call is small: a
        // server started with a tiny --max_macs keeps the default.
        CheckRange("small_call_macs", values.small_call_macs, 0, INT64_MAX,
                   " (0: no small-call lane)"),
        CheckRange("drain_grace_ms", values.drain_grace_ms, 0, kMaxDrainGraceMs, " (10 minutes)"),
        CheckRange("shutdown_timeout_s", values.shutdown_timeout_s, 0, kMaxShutdownTimeoutS,
                   " (an hour)"),
        CheckRange("stream_idle_timeout_s", values.stream_idle_timeout_s, 1, kMaxStreamIdleTimeoutS,
                   " (a day)")}) {
    if (!status.ok()) return status;
  }
  if (!values.health_listen.empty()) {
    absl::StatusOr<ListenAddress> health =
        ParseListenAddress(values.health_listen, "health_listen");
    if (!health.ok()) return health.status();
  }
  if (!values.port_file.empty()) {
    absl::Status writable = CheckPortFileWritable(values.port_file);
    if (!writable.ok()) return writable;
  }
  // Written only with --health_listen (otherwise only removed: the image sets
  // it whether or not a deployment turns the health port on).
  if (!values.health_listen.empty() && !values.health_port_file.empty()) {
    return CheckPortFileWritable(values.health_port_file, "health_port_file");
  }
  return absl::OkStatus();
}

}  // namespace convserve
