// gemm_1x1_path.cc: the pointwise path: tile choice, weight packing and the parallel run.
#include "core/fast/gemm_1x1_path.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/fast/common.h"
#include "tbb/blocked_range.h"
#include "tbb/parallel_for.h"
#include "tbb/task_arena.h"

namespace convserve {
namespace kernels {

bool Gemm1x1Path::Fits(const ResolvedLayer& layer) {
  return layer.kernel_size() == 1 && layer.spec.groups == 1;
}

Gemm1x1Path::Gemm1x1Path(const ResolvedLayer& layer, absl::Span<const float> weight,
                         absl::Span<const float> bias, Isa isa) {
  Pack(layer, weight, bias, isa);
}

bool Gemm1x1Path::Handles(const ConvGeometry& g) const {
  if (g.data_layout != DataLayout::kChannelsFirst) return false;
  for (int a = 0; a < 3; ++a) {
    if (g.pad_begin[a] != 0 || g.pad_end[a] != 0) return false;
  }
  return true;
}

// Per block of mr_ output channels: mr_ bias values,
// then [input channel][mr_] weights (rows past C_out zero).
void Gemm1x1Path::Pack(const ResolvedLayer& layer, absl::Span<const float> weight,
                       absl::Span<const float> bias, Isa isa) {
  if (isa == Isa::kAvx512f) {
    mr_ = 12, nr_ = 32, gemm_ = &ukernels::f32_gemm_12x32_avx512f;
    kernel_name_ = "f32-gemm-12x32-avx512f";
  } else {
    mr_ = 6, nr_ = 16, gemm_ = &ukernels::f32_gemm_6x16_avx2_fma;
    kernel_name_ = "f32-gemm-6x16-avx2-fma";
  }
  const int64_t channels = layer.spec.in_channels;
  const int64_t blocks = CeilDiv(layer.spec.out_channels, mr_);
  block_floats_ = mr_ * (1 + channels);
  packed_.assign(static_cast<size_t>(blocks * block_floats_), 0.0f);
  for (int64_t oc = 0; oc < layer.spec.out_channels; ++oc) {
    float* block = packed_.data() + oc / mr_ * block_floats_;
    const int64_t row = oc % mr_;
    if (layer.spec.bias) block[row] = bias[oc];
    for (int64_t ic = 0; ic < channels; ++ic) {
      block[mr_ * (1 + ic) + row] = WeightAt(layer, weight, 1, oc, ic, 0);
    }
  }
}

void Gemm1x1Path::Run(const ConvGeometry& g, const float* input, float* output,
                      const StopToken& stop) const {
  const bool can_stop = stop.CanStop();
  const int64_t channels = g.in_channels;
  // Pixels per item: the item's input panel (C_in x pixels floats) stays in
  // L2, and a strided layer's gathered copy of it stays under 1 MiB.
  const int64_t pixels_per_item =
      std::clamp<int64_t>((int64_t{1} << 18) / channels / nr_ * nr_, nr_, 256);
  const int64_t out_channels = g.out_channels;
  const int64_t spatial = g.output_spatial_size();
  const Epilogue epilogue = EpilogueOf(g.activation);
  const int64_t pixel_chunks = CeilDiv(spatial, pixels_per_item);
  const int64_t channel_blocks = CeilDiv(out_channels, mr_);
  const int64_t threads = tbb::this_task_arena::max_concurrency();
  const int64_t base_items = g.batch * pixel_chunks;
  int64_t splits = 1;
  if (base_items < kItemsPerThread * threads) {
    splits = std::min(channel_blocks, CeilDiv(kItemsPerThread * threads, base_items));
  }
  const int64_t chunk = CeilDiv(channel_blocks, splits);
  splits = CeilDiv(channel_blocks, chunk);
  const bool strided = g.stride[0] != 1 || g.stride[1] != 1 || g.stride[2] != 1;
  const int64_t in_spatial = g.input_spatial_size();
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, base_items * splits), [&](const auto& range) {
    Workspace& workspace = ThreadWorkspace();
    for (int64_t item = range.begin(); item < range.end(); ++item) {
      if (can_stop && stop.StopRequested()) return;  // between work items only
      const int64_t n = item / (pixel_chunks * splits);
      const int64_t p0 = item / splits % pixel_chunks * pixels_per_item;
      const int64_t p1 = std::min(spatial, p0 + pixels_per_item);
      const int64_t ob0 = item % splits * chunk;
      const int64_t ob1 = std::min(channel_blocks, ob0 + chunk);
      // b(ic, p) = image[ic * b_stride + p]: the input rows, or the panel.
      const float* image = input + n * channels * in_spatial;
      int64_t b_stride = in_spatial;
      int64_t b_origin = 0;  // Pixel at image[0] (the panel starts at p0).
      if (strided) {
        const int64_t count = p1 - p0;
        workspace.block.resize(static_cast<size_t>(channels * count));
        float* panel = workspace.block.data();
        // Source offsets once per pixel, then channel by channel so
        // that reads walk along input rows.
        workspace.offsets.resize(static_cast<size_t>(count));
        int64_t* offsets = workspace.offsets.data();
        for (int64_t q = 0; q < count; ++q) {
          const int64_t p = p0 + q;
          const int64_t ow = p % g.output[2];
          const int64_t oh = p / g.output[2] % g.output[1];
          const int64_t od = p / (g.output[2] * g.output[1]);
          offsets[q] =
              (od * g.stride[0] * g.input[1] + oh * g.stride[1]) * g.input[2] + ow * g.stride[2];
        }
        for (int64_t ic = 0; ic < channels; ++ic) {
          const float* source = image + ic * in_spatial;
          float* target = panel + ic * count;
          for (int64_t q = 0; q < count; ++q) target[q] = source[offsets[q]];
        }
        image = panel;
        b_stride = count;
        b_origin = p0;
      }
      // Pixel tiles outside, channel blocks inside: one tile's input
      // columns (C_in x NR floats) stay in L1 while the packed weights
      // stream through it contiguously; the other order re-reads every
      // input row at a large stride for each block of MR channels.
      for (int64_t p = p0; p < p1; p += nr_) {
        const int64_t nc = std::min(nr_, p1 - p);
        for (int64_t ob = ob0; ob < ob1; ++ob) {
          const float* packed = packed_.data() + ob * block_floats_;
          const int64_t oc0 = ob * mr_;
          const int64_t mr = std::min(mr_, out_channels - oc0);
          float* c = output + (n * out_channels + oc0) * spatial + p;
          gemm_(mr, nc, channels, packed + mr_, packed, image + (p - b_origin), b_stride, c,
                spatial, epilogue.lo, epilogue.hi);
          if (epilogue.per_element) ActivateTile(g, mr, nc, c, spatial);
        }
      }
    }
  });
}

}  // namespace kernels
}  // namespace convserve
