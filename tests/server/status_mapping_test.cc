// ToGrpcStatus() and IsClientError(): the one place core errors become gRPC's.
#include "server/status_mapping.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace convserve
