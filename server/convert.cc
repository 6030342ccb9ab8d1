#include "server/convert.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace convserve {
namespace {

absl::Status BadEnum(const std::string& field, const char* name, int value, const char* expected) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ".", name, ": expected one of ", expected, ", got ", value));
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

  switch (layer.padding()) {
    case v1::PADDING_PRESET_EXPLICIT:
      spec.padding = PaddingPreset::kExplicit;
      break;
    case v1::PADDING_PRESET_VALID:
      spec.padding = PaddingPreset::kValid;
      break;
    case v1::PADDING_PRESET_SAME_UPPER:
      spec.padding = PaddingPreset::kSameUpper;
      break;
    case v1::PADDING_PRESET_SAME_LOWER:
      spec.padding = PaddingPreset::kSameLower;
      break;
    case v1::PADDING_PRESET_CAUSAL:
      spec.padding = PaddingPreset::kCausal;
      break;
    default:
      return BadEnum(field, "padding", layer.padding(),
                     "EXPLICIT(0), VALID(1), SAME_UPPER(2), SAME_LOWER(3), CAUSAL(4)");
  }
  switch (layer.padding_mode()) {
    case v1::PADDING_MODE_ZEROS:
      spec.padding_mode = PaddingMode::kZeros;
      break;
    case v1::PADDING_MODE_REFLECT:
      spec.padding_mode = PaddingMode::kReflect;
      break;
    case v1::PADDING_MODE_REPLICATE:
      spec.padding_mode = PaddingMode::kReplicate;
      break;
    case v1::PADDING_MODE_CIRCULAR:
      spec.padding_mode = PaddingMode::kCircular;
      break;
    default:
      return BadEnum(field, "padding_mode", layer.padding_mode(),
                     "ZEROS(0), REFLECT(1), REPLICATE(2), CIRCULAR(3)");
  }
  switch (layer.activation()) {
    case v1::ACTIVATION_NONE:
      spec.activation = Activation::kNone;
      break;
    case v1::ACTIVATION_RELU:
      spec.activation = Activation::kRelu;
      break;
    case v1::ACTIVATION_RELU6:
      spec.activation = Activation::kRelu6;
      break;
    case v1::ACTIVATION_LEAKY_RELU:
      spec.activation = Activation::kLeakyRelu;
      break;
    case v1::ACTIVATION_ELU:
      spec.activation = Activation::kElu;
      break;
    case v1::ACTIVATION_SIGMOID:
      spec.activation = Activation::kSigmoid;
      break;
    case v1::ACTIVATION_TANH:
      spec.activation = Activation::kTanh;
      break;
    case v1::ACTIVATION_SILU:
      spec.activation = Activation::kSilu;
      break;
    case v1::ACTIVATION_GELU:
      spec.activation = Activation::kGelu;
      break;
    default:
      return BadEnum(field, "activation", layer.activation(),
                     "NONE(0), RELU(1), RELU6(2), LEAKY_RELU(3), ELU(4), SIGMOID(5), TANH(6), "
                     "SILU(7), GELU(8)");
  }
  switch (layer.data_layout()) {
    case v1::DATA_LAYOUT_CHANNELS_FIRST:
      spec.data_layout = DataLayout::kChannelsFirst;
      break;
    case v1::DATA_LAYOUT_CHANNELS_LAST:
      spec.data_layout = DataLayout::kChannelsLast;
      break;
    default:
      return BadEnum(field, "data_layout", layer.data_layout(),
                     "CHANNELS_FIRST(0), CHANNELS_LAST(1)");
  }
  switch (layer.weight_layout()) {
    case v1::WEIGHT_LAYOUT_OIHW:
      spec.weight_layout = WeightLayout::kOutInSpatial;
      break;
    case v1::WEIGHT_LAYOUT_HWIO:
      spec.weight_layout = WeightLayout::kSpatialInOut;
      break;
    default:
      return BadEnum(field, "weight_layout", layer.weight_layout(), "OIHW(0), HWIO(1)");
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
  // The proto enums list the core's in the same order.
  layer.set_padding(static_cast<v1::PaddingPreset>(spec.padding));
  layer.set_padding_mode(static_cast<v1::PaddingMode>(spec.padding_mode));
  layer.set_activation(static_cast<v1::Activation>(spec.activation));
  layer.set_data_layout(static_cast<v1::DataLayout>(spec.data_layout));
  layer.set_weight_layout(static_cast<v1::WeightLayout>(spec.weight_layout));
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
  if (tensor.element_type() != v1::ELEMENT_TYPE_FLOAT32) {
    const std::string& name = v1::ElementType_Name(tensor.element_type());
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".element_type: expected ELEMENT_TYPE_FLOAT32, got ",
                     name.empty() ? absl::StrCat(static_cast<int>(tensor.element_type())) : name));
  }
  FloatTensor decoded;
  decoded.shape = ToVector(tensor.shape());
  if (decoded.shape.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".shape: expected at least one dimension, got []"));
  }
  // Checks dimensions >= 1, overflow of count and bytes, and the byte count.
  absl::Status bytes_ok = CheckPayloadBytes(field, decoded.shape, tensor.data().size());
  if (!bytes_ok.ok()) return bytes_ok;
  const size_t count = tensor.data().size() / sizeof(float);
  const char* bytes = tensor.data().data();
  if (reinterpret_cast<uintptr_t>(bytes) % alignof(float) == 0) {
    decoded.values = absl::MakeConstSpan(reinterpret_cast<const float*>(bytes), count);
  } else {
    // Heap-allocated strings are always aligned; this only guards the rule.
    decoded.aligned_copy.resize(count);
    std::memcpy(decoded.aligned_copy.data(), bytes, count * sizeof(float));
    decoded.values = absl::MakeConstSpan(decoded.aligned_copy);
  }
  return decoded;
}

absl::Status CheckShape(const std::string& field, const std::vector<int64_t>& expected,
                        const std::string& expected_meaning, const std::vector<int64_t>& got) {
  if (expected == got) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": expected shape ",
                                                 ShapeToString(expected), " ", expected_meaning,
                                                 ", got ", ShapeToString(got)));
}

float* PrepareOutput(const std::vector<int64_t>& shape, v1::Tensor* tensor) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  SetRepeated(shape, tensor->mutable_shape());
  tensor->set_element_type(v1::ELEMENT_TYPE_FLOAT32);
  std::string* data = tensor->mutable_data();
  data->resize(static_cast<size_t>(count) * sizeof(float));
  return reinterpret_cast<float*>(data->data());
}

v1::Framework ToProtoFramework(Framework framework) {
  switch (framework) {
    case Framework::kPyTorch:
      return v1::FRAMEWORK_PYTORCH;
    case Framework::kKeras:
      return v1::FRAMEWORK_KERAS;
    case Framework::kOnnx:
      return v1::FRAMEWORK_ONNX;
  }
  return v1::FRAMEWORK_UNSPECIFIED;
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

}  // namespace convserve
