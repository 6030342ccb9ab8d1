// ukernel_test_util.h: what the micro-kernel testers share: the scalar reference of the clamp in
// double, the rounding-error bound, the sentinel that marks cells a kernel must not write, and
// random data.
#ifndef CONVSERVE_TESTS_UKERNELS_UKERNEL_TEST_UTIL_H_
#define CONVSERVE_TESTS_UKERNELS_UKERNEL_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace convserve {
namespace ukernels {
namespace testing {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Fills the cells a micro-kernel must leave alone; compared bit for bit.
constexpr float kSentinel = -7777.25f;

inline bool IsSentinel(float v) {
  uint32_t bits, sentinel_bits;
  std::memcpy(&bits, &v, sizeof(bits));
  std::memcpy(&sentinel_bits, &kSentinel, sizeof(sentinel_bits));
  return bits == sentinel_bits;
}

// The micro-kernels' clamp in double: NaN passes through, otherwise min(hi, max(lo, v)).
inline double ClampReference(double v, float lo, float hi) {
  if (std::isnan(v)) return v;
  return std::min<double>(hi, std::max<double>(lo, v));
}

// Largest error of a float sum of `terms` products (each rounded at most twice with or without
// FMA) whose magnitudes add up to `magnitude`, plus a floor for sums near zero.
inline double RoundingBound(size_t terms, double magnitude) {
  return 2.0 * static_cast<double>(terms + 1) * std::numeric_limits<float>::epsilon() * magnitude +
         1e-6;
}

// `count` values uniform in [-scale, scale].
inline std::vector<float> RandomFloats(std::mt19937* rng, size_t count, float scale = 1.0f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> values(count);
  for (float& v : values) v = dist(*rng);
  return values;
}

// The knobs every arithmetic micro-kernel tester shares: the clamp passed to the kernel, the
// input range, NaN injection, iterations and the seed. CRTP, so that the setters return the
// derived tester and chain with its own.
template <typename Tester>
class KernelTesterKnobs {
 public:
  // Clamp bounds passed to the kernel.
  Tester& min(float min) {
    min_ = min;
    return self();
  }
  float min() const { return min_; }
  Tester& max(float max) {
    max_ = max;
    return self();
  }
  float max() const { return max_; }

  // Inputs are uniform in [-input_scale, input_scale] (weights and bias in [-1, 1]).
  Tester& input_scale(float scale) {
    input_scale_ = scale;
    return self();
  }
  float input_scale() const { return input_scale_; }

  // Puts one NaN among the inputs each iteration; the clamp must pass it through.
  Tester& nan_input(bool nan_input) {
    nan_input_ = nan_input;
    return self();
  }
  bool nan_input() const { return nan_input_; }

  // Test() runs this many times, each with fresh random data.
  Tester& iterations(size_t iterations) {
    iterations_ = iterations;
    return self();
  }
  size_t iterations() const { return iterations_; }

  Tester& seed(uint32_t seed) {
    seed_ = seed;
    return self();
  }

 protected:
  float min_ = -kInf;
  float max_ = kInf;
  float input_scale_ = 1.0f;
  bool nan_input_ = false;
  size_t iterations_ = 1;
  uint32_t seed_ = 1;

 private:
  Tester& self() { return static_cast<Tester&>(*this); }
};

// Compares c (m rows c_stride apart, plus slack) with `expected` (m x n, row-major) within
// `bound` (m x n; NaN expected means NaN required) and checks that every other cell of c still
// holds kSentinel. Reports the first mismatch of each kind only, so that a broken kernel does not
// flood the log.
void ExpectResult(const std::vector<float>& c, size_t m, size_t n, size_t c_stride,
                  const std::vector<double>& expected, const std::vector<double>& bound);

}  // namespace testing
}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_TESTS_UKERNELS_UKERNEL_TEST_UTIL_H_
