// geometry.h: the one place a convolution layer is interpreted.
//
// A ConvSpec (conv_spec.h) is what a user wrote: per-axis fields that may be
// broadcast, a padding preset, enums from an untrusted wire. Resolution turns
// it into numbers in two steps, each done once and read by everything
// downstream (operators, kernels, the validator's report, the framework
// advice, the server's limits):
//
//   ResolveLayer(spec)                -> ResolvedLayer: per-axis kernel,
//                                        stride, dilation and window span,
//                                        weight shape (no input needed);
//   ResolveGeometry(layer, input)     -> ConvGeometry: pads, output extents
//                                        and element counts for one input.
//
// Every rule of the output formula lives here: the per-axis broadcast of
// `kernel`/`stride`/`dilation`/pads, the window span d * (k - 1) + 1, the
// pads of every preset (SAME_UPPER/SAME_LOWER, causal), the padding-mode
// limits, floor((padded - span) / s) + 1, and the overflow checks of every
// product, so that nothing downstream can overflow.
#ifndef CONVSERVE_CORE_GEOMETRY_H_
#define CONVSERVE_CORE_GEOMETRY_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/conv_spec.h"

namespace convserve {

// The input-independent part of a layer, checked and broadcast to the three
// axes a ConvGeometry has (leading unused axes: kernel, stride, dilation and
// span 1). Only ResolveLayer() makes one, so every value in it holds:
// channels and groups >= 1 and divisible, kernel/stride/dilation >= 1, spans
// and the weight element count fit in 64 bits (in bytes too), enums in range.
struct ResolvedLayer {
  ConvSpec spec;  // As the user wrote it (to describe the layer back).
  int spatial_rank = 2;
  SpatialAxes kernel{1, 1, 1};
  SpatialAxes stride{1, 1, 1};
  SpatialAxes dilation{1, 1, 1};
  SpatialAxes span{1, 1, 1};  // d * (k - 1) + 1: cells one window covers.
  // Explicit pads, broadcast (zeros for the other presets, which decide
  // the pads from the input size in ResolveGeometry()).
  SpatialAxes pad_begin{0, 0, 0};
  SpatialAxes pad_end{0, 0, 0};
  std::vector<int64_t> weight_shape;  // In spec.weight_layout.
  float activation_alpha = 0.0f;      // Resolved: never NaN.

  int64_t in_channels_per_group() const { return spec.in_channels / spec.groups; }
  int64_t out_channels_per_group() const { return spec.out_channels / spec.groups; }
  int64_t kernel_size() const { return kernel[0] * kernel[1] * kernel[2]; }
  int64_t weight_elements() const {
    return spec.out_channels * in_channels_per_group() * kernel_size();
  }
  int64_t bias_elements() const { return spec.bias ? spec.out_channels : 0; }
};

// Checks the parts of `spec` that do not depend on the input shape and
// resolves them. INVALID_ARGUMENT names the field, what was expected and what
// was received.
// With spec.algorithm kWinograd, CheckWinograd() must pass too.
absl::StatusOr<ResolvedLayer> ResolveLayer(const ConvSpec& spec);

// OK when the Winograd path runs `layer` (2-D, 3x3 kernel, stride and dilation
// 1, one group, zero padding); else INVALID_ARGUMENT naming `algorithm`, what it
// requires and what the layer has. The server uses it to resolve kAuto layers
// of a model loaded with the fast precision setting.
absl::Status CheckWinograd(const ResolvedLayer& layer);

// Resolves `layer` against `input_shape` (the full tensor shape, batch and
// channels included, in the layer's data layout): pads, output extents, and
// a check that every element count, byte size and FLOP count fits.
absl::StatusOr<ConvGeometry> ResolveGeometry(const ResolvedLayer& layer,
                                             const std::vector<int64_t>& input_shape);

// Both steps at once, for callers that hold a ConvSpec only.
absl::StatusOr<ConvGeometry> ResolveGeometry(const ConvSpec& spec,
                                             const std::vector<int64_t>& input_shape);

// The (begin, end) pads `preset` gives an axis of `input` cells with
// `stride` and window `span` (kExplicit: (0, 0), the pads are the user's).
// REQUIRES: input, stride, span >= 1. Never overflows.
//   kValid: (0, 0).
//   kSameUpper / kSameLower: output ceil(input / stride), total pad
//     max(0, (output - 1) * stride + span - input), the odd cell at the end
//     (upper) or at the beginning (lower).
//   kCausal: (span - 1, 0), i.e. d * (k - 1) before the signal.
std::pair<int64_t, int64_t> PresetPads(PaddingPreset preset, int64_t input, int64_t stride,
                                       int64_t span);

// The output tensor shape of `geometry`, in its data layout and spatial rank.
std::vector<int64_t> OutputShape(const ConvGeometry& geometry);

}  // namespace convserve

#endif  // CONVSERVE_CORE_GEOMETRY_H_
