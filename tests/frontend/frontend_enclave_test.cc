// The client's whole path through ppml-frontend to an enclave worker: the
// key config from /.well-known/hpke-keys, a verified attestation for a fresh
// nonce from /v2/attestation, an EHBP-encrypted KServe request over HTTPS
// whose reply decrypts to the model's output, and no plaintext request byte
// in the front-end's or the worker's log.
#include <sys/wait.h>

#include <gtest/gtest.h>

#include "common/crypto.h"
#include "common/ehbp.h"
#include "common/kserve.h"
#include "enclave_sim/attestation.h"
#include "tests/frontend/frontend_support.h"

namespace ppml::testing {
namespace {

using namespace std::chrono_literals;

TEST(FrontendEnclaveTest, EncryptedInferenceAndAttestationThroughTheFrontend) {
  TempDir dir("ppml-frontend-test");
  ASSERT_TRUE(dir.ok());
  MakeServerCertificates(dir);
  const std::optional<enclave::AttestationDocument> provisioned = ProvisionAndSealFashion(dir);
  ASSERT_TRUE(provisioned.has_value());

  auto redis = StartRedis(false);
  ASSERT_NE(redis, nullptr);
  ChildProcess worker = StartWorkerProcess(
      dir, "w",
      RedisYaml(*redis) +
          "model:\n  name: fashion\n  package: fashion.ppmlpkg\nworker:\n  consumer: enclave-w\n  threads: 1\n"
          "  metrics:\n    port: -1\nenclave:\n  platform: platform\n  sealed_keys: enclave/sealed_keys.bin\n");
  ChildProcess frontend = StartFrontendProcess(dir, "fe", FrontendYaml(*redis, {.id = "fe-enc", .models = "[fashion]"}));
  const uint16_t port = WaitForListening(dir, "fe", 10s);
  ASSERT_NE(port, 0) << ReadLog(dir, "fe");
  ASSERT_TRUE(WaitForServing(dir, "w", 30s)) << ReadLog(dir, "w");
  const HttpsClient https(port, dir.File("ca.crt"));
  ASSERT_TRUE(WaitFor([&] { return https.Get("/v2/health/ready").status == 200; }, 5s)) << ReadLog(dir, "fe");

  // The key config (RFC 9458, one config, no length prefix): id, KEM 0x0020,
  // the 32-byte X25519 key, suites length 4, HKDF-SHA256 0x0001, AES-256-GCM 0x0002.
  const HttpsResponse keys = https.Get("/.well-known/hpke-keys");
  ASSERT_EQ(keys.status, 200) << keys.body;
  EXPECT_EQ(keys.Header("content-type"), "application/ohttp-keys");
  ASSERT_EQ(keys.body.size(), 41u);
  EXPECT_EQ(keys.body.substr(1, 2), std::string("\x00\x20", 2));
  EXPECT_EQ(keys.body.substr(35, 6), std::string("\x00\x04\x00\x01\x00\x02", 6));
  const crypto::Bytes public_key(keys.body.begin() + 3, keys.body.begin() + 35);

  // A fresh challenge; the quote must bind it and that same key.
  auto nonce = crypto::RandomBytes(32);
  ASSERT_TRUE(nonce.ok());
  const HttpsResponse attested = https.Get("/v2/attestation?nonce=" + crypto::ToHex(*nonce) + "&model=fashion");
  ASSERT_EQ(attested.status, 200) << attested.body;
  EXPECT_EQ(attested.Header("content-type"), "application/json");
  auto document = enclave::AttestationDocumentFromJson(attested.body);
  ASSERT_TRUE(document.ok()) << document.status().ToString();
  EXPECT_EQ(document->nonce, *nonce);
  EXPECT_EQ(document->enclave_public_key, public_key);
  auto platform_key = enclave::LoadPlatformPublicKeyPem(dir.File("platform/platform.pub.pem"));
  ASSERT_TRUE(platform_key.ok());
  queue::RedisClient client(redis->Endpoint());
  auto published = client.Command({"HGET", queue::InfoKey("fashion"), "measurement"});
  ASSERT_TRUE(published.ok());
  auto measurement_bytes = crypto::FromHex(published->str());
  ASSERT_TRUE(measurement_bytes.ok());
  ASSERT_EQ(measurement_bytes->size(), enclave::Measurement{}.size());
  enclave::Measurement measurement{};
  std::copy(measurement_bytes->begin(), measurement_bytes->end(), measurement.begin());
  EXPECT_TRUE(enclave::VerifyAttestationDocument(*document, platform_key->get(), measurement, 300, enclave::UnixNow(),
                                                 *nonce)
                  .ok());

  const HttpsResponse metadata = https.Get("/v2/models/fashion");
  ASSERT_EQ(metadata.status, 200);
  EXPECT_NE(metadata.body.find(R"("shape":[-1,1,28,28])"), std::string::npos) << metadata.body;

  // The request: a marker id inside the encrypted JSON, never in a header.
  const std::string marker = "plaintext-marker-5c1e0a";
  kserve::InferRequest request;
  request.id = marker;
  Tensor images(DataType::kF32, {2, 1, 28, 28});
  for (int64_t k = 0; k < images.element_count(); ++k) images.data<float>()[k] = static_cast<float>(k % 29) / 29.f;
  request.inputs.push_back({"input", std::move(images)});
  auto body = kserve::EncodeInferRequest(request, false);
  ASSERT_TRUE(body.ok());
  const std::string json(body->body.begin(), body->body.end());
  ASSERT_NE(json.find(marker), std::string::npos);
  auto encrypted = ehbp::EncryptRequest(public_key, body->body);
  ASSERT_TRUE(encrypted.ok());
  const HttpsResponse answer = https.Post(
      "/v2/models/fashion/infer", std::string(encrypted->body.begin(), encrypted->body.end()),
      {{std::string(ehbp::kEncapsulatedKeyHeader), encrypted->encapsulated_key_header_value}, {"X-Request-Id", "e2e-1"}});
  ASSERT_EQ(answer.status, 200) << answer.body << ReadLog(dir, "w");
  EXPECT_EQ(answer.Header("content-type"), "application/octet-stream");
  EXPECT_EQ(answer.Header("x-request-id"), "e2e-1");
  const std::string nonce_header = answer.Header(std::string(ehbp::kResponseNonceHeader));
  ASSERT_EQ(nonce_header.size(), 64u);
  auto plain = ehbp::DecryptResponse(encrypted->client_state, nonce_header,
                                     crypto::ByteSpan(reinterpret_cast<const uint8_t*>(answer.body.data()),
                                                      answer.body.size()));
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  std::optional<size_t> json_length;
  if (const std::string hlen = answer.Header("inference-header-content-length"); !hlen.empty()) {
    json_length = std::stoul(hlen);
  }
  auto response = kserve::ParseInferResponse(*plain, json_length);
  ASSERT_TRUE(response.ok()) << response.status().ToString();
  EXPECT_EQ(response->id, marker);
  ASSERT_EQ(response->outputs.size(), 1u);
  EXPECT_EQ(response->outputs[0].tensor.shape(), (std::vector<int64_t>{2, 10}));

  // The same ciphertext again is a replay the enclave refuses; the front-end passes its answer on.
  const HttpsResponse replay = https.Post(
      "/v2/models/fashion/infer", std::string(encrypted->body.begin(), encrypted->body.end()),
      {{std::string(ehbp::kEncapsulatedKeyHeader), encrypted->encapsulated_key_header_value}});
  EXPECT_GE(replay.status, 400) << replay.body;
  EXPECT_EQ(replay.Header("content-type"), "application/json");

  // Nothing of the plaintext request in any log.
  frontend.Signal(SIGTERM);
  ASSERT_TRUE(frontend.Wait(5s).has_value());
  worker.Signal(SIGTERM);
  ASSERT_TRUE(worker.Wait(10s).has_value());
  const std::string json_head = json.substr(0, 24);
  for (const char* name : {"fe", "w"}) {
    const std::string log = ReadLog(dir, name);
    EXPECT_FALSE(log.empty()) << name;
    EXPECT_EQ(log.find(marker), std::string::npos) << name << " log holds request plaintext";
    EXPECT_EQ(log.find(json_head), std::string::npos) << name << " log holds request plaintext";
    EXPECT_EQ(log.find("\"inputs\""), std::string::npos) << name;
    EXPECT_EQ(log.find(encrypted->encapsulated_key_header_value), std::string::npos) << name << " log holds a key";
  }
}

}  // namespace
}  // namespace ppml::testing
