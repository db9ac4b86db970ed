// TLS to a real redis-server (tls-port only) with certificates from
// common/x509: the CA, the host name or IP, and client certificates.
#include <gtest/gtest.h>

#include <random>

#include "queue/redis.h"
#include "tests/queue/redis_server.h"

namespace ppml::queue {
namespace {

using testing::RedisServer;
using testing::RedisServerOptions;

bool Contains(const Status& status, const std::string& part) {
  return status.message().find(part) != std::string::npos;
}

std::unique_ptr<RedisServer> StartTlsServer(bool require_client_cert) {
  RedisServerOptions options;
  options.tls = true;
  options.require_client_cert = require_client_cert;
  Result<std::unique_ptr<RedisServer>> server = RedisServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return server.ok() ? std::move(server).value() : nullptr;
}

// A CA of its own (and a client certificate from it) that the server does not trust.
struct ForeignPki {
  explicit ForeignPki(const RedisServer& server) {
    Result<x509::CertifiedKey> ca = x509::GenerateDevCa("some other CA");
    EXPECT_TRUE(ca.ok());
    x509::CertificateRequest request;
    request.common_name = "intruder";
    request.usage = x509::CertificateUsage::kClient;
    Result<x509::CertifiedKey> client = x509::IssueCertificate(*ca, request);
    EXPECT_TRUE(client.ok());
    EXPECT_TRUE(x509::WritePemFiles(*ca, server.File("other-ca.key"), ca_file = server.File("other-ca.crt")).ok());
    EXPECT_TRUE(x509::WritePemFiles(*client, key_file = server.File("other-client.key"),
                                    cert_file = server.File("other-client.crt"))
                    .ok());
  }
  std::string ca_file, cert_file, key_file;
};

TEST(RedisTlsTest, VerifiedConnectionCarriesCommands) {
  std::unique_ptr<RedisServer> server = StartTlsServer(false);
  ASSERT_TRUE(server);
  Result<RedisConnection> connection = RedisConnection::Connect(server->Endpoint());
  ASSERT_TRUE(connection.ok()) << connection.status().ToString();

  // Large enough for many TLS records in both directions, and binary.
  std::string value(2 << 20, '\0');
  std::mt19937 rng(3);
  for (char& c : value) c = static_cast<char>(rng());
  ASSERT_TRUE(connection->Command({"SET", "blob", value}).ok());
  Result<RedisReply> got = connection->Command({"GET", "blob"});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->str() == value);

  CommandBatch batch;
  for (int i = 0; i < 1000; ++i) batch.Add({"INCR", "n"});
  Result<std::vector<RedisReply>> replies = connection->Execute(batch);
  ASSERT_TRUE(replies.ok()) << replies.status().ToString();
  EXPECT_EQ(replies->back().integer(), 1000);

  // The server sees a TLS client (CLIENT INFO has no TLS field in 7.0; the
  // plain port is off, so any reply at all came over TLS).
  RedisEndpoint by_name = server->Endpoint();
  by_name.tls_options.server_name = "localhost";  // DNS SAN and SNI instead of the IP SAN
  EXPECT_TRUE(RedisConnection::Connect(by_name).ok());

  // By address: a minimal root (a container, a chroot) may have no /etc/hosts entry for localhost.
  Result<RedisEndpoint> from_url = ParseRedisUrl("rediss://127.0.0.1:" + std::to_string(server->port()));
  ASSERT_TRUE(from_url.ok());
  from_url->tls_options.ca_file = server->ca_file();
  Result<RedisConnection> via_url = RedisConnection::Connect(*from_url);
  EXPECT_TRUE(via_url.ok()) << via_url.status().ToString();
}

TEST(RedisTlsTest, ServerFromAnotherCaIsRejected) {
  std::unique_ptr<RedisServer> server = StartTlsServer(false);
  ASSERT_TRUE(server);
  ForeignPki foreign(*server);
  RedisEndpoint endpoint = server->Endpoint();
  endpoint.tls_options.ca_file = foreign.ca_file;
  Result<RedisConnection> connection = RedisConnection::Connect(endpoint);
  ASSERT_FALSE(connection.ok());
  EXPECT_EQ(connection.status().code(), StatusCode::kPermissionDenied) << connection.status().ToString();
  EXPECT_TRUE(Contains(connection.status(), "redis 127.0.0.1:" + std::to_string(server->port()) +
                                                ": TLS handshake failed: certificate verify failed"))
      << connection.status().ToString();
}

TEST(RedisTlsTest, WrongHostNameOrIpIsRejected) {
  std::unique_ptr<RedisServer> server = StartTlsServer(false);
  ASSERT_TRUE(server);
  RedisEndpoint wrong_name = server->Endpoint();
  wrong_name.tls_options.server_name = "redis.example.com";
  Result<RedisConnection> by_name = RedisConnection::Connect(wrong_name);
  ASSERT_FALSE(by_name.ok());
  EXPECT_EQ(by_name.status().code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Contains(by_name.status(), "certificate verify failed: hostname mismatch"))
      << by_name.status().ToString();

  RedisEndpoint wrong_ip = server->Endpoint();
  wrong_ip.tls_options.server_name = "127.0.0.2";
  Result<RedisConnection> by_ip = RedisConnection::Connect(wrong_ip);
  ASSERT_FALSE(by_ip.ok());
  EXPECT_TRUE(Contains(by_ip.status(), "certificate verify failed: IP address mismatch"))
      << by_ip.status().ToString();
}

TEST(RedisTlsTest, ClientCertificateRequiredAndGiven) {
  std::unique_ptr<RedisServer> server = StartTlsServer(true);
  ASSERT_TRUE(server);
  Result<RedisConnection> with_cert = RedisConnection::Connect(server->Endpoint());
  ASSERT_TRUE(with_cert.ok()) << with_cert.status().ToString();
  EXPECT_TRUE(with_cert->Command({"PING"}).ok());

  RedisEndpoint without = server->Endpoint();
  without.tls_options.cert_file.clear();
  without.tls_options.key_file.clear();
  Result<RedisConnection> refused = RedisConnection::Connect(without);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied) << refused.status().ToString();
  EXPECT_TRUE(Contains(refused.status(), "the server rejected the client certificate")) << refused.status().ToString();
  EXPECT_TRUE(Contains(refused.status(), "certificate required")) << refused.status().ToString();

  ForeignPki foreign(*server);
  RedisEndpoint untrusted = server->Endpoint();
  untrusted.tls_options.cert_file = foreign.cert_file;
  untrusted.tls_options.key_file = foreign.key_file;
  Result<RedisConnection> rejected = RedisConnection::Connect(untrusted);
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.status().code(), StatusCode::kPermissionDenied) << rejected.status().ToString();
  EXPECT_TRUE(Contains(rejected.status(), "alert")) << rejected.status().ToString();
}

TEST(RedisTlsTest, PlainClientOnTlsPortAndTlsClientOnPlainPortFail) {
  std::unique_ptr<RedisServer> tls_server = StartTlsServer(false);
  ASSERT_TRUE(tls_server);
  RedisEndpoint plain = tls_server->Endpoint();
  plain.tls = false;
  Result<RedisConnection> plain_to_tls = RedisConnection::Connect(plain);
  ASSERT_FALSE(plain_to_tls.ok());
  EXPECT_NE(plain_to_tls.status().code(), StatusCode::kOk);

  Result<std::unique_ptr<RedisServer>> plain_server = RedisServer::Start();
  ASSERT_TRUE(plain_server.ok());
  RedisEndpoint tls = (*plain_server)->Endpoint();
  tls.tls = true;
  tls.connect_timeout_ms = 500;  // Redis waits for the end of an "inline command" that never comes
  tls.tls_options.ca_file = tls_server->ca_file();
  Result<RedisConnection> tls_to_plain = RedisConnection::Connect(tls);
  ASSERT_FALSE(tls_to_plain.ok());
  EXPECT_TRUE(Contains(tls_to_plain.status(), "TLS handshake")) << tls_to_plain.status().ToString();
}

TEST(RedisTlsTest, BadTlsSettingsNameTheFile) {
  RedisEndpoint endpoint;
  endpoint.host = "127.0.0.1";
  endpoint.port = 1;  // never reached: settings are checked first
  endpoint.tls = true;
  endpoint.tls_options.ca_file = "/no/such/ca.pem";
  Result<RedisConnection> missing_ca = RedisConnection::Connect(endpoint);
  ASSERT_FALSE(missing_ca.ok());
  EXPECT_EQ(missing_ca.status().code(), StatusCode::kInvalidArgument) << missing_ca.status().ToString();
  EXPECT_TRUE(Contains(missing_ca.status(), "cannot load CA file /no/such/ca.pem"));

  endpoint.tls_options.ca_file.clear();
  endpoint.tls_options.cert_file = "/some/client.crt";
  Result<RedisConnection> half_pair = RedisConnection::Connect(endpoint);
  ASSERT_FALSE(half_pair.ok());
  EXPECT_EQ(half_pair.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(half_pair.status(), "cert_file and key_file go together"));

  endpoint.tls_options.key_file = "/some/client.key";
  Result<RedisConnection> missing_cert = RedisConnection::Connect(endpoint);
  ASSERT_FALSE(missing_cert.ok());
  EXPECT_TRUE(Contains(missing_cert.status(), "cannot load client certificate file /some/client.crt"))
      << missing_cert.status().ToString();
}

}  // namespace
}  // namespace ppml::queue
