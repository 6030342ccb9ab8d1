// ukernel_test_util.cc: the result check the micro-kernel testers share.
#include "tests/ukernels/ukernel_test_util.h"

#include <cmath>
#include <cstddef>
#include <vector>

#include "gtest/gtest.h"

namespace convserve {
namespace ukernels {
namespace testing {

void ExpectResult(const std::vector<float>& c, size_t m, size_t n, size_t c_stride,
                  const std::vector<double>& expected, const std::vector<double>& bound) {
  size_t wrong = 0, overwritten = 0;
  for (size_t index = 0; index < c.size(); ++index) {
    const size_t i = index / c_stride, j = index % c_stride;
    if (i < m && j < n) {
      const double want = expected[i * n + j];
      const float got = c[index];
      const bool ok = std::isnan(want)
                          ? std::isnan(got)
                          : !std::isnan(got) && std::fabs(got - want) <= bound[i * n + j];
      if (!ok && wrong++ == 0) {
        ADD_FAILURE() << "c[" << i << "][" << j << "] = " << got << ", expected " << want
                      << " (tolerance " << bound[i * n + j] << ")";
      }
    } else if (!IsSentinel(c[index]) && overwritten++ == 0) {
      ADD_FAILURE() << "wrote c[" << i << "][" << j << "] (flat " << index
                    << ") outside the m x n result: " << c[index];
    }
  }
  EXPECT_EQ(wrong, 0u) << "cells outside tolerance";
  EXPECT_EQ(overwritten, 0u) << "cells written outside the result";
}

}  // namespace testing
}  // namespace ukernels
}  // namespace convserve
