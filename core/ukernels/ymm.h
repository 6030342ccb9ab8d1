// ymm.h: AVX2 helpers for the micro-kernels: lane masks for partial vectors and the ymm vector
// traits the tile templates (igemm_tile.h, gemm_tile.h) are instantiated with.
//
// Include only from sources compiled with -mavx2 -mfma: the inline functions use AVX2 and FMA
// intrinsics.
#ifndef CONVSERVE_CORE_UKERNELS_YMM_H_
#define CONVSERVE_CORE_UKERNELS_YMM_H_

#include <immintrin.h>

#include <cstddef>

namespace convserve {
namespace ukernels {

// Mask selecting the first n (0..8) lanes of a vector, for maskload/maskstore.
inline __m256i FirstLanes(size_t n) {
  alignas(32) static const int kTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                             0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTable + 8 - n));
}

// Vector traits over a ymm register (8 floats, 16 registers).
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

}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_UKERNELS_YMM_H_
