// f32_dwconv_avx512f.cc: the depthwise micro-kernels for AVX-512F (zmm, 32 registers), instances
// of the dwconv_tile.h template: tiles of 8 pixels x 32 channels keep 16 accumulator chains in
// flight and load each weight vector once per 8 pixels. Compiled with -mavx512f -mfma.
#include <cstddef>

#include "core/ukernels/dwconv_tile.h"
#include "core/ukernels/ukernels.h"
#include "core/ukernels/zmm.h"

namespace convserve {
namespace ukernels {

void f32_dwconv_nhwc_avx512f(size_t pixels, size_t channels, size_t taps,
                             const float* const* indirection, const float* packed, float* out,
                             size_t out_stride, float lo, float hi) {
  dwconv::Run<Zmm, 8>(dwconv::IndirectTaps{indirection, taps}, pixels, channels, packed, out,
                      out_stride, lo, hi);
}

void f32_dwconv_rows_nhwc_avx512f(size_t pixels, size_t channels, size_t rows, size_t kw,
                                  const float* const* row_inputs, size_t pixel_step,
                                  size_t tap_step, const float* packed, float* out,
                                  size_t out_stride, float lo, float hi) {
  dwconv::Run<Zmm, 8>(dwconv::RowTaps{row_inputs, rows, kw, pixel_step, tap_step, 0}, pixels,
                      channels, packed, out, out_stride, lo, hi);
}

}  // namespace ukernels
}  // namespace convserve
