// geometry.cc: resolution of a ConvSpec into a ResolvedLayer and, with an
// input shape, a ConvGeometry (see geometry.h for the rules).
#include "core/geometry.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/checked_math.h"
#include "core/tensor_shape.h"

namespace convserve {
namespace {

absl::Status Invalid(std::string message) { return absl::InvalidArgumentError(std::move(message)); }

// "(N, C, H, W)" or "(N, H, W, C)".
std::string DimsLegend(int rank, DataLayout layout) {
  std::vector<std::string> names = {"N"};
  if (layout == DataLayout::kChannelsFirst) names.push_back("C");
  for (const std::string& axis : SpatialAxisNames(rank)) names.push_back(axis);
  if (layout == DataLayout::kChannelsLast) names.push_back("C");
  return absl::StrCat("(", absl::StrJoin(names, ", "), ")");
}

// Expands a per-axis field (one value per axis, or one for all, or none for
// `fallback`) into the three axes (leading unused axes = `unused`).
absl::StatusOr<SpatialAxes> ExpandAxes(absl::string_view field, const std::vector<int64_t>& values,
                                       int rank, std::optional<int64_t> fallback, int64_t minimum,
                                       int64_t unused) {
  SpatialAxes axes;
  axes.fill(unused);
  if (values.empty()) {
    if (!fallback) {
      return Invalid(absl::StrCat(field, ": expected 1 or ", rank, " values (one per spatial axis ",
                                  absl::StrJoin(SpatialAxisNames(rank), ", "), "), got none"));
    }
    for (int i = 0; i < rank; ++i) axes[kMaxSpatialRank - rank + i] = *fallback;
    return axes;
  }
  if (values.size() != 1 && static_cast<int>(values.size()) != rank) {
    return Invalid(absl::StrCat(field, ": expected 1 or ", rank, " values (one per spatial axis ",
                                absl::StrJoin(SpatialAxisNames(rank), ", "), ") for a ", rank,
                                "-D conv, got ", values.size(), " ", ShapeToString(values)));
  }
  const std::vector<std::string> names = SpatialAxisNames(rank);
  for (int i = 0; i < rank; ++i) {
    const int64_t value = values.size() == 1 ? values[0] : values[i];
    if (value < minimum) {
      return Invalid(absl::StrCat(field, ": expected values >= ", minimum, ", got ", value,
                                  " on axis ", names[i]));
    }
    axes[kMaxSpatialRank - rank + i] = value;
  }
  return axes;
}

// INVALID_ARGUMENT unless `value` is one of `table`'s.
template <typename Enum, size_t N>
absl::Status CheckEnum(absl::string_view field, const EnumEntry<Enum> (&table)[N], Enum value) {
  if (FindEnum(table, value) != nullptr) return absl::OkStatus();
  return Invalid(absl::StrCat(field, ": expected one of ", EnumNames(table), ", got value ",
                              static_cast<int>(value)));
}

absl::Status CheckEnums(const ConvSpec& spec) {
  for (absl::Status status : {CheckEnum("padding", kPaddingPresets, spec.padding),
                              CheckEnum("padding_mode", kPaddingModes, spec.padding_mode),
                              CheckEnum("activation", kActivations, spec.activation),
                              CheckEnum("data_layout", kDataLayouts, spec.data_layout),
                              CheckEnum("weight_layout", kWeightLayouts, spec.weight_layout),
                              CheckEnum("algorithm", kConvAlgorithms, spec.algorithm)}) {
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status CheckChannels(const ConvSpec& spec) {
  if (spec.in_channels < 1) {
    return Invalid(absl::StrCat("in_channels: expected >= 1, got ", spec.in_channels));
  }
  if (spec.out_channels < 1) {
    return Invalid(absl::StrCat("out_channels: expected >= 1, got ", spec.out_channels));
  }
  if (spec.groups < 1) return Invalid(absl::StrCat("groups: expected >= 1, got ", spec.groups));
  if (spec.in_channels % spec.groups != 0) {
    return Invalid(absl::StrCat("groups: expected a divisor of in_channels (", spec.in_channels,
                                "), got ", spec.groups));
  }
  if (spec.out_channels % spec.groups != 0) {
    return Invalid(absl::StrCat("groups: expected a divisor of out_channels (", spec.out_channels,
                                "), got ", spec.groups));
  }
  return absl::OkStatus();
}

// The weight shape in spec.weight_layout.
std::vector<int64_t> WeightShapeOf(const ConvSpec& spec, const SpatialAxes& kernel_axes) {
  std::vector<int64_t> kernel(kernel_axes.end() - spec.spatial_rank, kernel_axes.end());
  const int64_t in_per_group = spec.in_channels / spec.groups;
  std::vector<int64_t> shape;
  if (spec.weight_layout == WeightLayout::kOutInSpatial) {
    shape = {spec.out_channels, in_per_group};
    shape.insert(shape.end(), kernel.begin(), kernel.end());
  } else {
    shape = kernel;
    shape.push_back(in_per_group);
    shape.push_back(spec.out_channels);
  }
  return shape;
}

}  // namespace

absl::StatusOr<ResolvedLayer> ResolveLayer(const ConvSpec& spec) {
  if (spec.spatial_rank < 1 || spec.spatial_rank > kMaxSpatialRank) {
    return Invalid(
        absl::StrCat("spatial_rank: expected 1, 2 or 3 spatial axes, got ", spec.spatial_rank));
  }
  if (absl::Status status = CheckEnums(spec); !status.ok()) return status;
  if (absl::Status status = CheckChannels(spec); !status.ok()) return status;
  if (spec.activation == Activation::kLeakyRelu || spec.activation == Activation::kElu) {
    if (std::isinf(spec.activation_alpha)) {
      return Invalid(
          absl::StrCat("activation_alpha: expected a finite value, got ", spec.activation_alpha));
    }
  }
  const int rank = spec.spatial_rank;
  ResolvedLayer layer;
  layer.spec = spec;
  layer.spatial_rank = rank;
  absl::StatusOr<SpatialAxes> kernel = ExpandAxes("kernel", spec.kernel, rank, std::nullopt, 1, 1);
  if (!kernel.ok()) return kernel.status();
  absl::StatusOr<SpatialAxes> stride = ExpandAxes("stride", spec.stride, rank, 1, 1, 1);
  if (!stride.ok()) return stride.status();
  absl::StatusOr<SpatialAxes> dilation = ExpandAxes("dilation", spec.dilation, rank, 1, 1, 1);
  if (!dilation.ok()) return dilation.status();
  layer.kernel = *kernel;
  layer.stride = *stride;
  layer.dilation = *dilation;
  const std::vector<std::string> names = SpatialAxisNames(rank);
  for (int i = 0; i < kMaxSpatialRank; ++i) {
    // span = d * (k - 1) + 1
    std::optional<int64_t> reach = CheckedMul(layer.dilation[i], layer.kernel[i] - 1);
    std::optional<int64_t> span = reach ? CheckedAdd(*reach, 1) : std::nullopt;
    if (!span) {
      return Invalid(
          absl::StrCat("kernel: window span dilation * (kernel - 1) + 1 overflows 64 "
                       "bits on axis ",
                       names[i - (kMaxSpatialRank - rank)], " (kernel ", layer.kernel[i],
                       ", dilation ", layer.dilation[i], ")"));
    }
    layer.span[i] = *span;
  }
  if (spec.padding == PaddingPreset::kExplicit) {
    absl::StatusOr<SpatialAxes> begin = ExpandAxes("pad_begin", spec.pad_begin, rank, 0, 0, 0);
    if (!begin.ok()) return begin.status();
    absl::StatusOr<SpatialAxes> end = ExpandAxes("pad_end", spec.pad_end, rank, 0, 0, 0);
    if (!end.ok()) return end.status();
    layer.pad_begin = *begin;
    layer.pad_end = *end;
  } else if (!spec.pad_begin.empty() || !spec.pad_end.empty()) {
    return Invalid(absl::StrCat("pad_begin/pad_end: expected none with padding preset '",
                                PaddingPresetName(spec.padding), "' (it decides the pads), got ",
                                ShapeToString(spec.pad_begin), " / ", ShapeToString(spec.pad_end)));
  }
  layer.weight_shape = WeightShapeOf(spec, layer.kernel);
  absl::StatusOr<int64_t> weight_elements = CheckedElementCount("weight", layer.weight_shape);
  if (!weight_elements.ok()) return weight_elements.status();
  layer.activation_alpha = std::isnan(spec.activation_alpha)
                               ? DefaultActivationAlpha(spec.activation)
                               : spec.activation_alpha;
  if (spec.algorithm == ConvAlgorithm::kWinograd) {
    if (absl::Status status = CheckWinograd(layer); !status.ok()) return status;
  }
  return layer;
}

absl::Status CheckWinograd(const ResolvedLayer& layer) {
  const ConvSpec& spec = layer.spec;
  const bool fits = layer.spatial_rank == 2 && layer.kernel[1] == 3 && layer.kernel[2] == 3 &&
                    layer.stride[1] == 1 && layer.stride[2] == 1 && layer.dilation[1] == 1 &&
                    layer.dilation[2] == 1 && spec.groups == 1 &&
                    spec.padding_mode == PaddingMode::kZeros;
  if (fits) return absl::OkStatus();
  return Invalid(absl::StrCat(
      "algorithm: 'winograd' requires a 2-D layer with a 3x3 kernel, stride 1, dilation 1, "
      "groups 1 and padding_mode 'zeros', got a ",
      layer.spatial_rank, "-D layer with kernel ", ShapeToString(spec.kernel), ", stride ",
      ShapeToString(spec.stride), ", dilation ", ShapeToString(spec.dilation), ", groups ",
      spec.groups, " and padding_mode '", PaddingModeName(spec.padding_mode), "'"));
}

std::pair<int64_t, int64_t> PresetPads(PaddingPreset preset, int64_t input, int64_t stride,
                                       int64_t span) {
  switch (preset) {
    case PaddingPreset::kSameUpper:
    case PaddingPreset::kSameLower: {
      const int64_t output = (input - 1) / stride + 1;  // ceil(input / stride)
      // (output - 1) * stride - input lies in [-input, -1]: no term overflows.
      const int64_t total = std::max<int64_t>(0, (output - 1) * stride - input + span);
      const int64_t small = total / 2, large = total - small;
      return preset == PaddingPreset::kSameUpper ? std::pair{small, large}
                                                 : std::pair{large, small};
    }
    case PaddingPreset::kCausal:
      return {span - 1, 0};
    case PaddingPreset::kExplicit:
    case PaddingPreset::kValid:
      break;
  }
  return {0, 0};
}

std::vector<int64_t> OutputShape(const ConvGeometry& geometry) {
  std::vector<int64_t> shape = {geometry.batch};
  if (geometry.data_layout == DataLayout::kChannelsFirst) shape.push_back(geometry.out_channels);
  shape.insert(shape.end(), geometry.output.end() - geometry.spatial_rank, geometry.output.end());
  if (geometry.data_layout == DataLayout::kChannelsLast) shape.push_back(geometry.out_channels);
  return shape;
}

absl::StatusOr<ConvGeometry> ResolveGeometry(const ConvSpec& spec,
                                             const std::vector<int64_t>& input_shape) {
  absl::StatusOr<ResolvedLayer> layer = ResolveLayer(spec);
  if (!layer.ok()) return layer.status();
  return ResolveGeometry(*layer, input_shape);
}

absl::StatusOr<ConvGeometry> ResolveGeometry(const ResolvedLayer& layer,
                                             const std::vector<int64_t>& input_shape) {
  const ConvSpec& spec = layer.spec;
  const int rank = layer.spatial_rank;
  const std::vector<std::string> names = SpatialAxisNames(rank);

  if (static_cast<int>(input_shape.size()) != rank + 2) {
    return Invalid(absl::StrCat(
        "input: expected ", rank + 2, " dims ", DimsLegend(rank, spec.data_layout), " for a ", rank,
        "-D conv in ", DataLayoutName(spec.data_layout), ", got ", ShapeToString(input_shape)));
  }
  absl::StatusOr<int64_t> input_elements = CheckedElementCount("input", input_shape);
  if (!input_elements.ok()) return input_elements.status();

  ConvGeometry g;
  g.spatial_rank = rank;
  g.batch = input_shape[0];
  const bool channels_first = spec.data_layout == DataLayout::kChannelsFirst;
  const int64_t channels = channels_first ? input_shape[1] : input_shape[rank + 1];
  if (channels != spec.in_channels) {
    return Invalid(absl::StrCat("input: expected ", spec.in_channels,
                                " channels (in_channels) at dim ", channels_first ? 1 : rank + 1,
                                " of ", DimsLegend(rank, spec.data_layout), ", got ", channels,
                                " in ", ShapeToString(input_shape)));
  }
  g.in_channels = spec.in_channels;
  g.out_channels = spec.out_channels;
  g.groups = spec.groups;
  g.kernel = layer.kernel;
  g.stride = layer.stride;
  g.dilation = layer.dilation;
  g.span = layer.span;
  g.padding_mode = spec.padding_mode;
  g.bias = spec.bias;
  g.activation = spec.activation;
  g.activation_alpha = layer.activation_alpha;
  g.data_layout = spec.data_layout;
  g.weight_layout = spec.weight_layout;

  std::vector<int64_t> padded_shape = input_shape;
  for (int user_axis = 0; user_axis < rank; ++user_axis) {
    const int i = kMaxSpatialRank - rank + user_axis;
    const std::string& name = names[user_axis];
    const int64_t n = input_shape[(channels_first ? 2 : 1) + user_axis];
    const int64_t s = g.stride[i], span = g.span[i];
    g.input[i] = n;
    int64_t begin = layer.pad_begin[i], end = layer.pad_end[i];
    if (spec.padding == PaddingPreset::kSameUpper || spec.padding == PaddingPreset::kSameLower) {
      // The padded length (ceil(n / s) - 1) * s + span must fit.
      std::optional<int64_t> reach = CheckedMul((n - 1) / s, s);
      if (!reach || !CheckedAdd(*reach, span)) {
        return Invalid(absl::StrCat("kernel: padding for 'same' overflows 64 bits on axis ", name));
      }
    }
    if (spec.padding != PaddingPreset::kExplicit) {
      std::tie(begin, end) = PresetPads(spec.padding, n, s, span);
    }
    g.pad_begin[i] = begin;
    g.pad_end[i] = end;
    std::optional<int64_t> padded = CheckedAdd(n, begin);
    if (padded) padded = CheckedAdd(*padded, end);
    if (!padded) {
      return Invalid(absl::StrCat("pad_begin/pad_end: padded length ", n, " + ", begin, " + ", end,
                                  " overflows 64 bits on axis ", name));
    }
    switch (spec.padding_mode) {
      case PaddingMode::kReflect:
        if (begin > n - 1 || end > n - 1) {
          return Invalid(absl::StrCat(
              "padding_mode: reflect padding needs pads <= input size - 1 = ", n - 1, " on axis ",
              name, " (size ", n, "), got pads (", begin, ", ", end, ")"));
        }
        break;
      case PaddingMode::kCircular:
        if (begin > n || end > n) {
          return Invalid(absl::StrCat("padding_mode: circular padding needs pads <= input size = ",
                                      n, " on axis ", name, ", got pads (", begin, ", ", end, ")"));
        }
        break;
      case PaddingMode::kZeros:
      case PaddingMode::kReplicate:
        break;
    }
    if (*padded < span) {
      return Invalid(absl::StrCat("kernel: the window spans ", span, " cells on axis ", name,
                                  " (dilation ", g.dilation[i], " * (kernel ", g.kernel[i],
                                  " - 1) + 1) but the", " padded input has only ", *padded, " (", n,
                                  " + ", begin, " + ", end, ")"));
    }
    g.output[i] = (*padded - span) / s + 1;
    // A stride above the padded length only ever places window 0 (output 1),
    // and a dilation above it only comes with kernel 1: capped there, they
    // give the same windows, and no product of them with a tensor extent
    // can overflow downstream (the padded input's size is checked below).
    g.stride[i] = std::min(s, *padded);
    g.dilation[i] = std::min(g.dilation[i], *padded);
    padded_shape[(channels_first ? 2 : 1) + user_axis] = *padded;
  }
  absl::StatusOr<int64_t> padded_elements = CheckedElementCount("padded input", padded_shape);
  if (!padded_elements.ok()) return padded_elements.status();
  const std::vector<int64_t> output_shape = OutputShape(g);
  absl::StatusOr<int64_t> output_elements = CheckedElementCount("output", output_shape);
  if (!output_elements.ok()) return output_elements.status();
  // MACs = N * C_out * prod(out) * (C_in/g) * prod(K), and FLOPs = 2 * MACs
  // must fit: the report states both, the server limits them.
  if (!CheckedProduct({*output_elements, g.in_channels_per_group(), g.kernel_size(), 2})) {
    return Invalid(absl::StrCat("layer: FLOP count (2 * multiply-accumulates) for output ",
                                ShapeToString(output_shape), " overflows 64 bits"));
  }
  return g;
}

}  // namespace convserve
