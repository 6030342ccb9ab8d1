// histogram.cc: the log-linear histogram's bucket arithmetic, merge and percentiles.
#include "bench/load/histogram.h"

#include <algorithm>
#include <cmath>

namespace convserve::load {

Histogram::Histogram() : counts_(kBucketCount, 0) {}

int Histogram::BucketIndex(uint64_t value) {
  if (value < kExactBelow) return static_cast<int>(value);
  // value in [2^k, 2^(k+1)) with k >= 8; its top kSubBucketBits + 1 bits pick the sub-bucket.
  const int k = 63 - __builtin_clzll(value);
  const int shift = k - kSubBucketBits;
  const uint64_t sub = (value >> shift) - kSubBuckets;  // [0, 128)
  return static_cast<int>(kExactBelow +
                          static_cast<uint64_t>(k - kSubBucketBits - 1) * kSubBuckets + sub);
}

uint64_t Histogram::BucketLower(int index) {
  const uint64_t i = static_cast<uint64_t>(index);
  if (i < kExactBelow) return i;
  const uint64_t j = i - kExactBelow;
  const int k = static_cast<int>(j / kSubBuckets) + kSubBucketBits + 1;
  const uint64_t sub = j % kSubBuckets + kSubBuckets;  // [128, 256)
  return sub << (k - kSubBucketBits);
}

uint64_t Histogram::BucketUpper(int index) {
  if (static_cast<uint64_t>(index) < kExactBelow) return static_cast<uint64_t>(index);
  const int k = static_cast<int>((static_cast<uint64_t>(index) - kExactBelow) / kSubBuckets) +
                kSubBucketBits + 1;
  // Lower + width - 1; for the last bucket this is exactly UINT64_MAX, no overflow.
  return BucketLower(index) + ((uint64_t{1} << (k - kSubBucketBits)) - 1);
}

void Histogram::RecordMany(uint64_t value, uint64_t times) {
  if (times == 0) return;
  counts_[static_cast<size_t>(BucketIndex(value))] += times;
  count_ += times;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value) * times;
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  sum_ = 0;
}

uint64_t Histogram::ValueAtPercentile(double percentile) const {
  if (count_ == 0) return 0;
  if (!(percentile > 0)) return min();  // also NaN
  if (percentile >= 100) return max_;
  const double wanted = std::ceil(percentile / 100.0 * static_cast<double>(count_));
  const uint64_t rank = std::clamp<uint64_t>(static_cast<uint64_t>(wanted), 1, count_);
  uint64_t seen = 0;
  for (int i = 0; i < kBucketCount; ++i) {
    seen += counts_[static_cast<size_t>(i)];
    if (seen >= rank) {
      const uint64_t lower = BucketLower(i);
      const uint64_t middle = lower + (BucketUpper(i) - lower + 1) / 2;
      return std::clamp(lower == BucketUpper(i) ? lower : middle, min_, max_);
    }
  }
  return max_;
}

std::vector<Histogram::Bucket> Histogram::Buckets() const {
  std::vector<Bucket> buckets;
  for (int i = 0; i < kBucketCount; ++i) {
    const uint64_t n = counts_[static_cast<size_t>(i)];
    if (n != 0) buckets.push_back(Bucket{BucketLower(i), BucketUpper(i), n});
  }
  return buckets;
}

}  // namespace convserve::load
