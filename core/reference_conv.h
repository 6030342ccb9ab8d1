// reference_conv.h: the scalar reference convolution.
//
// A plainly correct implementation of every layer ConvSpec can describe,
// written for clarity, not speed: one output element at a time, accumulated
// in double, padding resolved through the same index mapping as the
// frameworks. It is the oracle every fast kernel is tested against.
#ifndef CONVSERVE_CORE_REFERENCE_CONV_H_
#define CONVSERVE_CORE_REFERENCE_CONV_H_

#include <cstdint>

#include "core/conv_spec.h"

namespace convserve {

// Maps a coordinate of the padded axis (in [-pad_begin, n + pad_end)) to the
// input cell it reads, or -1 for a zero cell. REQUIRES: the pads fit the mode
// (Validate() checks: reflect pad <= n - 1, circular pad <= n).
int64_t SourceIndex(PaddingMode mode, int64_t coordinate, int64_t n);

// REQUIRES: `geometry` came from Validate()/ResolveGeometry(); input, weight,
// output hold the element counts geometry states (bias: C_out values or null
// when geometry.bias is false), in geometry's layouts.
void ReferenceConv(const ConvGeometry& geometry, const float* input, const float* weight,
                   const float* bias, float* output);

}  // namespace convserve

#endif  // CONVSERVE_CORE_REFERENCE_CONV_H_
