// client/https.h against TestServer: TLS verification (CA, host name, client
// certificates), Content-Length, chunked and close-delimited bodies,
// keep-alive and reconnects, timeouts, and replies that are not HTTP.
#include "client/https.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

#include "common/x509.h"
#include "tests/client/test_server.h"

namespace ppml::client {
namespace {

using testing::MakeChunkedResponse;
using testing::MakeResponse;
using testing::ScopedTempDir;
using testing::TestReply;
using testing::TestRequest;
using testing::TestServer;

bool Contains(const Status& status, const std::string& part) {
  return status.message().find(part) != std::string::npos;
}

std::span<const uint8_t> Bytes(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// A CA, a server certificate for 127.0.0.1 and localhost, and a client
// certificate, all in a temp dir.
class HttpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<x509::CertifiedKey> ca = x509::GenerateDevCa("ppml client test CA");
    ASSERT_TRUE(ca.ok()) << ca.status().ToString();
    ca_ = *ca;
    x509::CertificateRequest server;
    server.common_name = "server";
    server.dns_names = {"localhost"};
    server.ip_addresses = {"127.0.0.1"};
    Result<x509::CertifiedKey> cert = x509::IssueCertificate(ca_, server);
    ASSERT_TRUE(cert.ok()) << cert.status().ToString();
    server_ = *cert;
    x509::CertificateRequest client;
    client.common_name = "client";
    client.usage = x509::CertificateUsage::kClient;
    Result<x509::CertifiedKey> client_cert = x509::IssueCertificate(ca_, client);
    ASSERT_TRUE(client_cert.ok());
    ASSERT_TRUE(x509::WritePemFiles(ca_, dir_.File("ca.key"), ca_file_ = dir_.File("ca.pem")).ok());
    ASSERT_TRUE(x509::WritePemFiles(*client_cert, client_key_ = dir_.File("client.key"),
                                    client_cert_ = dir_.File("client.pem"))
                    .ok());
  }

  std::unique_ptr<TestServer> Start(TestServer::Handler handler, bool tls = true, std::string client_ca = "") {
    TestServer::Options options;
    options.tls = tls;
    options.cert_pem = server_.cert_pem;
    options.key_pem = server_.key_pem;
    options.client_ca_pem = std::move(client_ca);
    Result<std::unique_ptr<TestServer>> server = TestServer::Start(options, std::move(handler));
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    return server.ok() ? std::move(server).value() : nullptr;
  }

  HttpTarget Target(const TestServer& server) {
    Result<HttpTarget> target = ParseUrl(server.url());
    EXPECT_TRUE(target.ok());
    target->ca_file = ca_file_;
    target->io_timeout_ms = 5000;
    return *target;
  }

  ScopedTempDir dir_{"ppml-https-test"};
  x509::CertifiedKey ca_, server_;
  std::string ca_file_, client_cert_, client_key_;
};

TEST(ParseUrlTest, AcceptsHostsPortsAndPrefixes) {
  Result<HttpTarget> t = ParseUrl("https://127.0.0.1:8443");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->tls);
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, 8443);
  EXPECT_EQ(t->path_prefix, "");
  EXPECT_EQ(t->Url(), "https://127.0.0.1:8443");

  t = ParseUrl("HTTP://Example.org/api/");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->tls);
  EXPECT_EQ(t->port, 80);
  EXPECT_EQ(t->path_prefix, "/api");

  t = ParseUrl("https://[::1]:9000");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->Url(), "https://[::1]:9000");
  EXPECT_EQ(ParseUrl("https://h")->port, 443);
}

TEST(ParseUrlTest, RejectsWhatItCannotUse) {
  for (const char* bad : {"ftp://h", "h:80", "https://", "https://:80", "https://h:0", "https://h:65536",
                          "https://h:8x", "https://u@h", "https://h/p?q=1", "https://::1:80", "https://[::1",
                          "https://h h", "https://h:"}) {
    Result<HttpTarget> t = ParseUrl(bad);
    EXPECT_FALSE(t.ok()) << bad;
    if (!t.ok()) {
      EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << bad;
      EXPECT_TRUE(Contains(t.status(), bad)) << t.status().message();
    }
  }
}

TEST(UrlEncodeTest, KeepsUnreservedOnly) {
  EXPECT_EQ(UrlEncode("a-b_c.d~9"), "a-b_c.d~9");
  EXPECT_EQ(UrlEncode("a b/c?&"), "a%20b%2Fc%3F%26");
}

TEST_F(HttpsTest, ContentLengthReplyOverVerifiedTls) {
  std::string seen_host, seen_target;
  auto server = Start([&](const TestRequest& r) {
    seen_host = r.Header("Host").value_or("");
    seen_target = r.target;
    return TestReply{MakeResponse(200, {{"X-Thing", "  v  "}}, "hello")};
  });
  ASSERT_TRUE(server);
  Result<HttpResponse> r = HttpRequest(Target(*server), "GET", "/v2/x?nonce=ab", {{"Accept", "text/plain"}}, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
  EXPECT_EQ(r->Header("x-thing").value_or(""), "v");
  EXPECT_FALSE(r->Header("missing").has_value());
  EXPECT_EQ(seen_host, "127.0.0.1:" + std::to_string(server->port()));
  EXPECT_EQ(seen_target, "/v2/x?nonce=ab");

  // By DNS name (SNI + DNS SAN) too.
  HttpTarget by_name = Target(*server);
  by_name.server_name = "localhost";
  EXPECT_TRUE(HttpRequest(by_name, "GET", "/", {}, {}).ok());
}

TEST_F(HttpsTest, ChunkedReply) {
  std::string big(300000, 'z');
  auto server = Start([&](const TestRequest& r) {
    if (r.path == "/big") return TestReply{MakeChunkedResponse(200, {}, {big.substr(0, 1), big.substr(1, 70000), big.substr(70001)})};
    return TestReply{MakeChunkedResponse(200, {{"Content-Type", "text/plain"}}, {"hel", "lo ", "world"})};
  });
  ASSERT_TRUE(server);
  Result<HttpClient> client = HttpClient::Create(Target(*server));
  ASSERT_TRUE(client.ok());
  Result<HttpResponse> r = client->Request("GET", "/", {}, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "hello world");
  EXPECT_EQ(r->Header("Content-Type").value_or(""), "text/plain");
  r = client->Request("GET", "/big", {}, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, big);
}

TEST_F(HttpsTest, UntrustedCertificateIsPermissionDenied) {
  auto server = Start([](const TestRequest&) { return TestReply{MakeResponse(200, {}, "no")}; });
  ASSERT_TRUE(server);
  // Another CA than the server's.
  Result<x509::CertifiedKey> other = x509::GenerateDevCa("other CA");
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(x509::WritePemFiles(*other, dir_.File("other.key"), dir_.File("other.pem")).ok());
  HttpTarget target = Target(*server);
  target.ca_file = dir_.File("other.pem");
  Result<HttpResponse> r = HttpRequest(target, "GET", "/", {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << r.status().ToString();
  EXPECT_TRUE(Contains(r.status(), "certificate verify failed")) << r.status().message();
  EXPECT_TRUE(Contains(r.status(), server->url())) << r.status().message();
  EXPECT_EQ(server->requests(), 0);
}

TEST_F(HttpsTest, HostNameMismatchIsPermissionDenied) {
  x509::CertificateRequest request;
  request.common_name = "elsewhere";
  request.dns_names = {"elsewhere.example"};
  Result<x509::CertifiedKey> cert = x509::IssueCertificate(ca_, request);
  ASSERT_TRUE(cert.ok());
  TestServer::Options options;
  options.cert_pem = cert->cert_pem;
  options.key_pem = cert->key_pem;
  auto server = TestServer::Start(options, [](const TestRequest&) { return TestReply{MakeResponse(200, {}, "")}; });
  ASSERT_TRUE(server.ok());
  Result<HttpResponse> r = HttpRequest(Target(**server), "GET", "/", {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Contains(r.status(), "mismatch")) << r.status().message();
}

TEST_F(HttpsTest, MissingCaFileNamesIt) {
  HttpTarget target = *ParseUrl("https://127.0.0.1:1");
  target.ca_file = dir_.File("nope.pem");
  Result<HttpClient> client = HttpClient::Create(target);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(client.status(), "nope.pem")) << client.status().message();

  std::ofstream(dir_.File("garbage.pem")) << "not a certificate";
  target.ca_file = dir_.File("garbage.pem");
  client = HttpClient::Create(target);
  ASSERT_FALSE(client.ok());
  EXPECT_TRUE(Contains(client.status(), "garbage.pem")) << client.status().message();
}

TEST_F(HttpsTest, ClientCertificate) {
  auto server = Start([](const TestRequest&) { return TestReply{MakeResponse(200, {}, "mtls")}; }, true,
                      ca_.cert_pem);
  ASSERT_TRUE(server);
  HttpTarget target = Target(*server);
  Result<HttpResponse> without = HttpRequest(target, "GET", "/", {}, {});
  ASSERT_FALSE(without.ok());
  EXPECT_TRUE(without.status().code() == StatusCode::kPermissionDenied ||
              without.status().code() == StatusCode::kUnavailable)
      << without.status().ToString();
  target.client_cert_file = client_cert_;
  target.client_key_file = client_key_;
  Result<HttpResponse> with = HttpRequest(target, "GET", "/", {}, {});
  ASSERT_TRUE(with.ok()) << with.status().ToString();
  EXPECT_EQ(with->body, "mtls");
  target.client_key_file.clear();
  EXPECT_EQ(HttpClient::Create(target).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(HttpsTest, PlainHttpPostSendsTheBody) {
  auto server = Start(
      [](const TestRequest& r) {
        return TestReply{MakeResponse(201, {}, r.method + " " + r.Header("Content-Length").value_or("-") + " " + r.body)};
      },
      /*tls=*/false);
  ASSERT_TRUE(server);
  HttpTarget target = Target(*server);
  ASSERT_FALSE(target.tls);
  std::string body(100000, 'b');
  Result<HttpResponse> r = HttpRequest(target, "POST", "/echo", {{"Content-Type", "application/octet-stream"}}, Bytes(body));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "POST 100000 " + body);
  // POST without a body still says Content-Length: 0.
  r = HttpRequest(target, "POST", "/echo", {}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "POST 0 ");
}

TEST_F(HttpsTest, KeepAliveReusesTheConnection) {
  auto server = Start([](const TestRequest& r) { return TestReply{MakeResponse(200, {}, r.path)}; });
  ASSERT_TRUE(server);
  Result<HttpClient> client = HttpClient::Create(Target(*server));
  ASSERT_TRUE(client.ok());
  for (int i = 0; i < 5; ++i) {
    Result<HttpResponse> r = client->Request("GET", "/" + std::to_string(i), {}, {});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->body, "/" + std::to_string(i));
  }
  EXPECT_EQ(client->connections_opened(), 1);
  EXPECT_EQ(server->connections(), 1);
}

TEST_F(HttpsTest, ServerThatClosesGetsANewConnection) {
  int n = 0;
  auto server = Start([&](const TestRequest&) {
    ++n;
    if (n == 1) return TestReply{MakeResponse(200, {{"Connection", "close"}}, "first"), true};
    // Closes without saying so: the client notices before or on reuse.
    return TestReply{MakeResponse(200, {}, "again"), true};
  });
  ASSERT_TRUE(server);
  Result<HttpClient> client = HttpClient::Create(Target(*server));
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->Request("GET", "/", {}, {})->body, "first");
  EXPECT_EQ(client->Request("GET", "/", {}, {})->body, "again");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Result<HttpResponse> third = client->Request("GET", "/", {}, {});
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_EQ(third->body, "again");
  EXPECT_EQ(client->connections_opened(), 3);
}

TEST_F(HttpsTest, SilentServerTimesOut) {
  auto server = Start([](const TestRequest&) { return TestReply{"", false, 0, true}; });
  ASSERT_TRUE(server);
  HttpTarget target = Target(*server);
  target.io_timeout_ms = 300;
  const auto start = std::chrono::steady_clock::now();
  Result<HttpResponse> r = HttpRequest(target, "GET", "/", {}, {});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_LT(seconds, 3.0);
  server->Stop();
}

TEST_F(HttpsTest, RefusedConnectionNamesTheUrl) {
  uint16_t port;
  {
    auto server = Start([](const TestRequest&) { return TestReply{}; });
    ASSERT_TRUE(server);
    port = server->port();
  }
  HttpTarget target = *ParseUrl("https://127.0.0.1:" + std::to_string(port));
  target.ca_file = ca_file_;
  Result<HttpResponse> r = HttpRequest(target, "GET", "/", {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(r.status(), "https://127.0.0.1:" + std::to_string(port))) << r.status().message();
}

TEST_F(HttpsTest, MalformedAndTruncatedReplies) {
  auto server = Start([](const TestRequest& r) {
    if (r.path == "/garbage") return TestReply{"SMTP ready\r\n\r\n", true};
    if (r.path == "/eof") return TestReply{"HTTP/1.1 200 OK\r\n\r\nuntil the end", true};
    if (r.path == "/short") return TestReply{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true};
    if (r.path == "/badchunk") return TestReply{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", true};
    if (r.path == "/badlength") return TestReply{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", true};
    if (r.path == "/continue") {
      return TestReply{"HTTP/1.1 100 Continue\r\n\r\n" + MakeResponse(200, {}, "after 100")};
    }
    if (r.path == "/nocontent") return TestReply{"HTTP/1.1 204 No Content\r\n\r\n"};
    return TestReply{MakeResponse(200, {}, std::string(1000, 'x'))};
  });
  ASSERT_TRUE(server);
  HttpTarget target = Target(*server);
  Result<HttpResponse> r = HttpRequest(target, "GET", "/garbage", {}, {});
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  r = HttpRequest(target, "GET", "/eof", {}, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "until the end");
  r = HttpRequest(target, "GET", "/short", {}, {});
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_TRUE(Contains(r.status(), "inside the body")) << r.status().message();
  r = HttpRequest(target, "GET", "/badchunk", {}, {});
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  r = HttpRequest(target, "GET", "/badlength", {}, {});
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  r = HttpRequest(target, "GET", "/continue", {}, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "after 100");
  r = HttpRequest(target, "GET", "/nocontent", {}, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 204);
  target.max_response_bytes = 100;
  r = HttpRequest(target, "GET", "/large", {}, {});
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
}

TEST_F(HttpsTest, HeadersThatWouldInjectAreRefused) {
  HttpTarget target = *ParseUrl("http://127.0.0.1:1");
  Result<HttpResponse> r = HttpRequest(target, "GET", "/", {{"X-A", "1\r\nX-B: 2"}}, {});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = HttpRequest(target, "GET", "/", {{"Content-Length", "5"}}, {});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = HttpRequest(target, "GET", "no-slash", {}, {});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = HttpRequest(target, "get", "/", {}, {});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ppml::client
