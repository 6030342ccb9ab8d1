#include "core/fast/fast_conv.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/reference_conv.h"
#include "core/ukernels/ukernels.h"
#include "tbb/blocked_range.h"
#include "tbb/parallel_for.h"
#include "tbb/task_arena.h"

namespace convserve {
namespace kernels {
namespace {

// Output pixels per work item of the depthwise path: enough to amortise the
// task, few enough that batch 1 still splits over every thread.
constexpr int64_t kDepthwisePixelBlock = 128;
// Output pixels per work item of the GEMM path (rounded up to whole tiles):
// the item's input rows stay in L2 while every channel block of the item
// streams over them.
constexpr int64_t kPixelBlock = 96;
// Widest channel range one work item of the GEMM path covers on a
// channels-first output: bounds the per-thread block that is transposed into
// place (pixel block x this many floats).
constexpr int64_t kMaxBlockChannels = 512;
// Work items per thread the GEMM path aims for, so that uneven items still
// balance across threads.
constexpr int64_t kItemsPerThread = 4;

// Scratch memory one Run() may allocate beyond a copy of its input (see
// FastConvOperator::ScratchBytes()); larger geometries are refused.
constexpr int64_t kMaxScratchBytes = int64_t{256} << 20;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The spec's kernel as three axes, leading axes 1 (as ConvGeometry has it).
std::array<int64_t, 3> KernelOf(const ConvSpec& spec) {
  std::array<int64_t, 3> kernel{1, 1, 1};
  const int rank = spec.spatial_rank;
  for (int a = 0; a < rank; ++a) {
    kernel[3 - rank + a] = spec.kernel.size() == 1 ? spec.kernel[0] : spec.kernel[a];
  }
  return kernel;
}

// What the micro-kernels apply while storing (a clamp); the other activations
// run over each finished tile with the shared scalar formula, so every path
// agrees with the reference bit for bit on the nonlinearity.
struct Epilogue {
  float lo;
  float hi;
  bool per_element;  // ApplyActivation() after the clamp-free store.
};

Epilogue EpilogueOf(Activation activation) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  switch (activation) {
    case Activation::kNone:
      return {-kInf, kInf, false};
    case Activation::kRelu:
      return {0.0f, kInf, false};
    case Activation::kRelu6:
      return {0.0f, 6.0f, false};
    default:
      return {-kInf, kInf, true};
  }
}

// The activations the micro-kernels do not apply, over a stored tile of
// `rows` x `columns` values `stride` apart.
void ActivateTile(const ConvGeometry& g, int64_t rows, int64_t columns, float* tile,
                  int64_t stride) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < columns; ++j) {
      float& v = tile[i * stride + j];
      v = ApplyActivation(g.activation, g.activation_alpha, v);
    }
  }
}

// Per-thread scratch, grown on demand and kept for the thread's life: one
// work item's indirection pointers and one block of floats (a channels-first
// output block before its transpose, or a strided 1x1 layer's input panel).
// Both are bounded by the work item, not by the input size.
struct Workspace {
  std::vector<const float*> indirection;
  std::vector<float> block;
  std::vector<int64_t> offsets;  // Strided 1x1 layers: a panel pixel's input offset.
};

Workspace& ThreadWorkspace() {
  thread_local Workspace workspace;
  return workspace;
}

// The input as the micro-kernels read it: rows of `row_pixels` pixels of
// `pixel_floats` floats, D x H rows per image (and per group when
// `group_major`). With `w_padded`, each row already holds the W padding (so a
// row coordinate is the padded coordinate).
//   interleaved (channels-last): pixel_floats = C_in, group g's channels start
//     g * C_in/g floats into a pixel;
//   group_major: each group's channels form their own channels-last tensor
//     (pixel_floats = C_in/g), so that a pixel's Kw taps are contiguous for
//     that group too and merge into the GEMM's K.
struct InputView {
  const float* base = nullptr;
  int64_t row_pixels = 0;
  bool w_padded = false;
  bool group_major = false;
  int64_t pixel_floats = 0;  // Floats from one pixel to the next.
  int64_t group_floats = 0;  // Floats from group g's data to group g + 1's.
  int64_t image_floats = 0;  // Floats from image n to image n + 1.
};

// For one spatial axis: the input cell that output o reads at kernel offset
// k, at [o * kernel + k], or -1 for a zero cell.
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

// Fills the W padding cells of one materialised row (pixels of `channels`
// floats) whose interior (W pixels) starts at pixel pad_begin.
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

// Where each kernel tap of an output pixel reads: the indirection the
// micro-kernels consume. Built per call from per-axis source tables, so one
// pointer costs three table look-ups.
class TapSources {
 public:
  // `kw_taps` is 1 when the Kw taps merge into one contiguous run.
  TapSources(const ConvGeometry& g, const InputView& view, int64_t kw_taps, const float* zero)
      : g_(g),
        view_(view),
        kw_taps_(kw_taps),
        zero_(zero),
        d_(AxisSources(g, 0, false)),
        h_(AxisSources(g, 1, false)),
        w_(AxisSources(g, 2, view.w_padded)) {}

  // Writes the taps' pointers of output pixels [p_begin, p_end) of image n.
  // Pixels are laid out in groups of `group` (a micro-kernel tile): pixel q
  // of the range, tap t goes to slots[(q / group) * taps * group + t * group +
  // q % group]. Output coordinates advance incrementally: this runs once per
  // pixel per call, which matters for the memory-bound depthwise path.
  void Fill(int64_t n, int64_t p_begin, int64_t p_end, int64_t group, const float** slots) const {
    const ConvGeometry& g = g_;
    const int64_t channels = view_.pixel_floats;
    const int64_t taps = g.kernel[0] * g.kernel[1] * kw_taps_;
    const float* image = view_.base + n * view_.image_floats;
    int64_t ow = p_begin % g.output[2];
    int64_t oh = p_begin / g.output[2] % g.output[1];
    int64_t od = p_begin / (g.output[2] * g.output[1]);
    int64_t in_group = 0;
    for (int64_t p = p_begin; p < p_end; ++p) {
      const float** slot = slots + in_group;
      for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
        const int64_t id = d_[od * g.kernel[0] + kd];
        for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
          const int64_t ih = h_[oh * g.kernel[1] + kh];
          const float* row = (id < 0 || ih < 0)
                                 ? nullptr
                                 : image + (id * g.input[1] + ih) * view_.row_pixels * channels;
          const int64_t* iw = w_.data() + ow * g.kernel[2];
          for (int64_t kw = 0; kw < kw_taps_; ++kw) {
            *slot = (row == nullptr || iw[kw] < 0) ? zero_ : row + iw[kw] * channels;
            slot += group;
          }
        }
      }
      if (++in_group == group) {
        in_group = 0;
        slots += taps * group;
      }
      if (++ow == g.output[2]) {
        ow = 0;
        if (++oh == g.output[1]) {
          oh = 0;
          ++od;
        }
      }
    }
  }

 private:
  const ConvGeometry& g_;
  const InputView view_;
  const int64_t kw_taps_;
  const float* const zero_;
  const std::vector<int64_t> d_, h_, w_;
};

class FastConvOperator final : public ConvOperator {
 public:
  FastConvOperator(const ConvSpec& spec, absl::Span<const float> weight,
                   absl::Span<const float> bias, Isa isa)
      : ConvOperator(spec),
        groups_(spec.groups),
        in_per_group_(spec.in_channels / spec.groups),
        out_per_group_(spec.out_channels / spec.groups),
        kernel_(KernelOf(spec)),
        taps_(kernel_[0] * kernel_[1] * kernel_[2]),
        depthwise_(in_per_group_ == 1 && out_per_group_ == 1) {
    if (depthwise_) {
      PackDepthwise(spec, weight, bias);
    } else {
      PackGemm(spec, weight, bias, isa);
      if (taps_ == 1 && groups_ == 1) PackPointwise(spec, weight, bias, isa);
    }
  }

  std::string KernelName(const ConvGeometry& g) const override {
    return UsesPointwise(g) ? pointwise_name_ : kernel_name_;
  }

  absl::Status Run(const ConvGeometry& g, const float* input, float* output) const override {
    std::unique_ptr<float[]> storage;  // The reordered input, when there is one.
    if (UsesPointwise(g)) {
      RunPointwise(g, input, output);
      return absl::OkStatus();
    }
    if (const int64_t scratch = ScratchBytes(g); scratch > kMaxScratchBytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("layer: the kernels would need ", scratch,
                       " bytes of scratch memory for this geometry "
                       "(kernel or output extents far beyond the input's), above the limit of ",
                       kMaxScratchBytes, " bytes"));
    }
    const InputView view = PrepareInput(g, input, &storage);
    if (depthwise_) {
      RunDepthwise(g, view, output);
    } else {
      RunGemm(g, view, output);
    }
    return absl::OkStatus();
  }

 private:
  // weight(oc, ic, tap) in the spec's weight layout.
  static float WeightAt(const ConvSpec& spec, absl::Span<const float> weight, int64_t taps,
                        int64_t oc, int64_t ic, int64_t tap) {
    const int64_t in_per_group = spec.in_channels / spec.groups;
    if (spec.weight_layout == WeightLayout::kOutInSpatial) {
      return weight[(oc * in_per_group + ic) * taps + tap];
    }
    return weight[(tap * in_per_group + ic) * spec.out_channels + oc];
  }

  // Per block of nr_ output channels of a group: nr_ bias values, then
  // [tap][input channel][nr_] weights. Taps run kd, kh, kw with kw innermost,
  // so with one group the Kw taps of a pixel and its channels form one
  // contiguous K run, matching a materialised row.
  void PackGemm(const ConvSpec& spec, absl::Span<const float> weight, absl::Span<const float> bias,
                Isa isa) {
    // Narrow groups fill 8 lanes at most: the 12x8 ymm tile wastes no lanes
    // and keeps 12 chains in flight on either ISA.
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
          if (spec.bias) packed[j] = bias[oc];
          for (int64_t tap = 0; tap < taps_; ++tap) {
            for (int64_t ic = 0; ic < in_per_group_; ++ic) {
              packed[nr_ + (tap * in_per_group_ + ic) * nr_ + j] =
                  WeightAt(spec, weight, taps_, oc, ic, tap);
            }
          }
        }
      }
    }
  }

  // Bias for every channel, then [tap][channel], channels padded to 8.
  void PackDepthwise(const ConvSpec& spec, absl::Span<const float> weight,
                     absl::Span<const float> bias) {
    const int64_t channels = spec.in_channels;
    kernel_name_ = "f32-dwconv-nhwc-avx2-fma";
    const int64_t padded = CeilDiv(channels, 8) * 8;
    packed_.assign(static_cast<size_t>(padded * (1 + taps_)), 0.0f);
    for (int64_t c = 0; c < channels; ++c) {
      if (spec.bias) packed_[c] = bias[c];
      for (int64_t tap = 0; tap < taps_; ++tap) {
        packed_[padded * (1 + tap) + c] = WeightAt(spec, weight, taps_, c, 0, tap);
      }
    }
  }

  // An unpadded 1x1 layer on channels-first tensors is a plain GEMM per image
  // (output rows = weights x input rows): with stride 1 it runs without any
  // reorder or indirection; with a larger stride each work item first gathers
  // its input pixels into a contiguous per-thread panel.
  bool UsesPointwise(const ConvGeometry& g) const {
    if (pointwise_ == nullptr || g.data_layout != DataLayout::kChannelsFirst) return false;
    for (int a = 0; a < 3; ++a) {
      if (g.pad_begin[a] != 0 || g.pad_end[a] != 0) return false;
    }
    return true;
  }

  // Per block of pointwise_mr_ output channels: pointwise_mr_ bias values,
  // then [input channel][pointwise_mr_] weights (rows past C_out zero).
  void PackPointwise(const ConvSpec& spec, absl::Span<const float> weight,
                     absl::Span<const float> bias, Isa isa) {
    if (isa == Isa::kAvx512f) {
      pointwise_mr_ = 12, pointwise_nr_ = 32, pointwise_ = &ukernels::f32_gemm_12x32_avx512f;
      pointwise_name_ = "f32-gemm-12x32-avx512f";
    } else {
      pointwise_mr_ = 6, pointwise_nr_ = 16, pointwise_ = &ukernels::f32_gemm_6x16_avx2_fma;
      pointwise_name_ = "f32-gemm-6x16-avx2-fma";
    }
    const int64_t channels = spec.in_channels;
    const int64_t blocks = CeilDiv(spec.out_channels, pointwise_mr_);
    pointwise_block_floats_ = pointwise_mr_ * (1 + channels);
    pointwise_packed_.assign(static_cast<size_t>(blocks * pointwise_block_floats_), 0.0f);
    for (int64_t oc = 0; oc < spec.out_channels; ++oc) {
      float* block = pointwise_packed_.data() + oc / pointwise_mr_ * pointwise_block_floats_;
      const int64_t row = oc % pointwise_mr_;
      if (spec.bias) block[row] = bias[oc];
      for (int64_t ic = 0; ic < channels; ++ic) {
        block[pointwise_mr_ * (1 + ic) + row] = WeightAt(spec, weight, 1, oc, ic, 0);
      }
    }
  }

  void RunPointwise(const ConvGeometry& g, const float* input, float* output) const {
    const int64_t channels = g.in_channels;
    // Pixels per item: the item's input panel (C_in x pixels floats) stays in
    // L2, and a strided layer's gathered copy of it stays under 1 MiB.
    const int64_t pixels_per_item = std::clamp<int64_t>(
        (int64_t{1} << 18) / channels / pointwise_nr_ * pointwise_nr_, pointwise_nr_, 256);
    const int64_t out_channels = g.out_channels;
    const int64_t spatial = g.output_spatial_size();
    const Epilogue epilogue = EpilogueOf(g.activation);
    const int64_t pixel_chunks = CeilDiv(spatial, pixels_per_item);
    const int64_t channel_blocks = CeilDiv(out_channels, pointwise_mr_);
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
        for (int64_t p = p0; p < p1; p += pointwise_nr_) {
          const int64_t nc = std::min(pointwise_nr_, p1 - p);
          for (int64_t ob = ob0; ob < ob1; ++ob) {
            const float* packed = pointwise_packed_.data() + ob * pointwise_block_floats_;
            const int64_t oc0 = ob * pointwise_mr_;
            const int64_t mr = std::min(pointwise_mr_, out_channels - oc0);
            float* c = output + (n * out_channels + oc0) * spatial + p;
            pointwise_(mr, nc, channels, packed + pointwise_mr_, packed, image + (p - b_origin),
                       b_stride, c, spatial, epilogue.lo, epilogue.hi);
            if (epilogue.per_element) ActivateTile(g, mr, nc, c, spatial);
          }
        }
      }
    });
  }

  // Whether PrepareInput() may write the W padding into its copy of the
  // input: only while the padding is no wider than the row itself, so that
  // the copy stays within twice the input whatever the pads (wider padding is
  // left to the indirection's zero rows and index maps).
  static bool PaddingFitsInCopy(const ConvGeometry& g) {
    return g.pad_begin[2] + g.pad_end[2] <= g.input[2];
  }

  // An upper bound of the scratch memory Run() allocates beyond a reordered
  // copy of the input itself (which the caller already budgets as input): the
  // per-axis tap tables, zero rows, the copy's W padding and, per thread, the
  // indirection and output blocks. It grows with kernel and output extents,
  // not only with the tensors, so Run() refuses geometries where it is large.
  int64_t ScratchBytes(const ConvGeometry& g) const {
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
        kPointer * pixels * taps_ + kFloat * pixels * std::max(kMaxBlockChannels, g.in_channels);
    return bytes + threads * per_thread;
  }

  // Channels-last input is read in place unless its W padding or its
  // groups are worth materialising (few channels per group: merging the Kw
  // taps into K lengthens the micro-kernel's inner loop several-fold).
  // Channels-first input is always reordered, and the reorder writes the W
  // padding for free.
  InputView PrepareInput(const ConvGeometry& g, const float* input,
                         std::unique_ptr<float[]>* storage) const {
    const int64_t channels = g.in_channels;
    const int64_t width = g.input[2];
    const int64_t pad_w = g.pad_begin[2] + g.pad_end[2];
    const int64_t plane_rows = g.input[0] * g.input[1];
    const int64_t rows = g.batch * plane_rows;
    const int64_t row_pixels = width + pad_w;
    const int64_t spatial = g.input_spatial_size();
    const bool channels_last = g.data_layout == DataLayout::kChannelsLast;
    const bool fits = PaddingFitsInCopy(g);
    const bool mergeable = !depthwise_ && g.dilation[2] == 1 && in_per_group_ < 32 && fits;
    const bool group_major = mergeable && groups_ > 1 && g.kernel[2] > 1;
    const bool pad_worth_copy = mergeable && groups_ == 1;
    if (channels_last && !group_major && (pad_w == 0 || !pad_worth_copy)) {
      return {input, width, false, false, channels, in_per_group_, spatial * channels};
    }

    // Every element is written below: no zero-fill.
    const int64_t copy_pixels = fits ? row_pixels : width;
    storage->reset(new float[static_cast<size_t>(rows * copy_pixels * channels)]);
    float* dst = storage->get();
    const int64_t image_floats = plane_rows * copy_pixels * channels;
    if (group_major) {
      const int64_t per_group = in_per_group_;
      const int64_t group_floats = plane_rows * row_pixels * per_group;
      // Row r of the copy is (image, group, plane row).
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows * groups_), [&](const auto& range) {
        for (int64_t r = range.begin(); r < range.end(); ++r) {
          const int64_t n = r / (groups_ * plane_rows);
          const int64_t group = r / plane_rows % groups_;
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
            ukernels::f32_transpose_8x8_avx2(
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
      return {dst, row_pixels, true, false, channels, in_per_group_, image_floats};
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
          ukernels::f32_transpose_8x8_avx2(channels, count, input + n * channels * spatial + s0,
                                           spatial, dst + (n * spatial + s0) * channels, channels);
        }
      });
      return {dst, width, false, false, channels, in_per_group_, image_floats};
    }
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows), [&](const auto& range) {
      for (int64_t r = range.begin(); r < range.end(); ++r) {
        const int64_t n = r / plane_rows;
        const int64_t plane_row = r % plane_rows;
        float* row = dst + r * row_pixels * channels;
        ukernels::f32_transpose_8x8_avx2(channels, width,
                                         input + n * channels * spatial + plane_row * width,
                                         spatial, row + g.pad_begin[2] * channels, channels);
        FillRowPadding(g, channels, row);
      }
    });
    return {dst, row_pixels, true, false, channels, in_per_group_, image_floats};
  }

  void RunGemm(const ConvGeometry& g, const InputView& view, float* output) const {
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

    // Work items: batch x pixel blocks x ranges of output-channel blocks.
    const int64_t pixel_block = mr_ * CeilDiv(kPixelBlock, mr_);
    const int64_t pixel_blocks = CeilDiv(out_spatial, pixel_block);
    const int64_t column_blocks = groups_ * blocks_per_group_;
    const int64_t threads = tbb::this_task_arena::max_concurrency();
    const int64_t base_items = g.batch * pixel_blocks;
    int64_t splits = 1;
    if (base_items < kItemsPerThread * threads) {
      splits = std::min(column_blocks, CeilDiv(kItemsPerThread * threads, base_items));
    }
    if (channels_first) splits = std::max(splits, CeilDiv(column_blocks * nr_, kMaxBlockChannels));
    const int64_t chunk = CeilDiv(column_blocks, splits);
    splits = CeilDiv(column_blocks, chunk);

    auto first_channel = [&](int64_t column_block) {
      return column_block / blocks_per_group_ * out_per_group_ +
             column_block % blocks_per_group_ * nr_;
    };
    auto end_channel = [&](int64_t column_block) {
      const int64_t block = column_block % blocks_per_group_;
      return column_block / blocks_per_group_ * out_per_group_ +
             std::min(out_per_group_, (block + 1) * nr_);
    };

    tbb::parallel_for(tbb::blocked_range<int64_t>(0, base_items * splits), [&](const auto& range) {
      Workspace& workspace = ThreadWorkspace();
      for (int64_t item = range.begin(); item < range.end(); ++item) {
        const int64_t n = item / (pixel_blocks * splits);
        const int64_t p0 = (item / splits % pixel_blocks) * pixel_block;
        const int64_t p1 = std::min(out_spatial, p0 + pixel_block);
        const int64_t cb0 = item % splits * chunk;
        const int64_t cb1 = std::min(column_blocks, cb0 + chunk);
        const int64_t tiles = CeilDiv(p1 - p0, mr_);

        workspace.indirection.resize(static_cast<size_t>(tiles * taps * mr_));
        const float** indirection = workspace.indirection.data();
        sources.Fill(n, p0, p1, mr_, indirection);

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
          const int64_t a_offset = cb / blocks_per_group_ * view.group_floats;
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
          ukernels::f32_transpose_8x8_avx2(
              p1 - p0, block_stride, block, block_stride,
              output + (n * out_channels + oc_begin) * out_spatial + p0, out_spatial);
        }
      }
    });
  }

  // Work items are runs of up to kDepthwisePixelBlock output pixels of one
  // output row. Interior pixels (every W tap inside the input row) read
  // through row pointers and fixed steps; only the few border pixels of a row
  // need an indirection buffer.
  void RunDepthwise(const ConvGeometry& g, const InputView& view, float* output) const {
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
              ukernels::f32_dwconv_nhwc_avx2_fma(
                  b1 - b0, channels, taps_, workspace.indirection.data(), packed_.data(),
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
                  const float* input_row = (id < 0 || ih < 0)
                                               ? zero.data()
                                               : image + (id * g.input[1] + ih) * row_floats;
                  row_inputs[kd * g.kernel[1] + kh] = input_row + column * channels;
                }
              }
              ukernels::f32_dwconv_rows_nhwc_avx2_fma(
                  i1 - i0, channels, row_taps, kernel_w, row_inputs.data(), stride_w * channels,
                  dilation_w * channels, packed_.data(), out + i0 * channels, channels, epilogue.lo,
                  epilogue.hi);
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

  const int64_t groups_;
  const int64_t in_per_group_;
  const int64_t out_per_group_;
  const std::array<int64_t, 3> kernel_;
  const int64_t taps_;
  const bool depthwise_;
  // GEMM path: tile (mr_ pixels x nr_ channels) and packed block size.
  int64_t nr_ = 0;
  int64_t mr_ = 0;
  int64_t blocks_per_group_ = 0;
  int64_t block_floats_ = 0;
  ukernels::F32IgemmFn igemm_ = nullptr;
  std::string kernel_name_;
  std::vector<float> packed_;
  // Pointwise path (1x1 layers with one group; see UsesPointwise()).
  ukernels::F32GemmFn pointwise_ = nullptr;
  int64_t pointwise_mr_ = 0;
  int64_t pointwise_nr_ = 0;
  int64_t pointwise_block_floats_ = 0;
  std::string pointwise_name_;
  std::vector<float> pointwise_packed_;
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

std::unique_ptr<ConvOperator> CreateFastConvOperator(const ConvSpec& spec,
                                                     absl::Span<const float> weight,
                                                     absl::Span<const float> bias, Isa isa) {
  return std::make_unique<FastConvOperator>(spec, weight, bias, isa);
}

}  // namespace kernels
}  // namespace convserve
