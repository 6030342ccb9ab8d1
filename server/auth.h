// auth.h: optional bearer-token authentication of ConvService calls.
//
// With --auth_token_file set, every ConvService call must carry the metadata
// "authorization: Bearer <token>"; health and reflection stay open so that
// probes and tooling work without the secret.
#ifndef CONVSERVE_SERVER_AUTH_H_
#define CONVSERVE_SERVER_AUTH_H_

#include <grpcpp/support/string_ref.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace convserve {

// OK if `metadata` holds "authorization: Bearer <expected_token>";
// UNAUTHENTICATED otherwise, without echoing what was sent. The comparison
// takes the same time wherever the tokens differ.
// REQUIRES: !expected_token.empty().
absl::Status CheckBearerToken(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                              const std::string& expected_token);

// The token in `path`: its first line without surrounding white space.
// INVALID_ARGUMENT if the file cannot be read or the token is empty.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_AUTH_H_
