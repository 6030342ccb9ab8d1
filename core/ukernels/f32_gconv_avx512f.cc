// f32_gconv_avx512f.cc: the grouped-convolution micro-kernel for groups of 8 input and 8 output
// channels on AVX-512F, two groups per zmm. Compiled with -mavx512f -mfma.
//
// A tile of the indirect GEMM broadcasts one input value per FMA and fills a vector with one
// group's output channels, so 8-channel groups leave half a zmm idle. Here a vector runs along
// the 16 input channels of two adjacent groups instead (one contiguous load per pixel and tap):
// accumulator j of a pixel sums in[k] * w[j][k] for both groups' k at once, every lane useful, and
// the 8 accumulators are reduced across their 8-lane halves once per pixel, after every tap.
#include <immintrin.h>

#include <cassert>
#include <cstddef>

#include "core/ukernels/ukernels.h"

namespace convserve {
namespace ukernels {
namespace {

// Sums each 8-lane half of acc[0..7]: result lane h * 8 + j = sum of acc[j]'s
// lanes [8h, 8h + 8).
inline __m512 ReduceHalves(const __m512 (&acc)[8]) {
  __m512 pairs[4];
  for (int i = 0; i < 4; ++i) {
    // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] of a = acc[2i], b = acc[2i+1].
    pairs[i] = _mm512_add_ps(_mm512_unpacklo_ps(acc[2 * i], acc[2 * i + 1]),
                             _mm512_unpackhi_ps(acc[2 * i], acc[2 * i + 1]));
  }
  __m512 quads[2];
  for (int i = 0; i < 2; ++i) {
    // Per 128-bit lane: the lane sums of acc[4i .. 4i+3].
    quads[i] = _mm512_add_ps(_mm512_shuffle_ps(pairs[2 * i], pairs[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(pairs[2 * i], pairs[2 * i + 1], 0xEE));
  }
  // 128-bit lanes 0 and 1 are the first half, 2 and 3 the second.
  const __m512 even = _mm512_shuffle_f32x4(quads[0], quads[1], 0x88);  // [q0.0 q0.2 q1.0 q1.2]
  const __m512 odd = _mm512_shuffle_f32x4(quads[0], quads[1], 0xDD);   // [q0.1 q0.3 q1.1 q1.3]
  const __m512 sums = _mm512_add_ps(even, odd);   // [h0 j0-3, h1 j0-3, h0 j4-7, h1 j4-7]
  return _mm512_shuffle_f32x4(sums, sums, 0xD8);  // [h0 j0-3, h0 j4-7, h1 j0-3, h1 j4-7]
}

template <int MR>
void GconvTile(size_t taps, const float* const* indirection, size_t indirection_stride,
               size_t a_offset, const float* zero, const float* packed, float* c, size_t c_stride,
               float lo, float hi) {
  __m512 acc[MR][8];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  const float* w = packed + 16;
  for (size_t t = 0; t < taps; ++t) {
    __m512 a[MR];
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const float* p = indirection[i];
      a[i] = _mm512_loadu_ps(p == zero ? p : p + a_offset);
    }
    indirection += indirection_stride;
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m512 wj = _mm512_loadu_ps(w + 16 * j);
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(a[i], wj, acc[i][j]);
    }
    w += 128;
  }
  const __m512 bias = _mm512_loadu_ps(packed);
  const __m512 vlo = _mm512_set1_ps(lo);
  const __m512 vhi = _mm512_set1_ps(hi);
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
    const __m512 v = _mm512_add_ps(bias, ReduceHalves(acc[i]));
    // max/min return their second operand when one is NaN: NaN passes through.
    _mm512_storeu_ps(c + i * c_stride, _mm512_min_ps(vhi, _mm512_max_ps(vlo, v)));
  }
}

}  // namespace

void f32_gconv_g8_3x16_avx512f(size_t mr, size_t nc, size_t taps, size_t kc,
                               const float* const* indirection, size_t indirection_stride,
                               size_t a_offset, const float* zero, const float* packed, float* c,
                               size_t c_stride, float lo, float hi) {
  assert(mr >= 1 && mr <= 3 && nc == 16 && kc == 8);
  (void)nc, (void)kc;
  switch (mr) {
    case 3:
      GconvTile<3>(taps, indirection, indirection_stride, a_offset, zero, packed, c, c_stride, lo,
                   hi);
      break;
    case 2:
      GconvTile<2>(taps, indirection, indirection_stride, a_offset, zero, packed, c, c_stride, lo,
                   hi);
      break;
    default:
      GconvTile<1>(taps, indirection, indirection_stride, a_offset, zero, packed, c, c_stride, lo,
                   hi);
  }
}

}  // namespace ukernels
}  // namespace convserve
