// fma_peak.h: the benchmark's peak-FMA probes, which measure what share of the FMA peak a
// convolution reaches (conv_bench.cc). Benchmark-only: not part of the core library.
//
// Each probe runs `iterations` rounds of 12 independent FMA chains and returns a value that
// depends on every chain, so the loop cannot be removed. Thread-safety: pure functions.
#ifndef CONVSERVE_BENCH_FMA_PEAK_H_
#define CONVSERVE_BENCH_FMA_PEAK_H_

#include <cstddef>

namespace convserve {
namespace bench {

// ymm registers: 2 * 8 * 12 FLOP per round. REQUIRES: AVX2 + FMA.
float f32_fma_peak_12x8_avx2_fma(size_t iterations);
// zmm registers: 2 * 16 * 12 FLOP per round. REQUIRES: AVX-512F.
float f32_fma_peak_12x16_avx512f(size_t iterations);

}  // namespace bench
}  // namespace convserve

#endif  // CONVSERVE_BENCH_FMA_PEAK_H_
