// conv_input.h: the input as the fast paths read it: the channels-last reorder (PrepareInput) and
// the indirection that says where each kernel tap of an output pixel reads (TapSources).
//
// Internal to core/fast/: include only from its sources.
#ifndef CONVSERVE_CORE_FAST_CONV_INPUT_H_
#define CONVSERVE_CORE_FAST_CONV_INPUT_H_

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/geometry.h"

namespace convserve {
namespace kernels {

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

// Whether PrepareInput() may write the W padding into its copy of the
// input: only while the padding is no wider than the row itself, so that
// the copy stays within twice the input whatever the pads (wider padding is
// left to the indirection's zero rows and index maps).
bool PaddingFitsInCopy(const ConvGeometry& g);

// Channels-last input is read in place unless its W padding or its
// groups are worth materialising (few channels per group: merging the Kw
// taps into K lengthens the micro-kernel's inner loop several-fold); only a
// consumer that merges the Kw taps (`merges_kw`: the indirect GEMM path, not
// the depthwise one) profits from that.
// Channels-first input is always reordered, and the reorder writes the W
// padding for free. The copy, when there is one, goes to *storage and the
// view points into it. Runs on the calling thread's TBB arena.
// REQUIRES: `input` holds g.input_elements() floats in g.data_layout; the CPU has AVX2 + FMA.
InputView PrepareInput(const ConvGeometry& g, const float* input, bool merges_kw,
                       std::unique_ptr<float[]>* storage);

// For one spatial axis: the input cell that output o reads at kernel offset
// k, at [o * kernel + k], or -1 for a zero cell. With `materialised` the cell
// is the padded coordinate (the view's rows hold the padding).
std::vector<int64_t> AxisSources(const ConvGeometry& g, int axis, bool materialised);

// Fills the W padding cells of one materialised row (pixels of `channels`
// floats) whose interior (W pixels) starts at pixel pad_begin.
void FillRowPadding(const ConvGeometry& g, int64_t channels, float* row);

// Where each kernel tap of an output pixel reads: the indirection the
// micro-kernels consume. Built from per-axis source tables, so one pointer
// costs three table look-ups. Thread-safety: Fill() is const and may run
// concurrently; `g` and `zero` must outlive the object.
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

  // Writes the taps' sources of output pixels [p_begin, p_end) of image n:
  // pointers (Slot = const float*: into image n, or `zero`), or offsets in
  // floats from the start of an image (Slot = int32_t: -1 for `zero`; `n` is
  // ignored; REQUIRES: the view's image_floats fit in int32_t).
  // Pixels are laid out in groups of `group` (a micro-kernel tile): pixel q
  // of the range, tap t goes to slots[(q / group) * taps * group + t * group +
  // q % group]. Output coordinates advance incrementally: this runs once per
  // pixel per call, which matters for the memory-bound depthwise path.
  // (Defined in the header so that each path's work loop may inline it.)
  template <typename Slot>
  void Fill(int64_t n, int64_t p_begin, int64_t p_end, int64_t group, Slot* slots) const {
    const ConvGeometry& g = g_;
    const int64_t channels = view_.pixel_floats;
    const int64_t taps = g.kernel[0] * g.kernel[1] * kw_taps_;
    const float* image = view_.base + n * view_.image_floats;
    int64_t ow = p_begin % g.output[2];
    int64_t oh = p_begin / g.output[2] % g.output[1];
    int64_t od = p_begin / (g.output[2] * g.output[1]);
    int64_t in_group = 0;
    for (int64_t p = p_begin; p < p_end; ++p) {
      Slot* slot = slots + in_group;
      for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
        const int64_t id = d_[od * g.kernel[0] + kd];
        for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
          const int64_t ih = h_[oh * g.kernel[1] + kh];
          const int64_t row =
              (id < 0 || ih < 0) ? -1 : (id * g.input[1] + ih) * view_.row_pixels * channels;
          const int64_t* iw = w_.data() + ow * g.kernel[2];
          for (int64_t kw = 0; kw < kw_taps_; ++kw) {
            const bool zero = row < 0 || iw[kw] < 0;
            if constexpr (std::is_same_v<Slot, int32_t>) {
              *slot = zero ? -1 : static_cast<int32_t>(row + iw[kw] * channels);
            } else {
              *slot = zero ? zero_ : image + row + iw[kw] * channels;
            }
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

// The tap offsets (TapSources::Fill<int32_t>) of every output pixel of an
// image, in tiles of the micro-kernel's rows, for the few geometries an
// operator ran last, so that repeated calls on the same geometry stop
// rebuilding them: a work item only turns its slice into pointers
// (ToPointers()). The offsets are relative to an image's start, so one table
// serves every input buffer, batch size and image of a batch.
//
// Memory: at most kEntries tables of at most kMaxEntryBytes each (4 MiB per
// operator), plus tables evicted while a concurrent Run() still reads them
// (one per such Run()). Geometries whose table would be larger are not cached
// (Find() returns null and the caller fills pointers per work item), so
// hostile shapes cannot grow it. Thread-safety: every method may be called
// concurrently (one mutex, held only to look up and insert).
class TapOffsetCache {
 public:
  static constexpr size_t kEntries = 4;
  static constexpr int64_t kMaxEntryBytes = int64_t{1} << 20;

  using Table = std::vector<int32_t>;

  // The table for `sources` (built from `g` and `view` with `kw_taps` taps per
  // kernel row), `group` pixels per tile, for one operator's layer (the key
  // leaves out what the layer fixes): from the cache, or built and
  // inserted (evicting the least recently used entry); null when the table
  // would exceed kMaxEntryBytes or an offset would not fit in int32_t.
  std::shared_ptr<const Table> Find(const ConvGeometry& g, const InputView& view, int64_t kw_taps,
                                    int64_t group, const TapSources& sources);

 private:
  using Key = std::array<int64_t, 15>;
  std::mutex mutex_;
  std::vector<std::pair<Key, std::shared_ptr<const Table>>> entries_;  // Most recent first.
};

// slots[i] = the pointer offsets[i] stands for in an image starting at
// `image`: image + offsets[i], or `zero` for -1.
void ToPointers(const int32_t* offsets, int64_t count, const float* image, const float* zero,
                const float** slots);

}  // namespace kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_FAST_CONV_INPUT_H_
