// auth.h: optional bearer-token authentication of ConvService calls.
//
// With --auth_token_file set, every ConvService call must carry the metadata
// "authorization: Bearer <token>"; health and reflection stay open so that
// probes and tooling work without the secret.
#ifndef CONVSERVE_SERVER_AUTH_H_
#define CONVSERVE_SERVER_AUTH_H_

#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/support/string_ref.h>

#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/call_record.h"

namespace convserve {

// OK if `metadata` holds "authorization: Bearer <expected_token>";
// UNAUTHENTICATED otherwise, without echoing what was sent. The comparison
// takes the same time wherever the tokens differ.
// REQUIRES: !expected_token.empty().
absl::Status CheckBearerToken(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                              const std::string& expected_token);

// Checks the token of ConvService calls from their headers, inside gRPC,
// before the request body is read: a call refused here never has its message
// buffered (the handler's check in ConvServiceImpl comes only after gRPC has
// received the whole message, up to --max_message_bytes). Calls to other
// services (health, reflection) pass. gRPC runs such processors only on
// secure (TLS) ports, so it is attached to the TLS credentials of --listen;
// a plaintext server keeps the handler's check alone. A refused call is
// logged at WARN and reported to `observer` (if not null: the access log and
// the metrics) as an UNAUTHENTICATED call of its method, as the handler would.
// REQUIRES: !expected_token.empty(); `observer` outlives the processor.
std::shared_ptr<grpc::AuthMetadataProcessor> MakeBearerTokenProcessor(std::string expected_token,
                                                                      CallObserver* observer);

// The token in `path`: its first line without surrounding white space.
// INVALID_ARGUMENT if the file cannot be read or the token is empty.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_AUTH_H_
