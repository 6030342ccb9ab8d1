// onnx_import.cc: ONNX graph -> layer stack (see onnx_import.h).
#include "core/onnx_import.h"

#include <google/protobuf/io/coded_stream.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <exception>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/geometry.h"
#include "core/onnx_const_eval.h"
#include "core/printable.h"
#include "onnx/checker.h"
#include "onnx/onnx_pb.h"
#include "onnx/shape_inference/implementation.h"

namespace convserve {
namespace {

using onnx::NodeProto;
using onnx::TensorProto;

constexpr int64_t kMinOpset = 9;
constexpr int64_t kMaxOpset = 17;

// Ops that may carry the data tensor (everything else must be constant).
bool IsChainOp(const std::string& op) {
  static const char* const kOps[] = {"Conv", "Pad",       "BatchNormalization",
                                     "Relu", "LeakyRelu", "Clip",
                                     "Elu",  "Sigmoid",   "Tanh",
                                     "Mul",  "Div",       "Erf",
                                     "Add",  "Concat"};
  for (const char* known : kOps) {
    if (op == known) return true;
  }
  return false;
}

bool IsDefaultDomain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

std::string Dims(const std::vector<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

class Importer {
 public:
  Importer(const onnx::ModelProto& model, const OnnxImportOptions& options, int64_t opset)
      : graph_(model.graph()), options_(options), opset_(opset) {}

  absl::StatusOr<ImportedModel> Run();

 private:
  // "<source>: " + message.
  absl::Status Error(const std::string& message) const {
    return absl::InvalidArgumentError(
        CapMessage(absl::StrCat(options_.source, ": ", message), kMaxImportMessageBytes));
  }
  // "Conv (/0/Conv)": a node as messages name it.
  static std::string Describe(const NodeProto& node) {
    return absl::StrCat(Printable(node.op_type(), 64), " (",
                        node.name().empty() ? std::string("unnamed") : Printable(node.name()), ")");
  }
  absl::Status NodeError(const NodeProto& node, const std::string& message) const {
    return Error(absl::StrCat("node ", Describe(node), ": ", message));
  }

  absl::Status IndexGraph();
  absl::Status FoldConstants();
  bool IsConstant(const std::string& name) const {
    return name.empty() || initializers_.count(name) != 0 || folded_.count(name) != 0;
  }
  // A constant's value (decoded on first use); null for "" (omitted input).
  absl::StatusOr<const ConstTensor*> ConstantValue(const std::string& name);
  absl::StatusOr<std::vector<float>> ConstantFloats(const NodeProto& node, int input,
                                                    const std::string& role);
  // The data-carrying nodes that read `tensor`.
  std::vector<const NodeProto*> Consumers(const std::string& tensor) const {
    auto found = consumers_.find(tensor);
    return found == consumers_.end() ? std::vector<const NodeProto*>{} : found->second;
  }
  // The single node reading `tensor`, or an error naming all of them.
  absl::StatusOr<const NodeProto*> OnlyConsumer(const std::string& tensor,
                                                const NodeProto& producer);
  void Use(const NodeProto& node) { used_.insert(&node); }

  absl::Status ImportConv(const NodeProto& conv, const NodeProto* pad, ImportedLayer* layer);
  absl::Status MergePad(const NodeProto& pad, const NodeProto& conv, ConvSpec* spec);
  absl::Status FoldBatchNorm(const NodeProto& norm, ImportedLayer* layer);
  // Fuses the activation reading `*tensor` (if any) into `*activation` and
  // `*alpha`, moving `*tensor` to its output.
  absl::Status FuseActivation(std::string* tensor, Activation* activation, float* alpha);
  // If `node` is a one-node activation (Relu, Clip 0..6, ...): true, with
  // `*activation` (and `*alpha` if the node sets it) filled in.
  absl::StatusOr<bool> ParseActivation(const NodeProto& node, Activation* activation, float* alpha);
  absl::StatusOr<double> ScalarConstant(const NodeProto& node, const std::string& name,
                                        const std::string& role);
  // For a two-input node with `tensor` as one input: the other input's name.
  static std::string OtherInput(const NodeProto& node, const std::string& tensor) {
    if (node.input_size() != 2) return "";
    return node.input(0) == tensor ? node.input(1) : node.input(1) == tensor ? node.input(0) : "";
  }

  const onnx::GraphProto& graph_;
  const OnnxImportOptions& options_;
  const int64_t opset_;
  std::unordered_map<std::string, const TensorProto*> initializers_;
  std::map<std::string, ConstTensor> folded_;           // constants computed or decoded
  std::map<std::string, std::vector<int64_t>> shapes_;  // static shapes, -1 unknown dims
  std::vector<const NodeProto*> chain_nodes_;           // nodes carrying data, in graph order
  std::unordered_map<std::string, std::vector<const NodeProto*>> consumers_;
  std::set<const NodeProto*> used_;
  std::set<std::string> outputs_;
  std::string input_;
};

absl::Status Importer::IndexGraph() {
  for (const TensorProto& tensor : graph_.initializer()) {
    if (HasExternalData(tensor)) {
      return Error(absl::StrCat("initializer '", Printable(tensor.name()),
                                "': external data is not supported (the model must carry its "
                                "weights inside the file)"));
    }
    initializers_[tensor.name()] = &tensor;
  }
  if (graph_.sparse_initializer_size() > 0) {
    return Error("sparse initializers are not supported");
  }
  auto record_shape = [this](const onnx::ValueInfoProto& value) {
    if (!value.type().has_tensor_type() || !value.type().tensor_type().has_shape()) return;
    std::vector<int64_t> dims;
    for (const auto& dim : value.type().tensor_type().shape().dim()) {
      dims.push_back(dim.has_dim_value() ? dim.dim_value() : -1);
    }
    shapes_[value.name()] = dims;
  };
  std::vector<const onnx::ValueInfoProto*> inputs;
  for (const onnx::ValueInfoProto& value : graph_.input()) {
    record_shape(value);
    if (initializers_.count(value.name()) == 0) inputs.push_back(&value);
  }
  for (const onnx::ValueInfoProto& value : graph_.value_info()) record_shape(value);
  for (const onnx::ValueInfoProto& value : graph_.output()) {
    record_shape(value);
    outputs_.insert(value.name());
  }
  if (inputs.size() != 1) {
    std::vector<std::string> names;
    for (const auto* value : inputs)
      names.push_back(absl::StrCat("'", Printable(value->name()), "'"));
    return Error(absl::StrCat("graph inputs: expected one (the data tensor), got ", inputs.size(),
                              names.empty() ? "" : absl::StrCat(": ", absl::StrJoin(names, ", "))));
  }
  if (graph_.output_size() != 1) {
    return Error(absl::StrCat("graph outputs: expected one, got ", graph_.output_size()));
  }
  const onnx::ValueInfoProto& input = *inputs[0];
  input_ = input.name();
  const int32_t type = input.type().tensor_type().elem_type();
  if (!input.type().has_tensor_type() || type != TensorProto::FLOAT) {
    return Error(absl::StrCat(
        "graph input '", Printable(input_), "': expected a FLOAT tensor, got ",
        input.type().has_tensor_type() ? TensorTypeName(type) : std::string("a non-tensor")));
  }
  return absl::OkStatus();
}

absl::StatusOr<const ConstTensor*> Importer::ConstantValue(const std::string& name) {
  if (name.empty()) return nullptr;
  auto found = folded_.find(name);
  if (found != folded_.end()) return &found->second;
  auto initializer = initializers_.find(name);
  if (initializer == initializers_.end()) {
    return Error(absl::StrCat("tensor '", Printable(name), "': expected a constant"));
  }
  absl::StatusOr<ConstTensor> decoded =
      DecodeTensor(*initializer->second, absl::StrCat("initializer '", Printable(name), "'"));
  if (!decoded.ok()) return Error(std::string(decoded.status().message()));
  return &folded_.emplace(name, *std::move(decoded)).first->second;
}

absl::Status Importer::FoldConstants() {
  std::vector<std::string> unsupported;
  for (const NodeProto& node : graph_.node()) {
    const std::string& op = node.op_type();
    if (!IsDefaultDomain(node.domain())) {
      unsupported.push_back(absl::StrCat(Printable(node.domain(), 64), ".", Describe(node)));
      continue;
    }
    bool constant_inputs = true;
    for (const std::string& input : node.input()) constant_inputs &= IsConstant(input);
    // Shape reads only the static shape of its input.
    bool static_shape = false;
    if (op == "Shape" && node.input_size() == 1) {
      auto shape = shapes_.find(node.input(0));
      static_shape =
          shape != shapes_.end() && std::none_of(shape->second.begin(), shape->second.end(),
                                                 [](int64_t dim) { return dim < 0; });
    }
    if (IsFoldableOp(op) && (constant_inputs || static_shape) && node.output_size() == 1) {
      absl::StatusOr<ConstTensor> value;
      if (op == "Shape" && static_shape) {
        value = ShapeOf(node, shapes_[node.input(0)]);
      } else {
        std::vector<const ConstTensor*> inputs;
        for (const std::string& input : node.input()) {
          absl::StatusOr<const ConstTensor*> tensor = ConstantValue(input);
          if (!tensor.ok()) return tensor.status();
          inputs.push_back(*tensor);
        }
        value = EvaluateNode(node, inputs, static_cast<int>(opset_));
      }
      if (!value.ok()) return NodeError(node, std::string(value.status().message()));
      folded_[node.output(0)] = *std::move(value);
      continue;
    }
    if (!IsChainOp(op)) {
      unsupported.push_back(Describe(node));
      continue;
    }
    chain_nodes_.push_back(&node);
    for (const std::string& input : node.input()) {
      if (!IsConstant(input)) consumers_[input].push_back(&node);
    }
  }
  if (!unsupported.empty()) {
    return Error(absl::StrCat("unsupported nodes: ", absl::StrJoin(unsupported, ", ")));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> Importer::ConstantFloats(const NodeProto& node, int input,
                                                            const std::string& role) {
  if (node.input_size() <= input || node.input(input).empty()) {
    return NodeError(node,
                     absl::StrCat("input ", input, " (", role, "): expected a tensor, got none"));
  }
  const std::string& name = node.input(input);
  const std::string what = absl::StrCat("input ", input, " (", role, ")");
  auto initializer = initializers_.find(name);
  if (initializer != initializers_.end() && folded_.count(name) == 0) {
    absl::StatusOr<std::vector<float>> values = DecodeFloats(*initializer->second, what);
    if (!values.ok()) return NodeError(node, std::string(values.status().message()));
    return values;
  }
  auto found = folded_.find(name);
  if (found == folded_.end()) {
    return NodeError(node, absl::StrCat(what,
                                        ": expected a constant (an initializer), got the "
                                        "computed tensor '",
                                        Printable(name), "'"));
  }
  if (found->second.type != TensorProto::FLOAT) {
    return NodeError(node, absl::StrCat(what, ": expected a FLOAT tensor, got ",
                                        TensorTypeName(found->second.type)));
  }
  return std::vector<float>(found->second.reals.begin(), found->second.reals.end());
}

absl::StatusOr<const NodeProto*> Importer::OnlyConsumer(const std::string& tensor,
                                                        const NodeProto& producer) {
  std::vector<const NodeProto*> readers = Consumers(tensor);
  if (readers.size() == 1 && outputs_.count(tensor) == 0) return readers[0];
  std::vector<std::string> names;
  for (const NodeProto* reader : readers) names.push_back(Describe(*reader));
  if (outputs_.count(tensor) != 0) names.push_back("the graph output");
  return NodeError(
      producer, absl::StrCat("output '", Printable(tensor), "': expected to feed one node, feeds ",
                             names.empty() ? "nothing" : absl::StrJoin(names, ", "),
                             " (it is merged into the node it feeds, which must be its only "
                             "reader)"));
}

// A per-axis ints attribute: `count` values each >= `minimum`, or `fallback`.
absl::StatusOr<std::vector<int64_t>> AxisAttribute(const NodeProto& node, const std::string& name,
                                                   size_t count, int64_t minimum,
                                                   int64_t fallback) {
  const onnx::AttributeProto* attribute = FindAttribute(node, name);
  if (attribute == nullptr) return std::vector<int64_t>(count, fallback);
  std::vector<int64_t> values(attribute->ints().begin(), attribute->ints().end());
  if (values.size() != count) {
    return absl::InvalidArgumentError(absl::StrCat("attribute ", name, ": expected ", count,
                                                   " values, got ", values.size(), " ",
                                                   Dims(values)));
  }
  for (int64_t value : values) {
    if (value < minimum) {
      return absl::InvalidArgumentError(absl::StrCat(
          "attribute ", name, ": expected values >= ", minimum, ", got ", Dims(values)));
    }
  }
  return values;
}

absl::Status Importer::ImportConv(const NodeProto& conv, const NodeProto* pad,
                                  ImportedLayer* layer) {
  layer->node = conv.name();
  absl::StatusOr<std::vector<float>> weight = ConstantFloats(conv, 1, "W");
  if (!weight.ok()) return weight.status();
  std::vector<int64_t> w_dims;
  {
    auto initializer = initializers_.find(conv.input(1));
    if (initializer != initializers_.end()) {
      w_dims.assign(initializer->second->dims().begin(), initializer->second->dims().end());
    } else {
      w_dims = folded_[conv.input(1)].dims;
    }
  }
  if (w_dims.size() < 3 || w_dims.size() > 5) {
    return NodeError(conv, absl::StrCat("input 1 (W): expected 3 to 5 dims (C_out, C_in/group, "
                                        "*kernel) for a 1-D to 3-D Conv, got ",
                                        Dims(w_dims)));
  }
  const size_t rank = w_dims.size() - 2;
  ConvSpec& spec = layer->spec;
  spec.spatial_rank = static_cast<int>(rank);
  spec.data_layout = DataLayout::kChannelsFirst;
  spec.weight_layout = WeightLayout::kOutInSpatial;
  const onnx::AttributeProto* group = FindAttribute(conv, "group");
  spec.groups = group != nullptr ? group->i() : 1;
  if (spec.groups < 1) {
    return NodeError(conv, absl::StrCat("attribute group: expected >= 1, got ", spec.groups));
  }
  spec.out_channels = w_dims[0];
  if (w_dims[1] > INT64_MAX / spec.groups) {
    return NodeError(conv, absl::StrCat("attribute group: ", spec.groups, " times W's ", w_dims[1],
                                        " input channels overflows"));
  }
  spec.in_channels = w_dims[1] * spec.groups;
  spec.kernel.assign(w_dims.begin() + 2, w_dims.end());
  absl::StatusOr<std::vector<int64_t>> kernel = AxisAttribute(conv, "kernel_shape", rank, 1, 0);
  if (!kernel.ok()) return NodeError(conv, std::string(kernel.status().message()));
  if (FindAttribute(conv, "kernel_shape") != nullptr && *kernel != spec.kernel) {
    return NodeError(conv, absl::StrCat("attribute kernel_shape: expected ", Dims(spec.kernel),
                                        " (W's spatial dims), got ", Dims(*kernel)));
  }
  absl::StatusOr<std::vector<int64_t>> strides = AxisAttribute(conv, "strides", rank, 1, 1);
  if (!strides.ok()) return NodeError(conv, std::string(strides.status().message()));
  spec.stride = *strides;
  absl::StatusOr<std::vector<int64_t>> dilations = AxisAttribute(conv, "dilations", rank, 1, 1);
  if (!dilations.ok()) return NodeError(conv, std::string(dilations.status().message()));
  spec.dilation = *dilations;
  absl::StatusOr<std::vector<int64_t>> pads = AxisAttribute(conv, "pads", 2 * rank, 0, 0);
  if (!pads.ok()) return NodeError(conv, std::string(pads.status().message()));
  const onnx::AttributeProto* auto_pad = FindAttribute(conv, "auto_pad");
  const std::string mode = auto_pad != nullptr ? auto_pad->s() : "NOTSET";
  if (mode == "NOTSET") {
    spec.padding = PaddingPreset::kExplicit;
    spec.pad_begin.assign(pads->begin(), pads->begin() + rank);
    spec.pad_end.assign(pads->begin() + rank, pads->end());
  } else if (mode == "VALID" || mode == "SAME_UPPER" || mode == "SAME_LOWER") {
    if (FindAttribute(conv, "pads") != nullptr) {
      return NodeError(conv, absl::StrCat("attribute pads: expected none with auto_pad ", mode,
                                          ", got ", Dims(*pads)));
    }
    spec.padding = mode == "VALID"        ? PaddingPreset::kValid
                   : mode == "SAME_UPPER" ? PaddingPreset::kSameUpper
                                          : PaddingPreset::kSameLower;
  } else {
    return NodeError(conv, absl::StrCat("attribute auto_pad: expected NOTSET, VALID, SAME_UPPER "
                                        "or SAME_LOWER, got '",
                                        Printable(mode), "'"));
  }
  spec.bias = conv.input_size() > 2 && !conv.input(2).empty();
  if (spec.bias) {
    absl::StatusOr<std::vector<float>> bias = ConstantFloats(conv, 2, "B");
    if (!bias.ok()) return bias.status();
    if (static_cast<int64_t>(bias->size()) != spec.out_channels) {
      return NodeError(conv, absl::StrCat("input 2 (B): expected ", spec.out_channels,
                                          " values (C_out), got ", bias->size()));
    }
    layer->bias = *std::move(bias);
  }
  if (pad != nullptr) {
    absl::Status merged = MergePad(*pad, conv, &spec);
    if (!merged.ok()) return merged;
  }
  // The core's own checks (groups dividing channels, ...), named by node.
  absl::StatusOr<ResolvedLayer> resolved = ResolveLayer(spec);
  if (!resolved.ok()) return NodeError(conv, std::string(resolved.status().message()));
  if (resolved->weight_elements() != static_cast<int64_t>(weight->size())) {
    return NodeError(conv, absl::StrCat("input 1 (W): expected ", resolved->weight_elements(),
                                        " values, got ", weight->size()));
  }
  layer->weight = *std::move(weight);
  return absl::OkStatus();
}

absl::Status Importer::MergePad(const NodeProto& pad, const NodeProto& conv, ConvSpec* spec) {
  const size_t rank = static_cast<size_t>(spec->spatial_rank);
  const onnx::AttributeProto* mode_attribute = FindAttribute(pad, "mode");
  const std::string mode = mode_attribute != nullptr ? mode_attribute->s() : "constant";
  std::vector<int64_t> pads;
  double value = 0.0;
  if (opset_ < 11) {
    const onnx::AttributeProto* attribute = FindAttribute(pad, "pads");
    if (attribute != nullptr) pads.assign(attribute->ints().begin(), attribute->ints().end());
    const onnx::AttributeProto* fill = FindAttribute(pad, "value");
    if (fill != nullptr) value = fill->f();
  } else {
    if (pad.input_size() < 2 || !IsConstant(pad.input(1)) || pad.input(1).empty()) {
      return NodeError(pad, "input 1 (pads): expected a constant, got a computed tensor");
    }
    absl::StatusOr<const ConstTensor*> tensor = ConstantValue(pad.input(1));
    if (!tensor.ok()) return tensor.status();
    for (int64_t i = 0; i < (*tensor)->size(); ++i) pads.push_back((*tensor)->integer(i));
    if (pad.input_size() > 2 && !pad.input(2).empty()) {
      if (!IsConstant(pad.input(2))) {
        return NodeError(pad,
                         "input 2 (constant_value): expected a constant, got a computed tensor");
      }
      absl::StatusOr<const ConstTensor*> fill = ConstantValue(pad.input(2));
      if (!fill.ok()) return fill.status();
      if ((*fill)->size() != 1) {
        return NodeError(pad, absl::StrCat("input 2 (constant_value): expected one value, got ",
                                           (*fill)->size()));
      }
      value = (*fill)->real(0);
    }
    if (pad.input_size() > 3 && !pad.input(3).empty()) {
      return NodeError(pad, "input 3 (axes): not supported");
    }
  }
  const size_t tensor_rank = rank + 2;
  if (pads.size() != 2 * tensor_rank) {
    return NodeError(pad,
                     absl::StrCat("pads: expected ", 2 * tensor_rank,
                                  " values (begin and end of N, C and each spatial axis), got ",
                                  pads.size(), " ", Dims(pads)));
  }
  if (pads[0] != 0 || pads[1] != 0 || pads[tensor_rank] != 0 || pads[tensor_rank + 1] != 0) {
    return NodeError(
        pad, absl::StrCat("pads: expected 0 on the batch and channel axes, got ", Dims(pads)));
  }
  // Pads this large are refused by the layer anyway; the bound keeps the sum
  // with the Conv's own pads from overflowing.
  constexpr int64_t kMaxPad = int64_t{1} << 40;
  for (int64_t p : pads) {
    if (p < 0 || p > kMaxPad) {
      return NodeError(
          pad, absl::StrCat("pads: expected values in [0, ", kMaxPad, "], got ", Dims(pads)));
    }
  }
  for (const std::vector<int64_t>* own : {&spec->pad_begin, &spec->pad_end}) {
    for (int64_t p : *own) {
      if (p > kMaxPad) {
        return NodeError(conv, absl::StrCat("attribute pads: expected values <= ", kMaxPad,
                                            " to merge a Pad into, got ", p));
      }
    }
  }
  PaddingMode padding_mode;
  if (mode == "constant") {
    if (value != 0.0) {
      return NodeError(
          pad, absl::StrCat("constant value: expected 0 (a Conv pads with zeros), got ", value));
    }
    padding_mode = PaddingMode::kZeros;
  } else if (mode == "reflect") {
    padding_mode = PaddingMode::kReflect;
  } else if (mode == "edge") {
    padding_mode = PaddingMode::kReplicate;
  } else {
    return NodeError(pad, absl::StrCat("attribute mode: expected constant, reflect or edge, got '",
                                       Printable(mode), "'"));
  }
  if (spec->padding == PaddingPreset::kSameUpper || spec->padding == PaddingPreset::kSameLower) {
    return NodeError(conv, absl::StrCat("attribute auto_pad: a Pad before this Conv merges only "
                                        "with auto_pad NOTSET or VALID, got ",
                                        PaddingPresetName(spec->padding)));
  }
  const bool conv_pads =
      std::any_of(spec->pad_begin.begin(), spec->pad_begin.end(),
                  [](int64_t p) { return p != 0; }) ||
      std::any_of(spec->pad_end.begin(), spec->pad_end.end(), [](int64_t p) { return p != 0; });
  if (padding_mode != PaddingMode::kZeros && conv_pads) {
    return NodeError(conv, absl::StrCat("attribute pads: expected zeros after the ", mode, " Pad ",
                                        Describe(pad), " (zero padding around ", mode,
                                        " padding is not one padding mode), got ",
                                        Dims(spec->pad_begin), " + ", Dims(spec->pad_end)));
  }
  if (spec->padding == PaddingPreset::kValid || spec->pad_begin.empty()) {
    spec->pad_begin.assign(rank, 0);
    spec->pad_end.assign(rank, 0);
  }
  spec->padding = PaddingPreset::kExplicit;
  for (size_t a = 0; a < rank; ++a) {
    spec->pad_begin[a] += pads[2 + a];
    spec->pad_end[a] += pads[tensor_rank + 2 + a];
  }
  spec->padding_mode = padding_mode;
  return absl::OkStatus();
}

absl::Status Importer::FoldBatchNorm(const NodeProto& norm, ImportedLayer* layer) {
  for (int i = 1; i < norm.output_size(); ++i) {
    if (!norm.output(i).empty()) {
      return NodeError(norm, absl::StrCat("output ", i,
                                          ": expected only the inference form "
                                          "(one output), got training outputs"));
    }
  }
  const onnx::AttributeProto* training = FindAttribute(norm, "training_mode");
  if (training != nullptr && training->i() != 0) {
    return NodeError(norm,
                     absl::StrCat("attribute training_mode: expected 0, got ", training->i()));
  }
  const onnx::AttributeProto* epsilon_attribute = FindAttribute(norm, "epsilon");
  const double epsilon = epsilon_attribute != nullptr ? epsilon_attribute->f() : 1e-5;
  const int64_t channels = layer->spec.out_channels;
  const char* const roles[] = {"scale", "B", "input_mean", "input_var"};
  std::vector<float> params[4];
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<std::vector<float>> values = ConstantFloats(norm, i + 1, roles[i]);
    if (!values.ok()) return values.status();
    if (static_cast<int64_t>(values->size()) != channels) {
      return NodeError(norm, absl::StrCat("input ", i + 1, " (", roles[i], "): expected ", channels,
                                          " values (the Conv's C_out), got ", values->size()));
    }
    params[i] = *std::move(values);
  }
  const int64_t per_channel = static_cast<int64_t>(layer->weight.size()) / channels;
  if (!layer->spec.bias) layer->bias.assign(static_cast<size_t>(channels), 0.0f);
  layer->spec.bias = true;
  for (int64_t o = 0; o < channels; ++o) {
    // y = (conv + b - mean) * scale / sqrt(var + eps) + beta, in double.
    const double factor =
        static_cast<double>(params[0][o]) / std::sqrt(static_cast<double>(params[3][o]) + epsilon);
    for (int64_t i = o * per_channel; i < (o + 1) * per_channel; ++i) {
      layer->weight[i] = static_cast<float>(static_cast<double>(layer->weight[i]) * factor);
    }
    layer->bias[o] = static_cast<float>(
        (static_cast<double>(layer->bias[o]) - params[2][o]) * factor + params[1][o]);
  }
  return absl::OkStatus();
}

absl::StatusOr<double> Importer::ScalarConstant(const NodeProto& node, const std::string& name,
                                                const std::string& role) {
  if (name.empty() || !IsConstant(name)) {
    return NodeError(node, absl::StrCat(role, ": expected a constant, got a computed tensor"));
  }
  absl::StatusOr<const ConstTensor*> value = ConstantValue(name);
  if (!value.ok()) return value.status();
  if ((*value)->size() != 1) {
    return NodeError(node, absl::StrCat(role, ": expected one value, got ", (*value)->size(),
                                        " of shape ", Dims((*value)->dims)));
  }
  return (*value)->real(0);
}

absl::StatusOr<bool> Importer::ParseActivation(const NodeProto& node, Activation* activation,
                                               float* alpha) {
  const std::string& op = node.op_type();
  if (op == "Relu") {
    *activation = Activation::kRelu;
  } else if (op == "Sigmoid") {
    *activation = Activation::kSigmoid;
  } else if (op == "Tanh") {
    *activation = Activation::kTanh;
  } else if (op == "LeakyRelu" || op == "Elu") {
    *activation = op == "Elu" ? Activation::kElu : Activation::kLeakyRelu;
    const onnx::AttributeProto* given = FindAttribute(node, "alpha");
    *alpha = given != nullptr ? given->f() : DefaultActivationAlpha(*activation);
  } else if (op == "Clip") {
    double low = -INFINITY, high = INFINITY;
    if (opset_ < 11) {
      const onnx::AttributeProto* min = FindAttribute(node, "min");
      const onnx::AttributeProto* max = FindAttribute(node, "max");
      if (min != nullptr) low = min->f();
      if (max != nullptr) high = max->f();
    } else {
      if (node.input_size() > 1 && !node.input(1).empty()) {
        absl::StatusOr<double> value = ScalarConstant(node, node.input(1), "input 1 (min)");
        if (!value.ok()) return value.status();
        low = *value;
      }
      if (node.input_size() > 2 && !node.input(2).empty()) {
        absl::StatusOr<double> value = ScalarConstant(node, node.input(2), "input 2 (max)");
        if (!value.ok()) return value.status();
        high = *value;
      }
    }
    if (low == 0.0 && high == 6.0) {
      *activation = Activation::kRelu6;
    } else if (low == 0.0 && high == INFINITY) {
      *activation = Activation::kRelu;
    } else {
      return NodeError(node, absl::StrCat("min, max: expected 0 and 6 (relu6) or 0 and none "
                                          "(relu), got ",
                                          low, " and ", high));
    }
  } else {
    return false;
  }
  return true;
}

absl::Status Importer::FuseActivation(std::string* tensor, Activation* activation, float* alpha) {
  if (outputs_.count(*tensor) != 0) return absl::OkStatus();
  std::vector<const NodeProto*> readers = Consumers(*tensor);
  if (readers.size() == 1) {
    const NodeProto& node = *readers[0];
    absl::StatusOr<bool> parsed = ParseActivation(node, activation, alpha);
    if (!parsed.ok()) return parsed.status();
    if (!*parsed) return absl::OkStatus();  // not an activation: the next step's business
    Use(node);
    *tensor = node.output(0);
    return absl::OkStatus();
  }
  if (readers.size() != 2) return absl::OkStatus();  // reported by the chain walk
  const NodeProto* first = readers[0];
  const NodeProto* second = readers[1];
  if (first->op_type() == "Mul") std::swap(first, second);
  if (second->op_type() != "Mul") return absl::OkStatus();
  const NodeProto& mul = *second;
  if (first->op_type() == "Sigmoid") {
    // SiLU: Mul(x, Sigmoid(x)).
    const NodeProto& sigmoid = *first;
    if (OtherInput(mul, *tensor) != sigmoid.output(0)) {
      return NodeError(mul, "expected x * Sigmoid(x) (SiLU)");
    }
    absl::StatusOr<const NodeProto*> next = OnlyConsumer(sigmoid.output(0), sigmoid);
    if (!next.ok() || *next != &mul)
      return NodeError(sigmoid, "expected to feed only the SiLU Mul");
    *activation = Activation::kSilu;
    Use(sigmoid);
    Use(mul);
    *tensor = mul.output(0);
    return absl::OkStatus();
  }
  if (first->op_type() != "Div") return absl::OkStatus();
  // erf-GELU as exporters write it: Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5).
  const NodeProto& div = *first;
  if (div.input_size() != 2 || div.input(0) != *tensor) {
    return NodeError(div, "expected x / sqrt(2) (the GELU pattern)");
  }
  absl::StatusOr<double> root2 = ScalarConstant(div, div.input(1), "input 1");
  if (!root2.ok()) return root2.status();
  if (std::fabs(*root2 - std::sqrt(2.0)) > 1e-6) {
    return NodeError(div,
                     absl::StrCat("input 1: expected sqrt(2) (the GELU pattern), got ", *root2));
  }
  absl::StatusOr<const NodeProto*> erf = OnlyConsumer(div.output(0), div);
  if (!erf.ok()) return erf.status();
  if ((*erf)->op_type() != "Erf") return NodeError(**erf, "expected Erf (the GELU pattern)");
  absl::StatusOr<const NodeProto*> add = OnlyConsumer((*erf)->output(0), **erf);
  if (!add.ok()) return add.status();
  if ((*add)->op_type() != "Add") return NodeError(**add, "expected Add of 1 (the GELU pattern)");
  absl::StatusOr<double> one = ScalarConstant(**add, OtherInput(**add, (*erf)->output(0)), "input");
  if (!one.ok()) return one.status();
  if (*one != 1.0)
    return NodeError(**add, absl::StrCat("expected + 1 (the GELU pattern), got + ", *one));
  if (OtherInput(mul, *tensor) != (*add)->output(0)) {
    return NodeError(mul, "expected x * (1 + erf(x / sqrt(2))) (the GELU pattern)");
  }
  absl::StatusOr<const NodeProto*> half = OnlyConsumer(mul.output(0), mul);
  if (!half.ok()) return half.status();
  if ((*half)->op_type() != "Mul")
    return NodeError(**half, "expected Mul by 0.5 (the GELU pattern)");
  absl::StatusOr<double> factor =
      ScalarConstant(**half, OtherInput(**half, mul.output(0)), "input");
  if (!factor.ok()) return factor.status();
  if (*factor != 0.5) {
    return NodeError(**half, absl::StrCat("expected * 0.5 (the GELU pattern), got * ", *factor));
  }
  *activation = Activation::kGelu;
  for (const NodeProto* node : {&div, *erf, *add, &mul, *half}) Use(*node);
  *tensor = (*half)->output(0);
  return absl::OkStatus();
}

absl::StatusOr<ImportedModel> Importer::Run() {
  absl::Status indexed = IndexGraph();
  if (!indexed.ok()) return indexed;
  absl::Status folded = FoldConstants();
  if (!folded.ok()) return folded;
  ImportedModel result;
  result.opset = opset_;
  result.input_shape = shapes_[input_];
  // What is known of each value (ModelGraph's numbering): its rank and
  // channels, -1 where the file leaves them open.
  std::map<std::string, int> value_of{{input_, 0}};
  std::vector<int64_t> ranks{
      result.input_shape.empty() ? -1 : static_cast<int64_t>(result.input_shape.size())};
  std::vector<int64_t> channels{result.input_shape.size() >= 2 ? result.input_shape[1] : -1};
  std::vector<const NodeProto*> step_nodes;  // the node each step stands for
  std::unordered_map<std::string, const NodeProto*> producer;
  for (const NodeProto* node : chain_nodes_) {
    for (const std::string& output : node->output()) producer[output] = node;
  }
  // The value `tensor` (input `index` of `node`) holds, or an error.
  auto value = [&](const NodeProto& node, int index,
                   const std::string& tensor) -> absl::StatusOr<int> {
    auto found = value_of.find(tensor);
    if (found != value_of.end()) return found->second;
    if (IsConstant(tensor)) {
      return NodeError(node, absl::StrCat("input ", index,
                                          ": expected a tensor computed from the "
                                          "graph input, got the constant '",
                                          Printable(tensor), "'"));
    }
    return NodeError(node, absl::StrCat("input ", index,
                                        ": expected a tensor computed from the "
                                        "graph input by supported nodes, got '",
                                        Printable(tensor), "'"));
  };
  // Adds a step whose output is `tensor`.
  auto add_step = [&](GraphStep step, const NodeProto& node, const std::string& tensor,
                      int64_t rank, int64_t step_channels) {
    step.name = node.name();
    result.graph.steps.push_back(std::move(step));
    step_nodes.push_back(&node);
    value_of[tensor] = static_cast<int>(result.graph.steps.size());
    ranks.push_back(rank);
    channels.push_back(step_channels);
  };
  for (const NodeProto* node : chain_nodes_) {
    if (used_.count(node) != 0) continue;
    const std::string& op = node->op_type();
    if (op == "Pad") {
      // Merged into the Conv it feeds when that Conv is reached.
      absl::StatusOr<const NodeProto*> next = OnlyConsumer(node->output(0), *node);
      if (!next.ok()) return next.status();
      if ((*next)->op_type() != "Conv" || (*next)->input(0) != node->output(0)) {
        return NodeError(*node, absl::StrCat("expected to feed a Conv, feeds ", Describe(**next)));
      }
      if (IsConstant(node->input(0))) return NodeError(*node, "input 0: expected the data tensor");
      continue;
    }
    if (op == "Conv") {
      const NodeProto* pad = nullptr;
      std::string data = node->input(0);
      auto made_by = producer.find(data);
      if (made_by != producer.end() && made_by->second->op_type() == "Pad") {
        pad = made_by->second;
        data = pad->input(0);
      }
      absl::StatusOr<int> input = value(pad != nullptr ? *pad : *node, 0, data);
      if (!input.ok()) return input.status();
      ImportedLayer layer;
      absl::Status imported = ImportConv(*node, pad, &layer);
      if (!imported.ok()) return imported;
      if (pad != nullptr) Use(*pad);
      Use(*node);
      const ConvSpec& spec = layer.spec;
      const int64_t rank = ranks[static_cast<size_t>(*input)];
      const int64_t in_channels = channels[static_cast<size_t>(*input)];
      if ((rank >= 0 && rank != spec.spatial_rank + 2) ||
          (in_channels >= 0 && in_channels != spec.in_channels)) {
        const std::string what =
            *input == 0 ? absl::StrCat("the graph input is ", Dims(result.input_shape))
                        : absl::StrCat("it reads the output of ", Describe(*step_nodes[*input - 1]),
                                       ": ", rank - 2, "-D with ", in_channels, " channels");
        return NodeError(*node, absl::StrCat("input 0: expected (N, ", spec.in_channels, ", *",
                                             spec.spatial_rank, " spatial dims) from W, ", what));
      }
      std::string tensor = node->output(0);
      std::vector<const NodeProto*> after = Consumers(tensor);
      if (after.size() == 1 && after[0]->op_type() == "BatchNormalization" &&
          outputs_.count(tensor) == 0) {
        absl::Status norm = FoldBatchNorm(*after[0], &layer);
        if (!norm.ok()) return norm;
        Use(*after[0]);
        tensor = after[0]->output(0);
      }
      absl::Status fused =
          FuseActivation(&tensor, &layer.spec.activation, &layer.spec.activation_alpha);
      if (!fused.ok()) return fused;
      GraphStep step;
      step.op = StepOp::kConv;
      step.inputs = {*input};
      step.layer = static_cast<int>(result.layers.size());
      const int64_t out_channels = layer.spec.out_channels;
      const int64_t out_rank = layer.spec.spatial_rank + 2;
      result.layers.push_back(std::move(layer));
      add_step(std::move(step), *node, tensor, out_rank, out_channels);
      continue;
    }
    GraphStep step;
    Activation activation = Activation::kNone;
    float alpha = __builtin_nanf("");
    if (op == "Add" || op == "Concat") {
      step.op = op == "Add" ? StepOp::kAdd : StepOp::kConcat;
      int64_t rank = -1;
      for (int i = 0; i < node->input_size(); ++i) {
        absl::StatusOr<int> input = value(*node, i, node->input(i));
        if (!input.ok()) return input.status();
        step.inputs.push_back(*input);
        rank = std::max(rank, ranks[static_cast<size_t>(*input)]);
      }
      if (step.op == StepOp::kAdd && step.inputs.size() != 2) {
        return NodeError(*node, absl::StrCat("expected 2 inputs, got ", step.inputs.size()));
      }
      if (step.op == StepOp::kConcat) {
        const onnx::AttributeProto* axis = FindAttribute(*node, "axis");
        const int64_t given = axis != nullptr ? axis->i() : 1;
        if (!(given == 1 || (rank >= 0 && given == 1 - rank))) {
          return NodeError(*node, absl::StrCat("attribute axis: expected 1 (the channel axis)",
                                               rank >= 0 ? absl::StrCat(" or ", 1 - rank) : "",
                                               ", got ", given));
        }
        if (step.inputs.size() == 1) {
          // A Concat of one tensor is that tensor.
          value_of[node->output(0)] = step.inputs[0];
          Use(*node);
          continue;
        }
      }
      Use(*node);
      std::string tensor = node->output(0);
      absl::Status fused = FuseActivation(&tensor, &activation, &alpha);
      if (!fused.ok()) return fused;
      int64_t sum = 0;
      for (int input : step.inputs) {
        const int64_t c = channels[static_cast<size_t>(input)];
        sum = sum < 0 || c < 0 ? -1 : sum + c;
      }
      const int64_t out_channels =
          step.op == StepOp::kConcat ? sum : channels[static_cast<size_t>(step.inputs[0])];
      step.activation = activation;
      step.activation_alpha = std::isnan(alpha) ? DefaultActivationAlpha(activation) : alpha;
      add_step(std::move(step), *node, tensor, rank, out_channels);
      continue;
    }
    absl::StatusOr<bool> parsed = ParseActivation(*node, &activation, &alpha);
    if (!parsed.ok()) return parsed.status();
    if (!*parsed) {
      return NodeError(*node,
                       op == "BatchNormalization"
                           ? "expected right after a Conv whose output it alone reads (it is "
                             "folded into that Conv)"
                           : "expected as part of an activation right after a Conv, an Add or a "
                             "Concat (SiLU: x * Sigmoid(x); GELU: x * 0.5 * (1 + Erf(x / "
                             "sqrt(2))))");
    }
    // An activation by itself (its input feeds other nodes too).
    absl::StatusOr<int> input = value(*node, 0, node->input(0));
    if (!input.ok()) return input.status();
    Use(*node);
    step.op = StepOp::kActivation;
    step.inputs = {*input};
    step.activation = activation;
    step.activation_alpha = std::isnan(alpha) ? DefaultActivationAlpha(activation) : alpha;
    add_step(std::move(step), *node, node->output(0), ranks[static_cast<size_t>(*input)],
             channels[static_cast<size_t>(*input)]);
  }
  if (result.layers.empty()) return Error("expected at least one Conv, got none");
  const std::string& output = graph_.output(0).name();
  auto out = value_of.find(output);
  if (out == value_of.end() || out->second == 0) {
    return Error(absl::StrCat("graph output '", Printable(output),
                              "': expected a tensor computed from the graph input by a Conv, "
                              "an Add, a Concat or an activation"));
  }
  // Every step must lead to the output: the output is the last step's, and
  // every other step's output is read by a later step.
  std::vector<int> readers(result.graph.steps.size() + 1, 0);
  for (const GraphStep& step : result.graph.steps) {
    for (int input : step.inputs) ++readers[static_cast<size_t>(input)];
  }
  for (size_t k = 1; k <= result.graph.steps.size(); ++k) {
    if (static_cast<int>(k) == out->second) continue;
    if (readers[k] == 0 || static_cast<int>(k) > out->second) {
      return NodeError(*step_nodes[k - 1],
                       "its output does not lead to the graph output (a branch that ends "
                       "elsewhere is not supported: the model has one output)");
    }
  }
  absl::Status checked = result.graph.Check(static_cast<int>(result.layers.size()));
  if (!checked.ok()) return Error(std::string(checked.message()));
  return result;
}

// libonnx's shape inference divides by the strides (and multiplies by the
// dilations) of convolution and pooling nodes unchecked: a zero there is a
// SIGFPE, not an exception. Such values are refused first, in every graph
// and subgraph.
absl::Status CheckWindowAttributes(const onnx::GraphProto& graph, const std::string& source,
                                   int depth) {
  static const char* const kWindowOps[] = {"Conv",    "ConvTranspose", "ConvInteger", "QLinearConv",
                                           "MaxPool", "AveragePool",   "LpPool",      "MaxUnpool"};
  if (depth > 64)
    return absl::InvalidArgumentError(absl::StrCat(source, ": graphs nested too deep"));
  for (const NodeProto& node : graph.node()) {
    const bool window = std::any_of(std::begin(kWindowOps), std::end(kWindowOps),
                                    [&](const char* op) { return node.op_type() == op; });
    for (const onnx::AttributeProto& attribute : node.attribute()) {
      if (attribute.has_g()) {
        absl::Status nested = CheckWindowAttributes(attribute.g(), source, depth + 1);
        if (!nested.ok()) return nested;
      }
      for (const onnx::GraphProto& body : attribute.graphs()) {
        absl::Status nested = CheckWindowAttributes(body, source, depth + 1);
        if (!nested.ok()) return nested;
      }
      if (!window) continue;
      const std::string& name = attribute.name();
      const bool positive = name == "strides" || name == "dilations" || name == "kernel_shape";
      const bool is_group = name == "group";
      if (!positive && !is_group) continue;
      std::vector<int64_t> values(attribute.ints().begin(), attribute.ints().end());
      if (is_group) values = {attribute.i()};
      for (int64_t value : values) {
        if (value < 1) {
          return absl::InvalidArgumentError(absl::StrCat(
              source, ": node ", Printable(node.op_type(), 64), " (", Printable(node.name()),
              "): attribute ", name, ": expected values >= 1, got ",
              is_group ? absl::StrCat(values[0]) : Dims(values)));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ImportedModel> ImportOnnx(absl::string_view bytes,
                                         const OnnxImportOptions& options) {
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (size > options.max_bytes || size > INT_MAX) {
    return absl::ResourceExhaustedError(absl::StrCat(
        options.source, ": ", size, " bytes, more than the limit of ",
        std::min<int64_t>(options.max_bytes, INT_MAX), " bytes for a model",
        options.max_bytes_name.empty() ? "" : absl::StrCat(" (", options.max_bytes_name, ")")));
  }
  const std::string source = options.source;
  if (bytes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected an ONNX model, got 0 bytes"));
  }
  auto model = std::make_unique<onnx::ModelProto>();
  {
    google::protobuf::io::CodedInputStream stream(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                  static_cast<int>(size));
    stream.SetTotalBytesLimit(static_cast<int>(size));
    if (!model->ParseFromCodedStream(&stream) || !stream.ConsumedEntireMessage()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": not an ONNX model (", size,
                       " bytes that do not parse as an onnx.ModelProto: truncated or not ONNX)"));
    }
  }
  int64_t opset = -1;
  for (const onnx::OperatorSetIdProto& set : model->opset_import()) {
    if (IsDefaultDomain(set.domain())) opset = set.version();
  }
  if (opset < kMinOpset || opset > kMaxOpset) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": opset_import: expected a default-domain opset in ", kMinOpset, "..",
                     kMaxOpset, ", got ", opset < 0 ? std::string("none") : absl::StrCat(opset)));
  }
  for (const TensorProto& tensor : model->graph().initializer()) {
    if (HasExternalData(tensor)) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": initializer '", Printable(tensor.name()),
          "': external data is not supported (the model must carry its weights inside the file)"));
    }
  }
  for (const onnx::NodeProto& node : model->graph().node()) {
    for (const onnx::AttributeProto& attribute : node.attribute()) {
      if (attribute.has_t() && HasExternalData(attribute.t())) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": node ", Printable(node.name()),
                                                       ": attribute ", Printable(attribute.name()),
                                                       ": external data is not supported"));
      }
    }
  }
  absl::Status windows = CheckWindowAttributes(model->graph(), source, 0);
  if (!windows.ok()) return windows;
  try {
    onnx::checker::check_model(*model);
    onnx::ShapeInferenceOptions inference_options{/*check_type=*/true, /*error_mode=*/0,
                                                  /*enable_data_propagation=*/false};
    onnx::shape_inference::InferShapes(*model, onnx::OpSchemaRegistry::Instance(),
                                       inference_options);
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(CapMessage(
        absl::StrCat(source, ": ONNX's checker refused the model: ", Printable(error.what(), 1024)),
        kMaxImportMessageBytes));
  }
  return Importer(*model, options, opset).Run();
}

}  // namespace convserve
