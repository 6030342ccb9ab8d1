// Indirect-GEMM micro-kernels for AVX-512F (zmm, 32 registers), made from the
// igemm_tile.h template. Where the CPU executes 512-bit FMAs at full width
// (2 per cycle per core on this project's Zen 5 machines) they double the
// AVX2 kernels' throughput; the operator only picks them when the CPU has
// AVX-512F (see fast_conv.h).
#include <immintrin.h>

#include <cassert>
#include <cstddef>

#include "core/kernels/igemm_tile.h"
#include "core/kernels/micro_kernels.h"

namespace convserve {
namespace kernels {
namespace {

struct Zmm {
  using Reg = __m512;
  static constexpr int kLanes = 16;
  static Reg Load(const float* p) { return _mm512_loadu_ps(p); }
  static Reg Broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static Reg Splat(float v) { return _mm512_set1_ps(v); }
  static Reg Fma(Reg a, Reg b, Reg acc) { return _mm512_fmadd_ps(a, b, acc); }
  // max/min return their second operand when one is NaN: NaN passes through.
  static Reg Clamp(Reg v, Reg lo, Reg hi) { return _mm512_min_ps(hi, _mm512_max_ps(lo, v)); }
  static void Store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  static void StoreFirst(float* p, Reg v, size_t lanes) {
    _mm512_mask_storeu_ps(p, FirstLanes(lanes), v);
  }
  static Reg LoadFirst(const float* p, size_t lanes) {
    return _mm512_maskz_loadu_ps(FirstLanes(lanes), p);
  }
  static __mmask16 FirstLanes(size_t lanes) { return static_cast<__mmask16>((1u << lanes) - 1u); }
};

}  // namespace

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

void f32_gemm_12x32_avx512f(size_t mr, size_t nc, size_t kc, const float* a, const float* bias,
                            const float* b, size_t b_stride, float* c, size_t c_stride, float lo,
                            float hi) {
  assert(mr >= 1 && mr <= 12 && nc >= 1 && nc <= 32);
  GemmTile<Zmm, 12, 2>(mr, nc, kc, a, bias, b, b_stride, c, c_stride, lo, hi);
}

float f32_fma_peak_12x16_avx512f(size_t iterations) { return FmaPeakProbe<Zmm>(iterations); }

}  // namespace kernels
}  // namespace convserve
