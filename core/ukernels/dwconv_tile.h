// dwconv_tile.h: the template every depthwise micro-kernel is made from (channels-last tensors).
//
// Include only from an ISA translation unit, which supplies `V`, a traits type over its vector
// register (ymm.h, zmm.h): Reg, kLanes, Load, LoadFirst, Splat, Fma, Clamp, Store, StoreFirst.
// The contracts are f32_dwconv_nhwc_* and f32_dwconv_rows_nhwc_* (ukernels.h).
//
// Vectors run along channels, so each tap is one contiguous load per kLanes channels. Tiles of
// PX pixels x 2 vectors share each weight vector between the PX pixels (PX = 4 on ymm's 16
// registers, 8 on zmm's 32: 8 or 16 accumulator chains in flight). One template serves both ways
// of finding a tap's input: a per-pixel indirection buffer (borders) and row pointers plus fixed
// steps (interior pixels, no per-pixel setup).
#ifndef CONVSERVE_CORE_UKERNELS_DWCONV_TILE_H_
#define CONVSERVE_CORE_UKERNELS_DWCONV_TILE_H_

#include <cassert>
#include <cstddef>
#include <type_traits>

#include "core/ukernels/ukernels.h"

namespace convserve {
namespace ukernels {
namespace dwconv {

// Packed channels are padded to kDwconvChannelPad (ukernels.h): weight vectors
// are read whole, past `channels`, on every ISA.
constexpr size_t kChannelPad = kDwconvChannelPad;

// Taps are visited as rows x kw (tap t = r * kw + k); the input of pixel x
// of the tile at that tap is RowBase(x, r) + k * tap_step.

// Through the indirection buffer: `rows` = taps, kw = 1.
struct IndirectTaps {
  const float* const* indirection;  // [pixel][tap]
  size_t rows;
  static constexpr size_t kw = 1;
  static constexpr size_t tap_step = 0;
  const float* RowBase(size_t x, size_t r) const { return indirection[x * rows + r]; }
  IndirectTaps Advance(size_t pixels) const { return {indirection + pixels * rows, rows}; }
};

// Row pointers and fixed steps: row_inputs[r] + x * pixel_step + k * tap_step.
struct RowTaps {
  const float* const* row_inputs;
  size_t rows;
  size_t kw;
  size_t pixel_step;
  size_t tap_step;
  size_t offset;  // pixel_step * (pixels already done)
  const float* RowBase(size_t x, size_t r) const { return row_inputs[r] + offset + x * pixel_step; }
  RowTaps Advance(size_t pixels) const {
    return {row_inputs, rows, kw, pixel_step, tap_step, offset + pixels * pixel_step};
  }
};

// PX pixels x NV vectors of channels starting at `ch`; with `kMasked`, one
// vector whose first `lanes` lanes are live (the channel remainder: masked
// loads, as the last pixel's channels may end the input buffer). KW > 0 fixes
// the kw loop's trip count at compile time (the common 3-wide kernels), 0
// reads in.kw.
template <typename V, int PX, int NV, int KW, bool kMasked, typename Taps>
inline void Tile(const Taps& in, size_t ch, size_t lanes, size_t channels_padded,
                 const float* packed, float* out, size_t out_stride, typename V::Reg vlo,
                 typename V::Reg vhi) {
  using Reg = typename V::Reg;
  constexpr int kLanes = V::kLanes;
  Reg acc[PX][NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    const Reg bias = V::Load(packed + ch + kLanes * j);
#pragma GCC unroll 8
    for (int x = 0; x < PX; ++x) acc[x][j] = bias;
  }
  const float* w = packed + channels_padded + ch;
  for (size_t r = 0; r < in.rows; ++r) {
    const float* a[PX];
#pragma GCC unroll 8
    for (int x = 0; x < PX; ++x) a[x] = in.RowBase(x, r) + ch;
    const size_t kw = KW > 0 ? KW : in.kw;
#pragma GCC unroll 4
    for (size_t k = 0; k < kw; ++k) {
      Reg wv[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) wv[j] = V::Load(w + kLanes * j);
#pragma GCC unroll 8
      for (int x = 0; x < PX; ++x) {
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) {
          const Reg va = kMasked ? V::LoadFirst(a[x], lanes) : V::Load(a[x] + kLanes * j);
          acc[x][j] = V::Fma(va, wv[j], acc[x][j]);
        }
        a[x] += in.tap_step;
      }
      w += channels_padded;
    }
  }
#pragma GCC unroll 8
  for (int x = 0; x < PX; ++x) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      float* o = out + x * out_stride + ch + kLanes * j;
      const Reg v = V::Clamp(acc[x][j], vlo, vhi);
      if (kMasked) {
        V::StoreFirst(o, v, lanes);
      } else {
        V::Store(o, v);
      }
    }
  }
}

// Interior pixels of a 3-wide kernel whose W taps step as far as its pixels
// (stride == dilation along W, e.g. both 1): pixel x's tap k reads column
// x + k, so the tile loads each of its PX + 2 columns once per kernel row and
// feeds it to the up to 3 pixels that read it (a third of Tile()'s loads).
// One vector of channels starting at `ch`, `lanes` of them live when kMasked.
template <typename V, int PX, bool kMasked>
inline void SlidingTile(const RowTaps& in, size_t ch, size_t lanes, size_t channels_padded,
                        const float* packed, float* out, size_t out_stride, typename V::Reg vlo,
                        typename V::Reg vhi) {
  using Reg = typename V::Reg;
  Reg acc[PX];
  const Reg bias = V::Load(packed + ch);
#pragma GCC unroll 16
  for (int x = 0; x < PX; ++x) acc[x] = bias;
  const float* w = packed + channels_padded + ch;
  for (size_t r = 0; r < in.rows; ++r) {
    const float* a = in.RowBase(0, r) + ch;
    const Reg w0 = V::Load(w);
    const Reg w1 = V::Load(w + channels_padded);
    const Reg w2 = V::Load(w + 2 * channels_padded);
#pragma GCC unroll 18
    for (int c = 0; c < PX + 2; ++c) {
      const Reg v = kMasked ? V::LoadFirst(a, lanes) : V::Load(a);
      a += in.tap_step;
      if (c < PX) acc[c] = V::Fma(v, w0, acc[c]);
      if (c >= 1 && c - 1 < PX) acc[c - 1] = V::Fma(v, w1, acc[c - 1]);
      if (c >= 2) acc[c - 2] = V::Fma(v, w2, acc[c - 2]);
    }
    w += 3 * channels_padded;
  }
#pragma GCC unroll 16
  for (int x = 0; x < PX; ++x) {
    const Reg v = V::Clamp(acc[x], vlo, vhi);
    if (kMasked) {
      V::StoreFirst(out + x * out_stride + ch, v, lanes);
    } else {
      V::Store(out + x * out_stride + ch, v);
    }
  }
}

// Pixels [0, PX) of `in`/`out`, every channel.
template <typename V, int PX, int KW, typename Taps>
inline void Pixels(const Taps& in, size_t channels, size_t channels_padded, const float* packed,
                   float* out, size_t out_stride, typename V::Reg vlo, typename V::Reg vhi) {
  constexpr size_t kLanes = V::kLanes;
  size_t ch = 0;
  if constexpr (KW == 3 && std::is_same_v<Taps, RowTaps>) {
    if (in.pixel_step == in.tap_step) {
      for (; ch + kLanes <= channels; ch += kLanes) {
        SlidingTile<V, PX, false>(in, ch, kLanes, channels_padded, packed, out, out_stride, vlo,
                                  vhi);
      }
      if (ch < channels) {
        SlidingTile<V, PX, true>(in, ch, channels - ch, channels_padded, packed, out, out_stride,
                                 vlo, vhi);
      }
      return;
    }
  }
  for (; ch + 2 * kLanes <= channels; ch += 2 * kLanes) {
    Tile<V, PX, 2, KW, false>(in, ch, kLanes, channels_padded, packed, out, out_stride, vlo, vhi);
  }
  if (ch + kLanes <= channels) {
    Tile<V, PX, 1, KW, false>(in, ch, kLanes, channels_padded, packed, out, out_stride, vlo, vhi);
    ch += kLanes;
  }
  if (ch < channels) {
    Tile<V, PX, 1, KW, true>(in, ch, channels - ch, channels_padded, packed, out, out_stride, vlo,
                             vhi);
  }
}

template <typename V, int PX, int KW, typename Taps>
void WithKw(Taps in, size_t pixels, size_t channels, const float* packed, float* out,
            size_t out_stride, float lo, float hi) {
  const size_t channels_padded = (channels + kChannelPad - 1) / kChannelPad * kChannelPad;
  const typename V::Reg vlo = V::Splat(lo);
  const typename V::Reg vhi = V::Splat(hi);
  size_t p = 0;
  for (; p + PX <= pixels; p += PX) {
    Pixels<V, PX, KW>(in, channels, channels_padded, packed, out + p * out_stride, out_stride, vlo,
                      vhi);
    in = in.Advance(PX);
  }
  if (PX > 4) {
    for (; p + 4 <= pixels; p += 4) {
      Pixels<V, 4, KW>(in, channels, channels_padded, packed, out + p * out_stride, out_stride, vlo,
                       vhi);
      in = in.Advance(4);
    }
  }
  for (; p < pixels; ++p) {
    Pixels<V, 1, KW>(in, channels, channels_padded, packed, out + p * out_stride, out_stride, vlo,
                     vhi);
    in = in.Advance(1);
  }
}

// Every pixel of `in`, PX at a time.
template <typename V, int PX, typename Taps>
void Run(Taps in, size_t pixels, size_t channels, const float* packed, float* out,
         size_t out_stride, float lo, float hi) {
  assert(channels >= 1 && in.rows * in.kw >= 1);
  if (in.kw == 3) {
    WithKw<V, PX, 3>(in, pixels, channels, packed, out, out_stride, lo, hi);
  } else {
    WithKw<V, PX, 0>(in, pixels, channels, packed, out, out_stride, lo, hi);
  }
}

}  // namespace dwconv
}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_UKERNELS_DWCONV_TILE_H_
