// f32_igemm_avx512f.cc: the indirect-GEMM micro-kernels for AVX-512F (zmm, 32 registers),
// instances of the igemm_tile.h template. Compiled with -mavx512f -mfma.
//
// A zmm FMA does twice the work of a ymm one, so where the CPU executes 512-bit FMAs at full width
// these tiles do twice the arithmetic per instruction of the AVX2 ones; the operator only picks
// them when the CPU has AVX-512F (see core/fast/fast_conv.h).
#include <cassert>
#include <cstddef>

#include "core/ukernels/igemm_tile.h"
#include "core/ukernels/ukernels.h"
#include "core/ukernels/zmm.h"

namespace convserve {
namespace ukernels {

void f32_igemm_8x32_avx512f(size_t mr, size_t nc, size_t taps, size_t kc,
                            const float* const* indirection, size_t indirection_stride,
                            size_t a_offset, const float* zero, const float* packed, float* c,
                            size_t c_stride, float lo, float hi) {
  assert(mr >= 1 && mr <= 8 && nc >= 1 && nc <= 32);
  IgemmTiles<Zmm, 2, 1, 2, 3, 4, 5, 6, 7, 8>::kByRows[mr](
      nc, taps, kc, indirection, indirection_stride, a_offset, zero, packed, c, c_stride, lo, hi);
}

void f32_igemm_16x16_avx512f(size_t mr, size_t nc, size_t taps, size_t kc,
                             const float* const* indirection, size_t indirection_stride,
                             size_t a_offset, const float* zero, const float* packed, float* c,
                             size_t c_stride, float lo, float hi) {
  assert(mr >= 1 && mr <= 16 && nc >= 1 && nc <= 16);
  IgemmTiles<Zmm, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16>::kByRows[mr](
      nc, taps, kc, indirection, indirection_stride, a_offset, zero, packed, c, c_stride, lo, hi);
}

}  // namespace ukernels
}  // namespace convserve
