// listener_watch.cc: probing the server's own port for a listener that stopped accepting.
#include "server/listener_watch.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

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

}  // namespace

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
