// gemm_1x1_path.h: the pointwise path of the fast operator: unpadded 1x1 layers with one group on
// channels-first tensors, run as a plain GEMM of packed weights by input rows.
//
// An unpadded 1x1 layer on channels-first tensors is a plain GEMM per image
// (output rows = weights x input rows): with stride 1 it runs without any
// reorder or indirection, written straight to the output; with a larger stride
// each work item first gathers its input pixels into a contiguous per-thread
// panel (about 1 MiB at most: up to 256 pixels x C_in floats, at least one tile).
//
// Internal to core/fast/: include only from its sources.
#ifndef CONVSERVE_CORE_FAST_GEMM_1X1_PATH_H_
#define CONVSERVE_CORE_FAST_GEMM_1X1_PATH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "core/fast/fast_conv.h"
#include "core/geometry.h"
#include "core/stop_token.h"
#include "core/ukernels/ukernels.h"

namespace convserve {
namespace kernels {

// Packed weights of one 1x1 layer for the direct GEMM, and the tile that runs them.
// Thread-safety: immutable after construction; Run() may be called concurrently.
class Gemm1x1Path {
 public:
  // True when a layer gets this path at all (for the geometries Handles() accepts): a 1x1
  // kernel and one group.
  static bool Fits(const ResolvedLayer& layer);

  // Chooses the tile for `isa` and packs the weights.
  // REQUIRES: Fits(layer); CpuSupports(isa); `layer` came from ResolveLayer(); weight and bias hold
  // the element counts ConvOperator::Create checked.
  Gemm1x1Path(const ResolvedLayer& layer, absl::Span<const float> weight,
              absl::Span<const float> bias, Isa isa);

  // The micro-kernel's name, e.g. "f32-gemm-6x16-avx2-fma".
  const std::string& kernel_name() const { return kernel_name_; }

  // True when this path runs `g`: channels-first tensors and no padding.
  bool Handles(const ConvGeometry& g) const;

  // Runs the layer from `input` to `output` (channels-first, g.input_elements() and
  // g.output_elements() floats), on the calling thread's TBB arena.
  // REQUIRES: Handles(g); `g` came from ResolveGeometry() on the constructor's layer.spec.
  // Skips the work items left once `stop` asks to stop (the output is then incomplete: the
  // caller checks `stop` after the run).
  void Run(const ConvGeometry& g, const float* input, float* output, const StopToken& stop) const;

 private:
  void Pack(const ResolvedLayer& layer, absl::Span<const float> weight,
            absl::Span<const float> bias, Isa isa);

  ukernels::F32GemmFn gemm_ = nullptr;
  int64_t mr_ = 0;
  int64_t nr_ = 0;
  int64_t block_floats_ = 0;
  std::string kernel_name_;
  std::vector<float> packed_;
};

}  // namespace kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_FAST_GEMM_1X1_PATH_H_
