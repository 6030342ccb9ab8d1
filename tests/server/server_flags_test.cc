// ValidateServerFlags() and its parts: every bad flag value stops start-up, naming the flag.
#include "server/server_flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace convserve {
namespace {

using ::testing::HasSubstr;

std::string ErrorOf(const absl::Status& status) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  return std::string(status.message());
}

TEST(ParseListenAddressTest, AcceptsHostPortAndBracketedIpv6) {
  absl::StatusOr<ListenAddress> address = ParseListenAddress("0.0.0.0:50051");
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->host, "0.0.0.0");
  EXPECT_EQ(address->port, 50051);
  address = ParseListenAddress("[::1]:0");
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->host, "::1");
  EXPECT_EQ(address->port, 0);
  EXPECT_TRUE(ParseListenAddress("localhost:65535").ok());
  EXPECT_TRUE(ParseListenAddress("[::]:50051").ok());
  EXPECT_TRUE(ParseListenAddress("[fe80::1%eth0]:1").ok());
}

TEST(ParseListenAddressTest, RefusesPortsOutOfRange) {
  // gRPC itself would wrap 99999 and serve on a port nobody asked for.
  EXPECT_EQ(ErrorOf(ParseListenAddress("127.0.0.1:99999").status()),
            "--listen: expected a port in 0..65535 after the last ':', got '99999' in "
            "'127.0.0.1:99999'");
  for (const char* bad :
       {"127.0.0.1:", "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1:8o", "127.0.0.1:0000065535"}) {
    EXPECT_THAT(ErrorOf(ParseListenAddress(bad).status()), HasSubstr("a port in 0..65535")) << bad;
  }
}

TEST(ParseListenAddressTest, RefusesMalformedHosts) {
  EXPECT_THAT(ErrorOf(ParseListenAddress("50051").status()), HasSubstr("expected host:port"));
  EXPECT_THAT(ErrorOf(ParseListenAddress(":50051").status()), HasSubstr("a host before the port"));
  EXPECT_THAT(ErrorOf(ParseListenAddress("::1:50051").status()),
              HasSubstr("IPv6 address in brackets"));
  EXPECT_THAT(ErrorOf(ParseListenAddress("[::1:50051").status()),
              HasSubstr("IPv6 address in brackets"));
  EXPECT_THAT(ErrorOf(ParseListenAddress("[]:50051").status()),
              HasSubstr("IPv6 address in brackets"));
  EXPECT_THAT(ErrorOf(ParseListenAddress("host name:1").status()), HasSubstr("a host name or IP"));
  // Echoed escaped: a flag value may come from the environment.
  EXPECT_THAT(ErrorOf(ParseListenAddress("a\nb").status()), HasSubstr("'a\\nb'"));
}

TEST(MaxComputeThreadsTest, FourPerCpuAtMost512) {
  EXPECT_EQ(MaxComputeThreads(1), 4);
  EXPECT_EQ(MaxComputeThreads(2), 8);
  EXPECT_EQ(MaxComputeThreads(0), 4);
  EXPECT_EQ(MaxComputeThreads(1000), kMaxComputeThreads);
}

TEST(ValidateServerFlagsTest, AcceptsTheDefaults) {
  EXPECT_TRUE(ValidateServerFlags(ServerFlagValues{}, 2).ok());
}

TEST(ValidateServerFlagsTest, NamesTheFlagOutOfRange) {
  ServerFlagValues values;
  values.compute_threads = 100000;
  EXPECT_EQ(ErrorOf(ValidateServerFlags(values, 2)),
            "--compute_threads: expected 0 (one per usable CPU) to 8 (4 x the 2 CPUs this "
            "process may use, at most 512), got 100000");
  values.compute_threads = -1;
  EXPECT_THAT(ErrorOf(ValidateServerFlags(values, 2)), HasSubstr("--compute_threads"));
  values.compute_threads = 8;
  EXPECT_TRUE(ValidateServerFlags(values, 2).ok());

  const auto error_with = [](auto change) {
    ServerFlagValues values;
    change(values);
    return ErrorOf(ValidateServerFlags(values, 2));
  };
  EXPECT_EQ(error_with([](ServerFlagValues& v) { v.drain_grace_ms = -1; }),
            "--drain_grace_ms: expected a value in 0..600000 (10 minutes), got -1");
  EXPECT_EQ(error_with([](ServerFlagValues& v) { v.shutdown_timeout_s = -5; }),
            "--shutdown_timeout_s: expected a value in 0..3600 (an hour), got -5");
  EXPECT_THAT(error_with([](ServerFlagValues& v) { v.shutdown_timeout_s = 3601; }),
              HasSubstr("--shutdown_timeout_s"));
  EXPECT_EQ(error_with([](ServerFlagValues& v) { v.stream_idle_timeout_s = 0; }),
            "--stream_idle_timeout_s: expected a value in 1..86400 (a day), got 0");
  EXPECT_THAT(error_with([](ServerFlagValues& v) { v.stream_idle_timeout_s = 86401; }),
              HasSubstr("--stream_idle_timeout_s"));
  EXPECT_EQ(error_with([](ServerFlagValues& v) { v.max_message_bytes = 10; }),
            "--max_message_bytes: expected a value in 1024..2147483647, got 10");
  EXPECT_THAT(error_with([](ServerFlagValues& v) { v.max_elements = 0; }),
              HasSubstr("--max_elements"));
  EXPECT_THAT(error_with([](ServerFlagValues& v) { v.max_macs = -1; }), HasSubstr("--max_macs"));
  EXPECT_THAT(error_with([](ServerFlagValues& v) { v.memory_budget_bytes = -1; }),
              HasSubstr("--memory_budget_bytes"));
  EXPECT_THAT(error_with([](ServerFlagValues& v) { v.max_model_bytes = -1; }),
              HasSubstr("--max_model_bytes"));
  EXPECT_EQ(error_with([](ServerFlagValues& v) { v.small_call_macs = -1; }),
            "--small_call_macs: expected a value in 0..9223372036854775807 (0: no small-call "
            "lane), got -1");
  // The default stays valid with a --max_macs below it.
  ServerFlagValues small_max_macs;
  small_max_macs.max_macs = 1000;
  EXPECT_TRUE(ValidateServerFlags(small_max_macs, 2).ok());
  ServerFlagValues no_small_lane;
  no_small_lane.small_call_macs = 0;
  EXPECT_TRUE(ValidateServerFlags(no_small_lane, 2).ok());
  EXPECT_THAT(error_with([](ServerFlagValues& v) { v.listen = "127.0.0.1:99999"; }),
              HasSubstr("--listen"));
}

TEST(ValidateServerFlagsTest, RefusesAPortFileThatCannotBeWritten) {
  ServerFlagValues values;
  values.port_file = "/nonexistent-directory/port";
  EXPECT_EQ(ErrorOf(ValidateServerFlags(values, 2)),
            "--port_file: expected a file this process can write, but "
            "'/nonexistent-directory/port.tmp' (written first, then renamed) cannot be created: "
            "No such file or directory");
}

TEST(ValidateServerFlagsTest, ChecksTheHealthPortLikeTheMainOne) {
  ServerFlagValues values;
  values.health_listen = "0.0.0.0:70000";
  EXPECT_EQ(ErrorOf(ValidateServerFlags(values, 2)),
            "--health_listen: expected a port in 0..65535 after the last ':', got '70000' in "
            "'0.0.0.0:70000'");
  values.health_listen = "";
  values.health_port_file = "/nonexistent-directory/health_port";
  EXPECT_TRUE(ValidateServerFlags(values, 2).ok());  // never written without --health_listen
  values.health_listen = "127.0.0.1:0";
  EXPECT_THAT(ErrorOf(ValidateServerFlags(values, 2)),
              HasSubstr("--health_port_file: expected a file this process can write"));
}

TEST(ValidateServerFlagsTest, AcceptsAWritablePortFileAndLeavesNothingBehind) {
  char directory[] = "/tmp/server_flags_test.XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  ServerFlagValues values;
  values.port_file = std::string(directory) + "/port";
  EXPECT_TRUE(ValidateServerFlags(values, 2).ok());
  EXPECT_NE(access((values.port_file + ".tmp").c_str(), F_OK), 0);
  EXPECT_NE(access(values.port_file.c_str(), F_OK), 0);
  EXPECT_EQ(rmdir(directory), 0);
}

}  // namespace
}  // namespace convserve
