// igemm_path.cc: the indirect-GEMM path: tile choice, weight packing and the parallel run.
#include "core/fast/igemm_path.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/fast/common.h"
#include "tbb/blocked_range.h"
#include "tbb/parallel_for.h"
#include "tbb/task_arena.h"

namespace convserve {
namespace kernels {

IgemmPath::IgemmPath(const ResolvedLayer& layer, absl::Span<const float> weight,
                     absl::Span<const float> bias, Isa isa)
    : groups_(layer.spec.groups),
      in_per_group_(layer.in_channels_per_group()),
      out_per_group_(layer.out_channels_per_group()),
      taps_(layer.kernel_size()) {
  Pack(layer, weight, bias, isa);
}

// Per block of nr_ output channels of a group: nr_ bias values, then
// [tap][input channel][nr_] weights. Taps run kd, kh, kw with kw innermost,
// so with one group the Kw taps of a pixel and its channels form one
// contiguous K run, matching a materialised row.
void IgemmPath::Pack(const ResolvedLayer& layer, absl::Span<const float> weight,
                     absl::Span<const float> bias, Isa isa) {
  // Groups of 8 x 8 channels, in pairs: zmm vectors along two groups' input
  // channels. Other narrow groups fill 8 lanes at most: the 12x8 ymm tile
  // wastes no lanes and keeps 12 chains in flight on either ISA.
  if (isa == Isa::kAvx512f && in_per_group_ == 8 && out_per_group_ == 8 && groups_ % 2 == 0) {
    groups_per_block_ = 2;
    nr_ = 16, mr_ = 3, igemm_ = &ukernels::f32_gconv_g8_3x16_avx512f;
    kernel_name_ = "f32-gconv-g8-3x16-avx512f";
    PackGroupPairs(layer, weight, bias);
    return;
  }
  if (out_per_group_ <= 8) {
    nr_ = 8, mr_ = 12, igemm_ = &ukernels::f32_igemm_12x8_avx2_fma;
    kernel_name_ = "f32-igemm-12x8-avx2-fma";
  } else if (isa == Isa::kAvx512f && out_per_group_ <= 16) {
    nr_ = 16, mr_ = 16, igemm_ = &ukernels::f32_igemm_16x16_avx512f;
    kernel_name_ = "f32-igemm-16x16-avx512f";
  } else if (isa == Isa::kAvx512f) {
    nr_ = 32, mr_ = 8, igemm_ = &ukernels::f32_igemm_8x32_avx512f;
    kernel_name_ = "f32-igemm-8x32-avx512f";
  } else {
    nr_ = 16, mr_ = 6, igemm_ = &ukernels::f32_igemm_6x16_avx2_fma;
    kernel_name_ = "f32-igemm-6x16-avx2-fma";
  }
  blocks_per_group_ = CeilDiv(out_per_group_, nr_);
  block_floats_ = nr_ + taps_ * in_per_group_ * nr_;
  packed_.assign(static_cast<size_t>(groups_ * blocks_per_group_ * block_floats_), 0.0f);
  for (int64_t group = 0; group < groups_; ++group) {
    for (int64_t block = 0; block < blocks_per_group_; ++block) {
      float* packed = packed_.data() + (group * blocks_per_group_ + block) * block_floats_;
      for (int64_t j = 0; j < nr_ && block * nr_ + j < out_per_group_; ++j) {
        const int64_t oc = group * out_per_group_ + block * nr_ + j;
        if (layer.spec.bias) packed[j] = bias[oc];
        for (int64_t tap = 0; tap < taps_; ++tap) {
          for (int64_t ic = 0; ic < in_per_group_; ++ic) {
            packed[nr_ + (tap * in_per_group_ + ic) * nr_ + j] =
                WeightAt(layer, weight, taps_, oc, ic, tap);
          }
        }
      }
    }
  }
}

// Per pair of groups: 16 bias values (the pair's output channels), then per
// tap 8 vectors j of 16: weight(output j, input k) of the first group for
// lanes k < 8, of the second group for lanes 8 + k.
void IgemmPath::PackGroupPairs(const ResolvedLayer& layer, absl::Span<const float> weight,
                               absl::Span<const float> bias) {
  blocks_per_group_ = 1;
  block_floats_ = 16 + taps_ * 8 * 16;
  packed_.assign(static_cast<size_t>(groups_ / 2 * block_floats_), 0.0f);
  for (int64_t pair = 0; pair < groups_ / 2; ++pair) {
    float* packed = packed_.data() + pair * block_floats_;
    for (int64_t half = 0; half < 2; ++half) {
      const int64_t oc0 = (2 * pair + half) * 8;
      for (int64_t j = 0; j < 8; ++j) {
        if (layer.spec.bias) packed[half * 8 + j] = bias[oc0 + j];
        for (int64_t tap = 0; tap < taps_; ++tap) {
          for (int64_t k = 0; k < 8; ++k) {
            packed[16 + (tap * 8 + j) * 16 + half * 8 + k] =
                WeightAt(layer, weight, taps_, oc0 + j, k, tap);
          }
        }
      }
    }
  }
}

void IgemmPath::Run(const ConvGeometry& g, const InputView& view, float* output,
                    const StopToken& stop) const {
  const bool can_stop = stop.CanStop();
  const int64_t channels = g.in_channels;
  const int64_t out_channels = g.out_channels;
  const int64_t out_spatial = g.output_spatial_size();
  const bool channels_first = g.data_layout == DataLayout::kChannelsFirst;
  const Epilogue epilogue = EpilogueOf(g.activation);
  // Kw taps of one pixel are contiguous when a row holds its W padding (or
  // has none) and dilation along W is 1; with one group, or with each group in
  // its own tensor (group_major), they merge into K.
  const bool merge_w = (groups_ == 1 || view.group_major) && g.dilation[2] == 1 &&
                       (view.w_padded || g.pad_begin[2] + g.pad_end[2] == 0);
  const int64_t kw_taps = merge_w ? 1 : g.kernel[2];
  const int64_t taps = g.kernel[0] * g.kernel[1] * kw_taps;
  const int64_t kc = merge_w ? g.kernel[2] * in_per_group_ : in_per_group_;
  const std::vector<float> zero(static_cast<size_t>(g.kernel[2] * channels + 8), 0.0f);
  const TapSources sources(g, view, kw_taps, zero.data());
  const std::shared_ptr<const TapOffsetCache::Table> tap_offsets =
      tap_offsets_.Find(g, view, kw_taps, mr_, sources);

  // Work items: batch x pixel blocks x ranges of output-channel blocks.
  const int64_t pixel_block = mr_ * CeilDiv(kPixelBlock, mr_);
  const int64_t pixel_blocks = CeilDiv(out_spatial, pixel_block);
  const int64_t column_blocks = groups_ / groups_per_block_ * blocks_per_group_;
  const int64_t threads = tbb::this_task_arena::max_concurrency();
  const int64_t base_items = g.batch * pixel_blocks;
  int64_t splits = 1;
  if (base_items < kItemsPerThread * threads) {
    splits = std::min(column_blocks, CeilDiv(kItemsPerThread * threads, base_items));
  }
  if (channels_first) splits = std::max(splits, CeilDiv(column_blocks * nr_, kMaxBlockChannels));
  const int64_t chunk = CeilDiv(column_blocks, splits);
  splits = CeilDiv(column_blocks, chunk);

  // Column block cb covers output channels [first_channel(cb), end_channel(cb)) of
  // groups_per_block_ groups from first_group(cb) on.
  const int64_t block_outputs = groups_per_block_ * out_per_group_;
  auto first_group = [&](int64_t column_block) {
    return column_block / blocks_per_group_ * groups_per_block_;
  };
  auto first_channel = [&](int64_t column_block) {
    return first_group(column_block) * out_per_group_ + column_block % blocks_per_group_ * nr_;
  };
  auto end_channel = [&](int64_t column_block) {
    const int64_t block = column_block % blocks_per_group_;
    return first_group(column_block) * out_per_group_ + std::min(block_outputs, (block + 1) * nr_);
  };

  tbb::parallel_for(tbb::blocked_range<int64_t>(0, base_items * splits), [&](const auto& range) {
    Workspace& workspace = ThreadWorkspace();
    for (int64_t item = range.begin(); item < range.end(); ++item) {
      if (can_stop && stop.StopRequested()) return;  // between work items only
      const int64_t n = item / (pixel_blocks * splits);
      const int64_t p0 = (item / splits % pixel_blocks) * pixel_block;
      const int64_t p1 = std::min(out_spatial, p0 + pixel_block);
      const int64_t cb0 = item % splits * chunk;
      const int64_t cb1 = std::min(column_blocks, cb0 + chunk);
      const int64_t tiles = CeilDiv(p1 - p0, mr_);

      workspace.indirection.resize(static_cast<size_t>(tiles * taps * mr_));
      const float** indirection = workspace.indirection.data();
      if (tap_offsets) {
        ToPointers(tap_offsets->data() + p0 * taps, tiles * taps * mr_,
                   view.base + n * view.image_floats, zero.data(), indirection);
      } else {
        sources.Fill(n, p0, p1, mr_, indirection);
      }

      const int64_t oc_begin = first_channel(cb0);
      const int64_t oc_end = end_channel(cb1 - 1);
      float* block = nullptr;
      const int64_t block_stride = oc_end - oc_begin;
      if (channels_first) {
        workspace.block.resize(static_cast<size_t>((p1 - p0) * block_stride));
        block = workspace.block.data();
      }
      for (int64_t cb = cb0; cb < cb1; ++cb) {
        const int64_t oc0 = first_channel(cb);
        const int64_t nc = end_channel(cb) - oc0;
        const float* packed = packed_.data() + cb * block_floats_;
        const int64_t a_offset = first_group(cb) * view.group_floats;
        for (int64_t tile = 0; tile < tiles; ++tile) {
          const int64_t p = p0 + tile * mr_;
          const int64_t mr = std::min(mr_, p1 - p);
          float* c;
          int64_t c_stride;
          if (channels_first) {
            c = block + (p - p0) * block_stride + (oc0 - oc_begin);
            c_stride = block_stride;
          } else {
            c = output + (n * out_spatial + p) * out_channels + oc0;
            c_stride = out_channels;
          }
          igemm_(mr, nc, taps, kc, indirection + tile * taps * mr_, mr_, a_offset, zero.data(),
                 packed, c, c_stride, epilogue.lo, epilogue.hi);
          if (epilogue.per_element) ActivateTile(g, mr, nc, c, c_stride);
        }
      }
      if (channels_first) {
        ukernels::f32_transpose_8x8_avx2(p1 - p0, block_stride, block, block_stride,
                                         output + (n * out_channels + oc_begin) * out_spatial + p0,
                                         out_spatial);
      }
    }
  });
}

}  // namespace kernels
}  // namespace convserve
