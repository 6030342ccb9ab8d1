// f32_winograd_avx2_fma.cc: the Winograd transform micro-kernels, instances of winograd_tile.h,
// vectorised by the compiler for this unit's ISA.
#include <cstddef>

#include "core/ukernels/ukernels.h"
#include "core/ukernels/winograd_tile.h"

namespace convserve {
namespace ukernels {

void f32_winograd_input_4x4_3x3_avx2_fma(const float* d, float* v, size_t v_stride) {
  WinogradInputTile<4>(d, v, v_stride);
}
void f32_winograd_output_4x4_3x3_avx2_fma(const float* m, size_t m_stride, float* o) {
  WinogradOutputTile<4>(m, m_stride, o);
}
void f32_winograd_input_2x2_3x3_avx2_fma(const float* d, float* v, size_t v_stride) {
  WinogradInputTile<2>(d, v, v_stride);
}
void f32_winograd_output_2x2_3x3_avx2_fma(const float* m, size_t m_stride, float* o) {
  WinogradOutputTile<2>(m, m_stride, o);
}

}  // namespace ukernels
}  // namespace convserve
