// batch_invariance_test.cc: a sample's output does not depend on the batch it
// runs in. Dynamic batching (server/batcher.h) merges calls along N and
// promises each call the bits it would get alone; that holds only if every
// path picks the same kernel and the same reduction order for a batch of N as
// for one sample. Here each layer runs on a batch and on each of its samples
// alone, on every path (indirect GEMM tiles, pointwise GEMM, depthwise,
// Winograd, reference), every ISA this CPU has, at one and two threads (and each
// sample alone also on one thread), and the bits must be equal.
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/conv.h"
#include "core/fast/fast_conv.h"
#include "gtest/gtest.h"
#include "tbb/task_arena.h"

namespace convserve {
namespace {

struct Case {
  std::string name;
  ConvSpec spec;
  std::vector<int64_t> sample_shape;  // the input's shape without N
};

ConvSpec Layer(int rank, int64_t in, int64_t out, std::vector<int64_t> kernel, DataLayout layout) {
  ConvSpec s;
  s.spatial_rank = rank;
  s.in_channels = in;
  s.out_channels = out;
  s.kernel = std::move(kernel);
  s.data_layout = layout;
  s.bias = true;
  return s;
}

std::vector<Case> Cases() {
  constexpr DataLayout kFirst = DataLayout::kChannelsFirst;
  constexpr DataLayout kLast = DataLayout::kChannelsLast;
  std::vector<Case> cases;
  // The benchmark model's layer: 3x3 16 -> 16, padded.
  ConvSpec c = Layer(2, 16, 16, {3, 3}, kFirst);
  c.padding = PaddingPreset::kSameUpper;
  c.activation = Activation::kRelu;
  cases.push_back({"3x3 16->16 nchw", c, {16, 32, 32}});
  c = Layer(2, 3, 8, {3, 3}, kLast);  // narrow groups: the 12x8 tile
  c.pad_begin = {1, 0};
  c.pad_end = {1, 2};
  c.padding_mode = PaddingMode::kReflect;
  cases.push_back({"3x3 3->8 nhwc reflect", c, {13, 11, 3}});
  c = Layer(2, 12, 40, {3, 3}, kFirst);  // wide: the 8x32 / 6x16 tiles
  c.stride = {2};
  c.padding = PaddingPreset::kSameUpper;
  c.activation = Activation::kGelu;
  cases.push_back({"3x3 12->40 nchw stride 2", c, {12, 17, 9}});
  c = Layer(2, 32, 24, {1, 1}, kFirst);  // the pointwise GEMM
  c.activation = Activation::kSigmoid;
  cases.push_back({"1x1 32->24 nchw", c, {32, 7, 9}});
  c.stride = {2};
  cases.push_back({"1x1 32->24 nchw stride 2", c, {32, 7, 9}});
  c = Layer(2, 32, 24, {1, 1}, kLast);  // 1x1 through the indirect GEMM
  cases.push_back({"1x1 32->24 nhwc", c, {7, 9, 32}});
  for (DataLayout layout : {kFirst, kLast}) {  // depthwise
    c = Layer(2, 24, 24, {3, 3}, layout);
    c.groups = 24;
    c.padding = PaddingPreset::kSameUpper;
    c.padding_mode = PaddingMode::kReplicate;
    cases.push_back(
        {"depthwise 3x3", c,
         layout == kFirst ? std::vector<int64_t>{24, 10, 21} : std::vector<int64_t>{10, 21, 24}});
  }
  c = Layer(2, 16, 20, {3, 3}, kFirst);  // Winograd: F(2x2) on 7x7, F(4x4) on 30x30
  c.padding = PaddingPreset::kSameUpper;
  c.activation = Activation::kRelu;
  c.algorithm = ConvAlgorithm::kWinograd;
  cases.push_back({"winograd 3x3 nchw 7x7", c, {16, 7, 7}});
  c.data_layout = kLast;
  c.activation = Activation::kTanh;
  cases.push_back({"winograd 3x3 nhwc 30x30", c, {30, 30, 16}});
  c = Layer(2, 16, 32, {3, 3}, kFirst);  // grouped
  c.groups = 4;
  c.padding = PaddingPreset::kSameUpper;
  cases.push_back({"grouped 3x3 g4", c, {16, 9, 9}});
  c = Layer(1, 5, 7, {5}, kLast);
  c.padding = PaddingPreset::kCausal;
  c.dilation = {2};
  cases.push_back({"1-D k5 causal dilated", c, {40, 5}});
  c = Layer(3, 4, 9, {3, 3, 3}, kFirst);
  c.padding = PaddingPreset::kSameUpper;
  c.padding_mode = PaddingMode::kCircular;
  cases.push_back({"3-D 3x3x3 circular", c, {4, 5, 6, 7}});
  return cases;
}

// Runs `op` on `shape` (N first), checking the run succeeds.
std::vector<float> RunOn(const ConvOperator& op, const std::vector<int64_t>& shape,
                         const float* input, std::string* kernel) {
  absl::StatusOr<ConvGeometry> geometry = ResolveGeometry(op.layer(), shape);
  EXPECT_TRUE(geometry.ok()) << geometry.status();
  if (!geometry.ok()) return {};
  std::vector<float> output(static_cast<size_t>(geometry->output_elements()));
  absl::Status run = op.Run(*geometry, input, output.data());
  EXPECT_TRUE(run.ok()) << run;
  *kernel = op.KernelName(*geometry);
  return output;
}

void CheckBatchInvariance(const ConvOperator& op, const Case& c, std::mt19937* rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  int64_t sample_elements = 1;
  for (int64_t d : c.sample_shape) sample_elements *= d;
  for (int64_t n : {2, 3, 8, 17}) {
    SCOPED_TRACE("N = " + std::to_string(n));
    std::vector<int64_t> shape = {n};
    shape.insert(shape.end(), c.sample_shape.begin(), c.sample_shape.end());
    std::vector<float> input(static_cast<size_t>(n * sample_elements));
    for (float& v : input) v = dist(*rng);
    std::string batch_kernel;
    const std::vector<float> batched = RunOn(op, shape, input.data(), &batch_kernel);
    ASSERT_FALSE(batched.empty());
    const size_t sample_outputs = batched.size() / static_cast<size_t>(n);
    shape[0] = 1;
    // Alone on the batch's threads, and alone on one thread (where the
    // server's small-call lane runs a call that was not batched).
    tbb::task_arena one_thread(1);
    for (int64_t i = 0; i < n; ++i) {
      for (bool single : {false, true}) {
        std::string alone_kernel;
        std::vector<float> alone;
        const auto run_alone = [&] {
          alone = RunOn(op, shape, input.data() + i * sample_elements, &alone_kernel);
        };
        if (single) {
          one_thread.execute(run_alone);
        } else {
          run_alone();
        }
        ASSERT_EQ(alone.size(), sample_outputs);
        EXPECT_EQ(alone_kernel, batch_kernel);
        EXPECT_EQ(std::memcmp(alone.data(), batched.data() + i * sample_outputs,
                              sample_outputs * sizeof(float)),
                  0)
            << "sample " << i << " differs from its run alone" << (single ? " on one thread" : "")
            << " (kernel " << batch_kernel << ")";
      }
    }
  }
}

TEST(BatchInvarianceTest, EverySampleGetsTheBitsItGetsAlone) {
  std::vector<std::pair<std::string, kernels::Isa>> isas;
  if (kernels::CpuHasAvx2Fma()) isas.emplace_back("avx2", kernels::Isa::kAvx2Fma);
  if (kernels::CpuSupports(kernels::Isa::kAvx512f)) {
    isas.emplace_back("avx512f", kernels::Isa::kAvx512f);
  }
  std::mt19937 rng(12);
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<ResolvedLayer> layer = ResolveLayer(c.spec);
    ASSERT_TRUE(layer.ok()) << layer.status();
    std::vector<float> weight(static_cast<size_t>(layer->weight_elements()));
    std::vector<float> bias(static_cast<size_t>(c.spec.out_channels));
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (float& v : weight) v = dist(rng);
    for (float& v : bias) v = dist(rng);
    std::vector<std::pair<std::string, std::unique_ptr<ConvOperator>>> ops;
    for (const auto& [name, isa] : isas) {
      ops.emplace_back(name, kernels::CreateFastConvOperator(*layer, weight, bias, isa));
    }
    absl::StatusOr<std::unique_ptr<ConvOperator>> reference =
        ConvOperator::Create(*layer, weight, bias, KernelPath::kReference);
    ASSERT_TRUE(reference.ok()) << reference.status();
    ops.emplace_back("reference", *std::move(reference));
    for (const auto& [name, op] : ops) {
      for (int threads : {1, 2}) {
        SCOPED_TRACE(name + " on " + std::to_string(threads) + " threads");
        tbb::task_arena arena(threads);
        arena.execute([&] { CheckBatchInvariance(*op, c, &rng); });
        if (HasFailure()) return;
      }
    }
  }
}

}  // namespace
}  // namespace convserve
