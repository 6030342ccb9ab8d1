// auth.cc: the bearer-token check (in constant time) and reading the token file.
#include "server/auth.h"

#include <google/protobuf/descriptor.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "convserve/v1/convserve.grpc.pb.h"
#include "server/logging.h"
#include "server/request_id.h"

namespace convserve {
namespace {

constexpr char kBearerPrefix[] = "Bearer ";
constexpr char kConvServicePrefix[] = "/convserve.v1.ConvService/";

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

// The static name of ConvService method `path` ("/convserve.v1.ConvService/Conv"
// -> "Conv"), or nullptr if `path` is not one: the descriptor pool outlives
// every call, as CallRecord::method needs.
const char* ConvServiceMethod(const grpc::string_ref& path) {
  const grpc::string_ref prefix(kConvServicePrefix, sizeof(kConvServicePrefix) - 1);
  if (path.size() <= prefix.size() || path.substr(0, prefix.size()) != prefix) return nullptr;
  // Through a message of the same file: that links the file's descriptor in.
  static const google::protobuf::ServiceDescriptor* const service =
      v1::ConvRequest::descriptor()->file()->FindServiceByName("ConvService");
  if (service == nullptr) return nullptr;
  const grpc::string_ref name = path.substr(prefix.size());
  const google::protobuf::MethodDescriptor* method =
      service->FindMethodByName(std::string(name.data(), name.size()));
  return method == nullptr ? nullptr : method->name().c_str();
}

class BearerTokenProcessor : public grpc::AuthMetadataProcessor {
 public:
  BearerTokenProcessor(std::string expected_token, CallObserver* observer)
      : expected_token_(std::move(expected_token)), observer_(observer) {}

  // A map lookup and a comparison: cheap enough for gRPC's own thread.
  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* /*context*/,
                       OutputMetadata* /*consumed*/, OutputMetadata* /*response*/) override {
    auto path = auth_metadata.find(":path");
    // Other services (health, reflection) stay open; an unknown method gets
    // gRPC's UNIMPLEMENTED without its body being read.
    const char* method = path == auth_metadata.end() ? nullptr : ConvServiceMethod(path->second);
    if (method == nullptr) return grpc::Status::OK;
    const absl::Status authorized = CheckBearerToken(auth_metadata, expected_token_);
    if (authorized.ok()) return grpc::Status::OK;
    // Logged and counted like a call the handler refuses, with what is known
    // before the call exists (no peer address).
    const CallRequestId id = TakeRequestId(auth_metadata);
    LogEvent(spdlog::level::warn,
             absl::StrCat(method, " failed: ", absl::StatusCodeToString(authorized.code()), ": ",
                          authorized.message(), " (refused from its headers; body not read)"),
             {{"request_id", id.id}});
    if (observer_ != nullptr) {
      CallRecord record;
      record.method = method;
      record.request_id = id.id;
      record.peer = "unknown";
      record.code = authorized.code();
      observer_->OnCallStarted(method);
      observer_->OnCallCompleted(record);
    }
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(authorized.message()));
  }

 private:
  const std::string expected_token_;
  CallObserver* const observer_;
};

}  // namespace

std::shared_ptr<grpc::AuthMetadataProcessor> MakeBearerTokenProcessor(std::string expected_token,
                                                                      CallObserver* observer) {
  return std::make_shared<BearerTokenProcessor>(std::move(expected_token), observer);
}

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
