// half_scalar.h: the scalar float32 <-> float16 / bfloat16 conversions of
// core/half.h (see there for the rounding rules), header-only and
// dependency-free so that clients can share them without linking the core.
#ifndef CONVSERVE_CORE_HALF_SCALAR_H_
#define CONVSERVE_CORE_HALF_SCALAR_H_

#include <cstdint>
#include <cstring>

namespace convserve {
namespace half_internal {

inline uint32_t FloatBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

inline float BitsFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

}  // namespace half_internal

inline float Float16ToFloat32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f)
    return half_internal::BitsFloat(sign | 0x7f800000u | (mantissa << 13));  // Inf, NaN
  if (exponent != 0)
    return half_internal::BitsFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa * 2^-24, exact in float32.
  const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
  return sign != 0 ? -magnitude : magnitude;
}

inline uint16_t Float32ToFloat16(float value) {
  uint32_t bits = half_internal::FloatBits(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  bits &= 0x7fffffffu;
  if (bits > 0x7f800000u) {  // NaN: quiet, top of the payload kept
    return static_cast<uint16_t>(sign | 0x7e00u | ((bits >> 13) & 0x3ffu));
  }
  // 65520 = 65504 + half an ulp, a tie that rounds to the even "65536": Inf.
  if (bits >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (bits < 0x38800000u) {  // below 2^-14: a float16 subnormal or zero
    // Adding 0.5 leaves the float32 ulp at 2^-24, the float16 subnormal
    // step, so the float32 addition does the round to nearest even; the
    // mantissa bits then count steps (0x400 is the smallest normal).
    const float shifted = half_internal::BitsFloat(bits) + 0.5f;
    return static_cast<uint16_t>(sign | (half_internal::FloatBits(shifted) - 0x3f000000u));
  }
  // Normal: rebias the exponent and round away the 13 low mantissa bits to
  // even; a carry out of the mantissa correctly bumps the exponent.
  const uint32_t odd = (bits >> 13) & 1u;
  bits += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + odd;
  return static_cast<uint16_t>(sign | (bits >> 13));
}

inline float Bfloat16ToFloat32(uint16_t bits) {
  return half_internal::BitsFloat(static_cast<uint32_t>(bits) << 16);
}

inline uint16_t Float32ToBfloat16(float value) {
  const uint32_t bits = half_internal::FloatBits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: quiet, sign kept
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  const uint32_t odd = (bits >> 16) & 1u;
  return static_cast<uint16_t>((bits + 0x7fffu + odd) >> 16);
}

}  // namespace convserve

#endif  // CONVSERVE_CORE_HALF_SCALAR_H_
