// ToGrpcStatus() and IsClientError(): the one place core errors become gRPC's.
#include "server/status_mapping.h"

#include <gtest/gtest.h>

#include <string>

namespace convserve {
namespace {

TEST(StatusMappingTest, KeepsCodeAndMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  grpc::Status status = ToGrpcStatus(absl::NotFoundError("name: no model named 'x'"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "name: no model named 'x'");
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("x")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // absl itself turns codes outside the canonical set into UNKNOWN.
  EXPECT_EQ(ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(77), "odd")).error_code(),
            grpc::StatusCode::UNKNOWN);
  EXPECT_TRUE(IsClientError(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(IsClientError(absl::StatusCode::kInternal));
}

// Every status goes through ToGrpcStatus: a message of megabytes would make
// the client refuse the trailers with RESOURCE_EXHAUSTED ("received initial
// metadata size exceeds limit") instead of the real code.
TEST(StatusMappingTest, CapsTheMessageAt1KiBAndKeepsTheCode) {
  const std::string huge = "kernel: " + std::string(3 << 20, '1');
  grpc::Status status = ToGrpcStatus(absl::InvalidArgumentError(huge));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message().size(), kMaxStatusMessageBytes);
  EXPECT_EQ(status.error_message().substr(0, 9), "kernel: 1");
  EXPECT_NE(status.error_message().find("...(cut: 3145736 bytes)"), std::string::npos);
  EXPECT_EQ(BoundedStatusMessage(absl::InvalidArgumentError(huge)), status.error_message());
  EXPECT_EQ(
      ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(77), huge)).error_message().size(),
      kMaxStatusMessageBytes);
}

}  // namespace
}  // namespace convserve
