// The simulated enclave: the trusted inside of a worker (Privado +
// Occlumency in DESIGN.md). Its ecall interface is narrow and copies every
// buffer in and out, as SGX marshalling does; no pointer into enclave memory
// leaves it:
//
//   Provision  (ecall)  new HPKE service key pair, sealed to the enclave's
//                       code identity; plus an attestation document for it
//   Create     (ecall)  unseal the keys, open the model package (unwrap the
//                       model key, verify and decrypt the graph), load the
//                       model resident or with on-demand weights
//   Attest     (ecall)  attestation document for the client's nonce
//   InferBatch (ecall)  EHBP-encrypted KServe v2 requests in, encrypted
//                       replies out, one reply per request
//
// Identities: the *base* measurement covers the code version and the
// security-relevant config (what SGX's MRENCLAVE covers); keys are sealed to
// it, and model owners seal packages to an enclave attested with it. The
// *serving* measurement adds the model package's manifest hash; it is what
// quotes carry once a model is loaded (SGX would carry it in CONFIGID).
//
// Memory: everything inside (weights, activations, scratch, requests) is
// accounted against the EPC budget; past it, loading or that request fails
// with ResourceExhausted, and memory() reports the peak.
//
// Thread safety: InferBatch runs one batch at a time (one engine thread);
// Attest and the accessors may be called from other threads.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "accel/outsource.h"
#include "common/crypto.h"
#include "common/status.h"
#include "enclave_sim/attestation.h"
#include "enclave_sim/epc.h"
#include "engine/engine.h"

namespace ppml::enclave {

inline constexpr std::string_view kEnclaveCodeVersion = "ppml-enclave 0.1.0";
inline constexpr std::string_view kPlatformSecretFile = "platform.secret";
inline constexpr std::string_view kPlatformKeyFile = "platform.key.pem";
inline constexpr std::string_view kPlatformPublicKeyFile = "platform.pub.pem";

// The simulated platform services: the sealing root (SGX: EGETKEY) and the
// quoting key (SGX: the quoting enclave's attestation key).
struct Platform {
  crypto::SecretBytes secret;  // 32 bytes
  crypto::EvpPkeyPtr signing_key;
  SignerId signer_id{};        // who built the enclave (SGX: MRSIGNER)
  // platform.secret and platform.key.pem from a `ppml keygen platform` folder.
  static Result<Platform> Load(const std::string& dir);
};

enum class WeightMode {
  kAuto,      // on demand when the model's weights would not fit the budget
  kResident,  // all weights decrypted into enclave memory once
  kOnDemand,  // weights stay encrypted outside, streamed per layer
};
Result<WeightMode> ParseWeightMode(std::string_view text);  // auto | resident | on-demand
std::string_view WeightModeName(WeightMode mode);

// The measured config entry that lets the enclave take plaintext KServe
// requests (development, and measuring what encryption costs): part of the
// measurement, so a client's attestation shows whether it is on.
inline constexpr std::string_view kAllowPlaintextEntry = "allow_plaintext=true";

struct EnclaveConfig {
  std::vector<std::string> security_config;  // extra measured "key=value" entries (kAllowPlaintextEntry among them)
  size_t memory_budget_bytes = kDefaultEpcBudgetBytes;
  WeightMode weights = WeightMode::kAuto;
  // A helper thread decrypting on-demand weights ahead of their layer; unset:
  // only when the machine has a core beyond the engine's threads (otherwise
  // it slows the kernels, and each layer's weights are decrypted when it
  // runs, on the engine's threads).
  std::optional<bool> prefetch;
  int threads = 0;  // 0: the process default (one per core)
  size_t replay_window = size_t{1} << 16;   // encapsulated keys remembered
  size_t max_request_bytes = size_t{64} << 20;
  // Verified outsourcing of the linear layers to ppml-accel (accel/); off
  // keeps them inside. Measured (an "outsource=MODE" entry); refused for a
  // package marked confidential. Its engine, threads and confidential
  // fields are set by Create.
  accel::OutsourceOptions outsource;
};

// An encrypted request as the worker hands it in.
struct SealedRequest {
  std::string request_id;
  std::string encapsulated_key;       // the Ehbp-Encapsulated-Key header value; empty: a
                                      // plaintext request (refused 403 unless kAllowPlaintextEntry)
  crypto::Bytes body;                 // EHBP frames
  std::optional<size_t> json_length;  // Inference-Header-Content-Length of the plaintext, if binary
};

struct SealedReply {
  std::string request_id;
  int http_status = 200;
  // Set when the body is encrypted (a result or an error the client can read);
  // empty when the request could not be decrypted: the body is then a
  // plaintext {"error": ...} that reveals nothing of the request.
  std::string response_nonce;
  crypto::Bytes body;
  std::optional<size_t> json_length;  // of the plaintext reply, when it carries binary tensors
};

struct ProvisionResult {
  crypto::Bytes sealed_keys;         // for the host to store; only this enclave unseals it
  std::string attestation_json;      // AttestationDocument over the base measurement
  Measurement base_measurement{};
};

struct EnclaveStats {
  EpcReport memory;
  bool on_demand = false;
  size_t arena_bytes = 0;  // activations and on-demand weight slots, of the last plan built
  bool prefetch = false;  // a helper thread decrypts on-demand weights ahead
  size_t streamed_bytes_per_run = 0;
  size_t resident_weight_bytes = 0;
  int64_t plans_built = 0;  // engine plans built since load (see engine::ModelStats)
  std::optional<accel::OutsourceStats> outsource;  // when layers are outsourced
};

class Enclave {
 public:
  // ecall: a fresh service key pair sealed to the base measurement, and an
  // attestation document for `nonce` that a model owner verifies before sealing.
  static Result<ProvisionResult> Provision(const EnclaveConfig& config, const Platform& platform, ByteSpan nonce);
  // The base measurement of an enclave with this config (no model).
  static Result<Measurement> BaseMeasurement(const EnclaveConfig& config);

  // ecall: init. `package` is the model package in host memory: the enclave
  // copies in and decrypts one chunk at a time and keeps the pointer for
  // on-demand loading.
  static Result<std::unique_ptr<Enclave>> Create(const EnclaveConfig& config, const Platform& platform,
                                                 ByteSpan sealed_keys, std::shared_ptr<const crypto::Bytes> package);
  ~Enclave();

  // ecall: AttestationDocument JSON over the serving measurement.
  Result<std::string> Attest(ByteSpan nonce) const;
  // ecall: one reply per request, in order. A request that fails (does not
  // decrypt, is replayed, malformed, does not match the model) gets its own
  // error reply; the others in the batch are unaffected.
  std::vector<SealedReply> InferBatch(std::span<const SealedRequest> requests);

  const Measurement& measurement() const { return measurement_; }
  const Measurement& base_measurement() const { return base_measurement_; }
  crypto::Bytes public_key() const { return public_key_; }
  const std::string& model_name() const;
  // The model's inputs (names, types, shapes; -1 for a symbolic dimension)
  // and whether it runs INT8: what clients may know of it (GET /v2/models/{m}).
  std::vector<engine::TensorInfo> inputs() const;
  std::vector<engine::TensorInfo> outputs() const;
  bool quantized() const;
  EnclaveStats stats() const;
  // HPKE key config for GET /.well-known/hpke-keys (RFC 9458 §3: one config,
  // key id, KEM 0x0020, key, suites length 4, KDF 0x0001, AEAD 0x0002).
  crypto::Bytes HpkeKeyConfig() const;

 private:
  struct Impl;
  explicit Enclave(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  Measurement measurement_{}, base_measurement_{};
  crypto::Bytes public_key_;
};

}  // namespace ppml::enclave
