// Indirect-GEMM micro-kernels (AVX2 + FMA), generated from one template over
// the tile: MR output pixels x NV vectors of 8 output channels.
#include <immintrin.h>

#include <cassert>
#include <cstddef>

#include "core/kernels/avx2_lanes.h"
#include "core/kernels/micro_kernels.h"

namespace convserve {
namespace kernels {
namespace {

// One tile with the row count fixed at compile time, so that the MR x NV
// accumulators live in registers.
template <int MR, int NV>
void IgemmTile(size_t nc, size_t taps, size_t kc, const float* const* indirection,
               size_t indirection_stride, size_t a_offset, const float* zero, const float* packed,
               float* c, size_t c_stride, float lo, float hi) {
  __m256 acc[MR][NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    const __m256 bias = _mm256_loadu_ps(packed + 8 * j);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) acc[i][j] = bias;
  }
  const float* w = packed + 8 * NV;
  for (size_t t = 0; t < taps; ++t) {
    const float* a[MR];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const float* p = indirection[i];
      a[i] = p == zero ? p : p + a_offset;
    }
    indirection += indirection_stride;
    for (size_t k = 0; k < kc; ++k) {
      __m256 b[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) b[j] = _mm256_loadu_ps(w + 8 * j);
      w += 8 * NV;
#pragma GCC unroll 12
      for (int i = 0; i < MR; ++i) {
        const __m256 va = _mm256_broadcast_ss(a[i] + k);
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[i][j] = _mm256_fmadd_ps(va, b[j], acc[i][j]);
      }
    }
  }
  const __m256 vlo = _mm256_set1_ps(lo);
  const __m256 vhi = _mm256_set1_ps(hi);
  if (nc == 8 * NV) {
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        _mm256_storeu_ps(c + i * c_stride + 8 * j,
                         _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc[i][j])));
      }
    }
    return;
  }
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    const size_t first = 8 * static_cast<size_t>(j);
    if (first >= nc) break;
    const size_t lanes = nc - first < 8 ? nc - first : 8;
    const __m256i mask = FirstLanes(lanes);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      _mm256_maskstore_ps(c + i * c_stride + first, mask,
                          _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc[i][j])));
    }
  }
}

using TileFn = void (*)(size_t, size_t, size_t, const float* const*, size_t, size_t, const float*,
                        const float*, float*, size_t, float, float);

template <int NV, int... Rows>
struct TileTable {
  static constexpr TileFn kByRows[] = {nullptr, &IgemmTile<Rows, NV>...};
};

}  // namespace

void f32_igemm_6x16_avx2_fma(size_t mr, size_t nc, size_t taps, size_t kc,
                             const float* const* indirection, size_t indirection_stride,
                             size_t a_offset, const float* zero, const float* packed, float* c,
                             size_t c_stride, float lo, float hi) {
  assert(mr >= 1 && mr <= 6 && nc >= 1 && nc <= 16);
  TileTable<2, 1, 2, 3, 4, 5, 6>::kByRows[mr](nc, taps, kc, indirection, indirection_stride,
                                               a_offset, zero, packed, c, c_stride, lo, hi);
}

void f32_igemm_12x8_avx2_fma(size_t mr, size_t nc, size_t taps, size_t kc,
                             const float* const* indirection, size_t indirection_stride,
                             size_t a_offset, const float* zero, const float* packed, float* c,
                             size_t c_stride, float lo, float hi) {
  assert(mr >= 1 && mr <= 12 && nc >= 1 && nc <= 8);
  TileTable<1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12>::kByRows[mr](
      nc, taps, kc, indirection, indirection_stride, a_offset, zero, packed, c, c_stride, lo, hi);
}

float f32_fma_peak_12x8_avx2_fma(size_t iterations) {
  __m256 acc[12];
  const __m256 x = _mm256_set1_ps(0.999999f);
  const __m256 y = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  for (size_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  }
  __m256 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm256_add_ps(sum, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  return lanes[0] + lanes[7];
}

}  // namespace kernels
}  // namespace convserve
