// conv.cc: ConvOperator's factory (path and ISA choice) and the reference operator.
#include "core/conv.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/fast/fast_conv.h"
#include "core/reference_conv.h"
#include "core/tensor_shape.h"

namespace convserve {
namespace {

// Runs every layer through the scalar oracle. Weights are kept as given.
class ReferenceOperator final : public ConvOperator {
 public:
  ReferenceOperator(const ResolvedLayer& layer, std::vector<float> weight, std::vector<float> bias)
      : ConvOperator(layer), weight_(std::move(weight)), bias_(std::move(bias)) {}

  std::string KernelName(const ConvGeometry&) const override { return "f32-conv-reference-scalar"; }

  using ConvOperator::Run;
  // The scalar oracle has no work items: `stop` is checked before and after.
  absl::Status Run(const ConvGeometry& geometry, const float* input, float* output,
                   const StopToken& stop) const override {
    if (stop.StopRequested()) return StoppedError();
    ReferenceConv(geometry, input, weight_.data(), bias_.empty() ? nullptr : bias_.data(), output);
    if (stop.StopRequested()) return StoppedError();
    return absl::OkStatus();
  }

 private:
  std::vector<float> weight_;
  std::vector<float> bias_;
};

}  // namespace

absl::Status StoppedError() {
  return absl::CancelledError("the convolution was stopped before it finished");
}

std::vector<std::string> KernelTiers() {
  if (!kernels::CpuHasAvx2Fma()) return {"reference"};
  if (kernels::BestIsa() == kernels::Isa::kAvx512f) return {"avx512f", "avx2"};
  return {"avx2"};
}

absl::StatusOr<std::unique_ptr<ConvOperator>> ConvOperator::Create(const ConvSpec& spec,
                                                                   absl::Span<const float> weight,
                                                                   absl::Span<const float> bias,
                                                                   KernelPath path) {
  absl::StatusOr<ResolvedLayer> layer = ResolveLayer(spec);
  if (!layer.ok()) return layer.status();
  return Create(*layer, weight, bias, path);
}

absl::StatusOr<std::unique_ptr<ConvOperator>> ConvOperator::Create(const ResolvedLayer& layer,
                                                                   absl::Span<const float> weight,
                                                                   absl::Span<const float> bias,
                                                                   KernelPath path) {
  if (static_cast<int64_t>(weight.size()) != layer.weight_elements()) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight: expected ", layer.weight_elements(), " values for shape ",
                     ShapeToString(layer.weight_shape), ", got ", weight.size()));
  }
  const int64_t bias_elements = layer.bias_elements();
  if (static_cast<int64_t>(bias.size()) != bias_elements) {
    return absl::InvalidArgumentError(
        layer.spec.bias
            ? absl::StrCat("bias: expected ", bias_elements, " values (out_channels), got ",
                           bias.size())
            : absl::StrCat("bias: the layer has bias = false, so expected no bias values, got ",
                           bias.size()));
  }
  if (path == KernelPath::kAuto && kernels::CpuHasAvx2Fma()) {
    return kernels::CreateFastConvOperator(layer, weight, bias, kernels::BestIsa());
  }
  // Without AVX2 + FMA (or when asked for it) the scalar oracle runs the layer.
  return std::unique_ptr<ConvOperator>(
      new ReferenceOperator(layer, std::vector<float>(weight.begin(), weight.end()),
                            std::vector<float>(bias.begin(), bias.end())));
}

absl::Status ConvOperator::Run(const std::vector<int64_t>& input_shape,
                               absl::Span<const float> input, std::vector<float>* output,
                               std::vector<int64_t>* output_shape) const {
  absl::StatusOr<ConvGeometry> geometry = ResolveGeometry(layer_, input_shape);
  if (!geometry.ok()) return geometry.status();
  if (static_cast<int64_t>(input.size()) != geometry->input_elements()) {
    return absl::InvalidArgumentError(absl::StrCat("input: expected ", geometry->input_elements(),
                                                   " values for shape ", ShapeToString(input_shape),
                                                   ", got ", input.size()));
  }
  output->resize(static_cast<size_t>(geometry->output_elements()));
  if (output_shape != nullptr) *output_shape = OutputShape(*geometry);
  return Run(*geometry, input.data(), output->data());
}

}  // namespace convserve
