// schedule_test.cc: open-loop arrival schedules and the weighted call mix.
#include "bench/load/schedule.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace convserve::load {
namespace {

using ::testing::HasSubstr;

TEST(LoadArrivalScheduleTest, ConstantIsExactAndDoesNotDrift) {
  for (double rate : {200.0, 3.0, 7919.0}) {
    ArrivalSchedule schedule(Arrival::kConstant, rate, /*seed=*/1);
    for (int64_t i = 0; i < 100000; ++i) {
      ASSERT_EQ(schedule.NextNanos(), std::llround(static_cast<double>(i) / rate * 1e9))
          << "rate " << rate << ", arrival " << i;
    }
  }
}

struct GapStats {
  double rate, cv, above_mean;
};

GapStats Measure(double rate, uint64_t seed, int n) {
  ArrivalSchedule schedule(Arrival::kPoisson, rate, seed);
  std::vector<double> gaps;
  int64_t previous = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t t = schedule.NextNanos();
    EXPECT_GE(t, previous);
    gaps.push_back(static_cast<double>(t - previous));
    previous = t;
  }
  double sum = 0, squares = 0;
  for (double g : gaps) sum += g;
  const double mean = sum / n;
  int above = 0;
  for (double g : gaps) {
    squares += (g - mean) * (g - mean);
    above += g > mean;
  }
  return GapStats{n / (static_cast<double>(previous) / 1e9), std::sqrt(squares / n) / mean,
                  static_cast<double>(above) / n};
}

TEST(LoadArrivalScheduleTest, PoissonHasTheMeanRateAndExponentialGaps) {
  for (double rate : {50.0, 1000.0, 20000.0}) {
    const GapStats stats = Measure(rate, /*seed=*/42, 200000);
    // Standard errors at n = 200000: rate 0.22 %, CV about 0.3 %.
    EXPECT_NEAR(stats.rate / rate, 1.0, 0.01) << rate;
    EXPECT_NEAR(stats.cv, 1.0, 0.02) << rate;
    // P(gap > mean) = 1/e for an exponential.
    EXPECT_NEAR(stats.above_mean, std::exp(-1.0), 0.005) << rate;
  }
}

TEST(LoadArrivalScheduleTest, PoissonIsDeterministicPerSeed) {
  ArrivalSchedule a(Arrival::kPoisson, 100, 7), b(Arrival::kPoisson, 100, 7),
      c(Arrival::kPoisson, 100, 8);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    const int64_t t = a.NextNanos();
    ASSERT_EQ(t, b.NextNanos());
    differs = differs || t != c.NextNanos();
  }
  EXPECT_TRUE(differs);
}

TEST(LoadArrivalTest, ParsesNamesAndRefusesOthers) {
  EXPECT_EQ(*ParseArrival("constant"), Arrival::kConstant);
  EXPECT_EQ(*ParseArrival("Poisson"), Arrival::kPoisson);
  const absl::StatusOr<Arrival> bad = ParseArrival("uniform");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("--arrival: expected constant or poisson"));
  EXPECT_THAT(bad.status().message(), HasSubstr("'uniform'"));
}

const std::vector<std::string> kKnown = {"health", "conv", "run_model"};

TEST(LoadCallMixTest, ParsesWeights) {
  absl::StatusOr<CallMix> mix = CallMix::Parse("mix", "health:1, conv:3,run_model", kKnown);
  ASSERT_TRUE(mix.ok()) << mix.status();
  ASSERT_EQ(mix->entries().size(), 3u);
  EXPECT_EQ(mix->entries()[0].name, "health");
  EXPECT_EQ(mix->entries()[1].weight, 3);
  EXPECT_EQ(mix->entries()[2].weight, 1);
  EXPECT_EQ(mix->total_weight(), 5);
}

TEST(LoadCallMixTest, RefusesMalformedMixesNamingTheFlagAndTheInput) {
  for (const char* text : {"health:0", "health:x", "health:-1", "bogus:1", "health:1,health:2",
                           "health:1,,conv:1", "", "health:1.5"}) {
    const absl::StatusOr<CallMix> mix = CallMix::Parse("mix", text, kKnown);
    ASSERT_FALSE(mix.ok()) << text;
    EXPECT_EQ(mix.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(mix.status().message(), HasSubstr("--mix: expected name:weight"));
    EXPECT_THAT(mix.status().message(), HasSubstr(absl::StrCat("got '", text, "'")));
  }
}

TEST(LoadCallMixTest, PicksInProportionToTheWeights) {
  const CallMix mix = *CallMix::Parse("mix", "health:1,conv:3,run_model:6", kKnown);
  std::mt19937_64 rng(9);
  std::vector<int> counts(3, 0);
  constexpr int kPicks = 200000;
  for (int i = 0; i < kPicks; ++i) ++counts[mix.Pick(rng)];
  for (size_t i = 0; i < 3; ++i) {
    const double expected = static_cast<double>(mix.entries()[i].weight) / mix.total_weight();
    EXPECT_NEAR(static_cast<double>(counts[i]) / kPicks, expected, 0.005) << i;
  }
  const CallMix single = CallMix::Single("conv");
  EXPECT_EQ(single.Pick(rng), 0u);
}

}  // namespace
}  // namespace convserve::load
