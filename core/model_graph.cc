// model_graph.cc: see model_graph.h.
#include "core/model_graph.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/checked_math.h"
#include "core/printable.h"
#include "core/tensor_shape.h"

namespace convserve {
namespace {

const char* OpName(StepOp op) {
  switch (op) {
    case StepOp::kConv:
      return "Conv";
    case StepOp::kAdd:
      return "Add";
    case StepOp::kConcat:
      return "Concat";
    case StepOp::kActivation:
      return "activation";
  }
  return "?";
}

int ChannelAxis(DataLayout layout, size_t rank) {
  return layout == DataLayout::kChannelsFirst ? 1 : static_cast<int>(rank) - 1;
}

// The element count of `shape`, or nullopt if it overflows.
std::optional<int64_t> Elements(const std::vector<int64_t>& shape) { return CheckedProduct(shape); }

void Activate(Activation activation, float alpha, float* values, int64_t count) {
  switch (activation) {
    case Activation::kNone:
      return;
    case Activation::kRelu:
      // As ApplyActivation(): a NaN stays NaN.
      for (int64_t i = 0; i < count; ++i) values[i] = values[i] < 0.0f ? 0.0f : values[i];
      return;
    default:
      for (int64_t i = 0; i < count; ++i) values[i] = ApplyActivation(activation, alpha, values[i]);
  }
}

// Buffers of values no longer read, kept for the next steps' outputs.
class BufferPool {
 public:
  std::vector<float> Take(int64_t elements) {
    const size_t size = static_cast<size_t>(elements);
    // A buffer that holds `size` values over one that does not; the smallest
    // of those that do (larger ones stay for larger values), the largest of
    // those that do not (the least to grow).
    const auto better = [size](const std::vector<float>& a, const std::vector<float>& b) {
      const bool a_fits = a.capacity() >= size;
      if (a_fits != (b.capacity() >= size)) return a_fits;
      return a_fits ? a.capacity() < b.capacity() : a.capacity() > b.capacity();
    };
    const auto best = std::min_element(free_.begin(), free_.end(), better);
    std::vector<float> buffer;
    if (best != free_.end()) {
      buffer = std::move(*best);
      free_.erase(best);
    }
    buffer.resize(size);
    return buffer;
  }
  void Give(std::vector<float> buffer) {
    if (buffer.capacity() != 0) free_.push_back(std::move(buffer));
  }

 private:
  std::vector<std::vector<float>> free_;
};

}  // namespace

ModelGraph ModelGraph::Chain(int layers) {
  ModelGraph graph;
  for (int i = 0; i < layers; ++i) {
    GraphStep step;
    step.op = StepOp::kConv;
    step.inputs = {i};
    step.layer = i;
    graph.steps.push_back(std::move(step));
  }
  return graph;
}

bool ModelGraph::IsChain() const {
  for (size_t i = 0; i < steps.size(); ++i) {
    const GraphStep& step = steps[i];
    if (step.op != StepOp::kConv || step.inputs.size() != 1 ||
        step.inputs[0] != static_cast<int>(i) || step.layer != static_cast<int>(i)) {
      return false;
    }
  }
  return true;
}

std::string ModelGraph::Describe(int step) const {
  const GraphStep& s = steps[static_cast<size_t>(step)];
  std::string text = s.op == StepOp::kConv         ? absl::StrCat("layers[", s.layer, "]")
                     : s.op == StepOp::kActivation ? std::string(ActivationName(s.activation))
                                                   : std::string(OpName(s.op));
  if (!s.name.empty()) absl::StrAppend(&text, " (node '", Printable(s.name, 256), "')");
  return text;
}

std::string ModelGraph::StepText(int step) const {
  const GraphStep& s = steps[static_cast<size_t>(step)];
  std::string function = s.op == StepOp::kConv         ? absl::StrCat("layers[", s.layer, "]")
                         : s.op == StepOp::kActivation ? std::string(ActivationName(s.activation))
                         : s.op == StepOp::kAdd        ? std::string("add")
                                                       : std::string("concat");
  std::string text = absl::StrCat("%", step + 1, " = ", function, "(");
  for (size_t i = 0; i < s.inputs.size(); ++i) {
    absl::StrAppend(&text, i == 0 ? "" : ", ", "%", s.inputs[i]);
  }
  absl::StrAppend(&text, ")");
  if ((s.op == StepOp::kAdd || s.op == StepOp::kConcat) && s.activation != Activation::kNone) {
    absl::StrAppend(&text, " -> ", ActivationName(s.activation));
  }
  if (!s.name.empty()) absl::StrAppend(&text, "  [", Printable(s.name, 256), "]");
  return text;
}

absl::Status ModelGraph::Check(int layers) const {
  if (steps.empty())
    return absl::InvalidArgumentError("graph: expected at least one step, got none");
  std::vector<int> layer_uses(static_cast<size_t>(std::max(layers, 0)), 0);
  std::vector<int> readers(steps.size() + 1, 0);
  for (size_t i = 0; i < steps.size(); ++i) {
    const GraphStep& step = steps[i];
    const int id = static_cast<int>(i) + 1;
    const size_t arity = step.inputs.size();
    const bool arity_ok = step.op == StepOp::kConcat ? arity >= 2
                          : step.op == StepOp::kAdd  ? arity == 2
                                                     : arity == 1;
    if (!arity_ok) {
      return absl::InvalidArgumentError(absl::StrCat("graph: step ", i, " (", OpName(step.op),
                                                     "): wrong number of inputs: ", arity));
    }
    for (int input : step.inputs) {
      if (input < 0 || input >= id) {
        return absl::InvalidArgumentError(absl::StrCat("graph: step ", i, " reads value ", input,
                                                       ", expected one of 0..", id - 1));
      }
      ++readers[static_cast<size_t>(input)];
    }
    if (step.op == StepOp::kConv) {
      if (step.layer < 0 || step.layer >= layers) {
        return absl::InvalidArgumentError(
            absl::StrCat("graph: step ", i, " runs layer ", step.layer, " of ", layers));
      }
      ++layer_uses[static_cast<size_t>(step.layer)];
    } else if (step.layer != -1) {
      return absl::InvalidArgumentError(
          absl::StrCat("graph: step ", i, " (", OpName(step.op), ") names a layer"));
    }
  }
  for (int i = 0; i < layers; ++i) {
    if (layer_uses[static_cast<size_t>(i)] != 1) {
      return absl::InvalidArgumentError(absl::StrCat("graph: layer ", i, " is run by ",
                                                     layer_uses[static_cast<size_t>(i)],
                                                     " steps, expected 1"));
    }
  }
  for (size_t value = 0; value < steps.size(); ++value) {
    if (readers[value] == 0) {
      return absl::InvalidArgumentError(
          value == 0 ? std::string("graph: no step reads the model's input")
                     : absl::StrCat("graph: the output of step ", value - 1,
                                    " is read by no step and is not the model's output"));
    }
  }
  return absl::OkStatus();
}

int64_t GraphPlan::output_elements() const { return *Elements(shapes.back()); }

void GraphPlan::SetBatch(int64_t batch) {
  intermediate_elements = 0;
  macs = 0;
  for (size_t value = 0; value < shapes.size(); ++value) {
    const int64_t old_batch = shapes[value][0];
    shapes[value][0] = batch;
    if (value == 0) continue;
    intermediate_elements += *Elements(shapes[value]);
    ConvGeometry& geometry = geometries[value - 1];
    if (geometry.batch == old_batch) geometry.batch = batch;
  }
  for (ConvGeometry& geometry : geometries) macs += geometry.macs();
}

absl::StatusOr<GraphPlan> PlanGraph(const ModelGraph& graph,
                                    const std::vector<const ResolvedLayer*>& layers,
                                    const std::vector<int64_t>& input_shape,
                                    const std::string& model) {
  absl::Status checked = graph.Check(static_cast<int>(layers.size()));
  if (!checked.ok()) return checked;
  const DataLayout layout = layers.front()->spec.data_layout;
  GraphPlan plan;
  plan.shapes.push_back(input_shape);
  const std::string prefix = absl::StrCat("model '", Printable(model, 256), "' ");
  for (size_t i = 0; i < graph.steps.size(); ++i) {
    const GraphStep& step = graph.steps[i];
    const std::string where = prefix + graph.Describe(static_cast<int>(i));
    std::vector<int64_t> shape;
    ConvGeometry geometry;  // kConv only; others keep batch 0 and no macs
    geometry.batch = 0;
    geometry.out_channels = 0;
    if (step.op == StepOp::kConv) {
      const int input = step.inputs[0];
      const std::vector<int64_t>& in = plan.shapes[static_cast<size_t>(input)];
      absl::StatusOr<ConvGeometry> resolved =
          ResolveGeometry(*layers[static_cast<size_t>(step.layer)], in);
      if (!resolved.ok()) {
        if (input == 0 && i == 0) return resolved.status();
        return absl::Status(resolved.status().code(),
                            absl::StrCat(where, ", on its input of shape ", ShapeToString(in),
                                         (input == 0 ? " (the model's input)" : ""), ": ",
                                         resolved.status().message()));
      }
      geometry = *resolved;
      shape = OutputShape(geometry);
      plan.macs += geometry.macs();
    } else {
      const std::vector<int64_t>& first = plan.shapes[static_cast<size_t>(step.inputs[0])];
      const int channel_axis = ChannelAxis(layout, first.size());
      shape = first;
      for (size_t k = 1; k < step.inputs.size(); ++k) {
        const std::vector<int64_t>& other = plan.shapes[static_cast<size_t>(step.inputs[k])];
        bool compatible = other.size() == first.size();
        for (size_t axis = 0; compatible && axis < first.size(); ++axis) {
          if (step.op == StepOp::kConcat && static_cast<int>(axis) == channel_axis) continue;
          compatible = other[axis] == first[axis];
        }
        if (!compatible) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": input ", k, " has shape ", ShapeToString(other), ", input 0 has ",
              ShapeToString(first), ": expected ",
              step.op == StepOp::kAdd ? "equal shapes (broadcasting is not supported)"
                                      : "equal extents on every axis but the channel axis"));
        }
        if (step.op == StepOp::kConcat) {
          std::optional<int64_t> channels = CheckedAdd(shape[static_cast<size_t>(channel_axis)],
                                                       other[static_cast<size_t>(channel_axis)]);
          if (!channels)
            return absl::InvalidArgumentError(absl::StrCat(where, ": too many channels"));
          shape[static_cast<size_t>(channel_axis)] = *channels;
        }
      }
      if (!Elements(shape)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": output shape ", ShapeToString(shape), " overflows"));
      }
    }
    const std::optional<int64_t> elements = Elements(shape);
    std::optional<int64_t> total = CheckedAdd(plan.intermediate_elements, *elements);
    if (!total) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the model's tensors overflow"));
    }
    plan.intermediate_elements = *total;
    plan.geometries.push_back(geometry);
    plan.shapes.push_back(std::move(shape));
  }
  return plan;
}

absl::Status RunGraph(const ModelGraph& graph, const std::vector<const ConvOperator*>& ops,
                      const GraphPlan& plan, const float* input,
                      const std::function<float*()>& last_output, const StopToken& stop) {
  const size_t steps = graph.steps.size();
  // The last step reading each value; the model's output is never freed here.
  std::vector<size_t> last_read(steps + 1, 0);
  for (size_t i = 0; i < steps; ++i) {
    for (int value : graph.steps[i].inputs) last_read[static_cast<size_t>(value)] = i;
  }
  std::vector<std::vector<float>> owned(steps + 1);
  std::vector<const float*> values(steps + 1, nullptr);
  values[0] = input;
  BufferPool pool;
  for (size_t i = 0; i < steps; ++i) {
    if (stop.StopRequested()) return StoppedError();
    const GraphStep& step = graph.steps[i];
    const std::vector<int64_t>& shape = plan.shapes[i + 1];
    const int64_t count = *Elements(shape);
    float* output = nullptr;
    if (i + 1 == steps) {
      output = last_output();
    } else {
      owned[i + 1] = pool.Take(count);
      output = owned[i + 1].data();
    }
    const float* in0 = values[static_cast<size_t>(step.inputs[0])];
    switch (step.op) {
      case StepOp::kConv: {
        absl::Status run =
            ops[static_cast<size_t>(step.layer)]->Run(plan.geometries[i], in0, output, stop);
        if (!run.ok()) return run;
        break;
      }
      case StepOp::kAdd: {
        const float* in1 = values[static_cast<size_t>(step.inputs[1])];
        for (int64_t k = 0; k < count; ++k) output[k] = in0[k] + in1[k];
        Activate(step.activation, step.activation_alpha, output, count);
        break;
      }
      case StepOp::kConcat: {
        // Per "row" (everything before the channel axis), each input's
        // channels (and everything after them) in turn.
        const DataLayout layout = ops.front()->spec().data_layout;
        const int axis = ChannelAxis(layout, shape.size());
        int64_t rows = 1;
        for (int a = 0; a < axis; ++a) rows *= shape[static_cast<size_t>(a)];
        int64_t inner = 1;
        for (size_t a = static_cast<size_t>(axis) + 1; a < shape.size(); ++a) inner *= shape[a];
        float* to = output;
        for (int64_t row = 0; row < rows; ++row) {
          for (int value : step.inputs) {
            const int64_t block =
                plan.shapes[static_cast<size_t>(value)][static_cast<size_t>(axis)] * inner;
            const float* from = values[static_cast<size_t>(value)] + row * block;
            to = std::copy(from, from + block, to);
          }
        }
        Activate(step.activation, step.activation_alpha, output, count);
        break;
      }
      case StepOp::kActivation:
        std::copy(in0, in0 + count, output);
        Activate(step.activation, step.activation_alpha, output, count);
        break;
    }
    values[i + 1] = output;
    // Free what no later step reads.
    for (int value : step.inputs) {
      const size_t v = static_cast<size_t>(value);
      if (v != 0 && last_read[v] == i && !owned[v].empty()) pool.Give(std::move(owned[v]));
    }
  }
  return absl::OkStatus();
}

}  // namespace convserve
