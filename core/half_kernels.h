// half_kernels.h: the vector loops behind core/half.h, one source file per
// ISA (compiled with that ISA's flags; called only after a CPU check).
// Each converts the whole range, its remainder with the scalar functions of
// half.h, and follows half.h's aliasing rule (FloatToHalf may narrow in place).
#ifndef CONVSERVE_CORE_HALF_KERNELS_H_
#define CONVSERVE_CORE_HALF_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace convserve {
namespace half_kernels {

// half_avx2_f16c.cc: REQUIRES AVX2 and F16C.
void Float16ToFloatAvx2F16c(const uint16_t* in, size_t count, float* out);
void FloatToFloat16Avx2F16c(const float* in, size_t count, uint16_t* out);
void Bfloat16ToFloatAvx2(const uint16_t* in, size_t count, float* out);
void FloatToBfloat16Avx2(const float* in, size_t count, uint16_t* out);

// half_avx512f.cc: REQUIRES AVX-512F.
void Float16ToFloatAvx512f(const uint16_t* in, size_t count, float* out);
void FloatToFloat16Avx512f(const float* in, size_t count, uint16_t* out);
void Bfloat16ToFloatAvx512f(const uint16_t* in, size_t count, float* out);
void FloatToBfloat16Avx512f(const float* in, size_t count, uint16_t* out);

}  // namespace half_kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_HALF_KERNELS_H_
