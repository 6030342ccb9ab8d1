// libFuzzer target for ONNX model import and the model graphs it builds: the
// bytes a LoadModel's `onnx` field or a model repository's file carries, run
// through ImportOnnx(), and when imported, packed into operators, planned for
// an input (PlanGraph()) and, when small, run (RunGraph()), as the server
// does.
//
// Half the inputs are raw bytes (the protobuf parse, the checker, every
// refusal); the other half build a graph from the fuzz data: Conv (random
// pads, strides, dilations, groups, auto_pad, weights), Add, Concat (random
// axis), Pad, BatchNormalization, activations and ops the importer refuses,
// each reading tensors made earlier, the graph input or a constant.
// Fails on a crash, a sanitizer report, a hang, a message longer than
// kMaxImportMessageBytes, an imported layer the core refuses, a malformed
// graph, or a planned graph that fails to run.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/conv.h"
#include "core/model_graph.h"
#include "core/onnx_import.h"
#include "onnx/onnx_pb.h"

namespace {

// Keeps each run fast: larger graphs are imported and planned but not run.
constexpr int64_t kMaxRunElements = 1 << 16;
constexpr int64_t kMaxRunMacs = 1 << 20;

void Ints(onnx::NodeProto* node, const std::string& name, const std::vector<int64_t>& values) {
  onnx::AttributeProto* attribute = node->add_attribute();
  attribute->set_name(name);
  attribute->set_type(onnx::AttributeProto::INTS);
  for (int64_t value : values) attribute->add_ints(value);
}

void Int(onnx::NodeProto* node, const std::string& name, int64_t value) {
  onnx::AttributeProto* attribute = node->add_attribute();
  attribute->set_name(name);
  attribute->set_type(onnx::AttributeProto::INT);
  attribute->set_i(value);
}

void Initializer(onnx::GraphProto* graph, const std::string& name, std::vector<int64_t> dims,
                 FuzzedDataProvider& data, bool ints = false) {
  onnx::TensorProto* tensor = graph->add_initializer();
  tensor->set_name(name);
  tensor->set_data_type(ints ? onnx::TensorProto::INT64 : onnx::TensorProto::FLOAT);
  int64_t count = 1;
  for (int64_t dim : dims) {
    tensor->add_dims(dim);
    count *= dim;
  }
  for (int64_t i = 0; i < count; ++i) {
    if (ints) {
      tensor->add_int64_data(data.ConsumeIntegralInRange<int64_t>(-2, 4));
    } else {
      tensor->add_float_data(data.ConsumeFloatingPointInRange<float>(-2.0f, 2.0f));
    }
  }
}

std::string BuildModel(FuzzedDataProvider& data) {
  static const int64_t kOpsets[] = {9, 11, 13, 17};
  onnx::ModelProto model;
  model.set_ir_version(8);
  onnx::OperatorSetIdProto* set = model.add_opset_import();
  set->set_domain("");
  set->set_version(kOpsets[data.ConsumeIntegralInRange<int>(0, 3)]);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("g");
  const int rank = data.ConsumeIntegralInRange<int>(1, 2);  // spatial
  onnx::ValueInfoProto* input = graph->add_input();
  input->set_name("x");
  auto* type = input->mutable_type()->mutable_tensor_type();
  type->set_elem_type(onnx::TensorProto::FLOAT);
  const bool fixed = data.ConsumeBool();
  for (int axis = 0; axis < rank + 2; ++axis) {
    auto* dim = type->mutable_shape()->add_dim();
    const int64_t extent = axis == 0   ? data.ConsumeIntegralInRange<int64_t>(1, 2)
                           : axis == 1 ? data.ConsumeIntegralInRange<int64_t>(1, 4)
                                       : data.ConsumeIntegralInRange<int64_t>(1, 9);
    if (fixed || axis == 1) {
      dim->set_dim_value(extent);
    } else {
      dim->set_dim_param(axis == 0 ? "n" : "s" + std::to_string(axis));
    }
  }
  std::vector<std::string> tensors = {"x"};
  const int nodes = data.ConsumeIntegralInRange<int>(1, 8);
  for (int i = 0; i < nodes && data.remaining_bytes() > 0; ++i) {
    static const char* const kOps[] = {
        "Conv", "Conv", "Conv",   "Add", "Concat", "Relu", "Sigmoid", "Pad", "BatchNormalization",
        "Clip", "Mul",  "MaxPool"};
    const std::string op = kOps[data.ConsumeIntegralInRange<size_t>(0, 11)];
    const std::string out = "t" + std::to_string(i);
    auto pick = [&] { return tensors[data.ConsumeIntegralInRange<size_t>(0, tensors.size() - 1)]; };
    onnx::NodeProto* node = graph->add_node();
    node->set_op_type(op);
    node->set_name("/n" + std::to_string(i) + "/" + op);
    node->add_output(out);
    if (op == "Conv") {
      const int64_t groups = data.ConsumeIntegralInRange<int64_t>(1, 2);
      const int64_t cout = groups * data.ConsumeIntegralInRange<int64_t>(1, 3);
      const int64_t cin = data.ConsumeIntegralInRange<int64_t>(1, 4);
      std::vector<int64_t> dims = {cout, cin};
      for (int a = 0; a < rank; ++a) dims.push_back(data.ConsumeIntegralInRange<int64_t>(1, 3));
      node->add_input(pick());
      node->add_input(out + ".w");
      Initializer(graph, out + ".w", dims, data);
      if (data.ConsumeBool()) {
        node->add_input(out + ".b");
        Initializer(graph, out + ".b", {cout}, data);
      }
      if (groups > 1) Int(node, "group", groups);
      if (data.ConsumeBool()) {
        std::vector<int64_t> pads;
        for (int a = 0; a < 2 * rank; ++a)
          pads.push_back(data.ConsumeIntegralInRange<int64_t>(0, 3));
        Ints(node, "pads", pads);
      }
      if (data.ConsumeBool()) {
        std::vector<int64_t> strides;
        for (int a = 0; a < rank; ++a)
          strides.push_back(data.ConsumeIntegralInRange<int64_t>(1, 3));
        Ints(node, "strides", strides);
      }
      if (data.ConsumeBool()) {
        std::vector<int64_t> dilations;
        for (int a = 0; a < rank; ++a)
          dilations.push_back(data.ConsumeIntegralInRange<int64_t>(1, 2));
        Ints(node, "dilations", dilations);
      }
    } else if (op == "Add" || op == "Mul") {
      node->add_input(pick());
      node->add_input(pick());
    } else if (op == "Concat") {
      const int inputs = data.ConsumeIntegralInRange<int>(1, 3);
      for (int k = 0; k < inputs; ++k) node->add_input(pick());
      Int(node, "axis", data.ConsumeIntegralInRange<int64_t>(-rank - 2, rank + 1));
    } else if (op == "Pad") {
      node->add_input(pick());
      node->add_input(out + ".pads");
      Initializer(graph, out + ".pads", {2 * (rank + 2)}, data, /*ints=*/true);
    } else if (op == "BatchNormalization") {
      const int64_t c = data.ConsumeIntegralInRange<int64_t>(1, 4);
      node->add_input(pick());
      for (const char* role : {".scale", ".beta", ".mean", ".var"}) {
        node->add_input(out + role);
        Initializer(graph, out + role, {c}, data);
      }
    } else if (op == "MaxPool") {
      node->add_input(pick());
      std::vector<int64_t> kernel(static_cast<size_t>(rank), 2);
      Ints(node, "kernel_shape", kernel);
    } else {
      node->add_input(pick());
    }
    tensors.push_back(out);
  }
  onnx::ValueInfoProto* output = graph->add_output();
  output->set_name(data.ConsumeBool()
                       ? tensors.back()
                       : tensors[data.ConsumeIntegralInRange<size_t>(0, tensors.size() - 1)]);
  output->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  auto* output_shape = output->mutable_type()->mutable_tensor_type()->mutable_shape();
  for (int axis = 0; axis < rank + 2; ++axis) {
    output_shape->add_dim()->set_dim_param("y" + std::to_string(axis));
  }
  return model.SerializeAsString();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  FuzzedDataProvider data(bytes, size);
  const std::string model_bytes =
      data.ConsumeBool() ? data.ConsumeRemainingBytesAsString() : BuildModel(data);
  convserve::OnnxImportOptions options;
  options.max_bytes = 1 << 20;
  absl::StatusOr<convserve::ImportedModel> model = convserve::ImportOnnx(model_bytes, options);
  if (!model.ok()) {
    if (model.status().message().size() > convserve::kMaxImportMessageBytes) __builtin_trap();
    return 0;
  }
  std::vector<std::unique_ptr<convserve::ConvOperator>> ops;
  std::vector<const convserve::ConvOperator*> pointers;
  std::vector<const convserve::ResolvedLayer*> layers;
  for (const convserve::ImportedLayer& layer : model->layers) {
    absl::StatusOr<std::unique_ptr<convserve::ConvOperator>> op =
        convserve::ConvOperator::Create(layer.spec, layer.weight, layer.bias);
    if (!op.ok()) __builtin_trap();  // the importer checked every layer
    pointers.push_back(op->get());
    layers.push_back(&(*op)->layer());
    ops.push_back(*std::move(op));
  }
  if (!model->graph.Check(static_cast<int>(ops.size())).ok()) __builtin_trap();
  // The declared input shape, its open extents filled in from the data.
  std::vector<int64_t> shape = model->input_shape;
  if (shape.empty()) return 0;
  for (int64_t& extent : shape) {
    if (extent < 0) extent = 1 + static_cast<int64_t>(size % 7);
  }
  absl::StatusOr<convserve::GraphPlan> plan =
      convserve::PlanGraph(model->graph, layers, shape, "fuzz");
  if (!plan.ok()) return 0;
  int64_t largest = 0;
  for (const std::vector<int64_t>& value : plan->shapes) {
    int64_t elements = 1;
    for (int64_t extent : value) elements *= extent;
    largest = std::max(largest, elements);
  }
  if (largest > kMaxRunElements || plan->macs > kMaxRunMacs) return 0;
  int64_t input_elements = 1;
  for (int64_t extent : shape) input_elements *= extent;
  const std::vector<float> input(static_cast<size_t>(input_elements), 0.5f);
  std::vector<float> output(static_cast<size_t>(plan->output_elements()));
  absl::Status run = convserve::RunGraph(
      model->graph, pointers, *plan, input.data(), [&] { return output.data(); },
      convserve::StopToken());
  if (!run.ok()) __builtin_trap();
  return 0;
}
