// auth.cc: the bearer-token check (in constant time) and reading the token file.
#include "server/auth.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace convserve {
namespace {

constexpr char kBearerPrefix[] = "Bearer ";

// Compares without an early exit, so the time taken does not tell how much
// of a guessed token was right.
bool ConstantTimeEquals(const grpc::string_ref& given, const std::string& expected) {
  unsigned char difference = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char got = i < given.size() ? static_cast<unsigned char>(given.data()[i]) : 0;
    difference |= got ^ static_cast<unsigned char>(expected[i]);
  }
  return difference == 0;
}

}  // namespace

absl::Status CheckBearerToken(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                              const std::string& expected_token) {
  auto found = metadata.find("authorization");
  if (found == metadata.end()) {
    return absl::UnauthenticatedError(
        "authorization: expected metadata 'authorization: Bearer <token>', got none");
  }
  const grpc::string_ref value = found->second;
  const size_t prefix_size = sizeof(kBearerPrefix) - 1;
  if (value.size() < prefix_size || value.substr(0, prefix_size) != kBearerPrefix) {
    return absl::UnauthenticatedError(
        "authorization: expected 'Bearer <token>', got a value of another scheme");
  }
  if (!ConstantTimeEquals(value.substr(prefix_size), expected_token)) {
    return absl::UnauthenticatedError("authorization: the token is not accepted");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  if (!file || !std::getline(file, line)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_token_file: cannot read a token from '", path, "'"));
  }
  const std::string token(absl::StripAsciiWhitespace(line));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_token_file: '", path, "' holds an empty token"));
  }
  return token;
}

}  // namespace convserve
