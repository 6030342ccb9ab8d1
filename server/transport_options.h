// transport_options.h: how the server treats connections: handshake, idle and age limits,
// keepalive, concurrent streams; their flags and the gRPC channel arguments they become.
//
// gRPC 1.51 cannot bound the number of connections it accepts (its
// GRPC_ARG_MAX_ALLOWED_INCOMING_CONNECTIONS came later), and once accept()
// fails for lack of file descriptors its listener stops for good. So every
// connection that does nothing useful is closed on a timer instead: one that
// never completes its HTTP/2 start (no preface or no SETTINGS frame) after
// the handshake timeout, one without calls after the idle limit, and any after
// its maximum age (its calls in flight get a grace period). The process
// raises its own file limit at start (process.h).
#ifndef CONVSERVE_SERVER_TRANSPORT_OPTIONS_H_
#define CONVSERVE_SERVER_TRANSPORT_OPTIONS_H_

#include <grpcpp/server_builder.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace convserve {

// The longest idle, age or keepalive setting in seconds: a week (and every
// value fits gRPC's int milliseconds).
inline constexpr int kMaxTransportSeconds = 7 * 24 * 3600;

// How often a client may ping (keepalive) without the server closing the
// connection for "too many pings": gRPC's default enforcement (5 minutes)
// would punish the common client keepalive settings (10 to 60 s).
inline constexpr int kMinClientPingIntervalS = 10;

struct TransportOptions {
  // A connection must complete its HTTP/2 start (the preface and a SETTINGS
  // frame) within this. gRPC's default: 120 s.
  int handshake_timeout_s = 20;
  // A connection without calls for this long gets GOAWAY and is closed; 0 =
  // never. Clients reconnect on their next call.
  int max_connection_idle_s = 300;
  // Any connection gets GOAWAY at this age (gRPC adds +-10% jitter), and its
  // calls in flight max_connection_age_grace_s more to finish; 0 = never.
  int max_connection_age_s = 3600;
  int max_connection_age_grace_s = 300;
  // The server pings a connection after this long without activity and
  // closes it if no answer comes within keepalive_timeout_s: dead peers
  // (a crashed host, a dropped NAT mapping) do not hold connections.
  int keepalive_time_s = 60;
  int keepalive_timeout_s = 20;
  // Calls one connection may have open at once; the client queues further
  // ones (gRPC's default is unlimited).
  int max_concurrent_streams = 100;
  // How often the server checks that its listener still accepts connections
  // (listener_watch.h); 0 = never. Three failed checks in a row drain the
  // server and make it exit with code 3, for a supervisor to restart it.
  int listener_check_s = 5;
};

// The values of the --handshake_timeout_s, --max_connection_idle_s,
// --max_connection_age_s, --max_connection_age_grace_s, --keepalive_time_s,
// --keepalive_timeout_s, --max_concurrent_streams and --listener_check_s flags (defined in
// transport_options.cc), checked with ValidateTransportOptions().
absl::StatusOr<TransportOptions> TransportOptionsFromFlags();

// INVALID_ARGUMENT naming the first flag out of range: timeouts >= 1 s,
// idle and age 0 (never) or at least 1 s, everything at most
// kMaxTransportSeconds; max_concurrent_streams in 1..100000; listener_check_s
// in 0..3600.
absl::Status ValidateTransportOptions(const TransportOptions& options);

// Sets the channel arguments for `options` on `builder`, and those that
// allow clients' keepalive pings every kMinClientPingIntervalS, with or
// without calls. REQUIRES: ValidateTransportOptions(options).ok().
void ApplyTransportOptions(const TransportOptions& options, grpc::ServerBuilder* builder);

// "handshake_timeout_s=20 max_connection_idle_s=300 ..." for the start-up log.
std::string DescribeTransportOptions(const TransportOptions& options);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_TRANSPORT_OPTIONS_H_
