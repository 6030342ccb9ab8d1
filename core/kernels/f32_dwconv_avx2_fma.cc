// Depthwise micro-kernel (AVX2 + FMA) over a channels-last tensor: vectors run
// along channels, so each tap is one contiguous load per 8 channels. The loop
// is memory-bound (one FMA per two loads); tiles of 2 pixels x 32 channels
// keep 8 accumulator chains in flight.
#include <immintrin.h>

#include <cassert>
#include <cstddef>

#include "core/kernels/avx2_lanes.h"
#include "core/kernels/micro_kernels.h"

namespace convserve {
namespace kernels {
namespace {

// PX pixels x NV * 8 channels starting at `ch`: PX * NV independent
// accumulator chains, so the FMA latency of the short tap loop is covered and
// each weight vector load serves PX pixels.
template <int PX, int NV>
inline void DwconvTile(size_t ch, size_t channels_padded, size_t taps, const float* const* ind,
                       const float* packed, float* out, size_t out_stride, __m256 vlo,
                       __m256 vhi) {
  __m256 acc[PX][NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    const __m256 bias = _mm256_loadu_ps(packed + ch + 8 * j);
#pragma GCC unroll 4
    for (int x = 0; x < PX; ++x) acc[x][j] = bias;
  }
  const float* w = packed + channels_padded + ch;
  for (size_t t = 0; t < taps; ++t) {
    __m256 wv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) wv[j] = _mm256_loadu_ps(w + 8 * j);
#pragma GCC unroll 4
    for (int x = 0; x < PX; ++x) {
      const float* a = ind[x * taps + t] + ch;
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        acc[x][j] = _mm256_fmadd_ps(_mm256_loadu_ps(a + 8 * j), wv[j], acc[x][j]);
      }
    }
    w += channels_padded;
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

// Pixels [0, PX) of `ind`/`out`, every channel.
template <int PX>
inline void DwconvPixels(size_t channels, size_t channels_padded, size_t taps,
                         const float* const* ind, const float* packed, float* out,
                         size_t out_stride, __m256 vlo, __m256 vhi) {
  size_t ch = 0;
  for (; ch + 32 <= channels; ch += 32) {
    DwconvTile<PX, 4>(ch, channels_padded, taps, ind, packed, out, out_stride, vlo, vhi);
  }
  for (; ch + 8 <= channels; ch += 8) {
    DwconvTile<PX, 1>(ch, channels_padded, taps, ind, packed, out, out_stride, vlo, vhi);
  }
  if (ch < channels) {
    // Masked loads: the last pixel's channels may end the input buffer.
    const __m256i mask = FirstLanes(channels - ch);
    for (int x = 0; x < PX; ++x) {
      __m256 acc = _mm256_loadu_ps(packed + ch);
      const float* w = packed + channels_padded + ch;
      for (size_t t = 0; t < taps; ++t) {
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(ind[x * taps + t] + ch, mask),
                              _mm256_loadu_ps(w), acc);
        w += channels_padded;
      }
      _mm256_maskstore_ps(out + x * out_stride + ch, mask,
                          _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc)));
    }
  }
}

}  // namespace

void f32_dwconv_nhwc_avx2_fma(size_t pixels, size_t channels, size_t taps,
                              const float* const* indirection, const float* packed, float* out,
                              size_t out_stride, float lo, float hi) {
  assert(channels >= 1 && taps >= 1);
  const size_t channels_padded = (channels + 7) / 8 * 8;
  const __m256 vlo = _mm256_set1_ps(lo);
  const __m256 vhi = _mm256_set1_ps(hi);
  size_t p = 0;
  for (; p + 2 <= pixels; p += 2) {
    DwconvPixels<2>(channels, channels_padded, taps, indirection + p * taps, packed,
                    out + p * out_stride, out_stride, vlo, vhi);
  }
  if (p < pixels) {
    DwconvPixels<1>(channels, channels_padded, taps, indirection + p * taps, packed,
                    out + p * out_stride, out_stride, vlo, vhi);
  }
}

}  // namespace kernels
}  // namespace convserve
