// ConvStream: chunked runs of causal stacks equal the stack run once over the
// whole signal (by the same operators: bitwise; by the scalar reference
// kernel: within the parity bound), for random chunkings, strides,
// dilations, layouts; non-causal layers are refused naming the layer.
#include "core/streaming.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/conv.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace convserve {
namespace {

using ::testing::HasSubstr;

struct Stack {
  std::vector<std::unique_ptr<ConvOperator>> fast;
  std::vector<std::unique_ptr<ConvOperator>> reference;
  std::vector<const ConvOperator*> pointers() const {
    std::vector<const ConvOperator*> out;
    for (const auto& op : fast) out.push_back(op.get());
    return out;
  }
};

Stack MakeStack(const std::vector<ConvSpec>& specs, std::mt19937* rng) {
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  Stack stack;
  for (const ConvSpec& spec : specs) {
    absl::StatusOr<ResolvedLayer> layer = ResolveLayer(spec);
    EXPECT_TRUE(layer.ok()) << layer.status();
    std::vector<float> weight(static_cast<size_t>(layer->weight_elements()));
    std::vector<float> bias(static_cast<size_t>(layer->bias_elements()));
    for (float& w : weight) w = value(*rng);
    for (float& b : bias) b = value(*rng);
    for (KernelPath path : {KernelPath::kAuto, KernelPath::kReference}) {
      absl::StatusOr<std::unique_ptr<ConvOperator>> op =
          ConvOperator::Create(*layer, weight, bias, path);
      EXPECT_TRUE(op.ok()) << op.status();
      (path == KernelPath::kAuto ? stack.fast : stack.reference).push_back(*std::move(op));
    }
  }
  return stack;
}

// The stack run once over `input`; `abs` runs it on |input| with |weights|
// being unavailable here, so the bound below uses the output's own scale.
std::vector<float> RunWhole(const std::vector<std::unique_ptr<ConvOperator>>& ops,
                            std::vector<int64_t> shape, std::vector<float> values,
                            std::vector<int64_t>* out_shape) {
  for (const auto& op : ops) {
    std::vector<float> next;
    std::vector<int64_t> next_shape;
    absl::Status status = op->Run(shape, values, &next, &next_shape);
    EXPECT_TRUE(status.ok()) << status;
    values.swap(next);
    shape = next_shape;
  }
  *out_shape = shape;
  return values;
}

int64_t Outer(const std::vector<int64_t>& shape, int axis) {
  int64_t n = 1;
  for (int d = 0; d < axis; ++d) n *= shape[d];
  return n;
}
int64_t Inner(const std::vector<int64_t>& shape, int axis) {
  int64_t n = 1;
  for (size_t d = axis + 1; d < shape.size(); ++d) n *= shape[d];
  return n;
}

// Cells [begin, begin + length) of `values` (of `shape`) along `axis`.
std::vector<float> Slice(const std::vector<float>& values, const std::vector<int64_t>& shape,
                         int axis, int64_t begin, int64_t length) {
  const int64_t outer = Outer(shape, axis), inner = Inner(shape, axis), total = shape[axis];
  std::vector<float> out;
  for (int64_t o = 0; o < outer; ++o) {
    const float* row = values.data() + (o * total + begin) * inner;
    out.insert(out.end(), row, row + length * inner);
  }
  return out;
}

// Appends `piece` (`piece_length` cells along `axis`) to `all` (`*length` cells).
void Append(std::vector<float>* all, int64_t* length, const std::vector<float>& piece,
            int64_t piece_length, const std::vector<int64_t>& shape, int axis) {
  const int64_t outer = Outer(shape, axis), inner = Inner(shape, axis);
  std::vector<float> joined;
  for (int64_t o = 0; o < outer; ++o) {
    const float* a = all->data() + o * *length * inner;
    joined.insert(joined.end(), a, a + *length * inner);
    const float* b = piece.data() + o * piece_length * inner;
    joined.insert(joined.end(), b, b + piece_length * inner);
  }
  all->swap(joined);
  *length += piece_length;
}

ConvSpec CausalLayer(int rank, int64_t in, int64_t out, int64_t kernel, int64_t dilation,
                     int64_t stride, DataLayout layout) {
  ConvSpec spec;
  spec.spatial_rank = rank;
  spec.in_channels = in;
  spec.out_channels = out;
  spec.kernel = {kernel};
  spec.dilation = {dilation};
  spec.stride = {stride};
  spec.padding = PaddingPreset::kCausal;
  spec.data_layout = layout;
  return spec;
}

// Streams `input` through `stack` in chunks of `sizes` (cycled) and checks
// the concatenation against the whole-signal runs.
void CheckChunking(const Stack& stack, const std::vector<int64_t>& shape,
                   const std::vector<float>& input, int time_axis,
                   const std::vector<int64_t>& sizes, const std::string& what) {
  std::vector<int64_t> whole_shape;
  const std::vector<float> whole = RunWhole(stack.fast, shape, input, &whole_shape);
  std::vector<int64_t> reference_shape;
  const std::vector<float> reference = RunWhole(stack.reference, shape, input, &reference_shape);
  ASSERT_EQ(whole_shape, reference_shape);

  absl::StatusOr<ConvStream> stream = ConvStream::Create(stack.pointers(), shape);
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_EQ(stream->time_axis(), time_axis);
  std::vector<float> streamed;
  int64_t streamed_length = 0;
  int64_t at = 0;
  for (size_t c = 0; at < shape[time_axis]; ++c) {
    const int64_t length = std::min(sizes[c % sizes.size()], shape[time_axis] - at);
    std::vector<int64_t> chunk_shape = shape;
    chunk_shape[time_axis] = length;
    absl::StatusOr<StreamChunkPlan> plan = stream->PlanChunk(length);
    ASSERT_TRUE(plan.ok()) << plan.status();
    std::vector<float> out;
    std::vector<int64_t> out_shape;
    absl::Status pushed =
        stream->Push(chunk_shape, Slice(input, shape, time_axis, at, length), &out, &out_shape);
    ASSERT_TRUE(pushed.ok()) << pushed << " " << what;
    ASSERT_LE(static_cast<int64_t>(out.size()), plan->work_elements);
    std::vector<int64_t> expected_shape = whole_shape;
    expected_shape[time_axis] = out_shape[time_axis];
    ASSERT_EQ(out_shape, expected_shape) << what;
    Append(&streamed, &streamed_length, out, out_shape[time_axis], whole_shape, time_axis);
    at += length;
  }
  ASSERT_EQ(streamed_length, whole_shape[time_axis]) << what;
  ASSERT_EQ(stream->samples_out(), whole_shape[time_axis]);
  ASSERT_EQ(streamed.size(), whole.size());
  // The same operators over the whole signal: bitwise.
  EXPECT_EQ(std::memcmp(streamed.data(), whole.data(), whole.size() * sizeof(float)), 0) << what;
  // The scalar reference kernel: within a relative bound.
  for (size_t i = 0; i < whole.size(); ++i) {
    ASSERT_NEAR(streamed[i], reference[i], 1e-4 * (1.0 + std::fabs(reference[i])))
        << what << " at " << i;
  }
}

TEST(ConvStreamTest, RandomStacksAndChunkingsEqualTheWholeSignal) {
  std::mt19937 rng(20261126);
  const auto pick = [&](int64_t low, int64_t high) {
    return std::uniform_int_distribution<int64_t>(low, high)(rng);
  };
  const Activation activations[] = {Activation::kNone, Activation::kRelu, Activation::kTanh,
                                    Activation::kGelu, Activation::kLeakyRelu};
  for (int trial = 0; trial < 60; ++trial) {
    const DataLayout layout = trial % 2 ? DataLayout::kChannelsLast : DataLayout::kChannelsFirst;
    const int rank = trial % 5 == 4 ? 2 : 1;
    const int layers = static_cast<int>(pick(1, 4));
    int64_t channels = pick(1, 5);
    const int64_t batch = pick(1, 2);
    std::vector<ConvSpec> specs;
    for (int l = 0; l < layers; ++l) {
      const int64_t out = pick(1, 6);
      ConvSpec spec = CausalLayer(rank, channels, out, pick(1, 5), pick(1, 4), pick(1, 3), layout);
      spec.activation = activations[pick(0, 4)];
      if (rank == 2) {
        // H: any padding; W (time): causal, written out explicitly.
        const int64_t span = spec.dilation[0] * (spec.kernel[0] - 1) + 1;
        spec.padding = PaddingPreset::kExplicit;
        spec.kernel = {2, spec.kernel[0]};
        spec.dilation = {1, spec.dilation[0]};
        spec.stride = {1, spec.stride[0]};
        spec.pad_begin = {1, span - 1 + pick(0, 2)};
        spec.pad_end = {0, 0};
      } else if (pick(0, 3) == 0) {
        const int64_t span = spec.dilation[0] * (spec.kernel[0] - 1) + 1;
        spec.padding = PaddingPreset::kExplicit;
        spec.pad_begin = {span - 1 + pick(0, 3)};  // a causal layer with some delay
        spec.pad_end = {0};
      }
      if (pick(0, 4) == 0 && channels == out) spec.groups = channels;  // depthwise
      specs.push_back(spec);
      channels = out;
    }
    Stack stack = MakeStack(specs, &rng);
    const int64_t time = pick(1, 80);
    std::vector<int64_t> shape;
    if (layout == DataLayout::kChannelsFirst) {
      shape = {batch, specs[0].in_channels};
      if (rank == 2) shape.push_back(3);
      shape.push_back(time);
    } else {
      shape = {batch};
      if (rank == 2) shape.push_back(3);
      shape.push_back(time);
      shape.push_back(specs[0].in_channels);
    }
    int64_t elements = 1;
    for (int64_t d : shape) elements *= d;
    std::vector<float> input(static_cast<size_t>(elements));
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    for (float& x : input) x = value(rng);
    const int time_axis = layout == DataLayout::kChannelsFirst ? rank + 1 : rank;
    const std::string what = "trial " + std::to_string(trial);
    CheckChunking(stack, shape, input, time_axis, {1}, what + " chunks of 1");
    CheckChunking(stack, shape, input, time_axis, {time}, what + " one chunk");
    std::vector<int64_t> sizes;
    for (int c = 0; c < 8; ++c) sizes.push_back(pick(1, 9));
    CheckChunking(stack, shape, input, time_axis, sizes, what + " random chunks");
  }
}

TEST(ConvStreamTest, StrideWiderThanTheWindowSkipsCells) {
  std::mt19937 rng(7);
  // kernel 1, stride 3: windows at 0, 3, 6...; then kernel 2, stride 2.
  Stack stack = MakeStack({CausalLayer(1, 2, 3, 1, 1, 3, DataLayout::kChannelsFirst),
                           CausalLayer(1, 3, 2, 2, 1, 2, DataLayout::kChannelsFirst)},
                          &rng);
  std::vector<float> input(2 * 31);
  for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<float>(i % 7) - 3.0f;
  for (int64_t size : {1, 2, 3, 4, 5, 31}) {
    CheckChunking(stack, {1, 2, 31}, input, 2, {size}, "size " + std::to_string(size));
  }
}

TEST(ConvStreamTest, ChunksShorterThanTheWindowGiveEmptyOutputs) {
  std::mt19937 rng(3);
  Stack stack = MakeStack({CausalLayer(1, 1, 1, 5, 2, 1, DataLayout::kChannelsFirst)}, &rng);
  // Causal: the first sample already completes output 0 (the rest is zeros).
  absl::StatusOr<ConvStream> stream = ConvStream::Create(stack.pointers(), {1, 1, 1});
  ASSERT_TRUE(stream.ok());
  std::vector<float> out;
  std::vector<int64_t> out_shape;
  ASSERT_TRUE(stream->Push({1, 1, 1}, std::vector<float>{1.0f}, &out, &out_shape).ok());
  EXPECT_THAT(out_shape, ::testing::ElementsAre(1, 1, 1));
  // A valid-padded layer with a delay of 0 is refused; one with a longer
  // pad_begin than needed delays the output instead: pad_begin 10 > span 9.
  ConvSpec delayed = CausalLayer(1, 1, 1, 5, 2, 4, DataLayout::kChannelsFirst);
  delayed.padding = PaddingPreset::kExplicit;
  delayed.pad_begin = {10};
  delayed.pad_end = {0};
  Stack late = MakeStack({delayed}, &rng);
  stream = ConvStream::Create(late.pointers(), {1, 1, 1});
  ASSERT_TRUE(stream.ok());
  ASSERT_TRUE(stream->Push({1, 1, 1}, std::vector<float>{1.0f}, &out, &out_shape).ok());
  EXPECT_THAT(out_shape, ::testing::ElementsAre(1, 1, 1));  // (10 + 1 - 9) / 4 + 1 = 1
  EXPECT_TRUE(out.size() == 1);
  ASSERT_TRUE(stream->Push({1, 1, 1}, std::vector<float>{1.0f}, &out, &out_shape).ok());
  EXPECT_THAT(out_shape, ::testing::ElementsAre(1, 1, 0));
  EXPECT_TRUE(out.empty());
}

TEST(ConvStreamTest, RefusesLayersThatAreNotCausalAlongTime) {
  std::mt19937 rng(1);
  const ConvSpec good = CausalLayer(1, 2, 2, 3, 1, 1, DataLayout::kChannelsFirst);
  struct Case {
    ConvSpec spec;
    std::string why;
  };
  std::vector<Case> cases;
  ConvSpec spec = good;
  spec.padding = PaddingPreset::kExplicit;
  spec.pad_begin = {2};
  spec.pad_end = {1};
  cases.push_back({spec, "pad_end is 1"});
  spec.pad_begin = {1};
  spec.pad_end = {0};
  cases.push_back({spec, "pad_begin is 1 but its window spans 3 cells"});
  spec = good;
  spec.padding = PaddingPreset::kValid;
  cases.push_back({spec, "pad_begin is 0"});
  spec.padding = PaddingPreset::kSameUpper;
  cases.push_back({spec, "'same_upper' pads by an amount that depends on the signal's length"});
  spec = good;
  spec.padding_mode = PaddingMode::kReflect;
  cases.push_back({spec, "padding_mode is 'reflect'"});
  for (const Case& c : cases) {
    Stack stack = MakeStack({good, c.spec}, &rng);
    absl::StatusOr<ConvStream> stream =
        ConvStream::Create(stack.pointers(), {1, 2, 8}, "model 'm' ");
    ASSERT_FALSE(stream.ok()) << c.why;
    EXPECT_EQ(stream.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(stream.status().message(), HasSubstr("model 'm' layers[1] is not causal"));
    EXPECT_THAT(stream.status().message(), HasSubstr("time axis L"));
    EXPECT_THAT(stream.status().message(), HasSubstr(c.why));
  }
  // A one-cell window along time streams with any preset and mode.
  spec = CausalLayer(1, 2, 2, 1, 1, 2, DataLayout::kChannelsFirst);
  spec.padding = PaddingPreset::kSameUpper;
  spec.padding_mode = PaddingMode::kReflect;
  Stack stack = MakeStack({good, spec}, &rng);
  EXPECT_TRUE(ConvStream::Create(stack.pointers(), {1, 2, 8}).ok());
}

TEST(ConvStreamTest, RefusesChunksOfAnotherShape) {
  std::mt19937 rng(2);
  Stack stack = MakeStack({CausalLayer(1, 2, 2, 3, 1, 1, DataLayout::kChannelsLast)}, &rng);
  EXPECT_THAT(ConvStream::Create(stack.pointers(), {1, 2}).status().message(),
              HasSubstr("chunk.shape: expected 3 dimensions for the 1-D model, got [1, 2]"));
  EXPECT_THAT(ConvStream::Create(stack.pointers(), {1, 4, 3}).status().message(),
              HasSubstr("chunk: expected 2 channels (in_channels) at dim 2 of (N, L, C), got 3 "
                        "in [1, 4, 3]"));
  absl::StatusOr<ConvStream> stream = ConvStream::Create(stack.pointers(), {1, 4, 2});
  ASSERT_TRUE(stream.ok()) << stream.status();
  std::vector<float> out;
  std::vector<int64_t> out_shape;
  absl::Status status = stream->Push({2, 4, 2}, std::vector<float>(16), &out, &out_shape);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("chunk.shape: expected the stream's shape [1, 4, 2] "
                                          "with any time extent >= 1 on axis 1"));
  EXPECT_THAT(status.message(), HasSubstr("got [2, 4, 2]"));
  // Any time extent is fine; the values must match it.
  EXPECT_TRUE(stream->Push({1, 7, 2}, std::vector<float>(14), &out, &out_shape).ok());
  EXPECT_THAT(stream->Push({1, 7, 2}, std::vector<float>(13), &out, &out_shape).message(),
              HasSubstr("chunk: expected 14 values, got 13"));
}

TEST(ConvStreamTest, StateAndPlanAreBounded) {
  std::mt19937 rng(5);
  // Tails: (3 - 1) * 2 channels + (2 * (5 - 1)) * 4 channels.
  Stack stack = MakeStack({CausalLayer(1, 2, 4, 3, 1, 2, DataLayout::kChannelsFirst),
                           CausalLayer(1, 4, 1, 5, 2, 1, DataLayout::kChannelsFirst)},
                          &rng);
  absl::StatusOr<ConvStream> stream = ConvStream::Create(stack.pointers(), {1, 2, 1});
  ASSERT_TRUE(stream.ok());
  EXPECT_EQ(stream->max_state_elements(), 2 * 2 + 8 * 4);
  absl::StatusOr<StreamChunkPlan> plan = stream->PlanChunk(100);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->geometries.size(), 2u);
  EXPECT_EQ(plan->geometries[0].input[2], 102);
  EXPECT_EQ(plan->geometries[0].output[2], 50);
  EXPECT_EQ(plan->geometries[1].input[2], 58);
  EXPECT_EQ(plan->geometries[1].output[2], 50);
  EXPECT_EQ(plan->work_elements, 102 * 2 + 50 * 4 + 58 * 4 + 50);
  EXPECT_FALSE(stream->PlanChunk(INT64_MAX).ok());
}

TEST(ConvStreamTest, AStoppedRunBreaksTheStream) {
  std::mt19937 rng(6);
  Stack stack = MakeStack({CausalLayer(1, 2, 2, 3, 1, 1, DataLayout::kChannelsFirst)}, &rng);
  absl::StatusOr<ConvStream> stream = ConvStream::Create(stack.pointers(), {1, 2, 4});
  ASSERT_TRUE(stream.ok());
  std::atomic<bool> stop{true};
  std::vector<float> out;
  std::vector<int64_t> out_shape;
  EXPECT_EQ(
      stream->Push({1, 2, 4}, std::vector<float>(8), &out, &out_shape, StopToken(&stop)).code(),
      absl::StatusCode::kCancelled);
  EXPECT_EQ(stream->Push({1, 2, 4}, std::vector<float>(8), &out, &out_shape).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace convserve
