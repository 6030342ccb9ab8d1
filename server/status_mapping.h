// status_mapping.h: the one place where core errors become gRPC errors.
#ifndef CONVSERVE_SERVER_STATUS_MAPPING_H_
#define CONVSERVE_SERVER_STATUS_MAPPING_H_

#include <grpcpp/support/status.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"

namespace convserve {

// The longest status message a caller receives or a failure's log line
// carries. gRPC sends the message as trailing metadata, and a client refuses
// metadata above its limit (8 KiB by default) with RESOURCE_EXHAUSTED: the
// caller would then see that instead of the real code.
inline constexpr size_t kMaxStatusMessageBytes = 1024;

// `status`'s message as a caller may see it: capped at
// kMaxStatusMessageBytes with CapMessage() (cut on an escape- and UTF-8-safe
// boundary, the cut marked).
std::string BoundedStatusMessage(const absl::Status& status);

// Maps an absl::Status to the grpc::Status with the same code and its
// BoundedStatusMessage(). absl and gRPC share the canonical code numbering; a
// code outside it (which no part of ConvServe produces) becomes INTERNAL
// rather than an invalid code.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Whether a failure with this code is the caller's doing (logged at WARN at
// most) rather than the server's (logged at ERROR).
bool IsClientError(absl::StatusCode code);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_STATUS_MAPPING_H_
