// schedule.cc: constant and Poisson arrival times, and the weighted call mix.
#include "bench/load/schedule.h"

#include <cmath>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace convserve::load {

absl::StatusOr<Arrival> ParseArrival(const std::string& text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "constant") return Arrival::kConstant;
  if (lower == "poisson") return Arrival::kPoisson;
  return absl::InvalidArgumentError(
      absl::StrCat("--arrival: expected constant or poisson, got '", text, "'"));
}

const char* ArrivalName(Arrival arrival) {
  return arrival == Arrival::kConstant ? "constant" : "poisson";
}

ArrivalSchedule::ArrivalSchedule(Arrival arrival, double rate_per_second, uint64_t seed)
    : arrival_(arrival), rate_(rate_per_second), rng_(seed) {}

double ArrivalSchedule::Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int64_t ArrivalSchedule::NextNanos() {
  if (arrival_ == Arrival::kConstant) {
    const double seconds = static_cast<double>(index_++) / rate_;
    return std::llround(seconds * 1e9);
  }
  // Inverse transform: -ln(1 - U) is exponential with mean 1; 1 - U is in (0, 1].
  seconds_ += -std::log1p(-Uniform()) / rate_;
  return std::llround(seconds_ * 1e9);
}

absl::StatusOr<CallMix> CallMix::Parse(const std::string& flag, const std::string& text,
                                       const std::vector<std::string>& known) {
  const std::string expected =
      absl::StrCat("name:weight pairs separated by commas, names in {", absl::StrJoin(known, ", "),
                   "}, each once, weights positive integers");
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": expected ", expected, ", got '", text, "' (", why, ")"));
  };
  CallMix mix;
  std::set<std::string> seen;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) return bad("an empty entry");
    std::vector<absl::string_view> name_weight = absl::StrSplit(part, absl::MaxSplits(':', 1));
    Entry entry;
    entry.name = std::string(absl::StripAsciiWhitespace(name_weight[0]));
    entry.weight = 1;
    if (name_weight.size() == 2 && (!absl::SimpleAtoi(name_weight[1], &entry.weight) ||
                                    entry.weight <= 0 || entry.weight > 1000000)) {
      return bad(absl::StrCat("weight '", name_weight[1], "' of ", entry.name,
                              " is not an integer in [1, 1000000]"));
    }
    bool is_known = false;
    for (const std::string& name : known) is_known = is_known || name == entry.name;
    if (!is_known) return bad(absl::StrCat("unknown call '", entry.name, "'"));
    if (!seen.insert(entry.name).second) return bad(absl::StrCat(entry.name, " given twice"));
    mix.total_ += entry.weight;
    mix.entries_.push_back(std::move(entry));
  }
  return mix;
}

CallMix CallMix::Single(const std::string& name) {
  CallMix mix;
  mix.entries_.push_back(Entry{name, 1});
  mix.total_ = 1;
  return mix;
}

size_t CallMix::Pick(std::mt19937_64& rng) const {
  if (entries_.size() == 1) return 0;
  // Modulo bias is below total / 2^64: negligible for weights up to 10^6 each.
  int64_t ticket = static_cast<int64_t>(rng() % static_cast<uint64_t>(total_));
  for (size_t i = 0; i < entries_.size(); ++i) {
    ticket -= entries_[i].weight;
    if (ticket < 0) return i;
  }
  return entries_.size() - 1;
}

}  // namespace convserve::load
