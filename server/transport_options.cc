// transport_options.cc: the connection flags, their checks and their gRPC channel arguments.
#include "server/transport_options.h"

#include <grpc/grpc.h>

#include <climits>
#include <initializer_list>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(int, handshake_timeout_s, 20,
          "A connection that has not completed its HTTP/2 start (preface and SETTINGS) after "
          "this many seconds is closed.");
ABSL_FLAG(int, max_connection_idle_s, 300,
          "A connection without calls for this many seconds is closed (GOAWAY; clients "
          "reconnect on their next call). 0 = never.");
ABSL_FLAG(int, max_connection_age_s, 3600,
          "Every connection is closed (GOAWAY) after about this many seconds; 0 = never.");
ABSL_FLAG(int, max_connection_age_grace_s, 300,
          "After a connection's maximum age: how long its calls in flight may still take.");
ABSL_FLAG(int, keepalive_time_s, 60,
          "The server pings a connection after this many seconds without activity ...");
ABSL_FLAG(int, keepalive_timeout_s, 20,
          "... and closes it if the ping is not answered within this many seconds.");
ABSL_FLAG(int, max_concurrent_streams, 100,
          "Calls one connection may have open at once; clients queue the rest.");
ABSL_FLAG(int, listener_check_s, 5,
          "How often the server checks that its listener still accepts connections; after "
          "three failed checks in a row it drains and exits with code 3. 0 = never.");

namespace convserve {
namespace {

int Milliseconds(int seconds) { return seconds == 0 ? INT_MAX : seconds * 1000; }

}  // namespace

absl::StatusOr<TransportOptions> TransportOptionsFromFlags() {
  TransportOptions options;
  options.handshake_timeout_s = absl::GetFlag(FLAGS_handshake_timeout_s);
  options.max_connection_idle_s = absl::GetFlag(FLAGS_max_connection_idle_s);
  options.max_connection_age_s = absl::GetFlag(FLAGS_max_connection_age_s);
  options.max_connection_age_grace_s = absl::GetFlag(FLAGS_max_connection_age_grace_s);
  options.keepalive_time_s = absl::GetFlag(FLAGS_keepalive_time_s);
  options.keepalive_timeout_s = absl::GetFlag(FLAGS_keepalive_timeout_s);
  options.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  options.listener_check_s = absl::GetFlag(FLAGS_listener_check_s);
  absl::Status valid = ValidateTransportOptions(options);
  if (!valid.ok()) return valid;
  return options;
}

absl::Status ValidateTransportOptions(const TransportOptions& options) {
  struct Check {
    const char* flag;
    int value;
    int low;
    int high;
    const char* meaning;
  };
  for (const Check& check : std::initializer_list<Check>{
           {"handshake_timeout_s", options.handshake_timeout_s, 1, kMaxTransportSeconds, ""},
           {"max_connection_idle_s", options.max_connection_idle_s, 0, kMaxTransportSeconds,
            " (0 = never)"},
           {"max_connection_age_s", options.max_connection_age_s, 0, kMaxTransportSeconds,
            " (0 = never)"},
           {"max_connection_age_grace_s", options.max_connection_age_grace_s, 0,
            kMaxTransportSeconds, ""},
           {"keepalive_time_s", options.keepalive_time_s, 1, kMaxTransportSeconds, ""},
           {"keepalive_timeout_s", options.keepalive_timeout_s, 1, kMaxTransportSeconds, ""},
           {"max_concurrent_streams", options.max_concurrent_streams, 1, 100000, ""},
           {"listener_check_s", options.listener_check_s, 0, 3600, " (0 = never)"},
       }) {
    if (check.value < check.low || check.value > check.high) {
      return absl::InvalidArgumentError(absl::StrCat("--", check.flag, ": expected a value in ",
                                                     check.low, "..", check.high, check.meaning,
                                                     ", got ", check.value));
    }
  }
  return absl::OkStatus();
}

void ApplyTransportOptions(const TransportOptions& options, grpc::ServerBuilder* builder) {
  builder->AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                              options.handshake_timeout_s * 1000);
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                              Milliseconds(options.max_connection_idle_s));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                              Milliseconds(options.max_connection_age_s));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                              options.max_connection_age_grace_s * 1000);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_time_s * 1000);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options.keepalive_timeout_s * 1000);
  builder->AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams);
  // Keepalive enforcement: clients may ping every kMinClientPingIntervalS,
  // with or without calls in flight, without being told "too many pings".
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                              kMinClientPingIntervalS * 1000);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
}

std::string DescribeTransportOptions(const TransportOptions& options) {
  return absl::StrCat("handshake_timeout_s=", options.handshake_timeout_s,
                      " max_connection_idle_s=", options.max_connection_idle_s,
                      " max_connection_age_s=", options.max_connection_age_s,
                      " max_connection_age_grace_s=", options.max_connection_age_grace_s,
                      " keepalive_time_s=", options.keepalive_time_s,
                      " keepalive_timeout_s=", options.keepalive_timeout_s,
                      " max_concurrent_streams=", options.max_concurrent_streams,
                      " listener_check_s=", options.listener_check_s,
                      " min_client_ping_interval_s=", kMinClientPingIntervalS);
}

}  // namespace convserve
