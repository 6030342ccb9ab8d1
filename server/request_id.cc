// request_id.cc: making, checking and taking call IDs.
#include "server/request_id.h"

#include <cstdint>
#include <iterator>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/printable.h"

namespace convserve {
namespace {

// What every refusal starts with.
constexpr char kExpected[] = "metadata x-request-id: expected 1 to 128 printable ASCII characters";

std::mt19937_64& ThreadEngine() {
  // Seeded from 256 bits of std::random_device, once per thread: threads
  // never share state (no lock) nor a sequence.
  thread_local std::mt19937_64 engine = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(),
                       device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  return engine;
}

}  // namespace

std::string NewRequestId() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::mt19937_64& engine = ThreadEngine();
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    uint64_t bits = engine();
    for (int digit = 0; digit < 16; ++digit) {
      id[half * 16 + digit] = kHex[bits & 0xf];
      bits >>= 4;
    }
  }
  return id;
}

absl::Status CheckRequestId(absl::string_view id) {
  if (id.empty())
    return absl::InvalidArgumentError(absl::StrCat(kExpected, ", got an empty value"));
  if (id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(kExpected, ", got ", id.size(), " characters: '", Printable(id), "'"));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const unsigned char byte = static_cast<unsigned char>(id[i]);
    if (byte < 0x20 || byte > 0x7e) {
      return absl::InvalidArgumentError(
          absl::StrCat(kExpected, ", got '", Printable(id),
                       absl::StrFormat("' (byte 0x%02x at offset %d)", byte, i)));
    }
  }
  return absl::OkStatus();
}

CallRequestId TakeRequestId(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
  CallRequestId result;
  const auto [first, last] = metadata.equal_range(kRequestIdKey);
  const size_t count = static_cast<size_t>(std::distance(first, last));
  if (count == 1) {
    const absl::string_view sent(first->second.data(), first->second.size());
    result.status = CheckRequestId(sent);
    if (result.status.ok()) {
      result.id = std::string(sent);
      return result;
    }
  } else if (count > 1) {
    result.status = absl::InvalidArgumentError(
        absl::StrCat("metadata x-request-id: expected one value, got ", count));
  }
  result.id = NewRequestId();
  return result;
}

}  // namespace convserve
