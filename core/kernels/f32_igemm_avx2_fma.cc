// Indirect-GEMM micro-kernels for AVX2 + FMA (ymm, 16 registers), made from
// the igemm_tile.h template.
#include <immintrin.h>

#include <cassert>
#include <cstddef>

#include "core/kernels/avx2_lanes.h"
#include "core/kernels/igemm_tile.h"
#include "core/kernels/micro_kernels.h"

namespace convserve {
namespace kernels {
namespace {

struct Ymm {
  using Reg = __m256;
  static constexpr int kLanes = 8;
  static Reg Load(const float* p) { return _mm256_loadu_ps(p); }
  static Reg Broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static Reg Splat(float v) { return _mm256_set1_ps(v); }
  static Reg Fma(Reg a, Reg b, Reg acc) { return _mm256_fmadd_ps(a, b, acc); }
  // max/min return their second operand when one is NaN: NaN passes through.
  static Reg Clamp(Reg v, Reg lo, Reg hi) { return _mm256_min_ps(hi, _mm256_max_ps(lo, v)); }
  static void Store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  static void StoreFirst(float* p, Reg v, size_t lanes) {
    _mm256_maskstore_ps(p, FirstLanes(lanes), v);
  }
  static Reg LoadFirst(const float* p, size_t lanes) {
    return _mm256_maskload_ps(p, FirstLanes(lanes));
  }
};

}  // namespace

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

void f32_gemm_6x16_avx2_fma(size_t mr, size_t nc, size_t kc, const float* a, const float* bias,
                            const float* b, size_t b_stride, float* c, size_t c_stride, float lo,
                            float hi) {
  assert(mr >= 1 && mr <= 6 && nc >= 1 && nc <= 16);
  GemmTile<Ymm, 6, 2>(mr, nc, kc, a, bias, b, b_stride, c, c_stride, lo, hi);
}

float f32_fma_peak_12x8_avx2_fma(size_t iterations) { return FmaPeakProbe<Ymm>(iterations); }

}  // namespace kernels
}  // namespace convserve
