// half.h: conversions between float32 and the 16-bit float types that
// tensors may use on the wire (IEEE binary16 "float16" and bfloat16).
//
// Decoding is exact: every float16 and bfloat16 value is a float32 value
// (NaN stays NaN, infinities and signed zeros are kept). Encoding rounds to
// nearest, ties to even, the rounding of numpy's astype(np.float16) and
// torch's .to(torch.bfloat16):
// - float16: magnitudes >= 65520 (half an ulp above the largest float16,
//   65504) become infinity, as IEEE conversion does; magnitudes below the
//   smallest normal (2^-14) become float16 subnormals or zero.
// - bfloat16: the float32 exponent range is kept, so only magnitudes that
//   round above bfloat16's largest finite value become infinity.
// - NaN stays NaN (made quiet, sign kept); infinities stay infinities.
// The bulk functions pick the widest instruction set the CPU offers (F16C,
// AVX-512F) once, capped like the convolution kernels by
// CONVSERVE_MAX_ISA=avx2; every tier gives bit-identical results.
// Pure C++, stateless, thread-safe.
#ifndef CONVSERVE_CORE_HALF_H_
#define CONVSERVE_CORE_HALF_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/half_scalar.h"

namespace convserve {

enum class HalfType {
  kFloat16,   // IEEE 754 binary16: 1 sign, 5 exponent, 10 mantissa bits.
  kBfloat16,  // The top 16 bits of a float32: 1 sign, 8 exponent, 7 mantissa bits.
};

// "float16" or "bfloat16".
const char* HalfTypeName(HalfType type);

// The scalar reference conversions Float16ToFloat32, Float32ToFloat16,
// Bfloat16ToFloat32 and Float32ToBfloat16 are in half_scalar.h; the bulk
// functions below match them bit for bit.

// Instruction sets the bulk conversions come in.
enum class HalfIsa {
  kScalar,    // the reference functions above
  kAvx2F16c,  // F16C for float16, AVX2 integer shifts for bfloat16
  kAvx512f,   // 16 lanes: vcvtph2ps / vcvtps2ph, integer shifts for bfloat16
};

// The ISAs this CPU runs, narrowest first (kScalar always).
std::vector<HalfIsa> SupportedHalfIsas();
// The ISA the bulk conversions use.
HalfIsa BestHalfIsa();
const char* HalfIsaName(HalfIsa isa);

// Converts `count` values of `type` at `in` into float32 at `out`.
// REQUIRES: the ranges do not overlap.
void HalfToFloat(HalfType type, const uint16_t* in, size_t count, float* out);

// Rounds `count` float32 values at `in` to `type` at `out`. `out` may also be
// exactly `in` (reinterpreted): the values are then narrowed in place into
// the buffer's first half. REQUIRES: the ranges do not overlap otherwise.
void FloatToHalf(HalfType type, const float* in, size_t count, uint16_t* out);

// The same with a given ISA. REQUIRES: `isa` is one of SupportedHalfIsas().
void HalfToFloat(HalfIsa isa, HalfType type, const uint16_t* in, size_t count, float* out);
void FloatToHalf(HalfIsa isa, HalfType type, const float* in, size_t count, uint16_t* out);

}  // namespace convserve

#endif  // CONVSERVE_CORE_HALF_H_
