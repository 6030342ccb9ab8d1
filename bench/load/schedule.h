// schedule.h: when open-loop calls are due, and which kind of call each one is.
//
// ArrivalSchedule gives the send times of an open-loop run as offsets from its start:
// constant (arrival i at exactly i / rate seconds, computed from i so that rounding never
// accumulates) or Poisson (exponential gaps of mean 1 / rate drawn from a seeded
// std::mt19937_64, the same sequence for the same seed on every platform). CallMix picks the
// kind of each call from weights such as "health:1,conv:3", from its own seeded generator.
//
// Neither is thread-safe; convserve_load gives each sender its own.
#ifndef CONVSERVE_BENCH_LOAD_SCHEDULE_H_
#define CONVSERVE_BENCH_LOAD_SCHEDULE_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace convserve::load {

enum class Arrival { kConstant, kPoisson };

// "constant" or "poisson"; INVALID_ARGUMENT naming --arrival otherwise.
absl::StatusOr<Arrival> ParseArrival(const std::string& text);
const char* ArrivalName(Arrival arrival);

class ArrivalSchedule {
 public:
  // REQUIRES: rate_per_second > 0 and finite.
  ArrivalSchedule(Arrival arrival, double rate_per_second, uint64_t seed);

  // The send time of the next call, in nanoseconds after the start; non-decreasing. The first
  // call is due at 0 for a constant schedule and after one random gap for a Poisson one.
  int64_t NextNanos();

 private:
  // A uniform double in [0, 1) from the top 53 bits of one draw.
  double Uniform();

  Arrival arrival_;
  double rate_;
  std::mt19937_64 rng_;
  int64_t index_ = 0;   // constant: arrivals handed out so far
  double seconds_ = 0;  // poisson: time of the last arrival
};

// A weighted mix of call kinds.
class CallMix {
 public:
  struct Entry {
    std::string name;
    int64_t weight = 0;
  };

  // "name:weight,name:weight,..." with each name in `known` at most once and positive integer
  // weights; a bare "name" has weight 1. INVALID_ARGUMENT naming `flag`, what was expected and
  // what was received otherwise.
  static absl::StatusOr<CallMix> Parse(const std::string& flag, const std::string& text,
                                       const std::vector<std::string>& known);
  // A mix of one kind.
  static CallMix Single(const std::string& name);

  const std::vector<Entry>& entries() const { return entries_; }
  int64_t total_weight() const { return total_; }

  // An index into entries(), entry i with probability weight_i / total_weight(), drawn from
  // `rng`.
  size_t Pick(std::mt19937_64& rng) const;

 private:
  std::vector<Entry> entries_;
  int64_t total_ = 0;
};

}  // namespace convserve::load

#endif  // CONVSERVE_BENCH_LOAD_SCHEDULE_H_
