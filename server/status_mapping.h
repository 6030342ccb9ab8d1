// status_mapping.h: the one place where core errors become gRPC errors.
#ifndef CONVSERVE_SERVER_STATUS_MAPPING_H_
#define CONVSERVE_SERVER_STATUS_MAPPING_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace convserve {

// Maps an absl::Status to the grpc::Status with the same code and message.
// absl and gRPC share the canonical code numbering; a code outside it (which
// no part of ConvServe produces) becomes INTERNAL rather than an invalid code.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Whether a failure with this code is the caller's doing (logged at WARN at
// most) rather than the server's (logged at ERROR).
bool IsClientError(absl::StatusCode code);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_STATUS_MAPPING_H_
