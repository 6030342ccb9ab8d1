// BuildServerTls and RequireTlsTransport: each bad TLS flag combination or file, named in the
// error.
//
// The keys and certificates are made here, with OpenSSL, into a temporary
// directory: none is committed.
#include "server/tls.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace convserve {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Pem(EVP_PKEY* key, const EVP_CIPHER* cipher = nullptr) {
  BIO* bio = BIO_new(BIO_s_mem());
  static char passphrase[] = "secret";
  PEM_write_bio_PrivateKey(bio, key, cipher,
                           cipher ? reinterpret_cast<unsigned char*>(passphrase) : nullptr,
                           cipher ? 6 : 0, nullptr, nullptr);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string pem(data, size);
  BIO_free(bio);
  return pem;
}

std::string Pem(X509* certificate) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, certificate);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string pem(data, size);
  BIO_free(bio);
  return pem;
}

// A self-signed certificate for `key`, valid from now + `from_s` to now + `to_s`.
X509* SelfSigned(EVP_PKEY* key, const char* common_name, long from_s = 0, long to_s = 3600) {
  X509* certificate = X509_new();
  X509_set_version(certificate, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(certificate), 1);
  X509_gmtime_adj(X509_getm_notBefore(certificate), from_s);
  X509_gmtime_adj(X509_getm_notAfter(certificate), to_s);
  X509_set_pubkey(certificate, key);
  X509_NAME* name = X509_get_subject_name(certificate);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509_set_issuer_name(certificate, name);
  X509_sign(certificate, key, EVP_sha256());
  return certificate;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/convserve_tls_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    EVP_PKEY* key = EVP_EC_gen("P-256");
    EVP_PKEY* other_key = EVP_EC_gen("P-256");
    ASSERT_NE(key, nullptr);
    ASSERT_NE(other_key, nullptr);
    X509* certificate = SelfSigned(key, "localhost");
    X509* expired = SelfSigned(key, "localhost", -7200, -3600);
    X509* future = SelfSigned(key, "localhost", 3600, 7200);
    cert_ = Write("server.crt", Pem(certificate));
    expired_cert_ = Write("expired.crt", Pem(expired));
    future_cert_ = Write("future.crt", Pem(future));
    X509_free(expired);
    X509_free(future);
    key_ = Write("server.key", Pem(key));
    other_key_ = Write("other.key", Pem(other_key));
    encrypted_key_ = Write("encrypted.key", Pem(key, EVP_aes_128_cbc()));
    ca_ = cert_;
    garbage_ = Write("garbage.pem", "not a certificate\n");
    X509_free(certificate);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other_key);
  }
  void TearDown() override {
    for (const char* name :
         {"server.crt", "server.key", "other.key", "encrypted.key", "garbage.pem"}) {
      std::remove((dir_ + "/" + name).c_str());
    }
    rmdir(dir_.c_str());
  }

  std::string Write(const std::string& name, const std::string& contents) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << contents;
    return path;
  }

  // The error message of BuildServerTls(files), which must fail with INVALID_ARGUMENT.
  static std::string Error(const TlsFiles& files) {
    absl::StatusOr<ServerTls> tls = BuildServerTls(files);
    EXPECT_EQ(tls.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(tls.status().message());
  }

  std::string dir_, cert_, expired_cert_, future_cert_, key_, other_key_, encrypted_key_, ca_,
      garbage_;
};

TEST_F(TlsTest, NoFlagsIsPlaintext) {
  absl::StatusOr<ServerTls> tls = BuildServerTls({});
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ(tls->mode, TlsMode::kOff);
  EXPECT_NE(tls->credentials, nullptr);
  EXPECT_EQ(TlsModeName(tls->mode), "off");
}

TEST_F(TlsTest, CertAndKeyTurnTlsOnAndClientCaMakesItMutual) {
  absl::StatusOr<ServerTls> tls = BuildServerTls({cert_, key_, ""});
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ(tls->mode, TlsMode::kOn);
  EXPECT_NE(tls->credentials, nullptr);
  EXPECT_EQ(TlsModeName(tls->mode), "on");
  tls = BuildServerTls({cert_, key_, ca_});
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ(tls->mode, TlsMode::kMutual);
  EXPECT_EQ(TlsModeName(tls->mode), "mutual");
}

TEST_F(TlsTest, OnlyOneOfCertAndKey) {
  EXPECT_THAT(Error({cert_, "", ""}),
              AllOf(HasSubstr("--tls_key_file: expected the PEM private key"), HasSubstr(cert_),
                    HasSubstr("got none")));
  EXPECT_THAT(Error({"", key_, ""}),
              AllOf(HasSubstr("--tls_cert_file: expected the PEM certificate"), HasSubstr(key_),
                    HasSubstr("got none")));
}

TEST_F(TlsTest, ClientCaWithoutCertAndKey) {
  EXPECT_THAT(Error({"", "", ca_}), AllOf(HasSubstr("--tls_client_ca_file"), HasSubstr(ca_),
                                          HasSubstr("without --tls_cert_file and --tls_key_file")));
}

TEST_F(TlsTest, MissingFiles) {
  const std::string missing = dir_ + "/missing.pem";
  EXPECT_THAT(Error({missing, key_, ""}),
              AllOf(HasSubstr("--tls_cert_file: cannot open '" + missing + "'"),
                    HasSubstr("No such file")));
  EXPECT_THAT(
      Error({cert_, missing, ""}),
      AllOf(HasSubstr("--tls_key_file: cannot open '" + missing + "'"), HasSubstr("No such file")));
  EXPECT_THAT(Error({cert_, key_, missing}),
              AllOf(HasSubstr("--tls_client_ca_file: cannot open '" + missing + "'"),
                    HasSubstr("No such file")));
}

TEST_F(TlsTest, UnreadableFile) {
  // A directory opens but cannot be read.
  EXPECT_THAT(
      Error({dir_, key_, ""}),
      AllOf(HasSubstr("--tls_cert_file: cannot read '" + dir_ + "'"), HasSubstr("Is a directory")));
}

TEST_F(TlsTest, NotPem) {
  EXPECT_THAT(Error({garbage_, key_, ""}),
              AllOf(HasSubstr("--tls_cert_file: expected a PEM certificate"), HasSubstr(garbage_),
                    HasSubstr("not PEM")));
  EXPECT_THAT(Error({cert_, garbage_, ""}),
              AllOf(HasSubstr("--tls_key_file: expected a PEM private key"), HasSubstr(garbage_),
                    HasSubstr("not PEM")));
  EXPECT_THAT(Error({cert_, key_, garbage_}),
              AllOf(HasSubstr("--tls_client_ca_file: expected PEM CA certificate(s)"),
                    HasSubstr(garbage_)));
}

TEST_F(TlsTest, SwappedCertAndKey) {
  EXPECT_THAT(Error({key_, cert_, ""}),
              AllOf(HasSubstr("--tls_cert_file: expected a PEM certificate"),
                    HasSubstr("it holds a private key"), HasSubstr("swapped")));
}

TEST_F(TlsTest, KeyOfAnotherCertificate) {
  EXPECT_THAT(Error({cert_, other_key_, ""}),
              AllOf(HasSubstr("--tls_key_file: the private key in '" + other_key_ + "'"),
                    HasSubstr("does not match the certificate in --tls_cert_file='" + cert_)));
}

TEST_F(TlsTest, EncryptedKey) {
  EXPECT_THAT(Error({cert_, encrypted_key_, ""}),
              AllOf(HasSubstr("--tls_key_file: expected an unencrypted PEM private key"),
                    HasSubstr(encrypted_key_), HasSubstr("got an encrypted one")));
}

TEST_F(TlsTest, CertificateOutsideItsValidityIsAWarning) {
  absl::StatusOr<ServerTls> tls = BuildServerTls({cert_, key_, ""});
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_TRUE(tls->warnings.empty());
  tls = BuildServerTls({expired_cert_, key_, ""});
  ASSERT_TRUE(tls.ok()) << tls.status();
  ASSERT_EQ(tls->warnings.size(), 1u);
  EXPECT_THAT(tls->warnings[0], AllOf(HasSubstr("--tls_cert_file"), HasSubstr(expired_cert_),
                                      HasSubstr("has expired")));
  tls = BuildServerTls({future_cert_, key_, ""});
  ASSERT_TRUE(tls.ok()) << tls.status();
  ASSERT_EQ(tls->warnings.size(), 1u);
  EXPECT_THAT(tls->warnings[0], AllOf(HasSubstr(future_cert_), HasSubstr("is not valid yet")));
}

TEST(RequireTlsTransportTest, OnlySslPasses) {
  EXPECT_TRUE(RequireTlsTransport("ssl").ok());
  for (const char* other : {"insecure", ""}) {
    absl::Status status = RequireTlsTransport(other);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << other;
    EXPECT_THAT(std::string(status.message()),
                AllOf(HasSubstr("served only over TLS on --listen"),
                      HasSubstr("--health_listen port serves grpc.health.v1 only")));
  }
}

}  // namespace
}  // namespace convserve
