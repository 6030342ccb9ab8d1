// tls.h: the server's TLS and mutual TLS credentials, built and checked from PEM files.
//
// --tls_cert_file and --tls_key_file turn TLS on for --listen;
// --tls_client_ca_file also requires every client to present a certificate
// that CA signed (mutual TLS). Every file is read and parsed here, before the
// server starts, so a missing, unreadable, non-PEM or mismatched file stops
// start-up with a message naming the flag, the file and the problem instead of
// a gRPC handshake failure later. The plaintext --health_listen port serves
// health only: RequireTlsTransport() refuses ConvService calls arriving there.
#ifndef CONVSERVE_SERVER_TLS_H_
#define CONVSERVE_SERVER_TLS_H_

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace convserve {

// The three flags, as given (empty = not given).
struct TlsFiles {
  std::string cert_file;       // --tls_cert_file: PEM certificate (chain), leaf first.
  std::string key_file;        // --tls_key_file: PEM private key of that certificate.
  std::string client_ca_file;  // --tls_client_ca_file: PEM CA certificate(s) for clients.
};

enum class TlsMode {
  kOff,     // plaintext
  kOn,      // TLS, clients anonymous
  kMutual,  // TLS, clients must present a certificate the client CA signed
};

// "off", "on" or "mutual", as the start-up line prints it.
absl::string_view TlsModeName(TlsMode mode);

struct ServerTls {
  TlsMode mode = TlsMode::kOff;
  // For --listen: InsecureServerCredentials() when kOff, else SSL credentials.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Problems that do not stop the server but will fail handshakes (a
  // certificate outside its validity period), for the start-up log.
  std::vector<std::string> warnings;
};

// Reads and checks `files` and builds the credentials for --listen.
// INVALID_ARGUMENT naming the flag, the file and the problem if only one of
// cert/key is given, a client CA is given without them, a file cannot be read,
// holds no PEM certificate / private key, or the key does not belong to the
// certificate (X509_check_private_key). A server certificate that has expired
// or is not yet valid is a warning (the clock may be the one that is wrong).
absl::StatusOr<ServerTls> BuildServerTls(const TlsFiles& files);

// OK if `transport_security_type` (the auth context's
// "transport_security_type": "ssl" for TLS, "insecure" for plaintext) is
// "ssl"; UNAUTHENTICATED saying that ConvService is served over TLS on
// --listen only and --health_listen serves health only.
absl::Status RequireTlsTransport(absl::string_view transport_security_type);

// The transport security type of the connection `context`'s call arrived on
// ("ssl", "insecure", or "" if gRPC reports none).
std::string TransportSecurityType(const grpc::ServerContextBase& context);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_TLS_H_
