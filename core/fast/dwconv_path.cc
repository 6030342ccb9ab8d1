// dwconv_path.cc: the depthwise path: weight packing and the parallel run over output rows.
#include "core/fast/dwconv_path.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/fast/common.h"
#include "core/ukernels/ukernels.h"
#include "tbb/blocked_range.h"
#include "tbb/parallel_for.h"

namespace convserve {
namespace kernels {

DwconvPath::DwconvPath(const ResolvedLayer& layer, absl::Span<const float> weight,
                       absl::Span<const float> bias, Isa isa)
    : taps_(layer.kernel_size()) {
  if (isa == Isa::kAvx512f) {
    kernel_name_ = "f32-dwconv-nhwc-avx512f";
    dwconv_ = &ukernels::f32_dwconv_nhwc_avx512f;
    dwconv_rows_ = &ukernels::f32_dwconv_rows_nhwc_avx512f;
  } else {
    kernel_name_ = "f32-dwconv-nhwc-avx2-fma";
    dwconv_ = &ukernels::f32_dwconv_nhwc_avx2_fma;
    dwconv_rows_ = &ukernels::f32_dwconv_rows_nhwc_avx2_fma;
  }
  Pack(layer, weight, bias);
}

// Bias for every channel, then [tap][channel], channels padded to 16 (the
// micro-kernels' contract, either ISA).
void DwconvPath::Pack(const ResolvedLayer& layer, absl::Span<const float> weight,
                      absl::Span<const float> bias) {
  const int64_t channels = layer.spec.in_channels;
  const int64_t pad = ukernels::kDwconvChannelPad;
  const int64_t padded = CeilDiv(channels, pad) * pad;
  packed_.assign(static_cast<size_t>(padded * (1 + taps_)), 0.0f);
  for (int64_t c = 0; c < channels; ++c) {
    if (layer.spec.bias) packed_[c] = bias[c];
    for (int64_t tap = 0; tap < taps_; ++tap) {
      packed_[padded * (1 + tap) + c] = WeightAt(layer, weight, taps_, c, 0, tap);
    }
  }
}

// Work items are runs of up to kDepthwisePixelBlock output pixels of one
// output row. Interior pixels (every W tap inside the input row) read
// through row pointers and fixed steps; only the few border pixels of a row
// need an indirection buffer.
void DwconvPath::Run(const ConvGeometry& g, const InputView& view, float* output,
                     const StopToken& stop) const {
  const bool can_stop = stop.CanStop();
  const int64_t channels = g.in_channels;
  const int64_t out_spatial = g.output_spatial_size();
  const int64_t out_w = g.output[2];
  const bool channels_first = g.data_layout == DataLayout::kChannelsFirst;
  const Epilogue epilogue = EpilogueOf(g.activation);
  const int64_t row_floats = view.row_pixels * channels;
  // A whole zero row: rows of D/H zero padding are read like input rows.
  const std::vector<float> zero(static_cast<size_t>(row_floats + 8), 0.0f);
  const TapSources sources(g, view, g.kernel[2], zero.data());
  const std::vector<int64_t> source_d = AxisSources(g, 0, false);
  const std::vector<int64_t> source_h = AxisSources(g, 1, false);
  const int64_t stride_w = g.stride[2];
  const int64_t dilation_w = g.dilation[2];
  const int64_t kernel_w = g.kernel[2];
  // View column of output column ow's first tap: ow * stride_w + first_column.
  const int64_t first_column = view.w_padded ? 0 : -g.pad_begin[2];
  int64_t interior_begin = 0;
  int64_t interior_end = out_w;
  if (!view.w_padded) {
    while (interior_begin < out_w && interior_begin * stride_w + first_column < 0) {
      ++interior_begin;
    }
    while (interior_end > interior_begin &&
           (interior_end - 1) * stride_w + first_column + (kernel_w - 1) * dilation_w >=
               g.input[2]) {
      --interior_end;
    }
  }
  const int64_t row_taps = g.kernel[0] * g.kernel[1];
  const int64_t chunks_per_row = CeilDiv(out_w, kDepthwisePixelBlock);
  const int64_t out_rows = g.batch * g.output[0] * g.output[1];

  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, out_rows * chunks_per_row), [&](const auto& range) {
        Workspace& workspace = ThreadWorkspace();
        std::vector<const float*> row_inputs(static_cast<size_t>(row_taps));
        for (int64_t item = range.begin(); item < range.end(); ++item) {
          if (can_stop && stop.StopRequested()) return;  // between work items only
          const int64_t row = item / chunks_per_row;
          const int64_t c0 = item % chunks_per_row * kDepthwisePixelBlock;
          const int64_t c1 = std::min(out_w, c0 + kDepthwisePixelBlock);
          const int64_t n = row / (g.output[0] * g.output[1]);
          const int64_t oh = row % g.output[1];
          const int64_t od = row / g.output[1] % g.output[0];
          const int64_t p_row = (od * g.output[1] + oh) * out_w;  // Pixel of column 0.
          const float* image = view.base + n * g.input[0] * g.input[1] * row_floats;
          float* out;
          if (channels_first) {
            workspace.block.resize(static_cast<size_t>((c1 - c0) * channels));
            out = workspace.block.data() - c0 * channels;  // Indexed by column below.
          } else {
            out = output + (n * out_spatial + p_row) * channels;
          }
          // Border columns through the indirection buffer.
          for (const auto& [b0, b1] :
               {std::pair<int64_t, int64_t>{c0, std::min(c1, interior_begin)},
                {std::max(c0, interior_end), c1}}) {
            if (b0 >= b1) continue;
            workspace.indirection.resize(static_cast<size_t>((b1 - b0) * taps_));
            sources.Fill(n, p_row + b0, p_row + b1, 1, workspace.indirection.data());
            dwconv_(b1 - b0, channels, taps_, workspace.indirection.data(), packed_.data(),
                    out + b0 * channels, channels, epilogue.lo, epilogue.hi);
          }
          const int64_t i0 = std::max(c0, interior_begin);
          const int64_t i1 = std::min(c1, interior_end);
          if (i0 < i1) {
            const int64_t column = i0 * stride_w + first_column;
            for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
              const int64_t id = source_d[od * g.kernel[0] + kd];
              for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
                const int64_t ih = source_h[oh * g.kernel[1] + kh];
                const float* input_row =
                    (id < 0 || ih < 0) ? zero.data() : image + (id * g.input[1] + ih) * row_floats;
                row_inputs[kd * g.kernel[1] + kh] = input_row + column * channels;
              }
            }
            dwconv_rows_(i1 - i0, channels, row_taps, kernel_w, row_inputs.data(),
                         stride_w * channels, dilation_w * channels, packed_.data(),
                         out + i0 * channels, channels, epilogue.lo, epilogue.hi);
          }
          if (epilogue.per_element) {
            for (int64_t i = c0 * channels; i < c1 * channels; ++i) {
              out[i] = ApplyActivation(g.activation, g.activation_alpha, out[i]);
            }
          }
          if (channels_first) {
            ukernels::f32_transpose_8x8_avx2(c1 - c0, channels, out + c0 * channels, channels,
                                             output + n * channels * out_spatial + p_row + c0,
                                             out_spatial);
          }
        }
      });
}

}  // namespace kernels
}  // namespace convserve
