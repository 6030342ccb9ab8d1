// gemm_microkernel_tester.cc: the checks of GemmMicrokernelTester (packing, reference, compare).
#include "tests/ukernels/gemm_microkernel_tester.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/ukernels/ukernel_test_util.h"

namespace convserve {
namespace ukernels {
namespace testing {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::string Describe(const char* kind, size_t mr, size_t nr, size_t m, size_t n, size_t k,
                     size_t ks, size_t a_offset, size_t zero_index, size_t zero_tap,
                     size_t c_stride, float lo, float hi, bool nan_input) {
  auto index = [](size_t v) {
    return v == GemmMicrokernelTester::kNone ? std::string("none") : std::to_string(v);
  };
  return std::string(kind) + " tile " + std::to_string(mr) + "x" + std::to_string(nr) + " m " +
         std::to_string(m) + " n " + std::to_string(n) + " k " + std::to_string(k) + " ks " +
         std::to_string(ks) + " a_offset " + std::to_string(a_offset) + " zero_index " +
         index(zero_index) + " zero_tap " + index(zero_tap) + " c_stride " +
         std::to_string(c_stride) + " clamp [" + std::to_string(lo) + ", " + std::to_string(hi) +
         "] nan_input " + std::to_string(nan_input);
}

}  // namespace

void GemmMicrokernelTester::Test(F32IgemmFn igemm) const {
  ASSERT_TRUE(m_ >= 1 && m_ <= mr_ && n_ >= 1 && n_ <= nr_ && k_ >= 1 && ks_ >= 1);
  ASSERT_GE(indirection_stride(), m_);
  ASSERT_GE(c_stride(), n_);
  SCOPED_TRACE(Describe("igemm", mr_, nr_, m_, n_, k_, ks_, a_offset_, zero_index_, zero_tap_,
                        c_stride(), min_, max_, nan_input_));
  std::mt19937 rng(seed_);
  for (size_t iteration = 0; iteration < iterations_; ++iteration) {
    // a: a_offset floats the kernel must skip, then one row of k floats per (tap, pixel).
    std::vector<float> a = RandomFloats(&rng, a_offset_ + ks_ * m_ * k_, input_scale_);
    // zero: k zeros, then NaNs where a kernel that wrongly offsets `zero` would read.
    std::vector<float> zero(k_ + a_offset_, kNaN);
    std::fill(zero.begin(), zero.begin() + k_, 0.0f);
    auto is_zero = [&](size_t t, size_t i) { return i == zero_index_ || t == zero_tap_; };
    // Slots for rows past m stay null: the kernel must not touch them.
    std::vector<const float*> indirection(ks_ * indirection_stride(), nullptr);
    for (size_t t = 0; t < ks_; ++t) {
      for (size_t i = 0; i < m_; ++i) {
        indirection[t * indirection_stride() + i] =
            is_zero(t, i) ? zero.data() : a.data() + (t * m_ + i) * k_;
      }
    }
    // packed: nr bias values, then [tap][k][nr] weights; columns past n are zero.
    std::vector<float> packed((1 + ks_ * k_) * nr_, 0.0f);
    for (size_t j = 0; j < n_; ++j) {
      packed[j] = RandomFloats(&rng, 1)[0];
      for (size_t tk = 0; tk < ks_ * k_; ++tk)
        packed[nr_ + tk * nr_ + j] = RandomFloats(&rng, 1)[0];
    }
    if (nan_input_) {
      // In a row that is read when there is one (poisons a pixel), else in a weight (poisons a
      // channel: 0 * NaN is NaN).
      std::vector<size_t> read_rows;
      for (size_t t = 0; t < ks_; ++t) {
        for (size_t i = 0; i < m_; ++i) {
          if (!is_zero(t, i)) read_rows.push_back(t * m_ + i);
        }
      }
      if (!read_rows.empty()) {
        a[a_offset_ + read_rows[rng() % read_rows.size()] * k_ + rng() % k_] = kNaN;
      } else {
        packed[nr_ + (rng() % (ks_ * k_)) * nr_ + rng() % n_] = kNaN;
      }
    }
    std::vector<float> c(m_ * c_stride() + 2 * nr_, kSentinel);

    igemm(m_, n_, ks_, k_, indirection.data(), indirection_stride(), a_offset_, zero.data(),
          packed.data(), c.data(), c_stride(), min_, max_);

    std::vector<double> expected(m_ * n_), bound(m_ * n_);
    for (size_t i = 0; i < m_; ++i) {
      for (size_t j = 0; j < n_; ++j) {
        double acc = packed[j], magnitude = std::fabs(acc);
        for (size_t t = 0; t < ks_; ++t) {
          for (size_t kk = 0; kk < k_; ++kk) {
            const double x = is_zero(t, i) ? 0.0 : a[a_offset_ + (t * m_ + i) * k_ + kk];
            const double product = x * packed[nr_ + (t * k_ + kk) * nr_ + j];
            acc += product;
            magnitude += std::fabs(product);
          }
        }
        expected[i * n_ + j] = ClampReference(acc, min_, max_);
        bound[i * n_ + j] = RoundingBound(ks_ * k_, magnitude);
      }
    }
    ExpectResult(c, m_, n_, c_stride(), expected, bound);
    if (::testing::Test::HasFailure()) return;
  }
}

void GemmMicrokernelTester::Test(F32GemmFn gemm) const {
  ASSERT_TRUE(m_ >= 1 && m_ <= mr_ && n_ >= 1 && n_ <= nr_ && k_ >= 1);
  ASSERT_EQ(ks_, 1u) << "the direct GEMM has no taps";
  ASSERT_GE(b_stride(), n_);
  ASSERT_GE(c_stride(), n_);
  SCOPED_TRACE(Describe("gemm", mr_, nr_, m_, n_, k_, ks_, 0, kNone, kNone, c_stride(), min_, max_,
                        nan_input_) +
               " b_stride " + std::to_string(b_stride()));
  std::mt19937 rng(seed_);
  for (size_t iteration = 0; iteration < iterations_; ++iteration) {
    // bias: mr values; a: [k][mr] weights with rows past m zero.
    const std::vector<float> bias = RandomFloats(&rng, mr_);
    std::vector<float> a(k_ * mr_, 0.0f);
    for (size_t kk = 0; kk < k_; ++kk) {
      for (size_t i = 0; i < m_; ++i) a[kk * mr_ + i] = RandomFloats(&rng, 1)[0];
    }
    // b: k rows of n values b_stride apart, sized exactly so that a read past column n of the
    // last row leaves the buffer (AddressSanitizer); the gaps between rows hold NaN.
    std::vector<float> b = RandomFloats(&rng, (k_ - 1) * b_stride() + n_, input_scale_);
    for (size_t index = 0; index < b.size(); ++index) {
      if (index % b_stride() >= n_) b[index] = kNaN;
    }
    if (nan_input_) b[(rng() % k_) * b_stride() + rng() % n_] = kNaN;  // Poisons a column.
    std::vector<float> c(m_ * c_stride() + 2 * nr_, kSentinel);

    gemm(m_, n_, k_, a.data(), bias.data(), b.data(), b_stride(), c.data(), c_stride(), min_, max_);

    std::vector<double> expected(m_ * n_), bound(m_ * n_);
    for (size_t i = 0; i < m_; ++i) {
      for (size_t j = 0; j < n_; ++j) {
        double acc = bias[i], magnitude = std::fabs(acc);
        for (size_t kk = 0; kk < k_; ++kk) {
          const double product = static_cast<double>(a[kk * mr_ + i]) * b[kk * b_stride() + j];
          acc += product;
          magnitude += std::fabs(product);
        }
        expected[i * n_ + j] = ClampReference(acc, min_, max_);
        bound[i * n_ + j] = RoundingBound(k_, magnitude);
      }
    }
    ExpectResult(c, m_, n_, c_stride(), expected, bound);
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace testing
}  // namespace ukernels
}  // namespace convserve
