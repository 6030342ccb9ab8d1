// The reference kernel on hand-checkable cases: the reference-value table of
// docs/SEMANTICS.md, the padding modes, groups and layouts.
#include "core/reference_conv.h"

#include <cmath>
#include <vector>

#include "core/validator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace convserve {
namespace {

using ::testing::ElementsAreArray;

// Input 1..n, one channel, kernel of ones, no bias, Conv1D.
std::vector<float> OnesConv1d(int64_t n, int64_t k, int64_t s, PaddingPreset preset,
                              PaddingMode mode = PaddingMode::kZeros,
                              std::vector<int64_t> pads = {}) {
  ConvSpec spec;
  spec.spatial_rank = 1;
  spec.in_channels = spec.out_channels = 1;
  spec.kernel = {k};
  spec.stride = {s};
  spec.padding = preset;
  spec.padding_mode = mode;
  if (!pads.empty()) {
    spec.pad_begin = {pads[0]};
    spec.pad_end = {pads[1]};
  }
  spec.bias = false;
  absl::StatusOr<ConvGeometry> g = ResolveGeometry(spec, {1, 1, n});
  EXPECT_TRUE(g.ok()) << g.status();
  if (!g.ok()) return {};
  std::vector<float> x(n), w(k, 1.0f), y(g->output_elements());
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(i + 1);
  ReferenceConv(*g, x.data(), w.data(), nullptr, y.data());
  return y;
}

struct TableRow {
  int64_t k, s;
  std::vector<float> valid, same_upper;
};

TEST(ReferenceConvTest, SemanticsReferenceValueTable) {
  const TableRow rows[] = {
      {5, 1, {15, 20, 25, 30, 35}, {6, 10, 15, 20, 25, 30, 35, 30, 24}},
      {5, 2, {15, 25, 35}, {6, 15, 25, 35, 24}},
      {6, 1, {21, 27, 33, 39}, {10, 15, 21, 27, 33, 39, 35, 30, 24}},
      {6, 2, {21, 33}, {10, 21, 33, 35, 24}},
  };
  for (const TableRow& row : rows) {
    SCOPED_TRACE(testing::Message() << "k=" << row.k << " s=" << row.s);
    EXPECT_THAT(OnesConv1d(9, row.k, row.s, PaddingPreset::kValid), ElementsAreArray(row.valid));
    EXPECT_THAT(OnesConv1d(9, row.k, row.s, PaddingPreset::kSameUpper),
                ElementsAreArray(row.same_upper));
  }
}

TEST(ReferenceConvTest, SameLowerPutsTheOddCellFirst) {
  // k = 6: total pad 5, SAME_LOWER pads (3, 2): first window 0+0+0+1+2+3.
  EXPECT_THAT(OnesConv1d(9, 6, 1, PaddingPreset::kSameLower),
              ElementsAreArray({6, 10, 15, 21, 27, 33, 39, 35, 30}));
}

TEST(ReferenceConvTest, CausalPadsOnlyTheBeginning) {
  EXPECT_THAT(OnesConv1d(5, 3, 1, PaddingPreset::kCausal), ElementsAreArray({1, 3, 6, 9, 12}));
}

TEST(ReferenceConvTest, PaddingModesFillAsTheFrameworks) {
  // [1 2 3] padded 2 each side, kernel 1 picks the padded cells themselves.
  auto padded = [](PaddingMode mode) {
    return OnesConv1d(3, 1, 1, PaddingPreset::kExplicit, mode, {2, 2});
  };
  EXPECT_THAT(padded(PaddingMode::kZeros), ElementsAreArray({0, 0, 1, 2, 3, 0, 0}));
  EXPECT_THAT(padded(PaddingMode::kReflect), ElementsAreArray({3, 2, 1, 2, 3, 2, 1}));
  EXPECT_THAT(padded(PaddingMode::kReplicate), ElementsAreArray({1, 1, 1, 2, 3, 3, 3}));
  EXPECT_THAT(padded(PaddingMode::kCircular), ElementsAreArray({2, 3, 1, 2, 3, 1, 2}));
}

TEST(SourceIndexTest, MapsEveryPaddedCoordinate) {
  EXPECT_EQ(SourceIndex(PaddingMode::kZeros, -1, 4), -1);
  EXPECT_EQ(SourceIndex(PaddingMode::kZeros, 4, 4), -1);
  EXPECT_EQ(SourceIndex(PaddingMode::kReflect, -3, 4), 3);
  EXPECT_EQ(SourceIndex(PaddingMode::kReflect, 6, 4), 0);
  EXPECT_EQ(SourceIndex(PaddingMode::kReplicate, -5, 4), 0);
  EXPECT_EQ(SourceIndex(PaddingMode::kReplicate, 9, 4), 3);
  EXPECT_EQ(SourceIndex(PaddingMode::kCircular, -4, 4), 0);
  EXPECT_EQ(SourceIndex(PaddingMode::kCircular, 7, 4), 3);
}

TEST(ReferenceConvTest, GroupsReadTheirOwnChannelsAndLayoutsAgree) {
  // 2 groups, 2 in / 2 out channels, 1x1 kernel: out c reads only in c.
  ConvSpec spec;
  spec.spatial_rank = 2;
  spec.in_channels = spec.out_channels = spec.groups = 2;
  spec.kernel = {1};
  spec.bias = true;
  spec.activation = Activation::kRelu;
  absl::StatusOr<ConvGeometry> first = ResolveGeometry(spec, {1, 2, 1, 2});
  ASSERT_TRUE(first.ok()) << first.status();
  const std::vector<float> x_nchw = {1, 2, 3, 4};  // c0: 1 2, c1: 3 4
  const std::vector<float> w = {10, -1}, b = {0.5f, 1.0f};
  std::vector<float> y(4);
  ReferenceConv(*first, x_nchw.data(), w.data(), b.data(), y.data());
  EXPECT_THAT(y, ElementsAreArray({10.5f, 20.5f, 0.0f, 0.0f}));  // relu(-3+1), relu(-4+1)

  spec.data_layout = DataLayout::kChannelsLast;
  absl::StatusOr<ConvGeometry> last = ResolveGeometry(spec, {1, 1, 2, 2});
  ASSERT_TRUE(last.ok()) << last.status();
  const std::vector<float> x_nhwc = {1, 3, 2, 4};
  ReferenceConv(*last, x_nhwc.data(), w.data(), b.data(), y.data());
  EXPECT_THAT(y, ElementsAreArray({10.5f, 0.0f, 20.5f, 0.0f}));
}

TEST(ActivationTest, FormulasMatchTheFrameworks) {
  EXPECT_FLOAT_EQ(ApplyActivation(Activation::kRelu6, 0, 7.5f), 6.0f);
  EXPECT_FLOAT_EQ(ApplyActivation(Activation::kLeakyRelu, 0.01f, -2.0f), -0.02f);
  EXPECT_FLOAT_EQ(ApplyActivation(Activation::kElu, 1.0f, -1.0f), std::expm1(-1.0f));
  EXPECT_FLOAT_EQ(ApplyActivation(Activation::kSilu, 0, 1.0f), 1.0f / (1.0f + std::exp(-1.0f)));
  // GELU with erf: 0.5 * x * (1 + erf(x / sqrt 2)); torch.nn.functional.gelu(1.0) = 0.8413447.
  EXPECT_NEAR(ApplyActivation(Activation::kGelu, 0, 1.0f), 0.8413447f, 1e-6f);
  EXPECT_TRUE(std::isnan(ApplyActivation(Activation::kRelu, 0, std::nanf(""))));
  EXPECT_TRUE(std::isnan(ApplyActivation(Activation::kRelu6, 0, std::nanf(""))));
}

}  // namespace
}  // namespace convserve
