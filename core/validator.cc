// validator.cc: builds the ShapeReport of a resolved layer.
#include "core/validator.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/internal/framework_advice.h"

namespace convserve {

absl::StatusOr<ShapeReport> Validate(const ConvSpec& spec, const std::vector<int64_t>& input_shape,
                                     const ValidateOptions& options) {
  absl::StatusOr<ResolvedLayer> layer = ResolveLayer(spec);
  if (!layer.ok()) return layer.status();
  absl::StatusOr<ConvGeometry> geometry = ResolveGeometry(*layer, input_shape);
  if (!geometry.ok()) return geometry.status();
  const ConvGeometry& g = *geometry;
  const int rank = g.spatial_rank;
  const std::vector<std::string> names = SpatialAxisNames(rank);

  ShapeReport report;
  report.geometry = g;
  report.input_shape = input_shape;
  report.output_shape = OutputShape(g);
  report.weight_shape = layer->weight_shape;
  if (g.bias) report.bias_shape = {g.out_channels};
  // ResolveGeometry checked that these products fit.
  report.parameters = g.weight_elements() + g.bias_elements();
  report.macs = g.macs();
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
    // The layer's stride and dilation, as the user wrote them (the geometry
    // caps those that no window uses).
    axis.stride = layer->stride[i];
    axis.dilation = layer->dilation[i];
    axis.pad_begin = g.pad_begin[i];
    axis.pad_end = g.pad_end[i];
    axis.span = g.span[i];
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

  for (const EnumEntry<Framework>& framework : kFrameworks) {
    report.frameworks.push_back(AdviseFramework(framework.value, *layer, g));
  }
  if (options.enforce_framework) {
    const FrameworkVerdict& verdict = report.frameworks[static_cast<int>(options.framework)];
    if (!verdict.accepted) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer: ", FindEnum(kFrameworks, options.framework)->name,
                       " would refuse this layer: ", verdict.reason));
    }
  }
  return report;
}

}  // namespace convserve
