// request_id.h: the ID that names one call in the logs and in its response (x-request-id).
//
// A caller may name its call with the metadata `x-request-id`; otherwise the
// server makes up an ID. Either way the ID goes back in the response's
// initial metadata (on success and on error) and into every log line about
// the call, so a caller's report and the server's logs meet on one string.
//
// A caller's ID that is not 1 to 128 printable ASCII characters, or sent more
// than once, is refused: the call fails with INVALID_ARGUMENT naming the key,
// and still gets (and is logged under) an ID the server made. Refusing rather
// than silently replacing it means a caller never searches the logs for an ID
// the server never used.
#ifndef CONVSERVE_SERVER_REQUEST_ID_H_
#define CONVSERVE_SERVER_REQUEST_ID_H_

#include <grpcpp/support/string_ref.h>

#include <cstddef>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace convserve {

// The metadata key, in requests and in responses' initial metadata.
inline constexpr char kRequestIdKey[] = "x-request-id";
// The longest ID a caller may send, in bytes.
inline constexpr size_t kMaxRequestIdBytes = 128;

// A new ID: 32 lowercase hex digits, 128 bits from a per-thread generator
// seeded once from std::random_device. Thread-safe; a few nanoseconds.
std::string NewRequestId();

// OK if `id` may name a call: 1 to kMaxRequestIdBytes bytes, each printable
// ASCII (0x20 to 0x7e). Otherwise INVALID_ARGUMENT naming the metadata key,
// what is expected and what was received (escaped by Printable()).
absl::Status CheckRequestId(absl::string_view id);

// A call's ID and, if the caller's could not be used, why not.
struct CallRequestId {
  std::string id;       // the caller's, or NewRequestId()
  absl::Status status;  // INVALID_ARGUMENT when the caller's was refused
};

// The ID of a call whose client metadata is `metadata` (gRPC's
// ServerContext::client_metadata(): lowercase keys): the caller's only
// x-request-id if it passes CheckRequestId(); a new one otherwise, with the
// reason (none sent is no error).
CallRequestId TakeRequestId(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_REQUEST_ID_H_
