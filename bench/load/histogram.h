// histogram.h: a log-linear latency histogram (HdrHistogram's layout) with bounded memory.
//
// Values are unsigned 64-bit integers (convserve_load records nanoseconds). Values below 256
// are counted exactly; above, each power-of-two range [2^k, 2^(k+1)) is split into 128 linear
// sub-buckets of width 2^(k-7). A bucket is therefore never wider than 1/128 of its lower
// bound, and a percentile, reported as the middle of its bucket, is within
// kMaxRelativeError (1/256, about 0.4 %) of the recorded value it stands for. The whole
// uint64 range fits in kBucketCount (7424) counters, about 58 KiB, whatever the number of
// values recorded. min() and max() are exact.
//
// Not thread-safe: one writer at a time (convserve_load guards its histograms with a mutex).
#ifndef CONVSERVE_BENCH_LOAD_HISTOGRAM_H_
#define CONVSERVE_BENCH_LOAD_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace convserve::load {

class Histogram {
 public:
  // Linear sub-buckets per power-of-two range; values below 2 * kSubBuckets are exact.
  static constexpr int kSubBucketBits = 7;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;  // 128
  static constexpr uint64_t kExactBelow = 2 * kSubBuckets;                // 256
  static constexpr int kBucketCount =
      static_cast<int>(kExactBelow + (64 - kSubBucketBits - 1) * kSubBuckets);  // 7424
  // Largest |reported - recorded| / recorded of a percentile.
  static constexpr double kMaxRelativeError = 1.0 / (2 * kSubBuckets);

  // One non-empty bucket: the values in [lower, upper] (inclusive) were recorded `count` times.
  struct Bucket {
    uint64_t lower = 0;
    uint64_t upper = 0;
    uint64_t count = 0;
  };

  Histogram();

  void Record(uint64_t value) { RecordMany(value, 1); }
  void RecordMany(uint64_t value, uint64_t times);
  // Adds every value `other` recorded; the result equals one histogram that recorded both.
  void Merge(const Histogram& other);
  void Reset();

  uint64_t count() const { return count_; }
  // 0 when empty.
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  // Exact mean of the recorded values (0 when empty).
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_ / count_); }

  // The nearest-rank percentile: the value of rank ceil(percentile / 100 * count) (at least 1)
  // among the recorded values in ascending order, as the middle of its bucket, clamped to
  // [min(), max()]. percentile is clamped to [0, 100]; 0 gives min(), 100 gives max(). 0 when
  // empty.
  uint64_t ValueAtPercentile(double percentile) const;

  // The non-empty buckets in ascending order.
  std::vector<Bucket> Buckets() const;

  // The bucket layout, exposed for tests: index of the bucket holding `value`, and the
  // inclusive range of values of bucket `index`.
  static int BucketIndex(uint64_t value);
  static uint64_t BucketLower(int index);
  static uint64_t BucketUpper(int index);

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace convserve::load

#endif  // CONVSERVE_BENCH_LOAD_HISTOGRAM_H_
