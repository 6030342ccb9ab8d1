// f32_fma_peak_avx2_fma.cc: the benchmark's ymm peak-FMA probe. Compiled with -mavx2 -mfma.
#include <cstddef>

#include "bench/fma_peak.h"
#include "bench/fma_peak_loop.h"
#include "core/ukernels/ymm.h"

namespace convserve {
namespace bench {

float f32_fma_peak_12x8_avx2_fma(size_t iterations) {
  return FmaPeakProbe<ukernels::Ymm>(iterations);
}

}  // namespace bench
}  // namespace convserve
