// ModelGraph: the checks of a graph's form, the shapes PlanGraph() gives
// (and the errors it names), and RunGraph() against the same operators run
// one by one with the sums and concatenations written out here, in both data
// layouts and with a merged batch. Parity of whole graphs with PyTorch is
// tested end to end in tests/integration/test_onnx.py.
#include "core/model_graph.h"

#include <atomic>
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

GraphStep Step(StepOp op, std::vector<int> inputs, int layer = -1,
               Activation activation = Activation::kNone) {
  GraphStep step;
  step.op = op;
  step.inputs = std::move(inputs);
  step.layer = layer;
  step.activation = activation;
  step.name = op == StepOp::kAdd ? "sum" : op == StepOp::kConcat ? "cat" : "";
  return step;
}

ConvSpec Spec(int64_t in, int64_t out, int64_t kernel, DataLayout layout) {
  ConvSpec spec;
  spec.spatial_rank = 2;
  spec.in_channels = in;
  spec.out_channels = out;
  spec.kernel = {kernel};
  spec.padding = PaddingPreset::kExplicit;
  spec.pad_begin = {kernel / 2};
  spec.pad_end = {kernel / 2};
  spec.data_layout = layout;
  return spec;
}

struct Model {
  std::vector<std::unique_ptr<ConvOperator>> ops;
  std::vector<const ConvOperator*> pointers() const {
    std::vector<const ConvOperator*> out;
    for (const auto& op : ops) out.push_back(op.get());
    return out;
  }
  std::vector<const ResolvedLayer*> layers() const {
    std::vector<const ResolvedLayer*> out;
    for (const auto& op : ops) out.push_back(&op->layer());
    return out;
  }
};

Model MakeModel(const std::vector<ConvSpec>& specs, std::mt19937* rng) {
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  Model model;
  for (const ConvSpec& spec : specs) {
    absl::StatusOr<ResolvedLayer> layer = ResolveLayer(spec);
    EXPECT_TRUE(layer.ok()) << layer.status();
    std::vector<float> weight(static_cast<size_t>(layer->weight_elements()));
    for (float& w : weight) w = value(*rng);
    std::vector<float> bias(static_cast<size_t>(layer->bias_elements()));
    for (float& b : bias) b = value(*rng);
    absl::StatusOr<std::unique_ptr<ConvOperator>> op = ConvOperator::Create(*layer, weight, bias);
    EXPECT_TRUE(op.ok()) << op.status();
    model.ops.push_back(*std::move(op));
  }
  return model;
}

// One layer alone, through the operator's own shape-checking Run().
std::vector<float> RunOne(const ConvOperator& op, const std::vector<int64_t>& shape,
                          const std::vector<float>& input, std::vector<int64_t>* out_shape) {
  std::vector<float> output;
  absl::Status run = op.Run(shape, input, &output, out_shape);
  EXPECT_TRUE(run.ok()) << run;
  return output;
}

TEST(ModelGraphTest, AChainIsAChain) {
  ModelGraph chain = ModelGraph::Chain(3);
  EXPECT_TRUE(chain.IsChain());
  EXPECT_TRUE(chain.Check(3).ok());
  chain.steps.push_back(Step(StepOp::kAdd, {3, 1}));
  EXPECT_FALSE(chain.IsChain());
  EXPECT_TRUE(chain.Check(3).ok());
}

TEST(ModelGraphTest, CheckRefusesMalformedGraphs) {
  struct Case {
    std::vector<GraphStep> steps;
    int layers;
    std::string message;
  };
  const Case cases[] = {
      {{}, 0, "expected at least one step"},
      {{Step(StepOp::kConv, {1}, 0)}, 1, "step 0 reads value 1, expected one of 0..0"},
      {{Step(StepOp::kConv, {0}, 0), Step(StepOp::kConv, {0}, 0)}, 1, "layer 0 is run by 2"},
      {{Step(StepOp::kConv, {0}, 0), Step(StepOp::kAdd, {1})}, 1, "wrong number of inputs: 1"},
      {{Step(StepOp::kConv, {0}, 0), Step(StepOp::kConv, {0}, 1)},
       2,
       "the output of step 0 is read by no step"},
      {{Step(StepOp::kConv, {0}, 3)}, 1, "step 0 runs layer 3 of 1"},
      {{Step(StepOp::kConv, {0}, 0)}, 2, "layer 1 is run by 0 steps"},
  };
  for (const Case& c : cases) {
    ModelGraph graph;
    graph.steps = c.steps;
    absl::Status status = graph.Check(c.layers);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
}

// x -> conv0 -> a; x -> conv1 -> b; relu(a + b) -> c; cat(c, x) -> conv2.
class ResidualConcatTest : public ::testing::TestWithParam<DataLayout> {};

TEST_P(ResidualConcatTest, RunsAsTheLayersOneByOne) {
  const DataLayout layout = GetParam();
  const bool first = layout == DataLayout::kChannelsFirst;
  std::mt19937 rng(7);
  const Model model =
      MakeModel({Spec(3, 4, 3, layout), Spec(3, 4, 1, layout), Spec(7, 2, 3, layout)}, &rng);
  ModelGraph graph;
  graph.steps = {Step(StepOp::kConv, {0}, 0), Step(StepOp::kConv, {0}, 1),
                 Step(StepOp::kAdd, {1, 2}, -1, Activation::kRelu), Step(StepOp::kConcat, {3, 0}),
                 Step(StepOp::kConv, {4}, 2)};
  const int64_t n = 2, h = 5, w = 6;
  const std::vector<int64_t> shape =
      first ? std::vector<int64_t>{n, 3, h, w} : std::vector<int64_t>{n, h, w, 3};
  std::vector<float> x(static_cast<size_t>(n * 3 * h * w));
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  for (float& v : x) v = value(rng);

  // The graph written out by hand.
  std::vector<int64_t> a_shape, b_shape, out_shape;
  const std::vector<float> a = RunOne(*model.ops[0], shape, x, &a_shape);
  const std::vector<float> b = RunOne(*model.ops[1], shape, x, &b_shape);
  ASSERT_EQ(a_shape, b_shape);
  std::vector<float> c(a.size());
  for (size_t i = 0; i < a.size(); ++i) c[i] = std::max(a[i] + b[i], 0.0f);
  // Per row (N for channels_first, N*H*W for channels_last): c's channels, then x's.
  const int64_t rows = first ? n : n * h * w;
  const int64_t c_block = static_cast<int64_t>(c.size()) / rows;
  const int64_t x_block = static_cast<int64_t>(x.size()) / rows;
  std::vector<float> cat;
  for (int64_t row = 0; row < rows; ++row) {
    cat.insert(cat.end(), c.begin() + row * c_block, c.begin() + (row + 1) * c_block);
    cat.insert(cat.end(), x.begin() + row * x_block, x.begin() + (row + 1) * x_block);
  }
  const std::vector<int64_t> cat_shape =
      first ? std::vector<int64_t>{n, 7, h, w} : std::vector<int64_t>{n, h, w, 7};
  const std::vector<float> expected = RunOne(*model.ops[2], cat_shape, cat, &out_shape);

  absl::StatusOr<GraphPlan> plan = PlanGraph(graph, model.layers(), shape, "m");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->shapes[4], cat_shape);
  EXPECT_EQ(plan->output_shape(), out_shape);
  EXPECT_EQ(plan->intermediate_elements, 3 * static_cast<int64_t>(a.size()) +
                                             static_cast<int64_t>(cat.size() + expected.size()));
  std::vector<float> y(expected.size(), -1.0f);
  int outputs_asked = 0;
  absl::Status run = RunGraph(
      graph, model.pointers(), *plan, x.data(),
      [&] {
        ++outputs_asked;
        return y.data();
      },
      StopToken());
  ASSERT_TRUE(run.ok()) << run;
  EXPECT_EQ(outputs_asked, 1);
  EXPECT_EQ(y, expected);  // the same operators on the same values: bitwise

  // Two samples' plans merged into one run: each half is that sample's run.
  const std::vector<int64_t> one = {1, shape[1], shape[2], shape[3]};
  absl::StatusOr<GraphPlan> single = PlanGraph(graph, model.layers(), one, "m");
  ASSERT_TRUE(single.ok());
  GraphPlan merged = *single;
  merged.SetBatch(2);
  EXPECT_EQ(merged.shapes, plan->shapes);
  EXPECT_EQ(merged.intermediate_elements, plan->intermediate_elements);
  EXPECT_EQ(merged.macs, plan->macs);
  std::vector<float> y2(expected.size(), -1.0f);
  ASSERT_TRUE(RunGraph(
                  graph, model.pointers(), merged, x.data(), [&] { return y2.data(); }, StopToken())
                  .ok());
  EXPECT_EQ(y2, expected);
}

INSTANTIATE_TEST_SUITE_P(Layouts, ResidualConcatTest,
                         ::testing::Values(DataLayout::kChannelsFirst, DataLayout::kChannelsLast));

TEST(ModelGraphTest, PlanNamesTheStepAndTheShapes) {
  std::mt19937 rng(1);
  const Model model = MakeModel(
      {Spec(3, 4, 3, DataLayout::kChannelsFirst), Spec(3, 5, 1, DataLayout::kChannelsFirst),
       Spec(4, 2, 3, DataLayout::kChannelsFirst)},
      &rng);
  ModelGraph sum;
  sum.steps = {Step(StepOp::kConv, {0}, 0), Step(StepOp::kConv, {0}, 1), Step(StepOp::kAdd, {1, 2}),
               Step(StepOp::kConv, {3}, 2)};
  absl::StatusOr<GraphPlan> plan = PlanGraph(sum, model.layers(), {1, 3, 4, 4}, "m");
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(),
              HasSubstr("model 'm' Add (node 'sum'): input 1 has shape [1, 5, 4, 4], input 0 has "
                        "[1, 4, 4, 4]: expected equal shapes (broadcasting is not supported)"));

  // A layer after a concatenation that gives it the wrong channel count.
  ModelGraph cat;
  cat.steps = {Step(StepOp::kConv, {0}, 0), Step(StepOp::kConv, {0}, 1),
               Step(StepOp::kConcat, {1, 2}), Step(StepOp::kConv, {3}, 2)};
  plan = PlanGraph(cat, model.layers(), {1, 3, 4, 4}, "m");
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(),
              HasSubstr("model 'm' layers[2], on its input of shape [1, 9, 4, 4]: "));

  // The first layer on a bad input: the layer's own message, as a chain's.
  plan = PlanGraph(cat, model.layers(), {1, 2, 4, 4}, "m");
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(plan.status().message()), ::testing::Not(HasSubstr("model 'm'")));
}

TEST(ModelGraphTest, StopsBetweenSteps) {
  std::mt19937 rng(2);
  const Model model = MakeModel({Spec(1, 1, 1, DataLayout::kChannelsFirst)}, &rng);
  ModelGraph graph;
  graph.steps = {Step(StepOp::kConv, {0}, 0),
                 Step(StepOp::kActivation, {1}, -1, Activation::kRelu)};
  absl::StatusOr<GraphPlan> plan = PlanGraph(graph, model.layers(), {1, 1, 2, 2}, "m");
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::atomic<bool> stop{true};
  std::vector<float> x(4, 1.0f), y(4);
  absl::Status run = RunGraph(
      graph, model.pointers(), *plan, x.data(), [&] { return y.data(); }, StopToken(&stop));
  EXPECT_EQ(run.code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace convserve
