// fma_peak_loop.h: the one template both peak-FMA probes (fma_peak.h) are made from.
//
// Include only from an ISA translation unit, which supplies `V`, the micro-kernels' vector traits
// (core/ukernels/ymm.h, zmm.h).
#ifndef CONVSERVE_BENCH_FMA_PEAK_LOOP_H_
#define CONVSERVE_BENCH_FMA_PEAK_LOOP_H_

#include <cstddef>

namespace convserve {
namespace bench {

// `iterations` rounds of 12 independent FMA chains. Returns
// a value that depends on every chain so the loop cannot be removed.
template <typename V>
float FmaPeakProbe(size_t iterations) {
  using Reg = typename V::Reg;
  Reg acc[12];
  const Reg x = V::Splat(0.999999f);
  const Reg y = V::Splat(1e-7f);
  for (int i = 0; i < 12; ++i) acc[i] = V::Splat(static_cast<float>(i));
  for (size_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = V::Fma(acc[i], x, y);
  }
  float sum = 0.0f;
  for (int i = 0; i < 12; ++i) {
    float lanes[V::kLanes];
    V::Store(lanes, acc[i]);
    sum += lanes[0];
  }
  return sum;
}

}  // namespace bench
}  // namespace convserve

#endif  // CONVSERVE_BENCH_FMA_PEAK_LOOP_H_
