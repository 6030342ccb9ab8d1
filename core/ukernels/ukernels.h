// ukernels.h: the micro-kernels of the fast convolution path (tight loops that only compute).
//
// Micro-kernels take pointers and sizes that the operator (core/fast/) has already checked, and
// only assert. Each name states its contract: element type, operation, tile, ISA. They live in
// translation units compiled with -mavx2 -mfma (the *_avx512f ones with -mavx512f) and must only be
// called when the CPU has those instructions (see kernels::CpuSupports() in core/fast/fast_conv.h).
// Those units use no STL templates, TBB or absl, so no AVX code can leak into the portable part of
// the library through inline functions.
//
// Thread-safety: every micro-kernel is a pure function of its arguments; concurrent calls are safe
// as long as their outputs do not overlap.
#ifndef CONVSERVE_CORE_UKERNELS_UKERNELS_H_
#define CONVSERVE_CORE_UKERNELS_UKERNELS_H_

#include <cstddef>

namespace convserve {
namespace ukernels {

// Indirect GEMM tile: for rows i < mr (output pixels) and columns j < nc (output
// channels):
//   c[i * c_stride + j] = clamp(w_bias[j] + sum_{t < taps} sum_{k < kc}
//                                 a(t, i)[k] * w[(t * kc + k) * NR + j], lo, hi)
// where a(t, i) = indirection[t * indirection_stride + i] plus a_offset, unless
// that pointer equals `zero` (a padding cell: `zero` holds kc zeros and is read
// without offset). `packed` holds NR bias values followed by taps * kc * NR
// weights (columns past nc zero-padded). The clamp passes NaN through. Only the
// mr x nc cells of c are written. REQUIRES: 1 <= mr <= MR, 1 <= nc <= NR.
using F32IgemmFn = void (*)(size_t mr, size_t nc, size_t taps, size_t kc,
                            const float* const* indirection, size_t indirection_stride,
                            size_t a_offset, const float* zero, const float* packed, float* c,
                            size_t c_stride, float lo, float hi);

// Tiles: 6x16 (12 ymm accumulators) for >= 9 channels per group; 12x8 for
// narrow groups (grouped and channel-multiplier convolutions).
void f32_igemm_6x16_avx2_fma(size_t mr, size_t nc, size_t taps, size_t kc,
                             const float* const* indirection, size_t indirection_stride,
                             size_t a_offset, const float* zero, const float* packed, float* c,
                             size_t c_stride, float lo, float hi);
void f32_igemm_12x8_avx2_fma(size_t mr, size_t nc, size_t taps, size_t kc,
                             const float* const* indirection, size_t indirection_stride,
                             size_t a_offset, const float* zero, const float* packed, float* c,
                             size_t c_stride, float lo, float hi);

// AVX-512F tiles (zmm): 8x32 (16 accumulators) for >= 17 channels per group,
// 16x16 for 9..16.
void f32_igemm_8x32_avx512f(size_t mr, size_t nc, size_t taps, size_t kc,
                            const float* const* indirection, size_t indirection_stride,
                            size_t a_offset, const float* zero, const float* packed, float* c,
                            size_t c_stride, float lo, float hi);
void f32_igemm_16x16_avx512f(size_t mr, size_t nc, size_t taps, size_t kc,
                             const float* const* indirection, size_t indirection_stride,
                             size_t a_offset, const float* zero, const float* packed, float* c,
                             size_t c_stride, float lo, float hi);

// Grouped convolution with 8 input and 8 output channels per group, two adjacent
// groups per call, F32IgemmFn's contract with NR = 16 (output channels: the first
// group's 8, then the second's), kc = 8 and nc = 16: a(t, i) points at the
// first group's 8 input channels, followed by the second group's 8 (an
// interleaved channels-last pixel; `zero` holds >= 16 zeros). `packed`: 16 bias
// values, then per tap 8 vectors j of 16 weights: w[j][k] of the first group
// for k < 8, of the second for k >= 8. REQUIRES: 1 <= mr <= 3.
void f32_gconv_g8_3x16_avx512f(size_t mr, size_t nc, size_t taps, size_t kc,
                               const float* const* indirection, size_t indirection_stride,
                               size_t a_offset, const float* zero, const float* packed, float* c,
                               size_t c_stride, float lo, float hi);

// Direct GEMM for 1x1, stride-1 layers on channels-first tensors (input and
// output rows are contiguous runs of pixels): for rows i < mr (output
// channels) and columns j < nc (pixels),
//   c[i * c_stride + j] = clamp(bias[i] + sum_{k < kc} a[k * MR + i] * b[k * b_stride + j], lo, hi)
// `a`: kc x MR packed weights (rows past mr zero), `bias`: MR values. Only the
// nc columns are read from b, and only the mr x nc cells of c are written. The
// clamp passes NaN through. REQUIRES: 1 <= mr <= MR, 1 <= nc <= NR.
using F32GemmFn = void (*)(size_t mr, size_t nc, size_t kc, const float* a, const float* bias,
                           const float* b, size_t b_stride, float* c, size_t c_stride, float lo,
                           float hi);
void f32_gemm_6x16_avx2_fma(size_t mr, size_t nc, size_t kc, const float* a, const float* bias,
                            const float* b, size_t b_stride, float* c, size_t c_stride, float lo,
                            float hi);
void f32_gemm_12x32_avx512f(size_t mr, size_t nc, size_t kc, const float* a, const float* bias,
                            const float* b, size_t b_stride, float* c, size_t c_stride, float lo,
                            float hi);

// Depthwise (one input channel per output channel) over `pixels` output pixels
// of a channels-last tensor: for pixel p and channel ch < channels,
//   out[p * out_stride + ch] = clamp(packed[ch] + sum_{t < taps}
//       indirection[p * taps + t][ch] * packed[channels_padded * (1 + t) + ch], lo, hi)
// channels_padded = channels rounded up to kDwconvChannelPad. Indirection pointers point at
// a pixel's first channel (or at `zero`, >= channels zeros); only `channels` values are read from
// each, and only `channels` values per pixel are written. The clamp passes NaN through. REQUIRES:
// channels >= 1, taps >= 1.
constexpr size_t kDwconvChannelPad = 16;  // The widest vector's lanes, for every tier.
void f32_dwconv_nhwc_avx2_fma(size_t pixels, size_t channels, size_t taps,
                              const float* const* indirection, const float* packed, float* out,
                              size_t out_stride, float lo, float hi);

// The same for pixels whose taps all fall inside their input rows (no W
// padding): tap t = r * kw + k of pixel p reads
//   row_inputs[r] + p * pixel_step + k * tap_step
// (row_inputs[r] points at pixel 0's first tap in input row r, or into a zero
// row as long as the input row). REQUIRES: channels >= 1, rows * kw >= 1.
void f32_dwconv_rows_nhwc_avx2_fma(size_t pixels, size_t channels, size_t rows, size_t kw,
                                   const float* const* row_inputs, size_t pixel_step,
                                   size_t tap_step, const float* packed, float* out,
                                   size_t out_stride, float lo, float hi);

// AVX-512F (zmm) versions of the two, same contracts: 8 pixels x 32 channels per tile.
void f32_dwconv_nhwc_avx512f(size_t pixels, size_t channels, size_t taps,
                             const float* const* indirection, const float* packed, float* out,
                             size_t out_stride, float lo, float hi);
void f32_dwconv_rows_nhwc_avx512f(size_t pixels, size_t channels, size_t rows, size_t kw,
                                  const float* const* row_inputs, size_t pixel_step,
                                  size_t tap_step, const float* packed, float* out,
                                  size_t out_stride, float lo, float hi);

// Winograd F(M x M, 3x3) transforms (alpha = M + 2) of kWinogradLanes tiles at once, one per
// lane (core/fast/winograd_path.h):
// input:  v[(i * alpha + j) * v_stride + t] = (B^T d_t B)[i][j], where the alpha x alpha input
//         tile d_t holds d_t[r][c] = tiles[t][offset + r * row_stride + c];
// output: o[(i * M + j) * kWinogradLanes + t] = clamp((A^T m_t A)[i][j] + bias, lo, hi), where
//         m_t[r][c] = m[(r * alpha + c) * m_stride + t]; the clamp passes NaN through. With
//         `tiles` non-null (M = 4 only; null for M = 2), value (i, j) of lane t goes to
//         tiles[t][i * row_stride + j] instead (every lane a whole tile inside the output).
// Only kWinogradLanes values are read or written per row of v and m; the input reads each tile
// row as 8 floats, 2 (alpha 6) or 4 (alpha 4) past its end.
inline constexpr size_t kWinogradLanes = 16;
using F32WinogradInputFn = void (*)(const float* const* tiles, size_t offset, size_t row_stride,
                                    float* v, size_t v_stride);
using F32WinogradOutputFn = void (*)(const float* m, size_t m_stride, float bias, float lo,
                                     float hi, float* o, float* const* tiles, size_t row_stride);
void f32_winograd_input_4x4_3x3_avx2_fma(const float* const* tiles, size_t offset,
                                         size_t row_stride, float* v, size_t v_stride);
void f32_winograd_output_4x4_3x3_avx2_fma(const float* m, size_t m_stride, float bias, float lo,
                                          float hi, float* o, float* const* tiles,
                                          size_t row_stride);
void f32_winograd_input_2x2_3x3_avx2_fma(const float* const* tiles, size_t offset,
                                         size_t row_stride, float* v, size_t v_stride);
void f32_winograd_output_2x2_3x3_avx2_fma(const float* m, size_t m_stride, float bias, float lo,
                                          float hi, float* o, float* const* tiles,
                                          size_t row_stride);
void f32_winograd_input_4x4_3x3_avx512f(const float* const* tiles, size_t offset, size_t row_stride,
                                        float* v, size_t v_stride);
void f32_winograd_output_4x4_3x3_avx512f(const float* m, size_t m_stride, float bias, float lo,
                                         float hi, float* o, float* const* tiles,
                                         size_t row_stride);
void f32_winograd_input_2x2_3x3_avx512f(const float* const* tiles, size_t offset, size_t row_stride,
                                        float* v, size_t v_stride);
void f32_winograd_output_2x2_3x3_avx512f(const float* m, size_t m_stride, float bias, float lo,
                                         float hi, float* o, float* const* tiles,
                                         size_t row_stride);

// dst[j * dst_stride + i] = src[i * src_stride + j] for i < rows, j < cols,
// in 8x8 register blocks (scalar edges). Only those cells of dst are written.
void f32_transpose_8x8_avx2(size_t rows, size_t cols, const float* src, size_t src_stride,
                            float* dst, size_t dst_stride);

}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_UKERNELS_UKERNELS_H_
