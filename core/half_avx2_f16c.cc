// half_avx2_f16c.cc: 8-lane conversions, compiled with -mavx2 -mf16c.
// The loops load a whole vector before storing its result, so FloatToHalf
// may narrow in place (each store ends before the next load's bytes begin).
#include <immintrin.h>

#include "core/half.h"
#include "core/half_kernels.h"

namespace convserve {
namespace half_kernels {
namespace {

// Float32 bits (8 lanes) rounded to bfloat16 bits in the low 16 bits of each
// lane: round to nearest even by adding 0x7fff plus the kept lsb, NaN made
// quiet instead (Float32ToBfloat16's steps).
__m256i RoundToBfloat16(__m256i bits) {
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(
      _mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
  const __m256i magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7f800000));
  return _mm256_blendv_epi8(rounded, quiet, nan);
}

}  // namespace

void Float16ToFloatAvx2F16c(const uint16_t* in, size_t count, float* out) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(half));
  }
  HalfToFloat(HalfIsa::kScalar, HalfType::kFloat16, in + i, count - i, out + i);
}

void FloatToFloat16Avx2F16c(const float* in, size_t count, uint16_t* out) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 values = _mm256_loadu_ps(in + i);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(values, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  FloatToHalf(HalfIsa::kScalar, HalfType::kFloat16, in + i, count - i, out + i);
}

void Bfloat16ToFloatAvx2(const uint16_t* in, size_t count, float* out) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    const __m256i bits = _mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), bits);
  }
  HalfToFloat(HalfIsa::kScalar, HalfType::kBfloat16, in + i, count - i, out + i);
}

void FloatToBfloat16Avx2(const float* in, size_t count, uint16_t* out) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256i lanes =
        RoundToBfloat16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i)));
    // Every lane holds at most 0xffff, so the unsigned saturating pack keeps
    // it; packing the vector with itself leaves lanes 0-3 and 4-7 in the low
    // 64 bits of each 128-bit half, which the permute brings together.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lanes, lanes), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(packed));
  }
  FloatToHalf(HalfIsa::kScalar, HalfType::kBfloat16, in + i, count - i, out + i);
}

}  // namespace half_kernels
}  // namespace convserve
