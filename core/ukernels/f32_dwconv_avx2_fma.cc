// f32_dwconv_avx2_fma.cc: the depthwise micro-kernels for AVX2 + FMA (ymm, 16 registers),
// instances of the dwconv_tile.h template: tiles of 4 pixels x 16 channels keep 8 accumulator
// chains in flight. Compiled with -mavx2 -mfma.
#include <cstddef>

#include "core/ukernels/dwconv_tile.h"
#include "core/ukernels/ukernels.h"
#include "core/ukernels/ymm.h"

namespace convserve {
namespace ukernels {

void f32_dwconv_nhwc_avx2_fma(size_t pixels, size_t channels, size_t taps,
                              const float* const* indirection, const float* packed, float* out,
                              size_t out_stride, float lo, float hi) {
  dwconv::Run<Ymm, 4>(dwconv::IndirectTaps{indirection, taps}, pixels, channels, packed, out,
                      out_stride, lo, hi);
}

void f32_dwconv_rows_nhwc_avx2_fma(size_t pixels, size_t channels, size_t rows, size_t kw,
                                   const float* const* row_inputs, size_t pixel_step,
                                   size_t tap_step, const float* packed, float* out,
                                   size_t out_stride, float lo, float hi) {
  dwconv::Run<Ymm, 4>(dwconv::RowTaps{row_inputs, rows, kw, pixel_step, tap_step, 0}, pixels,
                      channels, packed, out, out_stride, lo, hi);
}

}  // namespace ukernels
}  // namespace convserve
