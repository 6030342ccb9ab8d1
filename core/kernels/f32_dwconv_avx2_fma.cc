// Depthwise micro-kernel (AVX2 + FMA) over a channels-last tensor: vectors run
// along channels, so each tap is one contiguous load per 8 channels. The loop
// is memory-bound (one FMA per two loads), so it favours simple streaming over
// register tiling: up to 32 channels of one pixel stay in registers per pass.
#include <immintrin.h>

#include <cassert>
#include <cstddef>

#include "core/kernels/avx2_lanes.h"
#include "core/kernels/micro_kernels.h"

namespace convserve {
namespace kernels {
namespace {

// Full vectors: NV * 8 channels starting at `ch`.
template <int NV>
inline void DwconvChannels(size_t ch, size_t channels_padded, size_t taps,
                           const float* const* ind, const float* packed, float* out, __m256 vlo,
                           __m256 vhi) {
  __m256 acc[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) acc[j] = _mm256_loadu_ps(packed + ch + 8 * j);
  const float* w = packed + channels_padded + ch;
  for (size_t t = 0; t < taps; ++t) {
    const float* a = ind[t] + ch;
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(a + 8 * j), _mm256_loadu_ps(w + 8 * j), acc[j]);
    }
    w += channels_padded;
  }
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    _mm256_storeu_ps(out + ch + 8 * j, _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc[j])));
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
  for (size_t p = 0; p < pixels; ++p) {
    const float* const* ind = indirection + p * taps;
    float* o = out + p * out_stride;
    size_t ch = 0;
    for (; ch + 32 <= channels; ch += 32) {
      DwconvChannels<4>(ch, channels_padded, taps, ind, packed, o, vlo, vhi);
    }
    for (; ch + 8 <= channels; ch += 8) {
      DwconvChannels<1>(ch, channels_padded, taps, ind, packed, o, vlo, vhi);
    }
    if (ch < channels) {
      // Masked loads: the last pixel's channels may end the input buffer.
      const __m256i mask = FirstLanes(channels - ch);
      __m256 acc = _mm256_loadu_ps(packed + ch);
      const float* w = packed + channels_padded + ch;
      for (size_t t = 0; t < taps; ++t) {
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(ind[t] + ch, mask), _mm256_loadu_ps(w), acc);
        w += channels_padded;
      }
      _mm256_maskstore_ps(o + ch, mask, _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc)));
    }
  }
}

}  // namespace kernels
}  // namespace convserve
