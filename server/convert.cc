// convert.cc: proto <-> core conversion, with one table per enum.
#include "server/convert.h"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/half.h"

namespace convserve {
namespace {

// One row of an enum table: a wire value and the core value it stands for.
template <typename Proto, typename Core>
struct EnumPair {
  Proto proto;
  Core core;
};

// One table per enum, each listing every wire value once, in the proto's
// order, with its core value. ToConvSpec() and ToProtoLayer() read the same
// table, and so does the "expected one of ..." message, with the proto's own
// names. The static_asserts below catch a value added to the proto alone.
constexpr EnumPair<v1::PaddingPreset, PaddingPreset> kWirePaddingPresets[] = {
    {v1::PADDING_PRESET_EXPLICIT, PaddingPreset::kExplicit},
    {v1::PADDING_PRESET_VALID, PaddingPreset::kValid},
    {v1::PADDING_PRESET_SAME_UPPER, PaddingPreset::kSameUpper},
    {v1::PADDING_PRESET_SAME_LOWER, PaddingPreset::kSameLower},
    {v1::PADDING_PRESET_CAUSAL, PaddingPreset::kCausal},
};
constexpr EnumPair<v1::PaddingMode, PaddingMode> kWirePaddingModes[] = {
    {v1::PADDING_MODE_ZEROS, PaddingMode::kZeros},
    {v1::PADDING_MODE_REFLECT, PaddingMode::kReflect},
    {v1::PADDING_MODE_REPLICATE, PaddingMode::kReplicate},
    {v1::PADDING_MODE_CIRCULAR, PaddingMode::kCircular},
};
constexpr EnumPair<v1::Activation, Activation> kWireActivations[] = {
    {v1::ACTIVATION_NONE, Activation::kNone},   {v1::ACTIVATION_RELU, Activation::kRelu},
    {v1::ACTIVATION_RELU6, Activation::kRelu6}, {v1::ACTIVATION_LEAKY_RELU, Activation::kLeakyRelu},
    {v1::ACTIVATION_ELU, Activation::kElu},     {v1::ACTIVATION_SIGMOID, Activation::kSigmoid},
    {v1::ACTIVATION_TANH, Activation::kTanh},   {v1::ACTIVATION_SILU, Activation::kSilu},
    {v1::ACTIVATION_GELU, Activation::kGelu},
};
constexpr EnumPair<v1::DataLayout, DataLayout> kWireDataLayouts[] = {
    {v1::DATA_LAYOUT_CHANNELS_FIRST, DataLayout::kChannelsFirst},
    {v1::DATA_LAYOUT_CHANNELS_LAST, DataLayout::kChannelsLast},
};
constexpr EnumPair<v1::WeightLayout, WeightLayout> kWireWeightLayouts[] = {
    {v1::WEIGHT_LAYOUT_OIHW, WeightLayout::kOutInSpatial},
    {v1::WEIGHT_LAYOUT_HWIO, WeightLayout::kSpatialInOut},
};
constexpr EnumPair<v1::ConvAlgorithm, ConvAlgorithm> kWireAlgorithms[] = {
    {v1::CONV_ALGORITHM_AUTO, ConvAlgorithm::kAuto},
    {v1::CONV_ALGORITHM_DIRECT, ConvAlgorithm::kDirect},
    {v1::CONV_ALGORITHM_WINOGRAD, ConvAlgorithm::kWinograd},
};
// FRAMEWORK_UNSPECIFIED: no framework (as a request field: enforce none).
constexpr EnumPair<v1::Framework, std::optional<Framework>> kWireFrameworks[] = {
    {v1::FRAMEWORK_UNSPECIFIED, std::nullopt},
    {v1::FRAMEWORK_PYTORCH, Framework::kPyTorch},
    {v1::FRAMEWORK_KERAS, Framework::kKeras},
    {v1::FRAMEWORK_ONNX, Framework::kOnnx},
};

// The element types a tensor may have on the wire.
struct WireElementType {
  v1::ElementType proto;
  size_t bytes;
  const char* name;              // for payload size messages
  std::optional<HalfType> half;  // how it converts to float32; none: it is float32
};
constexpr WireElementType kWireElementTypes[] = {
    {v1::ELEMENT_TYPE_FLOAT32, sizeof(float), "float32", std::nullopt},
    {v1::ELEMENT_TYPE_FLOAT16, sizeof(uint16_t), "float16", HalfType::kFloat16},
    {v1::ELEMENT_TYPE_BFLOAT16, sizeof(uint16_t), "bfloat16", HalfType::kBfloat16},
};

const WireElementType* FindElementType(v1::ElementType type) {
  for (const WireElementType& wire : kWireElementTypes) {
    if (wire.proto == type) return &wire;
  }
  return nullptr;
}

// "field: expected ELEMENT_TYPE_FLOAT32, ELEMENT_TYPE_FLOAT16 or
// ELEMENT_TYPE_BFLOAT16, got ELEMENT_TYPE_INT8".
absl::Status BadElementType(const std::string& field, v1::ElementType type) {
  std::string expected;
  for (size_t i = 0; i < std::size(kWireElementTypes); ++i) {
    absl::StrAppend(&expected,
                    i == 0                                  ? ""
                    : i + 1 == std::size(kWireElementTypes) ? " or "
                                                            : ", ",
                    v1::ElementType_Name(kWireElementTypes[i].proto));
  }
  const std::string& name = v1::ElementType_Name(type);
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected ", expected, ", got ",
                   name.empty() ? absl::StrCat(static_cast<int>(type)) : name));
}

// The proto enums number their values 0, 1, 2, ...: a table as long as the
// enum lists them all.
static_assert(std::size(kWirePaddingPresets) == v1::PaddingPreset_ARRAYSIZE);
static_assert(std::size(kWirePaddingModes) == v1::PaddingMode_ARRAYSIZE);
static_assert(std::size(kWireActivations) == v1::Activation_ARRAYSIZE);
static_assert(std::size(kWireDataLayouts) == v1::DataLayout_ARRAYSIZE);
static_assert(std::size(kWireWeightLayouts) == v1::WeightLayout_ARRAYSIZE);
static_assert(std::size(kWireFrameworks) == v1::Framework_ARRAYSIZE);
static_assert(std::size(kWireAlgorithms) == v1::ConvAlgorithm_ARRAYSIZE);

// A value's proto name without its enum's prefix: PADDING_PRESET_SAME_UPPER
// -> SAME_UPPER (protobuf's style prefixes every value with the enum's name
// in UPPER_SNAKE_CASE).
template <typename Proto>
std::string ShortName(Proto value) {
  const google::protobuf::EnumDescriptor* descriptor = google::protobuf::GetEnumDescriptor<Proto>();
  std::string prefix;
  for (char c : descriptor->name()) {
    if (std::isupper(static_cast<unsigned char>(c)) && !prefix.empty()) prefix += '_';
    prefix += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  prefix += '_';
  std::string name(descriptor->FindValueByNumber(value)->name());
  if (name.compare(0, prefix.size(), prefix) == 0) name.erase(0, prefix.size());
  return name;
}

// The table's wire values for a message: "EXPLICIT(0), VALID(1), ...".
template <typename Proto, typename Core, size_t N>
std::string ExpectedValues(const EnumPair<Proto, Core> (&table)[N]) {
  std::string text;
  for (const EnumPair<Proto, Core>& pair : table) {
    absl::StrAppend(&text, text.empty() ? "" : ", ", ShortName(pair.proto), "(",
                    static_cast<int>(pair.proto), ")");
  }
  return text;
}

// The core value of wire `value`, or null if the table lacks it.
template <typename Proto, typename Core, size_t N>
const Core* FindCore(const EnumPair<Proto, Core> (&table)[N], Proto value) {
  for (const EnumPair<Proto, Core>& pair : table) {
    if (pair.proto == value) return &pair.core;
  }
  return nullptr;
}

// The error for a wire `value` outside the table, naming `field`.
template <typename Proto, typename Core, size_t N>
absl::Status BadEnum(const EnumPair<Proto, Core> (&table)[N], absl::string_view field,
                     Proto value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": expected one of ", ExpectedValues(table),
                                                 ", got ", static_cast<int>(value)));
}

// Decodes the ConvLayer field `field`.`name` holding `value` into `*out`.
template <typename Proto, typename Core, size_t N>
absl::Status DecodeEnum(const EnumPair<Proto, Core> (&table)[N], const std::string& field,
                        const char* name, Proto value, Core* out) {
  const Core* core = FindCore(table, value);
  if (core == nullptr) return BadEnum(table, absl::StrCat(field, ".", name), value);
  *out = *core;
  return absl::OkStatus();
}

// The wire value of core `value`. Every core value is in its table (the
// convert test checks each one's round trip); the first row is a fallback
// that only a core value added without its row could reach.
template <typename Proto, typename Core, size_t N>
Proto ToProto(const EnumPair<Proto, Core> (&table)[N], Core value) {
  for (const EnumPair<Proto, Core>& pair : table) {
    if (pair.core == value) return pair.proto;
  }
  return table[0].proto;
}

std::vector<int64_t> ToVector(const google::protobuf::RepeatedField<int64_t>& values) {
  return std::vector<int64_t>(values.begin(), values.end());
}

void SetRepeated(const std::vector<int64_t>& values,
                 google::protobuf::RepeatedField<int64_t>* out) {
  out->Clear();
  out->Add(values.begin(), values.end());
}

}  // namespace

absl::StatusOr<ConvSpec> ToConvSpec(const std::string& field, const v1::ConvLayer& layer) {
  ConvSpec spec;
  spec.spatial_rank = layer.spatial_rank();
  spec.in_channels = layer.in_channels();
  spec.out_channels = layer.out_channels();
  // proto3 cannot tell "unset" from 0; 0 groups means nothing, so it is the default 1.
  spec.groups = layer.groups() == 0 ? 1 : layer.groups();
  spec.kernel = ToVector(layer.kernel());
  spec.stride = ToVector(layer.stride());
  spec.dilation = ToVector(layer.dilation());
  spec.pad_begin = ToVector(layer.pad_begin());
  spec.pad_end = ToVector(layer.pad_end());
  spec.bias = layer.bias();
  // In field order: the first bad enum is the one reported.
  for (const absl::Status& status : {
           DecodeEnum(kWirePaddingPresets, field, "padding", layer.padding(), &spec.padding),
           DecodeEnum(kWirePaddingModes, field, "padding_mode", layer.padding_mode(),
                      &spec.padding_mode),
           DecodeEnum(kWireActivations, field, "activation", layer.activation(), &spec.activation),
           DecodeEnum(kWireDataLayouts, field, "data_layout", layer.data_layout(),
                      &spec.data_layout),
           DecodeEnum(kWireWeightLayouts, field, "weight_layout", layer.weight_layout(),
                      &spec.weight_layout),
           DecodeEnum(kWireAlgorithms, field, "algorithm", layer.algorithm(), &spec.algorithm),
       }) {
    if (!status.ok()) return status;
  }
  if (layer.has_activation_alpha()) {
    if (!std::isfinite(layer.activation_alpha())) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".activation_alpha: expected a finite number, got ", layer.activation_alpha()));
    }
    spec.activation_alpha = layer.activation_alpha();
  }
  return spec;
}

absl::Status ApplyPrecision(v1::Precision precision, std::vector<DecodedLayer>* layers) {
  if (precision == v1::PRECISION_EXACT) return absl::OkStatus();
  if (precision != v1::PRECISION_FAST) {
    return absl::InvalidArgumentError(
        absl::StrCat("precision: expected PRECISION_EXACT or PRECISION_FAST, got ",
                     static_cast<int>(precision)));
  }
  for (DecodedLayer& layer : *layers) {
    ConvSpec& spec = layer.layer.spec;
    if (spec.algorithm == ConvAlgorithm::kAuto && CheckWinograd(layer.layer).ok()) {
      spec.algorithm = ConvAlgorithm::kWinograd;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ConvSpec> DecodeSpec(const std::string& prefix, bool has_layer,
                                    const v1::ConvLayer& layer) {
  if (!has_layer) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "layer: expected a layer description, got none (the field is missing)"));
  }
  return ToConvSpec(prefix + "layer", layer);
}

v1::ConvLayer ToProtoLayer(const ConvSpec& spec) {
  v1::ConvLayer layer;
  layer.set_spatial_rank(spec.spatial_rank);
  layer.set_in_channels(spec.in_channels);
  layer.set_out_channels(spec.out_channels);
  layer.set_groups(spec.groups);
  SetRepeated(spec.kernel, layer.mutable_kernel());
  SetRepeated(spec.stride, layer.mutable_stride());
  SetRepeated(spec.dilation, layer.mutable_dilation());
  SetRepeated(spec.pad_begin, layer.mutable_pad_begin());
  SetRepeated(spec.pad_end, layer.mutable_pad_end());
  layer.set_padding(ToProto(kWirePaddingPresets, spec.padding));
  layer.set_padding_mode(ToProto(kWirePaddingModes, spec.padding_mode));
  layer.set_activation(ToProto(kWireActivations, spec.activation));
  layer.set_data_layout(ToProto(kWireDataLayouts, spec.data_layout));
  layer.set_weight_layout(ToProto(kWireWeightLayouts, spec.weight_layout));
  layer.set_algorithm(ToProto(kWireAlgorithms, spec.algorithm));
  layer.set_bias(spec.bias);
  if (!std::isnan(spec.activation_alpha)) layer.set_activation_alpha(spec.activation_alpha);
  return layer;
}

absl::StatusOr<FloatTensor> DecodeTensor(const std::string& field, bool present,
                                         const v1::Tensor& tensor) {
  if (!present) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected a tensor, got none (the field is missing)"));
  }
  const WireElementType* type = FindElementType(tensor.element_type());
  if (type == nullptr) return BadElementType(field + ".element_type", tensor.element_type());
  FloatTensor decoded;
  decoded.wire_type = type->proto;
  decoded.shape = ToVector(tensor.shape());
  if (decoded.shape.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".shape: expected at least one dimension, got []"));
  }
  // Checks dimensions >= 1, overflow of count and bytes, and the byte count.
  absl::Status bytes_ok =
      CheckPayloadBytes(field, decoded.shape, tensor.data().size(), type->bytes, type->name);
  if (!bytes_ok.ok()) return bytes_ok;
  const size_t count = tensor.data().size() / type->bytes;
  const char* bytes = tensor.data().data();
  if (type->half) {
    // Heap-allocated strings are always aligned; the copy only guards the rule.
    std::vector<uint16_t> aligned_halves;
    const uint16_t* halves = reinterpret_cast<const uint16_t*>(bytes);
    if (reinterpret_cast<uintptr_t>(bytes) % alignof(uint16_t) != 0) {
      aligned_halves.resize(count);
      std::memcpy(aligned_halves.data(), bytes, count * sizeof(uint16_t));
      halves = aligned_halves.data();
    }
    decoded.aligned_copy.resize(count);
    HalfToFloat(*type->half, halves, count, decoded.aligned_copy.data());
    decoded.values = absl::MakeConstSpan(decoded.aligned_copy);
  } else if (reinterpret_cast<uintptr_t>(bytes) % alignof(float) == 0) {
    decoded.values = absl::MakeConstSpan(reinterpret_cast<const float*>(bytes), count);
  } else {
    // Heap-allocated strings are always aligned; this only guards the rule.
    decoded.aligned_copy.resize(count);
    std::memcpy(decoded.aligned_copy.data(), bytes, count * sizeof(float));
    decoded.values = absl::MakeConstSpan(decoded.aligned_copy);
  }
  return decoded;
}

absl::StatusOr<v1::ElementType> DecodeOutputType(const std::string& field,
                                                 v1::ElementType requested,
                                                 v1::ElementType input_type) {
  if (requested == v1::ELEMENT_TYPE_UNSPECIFIED) return input_type;
  if (FindElementType(requested) == nullptr) return BadElementType(field, requested);
  return requested;
}

size_t EncodeOutputInPlace(v1::ElementType type, float* values, size_t count) {
  const WireElementType* wire = FindElementType(type);
  if (wire != nullptr && wire->half) {
    FloatToHalf(*wire->half, values, count, reinterpret_cast<uint16_t*>(values));
  }
  return count * (wire != nullptr ? wire->bytes : sizeof(float));
}

absl::Status CheckShape(const std::string& field, const std::vector<int64_t>& expected,
                        const std::string& expected_meaning, const std::vector<int64_t>& got) {
  if (expected == got) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": expected shape ",
                                                 ShapeToString(expected), " ", expected_meaning,
                                                 ", got ", ShapeToString(got)));
}

std::string DescribeWeightShape(const ConvSpec& spec) {
  return spec.weight_layout == WeightLayout::kOutInSpatial
             ? "(C_out, C_in/groups, *kernel) for the layer"
             : "(*kernel, C_in/groups, C_out) for the layer";
}

absl::StatusOr<DecodedLayer> DecodeWeights(const std::string& prefix, const ResolvedLayer& layer,
                                           bool has_weight, const v1::Tensor& weight, bool has_bias,
                                           const v1::Tensor& bias) {
  DecodedLayer decoded;
  decoded.layer = layer;
  const ConvSpec& spec = layer.spec;
  absl::StatusOr<FloatTensor> weight_tensor = DecodeTensor(prefix + "weight", has_weight, weight);
  if (!weight_tensor.ok()) return weight_tensor.status();
  absl::Status shape_ok = CheckShape(prefix + "weight", layer.weight_shape,
                                     DescribeWeightShape(spec), weight_tensor->shape);
  if (!shape_ok.ok()) return shape_ok;
  decoded.weight = *std::move(weight_tensor);

  if (spec.bias) {
    absl::StatusOr<FloatTensor> bias_tensor = DecodeTensor(prefix + "bias", has_bias, bias);
    if (!bias_tensor.ok()) {
      if (!has_bias) {
        return absl::InvalidArgumentError(absl::StrCat(prefix, "bias: expected a tensor of shape [",
                                                       spec.out_channels, "] because ", prefix,
                                                       "layer.bias is true, got none"));
      }
      return bias_tensor.status();
    }
    shape_ok = CheckShape(prefix + "bias", {spec.out_channels}, "(C_out)", bias_tensor->shape);
    if (!shape_ok.ok()) return shape_ok;
    decoded.bias = *std::move(bias_tensor);
  } else if (has_bias) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "bias: expected no tensor because ", prefix,
                     "layer.bias is false, got one of shape ",
                     ShapeToString({bias.shape().begin(), bias.shape().end()})));
  }
  return decoded;
}

absl::StatusOr<ValidateOptions> ToValidateOptions(v1::Framework enforce_framework) {
  const std::optional<Framework>* framework = FindCore(kWireFrameworks, enforce_framework);
  if (framework == nullptr) return BadEnum(kWireFrameworks, "enforce_framework", enforce_framework);
  ValidateOptions options;
  if (framework->has_value()) options = {true, **framework};
  return options;
}

v1::Framework ToProtoFramework(Framework framework) {
  return ToProto(kWireFrameworks, std::optional<Framework>(framework));
}

void ToProtoReport(const ShapeReport& report, v1::ShapeReport* out) {
  SetRepeated(report.input_shape, out->mutable_input_shape());
  SetRepeated(report.output_shape, out->mutable_output_shape());
  SetRepeated(report.weight_shape, out->mutable_weight_shape());
  SetRepeated(report.bias_shape, out->mutable_bias_shape());
  for (const AxisReport& axis : report.axes) {
    v1::AxisReport* proto_axis = out->add_axes();
    proto_axis->set_input(axis.input);
    proto_axis->set_kernel(axis.kernel);
    proto_axis->set_stride(axis.stride);
    proto_axis->set_dilation(axis.dilation);
    proto_axis->set_pad_begin(axis.pad_begin);
    proto_axis->set_pad_end(axis.pad_end);
    proto_axis->set_span(axis.span);
    proto_axis->set_padded(axis.padded);
    proto_axis->set_output(axis.output);
    proto_axis->set_unread_cells(axis.unread_cells);
    proto_axis->set_derivation(axis.derivation);
  }
  out->set_parameters(report.parameters);
  out->set_macs(report.macs);
  out->set_flops(report.flops);
  out->set_input_bytes(report.input_bytes);
  out->set_output_bytes(report.output_bytes);
  out->set_weight_bytes(report.weight_bytes);
  for (const std::string& warning : report.warnings) out->add_warnings(warning);
  for (const FrameworkVerdict& verdict : report.frameworks) {
    v1::FrameworkVerdict* proto_verdict = out->add_frameworks();
    proto_verdict->set_framework(ToProtoFramework(verdict.framework));
    proto_verdict->set_accepted(verdict.accepted);
    proto_verdict->set_reason(verdict.reason);
    proto_verdict->set_equivalent(verdict.equivalent);
  }
}

void ToProtoModelInfo(const Model& model, v1::ModelInfo* out) {
  out->set_name(model.name);
  out->set_parameters(model.parameters);
  out->set_weight_bytes(model.weight_bytes);
  if (model.batching.enabled()) {
    out->mutable_batching()->set_max_batch_size(
        static_cast<int32_t>(model.batching.max_batch_size));
    out->mutable_batching()->set_max_queue_delay_us(model.batching.max_queue_delay_us);
  }
  for (const std::unique_ptr<ConvOperator>& layer : model.layers) {
    *out->add_layers() = ToProtoLayer(layer->spec());
  }
  out->set_version(model.version);
  out->set_source(model.source.empty() ? "LoadModel" : model.source);
  out->set_ready(true);
  for (int64_t extent : model.input_shape) out->add_input_shape(extent);
  for (int64_t extent : model.output_shape) out->add_output_shape(extent);
  if (!model.graph.IsChain()) {
    for (size_t step = 0; step < model.graph.steps.size(); ++step) {
      out->add_graph(model.graph.StepText(static_cast<int>(step)));
    }
  }
}

}  // namespace convserve
