// metrics_http.cc: the bounded cpp-httplib server behind --metrics_listen.
//
// httplib (Debian's 0.11.4) reads a request's lines without a bound on
// their number or, until a line ends, its length, and keeps a connection as
// long as bytes trickle in before each read timeout. So it never reads the
// socket itself here: each connection is handed to process_request() over
// ConnectionStream, which enforces the byte and time bounds of
// MetricsHttpOptions, and the pre-routing handler answers every request
// before httplib would read a body.
#include "server/metrics_http.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/printable.h"

namespace convserve {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kFlag[] = "--metrics_listen";
constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// When the connection the current worker thread serves was accepted (set by
// BoundedTaskQueue before it runs the job): its time limits count from
// there, so connections age while they wait in the queue too.
thread_local Clock::time_point t_accepted{};

// Fixed threads and a bounded queue: enqueue() waits while the queue is full,
// which stops the accept loop, so the connections held open are at most
// threads + max_queued (the kernel's listen backlog holds the rest).
class BoundedTaskQueue final : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(int threads, size_t max_queued) : max_queued_(max_queued) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
  }
  ~BoundedTaskQueue() override { shutdown(); }

  void enqueue(std::function<void()> job) override {
    const Clock::time_point accepted = Clock::now();
    std::unique_lock<std::mutex> lock(mutex_);
    room_.wait(lock, [this] { return jobs_.size() < max_queued_ || shutdown_; });
    jobs_.push_back(Job{std::move(job), accepted});
    ready_.notify_one();
  }

  // Runs what is queued (each job only closes its connection once the
  // server is stopping), then joins the threads.
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (shutdown_ && workers_.empty()) return;
      shutdown_ = true;
    }
    ready_.notify_all();
    room_.notify_all();
    for (std::thread& worker : workers_) worker.join();
    workers_.clear();
  }

 private:
  void Work() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return shutdown_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        room_.notify_one();
      }
      t_accepted = job.accepted;
      job.run();
    }
  }

  struct Job {
    std::function<void()> run;
    Clock::time_point accepted;
  };

  const size_t max_queued_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::condition_variable room_;
  std::deque<Job> jobs_;   // guarded by mutex_
  bool shutdown_ = false;  // guarded by mutex_
  std::vector<std::thread> workers_;
};

// One accepted connection, read at most `max_read_bytes` in all and before
// `read_deadline`, written before `deadline`. Waits in slices of 100 ms so
// that a stopping server cuts it at once.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int fd, size_t max_read_bytes, Clock::time_point read_deadline,
                   Clock::time_point deadline, const std::atomic<bool>* stopping)
      : fd_(fd),
        max_read_bytes_(max_read_bytes),
        read_deadline_(std::min(read_deadline, deadline)),
        deadline_(deadline),
        stopping_(stopping) {}

  bool is_readable() const override { return begin_ < end_ || Wait(POLLIN, read_deadline_); }
  bool is_writable() const override { return Wait(POLLOUT, deadline_); }

  ssize_t read(char* data, size_t size) override {
    if (begin_ == end_) {
      if (received_ >= max_read_bytes_ || !Wait(POLLIN, read_deadline_)) return -1;
      const size_t room = std::min(sizeof(buffer_), max_read_bytes_ - received_);
      const ssize_t n = ::recv(fd_, buffer_, room, 0);
      if (n <= 0) return n < 0 ? -1 : 0;
      received_ += static_cast<size_t>(n);
      begin_ = 0;
      end_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, end_ - begin_);
    std::memcpy(data, buffer_ + begin_, n);
    begin_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* data, size_t size) override {
    if (!Wait(POLLOUT, deadline_)) return -1;
    const ssize_t n = ::send(fd_, data, size, MSG_NOSIGNAL);
    return n < 0 ? -1 : n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (getpeername(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      Describe(address, &ip, &port);
    }
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      Describe(address, &ip, &port);
    }
  }
  socket_t socket() const override { return fd_; }

 private:
  static void Describe(const sockaddr_storage& address, std::string* ip, int* port) {
    char text[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET) {
      const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
      inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
      *port = ntohs(v4->sin_port);
    } else if (address.ss_family == AF_INET6) {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
      inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
      *port = ntohs(v6->sin6_port);
    }
    *ip = text;
  }

  // Whether the socket becomes ready for `events` before `deadline`.
  bool Wait(short events, Clock::time_point deadline) const {
    for (;;) {
      if (stopping_->load()) return false;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd entry{fd_, events, 0};
      const int ready = ::poll(&entry, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
      if (ready > 0) return true;
      if (ready < 0 && errno != EINTR) return false;
    }
  }

  const int fd_;
  const size_t max_read_bytes_;
  const Clock::time_point read_deadline_;
  const Clock::time_point deadline_;
  const std::atomic<bool>* const stopping_;
  char buffer_[4096];
  size_t begin_ = 0;
  size_t end_ = 0;
  size_t received_ = 0;
};

}  // namespace

class MetricsHttpServer::HttpServer final : public httplib::Server {
 public:
  HttpServer(const MetricsHttpOptions& options, const std::atomic<bool>* stopping)
      : options_(options), stopping_(stopping) {}

 private:
  // Replaces httplib's own connection loop (see the top of this file): one
  // request, through ConnectionStream's bounds.
  bool process_and_close_socket(socket_t sock) override {
    bool ok = false;
    if (!stopping_->load()) {
      const Clock::time_point start = t_accepted != Clock::time_point{} ? t_accepted : Clock::now();
      ConnectionStream stream(sock, options_.max_request_bytes, start + options_.request_timeout,
                              start + options_.connection_timeout, stopping_);
      bool connection_closed = false;
      ok = process_request(stream, /*close_connection=*/true, connection_closed,
                           std::function<void(httplib::Request&)>());
    }
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return ok;
  }

  const MetricsHttpOptions options_;
  const std::atomic<bool>* const stopping_;
};

absl::StatusOr<HostPort> ParseMetricsListen(absl::string_view listen) {
  const auto malformed = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFlag, ": expected HOST:PORT (e.g. 0.0.0.0:9090 or [::]:9090; port 0 picks a free one), ",
        why, ", got '", Printable(listen), "'"));
  };
  const size_t colon = listen.rfind(':');
  if (colon == absl::string_view::npos) return malformed("no ':' before the port");
  absl::string_view host = listen.substr(0, colon);
  const absl::string_view port_text = listen.substr(colon + 1);
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return malformed("an unclosed '[' in the host");
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != absl::string_view::npos) {
    return malformed("an IPv6 host must be in brackets");
  }
  if (host.empty()) return malformed("no host before the ':'");
  int port = -1;
  if (port_text.empty() || port_text.find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(port_text, &port) || port > 65535) {
    return malformed("a port from 0 to 65535 after the last ':'");
  }
  return HostPort{std::string(host), port};
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    absl::string_view listen, std::function<std::string()> render,
    const MetricsHttpOptions& options) {
  absl::StatusOr<HostPort> address = ParseMetricsListen(listen);
  if (!address.ok()) return address.status();
  std::unique_ptr<MetricsHttpServer> metrics(new MetricsHttpServer());
  metrics->server_ = std::make_unique<HttpServer>(options, &metrics->stopping_);
  HttpServer& server = *metrics->server_;

  const int threads = std::max(1, options.threads);
  const size_t max_queued = std::max<size_t>(1, options.max_queued_connections);
  server.new_task_queue = [threads, max_queued] {
    return new BoundedTaskQueue(threads, max_queued);
  };
  // httplib's default sets SO_REUSEPORT, which lets a second process share a
  // port already in use; a clash must fail instead.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.set_keep_alive_max_count(1);
  server.set_payload_max_length(0);
  server.set_pre_routing_handler(
      [render = std::move(render)](const httplib::Request& request, httplib::Response& response) {
        if (request.path != "/metrics") {
          response.status = 404;
          response.set_content("not found: this port serves only GET /metrics\n", "text/plain");
        } else if (request.method != "GET" && request.method != "HEAD") {
          response.status = 405;
          response.set_header("Allow", "GET, HEAD");
          response.set_content("method not allowed: /metrics answers GET and HEAD only\n",
                               "text/plain");
        } else {
          response.set_content(render(), kContentType);
        }
        return httplib::Server::HandlerResponse::Handled;
      });

  const std::string shown = address->host.find(':') == std::string::npos
                                ? address->host
                                : absl::StrCat("[", address->host, "]");
  if (address->port == 0) {
    metrics->port_ = server.bind_to_any_port(address->host);
  } else if (server.bind_to_port(address->host, address->port)) {
    metrics->port_ = address->port;
  } else {
    metrics->port_ = -1;
  }
  if (metrics->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat(kFlag, ": cannot listen on '", Printable(listen),
                     "' (the port is in use, or the host is not an address of this machine)"));
  }
  metrics->address_ = absl::StrCat(shown, ":", metrics->port_);
  auto returned = std::make_shared<std::atomic<bool>>(false);
  MetricsHttpServer* self = metrics.get();
  metrics->listener_ = std::thread([self, returned] {
    self->server_->listen_after_bind();
    returned->store(true);
    if (!self->stopping_.load()) {
      spdlog::error("metrics: {} stopped accepting connections ({})", self->address_, kFlag);
    }
  });
  // stop() only acts on a running server: wait until the accept loop runs
  // (or has already given up).
  while (!server.is_running() && !returned->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return metrics;
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

void MetricsHttpServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (server_ != nullptr) server_->stop();
  if (listener_.joinable()) listener_.join();
}

}  // namespace convserve
