// libFuzzer target for the request -> core path: decode a ConvRequest,
// convert and validate it, and (when small) plan and run it, exactly through
// the functions the server's Conv handler uses.
//
// Half the inputs are raw wire bytes (exercising the protobuf decode and every
// refusal); the other half build a structured request from the fuzz data, so
// that deep paths (valid layers with odd shapes, pads, modes, groups, payloads
// one byte off) are reached without a seed corpus.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "convserve/v1/convserve.pb.h"
#include "core/conv.h"
#include "server/convert.h"

namespace {

// Keeps each run fast: larger layers are validated but not computed.
constexpr int64_t kMaxComputedMacs = 1 << 20;
constexpr int64_t kMaxComputedElements = 1 << 16;

// Mostly small values, sometimes anything (negative, zero, huge).
int64_t Dimension(FuzzedDataProvider& data) {
  switch (data.ConsumeIntegralInRange(0, 7)) {
    case 0:
      return data.ConsumeIntegral<int64_t>();
    case 1:
      return data.ConsumeIntegralInRange<int64_t>(-2, 0);
    case 2:
      return int64_t{1} << data.ConsumeIntegralInRange(30, 62);
    default:
      return data.ConsumeIntegralInRange<int64_t>(1, 9);
  }
}

void FillRepeated(FuzzedDataProvider& data, int max_count,
                  google::protobuf::RepeatedField<int64_t>* out) {
  const int count = data.ConsumeIntegralInRange(0, max_count);
  for (int i = 0; i < count; ++i) out->Add(Dimension(data));
}

// A tensor whose payload is its shape's byte size, sometimes off a little.
void FillTensor(FuzzedDataProvider& data, const std::vector<int64_t>& shape,
                convserve::v1::Tensor* tensor) {
  tensor->set_element_type(
      data.ConsumeIntegralInRange(0, 10) == 0
          ? static_cast<convserve::v1::ElementType>(data.ConsumeIntegral<int8_t>())
          : convserve::v1::ELEMENT_TYPE_FLOAT32);
  int64_t elements = 1;
  for (int64_t dim : shape) {
    tensor->add_shape(dim);
    if (dim < 1 || dim > kMaxComputedElements || elements * dim > kMaxComputedElements) {
      elements = -1;
      break;
    }
    elements *= dim;
  }
  if (elements < 0) elements = data.ConsumeIntegralInRange<int64_t>(0, 64);
  int64_t bytes = elements * 4;
  if (data.ConsumeIntegralInRange(0, 15) == 0) bytes += data.ConsumeIntegralInRange(-5, 5);
  if (bytes < 0) bytes = 0;
  std::string payload(static_cast<size_t>(bytes), '\0');
  for (size_t i = 0; i + 4 <= payload.size(); i += 4) {
    const float value = data.remaining_bytes() > 0 ? data.ConsumeFloatingPoint<float>() : 1.0f;
    std::memcpy(&payload[i], &value, 4);
  }
  tensor->set_data(std::move(payload));
}

void BuildRequest(FuzzedDataProvider& data, convserve::v1::ConvRequest* request) {
  convserve::v1::ConvLayer* layer = request->mutable_layer();
  const int rank = data.ConsumeIntegralInRange(0, 4);
  layer->set_spatial_rank(rank);
  layer->set_in_channels(Dimension(data));
  layer->set_out_channels(Dimension(data));
  layer->set_groups(data.ConsumeBool() ? 1 : Dimension(data));
  FillRepeated(data, 4, layer->mutable_kernel());
  FillRepeated(data, 4, layer->mutable_stride());
  FillRepeated(data, 4, layer->mutable_dilation());
  layer->set_padding(static_cast<convserve::v1::PaddingPreset>(data.ConsumeIntegralInRange(0, 5)));
  FillRepeated(data, 4, layer->mutable_pad_begin());
  FillRepeated(data, 4, layer->mutable_pad_end());
  layer->set_padding_mode(
      static_cast<convserve::v1::PaddingMode>(data.ConsumeIntegralInRange(0, 4)));
  layer->set_bias(data.ConsumeBool());
  layer->set_activation(static_cast<convserve::v1::Activation>(data.ConsumeIntegralInRange(0, 9)));
  if (data.ConsumeBool()) layer->set_activation_alpha(data.ConsumeFloatingPoint<float>());
  layer->set_data_layout(static_cast<convserve::v1::DataLayout>(data.ConsumeIntegralInRange(0, 2)));
  layer->set_weight_layout(
      static_cast<convserve::v1::WeightLayout>(data.ConsumeIntegralInRange(0, 2)));

  std::vector<int64_t> input_shape;
  const int input_dims = data.ConsumeIntegralInRange(0, 5);
  for (int i = 0; i < input_dims; ++i) input_shape.push_back(Dimension(data));
  FillTensor(data, input_shape, request->mutable_input());
  // Usually the weight shape the layer wants, so the run is reached.
  convserve::ConvSpec spec;
  absl::StatusOr<convserve::ConvSpec> converted = convserve::ToConvSpec("layer", *layer);
  absl::StatusOr<convserve::ResolvedLayer> resolved =
      converted.ok() ? convserve::ResolveLayer(*converted)
                     : absl::StatusOr<convserve::ResolvedLayer>(converted.status());
  std::vector<int64_t> shape = resolved.ok() ? resolved->weight_shape : std::vector<int64_t>{1};
  if (data.ConsumeIntegralInRange(0, 7) == 0 && !shape.empty()) shape.back() += 1;
  FillTensor(data, shape, request->mutable_weight());
  if (data.ConsumeIntegralInRange(0, 3) != 0) {
    FillTensor(data, {layer->out_channels()}, request->mutable_bias());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  FuzzedDataProvider data(bytes, size);
  convserve::v1::ConvRequest request;
  if (data.ConsumeBool()) {
    const std::string wire = data.ConsumeRemainingBytesAsString();
    if (!request.ParseFromString(wire)) return 0;
  } else {
    BuildRequest(data, &request);
  }

  absl::StatusOr<convserve::ConvSpec> spec = convserve::ToConvSpec("layer", request.layer());
  if (!spec.ok()) return 0;
  absl::StatusOr<convserve::FloatTensor> input =
      convserve::DecodeTensor("input", request.has_input(), request.input());
  if (!input.ok()) return 0;
  absl::StatusOr<convserve::ShapeReport> report = convserve::Validate(*spec, input->shape);
  absl::StatusOr<convserve::ConvGeometry> geometry =
      convserve::ResolveGeometry(*spec, input->shape);
  // The explaining and the request-path validator must agree.
  if (report.ok() != geometry.ok()) __builtin_trap();
  if (!geometry.ok()) return 0;
  absl::StatusOr<convserve::ResolvedLayer> layer = convserve::ResolveLayer(*spec);
  if (!layer.ok()) __builtin_trap();  // ResolveGeometry accepted the layer
  const std::vector<int64_t>& weight_shape = layer->weight_shape;
  absl::StatusOr<convserve::FloatTensor> weight =
      convserve::DecodeTensor("weight", request.has_weight(), request.weight());
  if (!weight.ok() || weight->shape != weight_shape) return 0;
  std::vector<int64_t> bias_shape;
  if (spec->bias) bias_shape = {spec->out_channels};
  absl::StatusOr<convserve::FloatTensor> bias;
  if (spec->bias) {
    bias = convserve::DecodeTensor("bias", request.has_bias(), request.bias());
    if (!bias.ok() || bias->shape != bias_shape) return 0;
  }
  const convserve::ConvGeometry& g = *geometry;
  const int64_t macs = g.output_elements() * g.in_channels_per_group() * g.kernel_size();
  if (macs > kMaxComputedMacs || g.output_elements() > kMaxComputedElements) return 0;
  for (convserve::KernelPath path :
       {convserve::KernelPath::kAuto, convserve::KernelPath::kReference}) {
    absl::StatusOr<std::unique_ptr<convserve::ConvOperator>> op = convserve::ConvOperator::Create(
        *spec, weight->values, spec->bias ? bias->values : absl::Span<const float>(), path);
    if (!op.ok()) __builtin_trap();  // every part was checked above
    std::vector<float> output(static_cast<size_t>(g.output_elements()));
    // The one refusal left at run time: scratch beyond the kernels' bound.
    const absl::Status run = (*op)->Run(g, input->values.data(), output.data());
    if (!run.ok() && run.code() != absl::StatusCode::kResourceExhausted) __builtin_trap();
  }
  return 0;
}
