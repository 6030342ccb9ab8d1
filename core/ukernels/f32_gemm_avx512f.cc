// f32_gemm_avx512f.cc: the direct 1x1 GEMM micro-kernel for AVX-512F (zmm, 32 registers), an
// instance of the gemm_tile.h template. Compiled with -mavx512f -mfma.
#include <cassert>
#include <cstddef>

#include "core/ukernels/gemm_tile.h"
#include "core/ukernels/ukernels.h"
#include "core/ukernels/zmm.h"

namespace convserve {
namespace ukernels {

void f32_gemm_12x32_avx512f(size_t mr, size_t nc, size_t kc, const float* a, const float* bias,
                            const float* b, size_t b_stride, float* c, size_t c_stride, float lo,
                            float hi) {
  assert(mr >= 1 && mr <= 12 && nc >= 1 && nc <= 32);
  GemmTile<Zmm, 12, 2>(mr, nc, kc, a, bias, b, b_stride, c, c_stride, lo, hi);
}

}  // namespace ukernels
}  // namespace convserve
