// f32_fma_peak_avx512f.cc: the benchmark's zmm peak-FMA probe. Compiled with -mavx512f -mfma.
#include <cstddef>

#include "bench/fma_peak.h"
#include "bench/fma_peak_loop.h"
#include "core/ukernels/zmm.h"

namespace convserve {
namespace bench {

float f32_fma_peak_12x16_avx512f(size_t iterations) {
  return FmaPeakProbe<ukernels::Zmm>(iterations);
}

}  // namespace bench
}  // namespace convserve
