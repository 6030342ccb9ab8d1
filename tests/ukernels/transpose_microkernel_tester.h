// transpose_microkernel_tester.h: checks one call of the transpose micro-kernel (ukernels.h):
// every cell moved exactly, no cell written outside the transposed block.
#ifndef CONVSERVE_TESTS_UKERNELS_TRANSPOSE_MICROKERNEL_TESTER_H_
#define CONVSERVE_TESTS_UKERNELS_TRANSPOSE_MICROKERNEL_TESTER_H_

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/ukernels/ukernels.h"
#include "gtest/gtest.h"
#include "tests/ukernels/ukernel_test_util.h"

namespace convserve {
namespace ukernels {
namespace testing {

using F32TransposeFn = decltype(&f32_transpose_8x8_avx2);

class TransposeMicrokernelTester {
 public:
  TransposeMicrokernelTester& rows(size_t rows) {
    rows_ = rows;
    return *this;
  }
  TransposeMicrokernelTester& cols(size_t cols) {
    cols_ = cols;
    return *this;
  }
  // Floats between rows of src (0: cols) and of dst (0: rows).
  TransposeMicrokernelTester& src_stride(size_t stride) {
    src_stride_ = stride;
    return *this;
  }
  size_t src_stride() const { return src_stride_ == 0 ? cols_ : src_stride_; }
  TransposeMicrokernelTester& dst_stride(size_t stride) {
    dst_stride_ = stride;
    return *this;
  }
  size_t dst_stride() const { return dst_stride_ == 0 ? rows_ : dst_stride_; }

  void Test(F32TransposeFn transpose) const {
    ASSERT_TRUE(rows_ >= 1 && cols_ >= 1 && src_stride() >= cols_ && dst_stride() >= rows_);
    SCOPED_TRACE("transpose " + std::to_string(rows_) + "x" + std::to_string(cols_) +
                 " src_stride " + std::to_string(src_stride()) + " dst_stride " +
                 std::to_string(dst_stride()));
    std::mt19937 rng(rows_ * 131 + cols_);
    // Sized exactly: a read past the last row's cols leaves the buffer.
    const std::vector<float> src = RandomFloats(&rng, (rows_ - 1) * src_stride() + cols_);
    std::vector<float> dst(cols_ * dst_stride() + 8, kSentinel);

    transpose(rows_, cols_, src.data(), src_stride(), dst.data(), dst_stride());

    std::vector<double> expected(cols_ * rows_);
    for (size_t j = 0; j < cols_; ++j) {
      for (size_t i = 0; i < rows_; ++i) expected[j * rows_ + i] = src[i * src_stride() + j];
    }
    ExpectResult(dst, cols_, rows_, dst_stride(), expected, std::vector<double>(expected.size()));
  }

 private:
  size_t rows_ = 1;
  size_t cols_ = 1;
  size_t src_stride_ = 0;
  size_t dst_stride_ = 0;
};

}  // namespace testing
}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_TESTS_UKERNELS_TRANSPOSE_MICROKERNEL_TESTER_H_
