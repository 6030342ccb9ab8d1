// model_graph.h: how a model's layers connect.
//
// A model is a list of steps in an order where each step's inputs are
// computed before it runs: a convolution layer, the element-wise sum of two
// tensors of one shape (a residual connection), the concatenation of tensors
// along the channel axis, or an activation by itself; a sum or a
// concatenation may be followed by an activation (ResNet's ReLU after the
// residual sum). A model built
// from a list of layers is the chain where each layer reads the previous
// one's output; an ONNX model may branch and merge (core/onnx_import.h).
//
// Values are numbered: 0 is the model's input, k >= 1 the output of
// steps[k - 1]; the last step's output is the model's output. Every tensor is
// in the layers' data layout (one layout per model), so the channel axis is
// 1 (channels_first) or the last (channels_last).
//
// PlanGraph() resolves every step's shape for one input shape (the checks
// that fail a call before any work); RunGraph() runs the plan, freeing each
// value after its last reader and writing the last step's output straight
// into the caller's buffer. Both are stateless and thread-safe.
#ifndef CONVSERVE_CORE_MODEL_GRAPH_H_
#define CONVSERVE_CORE_MODEL_GRAPH_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/conv.h"
#include "core/geometry.h"
#include "core/stop_token.h"

namespace convserve {

enum class StepOp { kConv, kAdd, kConcat, kActivation };

struct GraphStep {
  StepOp op = StepOp::kConv;
  // Value ids (0: the model's input; k: steps[k - 1]'s output), each < this
  // step's own id. kConv, kActivation: one; kAdd: two; kConcat: two or more.
  std::vector<int> inputs;
  int layer = -1;  // kConv: the index of its layer in the model's layers.
  // kAdd, kConcat, kActivation: applied to the result (a kConv step's
  // activation is its layer's own, fused into the kernel).
  Activation activation = Activation::kNone;
  float activation_alpha = 0.0f;  // resolved: DefaultActivationAlpha() if the file gave none
  std::string name;               // where it came from (an ONNX node's name), for messages
};

struct ModelGraph {
  std::vector<GraphStep> steps;

  // The chain of `layers` layers: layer i reads layer i - 1's output.
  static ModelGraph Chain(int layers);
  // Whether every step is a Conv reading the previous step's output (what
  // streaming and the per-layer descriptions need).
  bool IsChain() const;
  // OK if the steps are well formed for a model of `layers` layers: inputs
  // computed before they are read, the arity of each op, every layer used by
  // exactly one step, every step's output read by a later step (the last
  // excepted). INVALID_ARGUMENT otherwise (an importer's bug or a hostile
  // caller).
  absl::Status Check(int layers) const;
  // "layers[2] (node '/layer1/conv2/Conv')", "Add (node '/layer1/Add')".
  std::string Describe(int step) const;
  // The step as one line of ModelInfo.graph: "%3 = add(%1, %2) -> relu  [/layer1/Add]".
  std::string StepText(int step) const;
};

// One input shape run through a graph.
struct GraphPlan {
  std::vector<std::vector<int64_t>> shapes;  // per value: [0] the input, [k] steps[k - 1]'s output
  std::vector<ConvGeometry> geometries;      // per step; only kConv steps' are meaningful
  int64_t intermediate_elements = 0;         // the sum of every step's output elements
  int64_t macs = 0;                          // the sum of the kConv steps' macs()

  const std::vector<int64_t>& output_shape() const { return shapes.back(); }
  int64_t output_elements() const;
  // The same plan for `batch` samples (every shape's first extent): the
  // dynamic batcher's merged run. REQUIRES: batch >= 1, fits the limits.
  void SetBatch(int64_t batch);
};

// Resolves `graph` for `input_shape`. `layers[i]` is the model's layer i.
// INVALID_ARGUMENT names the step (Describe()), its input shape, what was
// expected and what was received; messages of the first step reading the
// model's input are the layer's own (the caller's input is what is wrong).
// `model` names the model at the start of the other messages.
absl::StatusOr<GraphPlan> PlanGraph(const ModelGraph& graph,
                                    const std::vector<const ResolvedLayer*>& layers,
                                    const std::vector<int64_t>& input_shape,
                                    const std::string& model);

// Runs `plan` on `input` with the model's operators (`ops[i]`: layer i).
// The last step writes into what `last_output` returns (called once, just
// before it runs). Checks `stop` between steps and inside each convolution;
// returns StoppedError() when stopped.
absl::Status RunGraph(const ModelGraph& graph, const std::vector<const ConvOperator*>& ops,
                      const GraphPlan& plan, const float* input,
                      const std::function<float*()>& last_output, const StopToken& stop);

}  // namespace convserve

#endif  // CONVSERVE_CORE_MODEL_GRAPH_H_
