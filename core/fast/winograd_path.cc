// winograd_path.cc: the Winograd path: weight transform and packing, tile choice and the run.
#include "core/fast/winograd_path.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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

int64_t ScratchFloats(int64_t alpha, int64_t tiles, int64_t in_channels, int64_t out_channels) {
  return alpha * alpha * (tiles * (in_channels + out_channels) + kLanes) + 16 * kLanes;
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
  const int64_t floats =
      ScratchFloats(6, kLanes, layer.spec.in_channels, layer.spec.out_channels);
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

// The variant with fewer GEMM lanes (alpha^2 x tiles rounded up to whole
// transform groups); F(4x4) on a tie, as it has fewer tiles to transform.
const WinogradPath::Variant& WinogradPath::Choose(const ConvGeometry& g) const {
  auto lanes = [&](const Variant& v) {
    const int64_t alpha = v.m + 2;
    const int64_t tiles = g.batch * CeilDiv(g.output[1], v.m) * CeilDiv(g.output[2], v.m);
    return alpha * alpha * CeilDiv(tiles, kLanes);
  };
  return lanes(f2_) < lanes(f4_) ? f2_ : f4_;
}

std::string WinogradPath::KernelName(const ConvGeometry& g) const {
  const int m = Choose(g).m;
  return absl::StrCat("f32-winograd-", m, "x", m, "-3x3-", gemm_name_);
}

void WinogradPath::Run(const ConvGeometry& g, const float* input, float* output,
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
  if (tiles == 0) return;
  const Strides in = StridesOf(g.data_layout, in_channels, height, width);
  const Strides out = StridesOf(g.data_layout, out_channels, out_height, out_width);
  const Epilogue epilogue = EpilogueOf(g.activation);
  const int64_t blocks = CeilDiv(out_channels, mr_);
  // Tiles per item: V and M near kItemBytes, whole transform groups, and
  // enough items to balance over the arena's threads.
  const int64_t per_tile_bytes = points * (in_channels + out_channels) * int64_t{sizeof(float)};
  int64_t item_tiles = std::clamp(kItemBytes / per_tile_bytes / kLanes * kLanes, kLanes,
                                  kMaxTilesPerItem);
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
    float* const vv = workspace.block.data();            // [points][C_in][tb]
    float* const mm = vv + points * in_channels * tb;    // [points][C_out][tb]
    float* const d = mm + points * out_channels * tb;    // [points][kLanes]
    float* const o = d + points * kLanes;                // [m * m][kLanes]
    for (int64_t item = range.begin(); item < range.end(); ++item) {
      if (can_stop && stop.StopRequested()) return;  // between work items only
      const int64_t t0 = item * tb;
      const int64_t count = std::min(tb, tiles - t0);
      const int64_t groups = CeilDiv(count, kLanes);
      const int64_t columns = groups * kLanes;
      // Input transform, kLanes tiles at a time. Tile t of the item: image
      // n, first input cell (y0, x0), which may lie in the padding.
      for (int64_t group = 0; group < groups; ++group) {
        int64_t base[kLanes], y0s[kLanes], x0s[kLanes];
        bool inside[kLanes];
        const int64_t lanes = std::min(kLanes, count - group * kLanes);
        for (int64_t l = 0; l < lanes; ++l) {
          const int64_t t = t0 + group * kLanes + l;
          const int64_t n = t / tiles_per_image;
          const int64_t y0 = t % tiles_per_image / tiles_w * m - g.pad_begin[1];
          const int64_t x0 = t % tiles_w * m - g.pad_begin[2];
          y0s[l] = y0, x0s[l] = x0;
          inside[l] = y0 >= 0 && x0 >= 0 && y0 + alpha <= height && x0 + alpha <= width;
          base[l] = n * in.image + y0 * in.row + x0 * in.column;
        }
        for (int64_t ic = 0; ic < in_channels; ++ic) {
          const float* channel = input + ic * in.channel;
          for (int64_t l = 0; l < kLanes; ++l) {
            float* lane = d + l;
            if (l >= lanes) {  // Past the last tile: zeros.
              for (int64_t p = 0; p < points; ++p) lane[p * kLanes] = 0.0f;
            } else if (inside[l]) {
              const float* src = channel + base[l];
              for (int64_t r = 0; r < alpha; ++r) {
                for (int64_t c = 0; c < alpha; ++c) {
                  lane[(r * alpha + c) * kLanes] = src[r * in.row + c * in.column];
                }
              }
            } else {
              const float* src = channel + base[l];
              for (int64_t r = 0; r < alpha; ++r) {
                const bool row_in = y0s[l] + r >= 0 && y0s[l] + r < height;
                for (int64_t c = 0; c < alpha; ++c) {
                  const bool in_bounds = row_in && x0s[l] + c >= 0 && x0s[l] + c < width;
                  lane[(r * alpha + c) * kLanes] =
                      in_bounds ? src[r * in.row + c * in.column] : 0.0f;
                }
              }
            }
          }
          v.input(d, vv + ic * tb + group * kLanes, static_cast<size_t>(in_channels * tb));
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
      // Output transform, bias and activation, kLanes tiles at a time.
      for (int64_t oc = 0; oc < out_channels; ++oc) {
        const float bias = bias_[static_cast<size_t>(oc)];
        for (int64_t group = 0; group < groups; ++group) {
          v.output(mm + oc * tb + group * kLanes, static_cast<size_t>(out_channels * tb), o);
          const int64_t lanes = std::min(kLanes, count - group * kLanes);
          for (int64_t l = 0; l < lanes; ++l) {
            const int64_t t = t0 + group * kLanes + l;
            const int64_t n = t / tiles_per_image;
            const int64_t oy0 = t % tiles_per_image / tiles_w * m;
            const int64_t ox0 = t % tiles_w * m;
            float* dst = output + n * out.image + oc * out.channel;
            for (int64_t i = 0; i < m && oy0 + i < out_height; ++i) {
              for (int64_t j = 0; j < m && ox0 + j < out_width; ++j) {
                float y = o[(i * m + j) * kLanes + l] + bias;
                if (epilogue.per_element) {
                  y = ApplyActivation(g.activation, g.activation_alpha, y);
                } else {
                  y = std::min(std::max(y, epilogue.lo), epilogue.hi);
                }
                dst[(oy0 + i) * out.row + (ox0 + j) * out.column] = y;
              }
            }
          }
        }
      }
    }
  });
}

}  // namespace kernels
}  // namespace convserve
