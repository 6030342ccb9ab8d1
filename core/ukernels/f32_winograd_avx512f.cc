// f32_winograd_avx512f.cc: the Winograd transform micro-kernels, instances of winograd_tile.h,
// vectorised by the compiler for this unit's ISA.
#include <cstddef>

#include "core/ukernels/ukernels.h"
#include "core/ukernels/winograd_tile.h"

namespace convserve {
namespace ukernels {

void f32_winograd_input_4x4_3x3_avx512f(const float* const* tiles, size_t offset, size_t row_stride,
                                        float* v, size_t v_stride) {
  WinogradInputTile<4>(tiles, offset, row_stride, v, v_stride);
}
void f32_winograd_output_4x4_3x3_avx512f(const float* m, size_t m_stride, float bias, float lo,
                                         float hi, float* o, float* const* tiles,
                                         size_t row_stride) {
  WinogradOutputTile<4>(m, m_stride, bias, lo, hi, o, tiles, row_stride);
}
void f32_winograd_input_2x2_3x3_avx512f(const float* const* tiles, size_t offset, size_t row_stride,
                                        float* v, size_t v_stride) {
  WinogradInputTile<2>(tiles, offset, row_stride, v, v_stride);
}
void f32_winograd_output_2x2_3x3_avx512f(const float* m, size_t m_stride, float bias, float lo,
                                         float hi, float* o, float* const* tiles,
                                         size_t row_stride) {
  WinogradOutputTile<2>(m, m_stride, bias, lo, hi, o, tiles, row_stride);
}

}  // namespace ukernels
}  // namespace convserve
