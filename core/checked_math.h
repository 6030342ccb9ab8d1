// checked_math.h: 64-bit size arithmetic that reports overflow instead of
// wrapping. Every size derived from a request goes through these before it can
// reach an allocation.
#ifndef CONVSERVE_CORE_CHECKED_MATH_H_
#define CONVSERVE_CORE_CHECKED_MATH_H_

#include <cstdint>
#include <initializer_list>
#include <optional>

#include "absl/types/span.h"

namespace convserve {

// a * b, or nullopt if the product does not fit in int64_t.
inline std::optional<int64_t> CheckedMul(int64_t a, int64_t b) {
  int64_t product;
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

// a + b, or nullopt if the sum does not fit in int64_t.
inline std::optional<int64_t> CheckedAdd(int64_t a, int64_t b) {
  int64_t sum;
  if (__builtin_add_overflow(a, b, &sum)) return std::nullopt;
  return sum;
}

// The product of all factors, or nullopt on overflow.
inline std::optional<int64_t> CheckedProduct(absl::Span<const int64_t> factors) {
  int64_t product = 1;
  for (int64_t factor : factors) {
    std::optional<int64_t> next = CheckedMul(product, factor);
    if (!next) return std::nullopt;
    product = *next;
  }
  return product;
}
inline std::optional<int64_t> CheckedProduct(std::initializer_list<int64_t> factors) {
  return CheckedProduct(absl::Span<const int64_t>(factors.begin(), factors.size()));
}

}  // namespace convserve

#endif  // CONVSERVE_CORE_CHECKED_MATH_H_
