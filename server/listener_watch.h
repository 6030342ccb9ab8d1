// listener_watch.h: noticing that the server's listener no longer accepts connections.
//
// gRPC 1.51 stops accepting for good once accept() fails with an error it
// does not retry, such as EMFILE ("Too many open files"): the process stays up
// and serves its existing connections, and the health service (reached over
// those) still says SERVING, but every new client times out. The watch
// connects to the server's own port at an interval and sends the HTTP/2
// preface: a listener that accepts answers at once (a SETTINGS frame; a TLS
// listener closes the connection), one that does not leaves the connection
// unanswered in the kernel's queue. Several unanswered probes in a row mean
// the listener is dead, and only a restart brings it back.
// A listener that accepts keeps its accept queue (/proc/net/tcp) empty, so
// the watch probes only while connections wait in that queue: a healthy
// server sees no probe connections at all (a TLS listener would log each as
// a failed handshake).
#ifndef CONVSERVE_SERVER_LISTENER_WATCH_H_
#define CONVSERVE_SERVER_LISTENER_WATCH_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/string_view.h"

namespace convserve {

// Where to connect to reach a server listening on `listen_host`: the host
// itself, or the loopback address for a wildcard ("0.0.0.0" -> "127.0.0.1",
// "::" -> "::1").
std::string ProbeHost(const std::string& listen_host);

// The connections waiting to be accepted by the TCP listener(s) on `port`:
// the largest rx_queue of the LISTEN entries on that port in
// `proc_net_tcp`, the text of /proc/net/tcp or /proc/net/tcp6 (for a
// listening socket the kernel shows its accept queue there). nullopt if no
// such entry.
std::optional<int64_t> AcceptQueueLength(absl::string_view proc_net_tcp, int port);

// AcceptQueueLength() over this process's /proc/self/net/tcp and tcp6;
// nullopt if neither can be read or lists the port.
std::optional<int64_t> OwnAcceptQueueLength(int port);

enum class ProbeOutcome {
  kAnswered,     // the server accepted the connection
  kNotAnswered,  // refused, or accepted by the kernel and never by the server
  kCannotProbe,  // this process could not even try (no descriptor left, ...)
};

// Connects to host:port, sends the HTTP/2 client preface and an empty
// SETTINGS frame, and waits at most `timeout` for the server to answer
// (bytes or closing the connection). Unless kAnswered, `why` says what
// happened.
ProbeOutcome ProbeListener(const std::string& host, int port, std::chrono::milliseconds timeout,
                           std::string* why);

// Every `interval`, on a thread of its own, looks at the accept queue of
// `port` and, if connections wait there (or the queue cannot be read),
// probes host:port (waiting up to `interval`); after `strikes` probes in a
// row not answered
// calls `on_dead(why)` once and stops. A probe that cannot be made (the
// process is out of descriptors right now) counts neither way: the listener
// may still be fine, and it is judged once descriptors are free again.
class ListenerWatch {
 public:
  ListenerWatch(std::string host, int port, std::chrono::milliseconds interval, int strikes,
                std::function<void(const std::string& why)> on_dead);
  // Stops the watch (waits for a probe under way).
  ~ListenerWatch();

  ListenerWatch(const ListenerWatch&) = delete;
  ListenerWatch& operator=(const ListenerWatch&) = delete;

  // Stops probing; on_dead is not called after this returns.
  void Stop();

 private:
  void Run();

  const std::string host_;
  const int port_;
  const std::chrono::milliseconds interval_;
  const int strikes_;
  const std::function<void(const std::string&)> on_dead_;
  std::mutex mutex_;
  std::condition_variable stopped_;
  bool stop_ = false;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_LISTENER_WATCH_H_
