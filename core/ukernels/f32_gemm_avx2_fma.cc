// f32_gemm_avx2_fma.cc: the direct 1x1 GEMM micro-kernel for AVX2 + FMA (ymm, 16 registers), an
// instance of the gemm_tile.h template. Compiled with -mavx2 -mfma.
#include <cassert>
#include <cstddef>

#include "core/ukernels/gemm_tile.h"
#include "core/ukernels/ukernels.h"
#include "core/ukernels/ymm.h"

namespace convserve {
namespace ukernels {

void f32_gemm_6x16_avx2_fma(size_t mr, size_t nc, size_t kc, const float* a, const float* bias,
                            const float* b, size_t b_stride, float* c, size_t c_stride, float lo,
                            float hi) {
  assert(mr >= 1 && mr <= 6 && nc >= 1 && nc <= 16);
  GemmTile<Ymm, 6, 2>(mr, nc, kc, a, bias, b, b_stride, c, c_stride, lo, hi);
}

}  // namespace ukernels
}  // namespace convserve
