// c_api.cc: the C ABI of c_api.h over ConvOperator and the geometry.
#include "core/c_api.h"

#include <tbb/task_arena.h>

#include <cstring>
#include <vector>

#include "core/conv.h"
#include "core/half.h"
#include "core/validator.h"

namespace {

using convserve::ConvSpec;

ConvSpec ToSpec(const convserve_layer& layer) {
  ConvSpec spec;
  spec.spatial_rank = layer.spatial_rank;
  spec.padding = static_cast<convserve::PaddingPreset>(layer.padding);
  spec.padding_mode = static_cast<convserve::PaddingMode>(layer.padding_mode);
  spec.activation = static_cast<convserve::Activation>(layer.activation);
  spec.data_layout = static_cast<convserve::DataLayout>(layer.data_layout);
  spec.weight_layout = static_cast<convserve::WeightLayout>(layer.weight_layout);
  spec.bias = layer.bias != 0;
  spec.in_channels = layer.in_channels;
  spec.out_channels = layer.out_channels;
  spec.groups = layer.groups;
  spec.activation_alpha = layer.activation_alpha;
  spec.algorithm = static_cast<convserve::ConvAlgorithm>(layer.algorithm);
  const int rank = layer.spatial_rank >= 1 && layer.spatial_rank <= 3 ? layer.spatial_rank : 0;
  spec.kernel.assign(layer.kernel, layer.kernel + rank);
  spec.stride.assign(layer.stride, layer.stride + rank);
  spec.dilation.assign(layer.dilation, layer.dilation + rank);
  if (spec.padding == convserve::PaddingPreset::kExplicit) {
    spec.pad_begin.assign(layer.pad_begin, layer.pad_begin + rank);
    spec.pad_end.assign(layer.pad_end, layer.pad_end + rank);
  }
  return spec;
}

int Report(const absl::Status& status, char* error, size_t error_size) {
  if (error != nullptr && error_size > 0) {
    std::strncpy(error, std::string(status.message()).c_str(), error_size - 1);
    error[error_size - 1] = '\0';
  }
  return static_cast<int>(status.code());
}

// The ISA and type of the half conversion functions' arguments, or false.
bool ToHalfArguments(int type, int isa, convserve::HalfType* half_type,
                     convserve::HalfIsa* half_isa) {
  using convserve::HalfIsa;
  if (type != 0 && type != 1) return false;
  *half_type = type == 0 ? convserve::HalfType::kFloat16 : convserve::HalfType::kBfloat16;
  if (isa == 0) {
    *half_isa = convserve::BestHalfIsa();
    return true;
  }
  if (isa < 1 || isa > 3) return false;
  *half_isa = static_cast<HalfIsa>(isa - 1);
  for (HalfIsa supported : convserve::SupportedHalfIsas()) {
    if (supported == *half_isa) return true;
  }
  return false;
}

}  // namespace

extern "C" int convserve_output_shape(const convserve_layer* layer, const int64_t* input_shape,
                                      int input_dims, int64_t* output_shape, char* error,
                                      size_t error_size) {
  const std::vector<int64_t> shape(input_shape, input_shape + input_dims);
  absl::StatusOr<convserve::ConvGeometry> geometry =
      convserve::ResolveGeometry(ToSpec(*layer), shape);
  if (!geometry.ok()) return Report(geometry.status(), error, error_size);
  const std::vector<int64_t> out = convserve::OutputShape(*geometry);
  std::copy(out.begin(), out.end(), output_shape);
  return 0;
}

extern "C" int convserve_conv(const convserve_layer* layer, const int64_t* input_shape,
                              int input_dims, const float* input, const float* weight,
                              const float* bias, float* output, int threads, char* error,
                              size_t error_size) {
  absl::StatusOr<convserve::ResolvedLayer> resolved = convserve::ResolveLayer(ToSpec(*layer));
  if (!resolved.ok()) return Report(resolved.status(), error, error_size);
  const std::vector<int64_t> shape(input_shape, input_shape + input_dims);
  absl::StatusOr<convserve::ConvGeometry> geometry = convserve::ResolveGeometry(*resolved, shape);
  if (!geometry.ok()) return Report(geometry.status(), error, error_size);
  const auto path =
      layer->kernel_path == 1 ? convserve::KernelPath::kReference : convserve::KernelPath::kAuto;
  absl::StatusOr<std::unique_ptr<convserve::ConvOperator>> op = convserve::ConvOperator::Create(
      *resolved, absl::MakeConstSpan(weight, geometry->weight_elements()),
      absl::MakeConstSpan(bias, geometry->bias_elements()), path);
  if (!op.ok()) return Report(op.status(), error, error_size);
  absl::Status status;
  tbb::task_arena arena(threads > 0 ? threads : tbb::task_arena::automatic);
  arena.execute([&] { status = (*op)->Run(*geometry, input, output); });
  return status.ok() ? 0 : Report(status, error, error_size);
}

int convserve_half_to_float(int type, int isa, const uint16_t* in, size_t count, float* out) {
  convserve::HalfType half_type;
  convserve::HalfIsa half_isa;
  if (!ToHalfArguments(type, isa, &half_type, &half_isa)) return 3;
  convserve::HalfToFloat(half_isa, half_type, in, count, out);
  return 0;
}

int convserve_float_to_half(int type, int isa, const float* in, size_t count, uint16_t* out) {
  convserve::HalfType half_type;
  convserve::HalfIsa half_isa;
  if (!ToHalfArguments(type, isa, &half_type, &half_isa)) return 3;
  convserve::FloatToHalf(half_isa, half_type, in, count, out);
  return 0;
}
