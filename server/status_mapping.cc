// status_mapping.cc: absl::Status to grpc::Status, and whose fault a code is.
#include "server/status_mapping.h"

#include <string>

#include "core/printable.h"

namespace convserve {

std::string BoundedStatusMessage(const absl::Status& status) {
  return CapMessage(status.message(), kMaxStatusMessageBytes);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  if (code < static_cast<int>(absl::StatusCode::kOk) ||
      code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        CapMessage("internal error: unexpected status code " +
                                       std::to_string(code) + ": " + std::string(status.message()),
                                   kMaxStatusMessageBytes));
  }
  return grpc::Status(static_cast<grpc::StatusCode>(code), BoundedStatusMessage(status));
}

bool IsClientError(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnimplemented:
      return false;
    default:
      return true;
  }
}

}  // namespace convserve
