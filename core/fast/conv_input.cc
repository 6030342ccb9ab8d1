// conv_input.cc: the channels-last reorder of the fast paths' input and the per-axis tap tables.
#include "core/fast/conv_input.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "core/fast/common.h"
#include "core/reference_conv.h"
#include "core/ukernels/ukernels.h"
#include "tbb/blocked_range.h"
#include "tbb/parallel_for.h"

namespace convserve {
namespace kernels {

using ukernels::f32_transpose_8x8_avx2;

std::vector<int64_t> AxisSources(const ConvGeometry& g, int axis, bool materialised) {
  const int64_t out = g.output[axis];
  const int64_t kernel = g.kernel[axis];
  std::vector<int64_t> sources(static_cast<size_t>(out * kernel));
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t k = 0; k < kernel; ++k) {
      const int64_t padded = o * g.stride[axis] + k * g.dilation[axis];
      sources[o * kernel + k] =
          materialised ? padded
                       : SourceIndex(g.padding_mode, padded - g.pad_begin[axis], g.input[axis]);
    }
  }
  return sources;
}

void FillRowPadding(const ConvGeometry& g, int64_t channels, float* row) {
  const int64_t width = g.input[2];
  const int64_t begin = g.pad_begin[2];
  const int64_t row_pixels = width + begin + g.pad_end[2];
  for (int64_t v = 0; v < row_pixels; ++v) {
    if (v == begin) v += width;
    if (v >= row_pixels) break;
    const int64_t source = SourceIndex(g.padding_mode, v - begin, width);
    float* cell = row + v * channels;
    if (source < 0) {
      std::memset(cell, 0, sizeof(float) * static_cast<size_t>(channels));
    } else {
      std::memcpy(cell, row + (begin + source) * channels,
                  sizeof(float) * static_cast<size_t>(channels));
    }
  }
}

std::shared_ptr<const TapOffsetCache::Table> TapOffsetCache::Find(const ConvGeometry& g,
                                                                  const InputView& view,
                                                                  int64_t kw_taps, int64_t group,
                                                                  const TapSources& sources) {
  // What TapSources reads besides the image's address and what the layer
  // fixes (kernel, stride, dilation, padding mode): the extents and the pads
  // (padding presets derive them from the input), and the view's layout.
  const Key key = {
      g.input[0],  g.input[1],      g.input[2],        g.output[0],    g.output[1],
      g.output[2], g.pad_begin[0],  g.pad_begin[1],    g.pad_begin[2], kw_taps,
      group,       view.row_pixels, view.pixel_floats, view.w_padded,  view.image_floats};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].first == key) {
        std::rotate(entries_.begin(), entries_.begin() + i, entries_.begin() + i + 1);
        return entries_.front().second;
      }
    }
  }
  const int64_t taps = g.kernel[0] * g.kernel[1] * kw_taps;
  const int64_t slots = CeilDiv(g.output_spatial_size(), group) * group * taps;
  if (slots * int64_t{sizeof(int32_t)} > kMaxEntryBytes ||
      view.image_floats > std::numeric_limits<int32_t>::max()) {
    return nullptr;
  }
  // Built outside the lock: two first calls may both build; one insert wins.
  auto table = std::make_shared<Table>(static_cast<size_t>(slots), -1);
  sources.Fill(0, 0, g.output_spatial_size(), group, table->data());
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [k, existing] : entries_) {
    if (k == key) return existing;
  }
  if (entries_.size() == kEntries) entries_.pop_back();
  entries_.insert(entries_.begin(), {key, table});
  return table;
}

void ToPointers(const int32_t* offsets, int64_t count, const float* image, const float* zero,
                const float** slots) {
  // Integer arithmetic so that the loop vectorises; image + offsets[i] stays
  // within the image.
  const uintptr_t base = reinterpret_cast<uintptr_t>(image);
  const uintptr_t zero_address = reinterpret_cast<uintptr_t>(zero);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t offset = offsets[i];
    const uintptr_t address =
        offset < 0 ? zero_address : base + static_cast<uintptr_t>(offset) * sizeof(float);
    slots[i] = reinterpret_cast<const float*>(address);
  }
}

bool PaddingFitsInCopy(const ConvGeometry& g) {
  return g.pad_begin[2] + g.pad_end[2] <= g.input[2];
}

InputView PrepareInput(const ConvGeometry& g, const float* input, bool merges_kw,
                       std::unique_ptr<float[]>* storage) {
  const int64_t groups = g.groups;
  const int64_t in_per_group = g.in_channels_per_group();
  const int64_t channels = g.in_channels;
  const int64_t width = g.input[2];
  const int64_t pad_w = g.pad_begin[2] + g.pad_end[2];
  const int64_t plane_rows = g.input[0] * g.input[1];
  const int64_t rows = g.batch * plane_rows;
  const int64_t row_pixels = width + pad_w;
  const int64_t spatial = g.input_spatial_size();
  const bool channels_last = g.data_layout == DataLayout::kChannelsLast;
  const bool fits = PaddingFitsInCopy(g);
  const bool mergeable = merges_kw && g.dilation[2] == 1 && in_per_group < 32 && fits;
  const bool group_major = mergeable && groups > 1 && g.kernel[2] > 1;
  const bool pad_worth_copy = mergeable && groups == 1;
  if (channels_last && !group_major && (pad_w == 0 || !pad_worth_copy)) {
    return {input, width, false, false, channels, in_per_group, spatial * channels};
  }

  // Every element is written below: no zero-fill.
  const int64_t copy_pixels = fits ? row_pixels : width;
  storage->reset(new float[static_cast<size_t>(rows * copy_pixels * channels)]);
  float* dst = storage->get();
  const int64_t image_floats = plane_rows * copy_pixels * channels;
  if (group_major) {
    const int64_t per_group = in_per_group;
    const int64_t group_floats = plane_rows * row_pixels * per_group;
    // Row r of the copy is (image, group, plane row).
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows * groups), [&](const auto& range) {
      for (int64_t r = range.begin(); r < range.end(); ++r) {
        const int64_t n = r / (groups * plane_rows);
        const int64_t group = r / plane_rows % groups;
        const int64_t plane_row = r % plane_rows;
        float* row = dst + r * row_pixels * per_group;
        float* interior = row + g.pad_begin[2] * per_group;
        if (channels_last) {
          const float* source =
              input + (n * plane_rows + plane_row) * width * channels + group * per_group;
          for (int64_t w = 0; w < width; ++w) {
            std::memcpy(interior + w * per_group, source + w * channels,
                        sizeof(float) * static_cast<size_t>(per_group));
          }
        } else {
          f32_transpose_8x8_avx2(
              per_group, width,
              input + (n * channels + group * per_group) * spatial + plane_row * width, spatial,
              interior, per_group);
        }
        FillRowPadding(g, per_group, row);
      }
    });
    return {dst, row_pixels, true, true, per_group, group_floats, image_floats};
  }
  if (channels_last) {
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows), [&](const auto& range) {
      for (int64_t r = range.begin(); r < range.end(); ++r) {
        float* row = dst + r * row_pixels * channels;
        std::memcpy(row + g.pad_begin[2] * channels, input + r * width * channels,
                    sizeof(float) * static_cast<size_t>(width * channels));
        FillRowPadding(g, channels, row);
      }
    });
    return {dst, row_pixels, true, false, channels, in_per_group, image_floats};
  }
  if (pad_w == 0 || !fits) {
    // One (C x S) transpose per image, split over pixel ranges; W padding,
    // if any, is left to the indirection.
    constexpr int64_t kPixels = 64;
    const int64_t chunks = CeilDiv(spatial, kPixels);
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, g.batch * chunks), [&](const auto& range) {
      for (int64_t item = range.begin(); item < range.end(); ++item) {
        const int64_t n = item / chunks;
        const int64_t s0 = (item % chunks) * kPixels;
        const int64_t count = std::min(kPixels, spatial - s0);
        f32_transpose_8x8_avx2(channels, count, input + n * channels * spatial + s0, spatial,
                               dst + (n * spatial + s0) * channels, channels);
      }
    });
    return {dst, width, false, false, channels, in_per_group, image_floats};
  }
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows), [&](const auto& range) {
    for (int64_t r = range.begin(); r < range.end(); ++r) {
      const int64_t n = r / plane_rows;
      const int64_t plane_row = r % plane_rows;
      float* row = dst + r * row_pixels * channels;
      f32_transpose_8x8_avx2(channels, width, input + n * channels * spatial + plane_row * width,
                             spatial, row + g.pad_begin[2] * channels, channels);
      FillRowPadding(g, channels, row);
    }
  });
  return {dst, row_pixels, true, false, channels, in_per_group, image_floats};
}

}  // namespace kernels
}  // namespace convserve
