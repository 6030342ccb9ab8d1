// histogram_test.cc: the log-linear histogram's percentiles against exact nearest-rank ones.
#include "bench/load/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace convserve::load {
namespace {

constexpr double kPercentiles[] = {0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99};

// The exact nearest-rank percentile of `values`: rank ceil(p / 100 * n), at least 1.
uint64_t ExactPercentile(std::vector<uint64_t> values, double percentile) {
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(percentile / 100.0 * static_cast<double>(values.size()));
  const size_t index = static_cast<size_t>(std::max(1.0, rank)) - 1;
  return values[std::min(index, values.size() - 1)];
}

// Every percentile of `histogram` within the stated relative error of the exact one.
void ExpectPercentilesClose(const Histogram& histogram, const std::vector<uint64_t>& values) {
  for (double p : kPercentiles) {
    const double exact = static_cast<double>(ExactPercentile(values, p));
    const double got = static_cast<double>(histogram.ValueAtPercentile(p));
    EXPECT_LE(std::abs(got - exact), Histogram::kMaxRelativeError * exact)
        << "p" << p << ": exact " << exact << ", got " << got;
  }
}

TEST(LoadHistogramTest, StatedErrorIsBelowOnePercent) {
  EXPECT_LE(Histogram::kMaxRelativeError, 0.01);
}

TEST(LoadHistogramTest, UniformOneToN) {
  constexpr uint64_t kN = 100000;
  std::vector<uint64_t> values;
  for (uint64_t v = 1; v <= kN; ++v) values.push_back(v);
  std::shuffle(values.begin(), values.end(), std::mt19937_64(3));
  Histogram histogram;
  for (uint64_t v : values) histogram.Record(v);
  EXPECT_EQ(histogram.count(), kN);
  EXPECT_EQ(histogram.min(), 1u);
  EXPECT_EQ(histogram.max(), kN);
  EXPECT_DOUBLE_EQ(histogram.mean(), (kN + 1) / 2.0);
  ExpectPercentilesClose(histogram, values);
  EXPECT_EQ(histogram.ValueAtPercentile(0), 1u);
  EXPECT_EQ(histogram.ValueAtPercentile(100), kN);
}

TEST(LoadHistogramTest, ConstantIsExactAtEveryPercentile) {
  const uint64_t value = 123456789;  // far outside the exact range, in a wide bucket
  Histogram histogram;
  histogram.RecordMany(value, 1000000);
  for (double p : kPercentiles) EXPECT_EQ(histogram.ValueAtPercentile(p), value) << p;
  EXPECT_EQ(histogram.min(), value);
  EXPECT_EQ(histogram.max(), value);
  EXPECT_DOUBLE_EQ(histogram.mean(), static_cast<double>(value));
}

TEST(LoadHistogramTest, TwoSpikes) {
  // 99 % of calls take 1 ms, 1 % take 1 s.
  std::vector<uint64_t> values(9900, 1000000);
  values.insert(values.end(), 100, 1000000000);
  Histogram histogram;
  for (uint64_t v : values) histogram.Record(v);
  ExpectPercentilesClose(histogram, values);
  EXPECT_EQ(histogram.max(), 1000000000u);
  EXPECT_EQ(histogram.min(), 1000000u);
  // The spike's edge: rank 9900 is the last fast call, rank 9901 the first slow one.
  EXPECT_LT(histogram.ValueAtPercentile(99.0), 1010000u);
  EXPECT_GT(histogram.ValueAtPercentile(99.01), 990000000u);
}

TEST(LoadHistogramTest, LogUniformValuesOverManyDecades) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> exponent(0, 12);  // 1 ns .. 1000 s
  std::vector<uint64_t> values;
  Histogram histogram;
  for (int i = 0; i < 200000; ++i) {
    values.push_back(static_cast<uint64_t>(std::pow(10.0, exponent(rng))));
    histogram.Record(values.back());
  }
  ExpectPercentilesClose(histogram, values);
  EXPECT_EQ(histogram.min(), *std::min_element(values.begin(), values.end()));
  EXPECT_EQ(histogram.max(), *std::max_element(values.begin(), values.end()));
}

TEST(LoadHistogramTest, BucketsTileTheWholeRangeNoWiderThanTheStatedError) {
  EXPECT_EQ(Histogram::BucketLower(0), 0u);
  EXPECT_EQ(Histogram::BucketUpper(Histogram::kBucketCount - 1), UINT64_MAX);
  for (int i = 0; i < Histogram::kBucketCount; ++i) {
    const uint64_t lower = Histogram::BucketLower(i), upper = Histogram::BucketUpper(i);
    ASSERT_LE(lower, upper) << i;
    ASSERT_EQ(Histogram::BucketIndex(lower), i);
    ASSERT_EQ(Histogram::BucketIndex(upper), i);
    if (i + 1 < Histogram::kBucketCount) {
      ASSERT_EQ(Histogram::BucketLower(i + 1), upper + 1) << i;
    }
    // A bucket of one value reports it exactly; a wider one reports its middle, within half its
    // width of any value in it, relative to the smallest.
    if (upper > lower) {
      ASSERT_LE(static_cast<double>(upper - lower + 1) / 2 / static_cast<double>(lower),
                Histogram::kMaxRelativeError)
          << i;
    }
  }
}

TEST(LoadHistogramTest, ZeroSmallAndHugeValues) {
  Histogram histogram;
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{255}, uint64_t{256}}) {
    histogram.Reset();
    histogram.Record(v);
    EXPECT_EQ(histogram.ValueAtPercentile(50), v);  // exact below 2 * kSubBuckets and at edges
    EXPECT_EQ(histogram.min(), v);
    EXPECT_EQ(histogram.max(), v);
  }
  histogram.Reset();
  histogram.Record(0);
  histogram.Record(UINT64_MAX);
  histogram.Record(UINT64_MAX - 1);
  EXPECT_EQ(histogram.min(), 0u);
  EXPECT_EQ(histogram.max(), UINT64_MAX);
  EXPECT_EQ(histogram.ValueAtPercentile(0), 0u);
  EXPECT_EQ(histogram.ValueAtPercentile(100), UINT64_MAX);
  EXPECT_EQ(histogram.ValueAtPercentile(10), 0u);
  const double high = static_cast<double>(histogram.ValueAtPercentile(60));
  EXPECT_LE(std::abs(high - 18446744073709551615.0), Histogram::kMaxRelativeError * high);
  EXPECT_GT(histogram.mean(), 1.2e19);  // no overflow in the sum
}

TEST(LoadHistogramTest, EmptyHistogram) {
  Histogram histogram;
  EXPECT_EQ(histogram.count(), 0u);
  EXPECT_EQ(histogram.min(), 0u);
  EXPECT_EQ(histogram.max(), 0u);
  EXPECT_EQ(histogram.mean(), 0.0);
  EXPECT_EQ(histogram.ValueAtPercentile(50), 0u);
  EXPECT_TRUE(histogram.Buckets().empty());
}

TEST(LoadHistogramTest, MemoryDoesNotGrowWithCalls) {
  Histogram histogram;
  histogram.RecordMany(5000, uint64_t{1} << 40);  // a trillion calls
  histogram.RecordMany(7000000, uint64_t{1} << 40);
  EXPECT_EQ(histogram.count(), uint64_t{1} << 41);
  EXPECT_EQ(histogram.Buckets().size(), 2u);
  EXPECT_NEAR(static_cast<double>(histogram.ValueAtPercentile(50)), 5000,
              5000 * Histogram::kMaxRelativeError);
  EXPECT_NEAR(static_cast<double>(histogram.ValueAtPercentile(50.0001)), 7e6,
              7e6 * Histogram::kMaxRelativeError);
}

TEST(LoadHistogramTest, MergeEqualsOneHistogramOfEverything) {
  std::mt19937_64 rng(5);
  std::lognormal_distribution<double> latency(13, 1.5);  // median ~0.44 ms, long tail
  Histogram single, left, right;
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = static_cast<uint64_t>(latency(rng));
    single.Record(v);
    (rng() % 3 == 0 ? left : right).Record(v);
  }
  Histogram merged;
  merged.Merge(left);
  merged.Merge(Histogram());  // merging nothing changes nothing
  merged.Merge(right);
  EXPECT_EQ(merged.count(), single.count());
  EXPECT_EQ(merged.min(), single.min());
  EXPECT_EQ(merged.max(), single.max());
  EXPECT_NEAR(merged.mean(), single.mean(), 1e-9 * single.mean());
  for (double p : kPercentiles) EXPECT_EQ(merged.ValueAtPercentile(p), single.ValueAtPercentile(p));
  const std::vector<Histogram::Bucket> a = merged.Buckets(), b = single.Buckets();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].lower, b[i].lower);
    EXPECT_EQ(a[i].count, b[i].count);
  }
}

TEST(LoadHistogramTest, BucketsSumToCount) {
  Histogram histogram;
  for (uint64_t v = 0; v < 100000; v += 7) histogram.Record(v * v);
  uint64_t total = 0;
  for (const Histogram::Bucket& bucket : histogram.Buckets()) total += bucket.count;
  EXPECT_EQ(total, histogram.count());
}

}  // namespace
}  // namespace convserve::load
