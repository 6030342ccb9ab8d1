// ProbeListener() and ListenerWatch: telling a listener that accepts from one that stopped.
#include "server/listener_watch.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace convserve {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// A loopback TCP listener that nobody accepts from, as gRPC's after EMFILE.
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t length = sizeof(address);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
  ~Listener() { close(fd_); }
  int fd() const { return fd_; }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(ProbeHostTest, WildcardsAreProbedOnLoopback) {
  EXPECT_EQ(ProbeHost("0.0.0.0"), "127.0.0.1");
  EXPECT_EQ(ProbeHost("::"), "::1");
  EXPECT_EQ(ProbeHost("10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(ProbeHost("localhost"), "localhost");
}

TEST(ProbeListenerTest, AListenerThatAnswersPasses) {
  Listener listener;
  std::thread server([&listener] {
    const int connection = accept(listener.fd(), nullptr, nullptr);
    char preface[64];
    EXPECT_GT(read(connection, preface, sizeof(preface)), 0);
    EXPECT_EQ(write(connection, "\0\0\0\4\0\0\0\0\0", 9), 9);
    close(connection);
  });
  std::string why;
  EXPECT_EQ(ProbeListener("127.0.0.1", listener.port(), 5000ms, &why), ProbeOutcome::kAnswered)
      << why;
  server.join();
}

TEST(ProbeListenerTest, AListenerThatClosesTheConnectionPassesToo) {
  // As a TLS listener does with a plaintext preface.
  Listener listener;
  std::thread server([&listener] { close(accept(listener.fd(), nullptr, nullptr)); });
  std::string why;
  EXPECT_EQ(ProbeListener("127.0.0.1", listener.port(), 5000ms, &why), ProbeOutcome::kAnswered)
      << why;
  server.join();
}

TEST(ProbeListenerTest, AListenerThatNeverAcceptsFails) {
  Listener listener;
  std::string why;
  EXPECT_EQ(ProbeListener("127.0.0.1", listener.port(), 200ms, &why), ProbeOutcome::kNotAnswered);
  EXPECT_THAT(why, HasSubstr("not answered within 200 ms"));
}

TEST(ProbeListenerTest, NoListenerFails) {
  int port = 0;
  {
    Listener gone;
    port = gone.port();
  }
  std::string why;
  EXPECT_EQ(ProbeListener("127.0.0.1", port, 1000ms, &why), ProbeOutcome::kNotAnswered);
  EXPECT_THAT(why, HasSubstr("connect: Connection refused"));
}

TEST(ProbeListenerTest, NoDescriptorLeftIsNotAVerdict) {
  Listener listener;
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  rlimit none = original;
  none.rlim_cur = 0;  // every new descriptor fails with EMFILE
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &none), 0);
  std::string why;
  const ProbeOutcome outcome = ProbeListener("127.0.0.1", listener.port(), 200ms, &why);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
  EXPECT_EQ(outcome, ProbeOutcome::kCannotProbe);
  EXPECT_THAT(why, HasSubstr("Too many open files"));
}

// A connection to `port` that the kernel completes and nobody accepts.
int ConnectTo(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  return fd;
}

TEST(AcceptQueueLengthTest, ReadsTheListenersRxQueue) {
  const char kTcp[] =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
      "timeout inode\n"
      "   0: 00000000:C383 00000000:0000 0A 00000080:00000003 00:00000000 00000000     0 "
      "       0 514 1 000000000deeb264 100 0 0 10 0\n"
      "   1: 0100007F:C383 0100007F:9E3B 01 00000000:00000007 00:00000000 00000000     0 "
      "       0 0 3 00000000c798803f\n";
  EXPECT_EQ(AcceptQueueLength(kTcp, 50051), 3);  // 0xC383; the established entry is not counted
  EXPECT_EQ(AcceptQueueLength(kTcp, 50052), std::nullopt);
  EXPECT_EQ(AcceptQueueLength("", 50051), std::nullopt);
}

TEST(AcceptQueueLengthTest, CountsConnectionsNobodyAccepted) {
  Listener listener;
  EXPECT_EQ(OwnAcceptQueueLength(listener.port()), 0);
  const int first = ConnectTo(listener.port());
  const int second = ConnectTo(listener.port());
  EXPECT_EQ(OwnAcceptQueueLength(listener.port()), 2);
  close(first);
  close(second);
}

TEST(ListenerWatchTest, ReportsADeadListenerAfterTheStrikesOnce) {
  Listener listener;
  const int waiting = ConnectTo(listener.port());  // a client the listener never accepts
  std::atomic<int> reports{0};
  std::string reason;
  ListenerWatch watch("127.0.0.1", listener.port(), 50ms, 3, [&](const std::string& why) {
    reason = why;
    ++reports;
  });
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (reports == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  watch.Stop();
  close(waiting);
  EXPECT_EQ(reports, 1);
  EXPECT_THAT(reason, HasSubstr("never by the server"));
}

TEST(ListenerWatchTest, DoesNotProbeWhileNobodyWaits) {
  // A listener that never accepts, but nobody is waiting on it either: no
  // probe is made, so no verdict (and a TLS server logs no failed handshakes).
  Listener listener;
  std::atomic<int> reports{0};
  {
    ListenerWatch watch("127.0.0.1", listener.port(), 20ms, 1,
                        [&](const std::string&) { ++reports; });
    std::this_thread::sleep_for(300ms);
  }
  EXPECT_EQ(reports, 0);
  EXPECT_EQ(OwnAcceptQueueLength(listener.port()), 0);
}

TEST(ListenerWatchTest, StopsQuietlyWhileTheListenerAnswers) {
  Listener listener;
  std::atomic<bool> serving{true};
  std::thread server([&] {
    while (serving) {
      const int connection = accept(listener.fd(), nullptr, nullptr);
      if (connection >= 0) close(connection);
    }
  });
  std::atomic<int> reports{0};
  {
    ListenerWatch watch("127.0.0.1", listener.port(), 20ms, 2,
                        [&](const std::string&) { ++reports; });
    std::this_thread::sleep_for(300ms);
  }
  serving = false;
  shutdown(listener.fd(), SHUT_RDWR);  // ends the blocked accept()
  server.join();
  EXPECT_EQ(reports, 0);
}

}  // namespace
}  // namespace convserve
