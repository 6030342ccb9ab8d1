// dwconv_path.h: the depthwise path of the fast operator (one input channel per output channel):
// its weight packing and run.
//
// Depthwise layers are memory-bound: a channels-last view of the input (conv_input.h) is read
// once per tap with vectors along channels; interior pixels of an output row read through row
// pointers and fixed steps, only border pixels through an indirection buffer.
//
// Internal to core/fast/: include only from its sources.
#ifndef CONVSERVE_CORE_FAST_DWCONV_PATH_H_
#define CONVSERVE_CORE_FAST_DWCONV_PATH_H_

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

// Packed weights of one depthwise layer and the kernels (ymm or zmm) that run them.
// Thread-safety: immutable after construction; Run() may be called concurrently.
class DwconvPath {
 public:
  // Picks `isa`'s kernels and packs the weights. REQUIRES: CpuSupports(isa); `layer` came from
  // ResolveLayer() and has one input and one output channel per group; weight and bias hold the
  // element counts ConvOperator::Create checked.
  DwconvPath(const ResolvedLayer& layer, absl::Span<const float> weight,
             absl::Span<const float> bias, Isa isa);

  // The micro-kernel's name, "f32-dwconv-nhwc-avx2-fma" or "f32-dwconv-nhwc-avx512f".
  const std::string& kernel_name() const { return kernel_name_; }

  // Runs the layer on `view` (PrepareInput(g, input, /*merges_kw=*/false, ...)) into `output`
  // (g.output_elements() floats in g.data_layout), on the calling thread's TBB arena.
  // REQUIRES: `g` came from ResolveGeometry() on the constructor's layer.spec.
  // Skips the work items left once `stop` asks to stop (the output is then incomplete: the
  // caller checks `stop` after the run).
  void Run(const ConvGeometry& g, const InputView& view, float* output,
           const StopToken& stop) const;

 private:
  void Pack(const ResolvedLayer& layer, absl::Span<const float> weight,
            absl::Span<const float> bias);

  const int64_t taps_;
  std::string kernel_name_;
  // Border pixels (through an indirection buffer) and interior runs (row pointers).
  decltype(&ukernels::f32_dwconv_nhwc_avx2_fma) dwconv_ = nullptr;
  decltype(&ukernels::f32_dwconv_rows_nhwc_avx2_fma) dwconv_rows_ = nullptr;
  PackedFloats packed_;  // 64-byte aligned (common.h).
};

}  // namespace kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_FAST_DWCONV_PATH_H_
