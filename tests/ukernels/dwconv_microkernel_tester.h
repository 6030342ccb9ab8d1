// dwconv_microkernel_tester.h: checks one call of a depthwise micro-kernel (ukernels.h) against a
// scalar reference computed in double from the same packed weights and inputs.
//
// Builder-style like GemmMicrokernelTester: set channels, pixels, the kernel's rows x kw taps, the
// input steps, zero rows, the output stride, the clamp and NaN injection, then Test(kernel). Each
// Test() runs iterations() times with fresh random data; cells of the output outside
// pixels x channels must keep a sentinel value.
#ifndef CONVSERVE_TESTS_UKERNELS_DWCONV_MICROKERNEL_TESTER_H_
#define CONVSERVE_TESTS_UKERNELS_DWCONV_MICROKERNEL_TESTER_H_

#include <cstddef>
#include <cstdint>
#include <limits>

#include "core/ukernels/ukernels.h"
#include "tests/ukernels/ukernel_test_util.h"

namespace convserve {
namespace ukernels {
namespace testing {

// The two depthwise kernels' signatures (the indirect one and the row-pointer one).
using F32DwconvFn = decltype(&f32_dwconv_nhwc_avx2_fma);
using F32DwconvRowsFn = decltype(&f32_dwconv_rows_nhwc_avx2_fma);

class DwconvMicrokernelTester : public KernelTesterKnobs<DwconvMicrokernelTester> {
 public:
  static constexpr size_t kNone = std::numeric_limits<size_t>::max();

  DwconvMicrokernelTester& channels(size_t channels) {
    channels_ = channels;
    return *this;
  }
  size_t channels() const { return channels_; }
  DwconvMicrokernelTester& pixels(size_t pixels) {
    pixels_ = pixels;
    return *this;
  }
  size_t pixels() const { return pixels_; }

  // Kernel taps as rows x kw (tap t = r * kw + k); the indirect kernel sees rows * kw taps.
  DwconvMicrokernelTester& rows(size_t rows) {
    rows_ = rows;
    return *this;
  }
  size_t rows() const { return rows_; }
  DwconvMicrokernelTester& kw(size_t kw) {
    kw_ = kw;
    return *this;
  }
  size_t kw() const { return kw_; }
  size_t taps() const { return rows_ * kw_; }

  // Row-pointer kernel: floats from one pixel's taps to the next pixel's (0: channels) and from
  // one tap of a row to the next (0: channels).
  DwconvMicrokernelTester& pixel_step(size_t step) {
    pixel_step_ = step;
    return *this;
  }
  size_t pixel_step() const { return pixel_step_ == 0 ? channels_ : pixel_step_; }
  DwconvMicrokernelTester& tap_step(size_t step) {
    tap_step_ = step;
    return *this;
  }
  size_t tap_step() const { return tap_step_ == 0 ? channels_ : tap_step_; }

  // Indirect kernel: the pixel whose pointers all equal `zero`. Row-pointer kernel: the row that
  // points into a zero row.
  DwconvMicrokernelTester& zero_index(size_t zero_index) {
    zero_index_ = zero_index;
    return *this;
  }
  size_t zero_index() const { return zero_index_; }

  // Floats from one output pixel to the next (0: channels).
  DwconvMicrokernelTester& out_stride(size_t stride) {
    out_stride_ = stride;
    return *this;
  }
  size_t out_stride() const { return out_stride_ == 0 ? channels_ : out_stride_; }

  // Indirect: each (pixel, tap) reads its own run of `channels` floats, or `zero`.
  void Test(F32DwconvFn dwconv) const;
  // Row pointers: tap r * kw + k of pixel p reads row r at p * pixel_step + k * tap_step.
  void Test(F32DwconvRowsFn dwconv) const;

 private:
  size_t channels_ = 1;
  size_t pixels_ = 1;
  size_t rows_ = 1;
  size_t kw_ = 1;
  size_t pixel_step_ = 0;
  size_t tap_step_ = 0;
  size_t zero_index_ = kNone;
  size_t out_stride_ = 0;
};

}  // namespace testing
}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_TESTS_UKERNELS_DWCONV_MICROKERNEL_TESTER_H_
