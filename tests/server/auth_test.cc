// CheckBearerToken and ReadTokenFile: optional bearer-token authentication.
#include "server/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace convserve {
namespace {

using ::testing::HasSubstr;

TEST(AuthTest, ChecksBearerToken) {
  std::multimap<grpc::string_ref, grpc::string_ref> metadata;
  EXPECT_EQ(CheckBearerToken(metadata, "abc").code(), absl::StatusCode::kUnauthenticated);
  metadata.emplace("authorization", "Bearer abc");
  EXPECT_TRUE(CheckBearerToken(metadata, "abc").ok());
  EXPECT_EQ(CheckBearerToken(metadata, "abd").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(CheckBearerToken(metadata, "abcd").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(CheckBearerToken(metadata, "ab").code(), absl::StatusCode::kUnauthenticated);
  metadata.clear();
  metadata.emplace("authorization", "Basic abc");
  EXPECT_THAT(std::string(CheckBearerToken(metadata, "abc").message()), HasSubstr("Bearer"));
  EXPECT_EQ(ReadTokenFile("/nonexistent/token").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace convserve
