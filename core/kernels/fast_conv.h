// fast_conv.h: the AVX2 + FMA convolution operator.
//
// One design covers every layer ConvSpec describes: an indirect GEMM over a
// channels-last view of the input. For each tile of output pixels the
// operator writes a small indirection buffer (a pointer per pixel and kernel
// tap to the input pixel's channels, or to a zero row for zero padding); the
// micro-kernel (micro_kernels.h) multiplies those rows by weights packed once
// at creation. Padding modes, strides, dilation, groups and 1/2/3-D all
// reduce to which pointer a tap gets, so borders need no padded copy.
// Depthwise layers (one input channel per output channel) use their own,
// memory-bound kernel over the same indirection.
//
// Channels-first tensors are reordered per call: the input into a
// channels-last copy (with the W padding materialised, so that the Kw taps of
// a pixel are one contiguous run and merge into the GEMM's K), the output
// through a per-thread block transposed into place.
#ifndef CONVSERVE_CORE_KERNELS_FAST_CONV_H_
#define CONVSERVE_CORE_KERNELS_FAST_CONV_H_

#include <cstdint>
#include <memory>

#include "absl/types/span.h"
#include "core/conv.h"
#include "core/conv_spec.h"

namespace convserve {
namespace kernels {

// True when this CPU runs AVX2 and FMA instructions.
bool CpuHasAvx2Fma();

// REQUIRES: CpuHasAvx2Fma(); `spec` passed WeightShape(); weight and bias hold
// the element counts ConvOperator::Create checked.
std::unique_ptr<ConvOperator> CreateAvx2ConvOperator(const ConvSpec& spec,
                                                     absl::Span<const float> weight,
                                                     absl::Span<const float> bias);

}  // namespace kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_KERNELS_FAST_CONV_H_
