// ConvOperator: what it refuses at creation and at run time, and that both
// kernel paths run a layer.
#include <vector>

#include "core/conv.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace convserve {
namespace {

using ::testing::HasSubstr;

ConvSpec SmallLayer() {
  ConvSpec spec;
  spec.spatial_rank = 2;
  spec.in_channels = 2;
  spec.out_channels = 3;
  spec.kernel = {3};
  spec.padding = PaddingPreset::kSameUpper;
  return spec;
}

TEST(ConvOperatorTest, RefusesWeightsAndBiasOfTheWrongSize) {
  const ConvSpec spec = SmallLayer();
  std::vector<float> weight(3 * 2 * 9), bias(3);
  absl::StatusOr<std::unique_ptr<ConvOperator>> op =
      ConvOperator::Create(spec, absl::MakeConstSpan(weight).subspan(1), bias);
  EXPECT_EQ(op.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(op.status().message(),
              HasSubstr("weight: expected 54 values for shape [3, 2, 3, 3], got 53"));
  op = ConvOperator::Create(spec, weight, {});
  EXPECT_THAT(op.status().message(), HasSubstr("bias: expected 3 values (out_channels), got 0"));
  ConvSpec no_bias = spec;
  no_bias.bias = false;
  op = ConvOperator::Create(no_bias, weight, bias);
  EXPECT_THAT(op.status().message(), HasSubstr("bias = false"));
  ConvSpec bad = spec;
  bad.groups = 4;
  EXPECT_EQ(ConvOperator::Create(bad, weight, bias).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ConvOperatorTest, RunChecksTheInputAgainstTheShape) {
  std::vector<float> weight(54, 1.0f), bias(3, 0.0f);
  for (KernelPath path : {KernelPath::kAuto, KernelPath::kReference}) {
    absl::StatusOr<std::unique_ptr<ConvOperator>> op =
        ConvOperator::Create(SmallLayer(), weight, bias, path);
    ASSERT_TRUE(op.ok()) << op.status();
    std::vector<float> input(2 * 4 * 5, 1.0f), output;
    std::vector<int64_t> output_shape;
    absl::Status status =
        (*op)->Run({1, 2, 4, 5}, absl::MakeConstSpan(input).subspan(1), &output, &output_shape);
    EXPECT_THAT(status.message(),
                HasSubstr("input: expected 40 values for shape [1, 2, 4, 5], got 39"));
    ASSERT_TRUE((*op)->Run({1, 2, 4, 5}, input, &output, &output_shape).ok());
    EXPECT_THAT(output_shape, ::testing::ElementsAre(1, 3, 4, 5));
    // Interior cells see all 2 * 9 ones; a corner sees 2 * 4.
    EXPECT_FLOAT_EQ(output[1 * 5 + 1], 18.0f);
    EXPECT_FLOAT_EQ(output[0], 8.0f);
  }
}

}  // namespace
}  // namespace convserve

namespace convserve {
namespace {

// Padding far wider than the input must not make any path allocate in
// proportion to the padding (a request of a few bytes could ask for GiBs).
TEST(ConvOperatorTest, PaddingFarWiderThanTheInputStaysCheap) {
  ConvSpec spec;
  spec.spatial_rank = 1;
  spec.in_channels = spec.out_channels = 1;
  spec.kernel = {1};
  spec.stride = {int64_t{1} << 19};
  spec.pad_begin = spec.pad_end = {int64_t{1} << 20};
  const std::vector<float> weight = {2.0f}, bias = {0.5f}, input = {3.0f};
  for (KernelPath path : {KernelPath::kAuto, KernelPath::kReference}) {
    absl::StatusOr<std::unique_ptr<ConvOperator>> op =
        ConvOperator::Create(spec, weight, bias, path);
    ASSERT_TRUE(op.ok()) << op.status();
    std::vector<float> output;
    std::vector<int64_t> shape;
    ASSERT_TRUE((*op)->Run({1, 1, 1}, input, &output, &shape).ok());
    // Windows at padded cells 0, 2^19, 2^20 (the input cell), 3 * 2^19, 2^21.
    EXPECT_THAT(output, ::testing::ElementsAre(0.5f, 0.5f, 6.5f, 0.5f, 0.5f));
  }
}

// Scratch that grows with kernel and output extents (not with the tensors)
// is bounded: past the limit the fast path refuses instead of allocating.
TEST(ConvOperatorTest, GeometryNeedingHugeScratchIsRefusedNotAllocated) {
  ConvSpec spec;
  spec.spatial_rank = 1;
  spec.in_channels = spec.out_channels = 2;
  spec.kernel = {int64_t{1} << 12};
  spec.dilation = {1};
  spec.pad_begin = spec.pad_end = {int64_t{1} << 16};
  spec.bias = false;
  const std::vector<float> weight(size_t{2} * 2 << 12, 1.0f), input(2, 1.0f);
  absl::StatusOr<std::unique_ptr<ConvOperator>> op = ConvOperator::Create(spec, weight, {});
  ASSERT_TRUE(op.ok()) << op.status();
  std::vector<float> output;
  absl::Status status = (*op)->Run({1, 2, 1}, input, &output, nullptr);
  if ((*op)->KernelName(*ResolveGeometry(spec, {1, 2, 1})) == "f32-conv-reference-scalar") {
    GTEST_SKIP() << "no fast path on this CPU";
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(status.message(), HasSubstr("bytes of scratch memory"));
}

}  // namespace
}  // namespace convserve
