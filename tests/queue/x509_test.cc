// common/x509: the dev CA and the certificates it issues, checked with
// OpenSSL's own verifier and accessors. (Here rather than in tests/common
// because the Redis TLS tests are its first users.)
#include "common/x509.h"

#include <gtest/gtest.h>

#include <fstream>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include "tests/queue/redis_server.h"

namespace ppml::x509 {
namespace {

struct StoreDeleter { void operator()(X509_STORE* p) const { X509_STORE_free(p); } };
struct StoreCtxDeleter { void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); } };

X509Ptr Parse(const std::string& pem) {
  Result<X509Ptr> cert = ParseCertificatePem(pem, "test");
  EXPECT_TRUE(cert.ok()) << cert.status().ToString();
  return cert.ok() ? std::move(cert).value() : nullptr;
}

// X509_V_OK when `leaf` chains to `ca` for `purpose`.
int Verify(X509* ca, X509* leaf, int purpose) {
  std::unique_ptr<X509_STORE, StoreDeleter> store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca);
  std::unique_ptr<X509_STORE_CTX, StoreCtxDeleter> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr);
  X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  X509_verify_cert(ctx.get());
  return X509_STORE_CTX_get_error(ctx.get());
}

CertificateRequest ServerRequest() {
  CertificateRequest request;
  request.common_name = "redis";
  request.dns_names = {"localhost", "redis.internal"};
  request.ip_addresses = {"127.0.0.1", "::1"};
  return request;
}

TEST(X509Test, CaAndServerCertificateVerify) {
  Result<CertifiedKey> ca = GenerateDevCa("ppml dev CA");
  ASSERT_TRUE(ca.ok()) << ca.status().ToString();
  Result<CertifiedKey> server = IssueCertificate(*ca, ServerRequest());
  ASSERT_TRUE(server.ok()) << server.status().ToString();

  X509Ptr ca_cert = Parse(ca->cert_pem);
  X509Ptr leaf = Parse(server->cert_pem);
  ASSERT_TRUE(ca_cert && leaf);
  EXPECT_EQ(X509_check_ca(ca_cert.get()), 1);
  EXPECT_EQ(X509_check_ca(leaf.get()), 0);
  EXPECT_EQ(Verify(ca_cert.get(), leaf.get(), X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_NE(Verify(ca_cert.get(), leaf.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);  // server only

  // Names: DNS and IP SANs both match; others do not.
  EXPECT_EQ(X509_check_host(leaf.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(leaf.get(), "redis.internal", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(leaf.get(), "evil.example", 0, 0, nullptr), 0);
  EXPECT_EQ(X509_check_ip_asc(leaf.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(leaf.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(leaf.get(), "10.0.0.1", 0), 0);

  // ECDSA P-256 with SHA-256, valid about a year.
  EXPECT_EQ(X509_get_signature_nid(leaf.get()), NID_ecdsa_with_SHA256);
  EVP_PKEY* key = X509_get0_pubkey(leaf.get());
  ASSERT_NE(key, nullptr);
  EXPECT_TRUE(EVP_PKEY_is_a(key, "EC"));
  EXPECT_EQ(EVP_PKEY_get_bits(key), 256);
  int days = 0, seconds = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(leaf.get()), X509_get0_notAfter(leaf.get())), 1);
  EXPECT_EQ(days, 365);
  EXPECT_EQ(X509_cmp_current_time(X509_get0_notBefore(leaf.get())), -1);  // already valid
}

TEST(X509Test, ClientCertificateIsForClientsOnly) {
  Result<CertifiedKey> ca = GenerateDevCa("ppml dev CA");
  ASSERT_TRUE(ca.ok());
  CertificateRequest request;
  request.common_name = "worker-1";
  request.usage = CertificateUsage::kClient;
  Result<CertifiedKey> client = IssueCertificate(*ca, request);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  X509Ptr ca_cert = Parse(ca->cert_pem);
  X509Ptr leaf = Parse(client->cert_pem);
  EXPECT_EQ(Verify(ca_cert.get(), leaf.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_NE(Verify(ca_cert.get(), leaf.get(), X509_PURPOSE_SSL_SERVER), X509_V_OK);
}

TEST(X509Test, AnotherCaDoesNotVerify) {
  Result<CertifiedKey> ca = GenerateDevCa("ca one");
  Result<CertifiedKey> other = GenerateDevCa("ca two");
  ASSERT_TRUE(ca.ok() && other.ok());
  Result<CertifiedKey> server = IssueCertificate(*ca, ServerRequest());
  ASSERT_TRUE(server.ok());
  EXPECT_NE(Verify(Parse(other->cert_pem).get(), Parse(server->cert_pem).get(), X509_PURPOSE_SSL_SERVER),
            X509_V_OK);
}

TEST(X509Test, BadRequestsAreInvalidArgument) {
  Result<CertifiedKey> ca = GenerateDevCa("ppml dev CA");
  ASSERT_TRUE(ca.ok());
  EXPECT_EQ(GenerateDevCa("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(GenerateDevCa("ca", 0).status().code(), StatusCode::kInvalidArgument);

  auto expect_invalid = [&](CertificateRequest request, const CertifiedKey& issuer, const std::string& part) {
    Result<CertifiedKey> cert = IssueCertificate(issuer, request);
    ASSERT_FALSE(cert.ok()) << part;
    EXPECT_EQ(cert.status().code(), StatusCode::kInvalidArgument) << cert.status().ToString();
    EXPECT_NE(cert.status().message().find(part), std::string::npos) << cert.status().ToString();
  };
  CertificateRequest no_name = ServerRequest();
  no_name.common_name.clear();
  expect_invalid(no_name, *ca, "empty common name");
  CertificateRequest no_san = ServerRequest();
  no_san.dns_names.clear();
  no_san.ip_addresses.clear();
  expect_invalid(no_san, *ca, "at least one DNS name or IP address");
  CertificateRequest bad_ip = ServerRequest();
  bad_ip.ip_addresses = {"127.0.0.300"};
  expect_invalid(bad_ip, *ca, "not an IP address: '127.0.0.300'");
  CertificateRequest smuggled = ServerRequest();
  smuggled.dns_names = {"localhost,IP:10.0.0.1"};
  expect_invalid(smuggled, *ca, "not a DNS name");
  CertificateRequest short_lived = ServerRequest();
  short_lived.validity_days = 0;
  expect_invalid(short_lived, *ca, "validity_days");

  Result<CertifiedKey> other = GenerateDevCa("other");
  ASSERT_TRUE(other.ok());
  CertifiedKey mismatched{other->key_pem, ca->cert_pem};
  expect_invalid(ServerRequest(), mismatched, "does not match");
  CertifiedKey garbage{"not a key", "not a cert"};
  expect_invalid(ServerRequest(), garbage, "not a PEM certificate");
}

TEST(X509Test, WritePemFilesKeepsTheKeyPrivate) {
  testing::TempDir dir;
  ASSERT_TRUE(dir.ok());
  Result<CertifiedKey> ca = GenerateDevCa("ppml dev CA");
  ASSERT_TRUE(ca.ok());
  // A key file that existed with loose permissions is tightened too.
  std::ofstream(dir.File("ca.key")) << "old";
  ::chmod(dir.File("ca.key").c_str(), 0644);
  ASSERT_TRUE(WritePemFiles(*ca, dir.File("ca.key"), dir.File("ca.crt")).ok());

  struct stat st {};
  ASSERT_EQ(::stat(dir.File("ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(dir.File("ca.crt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  std::ifstream key_in(dir.File("ca.key"));
  std::string key_text((std::istreambuf_iterator<char>(key_in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(key_text, ca->key_pem);
  EXPECT_EQ(key_text.rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);

  Status missing = WritePemFiles(*ca, dir.File("no/such/dir/ca.key"), dir.File("ca.crt"));
  EXPECT_EQ(missing.code(), StatusCode::kIoError);
  EXPECT_NE(missing.message().find("no/such/dir/ca.key"), std::string::npos) << missing.ToString();
  EXPECT_NE(missing.message().find("private key"), std::string::npos) << missing.ToString();
}

}  // namespace
}  // namespace ppml::x509
