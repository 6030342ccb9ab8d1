// metrics_http.h: the HTTP endpoint (--metrics_listen) that serves GET /metrics and nothing else.
//
// A cpp-httplib server on its own port and threads, bounded so that no
// client can hold it or the process's memory: one request per connection
// (Prometheus reconnects each scrape; it costs nothing at its rate), the
// whole request within `max_request_bytes` and `request_timeout` of the
// connection's acceptance (a slowloris trickle or an endless header is cut
// off, whatever httplib itself would allow), the whole connection within
// `connection_timeout`, no request body ever read, `threads` fixed threads
// and at most `max_queued_connections` accepted connections waiting for them
// (beyond that the accept loop waits and the kernel's backlog holds the rest).
//
// Answers: GET or HEAD /metrics -> 200 with `render()` as
// text/plain; version=0.0.4; any other path -> 404; another method on
// /metrics -> 405 with Allow: GET, HEAD; a request that does not parse -> 400
// (or the connection is closed). Thread-safe.
#ifndef CONVSERVE_SERVER_METRICS_HTTP_H_
#define CONVSERVE_SERVER_METRICS_HTTP_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace convserve {

struct MetricsHttpOptions {
  int threads = 2;
  size_t max_queued_connections = 8;
  size_t max_request_bytes = 16 * 1024;
  std::chrono::milliseconds request_timeout{3000};
  std::chrono::milliseconds connection_timeout{10000};
};

struct HostPort {
  std::string host;  // without brackets for IPv6 ("::")
  int port = 0;
};

// Parses `listen` as HOST:PORT (IPv6 in brackets: [::]:9090); port 0 picks a
// free port. INVALID_ARGUMENT naming --metrics_listen otherwise.
absl::StatusOr<HostPort> ParseMetricsListen(absl::string_view listen);

class MetricsHttpServer {
 public:
  // Listens on `listen` (ParseMetricsListen) and serves `render()` from
  // then on, on threads of its own. INVALID_ARGUMENT for a malformed address,
  // UNAVAILABLE if it cannot listen there (port in use, not an address of
  // this machine), each naming --metrics_listen.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      absl::string_view listen, std::function<std::string()> render,
      const MetricsHttpOptions& options = MetricsHttpOptions());

  // Stop().
  ~MetricsHttpServer();

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The port it listens on (the one picked when asked for port 0).
  int port() const { return port_; }
  // "host:port" as bound, e.g. "127.0.0.1:9090" or "[::]:9090".
  const std::string& address() const { return address_; }

  // Closes the port, cuts the connections open (within ~0.1 s) and joins
  // the threads. Idempotent.
  void Stop();

 private:
  class HttpServer;  // cpp-httplib's server, kept out of this header
  MetricsHttpServer() = default;

  std::atomic<bool> stopping_{false};
  std::unique_ptr<HttpServer> server_;
  std::thread listener_;
  int port_ = 0;
  std::string address_;
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_METRICS_HTTP_H_
