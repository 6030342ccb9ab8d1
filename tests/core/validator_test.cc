// The validator: shapes and pads for every preset, the report's counts and
// explanations, framework verdicts, and one test per class of bad input
// (docs/RELIABILITY.md rows 4-8 at the core level), each checking code and message.
#include "core/validator.h"

#include <cstdint>
#include <string>
#include <vector>

#include "core/conv.h"
#include "core/geometry.h"
#include "core/tensor_shape.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace convserve {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

ConvSpec Conv2d(int64_t c_in, int64_t c_out, int64_t k) {
  ConvSpec spec;
  spec.spatial_rank = 2;
  spec.in_channels = c_in;
  spec.out_channels = c_out;
  spec.kernel = {k};
  return spec;
}

ConvSpec Conv1d(int64_t k, int64_t s, PaddingPreset preset) {
  ConvSpec spec;
  spec.spatial_rank = 1;
  spec.in_channels = spec.out_channels = 1;
  spec.kernel = {k};
  spec.stride = {s};
  spec.padding = preset;
  return spec;
}

// Expects INVALID_ARGUMENT whose message contains every fragment.
void ExpectInvalid(const absl::Status& status, const std::vector<std::string>& fragments) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  for (const std::string& fragment : fragments) {
    EXPECT_THAT(std::string(status.message()), HasSubstr(fragment));
  }
}

TEST(ValidateTest, ResNetStemReport) {
  ConvSpec spec = Conv2d(3, 64, 7);
  spec.stride = {2};
  spec.pad_begin = spec.pad_end = {3};
  absl::StatusOr<ShapeReport> report = Validate(spec, {1, 3, 224, 224});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->output_shape, ElementsAre(1, 64, 112, 112));
  EXPECT_THAT(report->weight_shape, ElementsAre(64, 3, 7, 7));
  EXPECT_THAT(report->bias_shape, ElementsAre(64));
  EXPECT_EQ(report->parameters, (7 * 7 * 3 + 1) * 64);  // the textbook (kH*kW*C_in + 1) * C_out
  EXPECT_EQ(report->macs, int64_t{64} * 112 * 112 * 3 * 49);
  EXPECT_EQ(report->flops, 2 * report->macs);
  ASSERT_EQ(report->axes.size(), 2u);
  const AxisReport& w = report->axes[1];
  EXPECT_EQ(w.span, 7);
  EXPECT_EQ(w.padded, 230);
  EXPECT_EQ(w.output, 112);
  EXPECT_EQ(w.unread_cells, 1);
  EXPECT_THAT(w.derivation, HasSubstr("floor((230-7)/2)+1 = 112"));
  // (230 - 7) mod 2 = 1 cell unread, and it is padding: no input cell is lost.
  for (const std::string& warning : report->warnings) {
    EXPECT_THAT(warning, ::testing::Not(HasSubstr("never read")));
  }
  ASSERT_EQ(report->frameworks.size(), 3u);
  EXPECT_TRUE(report->frameworks[0].accepted);
  EXPECT_THAT(report->frameworks[0].equivalent,
              HasSubstr("torch.nn.Conv2d(in_channels=3, out_channels=64, kernel_size=(7, 7), "
                        "stride=(2, 2), padding=(3, 3)"));
  EXPECT_FALSE(report->frameworks[1].accepted);  // Keras has no explicit symmetric pads
  EXPECT_THAT(report->frameworks[1].equivalent,
              HasSubstr("ZeroPadding2D(padding=((3, 3), (3, 3))"));
  EXPECT_TRUE(report->frameworks[2].accepted);
  EXPECT_THAT(report->frameworks[2].equivalent, HasSubstr("pads=[3, 3, 3, 3]"));
}

TEST(ValidateTest, SamePresetsFollowTensorFlowAtAnyStride) {
  // n = 9, s = 2: ceil(9 / 2) = 5 outputs (not floor = 4).
  for (int64_t k : {1, 2, 3, 4, 5, 6}) {
    for (int64_t s : {1, 2, 3}) {
      for (PaddingPreset preset : {PaddingPreset::kSameUpper, PaddingPreset::kSameLower}) {
        absl::StatusOr<ConvGeometry> g = ResolveGeometry(Conv1d(k, s, preset), {1, 1, 9});
        ASSERT_TRUE(g.ok()) << g.status();
        EXPECT_EQ(g->output[2], (9 + s - 1) / s) << "k=" << k << " s=" << s;
        const int64_t total = std::max<int64_t>(0, (g->output[2] - 1) * s + k - 9);
        EXPECT_EQ(g->pad_begin[2] + g->pad_end[2], total);
        EXPECT_EQ(g->pad_begin[2],
                  preset == PaddingPreset::kSameUpper ? total / 2 : total - total / 2);
      }
    }
  }
}

TEST(ValidateTest, KerasSameWithEvenKernelPadsTheEnd) {
  absl::StatusOr<ShapeReport> report = Validate(Conv1d(6, 1, PaddingPreset::kSameUpper), {1, 1, 9});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->axes[0].pad_begin, 2);
  EXPECT_EQ(report->axes[0].pad_end, 3);
  EXPECT_THAT(report->output_shape, ElementsAre(1, 1, 9));
  // PyTorch's own padding="same" (stride 1) gives the same pads.
  EXPECT_TRUE(report->frameworks[0].accepted);
  EXPECT_THAT(report->frameworks[0].equivalent, HasSubstr("padding='same'"));
  EXPECT_TRUE(report->frameworks[1].accepted);
  EXPECT_THAT(report->frameworks[1].equivalent, HasSubstr("padding='same'"));
  EXPECT_THAT(report->frameworks[2].equivalent, HasSubstr("auto_pad='SAME_UPPER'"));
}

TEST(ValidateTest, KerasSameAtStrideTwoTeachesTheFPadForm) {
  absl::StatusOr<ShapeReport> report = Validate(Conv1d(6, 2, PaddingPreset::kSameUpper), {1, 1, 9});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->output_shape, ElementsAre(1, 1, 5));
  const FrameworkVerdict& torch = report->frameworks[0];
  EXPECT_FALSE(torch.accepted);
  EXPECT_THAT(torch.reason, HasSubstr("padding='same' is refused for stride > 1"));
  EXPECT_THAT(torch.equivalent, HasSubstr("F.pad(x, (2, 3), mode='constant')"));
  EXPECT_THAT(torch.equivalent, HasSubstr("Conv1d(in_channels=1, out_channels=1, kernel_size=6, "
                                          "stride=2, padding=0"));
  EXPECT_TRUE(report->frameworks[1].accepted);
}

TEST(ValidateTest, CausalIsKerasConv1dOnly) {
  ConvSpec spec = Conv1d(3, 1, PaddingPreset::kCausal);
  spec.dilation = {2};
  absl::StatusOr<ShapeReport> report = Validate(spec, {1, 1, 10});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->axes[0].pad_begin, 4);
  EXPECT_EQ(report->axes[0].pad_end, 0);
  EXPECT_THAT(report->output_shape, ElementsAre(1, 1, 10));
  EXPECT_THAT(report->frameworks[1].equivalent, HasSubstr("padding='causal'"));
  EXPECT_TRUE(report->frameworks[1].accepted);
  EXPECT_FALSE(report->frameworks[0].accepted);
  EXPECT_THAT(report->frameworks[0].equivalent, HasSubstr("F.pad(x, (4, 0)"));
  EXPECT_THAT(report->frameworks[2].equivalent, HasSubstr("pads=[4, 0]"));

  ConvSpec causal2d = Conv2d(1, 1, 3);
  causal2d.padding = PaddingPreset::kCausal;
  report = Validate(causal2d, {1, 1, 5, 5});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->frameworks[1].accepted);
  EXPECT_THAT(report->frameworks[1].reason, HasSubstr("Conv1D only"));
}

TEST(ValidateTest, KerasRefusesStrideWithDilationAndShowsTheSubsampledForm) {
  ConvSpec spec = Conv2d(4, 8, 3);
  spec.stride = {2};
  spec.dilation = {2};
  spec.data_layout = DataLayout::kChannelsLast;
  absl::StatusOr<ShapeReport> report = Validate(spec, {1, 16, 16, 4});
  ASSERT_TRUE(report.ok()) << report.status();
  const FrameworkVerdict& keras = report->frameworks[1];
  EXPECT_FALSE(keras.accepted);
  EXPECT_THAT(keras.reason, HasSubstr("strides > 1 together with dilation_rate > 1"));
  EXPECT_THAT(keras.equivalent, HasSubstr("y = y[:, ::2, ::2, :]"));
  const FrameworkVerdict& onnx = report->frameworks[2];
  EXPECT_FALSE(onnx.accepted);
  EXPECT_THAT(onnx.reason, HasSubstr("channels_first"));
  EXPECT_THAT(report->frameworks[0].equivalent, HasSubstr("x.permute(0, 3, 1, 2)"));
}

TEST(ValidateTest, PaddingModesOutsideZerosAreExplained) {
  ConvSpec spec = Conv2d(2, 2, 3);
  spec.pad_begin = spec.pad_end = {1};
  spec.padding_mode = PaddingMode::kReflect;
  spec.weight_layout = WeightLayout::kSpatialInOut;
  absl::StatusOr<ShapeReport> report = Validate(spec, {1, 2, 5, 5});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->weight_shape, ElementsAre(3, 3, 2, 2));
  EXPECT_TRUE(report->frameworks[0].accepted);
  EXPECT_THAT(report->frameworks[0].equivalent, HasSubstr("padding_mode='reflect'"));
  EXPECT_THAT(report->frameworks[0].equivalent, HasSubstr("w.permute(3, 2, 0, 1)"));
  EXPECT_FALSE(report->frameworks[1].accepted);
  EXPECT_THAT(report->frameworks[1].equivalent, HasSubstr("mode='REFLECT'"));
  EXPECT_FALSE(report->frameworks[2].accepted);
  EXPECT_THAT(report->frameworks[2].equivalent,
              HasSubstr("Pad(x, pads=[0, 0, 1, 1, 0, 0, 1, 1], mode='reflect')"));
}

TEST(ValidateTest, EnforcingAFrameworkRefusesWhatItWouldRefuse) {
  ValidateOptions as_pytorch{true, Framework::kPyTorch};
  ExpectInvalid(Validate(Conv1d(6, 2, PaddingPreset::kSameUpper), {1, 1, 9}, as_pytorch).status(),
                {"PyTorch would refuse", "stride > 1"});
  EXPECT_TRUE(Validate(Conv1d(6, 1, PaddingPreset::kSameUpper), {1, 1, 9}, as_pytorch).ok());
}

TEST(ValidateTest, WarnsAboutCellsNoWindowReads) {
  // n = 10, k = 3, s = 4: windows at 0 and 4; (10 - 3) mod 4 = 3 cells never read.
  absl::StatusOr<ShapeReport> report = Validate(Conv1d(3, 4, PaddingPreset::kValid), {1, 1, 10});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->axes[0].unread_cells, 3);
  EXPECT_THAT(report->warnings,
              ::testing::Contains(AllOf(HasSubstr("the last 3 input cell(s) are never read"))));
  EXPECT_THAT(report->warnings,
              ::testing::Contains(HasSubstr("stride 4 exceeds the window span 3")));

  ConvSpec big = Conv1d(5, 1, PaddingPreset::kSameUpper);
  report = Validate(big, {1, 1, 3});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->warnings, ::testing::Contains(HasSubstr("larger than the unpadded input 3")));
}

TEST(ValidateTest, ThreeDimensionalDepthwiseChannelsLast) {
  ConvSpec spec;
  spec.spatial_rank = 3;
  spec.in_channels = 8;
  spec.out_channels = 16;
  spec.groups = 8;
  spec.kernel = {3, 1, 3};
  spec.bias = false;
  spec.data_layout = DataLayout::kChannelsLast;
  spec.weight_layout = WeightLayout::kSpatialInOut;
  absl::StatusOr<ShapeReport> report = Validate(spec, {2, 5, 6, 7, 8});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->output_shape, ElementsAre(2, 3, 6, 5, 16));
  EXPECT_THAT(report->weight_shape, ElementsAre(3, 1, 3, 1, 16));
  EXPECT_EQ(report->parameters, 9 * 16);
  EXPECT_EQ(report->macs, int64_t{2} * 16 * 3 * 6 * 5 * 1 * 9);
  EXPECT_TRUE(report->bias_shape.empty());
}

// --- Bad input (docs/RELIABILITY.md rows 4-8) -----------------------------------------------

TEST(ValidateErrorsTest, WrongRankNamesTheLayout) {  // row 4
  ExpectInvalid(Validate(Conv2d(3, 64, 3), {3, 224, 224}).status(),
                {"input: expected 4 dims (N, C, H, W) for a 2-D conv in channels_first, got "
                 "[3, 224, 224]"});
  ConvSpec last = Conv2d(3, 64, 3);
  last.data_layout = DataLayout::kChannelsLast;
  ExpectInvalid(Validate(last, {1, 224, 224}).status(), {"(N, H, W, C)", "channels_last"});
}

TEST(ValidateErrorsTest, ChannelCountDisagreeingWithTheLayout) {  // row 4
  ConvSpec spec = Conv2d(3, 8, 3);
  spec.data_layout = DataLayout::kChannelsLast;
  // An NCHW tensor sent as channels_last: dim 3 (C) is 224, not 3.
  ExpectInvalid(Validate(spec, {1, 3, 224, 224}).status(),
                {"input: expected 3 channels (in_channels) at dim 3", "got 224"});
}

TEST(ValidateErrorsTest, ZeroNegativeAndEmptyDimensions) {  // row 5
  ExpectInvalid(Validate(Conv2d(3, 8, 3), {1, 3, 0, 5}).status(),
                {"input: expected every dimension >= 1, got 0 at dim 2"});
  ExpectInvalid(Validate(Conv2d(3, 8, 3), {-1, 3, 5, 5}).status(), {"got -1 at dim 0"});
  ExpectInvalid(Validate(Conv2d(0, 8, 3), {1, 3, 5, 5}).status(),
                {"in_channels: expected >= 1, got 0"});
  ExpectInvalid(Validate(Conv2d(3, -2, 3), {1, 3, 5, 5}).status(),
                {"out_channels: expected >= 1, got -2"});
  // An empty (rank-0) tensor.
  ExpectInvalid(Validate(Conv2d(3, 8, 3), {}).status(), {"input: expected 4 dims", "got []"});
}

TEST(ValidateErrorsTest, OverflowingShapesAreRefusedBeforeAnyAllocation) {  // row 6
  const int64_t big = int64_t{1} << 32;
  ExpectInvalid(CheckedElementCount("input", {big, big, 2}).status(), {"overflows 64 bits"});
  ExpectInvalid(Validate(Conv2d(1, 1, 1), {big, 1, big, 2}).status(),
                {"input:", "overflows 64 bits"});
  // Element count fits, byte size does not.
  ExpectInvalid(CheckedElementCount("weight", {int64_t{1} << 62}).status(),
                {"byte size", "overflows"});
  // Output and MAC counts are checked too: a huge kernel on a padded input.
  ConvSpec spec = Conv2d(1 << 20, 1 << 20, 1);
  ExpectInvalid(Validate(spec, {1 << 20, 1 << 20, 1 << 10, 1 << 10}).status(),
                {"overflows 64 bits"});
  // MACs (about 2^63 - 2^46) fit in 64 bits, FLOPs = 2 * MACs do not.
  ConvSpec flops = Conv1d(int64_t{1} << 23, 1, PaddingPreset::kValid);
  ExpectInvalid(Validate(flops, {1, 1, int64_t{1} << 40}).status(),
                {"FLOP count", "overflows 64 bits"});
  ConvSpec wide = Conv1d(int64_t{1} << 40, 1, PaddingPreset::kValid);
  wide.dilation = {int64_t{1} << 40};
  ExpectInvalid(Validate(wide, {1, 1, 4}).status(), {"kernel:", "overflows 64 bits"});
}

TEST(ValidateErrorsTest, PayloadBytesMustMatchTheShape) {  // row 7
  ExpectInvalid(CheckPayloadBytes("weight", {64, 3, 7, 7}, 37636),
                {"weight: expected 37632 bytes for shape [64, 3, 7, 7] float32, got 37636"});
  ExpectInvalid(CheckPayloadBytes("input", {2, 2}, 15),
                {"expected 16 bytes", "got 15", "not a multiple of 4"});
  ExpectInvalid(CheckPayloadBytes("input", {2, 2}, 8), {"expected 16 bytes", "got 8"});
  EXPECT_TRUE(CheckPayloadBytes("input", {2, 2}, 16).ok());
}

TEST(ValidateErrorsTest, BadLayerParameters) {  // row 8
  ConvSpec spec = Conv2d(4, 8, 3);
  spec.stride = {0};
  ExpectInvalid(Validate(spec, {1, 4, 8, 8}).status(),
                {"stride: expected values >= 1, got 0 on axis H"});
  spec = Conv2d(4, 8, 3);
  spec.dilation = {1, 0};
  ExpectInvalid(Validate(spec, {1, 4, 8, 8}).status(),
                {"dilation: expected values >= 1, got 0 on axis W"});
  spec = Conv2d(4, 8, 0);
  ExpectInvalid(Validate(spec, {1, 4, 8, 8}).status(), {"kernel: expected values >= 1, got 0"});
  spec = Conv2d(4, 8, 3);
  spec.kernel = {3, 3, 3};
  ExpectInvalid(
      Validate(spec, {1, 4, 8, 8}).status(),
      {"kernel: expected 1 or 2 values (one per spatial axis H, W) for a 2-D conv, got 3"});
  spec = Conv2d(4, 8, 3);
  spec.kernel.clear();
  ExpectInvalid(Validate(spec, {1, 4, 8, 8}).status(),
                {"kernel: expected 1 or 2 values", "got none"});
  spec = Conv2d(4, 8, 9);
  ExpectInvalid(Validate(spec, {1, 4, 8, 8}).status(),
                {"kernel: the window spans 9 cells on axis H", "padded input has only 8"});
  spec = Conv2d(4, 6, 3);
  spec.groups = 4;
  ExpectInvalid(Validate(spec, {1, 4, 8, 8}).status(),
                {"groups: expected a divisor of out_channels (6), got 4"});
  spec = Conv2d(6, 4, 3);
  spec.groups = 4;
  ExpectInvalid(Validate(spec, {1, 6, 8, 8}).status(),
                {"groups: expected a divisor of in_channels (6), got 4"});
  spec = Conv2d(4, 4, 3);
  spec.groups = 0;
  ExpectInvalid(Validate(spec, {1, 4, 8, 8}).status(), {"groups: expected >= 1, got 0"});
  spec = Conv2d(4, 4, 3);
  spec.pad_begin = {1, -1};
  ExpectInvalid(Validate(spec, {1, 4, 8, 8}).status(),
                {"pad_begin: expected values >= 0, got -1 on axis W"});
  spec = Conv2d(4, 4, 3);
  spec.padding = PaddingPreset::kSameUpper;
  spec.pad_begin = {1};
  ExpectInvalid(Validate(spec, {1, 4, 8, 8}).status(),
                {"expected none with padding preset 'same_upper'"});
  spec.spatial_rank = 4;
  ExpectInvalid(Validate(spec, {1, 4, 8, 8}).status(), {"spatial_rank: expected 1, 2 or 3"});
}

TEST(ValidateErrorsTest, PaddingModeLimits) {  // row 8
  ConvSpec spec = Conv2d(1, 1, 3);
  spec.pad_begin = spec.pad_end = {3};
  spec.padding_mode = PaddingMode::kReflect;
  ExpectInvalid(
      Validate(spec, {1, 1, 3, 8}).status(),
      {"reflect padding needs pads <= input size - 1 = 2 on axis H (size 3), got pads (3, 3)"});
  spec.padding_mode = PaddingMode::kCircular;
  EXPECT_TRUE(Validate(spec, {1, 1, 3, 8}).ok());
  spec.pad_begin = spec.pad_end = {4};
  ExpectInvalid(Validate(spec, {1, 1, 3, 8}).status(),
                {"circular padding needs pads <= input size = 3"});
  spec.padding_mode = PaddingMode::kReplicate;
  EXPECT_TRUE(Validate(spec, {1, 1, 1, 1}).ok());
}

TEST(ValidateErrorsTest, OutOfRangeEnumsFromTheWire) {
  ConvSpec spec = Conv2d(1, 1, 1);
  spec.padding_mode = static_cast<PaddingMode>(9);
  ExpectInvalid(Validate(spec, {1, 1, 2, 2}).status(),
                {"padding_mode: expected one of", "got value 9"});
  spec = Conv2d(1, 1, 1);
  spec.activation = static_cast<Activation>(-1);
  ExpectInvalid(Validate(spec, {1, 1, 2, 2}).status(), {"activation: expected one of"});
}

TEST(ValidateTest, TheReportAndAdviceShowTheStrideAsWritten) {
  // The geometry caps a stride that only places one window; the person reading
  // the report sees the stride they wrote.
  ConvSpec spec = Conv2d(2, 2, 3);
  spec.stride = {INT64_MAX};
  absl::StatusOr<ShapeReport> report = Validate(spec, {1, 2, 5, 5});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->axes[0].stride, INT64_MAX);
  EXPECT_EQ(report->axes[0].output, 1);
  EXPECT_THAT(report->axes[0].derivation, HasSubstr("/9223372036854775807)+1 = 1"));
  EXPECT_THAT(report->frameworks[0].equivalent,
              HasSubstr("stride=(9223372036854775807, 9223372036854775807)"));
}

TEST(ResolveLayerTest, WeightShapeInBothLayoutsAndGroups) {
  ConvSpec spec = Conv2d(6, 4, 3);
  spec.groups = 2;
  EXPECT_THAT(ResolveLayer(spec)->weight_shape, ElementsAre(4, 3, 3, 3));
  spec.weight_layout = WeightLayout::kSpatialInOut;
  EXPECT_THAT(ResolveLayer(spec)->weight_shape, ElementsAre(3, 3, 3, 4));
}

}  // namespace
}  // namespace convserve
