// half.cc: the scalar loops and the choice of ISA.
#include "core/half.h"

#include <cpuid.h>

#include <cstring>

#include "core/fast/fast_conv.h"
#include "core/half_kernels.h"

namespace convserve {
namespace {

// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does
// not know "f16c", and the fuzzers are built with clang.
bool CpuHasAvx2F16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  return __builtin_cpu_supports("avx2") && (ecx & bit_F16C) != 0;
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
