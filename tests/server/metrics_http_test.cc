// MetricsHttpServer and ParseMetricsListen: the --metrics_listen endpoint over a real loopback
// socket.
#include "server/metrics_http.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"

namespace convserve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// A loopback TCP connection to `port`, or -1. Reads give up after 30 s so a
// server that never answers fails the test instead of hanging it.
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  timeval timeout{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  return fd;
}

// Everything the server sends until it closes the connection.
std::string ReadAll(int fd) {
  std::string out;
  char buffer[4096];
  for (;;) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) out += "<client timed out>";
      break;
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

// Sends `request`, returns the whole response.
std::string Exchange(int port, const std::string& request) {
  const int fd = Connect(port);
  if (fd < 0) return "<cannot connect>";
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response = ReadAll(fd);
  close(fd);
  return response;
}

std::string Get(int port, const std::string& path = "/metrics") {
  return Exchange(port, absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: test\r\n\r\n"));
}

TEST(ParseMetricsListenTest, AcceptsHostAndPort) {
  absl::StatusOr<HostPort> v4 = ParseMetricsListen("0.0.0.0:9090");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->host, "0.0.0.0");
  EXPECT_EQ(v4->port, 9090);
  absl::StatusOr<HostPort> v6 = ParseMetricsListen("[::]:0");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::");
  EXPECT_EQ(v6->port, 0);
  absl::StatusOr<HostPort> name = ParseMetricsListen("localhost:65535");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(name->host, "localhost");
  EXPECT_EQ(name->port, 65535);
}

TEST(ParseMetricsListenTest, RejectsMalformedAddressesNamingTheFlag) {
  for (const char* bad : {"9090", ":9090", "host:", "host:abc", "host:70000", "host:-1", "host:+5",
                          "::1:9090", "[::1:9090", "[]:9090", "host:99999999999"}) {
    absl::StatusOr<HostPort> parsed = ParseMetricsListen(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    const std::string message(parsed.status().message());
    EXPECT_THAT(message, StartsWith("--metrics_listen: expected HOST:PORT")) << bad;
    EXPECT_THAT(message, HasSubstr(absl::StrCat("got '", bad, "'"))) << bad;
  }
}

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> started = MetricsHttpServer::Start(
        "127.0.0.1:0", [this] { return absl::StrCat("test_scrapes_total ", ++scrapes_, "\n"); },
        Options());
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    port_ = server_->port();
  }

  virtual MetricsHttpOptions Options() const { return MetricsHttpOptions(); }

  std::atomic<int> scrapes_{0};
  std::unique_ptr<MetricsHttpServer> server_;
  int port_ = 0;
};

TEST_F(MetricsHttpServerTest, ServesRenderOnGetMetrics) {
  EXPECT_GT(port_, 0);
  EXPECT_EQ(server_->address(), absl::StrCat("127.0.0.1:", port_));
  const std::string first = Get(port_);
  EXPECT_THAT(first, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(first, HasSubstr("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
  EXPECT_THAT(first, HasSubstr("\r\n\r\ntest_scrapes_total 1\n"));
  EXPECT_THAT(Get(port_), HasSubstr("\r\n\r\ntest_scrapes_total 2\n"));  // rendered per scrape
  EXPECT_THAT(Get(port_, "/metrics?name[]=x"), StartsWith("HTTP/1.1 200 OK\r\n"));
}

TEST_F(MetricsHttpServerTest, HeadHasNoBody) {
  const std::string response = Exchange(port_, "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_EQ(response.substr(response.size() - 4), "\r\n\r\n");  // headers only
}

TEST_F(MetricsHttpServerTest, OtherPathsAre404AndOtherMethods405) {
  for (const char* path : {"/", "/metrics/", "/metricsx", "/healthz", "/../metrics"}) {
    EXPECT_THAT(Get(port_, path), StartsWith("HTTP/1.1 404 Not Found\r\n")) << path;
  }
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    const std::string response = Exchange(
        port_, absl::StrCat(method, " /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"));
    EXPECT_THAT(response, StartsWith("HTTP/1.1 405 Method Not Allowed\r\n")) << method;
    EXPECT_THAT(response, HasSubstr("Allow: GET, HEAD\r\n")) << method;
  }
  EXPECT_EQ(scrapes_.load(), 0);  // none of these rendered the metrics
}

TEST_F(MetricsHttpServerTest, SurvivesGarbageHugeHeadersAndBodies) {
  EXPECT_THAT(Exchange(port_, std::string("\x16\x03\x01\x00\xff garbage\r\n\r\n", 17)),
              StartsWith("HTTP/1.1 400"));
  // Above max_request_bytes (16 KiB by default): cut off, whatever the header says.
  const std::string huge_line =
      absl::StrCat("GET /metrics HTTP/1.1\r\nX-Big: ", std::string(1 << 20, 'a'), "\r\n\r\n");
  EXPECT_THAT(Exchange(port_, huge_line), Not(HasSubstr("200 OK")));
  std::string many_lines = "GET /metrics HTTP/1.1\r\n";
  for (int i = 0; i < 20000; ++i) many_lines += "X-A: b\r\n";
  EXPECT_THAT(Exchange(port_, many_lines + "\r\n"), Not(HasSubstr("200 OK")));
  // A body announced as huge is never read: the answer comes at once.
  EXPECT_THAT(Exchange(port_, "POST /metrics HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\nab"),
              StartsWith("HTTP/1.1 405"));
  EXPECT_THAT(Get(port_), StartsWith("HTTP/1.1 200 OK\r\n"));
}

class SlowClientTest : public MetricsHttpServerTest {
 protected:
  MetricsHttpOptions Options() const override {
    MetricsHttpOptions options;
    options.threads = 1;
    options.request_timeout = std::chrono::milliseconds(300);
    return options;
  }
};

TEST_F(SlowClientTest, PartialRequestIsCutAndOthersAreServedAfter) {
  // Starts a request and never finishes it, though bytes keep coming: the
  // server closes the connection once request_timeout has passed.
  const int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  std::string sent = "GET /metrics HTTP/1.1\r\n";
  send(fd, sent.data(), sent.size(), MSG_NOSIGNAL);
  bool cut = false;
  for (int i = 0; i < 3000 && !cut; ++i) {  // gives up after ~30 s (then fails)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    cut = send(fd, "X: y\r\n", 6, MSG_NOSIGNAL) < 0;
  }
  EXPECT_TRUE(cut) << "the server kept a trickling request open";
  close(fd);
  // The only worker thread is free again.
  EXPECT_THAT(Get(port_), StartsWith("HTTP/1.1 200 OK\r\n"));
}

TEST_F(MetricsHttpServerTest, StopClosesThePortAndIsIdempotent) {
  ASSERT_THAT(Get(port_), StartsWith("HTTP/1.1 200 OK\r\n"));
  // A connection left open does not hold Stop() up.
  const int idle = Connect(port_);
  ASSERT_GE(idle, 0);
  server_->Stop();
  server_->Stop();
  EXPECT_EQ(Get(port_), "<cannot connect>");
  close(idle);
}

TEST(MetricsHttpServerStartTest, PortInUseIsUnavailableNamingTheFlag) {
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> first =
      MetricsHttpServer::Start("127.0.0.1:0", [] { return std::string(); });
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string address = absl::StrCat("127.0.0.1:", (*first)->port());
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second =
      MetricsHttpServer::Start(address, [] { return std::string(); });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(absl::StrCat("--metrics_listen: cannot listen on '", address, "'")));
  // Not an address of this machine.
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> foreign =
      MetricsHttpServer::Start("192.0.2.1:0", [] { return std::string(); });
  ASSERT_FALSE(foreign.ok());
  EXPECT_THAT(std::string(foreign.status().message()), HasSubstr("--metrics_listen"));
  // Malformed.
  EXPECT_EQ(MetricsHttpServer::Start("nonsense", [] { return std::string(); }).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace convserve
