// fast_conv.cc: the fast operator: picks the path for a layer and geometry and runs it.
#include "core/fast/fast_conv.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/fast/common.h"
#include "core/fast/conv_input.h"
#include "core/fast/dwconv_path.h"
#include "core/fast/gemm_1x1_path.h"
#include "core/fast/igemm_path.h"
#include "core/fast/winograd_path.h"
#include "tbb/task_arena.h"

namespace convserve {
namespace kernels {
namespace {

// Scratch memory one Run() may allocate beyond a copy of its input (see
// ScratchBytes()); larger geometries are refused.
constexpr int64_t kMaxScratchBytes = int64_t{256} << 20;

// An upper bound of the scratch memory Run() allocates beyond a reordered
// copy of the input itself (which the caller already budgets as input): the
// per-axis tap tables, zero rows, the copy's W padding and, per thread, the
// indirection and output blocks. It grows with kernel and output extents,
// not only with the tensors, so Run() refuses geometries where it is large.
int64_t ScratchBytes(const ConvGeometry& g, int64_t taps) {
  constexpr int64_t kPointer = sizeof(void*), kFloat = sizeof(float);
  const int64_t threads = tbb::this_task_arena::max_concurrency();
  const int64_t pad_w = g.pad_begin[2] + g.pad_end[2];
  const int64_t row_pixels = g.input[2] + (PaddingFitsInCopy(g) ? pad_w : 0);
  int64_t bytes = 0;
  for (int a = 0; a < 3; ++a) bytes += 2 * kPointer * g.output[a] * g.kernel[a];
  if (PaddingFitsInCopy(g)) {
    bytes += kFloat * g.batch * g.input[0] * g.input[1] * pad_w * g.in_channels;
  }
  bytes += kFloat * (row_pixels + g.kernel[2]) * g.in_channels + 64;  // zero rows
  const int64_t pixels = std::max(kPixelBlock + 32, kDepthwisePixelBlock);
  const int64_t per_thread =
      kPointer * pixels * taps + kFloat * pixels * std::max(kMaxBlockChannels, g.in_channels);
  return bytes + threads * per_thread;
}

// Holds the path(s) a layer uses: depthwise layers the depthwise path; layers
// whose algorithm is kWinograd the Winograd path (when it fits); every other
// layer the indirect GEMM and, for 1x1 layers with one group, also the
// pointwise GEMM, which runs the geometries it handles (Gemm1x1Path::Handles()).
class FastConvOperator final : public ConvOperator {
 public:
  FastConvOperator(const ResolvedLayer& layer, absl::Span<const float> weight,
                   absl::Span<const float> bias, Isa isa)
      : ConvOperator(layer), taps_(layer.kernel_size()) {
    const bool depthwise =
        layer.in_channels_per_group() == 1 && layer.out_channels_per_group() == 1;
    if (depthwise) {
      dwconv_.emplace(layer, weight, bias, isa);
    } else if (layer.spec.algorithm == ConvAlgorithm::kWinograd && WinogradPath::Fits(layer)) {
      winograd_.emplace(layer, weight, bias, isa);
    } else {
      igemm_.emplace(layer, weight, bias, isa);
      if (Gemm1x1Path::Fits(layer)) gemm_1x1_.emplace(layer, weight, bias, isa);
    }
  }

  std::string KernelName(const ConvGeometry& g) const override {
    if (winograd_) return winograd_->KernelName(g);
    if (UsesGemm1x1(g)) return gemm_1x1_->kernel_name();
    return dwconv_ ? dwconv_->kernel_name() : igemm_->kernel_name();
  }

  using ConvOperator::Run;
  absl::Status Run(const ConvGeometry& g, const float* input, float* output,
                   const StopToken& stop) const override {
    std::unique_ptr<float[]> storage;  // The reordered input, when there is one.
    if (stop.StopRequested()) return StoppedError();
    if (winograd_) return winograd_->Run(g, input, output, stop);
    if (UsesGemm1x1(g)) {
      gemm_1x1_->Run(g, input, output, stop);
      return stop.StopRequested() ? StoppedError() : absl::OkStatus();
    }
    if (const int64_t scratch = ScratchBytes(g, taps_); scratch > kMaxScratchBytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("layer: the kernels would need ", scratch,
                       " bytes of scratch memory for this geometry "
                       "(kernel or output extents far beyond the input's), above the limit of ",
                       kMaxScratchBytes, " bytes"));
    }
    const InputView view =
        PrepareInput(g, input, /*merges_kw=*/igemm_ && igemm_->merges_kw(), &storage);
    if (stop.StopRequested()) return StoppedError();
    if (dwconv_) {
      dwconv_->Run(g, view, output, stop);
    } else {
      igemm_->Run(g, view, output, stop);
    }
    // Skipped work items leave the output incomplete; a stop that came after
    // the last item still reports CANCELLED, as the caller asked.
    return stop.StopRequested() ? StoppedError() : absl::OkStatus();
  }

 private:
  bool UsesGemm1x1(const ConvGeometry& g) const { return gemm_1x1_ && gemm_1x1_->Handles(g); }

  const int64_t taps_;
  // Exactly one of dwconv_, winograd_ and igemm_ is set; gemm_1x1_ only beside igemm_.
  std::optional<DwconvPath> dwconv_;
  std::optional<IgemmPath> igemm_;
  std::optional<Gemm1x1Path> gemm_1x1_;
  std::optional<WinogradPath> winograd_;
};

}  // namespace

bool CpuHasAvx2Fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

bool CpuSupports(Isa isa) {
  switch (isa) {
    case Isa::kAvx2Fma:
      return CpuHasAvx2Fma();
    case Isa::kAvx512f:
      return CpuHasAvx2Fma() && __builtin_cpu_supports("avx512f");
  }
  return false;
}

Isa BestIsa() {
  const char* cap = std::getenv("CONVSERVE_MAX_ISA");
  if (cap != nullptr && std::string(cap) == "avx2") return Isa::kAvx2Fma;
  return CpuSupports(Isa::kAvx512f) ? Isa::kAvx512f : Isa::kAvx2Fma;
}

std::unique_ptr<ConvOperator> CreateFastConvOperator(const ResolvedLayer& layer,
                                                     absl::Span<const float> weight,
                                                     absl::Span<const float> bias, Isa isa) {
  return std::make_unique<FastConvOperator>(layer, weight, bias, isa);
}

}  // namespace kernels
}  // namespace convserve
