// tls.cc: reads and checks the TLS PEM files with OpenSSL, then builds gRPC's SSL server
// credentials.
#include "server/tls.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace convserve {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* certificate) const { X509_free(certificate); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct FileClose {
  void operator()(std::FILE* file) const { std::fclose(file); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Certificate = std::unique_ptr<X509, X509Free>;
using PrivateKey = std::unique_ptr<EVP_PKEY, PkeyFree>;

// The whole of `path`, or INVALID_ARGUMENT naming `flag`, the file and errno.
absl::StatusOr<std::string> ReadWholeFile(absl::string_view flag, const std::string& path) {
  std::unique_ptr<std::FILE, FileClose> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot open '", path, "': ", std::strerror(errno)));
  }
  std::string contents;
  char buffer[4096];
  size_t got;
  while ((got = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) {
    contents.append(buffer, got);
  }
  if (std::ferror(file.get())) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read '", path, "': ", std::strerror(errno)));
  }
  return contents;
}

// OpenSSL's most recent error as text (and the queue emptied), for the end
// of a message: " (OpenSSL: error:...:no start line)" or "".
std::string TakeOpenSslError() {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return absl::StrCat(" (OpenSSL: ", text, ")");
}

Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Refuses to prompt for a passphrase: the server runs unattended.
int NoPassphrase(char*, int, int, void*) { return -1; }

// What a PEM file holds instead of what was expected, as a hint.
std::string WhatItHolds(const std::string& pem) {
  if (absl::StrContains(pem, "PRIVATE KEY-----")) return "it holds a private key";
  if (absl::StrContains(pem, "-----BEGIN CERTIFICATE-----")) return "it holds a certificate";
  if (pem.empty()) return "it is empty";
  if (!absl::StrContains(pem, "-----BEGIN ")) return "it is not PEM (no '-----BEGIN' line)";
  return "";
}

std::string Hint(const std::string& pem, absl::string_view swapped_hint) {
  std::string holds = WhatItHolds(pem);
  if (holds.empty()) return "";
  return absl::StrCat(": ", holds, swapped_hint);
}

// The certificates of `pem`, in order (empty if none parse).
std::vector<Certificate> ParseCertificates(const std::string& pem) {
  std::vector<Certificate> certificates;
  Bio bio = MemoryBio(pem);
  while (bio != nullptr) {
    Certificate certificate(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
    if (certificate == nullptr) break;
    certificates.push_back(std::move(certificate));
  }
  return certificates;
}

}  // namespace

absl::string_view TlsModeName(TlsMode mode) {
  switch (mode) {
    case TlsMode::kOff:
      return "off";
    case TlsMode::kOn:
      return "on";
    case TlsMode::kMutual:
      return "mutual";
  }
  return "?";
}

absl::StatusOr<ServerTls> BuildServerTls(const TlsFiles& files) {
  ServerTls tls;
  const bool has_cert = !files.cert_file.empty();
  const bool has_key = !files.key_file.empty();
  if (!has_cert && !has_key) {
    if (!files.client_ca_file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_client_ca_file: '", files.client_ca_file,
          "' given without --tls_cert_file and --tls_key_file; expected all three for mutual "
          "TLS (client certificates are only checked over TLS), got neither"));
    }
    tls.credentials = grpc::InsecureServerCredentials();
    return tls;
  }
  if (!has_key) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key_file: expected the PEM private key of --tls_cert_file='",
                     files.cert_file, "' (TLS needs both), got none"));
  }
  if (!has_cert) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_cert_file: expected the PEM certificate of --tls_key_file='",
                     files.key_file, "' (TLS needs both), got none"));
  }

  ERR_clear_error();
  absl::StatusOr<std::string> cert_pem = ReadWholeFile("--tls_cert_file", files.cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  std::vector<Certificate> chain = ParseCertificates(*cert_pem);
  if (chain.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_cert_file: expected a PEM certificate ('-----BEGIN CERTIFICATE-----') in '",
        files.cert_file, "', found none",
        Hint(*cert_pem, " (are --tls_cert_file and --tls_key_file swapped?)"), TakeOpenSslError()));
  }

  absl::StatusOr<std::string> key_pem = ReadWholeFile("--tls_key_file", files.key_file);
  if (!key_pem.ok()) return key_pem.status();
  PrivateKey key;
  {
    Bio bio = MemoryBio(*key_pem);
    if (bio != nullptr) {
      key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
    }
  }
  if (key == nullptr) {
    if (absl::StrContains(*key_pem, "ENCRYPTED")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_key_file: expected an unencrypted PEM private key in '", files.key_file,
          "', got an encrypted one (decrypt it with `openssl pkey -in KEY -out KEY.plain`)",
          TakeOpenSslError()));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key_file: expected a PEM private key ('-----BEGIN PRIVATE KEY-----') in '",
        files.key_file, "', found none",
        Hint(*key_pem, " (are --tls_cert_file and --tls_key_file swapped?)"), TakeOpenSslError()));
  }
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key_file: the private key in '", files.key_file,
                     "' does not match the certificate in --tls_cert_file='", files.cert_file,
                     "'; expected the key the certificate was issued for", TakeOpenSslError()));
  }

  const ASN1_TIME* not_before = X509_get0_notBefore(chain.front().get());
  const ASN1_TIME* not_after = X509_get0_notAfter(chain.front().get());
  if (X509_cmp_current_time(not_after) < 0) {
    tls.warnings.push_back(absl::StrCat("--tls_cert_file: the certificate in '", files.cert_file,
                                        "' has expired; clients will refuse it"));
  } else if (X509_cmp_current_time(not_before) > 0) {
    tls.warnings.push_back(absl::StrCat("--tls_cert_file: the certificate in '", files.cert_file,
                                        "' is not valid yet; clients will refuse it"));
  }

  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({*key_pem, *cert_pem});
  tls.mode = TlsMode::kOn;
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca_pem =
        ReadWholeFile("--tls_client_ca_file", files.client_ca_file);
    if (!ca_pem.ok()) return ca_pem.status();
    if (ParseCertificates(*ca_pem).empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_client_ca_file: expected PEM CA certificate(s) ('-----BEGIN CERTIFICATE-----') "
          "in '",
          files.client_ca_file, "', found none", Hint(*ca_pem, ""), TakeOpenSslError()));
    }
    options.pem_root_certs = *ca_pem;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    tls.mode = TlsMode::kMutual;
  }
  ERR_clear_error();
  tls.credentials = grpc::SslServerCredentials(options);
  return tls;
}

absl::Status RequireTlsTransport(absl::string_view transport_security_type) {
  if (transport_security_type == "ssl") return absl::OkStatus();
  return absl::UnauthenticatedError(absl::StrCat(
      "transport: ConvService is served only over TLS on --listen; expected a TLS connection, "
      "got transport security '",
      transport_security_type,
      "' (the plaintext --health_listen port serves grpc.health.v1 "
      "only)"));
}

std::string TransportSecurityType(const grpc::ServerContextBase& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr) return "";
  std::vector<grpc::string_ref> values =
      auth->FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
  if (values.empty()) return "";
  return std::string(values.front().data(), values.front().size());
}

}  // namespace convserve
