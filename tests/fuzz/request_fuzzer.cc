// libFuzzer target for the request -> core path: decode a ConvRequest,
// convert and validate it, and (when small) plan and run it, exactly through
// the functions the server's Conv handler uses.
//
// Half the inputs are raw wire bytes (exercising the protobuf decode and every
// refusal); the other half build a structured request from the fuzz data
// (fuzz_requests.h).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "convserve/v1/convserve.pb.h"
#include "core/conv.h"
#include "server/convert.h"
#include "tests/fuzz/fuzz_requests.h"

namespace {

// Keeps each run fast: larger layers are validated but not computed.
constexpr int64_t kMaxComputedMacs = 1 << 20;
constexpr int64_t kMaxComputedElements = 1 << 16;

void BuildRequest(FuzzedDataProvider& data, convserve::v1::ConvRequest* request) {
  convserve::fuzz::FillLayer(data, request->mutable_layer());
  convserve::fuzz::FillInput(data, request->mutable_input());
  convserve::fuzz::FillParameters(data, request->layer(), request->mutable_weight(),
                                  request->mutable_bias());
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
