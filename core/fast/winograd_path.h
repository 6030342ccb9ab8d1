// winograd_path.h: the Winograd path of the fast operator: 2-D 3x3 layers with stride 1,
// dilation 1, one group and zero padding, on layers whose algorithm is kWinograd.
//
// F(M x M, 3x3) computes an M x M block of outputs of one channel pair from an alpha x alpha
// (alpha = M + 2) input tile with alpha^2 multiplies instead of 9 M^2: with M = 4, 36 instead of
// 144. A run is, per block of tiles (one work item):
//   input transform  V[xi][ic][tile] = (B^T d B)[xi] of each tile's alpha x alpha input
//                    (zero outside the input: the layer's zero padding);
//   alpha^2 GEMMs    M[xi][oc][tile] = sum_ic U[xi][oc][ic] V[xi][ic][tile], on the packed GEMM
//                    micro-kernels of the pointwise path (U = G g G^T, transformed in double
//                    and packed once, at creation);
//   output transform y = A^T M A + bias, then the activation, written to the output.
// Both F(4x4, 3x3) and F(2x2, 3x3) are packed; each geometry runs the one with fewer GEMM
// lanes (F(2x2) only wins on small maps such as 7x7, where 4x4 tiles leave lanes empty).
//
// Numerics: every output of a tile is computed from the whole alpha x alpha input tile, and the
// transforms' coefficients (up to 8 in A^T, 5 in B^T, 1/24 in G for M = 4) grow the rounding
// error 10-50x over the direct path's. The bound is 1e-4 * S4 + 1e-5, with S4 the largest S (the
// convolution of |x|, |w|, |b|) over the 4x4 block of outputs holding the element; measured
// against PyTorch in float64 in tests/python/test_winograd.py (README "The core"). Infinite
// inputs may give NaN where direct convolution gives inf.
//
// Memory: the packed weights are (36 + 16) / 9 times the layer's weights; per call, a zero-padded
// channels-first copy of the input (kept per calling thread up to 8 MiB); per thread, one work
// item's V and M (36 x tiles x (C_in + C_out) floats, about 2 MiB, at least 16 tiles).
//
// Internal to core/fast/: include only from its sources.
#ifndef CONVSERVE_CORE_FAST_WINOGRAD_PATH_H_
#define CONVSERVE_CORE_FAST_WINOGRAD_PATH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/fast/common.h"
#include "core/fast/fast_conv.h"
#include "core/geometry.h"
#include "core/stop_token.h"
#include "core/ukernels/ukernels.h"

namespace convserve {
namespace kernels {

// Packed transformed weights of one 3x3 layer, and the kernels that run them.
// Thread-safety: immutable after construction; Run() may be called concurrently.
class WinogradPath {
 public:
  // True when this path runs `layer` (CheckWinograd() passes and one work
  // item's scratch stays bounded).
  static bool Fits(const ResolvedLayer& layer);

  // Transforms and packs the weights for `isa`'s kernels.
  // REQUIRES: Fits(layer); CpuSupports(isa); weight and bias hold the element
  // counts ConvOperator::Create checked.
  WinogradPath(const ResolvedLayer& layer, absl::Span<const float> weight,
               absl::Span<const float> bias, Isa isa);

  // E.g. "f32-winograd-4x4-3x3-gemm-12x32-avx512f".
  std::string KernelName(const ConvGeometry& g) const;

  // Runs the layer from `input` to `output` (g.data_layout, either layout),
  // on the calling thread's TBB arena, through a zero-padded copy of the
  // input. REQUIRES: `g` came from ResolveGeometry() on the constructor's
  // layer. Skips the work items left once `stop` asks to stop (CANCELLED);
  // RESOURCE_EXHAUSTED when the padded copy would be far larger than the
  // input (padding far beyond it).
  absl::Status Run(const ConvGeometry& g, const float* input, float* output,
                   const StopToken& stop) const;

 private:
  // One output tile size M, with its transforms and packed weights:
  // [alpha^2][C_out / MR blocks][C_in][MR] floats (rows past C_out zero).
  struct Variant {
    int m = 4;
    ukernels::F32WinogradInputFn input = nullptr;
    ukernels::F32WinogradOutputFn output = nullptr;
    PackedFloats packed;  // 64-byte aligned (common.h)
  };

  const Variant& Choose(const ConvGeometry& g) const;
  void Pack(const ResolvedLayer& layer, absl::Span<const float> weight, Variant* variant) const;

  ukernels::F32GemmFn gemm_ = nullptr;
  int64_t mr_ = 0;
  int64_t nr_ = 0;
  std::string gemm_name_;         // "gemm-12x32-avx512f"
  std::vector<float> bias_;       // C_out values (zeros without bias).
  std::vector<float> zero_bias_;  // mr_ zeros: the GEMMs add no bias.
  Variant f4_;                    // F(4x4, 3x3)
  Variant f2_;                    // F(2x2, 3x3)
};

}  // namespace kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_FAST_WINOGRAD_PATH_H_
