// CheckLimits and CheckResponseSize: a request's sizes against the server's limits.
#include "server/limits.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/validator.h"

namespace convserve {
namespace {

using ::testing::HasSubstr;

// 2-D, 4 -> 8 channels, kernel 3x3, on [1, 4, 10, 10]: input 400 elements,
// output [1, 8, 8, 8] = 512, weight 288, 512 * 4 * 9 = 18432 MACs.
ConvSpec SmallSpec() {
  ConvSpec spec;
  spec.spatial_rank = 2;
  spec.in_channels = 4;
  spec.out_channels = 8;
  spec.kernel = {3};
  spec.bias = false;
  return spec;
}
const std::vector<int64_t> kSmallInput = {1, 4, 10, 10};

ConvGeometry SmallGeometry() {
  absl::StatusOr<ConvGeometry> geometry = ResolveGeometry(SmallSpec(), kSmallInput);
  EXPECT_TRUE(geometry.ok()) << geometry.status();
  return *geometry;
}

TEST(CheckLimitsTest, EachTensorAgainstMaxElements) {
  const ConvGeometry geometry = SmallGeometry();
  RequestLimits limits;
  limits.max_elements = 512;  // the largest tensor, the output, just fits
  EXPECT_TRUE(CheckLimits("", geometry, limits).ok());

  limits.max_elements = 511;
  absl::Status output = CheckLimits("layers[1].", geometry, limits);
  EXPECT_EQ(output.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(output.message(),
            "layers[1].output: 512 elements exceed the server limit of 511 elements per tensor "
            "(--max_elements)");

  limits.max_elements = 300;  // the input comes first
  EXPECT_EQ(CheckLimits("", geometry, limits).message(),
            "input: 400 elements exceed the server limit of 300 elements per tensor "
            "(--max_elements)");
  limits.max_elements = 450;
  EXPECT_THAT(std::string(CheckLimits("", geometry, limits).message()),
              HasSubstr("output: 512 elements"));
}

TEST(CheckLimitsTest, MacsAgainstMaxMacs) {
  const ConvGeometry geometry = SmallGeometry();
  ASSERT_EQ(geometry.macs(), 18432);
  // The limit counts what the shape report states.
  absl::StatusOr<ShapeReport> report = Validate(SmallSpec(), kSmallInput);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->macs, geometry.macs());

  RequestLimits limits;
  limits.max_macs = 18432;
  EXPECT_TRUE(CheckLimits("", geometry, limits).ok());
  limits.max_macs = 18431;
  absl::Status status = CheckLimits("", geometry, limits);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(),
            "layer: 18432 multiply-accumulates exceed the server limit of 18431 per request "
            "(--max_macs)");
}

TEST(CheckResponseSizeTest, PayloadAndOverheadAgainstMaxMessageBytes) {
  RequestLimits limits;
  limits.max_message_bytes = kResponseOverheadBytes + 2048;  // [1, 8, 8, 8] float32 just fits
  EXPECT_TRUE(CheckResponseSize({1, 8, 8, 8}, limits).ok());
  limits.max_message_bytes -= 1;
  absl::Status status = CheckResponseSize({1, 8, 8, 8}, limits);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(),
            "output: [1, 8, 8, 8] float32 is 2048 bytes, more than the server's send limit of "
            "6143 bytes per message (--max_message_bytes)");
}

TEST(CheckResponseSizeTest, OverflowingShapeIsRefused) {
  RequestLimits limits;
  absl::Status status = CheckResponseSize({int64_t{1} << 31, int64_t{1} << 31, 2}, limits);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(status.message()), HasSubstr("float32 is more than 2^63 bytes"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("(--max_message_bytes)"));
}

}  // namespace
}  // namespace convserve
