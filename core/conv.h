// conv.h: the convolution operator the service runs.
//
// A ConvOperator owns one layer's weights, packed once at creation into the
// layout of the kernel chosen for this CPU, and runs that layer on any input
// shape the layer accepts. This is the "operator" side of the operator /
// micro-kernel split: it validates, chooses and packs; kernels only compute.
//
// Thread-safety: Run() is const and may be called concurrently. Run() uses
// the oneTBB arena of the calling thread for its parallelism, so the caller
// decides how many cores one call may use (tbb::task_arena::execute).
#ifndef CONVSERVE_CORE_CONV_H_
#define CONVSERVE_CORE_CONV_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/conv_spec.h"
#include "core/geometry.h"
#include "core/stop_token.h"

namespace convserve {

// Which implementation runs the layer.
enum class KernelPath {
  kAuto,       // the fastest path for this CPU and layer.
  kReference,  // the scalar oracle (reference_conv.h).
};

// The kernel tiers ConvOperator runs on this CPU, widest first, as named in
// kernel names: e.g. {"avx512f", "avx2"}, {"avx2"}, or {"reference"} on a CPU
// without AVX2 + FMA. CONVSERVE_MAX_ISA=avx2 leaves out avx512f.
std::vector<std::string> KernelTiers();

// What ConvOperator::Run() returns when its StopToken stopped it: CANCELLED.
absl::Status StoppedError();

class ConvOperator {
 public:
  // `weight` holds the weight tensor in the layer's weight layout
  // (layer.weight_elements() values, shaped layer.weight_shape); `bias`
  // holds C_out values when the layer has a bias, and must be empty
  // otherwise. Both are copied (packed); the caller keeps its buffers.
  static absl::StatusOr<std::unique_ptr<ConvOperator>> Create(const ResolvedLayer& layer,
                                                              absl::Span<const float> weight,
                                                              absl::Span<const float> bias,
                                                              KernelPath path = KernelPath::kAuto);
  // The same for a layer not resolved yet (ResolveLayer() first).
  static absl::StatusOr<std::unique_ptr<ConvOperator>> Create(const ConvSpec& spec,
                                                              absl::Span<const float> weight,
                                                              absl::Span<const float> bias,
                                                              KernelPath path = KernelPath::kAuto);

  virtual ~ConvOperator() = default;

  const ResolvedLayer& layer() const { return layer_; }
  const ConvSpec& spec() const { return layer_.spec; }

  // Name of the kernel that runs `geometry` (e.g. "f32-conv2d-direct-nchw-6x16-avx2").
  virtual std::string KernelName(const ConvGeometry& geometry) const = 0;

  // Runs the layer. REQUIRES: `geometry` came from ResolveGeometry(layer(), ...);
  // `input` holds geometry.input_elements() floats and `output` has room for
  // geometry.output_elements(), both in spec().data_layout.
  absl::Status Run(const ConvGeometry& geometry, const float* input, float* output) const {
    return Run(geometry, input, output, StopToken());
  }

  // The same, stopping early once `stop` asks to (checked between work items
  // and steps, see stop_token.h): CANCELLED then, with `output` incomplete.
  // A token that never stops changes nothing, not even the output's bits.
  virtual absl::Status Run(const ConvGeometry& geometry, const float* input, float* output,
                           const StopToken& stop) const = 0;

  // Convenience: resolves the geometry for `input_shape`, checks sizes and
  // runs. `output` is resized to the output element count.
  absl::Status Run(const std::vector<int64_t>& input_shape, absl::Span<const float> input,
                   std::vector<float>* output, std::vector<int64_t>* output_shape) const;

 protected:
  explicit ConvOperator(const ResolvedLayer& layer) : layer_(layer) {}

 private:
  ResolvedLayer layer_;
};

}  // namespace convserve

#endif  // CONVSERVE_CORE_CONV_H_
