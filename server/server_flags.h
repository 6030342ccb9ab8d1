// server_flags.h: the start-up checks of the server's flag values, each error naming its flag.
//
// Every flag is checked before anything serves: a value out of range stops
// the server with exit code 2 and a message naming the flag, what it accepts
// and what it got (`--listen: expected a port in 0..65535, got 99999 in
// '127.0.0.1:99999'`), rather than being clamped, wrapped or ignored.
#ifndef CONVSERVE_SERVER_SERVER_FLAGS_H_
#define CONVSERVE_SERVER_SERVER_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace convserve {

// --compute_threads: at most this many per usable CPU, and at most
// kMaxComputeThreads in all. The kernels' scratch memory grows with the
// threads (each has its own), so far more threads than CPUs only makes every
// large Conv fail with RESOURCE_EXHAUSTED and computes nothing faster.
inline constexpr int kMaxComputeThreadsPerCpu = 4;
inline constexpr int kMaxComputeThreads = 512;

// The longest --drain_grace_ms and --shutdown_timeout_s: a drain that waits
// longer than this is a typo, not a plan.
inline constexpr int kMaxDrainGraceMs = 10 * 60 * 1000;
inline constexpr int kMaxShutdownTimeoutS = 60 * 60;

// The longest --stream_idle_timeout_s: a day.
inline constexpr int64_t kMaxStreamIdleTimeoutS = 24 * 60 * 60;

// The flag values main() reads (defaults as the flags').
struct ServerFlagValues {
  std::string listen = "0.0.0.0:50051";
  int compute_threads = 0;
  int64_t max_message_bytes = 256 << 20;
  int64_t max_elements = int64_t{1} << 28;
  int64_t max_macs = int64_t{1} << 40;
  int64_t memory_budget_bytes = int64_t{2} << 30;
  int64_t max_model_bytes = int64_t{1} << 30;
  int64_t small_call_macs = int64_t{1} << 20;
  int drain_grace_ms = 500;
  int shutdown_timeout_s = 30;
  int64_t stream_idle_timeout_s = 300;
  std::string port_file;
  std::string health_listen;  // empty: none
  std::string health_port_file;
};

// A --listen address taken apart.
struct ListenAddress {
  std::string host;  // without brackets: "0.0.0.0", "localhost", "::1"
  int port = 0;      // 0: any free port
};

// `listen` as host:port: the host a name or IPv4 address, or an IPv6 address
// in brackets ("[::]:50051"); the port a decimal number in 0..65535.
// INVALID_ARGUMENT naming --`flag` otherwise.
absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view listen,
                                                 absl::string_view flag = "listen");

// The most --compute_threads allows on a machine whose process may use
// `usable_cpus` CPUs: min(kMaxComputeThreadsPerCpu * usable_cpus,
// kMaxComputeThreads).
int MaxComputeThreads(int usable_cpus);

// OK if `path` (--`flag`, a port file) can be written: creates the temporary
// file the port is later written through (path + ".tmp") and removes it
// again, so an unwritable path fails at start rather than after the server
// serves. INVALID_ARGUMENT naming --`flag` and the system's reason otherwise.
absl::Status CheckPortFileWritable(const std::string& path, absl::string_view flag = "port_file");

// Checks every value (and that --port_file, if set, and --health_port_file,
// if set with --health_listen, are writable; --health_listen, if set, is
// parsed as --listen is), with
// `usable_cpus` bounding --compute_threads. The first error, naming its flag.
absl::Status ValidateServerFlags(const ServerFlagValues& values, int usable_cpus);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_SERVER_FLAGS_H_
