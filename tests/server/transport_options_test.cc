// ValidateTransportOptions() and DescribeTransportOptions(): the connection flags.
#include "server/transport_options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace convserve {
namespace {

using ::testing::HasSubstr;

TEST(TransportOptionsTest, DefaultsAreValidAndFromTheFlags) {
  EXPECT_TRUE(ValidateTransportOptions(TransportOptions{}).ok());
  absl::StatusOr<TransportOptions> from_flags = TransportOptionsFromFlags();
  ASSERT_TRUE(from_flags.ok()) << from_flags.status();
  EXPECT_EQ(DescribeTransportOptions(*from_flags), DescribeTransportOptions(TransportOptions{}));
}

TEST(TransportOptionsTest, NamesTheFlagOutOfRange) {
  const auto error_with = [](auto change) {
    TransportOptions options;
    change(options);
    absl::Status status = ValidateTransportOptions(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    return std::string(status.message());
  };
  EXPECT_EQ(error_with([](TransportOptions& o) { o.max_connection_idle_s = -1; }),
            "--max_connection_idle_s: expected a value in 0..604800 (0 = never), got -1");
  EXPECT_EQ(error_with([](TransportOptions& o) { o.max_concurrent_streams = 0; }),
            "--max_concurrent_streams: expected a value in 1..100000, got 0");
  EXPECT_THAT(error_with([](TransportOptions& o) { o.handshake_timeout_s = 0; }),
              HasSubstr("--handshake_timeout_s"));
  EXPECT_THAT(error_with([](TransportOptions& o) { o.max_connection_age_s = 604801; }),
              HasSubstr("--max_connection_age_s"));
  EXPECT_THAT(error_with([](TransportOptions& o) { o.max_connection_age_grace_s = -1; }),
              HasSubstr("--max_connection_age_grace_s"));
  EXPECT_THAT(error_with([](TransportOptions& o) { o.keepalive_time_s = 0; }),
              HasSubstr("--keepalive_time_s"));
  EXPECT_THAT(error_with([](TransportOptions& o) { o.keepalive_timeout_s = 0; }),
              HasSubstr("--keepalive_timeout_s"));
  EXPECT_EQ(error_with([](TransportOptions& o) { o.listener_check_s = -1; }),
            "--listener_check_s: expected a value in 0..3600 (0 = never), got -1");
}

TEST(TransportOptionsTest, DescribesEveryValue) {
  EXPECT_EQ(DescribeTransportOptions(TransportOptions{}),
            "handshake_timeout_s=20 max_connection_idle_s=300 max_connection_age_s=3600 "
            "max_connection_age_grace_s=300 keepalive_time_s=60 keepalive_timeout_s=20 "
            "max_concurrent_streams=100 listener_check_s=5 min_client_ping_interval_s=10");
}

}  // namespace
}  // namespace convserve
