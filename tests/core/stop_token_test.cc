// StopToken and ConvOperator::Run(..., stop): a token that never stops changes
// nothing, a stop requested before or during a run ends it with CANCELLED.
#include "core/stop_token.h"

#include <atomic>
#include <chrono>
#include <ctime>
#include <thread>
#include <vector>

#include "core/conv.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace convserve {
namespace {

using Clock = std::chrono::steady_clock;

// One layer per fast path (indirect GEMM, depthwise, 1x1 GEMM, Winograd), on
// an input of `height` x `width` pixels.
struct Case {
  const char* name;
  int64_t channels;
  int64_t kernel;
  int64_t groups;
  PaddingPreset padding;
  ConvAlgorithm algorithm = ConvAlgorithm::kAuto;
};

const Case kCases[] = {
    {"igemm 3x3", 16, 3, 1, PaddingPreset::kSameUpper},
    {"depthwise 3x3", 16, 3, 16, PaddingPreset::kSameUpper},
    {"gemm 1x1", 16, 1, 1, PaddingPreset::kValid},
    {"winograd 3x3", 16, 3, 1, PaddingPreset::kSameUpper, ConvAlgorithm::kWinograd},
};

ConvSpec LayerOf(const Case& c) {
  ConvSpec spec;
  spec.spatial_rank = 2;
  spec.in_channels = c.channels;
  spec.out_channels = c.channels;
  spec.kernel = {c.kernel};
  spec.groups = c.groups;
  spec.padding = c.padding;
  spec.algorithm = c.algorithm;
  return spec;
}

std::vector<float> Ramp(int64_t count, float scale) {
  std::vector<float> values(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) values[i] = scale * static_cast<float>(i % 17 - 8);
  return values;
}

struct Prepared {
  std::unique_ptr<ConvOperator> op;
  ConvGeometry geometry;
  std::vector<float> input;
};

Prepared Prepare(const ConvSpec& spec, int64_t height, int64_t width, KernelPath path) {
  absl::StatusOr<ResolvedLayer> layer = ResolveLayer(spec);
  EXPECT_TRUE(layer.ok()) << layer.status();
  absl::StatusOr<std::unique_ptr<ConvOperator>> op = ConvOperator::Create(
      *layer, Ramp(layer->weight_elements(), 0.01f), Ramp(layer->bias_elements(), 0.1f), path);
  EXPECT_TRUE(op.ok()) << op.status();
  absl::StatusOr<ConvGeometry> geometry =
      ResolveGeometry(*layer, {1, spec.in_channels, height, width});
  EXPECT_TRUE(geometry.ok()) << geometry.status();
  Prepared prepared{*std::move(op), *geometry, Ramp(geometry->input_elements(), 0.5f)};
  return prepared;
}

TEST(StopTokenTest, DefaultTokenNeverStops) {
  const StopToken never;
  EXPECT_FALSE(never.CanStop());
  EXPECT_FALSE(never.StopRequested());
  std::atomic<bool> flag{false}, other{false};
  const StopToken token(&flag, &other, Clock::now() + std::chrono::hours(1));
  EXPECT_TRUE(token.CanStop());
  EXPECT_FALSE(token.StopRequested());
  other = true;
  EXPECT_TRUE(token.StopRequested());
  other = false;
  flag = true;
  EXPECT_TRUE(token.StopRequested());
  EXPECT_TRUE(
      StopToken(nullptr, nullptr, Clock::now() - std::chrono::milliseconds(1)).StopRequested());
}

TEST(StopTokenTest, UnsetTokenGivesTheSameBits) {
  std::atomic<bool> flag{false};
  const StopToken token(&flag, nullptr, Clock::now() + std::chrono::hours(1));
  for (const Case& c : kCases) {
    for (KernelPath path : {KernelPath::kAuto, KernelPath::kReference}) {
      SCOPED_TRACE(c.name);
      Prepared p = Prepare(LayerOf(c), 37, 41, path);
      std::vector<float> plain(p.geometry.output_elements()), stoppable(plain.size(), -1.0f);
      ASSERT_TRUE(p.op->Run(p.geometry, p.input.data(), plain.data()).ok());
      ASSERT_TRUE(p.op->Run(p.geometry, p.input.data(), stoppable.data(), token).ok());
      EXPECT_EQ(plain, stoppable);
    }
  }
}

TEST(StopTokenTest, StopRequestedBeforeTheRunIsCancelled) {
  std::atomic<bool> flag{true};
  for (const Case& c : kCases) {
    for (KernelPath path : {KernelPath::kAuto, KernelPath::kReference}) {
      SCOPED_TRACE(c.name);
      Prepared p = Prepare(LayerOf(c), 37, 41, path);
      std::vector<float> output(p.geometry.output_elements());
      absl::Status status = p.op->Run(p.geometry, p.input.data(), output.data(), StopToken(&flag));
      EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
      EXPECT_THAT(status.message(), ::testing::HasSubstr("stopped"));
      status = p.op->Run(p.geometry, p.input.data(), output.data(),
                         StopToken(nullptr, nullptr, Clock::now() - std::chrono::seconds(1)));
      EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
    }
  }
}

// A run of a second or so, stopped 5 ms in, ends having spent less than
// half the CPU time of a full run (generous: a stop takes effect within one
// work item, a millisecond or so).
TEST(StopTokenTest, StopRequestedDuringTheRunEndsItEarly) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    // About a billion MACs or more on tensors of at most 64 MiB, so that the
    // work items, not the input's reorder, take the time.
    ConvSpec spec = LayerOf(c);
    int64_t side = 256;
    if (c.groups != 1) {  // depthwise: 64 channels, 25x25, 256 x 256
      spec.in_channels = spec.out_channels = spec.groups = 64;
      spec.kernel = {25};
    } else if (c.kernel == 1) {  // 256 -> 256 channels, 256 x 256
      spec.in_channels = spec.out_channels = 256;
    } else {  // 256 -> 256 channels, 3x3, 128 x 128
      spec.in_channels = spec.out_channels = 256;
      side = 128;
    }
    Prepared p = Prepare(spec, side, side, KernelPath::kAuto);
    std::vector<float> output(p.geometry.output_elements());
    // Compared in CPU time (std::clock, every thread of the process): wall
    // time on a shared machine says more about the neighbours than the run.
    std::clock_t start = std::clock();
    ASSERT_TRUE(p.op->Run(p.geometry, p.input.data(), output.data()).ok());
    const double full = static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC;

    std::atomic<bool> flag{false};
    start = std::clock();
    std::thread stopper([&flag] {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      flag = true;
    });
    absl::Status status = p.op->Run(p.geometry, p.input.data(), output.data(), StopToken(&flag));
    const double stopped = static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC;
    stopper.join();
    EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
    EXPECT_LT(stopped, full / 2) << "CPU seconds: full run " << full << ", stopped " << stopped;
  }
}

}  // namespace
}  // namespace convserve
