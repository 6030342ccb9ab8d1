// half_avx512f.cc: 16-lane conversions, compiled with -mavx512f.
// The loops load a whole vector before storing its result, so FloatToHalf
// may narrow in place (each store ends before the next load's bytes begin).
#include <immintrin.h>

#include "core/half.h"
#include "core/half_kernels.h"

namespace convserve {
namespace half_kernels {

void Float16ToFloatAvx512f(const uint16_t* in, size_t count, float* out) {
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i));
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(half));
  }
  HalfToFloat(HalfIsa::kScalar, HalfType::kFloat16, in + i, count - i, out + i);
}

void FloatToFloat16Avx512f(const float* in, size_t count, uint16_t* out) {
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m512 values = _mm512_loadu_ps(in + i);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm512_cvtps_ph(values, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  FloatToHalf(HalfIsa::kScalar, HalfType::kFloat16, in + i, count - i, out + i);
}

void Bfloat16ToFloatAvx512f(const uint16_t* in, size_t count, float* out) {
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i));
    const __m512i bits = _mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16);
    _mm512_storeu_si512(out + i, bits);
  }
  HalfToFloat(HalfIsa::kScalar, HalfType::kBfloat16, in + i, count - i, out + i);
}

// Not AVX512_BF16's vcvtneps2bf16: it treats float32 subnormal inputs as zero,
// which the reference rounding (and torch's) does not. Integer rounding as
// in Float32ToBfloat16 instead; the conversion is bound by memory anyway.
void FloatToBfloat16Avx512f(const float* in, size_t count, uint16_t* out) {
  size_t i = 0;
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i bias = _mm512_set1_epi32(0x7fff);
  const __m512i quiet_bit = _mm512_set1_epi32(0x40);
  const __m512i magnitude_mask = _mm512_set1_epi32(0x7fffffff);
  const __m512i infinity = _mm512_set1_epi32(0x7f800000);
  for (; i + 16 <= count; i += 16) {
    const __m512i bits = _mm512_loadu_si512(in + i);
    const __m512i high = _mm512_srli_epi32(bits, 16);
    const __m512i odd = _mm512_and_si512(high, one);
    const __m512i rounded =
        _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(odd, bias)), 16);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(bits, magnitude_mask), infinity);
    const __m512i lanes = _mm512_mask_or_epi32(rounded, nan, high, quiet_bit);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(lanes));
  }
  FloatToHalf(HalfIsa::kScalar, HalfType::kBfloat16, in + i, count - i, out + i);
}

}  // namespace half_kernels
}  // namespace convserve
