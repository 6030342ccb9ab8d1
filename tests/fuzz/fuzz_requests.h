// fuzz_requests.h: building ConvServe request messages from fuzz data, shared by the fuzzers.
//
// Values are mostly small and valid, sometimes anything (negative, zero,
// huge), so that the deep paths (valid layers with odd shapes, pads, modes,
// groups, payloads one byte off) are reached without a seed corpus.
#ifndef CONVSERVE_TESTS_FUZZ_FUZZ_REQUESTS_H_
#define CONVSERVE_TESTS_FUZZ_FUZZ_REQUESTS_H_

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "convserve/v1/convserve.pb.h"
#include "core/geometry.h"
#include "server/convert.h"

namespace convserve::fuzz {

// Tensors larger than this get a short or empty payload instead.
inline constexpr int64_t kMaxFilledElements = 1 << 16;

// Mostly small values, sometimes anything (negative, zero, huge).
inline int64_t Dimension(FuzzedDataProvider& data) {
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

inline void FillRepeated(FuzzedDataProvider& data, int max_count,
                         google::protobuf::RepeatedField<int64_t>* out) {
  const int count = data.ConsumeIntegralInRange(0, max_count);
  for (int i = 0; i < count; ++i) out->Add(Dimension(data));
}

// A tensor whose payload is its shape's byte size, sometimes off a little.
inline void FillTensor(FuzzedDataProvider& data, const std::vector<int64_t>& shape,
                       v1::Tensor* tensor) {
  tensor->set_element_type(data.ConsumeIntegralInRange(0, 10) == 0
                               ? static_cast<v1::ElementType>(data.ConsumeIntegral<int8_t>())
                               : v1::ELEMENT_TYPE_FLOAT32);
  int64_t elements = 1;
  for (int64_t dim : shape) {
    tensor->add_shape(dim);
    if (dim < 1 || dim > kMaxFilledElements || elements * dim > kMaxFilledElements) {
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

// Every field of a layer, each from the fuzz data.
inline void FillLayer(FuzzedDataProvider& data, v1::ConvLayer* layer) {
  const int rank = data.ConsumeIntegralInRange(0, 4);
  layer->set_spatial_rank(rank);
  layer->set_in_channels(Dimension(data));
  layer->set_out_channels(Dimension(data));
  layer->set_groups(data.ConsumeBool() ? 1 : Dimension(data));
  FillRepeated(data, 4, layer->mutable_kernel());
  FillRepeated(data, 4, layer->mutable_stride());
  FillRepeated(data, 4, layer->mutable_dilation());
  layer->set_padding(static_cast<v1::PaddingPreset>(data.ConsumeIntegralInRange(0, 5)));
  FillRepeated(data, 4, layer->mutable_pad_begin());
  FillRepeated(data, 4, layer->mutable_pad_end());
  layer->set_padding_mode(static_cast<v1::PaddingMode>(data.ConsumeIntegralInRange(0, 4)));
  layer->set_bias(data.ConsumeBool());
  layer->set_activation(static_cast<v1::Activation>(data.ConsumeIntegralInRange(0, 9)));
  if (data.ConsumeBool()) layer->set_activation_alpha(data.ConsumeFloatingPoint<float>());
  layer->set_data_layout(static_cast<v1::DataLayout>(data.ConsumeIntegralInRange(0, 2)));
  layer->set_weight_layout(static_cast<v1::WeightLayout>(data.ConsumeIntegralInRange(0, 2)));
}

// Usually the weight (and bias) the layer wants, so that the run is reached;
// sometimes one element off, sometimes no bias.
inline void FillParameters(FuzzedDataProvider& data, const v1::ConvLayer& layer, v1::Tensor* weight,
                           v1::Tensor* bias) {
  absl::StatusOr<ConvSpec> converted = ToConvSpec("layer", layer);
  absl::StatusOr<ResolvedLayer> resolved =
      converted.ok() ? ResolveLayer(*converted) : absl::StatusOr<ResolvedLayer>(converted.status());
  std::vector<int64_t> shape = resolved.ok() ? resolved->weight_shape : std::vector<int64_t>{1};
  if (data.ConsumeIntegralInRange(0, 7) == 0 && !shape.empty()) shape.back() += 1;
  FillTensor(data, shape, weight);
  if (data.ConsumeIntegralInRange(0, 3) != 0) FillTensor(data, {layer.out_channels()}, bias);
}

// An input tensor of 0 to 5 dimensions.
inline void FillInput(FuzzedDataProvider& data, v1::Tensor* input) {
  std::vector<int64_t> shape;
  const int dims = data.ConsumeIntegralInRange(0, 5);
  for (int i = 0; i < dims; ++i) shape.push_back(Dimension(data));
  FillTensor(data, shape, input);
}

}  // namespace convserve::fuzz

#endif  // CONVSERVE_TESTS_FUZZ_FUZZ_REQUESTS_H_
