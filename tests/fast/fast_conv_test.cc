// fast_conv_test.cc: the fast operator (core/fast/) against the scalar reference, over
// seeded random layers that reach every path, every parameter and every remainder of the
// micro-kernel tiles, on every ISA this CPU has, at one and two threads.
//
// Tolerance: |y - ref| <= 1e-5 * S + 1e-6, where S is the reference run on
// |x|, |w|, |b| without activation (the size of the sum whose rounding is
// being bounded), times the activation's largest slope.
#include "core/fast/fast_conv.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/conv.h"
#include "core/reference_conv.h"
#include "gtest/gtest.h"
#include "tbb/task_arena.h"

namespace convserve {
namespace {

constexpr Activation kActivations[] = {
    Activation::kNone,      Activation::kRelu, Activation::kRelu6,
    Activation::kLeakyRelu, Activation::kElu,  Activation::kSigmoid,
    Activation::kTanh,      Activation::kSilu, Activation::kGelu};

std::string Describe(const ConvSpec& s, const std::vector<int64_t>& shape) {
  auto list = [](const std::vector<int64_t>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
    return out + "]";
  };
  return "input " + list(shape) + " cin " + std::to_string(s.in_channels) + " cout " +
         std::to_string(s.out_channels) + " groups " + std::to_string(s.groups) + " kernel " +
         list(s.kernel) + " stride " + list(s.stride) + " dilation " + list(s.dilation) +
         " preset " + std::string(PaddingPresetName(s.padding)) + " pads " + list(s.pad_begin) +
         "/" + list(s.pad_end) + " mode " + std::string(PaddingModeName(s.padding_mode)) + " act " +
         std::string(ActivationName(s.activation)) + " bias " + std::to_string(s.bias) + " " +
         std::string(DataLayoutName(s.data_layout)) + " " +
         std::string(WeightLayoutName(s.weight_layout));
}

// Largest |f'(x)| of the activation: how much a pre-activation error can grow.
float Slope(Activation activation, float alpha) {
  switch (activation) {
    case Activation::kLeakyRelu:
    case Activation::kElu:
      return std::max(1.0f, std::fabs(alpha));
    case Activation::kSilu:
    case Activation::kGelu:
      return 1.2f;
    default:
      return 1.0f;
  }
}

// Runs `spec` on `shape` through the fast path (at 1 and 2 threads) and the
// reference; returns false when the layer does not resolve (the caller draws
// another).
bool CheckLayer(const ConvSpec& spec, const std::vector<int64_t>& shape, std::mt19937* rng) {
  absl::StatusOr<ConvGeometry> geometry = ResolveGeometry(spec, shape);
  if (!geometry.ok()) return false;
  const ConvGeometry& g = *geometry;
  SCOPED_TRACE(Describe(spec, shape));

  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(g.input_elements()), w(g.weight_elements()), b(g.bias_elements());
  for (float& v : x) v = dist(*rng);
  for (float& v : w) v = dist(*rng);
  for (float& v : b) v = dist(*rng);

  std::vector<float> ref(g.output_elements()), bound(g.output_elements());
  ReferenceConv(g, x.data(), w.data(), b.empty() ? nullptr : b.data(), ref.data());
  ConvGeometry magnitude = g;
  magnitude.activation = Activation::kNone;
  std::vector<float> ax(x), aw(w), ab(b);
  for (float& v : ax) v = std::fabs(v);
  for (float& v : aw) v = std::fabs(v);
  for (float& v : ab) v = std::fabs(v);
  ReferenceConv(magnitude, ax.data(), aw.data(), ab.empty() ? nullptr : ab.data(), bound.data());
  const float slope = Slope(g.activation, g.activation_alpha);

  for (kernels::Isa isa : {kernels::Isa::kAvx2Fma, kernels::Isa::kAvx512f}) {
    if (!kernels::CpuSupports(isa)) continue;
    const std::unique_ptr<ConvOperator> op =
        kernels::CreateFastConvOperator(*ResolveLayer(spec), w, b, isa);
    for (int threads : {1, 2}) {
      SCOPED_TRACE("threads " + std::to_string(threads) + " kernel " + op->KernelName(g));
      // NaN fill: every output element must be written.
      std::vector<float> y(g.output_elements(), std::nanf(""));
      tbb::task_arena arena(threads);
      arena.execute([&] { EXPECT_TRUE(op->Run(g, x.data(), y.data()).ok()); });
      int reported = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        const float tolerance = slope * (1e-5f * bound[i] + 1e-6f);
        if (!(std::fabs(y[i] - ref[i]) <= tolerance) && reported++ < 5) {
          ADD_FAILURE() << "output " << i << " of " << y.size() << ": got " << y[i] << ", want "
                        << ref[i] << " (tolerance " << tolerance << ")";
        }
      }
      if (reported > 0) return true;
    }
  }
  return true;
}

int64_t Pick(std::mt19937* rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(*rng);
}

// One random layer. `kind` 0: dense, 1: grouped, 2: depthwise (multiplier 1
// or more).
ConvSpec RandomSpec(std::mt19937* rng, int kind, std::vector<int64_t>* shape) {
  ConvSpec s;
  s.spatial_rank = static_cast<int>(Pick(rng, 1, 3));
  const int64_t groups = kind == 0 ? 1 : Pick(rng, 2, 5);
  if (kind == 2) {
    s.groups = groups;
    s.in_channels = groups;
    s.out_channels = groups * (Pick(rng, 0, 2) == 0 ? Pick(rng, 2, 3) : 1);
    if (Pick(rng, 0, 3) == 0) s.in_channels = s.groups = s.out_channels = Pick(rng, 9, 40);
  } else {
    s.groups = groups;
    s.in_channels = groups * Pick(rng, 1, kind == 0 ? 21 : 6);
    s.out_channels = groups * Pick(rng, 1, kind == 0 ? 40 : 20);
  }
  const int64_t batch = Pick(rng, 1, 3);
  std::vector<int64_t> spatial;
  const bool explicit_pads = Pick(rng, 0, 2) > 0;
  for (int a = 0; a < s.spatial_rank; ++a) {
    const int64_t extent = s.spatial_rank == 3 ? Pick(rng, 1, 7) : Pick(rng, 1, 17);
    spatial.push_back(extent);
    s.kernel.push_back(Pick(rng, 1, std::min<int64_t>(4, extent + 2)));
    s.stride.push_back(Pick(rng, 0, 2) == 0 ? Pick(rng, 2, 3) : 1);
    s.dilation.push_back(Pick(rng, 0, 3) == 0 ? 2 : 1);
    if (explicit_pads) {
      s.pad_begin.push_back(Pick(rng, 0, 3));
      s.pad_end.push_back(Pick(rng, 0, 3));
    }
  }
  if (!explicit_pads) {
    const PaddingPreset presets[] = {PaddingPreset::kValid, PaddingPreset::kSameUpper,
                                     PaddingPreset::kSameLower, PaddingPreset::kCausal};
    s.padding = presets[Pick(rng, 0, 3)];
  }
  const PaddingMode modes[] = {PaddingMode::kZeros, PaddingMode::kReflect, PaddingMode::kReplicate,
                               PaddingMode::kCircular};
  s.padding_mode = modes[Pick(rng, 0, 3)];
  s.bias = Pick(rng, 0, 3) > 0;
  s.activation = kActivations[Pick(rng, 0, 8)];
  if (s.activation == Activation::kLeakyRelu || s.activation == Activation::kElu) {
    s.activation_alpha = Pick(rng, 0, 1) ? 0.3f : __builtin_nanf("");
  }
  s.data_layout = Pick(rng, 0, 1) ? DataLayout::kChannelsLast : DataLayout::kChannelsFirst;
  s.weight_layout = Pick(rng, 0, 1) ? WeightLayout::kSpatialInOut : WeightLayout::kOutInSpatial;
  shape->clear();
  shape->push_back(batch);
  if (s.data_layout == DataLayout::kChannelsFirst) shape->push_back(s.in_channels);
  shape->insert(shape->end(), spatial.begin(), spatial.end());
  if (s.data_layout == DataLayout::kChannelsLast) shape->push_back(s.in_channels);
  return s;
}

class FastConvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernels::CpuHasAvx2Fma()) GTEST_SKIP() << "CPU without AVX2 + FMA";
  }

  // Draws layers of `kind` until `count` resolved and were checked.
  void Sweep(uint32_t seed, int kind, int count) {
    std::mt19937 rng(seed);
    int checked = 0;
    for (int attempt = 0; checked < count && attempt < count * 20; ++attempt) {
      std::vector<int64_t> shape;
      const ConvSpec spec = RandomSpec(&rng, kind, &shape);
      if (CheckLayer(spec, shape, &rng)) ++checked;
      if (HasFailure()) return;
    }
    EXPECT_EQ(checked, count) << "too few random layers resolved";
  }
};

TEST_F(FastConvTest, RandomDenseLayers) { Sweep(1, 0, 250); }
TEST_F(FastConvTest, RandomGroupedLayers) { Sweep(2, 1, 150); }
TEST_F(FastConvTest, RandomDepthwiseLayers) { Sweep(3, 2, 150); }

// Output channels and widths around every tile edge (6x16 and 12x8 tiles,
// 8-lane vectors, 8x8 transposes), in both layouts and with padding.
TEST_F(FastConvTest, TileRemainders) {
  std::mt19937 rng(4);
  for (int64_t out_channels : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 65}) {
    for (int64_t width : {1, 5, 6, 7, 12, 13, 97}) {
      for (DataLayout layout : {DataLayout::kChannelsFirst, DataLayout::kChannelsLast}) {
        ConvSpec s;
        s.spatial_rank = 2;
        s.in_channels = 9;
        s.out_channels = out_channels;
        s.kernel = {3, 3};
        s.pad_begin = {1, 0};
        s.pad_end = {1, 2};
        s.data_layout = layout;
        const std::vector<int64_t> shape = layout == DataLayout::kChannelsFirst
                                               ? std::vector<int64_t>{2, 9, 3, width}
                                               : std::vector<int64_t>{2, 3, width, 9};
        ASSERT_TRUE(CheckLayer(s, shape, &rng));
        if (HasFailure()) return;
      }
    }
  }
}

// Depthwise layers with channel counts around every vector edge of both
// ISAs' tiles (8- and 16-lane vectors, 2 per tile, masked remainders) and
// output widths around their pixel tiles (4 on ymm; 8, then 4, then 1 on
// zmm), through both the border (indirection) and the interior (row) kernels.
TEST_F(FastConvTest, DepthwiseTileRemainders) {
  std::mt19937 rng(8);
  int index = 0;
  for (int64_t channels : {7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 47, 48, 65}) {
    for (int64_t width : {1, 3, 4, 7, 8, 9, 13, 16, 17, 30}) {
      for (DataLayout layout : {DataLayout::kChannelsFirst, DataLayout::kChannelsLast}) {
        ConvSpec s;
        s.spatial_rank = 2;
        s.in_channels = s.out_channels = s.groups = channels;
        const int64_t kw = index % 3 == 0 ? 5 : 3;  // The kw-3 kernels and a generic kw.
        s.kernel = {3, kw};
        s.stride = {1, index % 4 == 1 ? 2 : 1};
        s.pad_begin = {1, kw - 3};
        s.pad_end = {1, 2};
        s.activation = index % 5 == 0 ? Activation::kRelu6 : Activation::kNone;
        s.data_layout = layout;
        ++index;
        const std::vector<int64_t> shape = layout == DataLayout::kChannelsFirst
                                               ? std::vector<int64_t>{1, channels, 3, width}
                                               : std::vector<int64_t>{1, 3, width, channels};
        ASSERT_TRUE(CheckLayer(s, shape, &rng));
        if (HasFailure()) return;
      }
    }
  }
}

// Groups of 8 input and 8 output channels (the two-group AVX-512F kernel when
// their count is even, the 12x8 tile otherwise): widths around its 3-pixel
// tile, padding, strides, dilation, 1-D to 3-D, both layouts.
TEST_F(FastConvTest, EightChannelGroups) {
  std::mt19937 rng(10);
  int index = 0;
  for (int64_t groups : {2, 3, 4, 32}) {
    for (int64_t width : {1, 2, 3, 4, 5, 11}) {
      for (DataLayout layout : {DataLayout::kChannelsFirst, DataLayout::kChannelsLast}) {
        ConvSpec s;
        s.spatial_rank = 1 + index % 3;
        s.groups = groups;
        s.in_channels = s.out_channels = 8 * groups;
        s.kernel = {3};
        s.stride = {index % 4 == 1 ? 2 : 1};
        s.dilation = {index % 5 == 2 ? 2 : 1};
        s.padding = PaddingPreset::kSameUpper;
        s.padding_mode = index % 7 == 3 ? PaddingMode::kReflect : PaddingMode::kZeros;
        s.bias = index % 3 != 1;
        s.activation = kActivations[index % 9];
        s.data_layout = layout;
        ++index;
        std::vector<int64_t> shape = {1 + index % 2};
        if (layout == DataLayout::kChannelsFirst) shape.push_back(s.in_channels);
        for (int a = 1; a < s.spatial_rank; ++a) shape.push_back(3);
        shape.push_back(width);
        if (layout == DataLayout::kChannelsLast) shape.push_back(s.in_channels);
        if (!CheckLayer(s, shape, &rng)) continue;  // reflect wider than the input
        if (HasFailure()) return;
      }
    }
  }
}

// Wide channel counts (several K and channel blocks, transposes in 8x8
// blocks), 1x1 and 3x3, strided.
TEST_F(FastConvTest, WideChannels) {
  std::mt19937 rng(5);
  for (int64_t kernel : {1, 3}) {
    for (int64_t stride : {1, 2}) {
      for (DataLayout layout : {DataLayout::kChannelsFirst, DataLayout::kChannelsLast}) {
        ConvSpec s;
        s.spatial_rank = 2;
        s.in_channels = 70;
        s.out_channels = 600;
        s.kernel = {kernel};
        s.stride = {stride};
        s.padding = PaddingPreset::kSameUpper;
        s.data_layout = layout;
        s.activation = Activation::kRelu;
        const std::vector<int64_t> shape = layout == DataLayout::kChannelsFirst
                                               ? std::vector<int64_t>{1, 70, 9, 11}
                                               : std::vector<int64_t>{1, 9, 11, 70};
        ASSERT_TRUE(CheckLayer(s, shape, &rng));
        if (HasFailure()) return;
      }
    }
  }
}

// 1x1 layers on channels-first tensors (the reorder-free GEMM path, strided
// ones through a gathered panel): output channels and pixel counts around
// the 12x32 and 6x16 tiles, 1-D to 3-D, batch 2.
TEST_F(FastConvTest, PointwiseChannelsFirst) {
  std::mt19937 rng(7);
  int index = 0;
  for (int64_t out_channels : {1, 5, 6, 12, 13, 40}) {
    for (int64_t pixels : {1, 15, 16, 17, 32, 33, 300}) {
      for (int64_t stride : {1, 2}) {
        ConvSpec s;
        s.spatial_rank = 1 + index % 3;
        s.in_channels = 2 + index % 18;  // 1 -> 1 channel runs as depthwise.
        s.out_channels = out_channels;
        s.kernel = {1};
        s.stride = {stride};
        s.bias = index % 4 != 0;
        s.activation = kActivations[index % 9];
        s.weight_layout = index % 2 ? WeightLayout::kSpatialInOut : WeightLayout::kOutInSpatial;
        std::vector<int64_t> shape = {2, s.in_channels};
        for (int a = 1; a < s.spatial_rank; ++a) shape.push_back(a == 1 ? 3 : 2);
        shape.push_back(pixels);
        ++index;
        absl::StatusOr<ConvGeometry> g = ResolveGeometry(s, shape);
        ASSERT_TRUE(g.ok()) << g.status();
        const std::vector<float> w(s.in_channels * out_channels), b(s.bias ? out_channels : 0);
        absl::StatusOr<std::unique_ptr<ConvOperator>> op = ConvOperator::Create(s, w, b);
        ASSERT_TRUE(op.ok()) << op.status();
        EXPECT_EQ((*op)->KernelName(*g).rfind("f32-gemm-", 0), 0u) << (*op)->KernelName(*g);
        ASSERT_TRUE(CheckLayer(s, shape, &rng));
        if (HasFailure()) return;
      }
    }
  }
}

// Every padding mode and activation on the smallest layers: single-element
// inputs and kernels that cover the whole padded input.
TEST_F(FastConvTest, TinyLayersEveryModeAndActivation) {
  std::mt19937 rng(6);
  for (PaddingMode mode : {PaddingMode::kZeros, PaddingMode::kReflect, PaddingMode::kReplicate,
                           PaddingMode::kCircular}) {
    for (Activation activation : kActivations) {
      for (int64_t extent : {1, 2, 3}) {
        ConvSpec s;
        s.spatial_rank = 2;
        s.in_channels = 2;
        s.out_channels = 3;
        s.kernel = {3};
        const int64_t pad = mode == PaddingMode::kReflect ? std::min<int64_t>(1, extent - 1) : 1;
        s.pad_begin = {pad};
        s.pad_end = {pad};
        s.padding_mode = mode;
        s.activation = activation;
        if (extent + 2 * pad < 3) continue;
        ASSERT_TRUE(CheckLayer(s, {1, 2, extent, extent}, &rng)) << extent;
        if (HasFailure()) return;
      }
    }
  }
}

// Strides and dilations far beyond the input (2^63 - 1: the request fuzzer
// found `stride_w * channels` overflowing on the depthwise channels-last
// path) place the same windows as small ones; under UBSan (the test
// command's sanitizer run) any overflowing product aborts the test.
TEST_F(FastConvTest, StridesAndDilationsBeyondThePaddedInput) {
  std::mt19937 rng(9);
  constexpr int64_t kHuge = INT64_MAX;
  for (DataLayout layout : {DataLayout::kChannelsLast, DataLayout::kChannelsFirst}) {
    for (int64_t groups : {int64_t{4}, int64_t{1}}) {
      ConvSpec s;
      s.spatial_rank = 2;
      s.in_channels = 4;
      s.out_channels = 4;
      s.groups = groups;
      s.data_layout = layout;
      const std::vector<int64_t> shape = layout == DataLayout::kChannelsLast
                                             ? std::vector<int64_t>{1, 5, 6, 4}
                                             : std::vector<int64_t>{1, 4, 5, 6};
      s.kernel = {3};
      s.stride = {kHuge};
      ASSERT_TRUE(CheckLayer(s, shape, &rng));
      s.stride = {2, kHuge};
      s.pad_begin = {1};
      s.pad_end = {2};
      ASSERT_TRUE(CheckLayer(s, shape, &rng));
      // A dilation only matters with kernel > 1; with kernel 1 any dilation is valid.
      s.kernel = {1, 3};
      s.dilation = {kHuge / 2, 1};
      s.stride = {1, kHuge};
      ASSERT_TRUE(CheckLayer(s, shape, &rng));
      if (HasFailure()) return;
    }
  }
}

// Run() is const and may be called concurrently (the server does): four
// callers, each in its own arena, on one operator with per-thread scratch.
TEST_F(FastConvTest, ConcurrentRunsAgreeWithReference) {
  for (DataLayout layout : {DataLayout::kChannelsFirst, DataLayout::kChannelsLast}) {
    for (int64_t groups : {1, 24}) {  // GEMM and depthwise paths.
      ConvSpec s;
      s.spatial_rank = 2;
      s.in_channels = 24;
      s.out_channels = 24;
      s.groups = groups;
      s.kernel = {3};
      s.pad_begin = {1};
      s.pad_end = {1};
      s.data_layout = layout;
      const std::vector<int64_t> shape = layout == DataLayout::kChannelsFirst
                                             ? std::vector<int64_t>{2, 24, 19, 23}
                                             : std::vector<int64_t>{2, 19, 23, 24};
      absl::StatusOr<ConvGeometry> g = ResolveGeometry(s, shape);
      ASSERT_TRUE(g.ok()) << g.status();
      std::mt19937 rng(8);
      std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
      std::vector<float> x(g->input_elements()), w(g->weight_elements()), b(24);
      for (float& v : x) v = dist(rng);
      for (float& v : w) v = dist(rng);
      for (float& v : b) v = dist(rng);
      std::vector<float> ref(g->output_elements());
      ReferenceConv(*g, x.data(), w.data(), b.data(), ref.data());
      absl::StatusOr<std::unique_ptr<ConvOperator>> op = ConvOperator::Create(s, w, b);
      ASSERT_TRUE(op.ok()) << op.status();
      std::vector<std::vector<float>> outputs(4, std::vector<float>(ref.size()));
      std::vector<std::thread> callers;
      for (int c = 0; c < 4; ++c) {
        callers.emplace_back([&, c] {
          tbb::task_arena arena(2);
          for (int repeat = 0; repeat < 20; ++repeat) {
            arena.execute([&] { (void)(*op)->Run(*g, x.data(), outputs[c].data()); });
          }
        });
      }
      for (std::thread& caller : callers) caller.join();
      for (const std::vector<float>& y : outputs) {
        for (size_t i = 0; i < y.size(); ++i) {
          ASSERT_NEAR(y[i], ref[i], 1e-4) << "output " << i << " groups " << groups;
        }
      }
    }
  }
}

// One operator run over more input shapes than its tap-offset cache keeps
// (same_upper padding: the pads follow the input), three rounds, each run on
// a fresh input buffer and with the batch size changing between rounds, so
// cached offsets are reused on other buffers and images, evicted and rebuilt;
// small and wide channel counts reach both the merged-Kw and per-tap layouts.
TEST_F(FastConvTest, RepeatedGeometriesReuseTapOffsets) {
  const std::vector<std::pair<int64_t, int64_t>> extents = {{9, 13}, {8, 8},  {9, 13}, {5, 21},
                                                            {1, 7},  {12, 6}, {7, 9}};
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t channels : {3, 40}) {
    for (DataLayout layout : {DataLayout::kChannelsFirst, DataLayout::kChannelsLast}) {
      ConvSpec s;
      s.spatial_rank = 2;
      s.in_channels = channels;
      s.out_channels = 20;
      s.kernel = {3, 5};
      s.stride = {1, 2};
      s.padding = PaddingPreset::kSameUpper;
      s.data_layout = layout;
      std::vector<float> w(static_cast<size_t>(20 * channels * 15)), b(20);
      for (float& v : w) v = dist(rng);
      for (float& v : b) v = dist(rng);
      for (kernels::Isa isa : {kernels::Isa::kAvx2Fma, kernels::Isa::kAvx512f}) {
        if (!kernels::CpuSupports(isa)) continue;
        const std::unique_ptr<ConvOperator> op =
            kernels::CreateFastConvOperator(*ResolveLayer(s), w, b, isa);
        for (int64_t round = 0; round < 3; ++round) {
          for (const auto& [h, width] : extents) {
            const int64_t batch = 1 + round;
            const std::vector<int64_t> shape =
                layout == DataLayout::kChannelsFirst
                    ? std::vector<int64_t>{batch, channels, h, width}
                    : std::vector<int64_t>{batch, h, width, channels};
            absl::StatusOr<ConvGeometry> g = ResolveGeometry(s, shape);
            ASSERT_TRUE(g.ok()) << g.status();
            SCOPED_TRACE(Describe(s, shape) + " round " + std::to_string(round));
            std::vector<float> x(g->input_elements());
            for (float& v : x) v = dist(rng);
            std::vector<float> ref(g->output_elements()), y(g->output_elements(), std::nanf(""));
            ReferenceConv(*g, x.data(), w.data(), b.data(), ref.data());
            tbb::task_arena arena(1 + round % 2);
            arena.execute([&] { ASSERT_TRUE(op->Run(*g, x.data(), y.data()).ok()); });
            for (size_t i = 0; i < y.size(); ++i) {
              ASSERT_NEAR(y[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << "output " << i;
            }
          }
        }
      }
    }
  }
}

// kAuto picks a fast kernel; kReference keeps the oracle.
TEST_F(FastConvTest, DispatchByKernelPath) {
  ConvSpec s;
  s.spatial_rank = 2;
  s.in_channels = 4;
  s.out_channels = 32;
  s.kernel = {3};
  const std::vector<float> w(4 * 32 * 9, 0.5f), b(32, 0.0f);
  absl::StatusOr<ConvGeometry> g = ResolveGeometry(s, {1, 4, 8, 8});
  ASSERT_TRUE(g.ok()) << g.status();
  absl::StatusOr<std::unique_ptr<ConvOperator>> fast = ConvOperator::Create(s, w, b);
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_EQ((*fast)->KernelName(*g).find("reference"), std::string::npos);
  const std::string expected = kernels::BestIsa() == kernels::Isa::kAvx512f
                                   ? "f32-igemm-8x32-avx512f"
                                   : "f32-igemm-6x16-avx2-fma";
  EXPECT_EQ((*fast)->KernelName(*g), expected);
  absl::StatusOr<std::unique_ptr<ConvOperator>> reference =
      ConvOperator::Create(s, w, b, KernelPath::kReference);
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_NE((*reference)->KernelName(*g).find("reference"), std::string::npos);
}

// The docs/SEMANTICS.md reference values, computed by the fast path (input 1..9,
// kernel of ones, one channel, Conv1D), so a wrong reference cannot hide a
// wrong kernel.
TEST_F(FastConvTest, SemanticsReferenceValues) {
  struct Row {
    int64_t k, s;
    std::vector<float> same_upper;
  };
  const Row rows[] = {{5, 1, {6, 10, 15, 20, 25, 30, 35, 30, 24}},
                      {5, 2, {6, 15, 25, 35, 24}},
                      {6, 1, {10, 15, 21, 27, 33, 39, 35, 30, 24}},
                      {6, 2, {10, 21, 33, 35, 24}}};
  for (const Row& row : rows) {
    ConvSpec s;
    s.spatial_rank = 1;
    s.in_channels = s.out_channels = 1;
    s.kernel = {row.k};
    s.stride = {row.s};
    s.padding = PaddingPreset::kSameUpper;
    s.bias = false;
    std::vector<float> x(9), w(row.k, 1.0f), y;
    for (int i = 0; i < 9; ++i) x[i] = static_cast<float>(i + 1);
    absl::StatusOr<std::unique_ptr<ConvOperator>> op = ConvOperator::Create(s, w, {});
    ASSERT_TRUE(op.ok()) << op.status();
    ASSERT_TRUE((*op)->Run({1, 1, 9}, x, &y, nullptr).ok());
    EXPECT_EQ(y, row.same_upper) << "k=" << row.k << " s=" << row.s;
  }
}

}  // namespace
}  // namespace convserve
