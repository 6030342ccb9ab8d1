// igemm_path.h: the indirect-GEMM path of the fast operator: its tile choice, weight packing and
// run over any dense or grouped layer (every layer but depthwise ones).
//
// One design covers every layer ConvSpec describes: for each tile of output pixels the path writes
// a small indirection buffer (a pointer per pixel and kernel tap to the input pixel's channels, or
// to a zero row for zero padding, see conv_input.h); the micro-kernel (F32IgemmFn, ukernels.h)
// multiplies those rows by weights packed once at creation. Padding modes, strides, dilation,
// groups and 1/2/3-D all reduce to which pointer a tap gets, so borders need no padded copy.
//
// Internal to core/fast/: include only from its sources.
#ifndef CONVSERVE_CORE_FAST_IGEMM_PATH_H_
#define CONVSERVE_CORE_FAST_IGEMM_PATH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "core/fast/common.h"
#include "core/fast/conv_input.h"
#include "core/fast/fast_conv.h"
#include "core/geometry.h"
#include "core/stop_token.h"
#include "core/ukernels/ukernels.h"

namespace convserve {
namespace kernels {

// Packed weights of one layer for the indirect GEMM, and the tile that runs them.
// Thread-safety: immutable after construction; Run() may be called concurrently.
class IgemmPath {
 public:
  // Chooses the tile for the layer's channels per group on `isa` and packs the weights.
  // REQUIRES: CpuSupports(isa); `layer` came from ResolveLayer(); weight and bias hold the element
  // counts ConvOperator::Create checked.
  IgemmPath(const ResolvedLayer& layer, absl::Span<const float> weight,
            absl::Span<const float> bias, Isa isa);

  // The micro-kernel's name, e.g. "f32-igemm-6x16-avx2-fma".
  const std::string& kernel_name() const { return kernel_name_; }

  // Whether Run() wants a view that merges the Kw taps (PrepareInput's
  // `merges_kw`): not for the two-group kernel, which reads interleaved
  // channels-last pixels (in place when the input is channels-last).
  bool merges_kw() const { return groups_per_block_ == 1; }

  // Runs the layer on `view` (PrepareInput(g, input, /*merges_kw=*/true, ...)) into `output`
  // (g.output_elements() floats in g.data_layout), on the calling thread's TBB arena.
  // REQUIRES: `g` came from ResolveGeometry() on the constructor's layer.spec.
  // Skips the work items left once `stop` asks to stop (the output is then incomplete: the
  // caller checks `stop` after the run).
  void Run(const ConvGeometry& g, const InputView& view, float* output,
           const StopToken& stop) const;

 private:
  void Pack(const ResolvedLayer& layer, absl::Span<const float> weight,
            absl::Span<const float> bias, Isa isa);
  void PackGroupPairs(const ResolvedLayer& layer, absl::Span<const float> weight,
                      absl::Span<const float> bias);

  const int64_t groups_;
  const int64_t in_per_group_;
  const int64_t out_per_group_;
  const int64_t taps_;
  // Tile (mr_ pixels x nr_ channels) and packed block size; a block covers
  // groups_per_block_ groups (2 for f32_gconv_g8_3x16_avx512f, else 1).
  int64_t groups_per_block_ = 1;
  int64_t nr_ = 0;
  int64_t mr_ = 0;
  int64_t blocks_per_group_ = 0;
  int64_t block_floats_ = 0;
  ukernels::F32IgemmFn igemm_ = nullptr;
  std::string kernel_name_;
  PackedFloats packed_;  // 64-byte aligned (common.h).
  // Tap offsets of the geometries run last (Run() is const; the cache locks).
  mutable TapOffsetCache tap_offsets_;
};

}  // namespace kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_FAST_IGEMM_PATH_H_
