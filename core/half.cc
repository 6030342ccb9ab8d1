// half.cc: the scalar reference conversions and the choice of ISA.
#include "core/half.h"

#include <cstring>

#include "core/fast/fast_conv.h"
#include "core/half_kernels.h"

namespace convserve {
namespace {

uint32_t FloatBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

float BitsFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

bool CpuHasAvx2F16c() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
}

// Loads and stores through memcpy, so that FloatToHalf may narrow in place.
template <typename Convert>
void ScalarToFloat(Convert convert, const uint16_t* in, size_t count, float* out) {
  for (size_t i = 0; i < count; ++i) out[i] = convert(in[i]);
}

template <typename Convert>
void ScalarFromFloat(Convert convert, const float* in, size_t count, uint16_t* out) {
  for (size_t i = 0; i < count; ++i) {
    float value;
    std::memcpy(&value, in + i, sizeof(value));
    const uint16_t bits = convert(value);
    std::memcpy(out + i, &bits, sizeof(bits));
  }
}

}  // namespace

const char* HalfTypeName(HalfType type) {
  return type == HalfType::kFloat16 ? "float16" : "bfloat16";
}

float Float16ToFloat32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) return BitsFloat(sign | 0x7f800000u | (mantissa << 13));  // Inf, NaN
  if (exponent != 0) return BitsFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa * 2^-24, exact in float32.
  const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
  return sign != 0 ? -magnitude : magnitude;
}

uint16_t Float32ToFloat16(float value) {
  uint32_t bits = FloatBits(value);
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
    const float shifted = BitsFloat(bits) + 0.5f;
    return static_cast<uint16_t>(sign | (FloatBits(shifted) - 0x3f000000u));
  }
  // Normal: rebias the exponent and round away the 13 low mantissa bits to
  // even; a carry out of the mantissa correctly bumps the exponent.
  const uint32_t odd = (bits >> 13) & 1u;
  bits += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + odd;
  return static_cast<uint16_t>(sign | (bits >> 13));
}

float Bfloat16ToFloat32(uint16_t bits) { return BitsFloat(static_cast<uint32_t>(bits) << 16); }

uint16_t Float32ToBfloat16(float value) {
  const uint32_t bits = FloatBits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: quiet, sign kept
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  const uint32_t odd = (bits >> 16) & 1u;
  return static_cast<uint16_t>((bits + 0x7fffu + odd) >> 16);
}

std::vector<HalfIsa> SupportedHalfIsas() {
  std::vector<HalfIsa> isas = {HalfIsa::kScalar};
  if (CpuHasAvx2F16c()) isas.push_back(HalfIsa::kAvx2F16c);
  if (CpuHasAvx2F16c() && kernels::CpuSupports(kernels::Isa::kAvx512f)) {
    isas.push_back(HalfIsa::kAvx512f);
  }
  return isas;
}

HalfIsa BestHalfIsa() {
  // The convolution kernels' choice (and its CONVSERVE_MAX_ISA cap), once.
  static const HalfIsa best = [] {
    if (!CpuHasAvx2F16c()) return HalfIsa::kScalar;
    if (kernels::CpuHasAvx2Fma() && kernels::BestIsa() == kernels::Isa::kAvx512f) {
      return HalfIsa::kAvx512f;
    }
    return HalfIsa::kAvx2F16c;
  }();
  return best;
}

const char* HalfIsaName(HalfIsa isa) {
  switch (isa) {
    case HalfIsa::kScalar:
      return "scalar";
    case HalfIsa::kAvx2F16c:
      return "avx2_f16c";
    case HalfIsa::kAvx512f:
      return "avx512f";
  }
  return "unknown";
}

void HalfToFloat(HalfIsa isa, HalfType type, const uint16_t* in, size_t count, float* out) {
  const bool fp16 = type == HalfType::kFloat16;
  switch (isa) {
    case HalfIsa::kAvx512f:
      return fp16 ? half_kernels::Float16ToFloatAvx512f(in, count, out)
                  : half_kernels::Bfloat16ToFloatAvx512f(in, count, out);
    case HalfIsa::kAvx2F16c:
      return fp16 ? half_kernels::Float16ToFloatAvx2F16c(in, count, out)
                  : half_kernels::Bfloat16ToFloatAvx2(in, count, out);
    case HalfIsa::kScalar:
      break;
  }
  fp16 ? ScalarToFloat(Float16ToFloat32, in, count, out)
       : ScalarToFloat(Bfloat16ToFloat32, in, count, out);
}

void FloatToHalf(HalfIsa isa, HalfType type, const float* in, size_t count, uint16_t* out) {
  const bool fp16 = type == HalfType::kFloat16;
  switch (isa) {
    case HalfIsa::kAvx512f:
      return fp16 ? half_kernels::FloatToFloat16Avx512f(in, count, out)
                  : half_kernels::FloatToBfloat16Avx512f(in, count, out);
    case HalfIsa::kAvx2F16c:
      return fp16 ? half_kernels::FloatToFloat16Avx2F16c(in, count, out)
                  : half_kernels::FloatToBfloat16Avx2(in, count, out);
    case HalfIsa::kScalar:
      break;
  }
  fp16 ? ScalarFromFloat(Float32ToFloat16, in, count, out)
       : ScalarFromFloat(Float32ToBfloat16, in, count, out);
}

void HalfToFloat(HalfType type, const uint16_t* in, size_t count, float* out) {
  HalfToFloat(BestHalfIsa(), type, in, count, out);
}

void FloatToHalf(HalfType type, const float* in, size_t count, uint16_t* out) {
  FloatToHalf(BestHalfIsa(), type, in, count, out);
}

}  // namespace convserve
