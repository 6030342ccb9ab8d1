// zmm.h: the AVX-512F zmm vector traits the tile templates (igemm_tile.h, gemm_tile.h) are
// instantiated with.
//
// Include only from sources compiled with -mavx512f -mfma: the inline functions use AVX-512F
// intrinsics.
#ifndef CONVSERVE_CORE_UKERNELS_ZMM_H_
#define CONVSERVE_CORE_UKERNELS_ZMM_H_

#include <immintrin.h>

#include <cstddef>

namespace convserve {
namespace ukernels {

// Vector traits over a zmm register (16 floats, 32 registers).
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

}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_UKERNELS_ZMM_H_
