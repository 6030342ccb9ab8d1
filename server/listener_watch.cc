// listener_watch.cc: probing the server's own port for a listener that stopped accepting.
#include "server/listener_watch.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace convserve {
namespace {

// The client's start of HTTP/2: the preface and an empty SETTINGS frame.
constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
constexpr size_t kPrefaceBytes = sizeof(kPreface) - 1;

// Waits until `fd` is ready for `events` or `deadline` passes.
bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd entry{fd, events, 0};
    const int ready = poll(&entry, 1, static_cast<int>(left.count()));
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR) return false;
  }
}

std::string ReadFile(const char* path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace

std::optional<int64_t> AcceptQueueLength(absl::string_view proc_net_tcp, int port) {
  // "  0: 00000000:C383 00000000:0000 0A 00000000:00000003 ...": local
  // address:port (hex), remote, state (0A = LISTEN), tx_queue:rx_queue (hex).
  std::optional<int64_t> longest;
  for (absl::string_view line : absl::StrSplit(proc_net_tcp, '\n')) {
    const std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (fields.size() < 5 || fields[3] != "0A") continue;
    const size_t colon = fields[1].rfind(':');
    const size_t queues = fields[4].find(':');
    int local_port = 0;
    int64_t queued = 0;
    if (colon == absl::string_view::npos || queues == absl::string_view::npos ||
        !absl::SimpleHexAtoi(fields[1].substr(colon + 1), &local_port) || local_port != port ||
        !absl::SimpleHexAtoi(fields[4].substr(queues + 1), &queued)) {
      continue;
    }
    longest = std::max(longest.value_or(0), queued);
  }
  return longest;
}

std::optional<int64_t> OwnAcceptQueueLength(int port) {
  const std::optional<int64_t> v4 = AcceptQueueLength(ReadFile("/proc/self/net/tcp"), port);
  const std::optional<int64_t> v6 = AcceptQueueLength(ReadFile("/proc/self/net/tcp6"), port);
  if (!v4 && !v6) return std::nullopt;
  return std::max(v4.value_or(0), v6.value_or(0));
}

std::string ProbeHost(const std::string& listen_host) {
  if (listen_host == "0.0.0.0" || listen_host.empty()) return "127.0.0.1";
  if (listen_host == "::") return "::1";
  return listen_host;
}

ProbeOutcome ProbeListener(const std::string& host, int port, std::chrono::milliseconds timeout,
                           std::string* why) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  const int resolved = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &addresses);
  if (resolved != 0 || addresses == nullptr) {
    *why = absl::StrCat("cannot resolve ", host, ": ", gai_strerror(resolved));
    return ProbeOutcome::kCannotProbe;
  }
  const addrinfo address = *addresses;
  const int fd = socket(address.ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *why = absl::StrCat("cannot open a socket: ", std::strerror(errno));
    freeaddrinfo(addresses);
    return ProbeOutcome::kCannotProbe;
  }
  bool answered = false;
  if (connect(fd, address.ai_addr, address.ai_addrlen) != 0 && errno != EINPROGRESS) {
    *why = absl::StrCat("connect: ", std::strerror(errno));
  } else if (!WaitFor(fd, POLLOUT, deadline)) {
    *why = absl::StrCat("connect: no answer within ", timeout.count(), " ms");
  } else {
    int error = 0;
    socklen_t length = sizeof(error);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
      *why = absl::StrCat("connect: ", std::strerror(error));
    } else if (send(fd, kPreface, kPrefaceBytes, MSG_NOSIGNAL) !=
               static_cast<ssize_t>(kPrefaceBytes)) {
      *why = absl::StrCat("send: ", std::strerror(errno));
    } else if (!WaitFor(fd, POLLIN, deadline)) {
      *why = absl::StrCat("the connection was not answered within ", timeout.count(),
                          " ms (accepted by the kernel, never by the server)");
    } else {
      answered = true;  // bytes, or the connection closed: either way, accepted
    }
  }
  close(fd);
  freeaddrinfo(addresses);
  return answered ? ProbeOutcome::kAnswered : ProbeOutcome::kNotAnswered;
}

ListenerWatch::ListenerWatch(std::string host, int port, std::chrono::milliseconds interval,
                             int strikes, std::function<void(const std::string&)> on_dead)
    : host_(std::move(host)),
      port_(port),
      interval_(interval),
      strikes_(strikes),
      on_dead_(std::move(on_dead)),
      thread_([this] { Run(); }) {}

ListenerWatch::~ListenerWatch() { Stop(); }

void ListenerWatch::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  stopped_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ListenerWatch::Run() {
  int failed = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (stopped_.wait_for(lock, interval_, [this] { return stop_; })) return;
    }
    const std::optional<int64_t> waiting = OwnAcceptQueueLength(port_);
    if (waiting == 0) {  // nobody waits to be accepted: nothing to judge
      failed = 0;
      continue;
    }
    std::string why;
    const ProbeOutcome outcome = ProbeListener(host_, port_, interval_, &why);
    if (outcome == ProbeOutcome::kAnswered) failed = 0;
    if (outcome != ProbeOutcome::kNotAnswered || ++failed < strikes_) continue;
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stop_) on_dead_(why);
    return;
  }
}

}  // namespace convserve
