#include "core/validator.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/checked_math.h"
#include "core/conv.h"
#include "core/framework_advice.h"

namespace convserve {
namespace {

using Axes = std::array<int64_t, kMaxSpatialRank>;

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
// `fallback`) into the geometry's three axes (leading unused axes = `unused`).
absl::StatusOr<Axes> ExpandAxes(absl::string_view field, const std::vector<int64_t>& values,
                                int rank, std::optional<int64_t> fallback, int64_t minimum,
                                int64_t unused) {
  Axes axes;
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

// The input-independent part of a layer, checked.
struct LayerAxes {
  Axes kernel, stride, dilation, span;
};

absl::Status CheckEnums(const ConvSpec& spec) {
  // Enum values may come from a wire format that does not range-check them.
  if (static_cast<unsigned>(spec.padding) > static_cast<unsigned>(PaddingPreset::kCausal)) {
    return Invalid(
        absl::StrCat("padding: expected one of explicit, valid, same_upper, same_lower, "
                     "causal, got value ",
                     static_cast<int>(spec.padding)));
  }
  if (static_cast<unsigned>(spec.padding_mode) > static_cast<unsigned>(PaddingMode::kCircular)) {
    return Invalid(
        absl::StrCat("padding_mode: expected one of zeros, reflect, replicate, circular, "
                     "got value ",
                     static_cast<int>(spec.padding_mode)));
  }
  if (static_cast<unsigned>(spec.activation) > static_cast<unsigned>(Activation::kGelu)) {
    return Invalid(
        absl::StrCat("activation: expected one of none, relu, relu6, leaky_relu, elu, "
                     "sigmoid, tanh, silu, gelu, got value ",
                     static_cast<int>(spec.activation)));
  }
  if (static_cast<unsigned>(spec.data_layout) > static_cast<unsigned>(DataLayout::kChannelsLast)) {
    return Invalid(absl::StrCat("data_layout: expected channels_first or channels_last, got value ",
                                static_cast<int>(spec.data_layout)));
  }
  if (static_cast<unsigned>(spec.weight_layout) >
      static_cast<unsigned>(WeightLayout::kSpatialInOut)) {
    return Invalid(absl::StrCat("weight_layout: expected oihw or hwio, got value ",
                                static_cast<int>(spec.weight_layout)));
  }
  return absl::OkStatus();
}

absl::StatusOr<LayerAxes> CheckLayer(const ConvSpec& spec) {
  if (spec.spatial_rank < 1 || spec.spatial_rank > kMaxSpatialRank) {
    return Invalid(
        absl::StrCat("spatial_rank: expected 1, 2 or 3 spatial axes, got ", spec.spatial_rank));
  }
  if (absl::Status status = CheckEnums(spec); !status.ok()) return status;
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
  if (spec.activation == Activation::kLeakyRelu || spec.activation == Activation::kElu) {
    if (std::isinf(spec.activation_alpha)) {
      return Invalid(
          absl::StrCat("activation_alpha: expected a finite value, got ", spec.activation_alpha));
    }
  }
  const int rank = spec.spatial_rank;
  LayerAxes axes;
  absl::StatusOr<Axes> kernel = ExpandAxes("kernel", spec.kernel, rank, std::nullopt, 1, 1);
  if (!kernel.ok()) return kernel.status();
  absl::StatusOr<Axes> stride = ExpandAxes("stride", spec.stride, rank, 1, 1, 1);
  if (!stride.ok()) return stride.status();
  absl::StatusOr<Axes> dilation = ExpandAxes("dilation", spec.dilation, rank, 1, 1, 1);
  if (!dilation.ok()) return dilation.status();
  axes.kernel = *kernel;
  axes.stride = *stride;
  axes.dilation = *dilation;
  const std::vector<std::string> names = SpatialAxisNames(rank);
  for (int i = 0; i < kMaxSpatialRank; ++i) {
    // span = d * (k - 1) + 1
    std::optional<int64_t> reach = CheckedMul(axes.dilation[i], axes.kernel[i] - 1);
    std::optional<int64_t> span = reach ? CheckedAdd(*reach, 1) : std::nullopt;
    if (!span) {
      return Invalid(
          absl::StrCat("kernel: window span dilation * (kernel - 1) + 1 overflows 64 "
                       "bits on axis ",
                       names[i - (kMaxSpatialRank - rank)], " (kernel ", axes.kernel[i],
                       ", dilation ", axes.dilation[i], ")"));
    }
    axes.span[i] = *span;
  }
  if (spec.padding == PaddingPreset::kExplicit) {
    for (const auto& [field, pads] :
         {std::pair<absl::string_view, const std::vector<int64_t>*>{"pad_begin", &spec.pad_begin},
          {"pad_end", &spec.pad_end}}) {
      absl::StatusOr<Axes> checked = ExpandAxes(field, *pads, rank, 0, 0, 0);
      if (!checked.ok()) return checked.status();
    }
  } else if (!spec.pad_begin.empty() || !spec.pad_end.empty()) {
    return Invalid(absl::StrCat("pad_begin/pad_end: expected none with padding preset '",
                                PaddingPresetName(spec.padding), "' (it decides the pads), got ",
                                ShapeToString(spec.pad_begin), " / ", ShapeToString(spec.pad_end)));
  }
  return axes;
}

}  // namespace

absl::string_view FrameworkName(Framework framework) {
  switch (framework) {
    case Framework::kPyTorch:
      return "PyTorch";
    case Framework::kKeras:
      return "Keras";
    case Framework::kOnnx:
      return "ONNX";
  }
  return "unknown";
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<int64_t> CheckedElementCount(absl::string_view field,
                                            const std::vector<int64_t>& shape) {
  int64_t elements = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 1) {
      return Invalid(absl::StrCat(field, ": expected every dimension >= 1, got ", shape[i],
                                  " at dim ", i, " of ", ShapeToString(shape)));
    }
    std::optional<int64_t> next = CheckedMul(elements, shape[i]);
    if (!next) {
      return Invalid(absl::StrCat(field, ": element count of shape ", ShapeToString(shape),
                                  " overflows 64 bits"));
    }
    elements = *next;
  }
  if (!CheckedMul(elements, static_cast<int64_t>(sizeof(float)))) {
    return Invalid(absl::StrCat(field, ": byte size of shape ", ShapeToString(shape),
                                " float32 overflows 64 bits"));
  }
  return elements;
}

absl::Status CheckPayloadBytes(absl::string_view field, const std::vector<int64_t>& shape,
                               uint64_t byte_size) {
  absl::StatusOr<int64_t> elements = CheckedElementCount(field, shape);
  if (!elements.ok()) return elements.status();
  const uint64_t expected = static_cast<uint64_t>(*elements) * sizeof(float);
  if (byte_size != expected) {
    return Invalid(absl::StrCat(field, ": expected ", expected, " bytes for shape ",
                                ShapeToString(shape), " float32, got ", byte_size,
                                byte_size % sizeof(float) != 0 ? " (not a multiple of 4)" : ""));
  }
  return absl::OkStatus();
}

namespace {

// The weight shape in spec.weight_layout, its element count checked.
absl::StatusOr<std::vector<int64_t>> WeightShapeOf(const ConvSpec& spec, const LayerAxes& axes) {
  std::vector<int64_t> kernel(axes.kernel.end() - spec.spatial_rank, axes.kernel.end());
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
  absl::StatusOr<int64_t> elements = CheckedElementCount("weight", shape);
  if (!elements.ok()) return elements.status();
  return shape;
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> WeightShape(const ConvSpec& spec) {
  absl::StatusOr<LayerAxes> axes = CheckLayer(spec);
  if (!axes.ok()) return axes.status();
  return WeightShapeOf(spec, *axes);
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
  absl::StatusOr<LayerAxes> axes = CheckLayer(spec);
  if (!axes.ok()) return axes.status();
  absl::StatusOr<std::vector<int64_t>> weight_shape = WeightShapeOf(spec, *axes);
  if (!weight_shape.ok()) return weight_shape.status();
  const int rank = spec.spatial_rank;
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
  g.kernel = axes->kernel;
  g.stride = axes->stride;
  g.dilation = axes->dilation;
  g.padding_mode = spec.padding_mode;
  g.bias = spec.bias;
  g.activation = spec.activation;
  g.activation_alpha = std::isnan(spec.activation_alpha) ? DefaultActivationAlpha(spec.activation)
                                                         : spec.activation_alpha;
  g.data_layout = spec.data_layout;
  g.weight_layout = spec.weight_layout;

  absl::StatusOr<Axes> explicit_begin = ExpandAxes("pad_begin", spec.pad_begin, rank, 0, 0, 0);
  absl::StatusOr<Axes> explicit_end = ExpandAxes("pad_end", spec.pad_end, rank, 0, 0, 0);
  for (int user_axis = 0; user_axis < rank; ++user_axis) {
    const int i = kMaxSpatialRank - rank + user_axis;
    const std::string& name = names[user_axis];
    const int64_t n = input_shape[(channels_first ? 2 : 1) + user_axis];
    const int64_t s = g.stride[i], d = g.dilation[i], span = axes->span[i];
    g.input[i] = n;
    int64_t begin = 0, end = 0;
    switch (spec.padding) {
      case PaddingPreset::kExplicit:
        begin = (*explicit_begin)[i];
        end = (*explicit_end)[i];
        break;
      case PaddingPreset::kValid:
        break;
      case PaddingPreset::kSameUpper:
      case PaddingPreset::kSameLower: {
        // out = ceil(n / s); total = max(0, (out - 1) * s + span - n). All
        // terms are below n + span, which fits: n < 2^62, span checked.
        const int64_t out = (n - 1) / s + 1;
        std::optional<int64_t> reach = CheckedMul(out - 1, s);
        std::optional<int64_t> covered = reach ? CheckedAdd(*reach, span) : std::nullopt;
        if (!covered) {
          return Invalid(
              absl::StrCat("kernel: padding for 'same' overflows 64 bits on axis ", name));
        }
        const int64_t total = std::max<int64_t>(0, *covered - n);
        const int64_t small = total / 2, large = total - small;
        begin = spec.padding == PaddingPreset::kSameUpper ? small : large;
        end = total - begin;
        break;
      }
      case PaddingPreset::kCausal:
        begin = span - 1;  // d * (k - 1)
        break;
    }
    (void)d;
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
                                  " (dilation ", d, " * (kernel ", g.kernel[i],
                                  " - 1) + 1) but the", " padded input has only ", *padded, " (", n,
                                  " + ", begin, " + ", end, ")"));
    }
    g.output[i] = (*padded - span) / s + 1;
  }
  const std::vector<int64_t> output_shape = OutputShape(g);
  absl::StatusOr<int64_t> output_elements = CheckedElementCount("output", output_shape);
  if (!output_elements.ok()) return output_elements.status();
  // MACs = N * C_out * prod(out) * (C_in/g) * prod(K), and FLOPs = 2 * MACs
  // must fit: the report states both.
  if (!CheckedProduct({*output_elements, g.in_channels_per_group(), g.kernel_size(), 2})) {
    return Invalid(absl::StrCat("layer: FLOP count (2 * multiply-accumulates) for output ",
                                ShapeToString(output_shape), " overflows 64 bits"));
  }
  return g;
}

absl::StatusOr<ShapeReport> Validate(const ConvSpec& spec, const std::vector<int64_t>& input_shape,
                                     const ValidateOptions& options) {
  absl::StatusOr<ConvGeometry> geometry = ResolveGeometry(spec, input_shape);
  if (!geometry.ok()) return geometry.status();
  const ConvGeometry& g = *geometry;
  const int rank = g.spatial_rank;
  const std::vector<std::string> names = SpatialAxisNames(rank);

  ShapeReport report;
  report.geometry = g;
  report.input_shape = input_shape;
  report.output_shape = OutputShape(g);
  report.weight_shape = *WeightShape(spec);
  if (g.bias) report.bias_shape = {g.out_channels};
  // ResolveGeometry checked that these products fit.
  report.parameters = g.weight_elements() + g.bias_elements();
  report.macs = g.output_elements() * g.in_channels_per_group() * g.kernel_size();
  report.flops = 2 * report.macs;
  report.input_bytes = g.input_elements() * 4;
  report.output_bytes = g.output_elements() * 4;
  report.weight_bytes = g.weight_elements() * 4;

  for (int user_axis = 0; user_axis < rank; ++user_axis) {
    const int i = kMaxSpatialRank - rank + user_axis;
    const std::string& name = names[user_axis];
    AxisReport axis;
    axis.input = g.input[i];
    axis.kernel = g.kernel[i];
    axis.stride = g.stride[i];
    axis.dilation = g.dilation[i];
    axis.pad_begin = g.pad_begin[i];
    axis.pad_end = g.pad_end[i];
    axis.span = axis.dilation * (axis.kernel - 1) + 1;
    axis.padded = axis.input + axis.pad_begin + axis.pad_end;
    axis.output = g.output[i];
    axis.unread_cells = (axis.padded - axis.span) % axis.stride;
    axis.derivation = absl::StrCat(name, ": span = d*(k-1)+1 = ", axis.dilation, "*(", axis.kernel,
                                   "-1)+1 = ", axis.span, "; padded = n+begin+end = ", axis.input,
                                   "+", axis.pad_begin, "+", axis.pad_end, " = ", axis.padded,
                                   "; out = floor((padded-span)/s)+1 = floor((", axis.padded, "-",
                                   axis.span, ")/", axis.stride, ")+1 = ", axis.output,
                                   "; unread = (padded-span) mod s = ", axis.unread_cells);
    const int64_t unread_input = std::max<int64_t>(0, axis.unread_cells - axis.pad_end);
    if (unread_input > 0) {
      report.warnings.push_back(absl::StrCat(
          "axis ", name, ": the last ", unread_input, " input cell(s) are never read: ",
          "the stride ", axis.stride, " does not fit another window in what remains ((",
          axis.padded, " - ", axis.span, ") mod ", axis.stride, " = ", axis.unread_cells, ")"));
    }
    if (axis.stride > axis.span) {
      report.warnings.push_back(absl::StrCat(
          "axis ", name, ": stride ", axis.stride, " exceeds the window span ", axis.span, ", so ",
          axis.stride - axis.span, " cell(s) between consecutive windows are never read"));
    }
    if (axis.span > axis.input) {
      report.warnings.push_back(absl::StrCat("axis ", name, ": the window span ", axis.span,
                                             " is larger than the unpadded input ", axis.input,
                                             "; every output reads padding"));
    }
    if (axis.pad_begin >= axis.span || axis.pad_end >= axis.span) {
      report.warnings.push_back(absl::StrCat("axis ", name, ": a pad (", axis.pad_begin, ", ",
                                             axis.pad_end, ") reaches the window span ", axis.span,
                                             ", so some outputs read only padding"));
    }
    report.axes.push_back(std::move(axis));
  }

  for (Framework framework : kAllFrameworks) {
    report.frameworks.push_back(AdviseFramework(framework, spec, g));
  }
  if (options.enforce_framework) {
    const FrameworkVerdict& verdict = report.frameworks[static_cast<int>(options.framework)];
    if (!verdict.accepted) {
      return Invalid(absl::StrCat("layer: ", FrameworkName(options.framework),
                                  " would refuse this layer: ", verdict.reason));
    }
  }
  return report;
}

}  // namespace convserve
