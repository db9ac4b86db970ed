// The enclave's ecalls end to end with the real crypto and the real engine:
// provisioning, attestation, sealed keys across measurements, encrypted
// KServe requests (round trip and every failure, each isolated in its batch),
// the EPC budget, and on-demand weights matching resident ones bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <tuple>

#include "common/ehbp.h"
#include "common/kserve.h"
#include "enclave_sim/enclave.h"
#include "enclave_sim/package.h"
#include "enclave_sim/weight_store.h"
#include "engine/engine.h"
#include "engine/uint8_input.h"

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

  explicit Served(EnclaveConfig c = {}, const crypto::Bytes& model = ReadModel()) : config(std::move(c)) {
    provisioned = Enclave::Provision(config, platform, kNonce).value();
    const AttestationDocument doc = AttestationDocumentFromJson(provisioned.attestation_json).value();
    package = std::make_shared<crypto::Bytes>(SealModel(model, "fashion", doc.enclave_public_key).value());
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

// A model that takes pixels (engine/uint8_input.h): UINT8 requests, JSON
// and binary, decrypt into its u8 input and answer what the float model
// answers on pixel / 255.
TEST(EnclaveTest, PixelsForAUint8InputModelMatchTheFloatModel) {
  const crypto::Bytes fp32 = ReadModel();
  auto u8 = engine::WithUint8Input(std::string_view(reinterpret_cast<const char*>(fp32.data()), fp32.size()), {});
  ASSERT_TRUE(u8.ok()) << u8.status().ToString();
  Served s({}, crypto::Bytes(u8->begin(), u8->end()));
  ASSERT_TRUE(s.enclave);
  Tensor pixels(DataType::kU8, {3, 1, 28, 28});
  Tensor floats(DataType::kF32, pixels.shape());
  for (int64_t i = 0; i < pixels.element_count(); ++i) {
    pixels.data<uint8_t>()[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
    floats.data<float>()[i] = pixels.data<uint8_t>()[i] / 255.0f;
  }
  std::vector<ClientRequest> clients;
  clients.push_back(Encrypt(s.enclave->public_key(), "json", pixels, false));
  clients.push_back(Encrypt(s.enclave->public_key(), "binary", pixels, true));
  std::vector<SealedRequest> batch = {clients[0].sealed, clients[1].sealed};
  const std::vector<SealedReply> replies = s.enclave->InferBatch(batch);
  ASSERT_EQ(replies.size(), 2u);
  const Tensor want = PlainLogits(floats);
  for (size_t r = 0; r < 2; ++r) {
    const Tensor got = DecryptLogits(clients[r], replies[r]);
    ASSERT_EQ(got.shape(), want.shape());
    for (int64_t i = 0; i < want.element_count(); ++i) EXPECT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-4);
  }
}

// Binary inputs are decrypted frame by frame straight into the stacked
// batch; a request whose data frames fail to authenticate only once the run
// is writing its rows fails alone, and its neighbours' rows are untouched.
TEST(EnclaveTest, ALateTamperedFrameFailsOnlyItsRequestInAStackedBatch) {
  Served s;
  ASSERT_TRUE(s.enclave);
  const crypto::Bytes& pk = s.enclave->public_key();
  const Tensor first = Images(2, 1.f), second = Images(1, 0.25f), third = Images(3, 0.75f);
  auto encrypt_in_small_frames = [&](const std::string& id, const Tensor& images) {
    kserve::InferRequest request;
    request.id = id;
    request.inputs.push_back({"input", images.Clone()});
    kserve::EncodedBody body = kserve::EncodeInferRequest(request, true).value();
    ehbp::EncryptedRequest encrypted = ehbp::EncryptRequest(pk, body.body, /*chunk_size=*/300).value();
    return ClientRequest{{id, encrypted.encapsulated_key_header_value, encrypted.body, body.json_length},
                         std::move(encrypted.client_state)};
  };
  ClientRequest a = encrypt_in_small_frames("a", first);
  ClientRequest tampered = encrypt_in_small_frames("tampered", second);
  ClientRequest c = encrypt_in_small_frames("c", third);
  // A byte of the last frame: far past the JSON, inside the image data.
  tampered.sealed.body[tampered.sealed.body.size() - 20] ^= 1;
  std::vector<SealedRequest> batch = {a.sealed, tampered.sealed, c.sealed};
  const std::vector<SealedReply> replies = s.enclave->InferBatch(batch);
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[1].http_status, 400);
  EXPECT_TRUE(replies[1].response_nonce.empty());
  const std::string error(replies[1].body.begin(), replies[1].body.end());
  EXPECT_NE(error.find("does not decrypt"), std::string::npos) << error;
  for (auto [client, reply, images] : {std::tuple{&a, &replies[0], &first}, std::tuple{&c, &replies[2], &third}}) {
    const Tensor got = DecryptLogits(*client, *reply), want = PlainLogits(*images);
    ASSERT_EQ(got.shape(), want.shape());
    for (int64_t i = 0; i < want.element_count(); ++i) EXPECT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-4);
  }
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

// Both ways of filling the weight slots in the arena: when each layer runs,
// and one layer ahead on the helper thread (slots then kept apart from the
// activations of the layer before, which a wrong plan would corrupt).
TEST(EnclaveTest, OnDemandWeightsGiveBitIdenticalOutputsWithinTheBudget) {
  EnclaveConfig resident_config;
  resident_config.weights = WeightMode::kResident;
  Served resident(resident_config);
  ASSERT_TRUE(resident.enclave);
  EXPECT_FALSE(resident.enclave->stats().on_demand);
  for (const bool prefetch : {false, true}) {
    SCOPED_TRACE(prefetch ? "prefetch" : "no prefetch");
    EnclaveConfig on_demand_config;
    on_demand_config.weights = WeightMode::kOnDemand;
    on_demand_config.memory_budget_bytes = 4 << 20;
    on_demand_config.prefetch = prefetch;
    Served on_demand(on_demand_config);
    ASSERT_TRUE(on_demand.enclave);
    const EnclaveStats stats = on_demand.enclave->stats();
    EXPECT_TRUE(stats.on_demand);
    EXPECT_EQ(stats.prefetch, prefetch);
    EXPECT_GT(stats.streamed_bytes_per_run, 0u);
    for (int round = 0; round < 4; ++round) {
      const Tensor images = Images(4, 0.25f * (round + 1));
      ClientRequest r1 = Encrypt(resident.enclave->public_key(), "r", images, true);
      ClientRequest r2 = Encrypt(on_demand.enclave->public_key(), "o", images, true);
      std::vector<SealedRequest> b1 = {r1.sealed}, b2 = {r2.sealed};
      const Tensor a = DecryptLogits(r1, resident.enclave->InferBatch(b1)[0]);
      const Tensor b = DecryptLogits(r2, on_demand.enclave->InferBatch(b2)[0]);
      ExpectSameBits(a, b);
    }
    const EnclaveStats after = on_demand.enclave->stats();
    EXPECT_GT(after.arena_bytes, 0u);
    EXPECT_LE(after.memory.peak_bytes, after.memory.budget_bytes);
    EXPECT_LT(after.memory.peak_bytes, resident.enclave->stats().memory.peak_bytes);
  }
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

// Slots for a run of stored weights, one arena as the engine would lay it out.
struct Slots {
  explicit Slots(const std::vector<std::pair<uint64_t, size_t>>& weights) {
    size_t total = 0;
    for (const auto& w : weights) total += w.second;
    arena.resize(total);
    size_t offset = 0;
    for (const auto& [handle, bytes] : weights) {
      order.push_back({handle, std::span<std::byte>(arena).subspan(offset, bytes)});
      offset += bytes;
    }
  }
  std::vector<std::byte> arena;
  std::vector<engine::WeightStore::Slot> order;
};

TEST(OnDemandWeightsTest, StreamsInOrderAndCatchesHostTampering) {
  auto store = OnDemandWeights::Create([](size_t, std::span<uint8_t>) { return Status::Ok(); }, {}).value();
  std::vector<std::pair<uint64_t, size_t>> weights;
  for (int i = 0; i < 5; ++i) {
    std::vector<std::byte> w(100000 + i * 1000, std::byte(i + 1));
    weights.push_back({store->Put("layer" + std::to_string(i), w).value(), w.size()});
  }
  Slots slots(weights);
  for (int run = 0; run < 2; ++run) {
    std::fill(slots.arena.begin(), slots.arena.end(), std::byte(0));
    ASSERT_TRUE(store->BeginRun(slots.order).ok());
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(store->Acquire(weights[i].first).ok());
      const std::span<std::byte> p = slots.order[i].bytes;
      EXPECT_EQ(p.front(), std::byte(i + 1));
      EXPECT_EQ(p.back(), std::byte(i + 1));
    }
    store->EndRun();
  }
  store->CorruptForTesting(weights[3].first);
  ASSERT_TRUE(store->BeginRun(slots.order).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store->Acquire(weights[i].first).ok());
  const Status bad = store->Acquire(weights[3].first);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.message().find("layer3"), std::string::npos);
  store->EndRun();
}

// Weights over a segment: every byte comes back, in both modes, however the
// threads share the segments; a segment altered or swapped with another
// fails the layer's check.
TEST(OnDemandWeightsTest, SegmentedWeightsRoundTripAndEachSegmentIsChecked) {
  for (const bool prefetch : {true, false}) {
    SCOPED_TRACE(prefetch ? "prefetch" : "no prefetch");
    OnDemandWeights::Options options;
    options.prefetch = prefetch;
    auto store = OnDemandWeights::Create([](size_t, std::span<uint8_t>) { return Status::Ok(); }, options).value();
    EXPECT_EQ(store->lookahead(), prefetch ? 1 : 0);
    std::vector<std::vector<std::byte>> weights;
    std::vector<std::pair<uint64_t, size_t>> handles;
    for (int i = 0; i < 6; ++i) {
      // 2.5 segments, 1 segment exactly, and a small one, twice.
      const size_t bytes = i % 3 == 0 ? OnDemandWeights::kSegmentBytes * 5 / 2
                           : i % 3 == 1 ? OnDemandWeights::kSegmentBytes : 4096;
      std::vector<std::byte> w(bytes);
      for (size_t k = 0; k < bytes; ++k) w[k] = std::byte((k * 31 + i * 7 + k / 4096) & 0xff);
      handles.push_back({store->Put("layer" + std::to_string(i), w).value(), bytes});
      weights.push_back(std::move(w));
    }
    Slots slots(handles);
    for (int run = 0; run < 3; ++run) {
      std::fill(slots.arena.begin(), slots.arena.end(), std::byte(0));
      ASSERT_TRUE(store->BeginRun(slots.order).ok());
      for (size_t i = 0; i < handles.size(); ++i) {
        ASSERT_TRUE(store->Acquire(handles[i].first).ok());
        EXPECT_EQ(std::memcmp(slots.order[i].bytes.data(), weights[i].data(), weights[i].size()), 0) << "layer" << i;
      }
      store->EndRun();
    }
    std::vector<std::byte> whole(weights[3].size());
    ASSERT_TRUE(store->Get(handles[3].first, whole).ok());
    EXPECT_EQ(whole, weights[3]);

    const auto run_fails_at = [&](size_t bad) {
      ASSERT_TRUE(store->BeginRun(slots.order).ok());
      for (size_t i = 0; i < bad; ++i) ASSERT_TRUE(store->Acquire(handles[i].first).ok());
      const Status got = store->Acquire(handles[bad].first);
      ASSERT_FALSE(got.ok());
      EXPECT_EQ(got.code(), StatusCode::kDataLoss);
      EXPECT_NE(got.message().find("layer" + std::to_string(bad)), std::string::npos);
      store->EndRun();
    };
    store->CorruptForTesting(handles[3].first, 2);
    run_fails_at(3);
    store->SwapSegmentsForTesting(handles[0].first, 0, 1);
    run_fails_at(0);
  }
}

// The engine acquiring out of the announced order, past it, or with a slot
// of the wrong size is an error, not a wait or a write past the slot.
TEST(OnDemandWeightsTest, MisuseOfTheRunIsAnError) {
  auto store = OnDemandWeights::Create([](size_t, std::span<uint8_t>) { return Status::Ok(); }, {}).value();
  std::vector<std::pair<uint64_t, size_t>> weights;
  for (int i = 0; i < 2; ++i) {
    weights.push_back({store->Put("layer" + std::to_string(i), std::vector<std::byte>(1000)).value(), 1000});
  }
  Slots slots(weights);
  ASSERT_TRUE(store->BeginRun(slots.order).ok());
  Status out_of_order = store->Acquire(weights[1].first);
  EXPECT_EQ(out_of_order.code(), StatusCode::kInternal);
  EXPECT_NE(out_of_order.message().find("out of the announced order"), std::string::npos) << out_of_order.ToString();
  ASSERT_TRUE(store->Acquire(weights[0].first).ok());
  ASSERT_TRUE(store->Acquire(weights[1].first).ok());
  Status past = store->Acquire(weights[1].first);
  EXPECT_NE(past.message().find("past the announced order"), std::string::npos) << past.ToString();
  store->EndRun();

  Slots wrong({{weights[0].first, 999}});
  Status wrong_size = store->BeginRun(wrong.order);
  EXPECT_EQ(wrong_size.code(), StatusCode::kInternal);
  EXPECT_NE(wrong_size.message().find("layer0"), std::string::npos) << wrong_size.ToString();
}

}  // namespace
}  // namespace ppml::enclave
