// fast_conv.h: the fast (AVX2 + FMA, optionally AVX-512F) convolution operator.
//
// One design covers every layer ConvSpec describes: an indirect GEMM over a
// channels-last view of the input. For each tile of output pixels the
// operator writes a small indirection buffer (a pointer per pixel and kernel
// tap to the input pixel's channels, or to a zero row for zero padding); the
// micro-kernel (core/ukernels/) multiplies those rows by weights packed once
// at creation. Padding modes, strides, dilation, groups and 1/2/3-D all
// reduce to which pointer a tap gets, so borders need no padded copy.
// Depthwise layers (one input channel per output channel) use their own,
// memory-bound kernel over the same indirection.
//
// Unpadded 1x1 layers on channels-first tensors skip all of that: they are a
// plain GEMM of packed weights by input rows, written straight to the output.
//
// Memory per Run(): a channels-last copy of the input when the input is
// channels-first (or channels-last with W padding and < 32 channels); per
// thread, kept for the thread's life and bounded by the layer, not by the
// input size: one pixel block's indirection (96 x taps pointers), one block of
// output (96 pixels x <= 512 channels floats) and, for strided 1x1 layers, a
// panel of about 1 MiB at most (up to 256 pixels x C_in floats, at least one tile).
//
// Channels-first tensors are otherwise reordered per call: the input into a
// channels-last copy (with the W padding materialised, so that the Kw taps of
// a pixel are one contiguous run and merge into the GEMM's K), the output
// through a per-thread block transposed into place.
#ifndef CONVSERVE_CORE_FAST_FAST_CONV_H_
#define CONVSERVE_CORE_FAST_FAST_CONV_H_

#include <cstdint>
#include <memory>

#include "absl/types/span.h"
#include "core/conv.h"
#include "core/conv_spec.h"

namespace convserve {
namespace kernels {

// Instruction sets the fast path has kernels for, narrowest first.
enum class Isa {
  kAvx2Fma,  // ymm kernels; the baseline every fast layer can run on.
  kAvx512f,  // zmm GEMM kernels (depthwise and narrow groups stay on AVX2).
};

// True when this CPU runs AVX2 and FMA instructions.
bool CpuHasAvx2Fma();

// True when this CPU runs `isa`'s kernels.
bool CpuSupports(Isa isa);

// The widest ISA this CPU supports, capped by the environment variable
// CONVSERVE_MAX_ISA ("avx2" keeps the AVX2 kernels, e.g. to compare ISAs).
// REQUIRES: CpuHasAvx2Fma().
Isa BestIsa();

// REQUIRES: CpuSupports(isa); `spec` passed WeightShape(); weight and bias
// hold the element counts ConvOperator::Create checked.
std::unique_ptr<ConvOperator> CreateFastConvOperator(const ConvSpec& spec,
                                                     absl::Span<const float> weight,
                                                     absl::Span<const float> bias, Isa isa);

}  // namespace kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_FAST_FAST_CONV_H_
