// fast_conv.h: the fast (AVX2 + FMA, optionally AVX-512F) convolution operator: which ISA this
// CPU runs, and the factory of the operator that picks a path per layer and geometry.
//
// This is the operator level of the operator / micro-kernel split: it chooses a path and a tile,
// packs the weights once at creation and splits each run over threads, so that the micro-kernels
// (core/ukernels/) only compute. The paths, one file each:
//   igemm_path.h    indirect GEMM over a channels-last view of the input (every layer but
//                   depthwise ones): padding modes, strides, dilation, groups and 1/2/3-D all
//                   reduce to which pointer a kernel tap gets, so borders need no padded copy;
//   dwconv_path.h   depthwise layers (one input channel per output channel), memory-bound;
//   gemm_1x1_path.h unpadded 1x1 layers with one group on channels-first tensors: a plain GEMM of
//                   packed weights by input rows, written straight to the output;
//   winograd_path.h 3x3 stride-1 layers whose algorithm is kWinograd: Winograd F(4x4, 3x3) or
//                   F(2x2, 3x3), transforms around alpha^2 GEMMs of pre-transformed weights.
// conv_input.h holds the reorder and indirection the first two share, common.h the rest.
//
// Memory per Run(): a channels-last copy of the input when the input is
// channels-first (or channels-last with W padding and < 32 channels); per
// thread, kept for the thread's life and bounded by the layer, not by the
// input size: one pixel block's indirection (96 x taps pointers), one block of
// output (96 pixels x <= 512 channels floats) and, for strided 1x1 layers, a
// panel of about 1 MiB at most (up to 256 pixels x C_in floats, at least one tile).
// Per operator, beside its packed weights: the GEMM path's tap offsets of the
// last few geometries it ran (TapOffsetCache, conv_input.h: at most 4 MiB).
//
// Channels-first tensors are otherwise reordered per call: the input into a
// channels-last copy (with the W padding materialised, so that the Kw taps of
// a pixel are one contiguous run and merge into the GEMM's K), the output
// through a per-thread block transposed into place.
//
// Thread-safety: as ConvOperator (conv.h): Run() is const and may be called concurrently.
#ifndef CONVSERVE_CORE_FAST_FAST_CONV_H_
#define CONVSERVE_CORE_FAST_FAST_CONV_H_

#include <cstdint>
#include <memory>

#include "absl/types/span.h"
#include "core/conv.h"
#include "core/geometry.h"

namespace convserve {
// The fast operator's namespace (core/conv.cc calls it as kernels::).
namespace kernels {

// Instruction sets the fast path has kernels for, narrowest first.
enum class Isa {
  kAvx2Fma,  // ymm kernels; the baseline every fast layer can run on.
  kAvx512f,  // zmm GEMM, depthwise and 8-channel-group kernels (other narrow groups: AVX2).
};

// True when this CPU runs AVX2 and FMA instructions.
bool CpuHasAvx2Fma();

// True when this CPU runs `isa`'s kernels.
bool CpuSupports(Isa isa);

// The widest ISA this CPU supports, capped by the environment variable
// CONVSERVE_MAX_ISA ("avx2" keeps the AVX2 kernels, e.g. to compare ISAs).
// REQUIRES: CpuHasAvx2Fma().
Isa BestIsa();

// The fast operator for `layer`, on `isa`'s kernels.
// REQUIRES: CpuSupports(isa); weight and bias hold the element counts
// ConvOperator::Create checked.
std::unique_ptr<ConvOperator> CreateFastConvOperator(const ResolvedLayer& layer,
                                                     absl::Span<const float> weight,
                                                     absl::Span<const float> bias, Isa isa);

}  // namespace kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_FAST_FAST_CONV_H_
