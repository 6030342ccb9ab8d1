// gemm_microkernel_tester.h: checks one call of a GEMM or indirect-GEMM micro-kernel (ukernels.h)
// against a scalar reference computed in double from the same packed inputs, in the manner of
// XNNPACK's test/gemm-microkernel-tester.h.
//
// Builder-style: set the tile (mr, nr), the sub-tile (m, n), kc (k) and taps (ks), strides,
// offsets, zero pointers, the clamp and NaN injection, then Test(kernel). Each Test() runs
// iterations() times with fresh random data and reports failures through gtest (EXPECT_*).
// Cells of c outside the m x n result must keep a sentinel value.
#ifndef CONVSERVE_TESTS_UKERNELS_GEMM_MICROKERNEL_TESTER_H_
#define CONVSERVE_TESTS_UKERNELS_GEMM_MICROKERNEL_TESTER_H_

#include <cstddef>
#include <cstdint>
#include <limits>

#include "core/ukernels/ukernels.h"
#include "tests/ukernels/ukernel_test_util.h"

namespace convserve {
namespace ukernels {
namespace testing {

class GemmMicrokernelTester : public KernelTesterKnobs<GemmMicrokernelTester> {
 public:
  static constexpr size_t kNone = std::numeric_limits<size_t>::max();

  // Tile of the kernel: MR rows, NR columns (the packed weights' width).
  GemmMicrokernelTester& mr(size_t mr) {
    mr_ = mr;
    return *this;
  }
  size_t mr() const { return mr_; }
  GemmMicrokernelTester& nr(size_t nr) {
    nr_ = nr;
    return *this;
  }
  size_t nr() const { return nr_; }

  // Rows and columns computed by this call: 1 <= m <= mr, 1 <= n <= nr.
  GemmMicrokernelTester& m(size_t m) {
    m_ = m;
    return *this;
  }
  size_t m() const { return m_; }
  GemmMicrokernelTester& n(size_t n) {
    n_ = n;
    return *this;
  }
  size_t n() const { return n_; }

  // Reduction length per tap (kc).
  GemmMicrokernelTester& k(size_t k) {
    k_ = k;
    return *this;
  }
  size_t k() const { return k_; }

  // Taps (indirect GEMM only): each adds k products per cell, read through its own pointers.
  GemmMicrokernelTester& ks(size_t ks) {
    ks_ = ks;
    return *this;
  }
  size_t ks() const { return ks_; }

  // Floats added to every non-zero indirection pointer (indirect GEMM only).
  GemmMicrokernelTester& a_offset(size_t a_offset) {
    a_offset_ = a_offset;
    return *this;
  }
  size_t a_offset() const { return a_offset_; }

  // Row (pixel) whose pointers all equal the kernel's `zero` pointer (indirect GEMM only).
  GemmMicrokernelTester& zero_index(size_t zero_index) {
    zero_index_ = zero_index;
    return *this;
  }
  size_t zero_index() const { return zero_index_; }

  // Tap whose pointers all equal the kernel's `zero` pointer (indirect GEMM only).
  GemmMicrokernelTester& zero_tap(size_t zero_tap) {
    zero_tap_ = zero_tap;
    return *this;
  }
  size_t zero_tap() const { return zero_tap_; }

  // Pointers from one tap to the next (indirect GEMM; 0: mr).
  GemmMicrokernelTester& indirection_stride(size_t stride) {
    indirection_stride_ = stride;
    return *this;
  }
  size_t indirection_stride() const { return indirection_stride_ == 0 ? mr_ : indirection_stride_; }

  // Floats from one row of b to the next (direct GEMM; 0: n).
  GemmMicrokernelTester& b_stride(size_t stride) {
    b_stride_ = stride;
    return *this;
  }
  size_t b_stride() const { return b_stride_ == 0 ? n_ : b_stride_; }

  // Floats from one row of c to the next (0: n).
  GemmMicrokernelTester& c_stride(size_t stride) {
    c_stride_ = stride;
    return *this;
  }
  size_t c_stride() const { return c_stride_ == 0 ? n_ : c_stride_; }

  // Indirect GEMM: indirection pointers into a with a_offset, zero pointers, ks taps.
  void Test(F32IgemmFn igemm) const;
  // Direct GEMM: packed weights a (k x mr), rows of b b_stride apart; ks must be 1.
  void Test(F32GemmFn gemm) const;

 private:
  size_t mr_ = 1;
  size_t nr_ = 1;
  size_t m_ = 1;
  size_t n_ = 1;
  size_t k_ = 1;
  size_t ks_ = 1;
  size_t a_offset_ = 0;
  size_t zero_index_ = kNone;
  size_t zero_tap_ = kNone;
  size_t indirection_stride_ = 0;
  size_t b_stride_ = 0;
  size_t c_stride_ = 0;
};

}  // namespace testing
}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_TESTS_UKERNELS_GEMM_MICROKERNEL_TESTER_H_
