// f32_dwconv_avx2_fma.cc: the depthwise micro-kernels (AVX2 + FMA) over a channels-last tensor.
// Compiled with -mavx2 -mfma.
//
// Vectors run along channels, so each tap is one contiguous load per 8 channels.
// Tiles of 4 pixels x 16 channels keep 8 accumulator chains in flight and
// share each weight vector between the four pixels, so weights are loaded half
// as often as with 2 pixels x 32 channels. One template serves both
// ways of finding a tap's input: a per-pixel indirection buffer (borders) and
// row pointers plus fixed steps (interior pixels, no per-pixel setup).
#include <immintrin.h>

#include <cassert>
#include <cstddef>

#include "core/ukernels/ukernels.h"
#include "core/ukernels/ymm.h"

namespace convserve {
namespace ukernels {
namespace {

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

// PX pixels x NV * 8 channels starting at `ch`. KW > 0 fixes the kw loop's
// trip count at compile time (the common 3-wide kernels), 0 reads in.kw.
template <int PX, int NV, int KW, typename Taps>
inline void DwconvTile(const Taps& in, size_t ch, size_t channels_padded, const float* packed,
                       float* out, size_t out_stride, __m256 vlo, __m256 vhi) {
  __m256 acc[PX][NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    const __m256 bias = _mm256_loadu_ps(packed + ch + 8 * j);
#pragma GCC unroll 4
    for (int x = 0; x < PX; ++x) acc[x][j] = bias;
  }
  const float* w = packed + channels_padded + ch;
  for (size_t r = 0; r < in.rows; ++r) {
    const float* a[PX];
#pragma GCC unroll 4
    for (int x = 0; x < PX; ++x) a[x] = in.RowBase(x, r) + ch;
    const size_t kw = KW > 0 ? KW : in.kw;
#pragma GCC unroll 4
    for (size_t k = 0; k < kw; ++k) {
      __m256 wv[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) wv[j] = _mm256_loadu_ps(w + 8 * j);
#pragma GCC unroll 4
      for (int x = 0; x < PX; ++x) {
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) {
          acc[x][j] = _mm256_fmadd_ps(_mm256_loadu_ps(a[x] + 8 * j), wv[j], acc[x][j]);
        }
        a[x] += in.tap_step;
      }
      w += channels_padded;
    }
  }
#pragma GCC unroll 4
  for (int x = 0; x < PX; ++x) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      _mm256_storeu_ps(out + x * out_stride + ch + 8 * j,
                       _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc[x][j])));
    }
  }
}

// Pixels [0, PX) of `in`/`out`, every channel.
template <int PX, int KW, typename Taps>
inline void DwconvPixels(const Taps& in, size_t channels, size_t channels_padded,
                         const float* packed, float* out, size_t out_stride, __m256 vlo,
                         __m256 vhi) {
  size_t ch = 0;
  for (; ch + 16 <= channels; ch += 16) {
    DwconvTile<PX, 2, KW>(in, ch, channels_padded, packed, out, out_stride, vlo, vhi);
  }
  for (; ch + 8 <= channels; ch += 8) {
    DwconvTile<PX, 1, KW>(in, ch, channels_padded, packed, out, out_stride, vlo, vhi);
  }
  if (ch < channels) {
    // Masked loads: the last pixel's channels may end the input buffer.
    const __m256i mask = FirstLanes(channels - ch);
    for (int x = 0; x < PX; ++x) {
      __m256 acc = _mm256_loadu_ps(packed + ch);
      const float* w = packed + channels_padded + ch;
      for (size_t r = 0; r < in.rows; ++r) {
        const float* a = in.RowBase(x, r) + ch;
        for (size_t k = 0; k < in.kw; ++k) {
          acc = _mm256_fmadd_ps(_mm256_maskload_ps(a, mask), _mm256_loadu_ps(w), acc);
          a += in.tap_step;
          w += channels_padded;
        }
      }
      _mm256_maskstore_ps(out + x * out_stride + ch, mask,
                          _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc)));
    }
  }
}

template <int KW, typename Taps>
void DwconvWithKw(Taps in, size_t pixels, size_t channels, const float* packed, float* out,
                  size_t out_stride, float lo, float hi) {
  const size_t channels_padded = (channels + 7) / 8 * 8;
  const __m256 vlo = _mm256_set1_ps(lo);
  const __m256 vhi = _mm256_set1_ps(hi);
  size_t p = 0;
  for (; p + 4 <= pixels; p += 4) {
    DwconvPixels<4, KW>(in, channels, channels_padded, packed, out + p * out_stride, out_stride,
                        vlo, vhi);
    in = in.Advance(4);
  }
  for (; p < pixels; ++p) {
    DwconvPixels<1, KW>(in, channels, channels_padded, packed, out + p * out_stride, out_stride,
                        vlo, vhi);
    in = in.Advance(1);
  }
}

template <typename Taps>
void Dwconv(Taps in, size_t pixels, size_t channels, const float* packed, float* out,
            size_t out_stride, float lo, float hi) {
  assert(channels >= 1 && in.rows * in.kw >= 1);
  if (in.kw == 3) {
    DwconvWithKw<3>(in, pixels, channels, packed, out, out_stride, lo, hi);
  } else {
    DwconvWithKw<0>(in, pixels, channels, packed, out, out_stride, lo, hi);
  }
}

}  // namespace

void f32_dwconv_nhwc_avx2_fma(size_t pixels, size_t channels, size_t taps,
                              const float* const* indirection, const float* packed, float* out,
                              size_t out_stride, float lo, float hi) {
  Dwconv(IndirectTaps{indirection, taps}, pixels, channels, packed, out, out_stride, lo, hi);
}

void f32_dwconv_rows_nhwc_avx2_fma(size_t pixels, size_t channels, size_t rows, size_t kw,
                                   const float* const* row_inputs, size_t pixel_step,
                                   size_t tap_step, const float* packed, float* out,
                                   size_t out_stride, float lo, float hi) {
  Dwconv(RowTaps{row_inputs, rows, kw, pixel_step, tap_step, 0}, pixels, channels, packed, out,
         out_stride, lo, hi);
}

}  // namespace ukernels
}  // namespace convserve
