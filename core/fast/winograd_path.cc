// winograd_path.cc: the Winograd path: weight transform and packing, tile choice and the run.
#include "core/fast/winograd_path.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/checked_math.h"
#include "core/conv.h"
#include "core/fast/common.h"
#include "tbb/blocked_range.h"
#include "tbb/parallel_for.h"
#include "tbb/task_arena.h"

namespace convserve {
namespace kernels {
namespace {

constexpr int64_t kLanes = static_cast<int64_t>(ukernels::kWinogradLanes);
constexpr float kInf = std::numeric_limits<float>::infinity();
// One work item's V and M aim at this many bytes (they stay in L2 / L3 while
// every GEMM of the item runs over them); an item has at least kLanes tiles.
constexpr int64_t kItemBytes = int64_t{2} << 20;
constexpr int64_t kMaxTilesPerItem = 128;
// The zero-padded input copy is kept per calling thread up to this size.
constexpr int64_t kKeptPaddedFloats = int64_t{2} << 20;
// Per-thread scratch above which a layer is left to the direct path.
constexpr int64_t kMaxScratchBytes = int64_t{256} << 20;

// G of F(4x4, 3x3) and F(2x2, 3x3) (alpha x 3), in double: the weights are
// transformed once, exactly rounded to float at the end.
constexpr double kG4[6][3] = {
    {1.0 / 4, 0, 0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6},
    {1.0 / 24, -1.0 / 12, 1.0 / 6},
    {0, 0, 1},
};
constexpr double kG2[4][3] = {
    {1, 0, 0},
    {0.5, 0.5, 0.5},
    {0.5, -0.5, 0.5},
    {0, 0, 1},
};

// Floats of one work item's scratch: V and M for `tiles` tiles, then one
// output transform's block (M x M x kLanes, M <= 4), and 16 to start V on a
// cache line.
int64_t ScratchFloats(int64_t alpha, int64_t tiles, int64_t in_channels, int64_t out_channels) {
  return alpha * alpha * tiles * (in_channels + out_channels) + 16 * kLanes + 16;
}

// Element strides of a tensor in `layout`: image, channel, row, column.
struct Strides {
  int64_t image, channel, row, column;
};
Strides StridesOf(DataLayout layout, int64_t channels, int64_t height, int64_t width) {
  if (layout == DataLayout::kChannelsFirst) {
    return {channels * height * width, height * width, width, 1};
  }
  return {height * width * channels, 1, width * channels, channels};
}

}  // namespace

bool WinogradPath::Fits(const ResolvedLayer& layer) {
  if (!CheckWinograd(layer).ok()) return false;
  const int64_t floats = ScratchFloats(6, kLanes, layer.spec.in_channels, layer.spec.out_channels);
  return floats <= kMaxScratchBytes / static_cast<int64_t>(sizeof(float));
}

WinogradPath::WinogradPath(const ResolvedLayer& layer, absl::Span<const float> weight,
                           absl::Span<const float> bias, Isa isa) {
  if (isa == Isa::kAvx512f) {
    mr_ = 12, nr_ = 32, gemm_ = &ukernels::f32_gemm_12x32_avx512f;
    gemm_name_ = "gemm-12x32-avx512f";
    f4_.input = &ukernels::f32_winograd_input_4x4_3x3_avx512f;
    f4_.output = &ukernels::f32_winograd_output_4x4_3x3_avx512f;
    f2_.input = &ukernels::f32_winograd_input_2x2_3x3_avx512f;
    f2_.output = &ukernels::f32_winograd_output_2x2_3x3_avx512f;
  } else {
    mr_ = 6, nr_ = 16, gemm_ = &ukernels::f32_gemm_6x16_avx2_fma;
    gemm_name_ = "gemm-6x16-avx2-fma";
    f4_.input = &ukernels::f32_winograd_input_4x4_3x3_avx2_fma;
    f4_.output = &ukernels::f32_winograd_output_4x4_3x3_avx2_fma;
    f2_.input = &ukernels::f32_winograd_input_2x2_3x3_avx2_fma;
    f2_.output = &ukernels::f32_winograd_output_2x2_3x3_avx2_fma;
  }
  f4_.m = 4;
  f2_.m = 2;
  bias_.assign(static_cast<size_t>(layer.spec.out_channels), 0.0f);
  if (layer.spec.bias) std::copy(bias.begin(), bias.end(), bias_.begin());
  zero_bias_.assign(static_cast<size_t>(mr_), 0.0f);
  Pack(layer, weight, &f4_);
  Pack(layer, weight, &f2_);
}

// U[xi = i * alpha + j][oc][ic] = (G g G^T)[i][j], in double, packed per
// block of mr_ output channels as [ic][mr_].
void WinogradPath::Pack(const ResolvedLayer& layer, absl::Span<const float> weight,
                        Variant* variant) const {
  const int alpha = variant->m + 2;
  const double* g = variant->m == 4 ? &kG4[0][0] : &kG2[0][0];
  const int64_t in_channels = layer.spec.in_channels;
  const int64_t out_channels = layer.spec.out_channels;
  const int64_t blocks = CeilDiv(out_channels, mr_);
  variant->packed.assign(static_cast<size_t>(alpha * alpha * blocks * in_channels * mr_), 0.0f);
  for (int64_t oc = 0; oc < out_channels; ++oc) {
    for (int64_t ic = 0; ic < in_channels; ++ic) {
      double w[3][3];
      for (int k = 0; k < 9; ++k) w[k / 3][k % 3] = WeightAt(layer, weight, 9, oc, ic, k);
      double gw[6][3] = {};  // G w
      for (int i = 0; i < alpha; ++i) {
        for (int l = 0; l < 3; ++l) {
          for (int k = 0; k < 3; ++k) gw[i][l] += g[i * 3 + k] * w[k][l];
        }
      }
      for (int i = 0; i < alpha; ++i) {
        for (int j = 0; j < alpha; ++j) {
          double u = 0;
          for (int l = 0; l < 3; ++l) u += gw[i][l] * g[j * 3 + l];
          const int64_t xi = i * alpha + j;
          const int64_t index = ((xi * blocks + oc / mr_) * in_channels + ic) * mr_ + oc % mr_;
          variant->packed[static_cast<size_t>(index)] = static_cast<float>(u);
        }
      }
    }
  }
}

// The variant with fewer GEMM lanes per image (alpha^2 x the image's tiles
// rounded up to whole transform groups); F(4x4) on a tie, as it has fewer
// tiles to transform. Per image, not per batch: an image's outputs must not
// depend on the batch it comes in (dynamic batching merges calls).
const WinogradPath::Variant& WinogradPath::Choose(const ConvGeometry& g) const {
  auto lanes = [&](const Variant& v) {
    const int64_t alpha = v.m + 2;
    const int64_t tiles = CeilDiv(g.output[1], v.m) * CeilDiv(g.output[2], v.m);
    return alpha * alpha * CeilDiv(tiles, kLanes);
  };
  return lanes(f2_) < lanes(f4_) ? f2_ : f4_;
}

std::string WinogradPath::KernelName(const ConvGeometry& g) const {
  const int m = Choose(g).m;
  return absl::StrCat("f32-winograd-", m, "x", m, "-3x3-", gemm_name_);
}

absl::Status WinogradPath::Run(const ConvGeometry& g, const float* input, float* output,
                               const StopToken& stop) const {
  const Variant& v = Choose(g);
  const bool can_stop = stop.CanStop();
  const int64_t m = v.m, alpha = m + 2, points = alpha * alpha;
  const int64_t in_channels = g.in_channels, out_channels = g.out_channels;
  const int64_t height = g.input[1], width = g.input[2];
  const int64_t out_height = g.output[1], out_width = g.output[2];
  const int64_t tiles_h = CeilDiv(out_height, m), tiles_w = CeilDiv(out_width, m);
  const int64_t tiles_per_image = tiles_h * tiles_w;
  const int64_t tiles = g.batch * tiles_per_image;
  if (tiles == 0) return absl::OkStatus();
  // A zero-padded copy of the input that every tile lies inside, so that
  // the transforms read without bounds checks.
  const int64_t padded_h = tiles_h * m + 2, padded_w = tiles_w * m + 2;
  // kSlack floats past the copy: the transforms read whole 8-float rows.
  constexpr int64_t kSlack = 8;
  const std::optional<int64_t> copy_elements =
      CheckedProduct({g.batch, in_channels, padded_h, padded_w});
  const int64_t padded_limit =
      std::max(kMaxScratchBytes / int64_t{sizeof(float)}, 2 * g.input_elements());
  if (!copy_elements || *copy_elements > padded_limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "layer: the Winograd path would need a padded input copy of ",
        copy_elements ? absl::StrCat(*copy_elements) : "more than 2^63",
        " floats for this geometry (padding far beyond the input), above the limit of ",
        padded_limit, "; run the layer with algorithm 'direct'"));
  }
  const int64_t padded_elements = *copy_elements + kSlack;
  const Strides in = StridesOf(g.data_layout, in_channels, height, width);
  const Strides padded_strides =
      StridesOf(DataLayout::kChannelsFirst, in_channels, padded_h, padded_w);
  const Strides out = StridesOf(g.data_layout, out_channels, out_height, out_width);
  // Kept per calling thread up to kKeptPaddedFloats (a fresh allocation per
  // call costs page faults), allocated per call beyond, and when this thread
  // already holds its copy (a Run() reached while waiting inside another).
  thread_local std::vector<float> kept;
  thread_local bool kept_in_use = false;
  std::unique_ptr<float[]> fresh;
  float* padded;
  struct Release {
    bool* in_use;
    ~Release() {
      if (in_use != nullptr) *in_use = false;
    }
  } release{nullptr};
  if (padded_elements <= kKeptPaddedFloats && !kept_in_use) {
    if (static_cast<int64_t>(kept.size()) < padded_elements) {
      kept.resize(static_cast<size_t>(padded_elements));
    }
    padded = kept.data();
    kept_in_use = true;
    release.in_use = &kept_in_use;
  } else {
    fresh.reset(new float[static_cast<size_t>(padded_elements)]);
    padded = fresh.get();
  }
  const int64_t top = g.pad_begin[1], left = g.pad_begin[2];
  // The copy is channels-first whatever the input's layout (a channels-last
  // row is transposed into it), so that every tile row is a contiguous run.
  // Row (n, py) of the copy, every channel; cells outside the input are zero.
  const bool last = g.data_layout == DataLayout::kChannelsLast;
  const int64_t plane = padded_h * padded_w;
  std::fill(padded + padded_elements - kSlack, padded + padded_elements, 0.0f);
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, g.batch * padded_h), [&](const auto& range) {
    for (int64_t row = range.begin(); row < range.end(); ++row) {
      const int64_t n = row / padded_h, py = row % padded_h;
      const int64_t y = py - top;
      // Input columns [x_begin, x_end) land on copy columns from x_begin + left.
      const int64_t x_begin = std::max<int64_t>(0, -left);
      const int64_t x_end = std::min<int64_t>(width, padded_w - left);
      const bool inside = y >= 0 && y < height && x_begin < x_end;
      float* first = padded + n * in_channels * plane + py * padded_w;  // channel 0's row
      for (int64_t c = 0; c < in_channels; ++c) {
        float* dst = first + c * plane;
        if (!inside) {
          std::fill(dst, dst + padded_w, 0.0f);
          continue;
        }
        std::fill(dst, dst + x_begin + left, 0.0f);
        std::fill(dst + x_end + left, dst + padded_w, 0.0f);
        if (!last) {
          const float* src = input + n * in.image + c * in.channel + y * in.row;
          std::copy(src + x_begin, src + x_end, dst + x_begin + left);
        }
      }
      if (inside && last) {
        const float* src = input + n * in.image + y * in.row + x_begin * in.column;
        ukernels::f32_transpose_8x8_avx2(
            static_cast<size_t>(x_end - x_begin), static_cast<size_t>(in_channels), src,
            static_cast<size_t>(in_channels), first + x_begin + left, static_cast<size_t>(plane));
      }
    }
  });
  if (stop.StopRequested()) return StoppedError();
  const Epilogue epilogue = EpilogueOf(g.activation);
  const float lo = epilogue.per_element ? -kInf : epilogue.lo;
  const float hi = epilogue.per_element ? kInf : epilogue.hi;
  const int64_t blocks = CeilDiv(out_channels, mr_);
  // Tiles per item: V and M near kItemBytes, whole transform groups, and
  // enough items to balance over the arena's threads.
  const int64_t per_tile_bytes = points * (in_channels + out_channels) * int64_t{sizeof(float)};
  int64_t item_tiles =
      std::clamp(kItemBytes / per_tile_bytes / kLanes * kLanes, kLanes, kMaxTilesPerItem);
  item_tiles = std::min(item_tiles, CeilDiv(tiles, kLanes) * kLanes);
  const int64_t threads = tbb::this_task_arena::max_concurrency();
  while (item_tiles > kLanes && CeilDiv(tiles, item_tiles) < kItemsPerThread * threads) {
    item_tiles -= kLanes;
  }
  const int64_t items = CeilDiv(tiles, item_tiles);
  const int64_t tb = item_tiles;  // Row length of V and M.
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, items), [&](const auto& range) {
    Workspace& workspace = ThreadWorkspace();
    workspace.block.resize(
        static_cast<size_t>(ScratchFloats(alpha, tb, in_channels, out_channels)));
    // V and M rows (tb floats, a multiple of 16) then start on cache lines,
    // which the GEMMs' vector loads and stores do not straddle.
    const uintptr_t base = reinterpret_cast<uintptr_t>(workspace.block.data());
    float* const vv = reinterpret_cast<float*>((base + 63) & ~uintptr_t{63});  // [points][C_in][tb]
    float* const mm = vv + points * in_channels * tb;  // [points][C_out][tb]
    float* const o = mm + points * out_channels * tb;  // [m * m][kLanes]
    for (int64_t item = range.begin(); item < range.end(); ++item) {
      if (can_stop && stop.StopRequested()) return;  // between work items only
      const int64_t t0 = item * tb;
      const int64_t count = std::min(tb, tiles - t0);
      const int64_t groups = CeilDiv(count, kLanes);
      const int64_t columns = groups * kLanes;
      // Input transform, kLanes tiles at a time (lanes past the last tile
      // repeat it; their columns are never stored).
      for (int64_t group = 0; group < groups; ++group) {
        const float* lanes[kLanes];
        for (int64_t l = 0; l < kLanes; ++l) {
          const int64_t t = t0 + std::min(group * kLanes + l, count - 1);
          const int64_t n = t / tiles_per_image;
          const int64_t y0 = t % tiles_per_image / tiles_w * m;
          const int64_t x0 = t % tiles_w * m;
          lanes[l] = padded + n * padded_strides.image + y0 * padded_strides.row +
                     x0 * padded_strides.column;
        }
        for (int64_t ic = 0; ic < in_channels; ++ic) {
          v.input(lanes, static_cast<size_t>(ic * padded_strides.channel),
                  static_cast<size_t>(padded_strides.row), vv + ic * tb + group * kLanes,
                  static_cast<size_t>(in_channels * tb));
        }
      }
      // One GEMM per transform point: M[xi] = U[xi] x V[xi].
      for (int64_t xi = 0; xi < points; ++xi) {
        const float* b = vv + xi * in_channels * tb;
        for (int64_t ob = 0; ob < blocks; ++ob) {
          const float* a = v.packed.data() + (xi * blocks + ob) * in_channels * mr_;
          const int64_t oc0 = ob * mr_;
          const int64_t mr = std::min(mr_, out_channels - oc0);
          float* c = mm + (xi * out_channels + oc0) * tb;
          for (int64_t j = 0; j < columns; j += nr_) {
            gemm_(mr, std::min(nr_, columns - j), in_channels, a, zero_bias_.data(), b + j, tb,
                  c + j, tb, -kInf, kInf);
          }
        }
      }
      // Output transform with bias and clamp, then the other activations
      // while storing, kLanes tiles at a time. Groups of whole 4x4 tiles on
      // channels-first outputs are stored by the micro-kernel.
      for (int64_t group = 0; group < groups; ++group) {
        const int64_t lanes = std::min(kLanes, count - group * kLanes);
        int64_t offsets[kLanes];  // Output offset of each tile's first cell.
        bool whole = lanes == kLanes && m == 4 && !epilogue.per_element &&
                     g.data_layout == DataLayout::kChannelsFirst;
        for (int64_t l = 0; l < lanes; ++l) {
          const int64_t t = t0 + group * kLanes + l;
          const int64_t oy0 = t % tiles_per_image / tiles_w * m;
          const int64_t ox0 = t % tiles_w * m;
          offsets[l] = t / tiles_per_image * out.image + oy0 * out.row + ox0 * out.column;
          whole = whole && oy0 + m <= out_height && ox0 + m <= out_width;
        }
        for (int64_t oc = 0; oc < out_channels; ++oc) {
          const float bias = bias_[static_cast<size_t>(oc)];
          const float* m_rows = mm + oc * tb + group * kLanes;
          const size_t m_stride = static_cast<size_t>(out_channels * tb);
          float* channel = output + oc * out.channel;
          if (whole) {
            float* tile_outputs[kLanes];
            for (int64_t l = 0; l < kLanes; ++l) tile_outputs[l] = channel + offsets[l];
            v.output(m_rows, m_stride, bias, lo, hi, o, tile_outputs, static_cast<size_t>(out.row));
            continue;
          }
          v.output(m_rows, m_stride, bias, lo, hi, o, nullptr, 0);
          for (int64_t l = 0; l < lanes; ++l) {
            const int64_t t = t0 + group * kLanes + l;
            const int64_t rows = std::min(m, out_height - t % tiles_per_image / tiles_w * m);
            const int64_t cols = std::min(m, out_width - t % tiles_w * m);
            float* dst = channel + offsets[l];
            for (int64_t i = 0; i < rows; ++i) {
              for (int64_t j = 0; j < cols; ++j) {
                float y = o[(i * m + j) * kLanes + l];
                if (epilogue.per_element) {
                  y = ApplyActivation(g.activation, g.activation_alpha, y);
                }
                dst[i * out.row + j * out.column] = y;
              }
            }
          }
        }
      }
    }
  });
  return stop.StopRequested() ? StoppedError() : absl::OkStatus();
}

}  // namespace kernels
}  // namespace convserve
