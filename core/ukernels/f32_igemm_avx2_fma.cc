// f32_igemm_avx2_fma.cc: the indirect-GEMM micro-kernels for AVX2 + FMA (ymm, 16 registers),
// instances of the igemm_tile.h template. Compiled with -mavx2 -mfma.
#include <cassert>
#include <cstddef>

#include "core/ukernels/igemm_tile.h"
#include "core/ukernels/ukernels.h"
#include "core/ukernels/ymm.h"

namespace convserve {
namespace ukernels {

void f32_igemm_6x16_avx2_fma(size_t mr, size_t nc, size_t taps, size_t kc,
                             const float* const* indirection, size_t indirection_stride,
                             size_t a_offset, const float* zero, const float* packed, float* c,
                             size_t c_stride, float lo, float hi) {
  assert(mr >= 1 && mr <= 6 && nc >= 1 && nc <= 16);
  IgemmTiles<Ymm, 2, 1, 2, 3, 4, 5, 6>::kByRows[mr](nc, taps, kc, indirection, indirection_stride,
                                                    a_offset, zero, packed, c, c_stride, lo, hi);
}

void f32_igemm_12x8_avx2_fma(size_t mr, size_t nc, size_t taps, size_t kc,
                             const float* const* indirection, size_t indirection_stride,
                             size_t a_offset, const float* zero, const float* packed, float* c,
                             size_t c_stride, float lo, float hi) {
  assert(mr >= 1 && mr <= 12 && nc >= 1 && nc <= 8);
  IgemmTiles<Ymm, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12>::kByRows[mr](
      nc, taps, kc, indirection, indirection_stride, a_offset, zero, packed, c, c_stride, lo, hi);
}

}  // namespace ukernels
}  // namespace convserve
