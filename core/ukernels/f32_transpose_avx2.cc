// f32_transpose_avx2.cc: the layout change between channels-first and channels-last (AVX2): 8x8
// blocks transposed in registers, scalar edges. Compiled with -mavx2 -mfma.
#include <immintrin.h>

#include <cstddef>

#include "core/ukernels/ukernels.h"

namespace convserve {
namespace ukernels {

void f32_transpose_8x8_avx2(size_t rows, size_t cols, const float* src, size_t src_stride,
                            float* dst, size_t dst_stride) {
  size_t i = 0;
  for (; i + 8 <= rows; i += 8) {
    size_t j = 0;
    for (; j + 8 <= cols; j += 8) {
      const float* s = src + i * src_stride + j;
      __m256 r0 = _mm256_loadu_ps(s + 0 * src_stride);
      __m256 r1 = _mm256_loadu_ps(s + 1 * src_stride);
      __m256 r2 = _mm256_loadu_ps(s + 2 * src_stride);
      __m256 r3 = _mm256_loadu_ps(s + 3 * src_stride);
      __m256 r4 = _mm256_loadu_ps(s + 4 * src_stride);
      __m256 r5 = _mm256_loadu_ps(s + 5 * src_stride);
      __m256 r6 = _mm256_loadu_ps(s + 6 * src_stride);
      __m256 r7 = _mm256_loadu_ps(s + 7 * src_stride);
      const __m256 t0 = _mm256_unpacklo_ps(r0, r1);
      const __m256 t1 = _mm256_unpackhi_ps(r0, r1);
      const __m256 t2 = _mm256_unpacklo_ps(r2, r3);
      const __m256 t3 = _mm256_unpackhi_ps(r2, r3);
      const __m256 t4 = _mm256_unpacklo_ps(r4, r5);
      const __m256 t5 = _mm256_unpackhi_ps(r4, r5);
      const __m256 t6 = _mm256_unpacklo_ps(r6, r7);
      const __m256 t7 = _mm256_unpackhi_ps(r6, r7);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44);
      const __m256 u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44);
      const __m256 u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44);
      const __m256 u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44);
      const __m256 u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      r0 = _mm256_permute2f128_ps(u0, u4, 0x20);
      r1 = _mm256_permute2f128_ps(u1, u5, 0x20);
      r2 = _mm256_permute2f128_ps(u2, u6, 0x20);
      r3 = _mm256_permute2f128_ps(u3, u7, 0x20);
      r4 = _mm256_permute2f128_ps(u0, u4, 0x31);
      r5 = _mm256_permute2f128_ps(u1, u5, 0x31);
      r6 = _mm256_permute2f128_ps(u2, u6, 0x31);
      r7 = _mm256_permute2f128_ps(u3, u7, 0x31);
      float* d = dst + j * dst_stride + i;
      _mm256_storeu_ps(d + 0 * dst_stride, r0);
      _mm256_storeu_ps(d + 1 * dst_stride, r1);
      _mm256_storeu_ps(d + 2 * dst_stride, r2);
      _mm256_storeu_ps(d + 3 * dst_stride, r3);
      _mm256_storeu_ps(d + 4 * dst_stride, r4);
      _mm256_storeu_ps(d + 5 * dst_stride, r5);
      _mm256_storeu_ps(d + 6 * dst_stride, r6);
      _mm256_storeu_ps(d + 7 * dst_stride, r7);
    }
    for (; j < cols; ++j) {
      for (size_t r = i; r < i + 8; ++r) dst[j * dst_stride + r] = src[r * src_stride + j];
    }
  }
  for (; i < rows; ++i) {
    for (size_t j = 0; j < cols; ++j) dst[j * dst_stride + i] = src[i * src_stride + j];
  }
}

}  // namespace ukernels
}  // namespace convserve
