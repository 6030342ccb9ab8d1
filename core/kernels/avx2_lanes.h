// avx2_lanes.h: lane masks for partial vectors. Include only from sources
// compiled with -mavx2 (the inline functions use AVX2 intrinsics).
#ifndef CONVSERVE_CORE_KERNELS_AVX2_LANES_H_
#define CONVSERVE_CORE_KERNELS_AVX2_LANES_H_

#include <immintrin.h>

#include <cstddef>

namespace convserve {
namespace kernels {

// Mask selecting the first n (0..8) lanes of a vector, for maskload/maskstore.
inline __m256i FirstLanes(size_t n) {
  alignas(32) static const int kTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                             0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTable + 8 - n));
}

}  // namespace kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_KERNELS_AVX2_LANES_H_
