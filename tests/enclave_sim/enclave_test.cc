// The enclave's ecalls end to end with the real crypto and the real engine:
// provisioning, attestation, sealed keys across measurements, encrypted
// KServe requests (round trip and every failure, each isolated in its batch),
// the EPC budget, and on-demand weights matching resident ones bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "common/ehbp.h"
#include "common/kserve.h"
#include "enclave_sim/enclave.h"
#include "enclave_sim/package.h"
#include "enclave_sim/weight_store.h"
#include "engine/engine.h"

namespace ppml::enclave {
namespace {

crypto::Bytes ReadModel() {
  std::ifstream f(std::string(PPML_SOURCE_DIR) + "/models/fashion_cnn.onnx", std::ios::binary);
  return crypto::Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

Platform TestPlatform() {
  Platform p;
  p.secret = crypto::SecretBytes(kPlatformSecretLength);
  for (size_t i = 0; i < p.secret.size(); ++i) p.secret.data()[i] = static_cast<uint8_t>(i * 7 + 1);
  p.signing_key = GeneratePlatformKey().value();
  p.signer_id.fill(0x5a);
  return p;
}

const crypto::Bytes kNonce(32, 0x42);

// A provisioned enclave serving the committed Fashion-MNIST model.
struct Served {
  Platform platform = TestPlatform();
  EnclaveConfig config;
  ProvisionResult provisioned;
  std::shared_ptr<const crypto::Bytes> package;
  std::unique_ptr<Enclave> enclave;

  explicit Served(EnclaveConfig c = {}) : config(std::move(c)) {
    provisioned = Enclave::Provision(config, platform, kNonce).value();
    const AttestationDocument doc = AttestationDocumentFromJson(provisioned.attestation_json).value();
    package = std::make_shared<crypto::Bytes>(SealModel(ReadModel(), "fashion", doc.enclave_public_key).value());
    auto created = Enclave::Create(config, platform, provisioned.sealed_keys, package);
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    if (created.ok()) enclave = std::move(created).value();
  }
};

Tensor Images(int64_t n, float seed) {
  Tensor t(DataType::kF32, {n, 1, 28, 28});
  for (int64_t i = 0; i < t.element_count(); ++i) t.data<float>()[i] = static_cast<float>((i * 37 + 11) % 255) / 255.f * seed;
  return t;
}

struct ClientRequest {
  SealedRequest sealed;
  ehbp::ClientState state;
};

ClientRequest Encrypt(const crypto::Bytes& public_key, const std::string& id, const Tensor& images, bool binary) {
  kserve::InferRequest request;
  request.id = id;
  request.inputs.push_back({"input", images.Clone()});
  kserve::EncodedBody body = kserve::EncodeInferRequest(request, binary).value();
  ehbp::EncryptedRequest encrypted = ehbp::EncryptRequest(public_key, body.body).value();
  SealedRequest sealed{id, encrypted.encapsulated_key_header_value, encrypted.body, body.json_length};
  return {std::move(sealed), std::move(encrypted.client_state)};
}

Tensor DecryptLogits(ClientRequest& client, const SealedReply& reply) {
  EXPECT_EQ(reply.http_status, 200) << std::string(reply.body.begin(), reply.body.end());
  crypto::Bytes plain = ehbp::DecryptResponse(client.state, reply.response_nonce, reply.body).value();
  kserve::InferResponse response = kserve::ParseInferResponse(plain, reply.json_length).value();
  EXPECT_EQ(response.model_name, "fashion");
  EXPECT_EQ(response.outputs.size(), 1u);
  return response.outputs.at(0).tensor.Clone();
}

std::string DecryptError(ClientRequest& client, const SealedReply& reply) {
  crypto::Bytes plain = ehbp::DecryptResponse(client.state, reply.response_nonce, reply.body).value();
  return std::string(plain.begin(), plain.end());
}

Tensor PlainLogits(const Tensor& images) {
  const crypto::Bytes onnx = ReadModel();
  auto model = engine::Model::LoadBytes(std::as_bytes(std::span<const uint8_t>(onnx)), "fashion").value();
  std::vector<Tensor> in;
  in.push_back(images.Clone());
  return std::move(model->Run(in).value()[0]);
}

void ExpectSameBits(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  ASSERT_EQ(0, std::memcmp(a.raw_data(), b.raw_data(), a.byte_size()));
}

TEST(EnclaveTest, QuotesVerifyAgainstTheServingMeasurement) {
  Served s;
  ASSERT_TRUE(s.enclave);
  EXPECT_NE(s.enclave->measurement(), s.enclave->base_measurement());
  EXPECT_EQ(s.enclave->base_measurement(), s.provisioned.base_measurement);
  const crypto::Bytes nonce(24, 0x17);
  const AttestationDocument doc = AttestationDocumentFromJson(s.enclave->Attest(nonce).value()).value();
  EXPECT_EQ(doc.enclave_public_key, s.enclave->public_key());
  EXPECT_TRUE(VerifyAttestationDocument(doc, s.platform.signing_key.get(), s.enclave->measurement(), 60, UnixNow(),
                                        nonce)
                  .ok());
  // A client expecting the base measurement (no model) or another nonce rejects it.
  EXPECT_FALSE(VerifyAttestationDocument(doc, s.platform.signing_key.get(), s.enclave->base_measurement(), 60,
                                         UnixNow(), nonce)
                   .ok());
  EXPECT_FALSE(VerifyAttestationDocument(doc, s.platform.signing_key.get(), s.enclave->measurement(), 60, UnixNow(),
                                         crypto::Bytes(24, 0x18))
                   .ok());
  const crypto::Bytes config = s.enclave->HpkeKeyConfig();
  ASSERT_EQ(config.size(), 41u);
  EXPECT_EQ(config[2], 0x20);
  EXPECT_TRUE(std::equal(config.begin() + 3, config.begin() + 35, s.enclave->public_key().begin()));
}

TEST(EnclaveTest, KeysSealedForOneConfigDoNotUnsealUnderAnother) {
  Served s;
  EnclaveConfig other;
  other.security_config = {"outsourcing=private"};
  auto created = Enclave::Create(other, s.platform, s.provisioned.sealed_keys, s.package);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(created.status().message().find("does not unseal"), std::string::npos);
}

TEST(EnclaveTest, EncryptedRoundTripMatchesThePlainModelForJsonAndBinary) {
  Served s;
  ASSERT_TRUE(s.enclave);
  const Tensor a = Images(2, 1.f), b = Images(3, 0.5f);
  std::vector<ClientRequest> clients;
  clients.push_back(Encrypt(s.enclave->public_key(), "a", a, false));
  clients.push_back(Encrypt(s.enclave->public_key(), "b", b, true));
  std::vector<SealedRequest> batch = {clients[0].sealed, clients[1].sealed};
  const std::vector<SealedReply> replies = s.enclave->InferBatch(batch);
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].request_id, "a");
  // Stacked into one run of 5 rows, split back: each equals its own plain run to float tolerance.
  const Tensor la = DecryptLogits(clients[0], replies[0]), lb = DecryptLogits(clients[1], replies[1]);
  const Tensor pa = PlainLogits(a), pb = PlainLogits(b);
  ASSERT_EQ(la.shape(), pa.shape());
  ASSERT_EQ(lb.shape(), pb.shape());
  for (int64_t i = 0; i < pa.element_count(); ++i) EXPECT_NEAR(la.data<float>()[i], pa.data<float>()[i], 1e-4);
  for (int64_t i = 0; i < pb.element_count(); ++i) EXPECT_NEAR(lb.data<float>()[i], pb.data<float>()[i], 1e-4);
  // The reply is not the plaintext.
  const std::string body(replies[0].body.begin(), replies[0].body.end());
  EXPECT_EQ(body.find("outputs"), std::string::npos);
}

SealedRequest PlainRequest(const std::string& id, const Tensor& images) {
  kserve::InferRequest request;
  request.id = id;
  request.inputs.push_back({"input", images.Clone()});
  kserve::EncodedBody body = kserve::EncodeInferRequest(request, false).value();
  return {id, "", body.body, body.json_length};
}

TEST(EnclaveTest, PlaintextRequestsOnlyWhenTheMeasuredConfigAllowsThem) {
  const Tensor images = Images(2, 1.f);
  {
    Served s;
    ASSERT_TRUE(s.enclave);
    const std::vector<SealedRequest> batch = {PlainRequest("p", images)};
    const std::vector<SealedReply> replies = s.enclave->InferBatch(batch);
    EXPECT_EQ(replies[0].http_status, 403);
    EXPECT_NE(std::string(replies[0].body.begin(), replies[0].body.end()).find("not allowed"), std::string::npos);
  }
  EnclaveConfig config;
  config.security_config = {std::string(kAllowPlaintextEntry)};
  Served s(config);
  ASSERT_TRUE(s.enclave);
  EXPECT_NE(s.enclave->measurement(), Served().enclave->measurement()) << "the measurement shows plaintext is on";
  const std::vector<SealedRequest> batch = {PlainRequest("p", images)};
  const std::vector<SealedReply> replies = s.enclave->InferBatch(batch);
  ASSERT_EQ(replies[0].http_status, 200) << std::string(replies[0].body.begin(), replies[0].body.end());
  EXPECT_TRUE(replies[0].response_nonce.empty());
  kserve::InferResponse response = kserve::ParseInferResponse(replies[0].body, replies[0].json_length).value();
  const Tensor expected = PlainLogits(images);
  ASSERT_EQ(response.outputs.at(0).tensor.shape(), expected.shape());
  for (int64_t i = 0; i < expected.element_count(); ++i) {
    EXPECT_NEAR(response.outputs[0].tensor.data<float>()[i], expected.data<float>()[i], 1e-4);
  }
}

TEST(EnclaveTest, EveryBadRequestFailsAloneAndTheRestOfTheBatchIsAnswered) {
  Served s;
  ASSERT_TRUE(s.enclave);
  const crypto::Bytes& pk = s.enclave->public_key();
  ClientRequest good = Encrypt(pk, "good", Images(1, 1.f), false);
  ClientRequest tampered = Encrypt(pk, "tampered", Images(1, 1.f), false);
  tampered.sealed.body[10] ^= 1;
  ClientRequest truncated = Encrypt(pk, "truncated", Images(1, 1.f), false);
  truncated.sealed.body.resize(truncated.sealed.body.size() - 5);
  const crypto::Bytes other_key = crypto::X25519GenerateKeyPair().value().public_key;
  ClientRequest wrong_key = Encrypt(other_key, "wrong_key", Images(1, 1.f), false);
  ClientRequest wrong_shape = Encrypt(pk, "wrong_shape", Images(1, 1.f).Reshaped({1, 1, 14, 56}).value(), false);
  // Valid encryption of a body that is not a KServe request.
  const std::string junk = R"({"inputs": 5})";
  ehbp::EncryptedRequest junk_enc = ehbp::EncryptRequest(pk, crypto::Bytes(junk.begin(), junk.end())).value();
  ClientRequest malformed{{"malformed", junk_enc.encapsulated_key_header_value, junk_enc.body, std::nullopt},
                          std::move(junk_enc.client_state)};

  // A well-formed request for an output the model does not have.
  kserve::InferRequest asks_unknown;
  asks_unknown.inputs.push_back({"input", Images(1, 1.f)});
  asks_unknown.outputs.push_back({"nope", false});
  const kserve::EncodedBody unknown_body = kserve::EncodeInferRequest(asks_unknown, false).value();
  ehbp::EncryptedRequest unknown_enc = ehbp::EncryptRequest(pk, unknown_body.body).value();
  ClientRequest unknown_output{{"unknown_output", unknown_enc.encapsulated_key_header_value, unknown_enc.body,
                                std::nullopt},
                               std::move(unknown_enc.client_state)};

  std::vector<SealedRequest> batch = {good.sealed,        tampered.sealed,    truncated.sealed,      wrong_key.sealed,
                                      wrong_shape.sealed, malformed.sealed,   unknown_output.sealed};
  std::vector<SealedReply> replies = s.enclave->InferBatch(batch);
  ASSERT_EQ(replies.size(), batch.size());
  const Tensor logits = DecryptLogits(good, replies[0]);
  EXPECT_EQ(logits.shape(), (Shape{1, 10}));
  for (size_t i : {1, 2, 3}) {
    EXPECT_EQ(replies[i].http_status, 400) << replies[i].request_id;
    EXPECT_TRUE(replies[i].response_nonce.empty()) << "no key to encrypt the error for " << replies[i].request_id;
    EXPECT_NE(std::string(replies[i].body.begin(), replies[i].body.end()).find("does not decrypt"), std::string::npos);
  }
  EXPECT_EQ(replies[4].http_status, 400);
  EXPECT_NE(DecryptError(wrong_shape, replies[4]).find("has shape"), std::string::npos);
  EXPECT_EQ(replies[5].http_status, 400);
  EXPECT_NE(DecryptError(malformed, replies[5]).find("inputs"), std::string::npos);
  EXPECT_EQ(replies[6].http_status, 400);
  EXPECT_NE(DecryptError(unknown_output, replies[6]).find("unknown output 'nope'"), std::string::npos);

  // The same ciphertext again (within the window) is refused; the rest of that batch still runs.
  ClientRequest fresh = Encrypt(pk, "fresh", Images(1, 1.f), false);
  std::vector<SealedRequest> again = {good.sealed, fresh.sealed};
  replies = s.enclave->InferBatch(again);
  EXPECT_EQ(replies[0].http_status, 409);
  EXPECT_NE(std::string(replies[0].body.begin(), replies[0].body.end()).find("replayed"), std::string::npos);
  EXPECT_EQ(DecryptLogits(fresh, replies[1]).shape(), (Shape{1, 10}));
}

TEST(EnclaveTest, BudgetTooSmallForTheModelFailsClearly) {
  EnclaveConfig config;
  config.memory_budget_bytes = 256 * 1024;
  config.weights = WeightMode::kResident;
  Platform platform = TestPlatform();
  ProvisionResult p = Enclave::Provision(config, platform, kNonce).value();
  const AttestationDocument doc = AttestationDocumentFromJson(p.attestation_json).value();
  auto package = std::make_shared<crypto::Bytes>(SealModel(ReadModel(), "fashion", doc.enclave_public_key).value());
  auto created = Enclave::Create(config, platform, p.sealed_keys, package);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(created.status().message().find("enclave memory budget exceeded"), std::string::npos)
      << created.status().ToString();
}

// A batcher meets every batch size up to its maximum, and the engine keeps a
// plan (with its arena) for each until the budget is full: those plans must
// give way to the buffers of the requests that follow.
TEST(EnclaveTest, PlansKeptForOtherBatchSizesGiveWayToRequests) {
  EnclaveConfig config;
  config.memory_budget_bytes = 24 << 20;
  config.weights = WeightMode::kResident;
  Served s(config);
  ASSERT_TRUE(s.enclave);
  // Plans for batch sizes 1..30 hold far more than 24 MiB: the cache fills
  // the budget, evicting its least recently used plans as it goes.
  for (int64_t n = 1; n <= 30; ++n) {
    ClientRequest client = Encrypt(s.enclave->public_key(), "fill-" + std::to_string(n), Images(n, 1.f), true);
    const std::vector<SealedReply> replies = s.enclave->InferBatch(std::vector<SealedRequest>{client.sealed});
    ASSERT_EQ(replies.at(0).http_status, 200) << "batch of " << n << ": "
                                              << std::string(replies[0].body.begin(), replies[0].body.end());
  }
  const EpcReport full = s.enclave->stats().memory;
  const size_t headroom = full.budget_bytes - full.in_use_bytes;
  ASSERT_LT(headroom, size_t{8} << 20) << "the plans did not fill the budget";

  // One image in a JSON body padded (whitespace is valid JSON) past what the
  // budget has left: the request's buffers need the plans' room.
  kserve::InferRequest request;
  request.id = "big";
  request.inputs.push_back({"input", Images(1, 1.f)});
  kserve::EncodedBody body = kserve::EncodeInferRequest(request, false).value();
  ASSERT_FALSE(body.json_length.has_value());  // all of it is JSON
  body.body.resize(body.body.size() + headroom / 2 + (256 << 10), ' ');
  ehbp::EncryptedRequest encrypted = ehbp::EncryptRequest(s.enclave->public_key(), body.body).value();
  ClientRequest client{SealedRequest{"big", encrypted.encapsulated_key_header_value, encrypted.body, body.json_length},
                       std::move(encrypted.client_state)};
  const std::vector<SealedReply> replies = s.enclave->InferBatch(std::vector<SealedRequest>{client.sealed});
  ASSERT_EQ(replies.at(0).http_status, 200) << std::string(replies[0].body.begin(), replies[0].body.end());
  EXPECT_EQ(DecryptLogits(client, replies[0]).shape(), (Shape{1, 10}));
  EXPECT_LE(s.enclave->stats().memory.peak_bytes, config.memory_budget_bytes);
}

TEST(EnclaveTest, OnDemandWeightsGiveBitIdenticalOutputsWithinTheBudget) {
  EnclaveConfig resident_config;
  resident_config.weights = WeightMode::kResident;
  EnclaveConfig on_demand_config;
  on_demand_config.weights = WeightMode::kOnDemand;
  on_demand_config.memory_budget_bytes = 4 << 20;
  Served resident(resident_config), on_demand(on_demand_config);
  ASSERT_TRUE(resident.enclave && on_demand.enclave);
  EXPECT_FALSE(resident.enclave->stats().on_demand);
  const EnclaveStats stats = on_demand.enclave->stats();
  EXPECT_TRUE(stats.on_demand);
  EXPECT_GT(stats.streamed_bytes_per_run, 0u);
  for (int round = 0; round < 3; ++round) {
    const Tensor images = Images(4, 0.25f * (round + 1));
    ClientRequest r1 = Encrypt(resident.enclave->public_key(), "r", images, true);
    ClientRequest r2 = Encrypt(on_demand.enclave->public_key(), "o", images, true);
    std::vector<SealedRequest> b1 = {r1.sealed}, b2 = {r2.sealed};
    const Tensor a = DecryptLogits(r1, resident.enclave->InferBatch(b1)[0]);
    const Tensor b = DecryptLogits(r2, on_demand.enclave->InferBatch(b2)[0]);
    ExpectSameBits(a, b);
  }
  const EnclaveStats after = on_demand.enclave->stats();
  EXPECT_GT(after.weight_pool_bytes, 0u);  // sized at the first run
  EXPECT_LE(after.memory.peak_bytes, after.memory.budget_bytes);
  EXPECT_LT(after.memory.peak_bytes, resident.enclave->stats().memory.peak_bytes);
}

TEST(EnclaveTest, ATamperedChunkFailsInitNamingTheLayer) {
  Served s;
  const PackageView view = OpenPackage(ByteSpan(*s.package)).value();
  const PackageChunk& chunk = view.manifest().chunks.at(2);
  auto bad = std::make_shared<crypto::Bytes>(*s.package);
  const size_t at = static_cast<size_t>(view.chunk_bytes(2).data() - s.package->data()) + 20;
  (*bad)[at] ^= 1;
  auto created = Enclave::Create(s.config, s.platform, s.provisioned.sealed_keys, bad);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(created.status().message().find(chunk.layer), std::string::npos) << created.status().ToString();
}

TEST(OnDemandWeightsTest, StreamsInOrderAndCatchesHostTampering) {
  EpcBudget budget(1 << 20);
  auto store = OnDemandWeights::Create(&budget, [](size_t, std::span<uint8_t>) { return Status::Ok(); },
                                       {}).value();
  std::vector<uint64_t> handles;
  for (int i = 0; i < 5; ++i) {
    std::vector<std::byte> w(100000 + i * 1000, std::byte(i + 1));
    handles.push_back(store->Put("layer" + std::to_string(i), w).value());
  }
  for (int run = 0; run < 2; ++run) {
    ASSERT_TRUE(store->BeginRun(handles).ok());
    for (int i = 0; i < 5; ++i) {
      const std::byte* p = store->Acquire(handles[i]).value();
      EXPECT_EQ(p[0], std::byte(i + 1));
      EXPECT_EQ(p[99999 + i * 1000], std::byte(i + 1));
      store->Release(handles[i]);
    }
    store->EndRun();
  }
  EXPECT_LE(budget.report().peak_bytes, store->pool_bytes());
  store->CorruptForTesting(handles[3]);
  ASSERT_TRUE(store->BeginRun(handles).ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store->Acquire(handles[i]).ok());
    store->Release(handles[i]);
  }
  Result<const std::byte*> bad = store->Acquire(handles[3]);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("layer3"), std::string::npos);
  store->EndRun();
}

// Weights over a segment: every byte comes back, in both modes, however the
// two threads share the segments; a segment altered or swapped with another
// fails the layer's check.
TEST(OnDemandWeightsTest, SegmentedWeightsRoundTripAndEachSegmentIsChecked) {
  for (const bool prefetch : {true, false}) {
    SCOPED_TRACE(prefetch ? "prefetch" : "no prefetch");
    EpcBudget budget(64 << 20);
    OnDemandWeights::Options options;
    options.prefetch = prefetch;
    auto store = OnDemandWeights::Create(&budget, [](size_t, std::span<uint8_t>) { return Status::Ok(); },
                                         options).value();
    std::vector<std::vector<std::byte>> weights;
    std::vector<uint64_t> handles;
    for (int i = 0; i < 6; ++i) {
      // 2.5 segments, 1 segment exactly, and a small one, twice.
      const size_t bytes = i % 3 == 0 ? OnDemandWeights::kSegmentBytes * 5 / 2
                           : i % 3 == 1 ? OnDemandWeights::kSegmentBytes : 4096;
      std::vector<std::byte> w(bytes);
      for (size_t k = 0; k < bytes; ++k) w[k] = std::byte((k * 31 + i * 7 + k / 4096) & 0xff);
      handles.push_back(store->Put("layer" + std::to_string(i), w).value());
      weights.push_back(std::move(w));
    }
    for (int run = 0; run < 3; ++run) {
      ASSERT_TRUE(store->BeginRun(handles).ok());
      for (size_t i = 0; i < handles.size(); ++i) {
        const std::byte* p = store->Acquire(handles[i]).value();
        EXPECT_EQ(std::memcmp(p, weights[i].data(), weights[i].size()), 0) << "layer" << i;
        store->Release(handles[i]);
      }
      store->EndRun();
    }
    std::vector<std::byte> whole(weights[3].size());
    ASSERT_TRUE(store->Get(handles[3], whole).ok());
    EXPECT_EQ(whole, weights[3]);

    const auto run_fails_at = [&](size_t bad) {
      ASSERT_TRUE(store->BeginRun(handles).ok());
      for (size_t i = 0; i < bad; ++i) {
        ASSERT_TRUE(store->Acquire(handles[i]).ok());
        store->Release(handles[i]);
      }
      Result<const std::byte*> got = store->Acquire(handles[bad]);
      ASSERT_FALSE(got.ok());
      EXPECT_EQ(got.status().code(), StatusCode::kDataLoss);
      EXPECT_NE(got.status().message().find("layer" + std::to_string(bad)), std::string::npos);
      store->EndRun();
    };
    store->CorruptForTesting(handles[3], 2);
    run_fails_at(3);
    store->SwapSegmentsForTesting(handles[0], 0, 1);
    run_fails_at(0);
  }
}

// Holding more layers at once than the pool takes is an error, not a wait
// (only the engine's own Release could make room).
TEST(OnDemandWeightsTest, APoolTooSmallForTheLayersHeldIsAnError) {
  for (const bool prefetch : {true, false}) {
    SCOPED_TRACE(prefetch ? "prefetch" : "no prefetch");
    EpcBudget budget(1 << 20);
    OnDemandWeights::Options options;
    options.pool_bytes = 128 * 1024;
    options.prefetch = prefetch;
    auto store = OnDemandWeights::Create(&budget, [](size_t, std::span<uint8_t>) { return Status::Ok(); },
                                         options).value();
    std::vector<uint64_t> handles;
    for (int i = 0; i < 2; ++i) {
      handles.push_back(store->Put("layer" + std::to_string(i), std::vector<std::byte>(100000)).value());
    }
    ASSERT_TRUE(store->BeginRun(handles).ok());
    ASSERT_TRUE(store->Acquire(handles[0]).ok());
    Result<const std::byte*> second = store->Acquire(handles[1]);
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().code(), StatusCode::kInternal);
    EXPECT_NE(second.status().message().find("pool is full"), std::string::npos) << second.status().ToString();
    store->Release(handles[0]);
    store->EndRun();
  }
}

}  // namespace
}  // namespace ppml::enclave
