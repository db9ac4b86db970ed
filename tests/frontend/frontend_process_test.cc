// ppml-frontend as a process over real TLS, against a real redis-server and
// real ppml-worker processes (the echo backend): health and readiness that
// follow the workers, routes and their errors, the echo round trip, queue
// limits, deadlines, Redis going away and coming back, metrics, SIGTERM,
// client certificates, plain HTTP with plaintext allowed, and bad configs.
#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <thread>

#include "tests/frontend/frontend_support.h"

namespace ppml::testing {
namespace {

using namespace std::chrono_literals;

const std::string kEnc(64, 'a');  // a well-formed Ehbp-Encapsulated-Key (the echo worker never opens it)
const std::pair<std::string, std::string> kEncHeader{"Ehbp-Encapsulated-Key", kEnc};

class FrontendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    MakeServerCertificates(dir_);
    redis_ = StartRedis(false);
    ASSERT_NE(redis_, nullptr);
    client_ = std::make_unique<queue::RedisClient>(redis_->Endpoint());
  }

  // Starts ppml-frontend and waits until it listens and reaches Redis.
  uint16_t StartFrontend(FrontendOptions options = {}) {
    options_ = options;
    frontend_ = StartFrontendProcess(dir_, "fe", FrontendYaml(*redis_, options));
    port_ = WaitForListening(dir_, "fe", 10s);
    EXPECT_TRUE(WaitFor([&] { return Log().find("event=redis_connected id=" + options.id + " link=commands") !=
                                         std::string::npos; },
                        10s))
        << Log();
    return port_;
  }

  HttpsClient Https() const { return options_.tls ? HttpsClient(port_, dir_.File("ca.crt")) : HttpsClient(port_); }

  ChildProcess StartEcho(const std::string& consumer, const std::string& model = "m") {
    ChildProcess worker = StartWorkerProcess(dir_, consumer, EchoWorkerYaml(*redis_, model, consumer));
    EXPECT_TRUE(WaitForServing(dir_, consumer, 10s)) << ReadLog(dir_, consumer);
    return worker;
  }

  bool WaitForStatus(const std::string& path, int status, std::chrono::milliseconds timeout) const {
    const HttpsClient https = Https();
    return WaitFor([&] { return https.Get(path).status == status; }, timeout);
  }

  double Metric(const std::string& series) const { return MetricValue(Https().Get("/metrics").body, series); }

  std::string Log() const { return ReadLog(dir_, "fe"); }

  TempDir dir_{"ppml-frontend-test"};
  std::unique_ptr<queue::LocalRedisServer> redis_;
  std::unique_ptr<queue::RedisClient> client_;
  FrontendOptions options_;
  ChildProcess frontend_;
  uint16_t port_ = 0;
};

TEST_F(FrontendTest, ReadinessFollowsTheWorkersHeartbeats) {
  ASSERT_NE(StartFrontend(), 0);
  const HttpsClient https = Https();
  const HttpsResponse live = https.Get("/v2/health/live");
  EXPECT_EQ(live.status, 200) << live.error;
  EXPECT_EQ(live.body, R"({"live":true})");
  EXPECT_EQ(live.Header("content-type"), "application/json");
  const HttpsResponse not_ready = https.Get("/v2/health/ready");
  EXPECT_EQ(not_ready.status, 503);
  EXPECT_EQ(not_ready.body, R"({"ready":false})");
  EXPECT_EQ(https.Get("/v2/models/m/ready").status, 503);
  const HttpsResponse no_metadata = https.Get("/v2/models/m");
  EXPECT_EQ(no_metadata.status, 503);
  EXPECT_NE(no_metadata.body.find(R"({"error":")"), std::string::npos) << no_metadata.body;

  ChildProcess worker = StartEcho("w1");
  ASSERT_TRUE(WaitForStatus("/v2/health/ready", 200, 5s)) << Log();
  const HttpsResponse model_ready = https.Get("/v2/models/m/ready");
  EXPECT_EQ(model_ready.status, 200);
  EXPECT_EQ(model_ready.body, R"({"name":"m","ready":true})");
  const HttpsResponse metadata = https.Get("/v2/models/m");
  EXPECT_EQ(metadata.status, 200);
  EXPECT_NE(metadata.body.find(R"("name":"m")"), std::string::npos) << metadata.body;
  EXPECT_EQ(metadata.Header("content-type"), "application/json");

  // A killed worker leaves no goodbye: its heartbeat ages out after the TTL.
  worker.Signal(SIGKILL);
  const auto killed_at = Clock::now();
  ASSERT_TRUE(WaitForStatus("/v2/health/ready", 503, std::chrono::milliseconds(queue::kHeartbeatTtlMs) + 3s));
  EXPECT_GT(Clock::now() - killed_at, 2s) << "not before the heartbeat aged";
  EXPECT_EQ(https.Get("/v2/models/m/ready").status, 503);
}

TEST_F(FrontendTest, RoutesMethodsAndMalformedRequests) {
  ASSERT_NE(StartFrontend({.max_body_bytes = 4096}), 0);
  const HttpsClient https = Https();
  const HttpsResponse server = https.Get("/v2");
  EXPECT_EQ(server.status, 200);
  EXPECT_EQ(server.body,
            R"({"name":"ppml-serving","version":"0.1.0","extensions":["ehbp","attestation","binary_tensor_data"]})");

  const auto expect_error = [&](const HttpsResponse& response, int status, const std::string& what) {
    EXPECT_EQ(response.status, status) << what << ": " << response.body << response.error;
    EXPECT_EQ(response.Header("content-type"), "application/json") << what;
    EXPECT_EQ(response.body.rfind(R"({"error":")", 0), 0u) << what << ": " << response.body;
  };
  expect_error(https.Get("/nowhere"), 404, "unknown path");
  expect_error(https.Get("/v2/models/m/versions/1"), 404, "unknown model route");
  expect_error(https.Get("/v2/models/other"), 404, "unknown model");
  expect_error(https.Post("/v2/models/other/infer", "x", {kEncHeader}), 404, "infer on an unknown model");
  const HttpsResponse get_infer = https.Get("/v2/models/m/infer");
  expect_error(get_infer, 405, "GET infer");
  EXPECT_EQ(get_infer.Header("allow"), "POST");
  expect_error(https.Post("/v2/health/live", ""), 405, "POST live");
  expect_error(https.Send({"DELETE", "/v2", {}, "", true, 15000}), 405, "DELETE /v2");

  const HttpsResponse plaintext = https.Post("/v2/models/m/infer", R"({"inputs":[]})");
  expect_error(plaintext, 403, "plaintext");
  EXPECT_NE(plaintext.body.find("Ehbp-Encapsulated-Key"), std::string::npos) << plaintext.body;
  expect_error(https.Post("/v2/models/m/infer", "x", {{"Ehbp-Encapsulated-Key", "abc"}}), 400, "short key");
  expect_error(https.Post("/v2/models/m/infer", "x", {{"Ehbp-Encapsulated-Key", std::string(64, 'g')}}), 400,
               "non-hex key");
  expect_error(https.Post("/v2/models/m/infer", "xyz", {kEncHeader, {"Inference-Header-Content-Length", "4"}}), 400,
               "header length over the body");
  expect_error(https.Post("/v2/models/m/infer", "xyz", {kEncHeader, {"Inference-Timeout-Ms", "soon"}}), 400,
               "bad timeout");
  // Over max_body_bytes: evhttp refuses it from the Content-Length, before reading it.
  EXPECT_EQ(https.Post("/v2/models/m/infer", std::string(8192, 'b'), {kEncHeader}).status, 413);
  const HttpsResponse after = https.Get("/v2/health/live");
  EXPECT_EQ(after.status, 200) << "the server is fine after a refused body";

  expect_error(https.Get("/v2/attestation"), 400, "no nonce");
  expect_error(https.Get("/v2/attestation?nonce=abc"), 400, "odd nonce");
  expect_error(https.Get("/v2/attestation?nonce=" + std::string(30, 'a')), 400, "15-byte nonce");
  expect_error(https.Get("/v2/attestation?nonce=" + std::string(130, 'a')), 400, "65-byte nonce");
  expect_error(https.Get("/v2/attestation?nonce=" + std::string(32, 'z')), 400, "non-hex nonce");
  expect_error(https.Get("/v2/attestation?nonce=" + std::string(32, 'a') + "&model=other"), 404, "attest other model");
  expect_error(https.Get("/.well-known/hpke-keys?model=other"), 404, "keys of another model");
  expect_error(https.Get("/.well-known/hpke-keys"), 503, "no key published");
  // The echo worker publishes no key and has no enclave to attest.
  ChildProcess worker = StartEcho("w1");
  expect_error(https.Get("/.well-known/hpke-keys?model=m"), 503, "echo publishes no key");
  expect_error(https.Get("/v2/attestation?nonce=" + std::string(32, 'a')), 501, "echo cannot attest");
}

TEST_F(FrontendTest, EchoRoundTripCarriesBodyHeadersAndRequestId) {
  ASSERT_NE(StartFrontend(), 0);
  ChildProcess worker = StartEcho("w1");
  ASSERT_TRUE(WaitForStatus("/v2/health/ready", 200, 5s)) << Log();
  const HttpsClient https = Https();

  std::string body;
  for (int i = 0; i < 3000; ++i) body += static_cast<char>((i * 37) % 256);  // NUL, CR, LF and 0xff included
  const HttpsResponse echoed = https.Post("/v2/models/m/infer", body,
                                          {kEncHeader, {"X-Request-Id", "client-1"},
                                           {"Inference-Header-Content-Length", "10"}});
  ASSERT_EQ(echoed.status, 200) << echoed.body << echoed.error << Log();
  EXPECT_EQ(echoed.body, body);
  EXPECT_EQ(echoed.Header("x-request-id"), "client-1");
  EXPECT_EQ(echoed.Header("inference-header-content-length"), "10");
  EXPECT_EQ(echoed.Header("ehbp-response-nonce"), "") << "the echo answers without a nonce";
  EXPECT_EQ(echoed.Header("content-type"), "application/octet-stream");

  // No (or an unusable) X-Request-Id: one is made and returned.
  const HttpsResponse made = https.Post("/v2/models/m/infer", "abc", {kEncHeader});
  ASSERT_EQ(made.status, 200) << made.body;
  EXPECT_EQ(made.body, "abc");
  EXPECT_EQ(made.Header("x-request-id").rfind("fe-test-", 0), 0u) << made.Header("x-request-id");
  const HttpsResponse bad_id = https.Post("/v2/models/m/infer", "def", {kEncHeader, {"X-Request-Id", "a b"}});
  ASSERT_EQ(bad_id.status, 200);
  EXPECT_EQ(bad_id.Header("x-request-id").rfind("fe-test-", 0), 0u);
  // The same client id again is answered as its own request.
  const HttpsResponse again = https.Post("/v2/models/m/infer", "ghi", {kEncHeader, {"X-Request-Id", "client-1"}});
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(again.body, "ghi");
  EXPECT_EQ(again.Header("x-request-id"), "client-1");

  // Several at once, over separate connections.
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      const std::string mine = "parallel-" + std::to_string(i);
      const HttpsResponse r = https.Post("/v2/models/m/infer", mine, {kEncHeader, {"X-Request-Id", mine}});
      if (r.status == 200 && r.body == mine && r.Header("x-request-id") == mine) ++ok;
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), 8);

  // A repeated result (at-least-once delivery) is dropped and counted.
  queue::ResultEntry duplicate;
  duplicate.request_id = "client-1";
  duplicate.body = "again";
  ASSERT_TRUE(queue::Xadd(*client_, queue::ResultStream("fe-test"), duplicate.Fields()).ok());
  EXPECT_TRUE(WaitFor([&] { return Metric("ppml_frontend_late_results_total") == 1; }, 3s));

  const std::string metrics = Https().Get("/metrics").body;
  EXPECT_EQ(MetricValue(metrics, R"(ppml_frontend_requests_total{code="200"})"), 12) << metrics;
  EXPECT_EQ(MetricValue(metrics, "ppml_frontend_request_seconds_count"), 12) << metrics;
  EXPECT_EQ(MetricValue(metrics, "ppml_frontend_in_flight"), 0) << metrics;
  EXPECT_GE(MetricValue(metrics, R"(ppml_frontend_queue_depth{model="m"})"), 0) << metrics;
}

TEST_F(FrontendTest, ManyClientsAtOnceEachGetTheirOwnAnswer) {
  ASSERT_NE(StartFrontend(), 0);
  ChildProcess worker = StartEcho("w1");
  ASSERT_TRUE(WaitForStatus("/v2/health/ready", 200, 5s)) << Log();
  constexpr int kClients = 32, kEach = 8;
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      const HttpsClient https = Https();
      for (int i = 0; i < kEach; ++i) {
        const std::string body = "client " + std::to_string(c) + " request " + std::to_string(i);
        const HttpsResponse r = https.Post("/v2/models/m/infer", body, {kEncHeader});
        if (r.status == 200 && r.body == body) ++ok;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), kClients * kEach);
  EXPECT_EQ(Metric(R"(ppml_frontend_requests_total{code="200"})"), kClients * kEach);
  EXPECT_EQ(Metric("ppml_frontend_in_flight"), 0);
}

TEST_F(FrontendTest, FullQueueIs429WithRetryAfter) {
  ASSERT_NE(StartFrontend({.max_queue_length = 3}), 0);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client_->Command({"XADD", queue::RequestStream("m"), "*", "junk", std::to_string(i)}).ok());
  }
  const HttpsResponse full = Https().Post("/v2/models/m/infer", "x", {kEncHeader});
  EXPECT_EQ(full.status, 429) << full.body;
  EXPECT_EQ(full.Header("retry-after"), "1");
  EXPECT_NE(full.body.find("full"), std::string::npos) << full.body;
  EXPECT_EQ(Metric(R"(ppml_frontend_queue_depth{model="m"})"), 3);
  EXPECT_EQ(Metric(R"(ppml_frontend_requests_total{code="429"})"), 1);
}

TEST_F(FrontendTest, NoAnswerByTheDeadlineIs504AndTheLateResultIsDropped) {
  ASSERT_NE(StartFrontend({.default_timeout_ms = 400}), 0);
  const HttpsClient https = Https();
  auto start = Clock::now();
  const HttpsResponse late = https.Post("/v2/models/m/infer", "x", {kEncHeader, {"X-Request-Id", "late-1"}});
  auto took = Clock::now() - start;
  EXPECT_EQ(late.status, 504);
  EXPECT_EQ(late.body, R"({"error":"deadline exceeded"})");
  EXPECT_EQ(late.Header("x-request-id"), "late-1");
  EXPECT_GE(took, 380ms);
  EXPECT_LT(took, 3s);
  // A client may ask for less than the default, not more.
  start = Clock::now();
  EXPECT_EQ(https.Post("/v2/models/m/infer", "x", {kEncHeader, {"Inference-Timeout-Ms", "100"}}).status, 504);
  EXPECT_LT(Clock::now() - start, 380ms);
  start = Clock::now();
  EXPECT_EQ(https.Post("/v2/models/m/infer", "x", {kEncHeader, {"Inference-Timeout-Ms", "60000"}}).status, 504);
  EXPECT_LT(Clock::now() - start, 3s);

  // A client that hangs up first: its 504 goes nowhere, and nothing is left behind.
  const HttpsResponse gone = https.Send({"POST", "/v2/models/m/infer", {kEncHeader}, "x", true, 100});
  EXPECT_EQ(gone.status, -1);
  EXPECT_TRUE(WaitFor([&] { return Metric("ppml_frontend_in_flight") == 0; }, 2s));
  EXPECT_EQ(https.Get("/v2/health/live").status, 200);

  // A worker that comes now answers the expired entries (with its own 504);
  // nobody waits for them any more.
  ChildProcess worker = StartEcho("w1");
  EXPECT_TRUE(WaitFor([&] { return Metric("ppml_frontend_late_results_total") == 4; }, 5s))
      << Https().Get("/metrics").body;
  EXPECT_EQ(Metric(R"(ppml_frontend_requests_total{code="504"})"), 4);
}

TEST_F(FrontendTest, RedisDownIs503AndServiceComesBack) {
  ASSERT_NE(StartFrontend(), 0);
  ChildProcess worker = StartEcho("w1");
  ASSERT_TRUE(WaitForStatus("/v2/health/ready", 200, 5s)) << Log();
  const HttpsClient https = Https();
  ASSERT_EQ(https.Post("/v2/models/m/infer", "before", {kEncHeader}).status, 200);

  redis_->Stop();
  const HttpsResponse down = https.Post("/v2/models/m/infer", "during", {kEncHeader});
  EXPECT_EQ(down.status, 503) << down.body;
  EXPECT_EQ(down.body.rfind(R"({"error":")", 0), 0u) << down.body;
  EXPECT_TRUE(WaitForStatus("/v2/health/ready", 503, 2s));
  EXPECT_EQ(https.Get("/v2/models/m").status, 503);
  EXPECT_EQ(https.Get("/v2/health/live").status, 200) << "alive without Redis";
  EXPECT_TRUE(WaitFor([&] { return Log().find("event=redis_lost") != std::string::npos; }, 2s)) << Log();

  ASSERT_TRUE(redis_->Restart().ok());
  ASSERT_TRUE(WaitForStatus("/v2/health/ready", 200, 15s)) << Log() << ReadLog(dir_, "w1");
  const HttpsResponse after = https.Post("/v2/models/m/infer", "after", {kEncHeader});
  EXPECT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(after.body, "after");
  EXPECT_NE(Log().find("event=redis_reconnected"), std::string::npos) << Log();
}

TEST_F(FrontendTest, SigtermAnswersWaitingRequests503AndExitsZero) {
  ASSERT_NE(StartFrontend({.default_timeout_ms = 30000}), 0);
  HttpsResponse waiting;
  std::thread client([&] { waiting = Https().Post("/v2/models/m/infer", "x", {kEncHeader}); });
  EXPECT_TRUE(WaitFor([&] { return Metric("ppml_frontend_in_flight") == 1; }, 5s));
  queue::ResultEntry stray;  // so that the result stream exists
  stray.request_id = "nobody";
  ASSERT_TRUE(queue::Xadd(*client_, queue::ResultStream("fe-test"), stray.Fields()).ok());
  frontend_.Signal(SIGTERM);
  client.join();
  EXPECT_EQ(waiting.status, 503) << waiting.error;
  EXPECT_NE(waiting.body.find("shutting down"), std::string::npos) << waiting.body;
  const std::optional<int> status = frontend_.Wait(5s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeExit(*status);
  const std::string log = Log();
  EXPECT_NE(log.find("event=frontend_stopping"), std::string::npos) << log;
  EXPECT_NE(log.find("event=frontend_stopped"), std::string::npos) << log;
  // Its result stream outlives it only briefly.
  auto ttl = client_->Command({"TTL", queue::ResultStream("fe-test")});
  ASSERT_TRUE(ttl.ok());
  EXPECT_GT(ttl->integer(), 0) << ttl->Describe();
}

TEST_F(FrontendTest, ClientCertificatesRequiredWhenConfigured) {
  auto ca = x509::GenerateDevCa("client CA");
  ASSERT_TRUE(ca.ok());
  ASSERT_TRUE(WriteFile(dir_.File("client-ca.crt"), ca->cert_pem).ok());
  x509::CertificateRequest request;
  request.common_name = "a client";
  request.usage = x509::CertificateUsage::kClient;
  auto client_cert = x509::IssueCertificate(*ca, request);
  ASSERT_TRUE(client_cert.ok()) << client_cert.status().ToString();
  ASSERT_TRUE(x509::WritePemFiles(*client_cert, dir_.File("client.key"), dir_.File("client.crt")).ok());

  ASSERT_NE(StartFrontend({.client_ca = "client-ca.crt"}), 0);
  EXPECT_EQ(Https().Get("/v2/health/live").status, -1) << "no client certificate, no answer";
  const HttpsClient with_cert(port_, dir_.File("ca.crt"), dir_.File("client.crt"), dir_.File("client.key"));
  const HttpsResponse live = with_cert.Get("/v2/health/live");
  EXPECT_EQ(live.status, 200) << live.error;
}

TEST_F(FrontendTest, PlainHttpWithPlaintextAllowedForwardsTheBody) {
  ASSERT_NE(StartFrontend({.tls = false, .allow_plaintext = true}), 0);
  EXPECT_NE(Log().find("url=http://127.0.0.1:"), std::string::npos) << Log();
  ChildProcess worker = StartEcho("w1");
  ASSERT_TRUE(WaitForStatus("/v2/health/ready", 200, 5s)) << Log();
  const std::string json = R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]})";
  const HttpsResponse echoed = Https().Post("/v2/models/m/infer", json);
  EXPECT_EQ(echoed.status, 200) << echoed.body;
  EXPECT_EQ(echoed.body, json);
  EXPECT_EQ(echoed.Header("content-type"), "application/json");
}

TEST(FrontendProcessTest, BadConfigExitsTwoNamingFileAndKey) {
  TempDir dir("ppml-frontend-test");
  ChildProcess frontend = StartFrontendProcess(dir, "bad", "frontend:\n  models: [m]\n  tls: {enabled: false}\n  modles: [x]\n");
  const std::optional<int> status = frontend.Wait(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << DescribeExit(*status);
  const std::string log = ReadLog(dir, "bad");
  EXPECT_NE(log.find("bad.yaml"), std::string::npos) << log;
  EXPECT_NE(log.find("frontend.modles"), std::string::npos) << log;
}

TEST(FrontendProcessTest, UnreadableCertificateExitsOneNamingTheFile) {
  TempDir dir("ppml-frontend-test");
  ChildProcess frontend = StartFrontendProcess(
      dir, "fe", "frontend:\n  models: [m]\n  listen: {port: 0}\n  tls: {cert: missing.crt, key: missing.key}\n");
  const std::optional<int> status = frontend.Wait(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << DescribeExit(*status);
  const std::string log = ReadLog(dir, "fe");
  EXPECT_NE(log.find(dir.File("missing.crt")), std::string::npos) << log;
}

TEST(FrontendProcessTest, PortInUseExitsOne) {
  TempDir dir("ppml-frontend-test");
  ChildProcess first = StartFrontendProcess(dir, "first", "frontend:\n  models: [m]\n  listen: {port: 0}\n  tls: {enabled: false}\n");
  const uint16_t port = WaitForListening(dir, "first", 10s);
  ASSERT_NE(port, 0);
  ChildProcess second = StartFrontendProcess(
      dir, "second",
      "frontend:\n  models: [m]\n  listen: {port: " + std::to_string(port) + "}\n  tls: {enabled: false}\n");
  const std::optional<int> status = second.Wait(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << DescribeExit(*status);
  EXPECT_NE(ReadLog(dir, "second").find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << ReadLog(dir, "second");
}

}  // namespace
}  // namespace ppml::testing
