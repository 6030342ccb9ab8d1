// geometry.h: layer resolution (broadcast, spans, weight shape) and the pads
// of every preset, with the reference values of the frameworks' own rules.
#include "core/geometry.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace convserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Pads = std::pair<int64_t, int64_t>;

TEST(PresetPadsTest, SameUpperPutsTheOddCellAtTheEnd) {
  // Keras "same", n = 9, k = 6, s = 1: pads (2, 3), 9 outputs.
  EXPECT_EQ(PresetPads(PaddingPreset::kSameUpper, 9, 1, 6), Pads(2, 3));
  // n = 9, k = 5, s = 2: ceil(9 / 2) = 5 outputs, total (5-1)*2 + 5 - 9 = 4.
  EXPECT_EQ(PresetPads(PaddingPreset::kSameUpper, 9, 2, 5), Pads(2, 2));
  // n = 9, k = 6, s = 2: total (5-1)*2 + 6 - 9 = 5.
  EXPECT_EQ(PresetPads(PaddingPreset::kSameUpper, 9, 2, 6), Pads(2, 3));
  // A stride larger than the window needs no padding at all (total < 0 -> 0).
  EXPECT_EQ(PresetPads(PaddingPreset::kSameUpper, 10, 5, 1), Pads(0, 0));
}

TEST(PresetPadsTest, SameLowerPutsTheOddCellAtTheBeginning) {
  EXPECT_EQ(PresetPads(PaddingPreset::kSameLower, 9, 1, 6), Pads(3, 2));
  EXPECT_EQ(PresetPads(PaddingPreset::kSameLower, 9, 2, 6), Pads(3, 2));
}

TEST(PresetPadsTest, CausalPadsTheSpanBeforeTheSignal) {
  // k = 3, d = 2: span 5, begin d * (k - 1) = 4.
  EXPECT_EQ(PresetPads(PaddingPreset::kCausal, 7, 1, 5), Pads(4, 0));
  EXPECT_EQ(PresetPads(PaddingPreset::kValid, 7, 1, 5), Pads(0, 0));
}

TEST(PresetPadsTest, NeverOverflowsWithAHugeSpan) {
  const int64_t span = INT64_MAX - 8;
  const Pads pads = PresetPads(PaddingPreset::kSameUpper, 9, 1, span);
  EXPECT_EQ(pads.first + pads.second, span - 1);
}

TEST(ResolveLayerTest, BroadcastsPerAxisFieldsToTrailingAxes) {
  ConvSpec spec;
  spec.spatial_rank = 2;
  spec.in_channels = 4;
  spec.out_channels = 6;
  spec.groups = 2;
  spec.kernel = {3, 5};
  spec.stride = {2};
  spec.dilation = {1, 3};
  spec.pad_begin = {1};
  absl::StatusOr<ResolvedLayer> layer = ResolveLayer(spec);
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_THAT(layer->kernel, ElementsAre(1, 3, 5));
  EXPECT_THAT(layer->stride, ElementsAre(1, 2, 2));
  EXPECT_THAT(layer->dilation, ElementsAre(1, 1, 3));
  EXPECT_THAT(layer->span, ElementsAre(1, 3, 13));  // 3 * (5 - 1) + 1
  EXPECT_THAT(layer->pad_begin, ElementsAre(0, 1, 1));
  EXPECT_THAT(layer->pad_end, ElementsAre(0, 0, 0));
  EXPECT_THAT(layer->weight_shape, ElementsAre(6, 2, 3, 5));
  EXPECT_EQ(layer->weight_elements(), 6 * 2 * 3 * 5);
  EXPECT_EQ(layer->bias_elements(), 6);
}

TEST(ResolveLayerTest, ResolvesTheActivationDefault) {
  ConvSpec spec;
  spec.spatial_rank = 1;
  spec.in_channels = spec.out_channels = 1;
  spec.kernel = {1};
  spec.activation = Activation::kLeakyRelu;
  EXPECT_FLOAT_EQ(ResolveLayer(spec)->activation_alpha, 0.01f);
  spec.activation_alpha = 0.2f;
  EXPECT_FLOAT_EQ(ResolveLayer(spec)->activation_alpha, 0.2f);
}

TEST(ResolveLayerTest, OutOfRangeEnumsNameTheFieldAndTheChoices) {
  ConvSpec spec;
  spec.spatial_rank = 1;
  spec.in_channels = spec.out_channels = 1;
  spec.kernel = {1};
  spec.weight_layout = static_cast<WeightLayout>(5);
  absl::Status status = ResolveLayer(spec).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("weight_layout: expected one of oihw, hwio, got value 5"));
}

TEST(ResolveGeometryTest, GeometryCarriesTheLayersResolvedValues) {
  ConvSpec spec;
  spec.spatial_rank = 1;
  spec.in_channels = spec.out_channels = 1;
  spec.kernel = {6};
  spec.stride = {2};
  spec.padding = PaddingPreset::kSameUpper;
  absl::StatusOr<ResolvedLayer> layer = ResolveLayer(spec);
  ASSERT_TRUE(layer.ok());
  absl::StatusOr<ConvGeometry> g = ResolveGeometry(*layer, {1, 1, 9});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->span[2], 6);
  EXPECT_EQ(g->pad_begin[2], 2);
  EXPECT_EQ(g->pad_end[2], 3);
  EXPECT_EQ(g->output[2], 5);  // 10 21 33 35 24
  EXPECT_THAT(OutputShape(*g), ElementsAre(1, 1, 5));
  EXPECT_EQ(g->macs(), 5 * 6);
}

TEST(ResolveGeometryTest, UnusedStrideAndDilationAreCappedAtThePaddedLength) {
  ConvSpec spec;
  spec.spatial_rank = 2;
  spec.in_channels = spec.out_channels = 4;
  spec.kernel = {1, 3};
  spec.stride = {INT64_MAX};
  spec.dilation = {INT64_MAX / 2, 1};
  spec.pad_end = {0, 2};
  absl::StatusOr<ConvGeometry> g = ResolveGeometry(spec, {1, 4, 5, 6});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(g->output, ElementsAre(1, 1, 1));
  // One window per axis: the same windows as with any stride >= the padded length.
  EXPECT_THAT(g->stride, ElementsAre(1, 5, 8));
  EXPECT_THAT(g->dilation, ElementsAre(1, 5, 1));  // kernel 1 on H: no dilation is used
}

TEST(ResolveGeometryTest, APaddedInputBeyond64BitsIsRefused) {
  ConvSpec spec;
  spec.spatial_rank = 1;
  spec.in_channels = spec.out_channels = 8;
  spec.kernel = {1};
  spec.stride = {int64_t{1} << 61};
  spec.pad_begin = {int64_t{1} << 61};
  spec.pad_end = {int64_t{1} << 61};
  absl::Status status = ResolveGeometry(spec, {1, 8, 1}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("padded input"));
  EXPECT_THAT(status.message(), HasSubstr("overflows 64 bits"));
}

}  // namespace
}  // namespace convserve
