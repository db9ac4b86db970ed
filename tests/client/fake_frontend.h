// FakeFrontend: the front-end's HTTP contract (GET /v2/attestation,
// GET /v2/models/{m}, POST /v2/models/{m}/infer) served by a TestServer
// handler, with a software "enclave" behind it: a platform key signs quotes
// for the client's nonce, an X25519 key decrypts requests (EHBP), tiny models
// answer them, replies are encrypted back. It lets the C++ client, `ppml
// infer`/`ppml attest` and the Python client be tested end to end before and
// without the real front-end, and it can misbehave on purpose (attacks).
//
// Models (KServe metadata as the real front-end serves it):
//   "double"  input "x" FP32 [-1, 4]  -> output "y" FP32 [-1, 4] = 2x
//   "image"   input "image" FP32 [-1, 1, 28, 28] -> output "mean" FP32 [-1, 1]
//             (mean pixel) and "scores" FP32 [-1, 10], one-hot at
//             floor(mean * 10) (clamped to 9)
//   "bytes"   input "b" UINT8 [-1, 3] -> output "sum" INT64 [-1, 1]
//
// Error replies follow the enclave: a body that does not decrypt 400 and a
// replayed encapsulated key 409, both plaintext {"error"}; a malformed request
// or unknown model input 400 encrypted; an unknown model 404 plaintext.
//
// Thread safety: Handle may be called from several connection threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "common/crypto.h"
#include "enclave_sim/attestation.h"
#include "tests/client/test_server.h"

namespace ppml::client::testing {

enum class Attack {
  kNone,
  kReplayedNonce,     // the document answers another (old) nonce
  kOtherPlatform,     // the quote is signed by another platform key
  kKeySwap,           // the document carries a key other than the one the quote binds
  kStaleQuote,        // the quote is an hour old
  kPlaintextReply,    // a 200 reply without encryption
  kTamperedReply,     // one ciphertext byte of the reply flipped
  kWrongMeasurement,  // a validly signed quote for another measurement
  kOtherModel,        // the encrypted reply comes from another model's enclave holding the same key
};

class FakeFrontend {
 public:
  static Result<std::unique_ptr<FakeFrontend>> Create();

  TestReply Handle(const TestRequest& request);
  TestServer::Handler Handler() {
    return [this](const TestRequest& request) { return Handle(request); };
  }

  void set_attack(Attack attack) { attack_.store(attack); }
  std::string platform_public_key_pem() const { return platform_public_pem_; }
  std::string measurement_hex() const { return crypto::ToHex(measurement_); }
  const crypto::Bytes& enclave_public_key() const { return enclave_keys_.public_key; }
  int inferences() const { return inferences_.load(); }

 private:
  FakeFrontend() = default;
  TestReply Attest(const TestRequest& request);
  TestReply Metadata(const std::string& model);
  TestReply Infer(const TestRequest& request, const std::string& model);

  crypto::EvpPkeyPtr platform_key_;
  crypto::EvpPkeyPtr other_platform_key_;
  std::string platform_public_pem_;
  enclave::Measurement measurement_{};
  crypto::X25519KeyPair enclave_keys_;
  crypto::X25519KeyPair other_keys_;
  std::atomic<Attack> attack_{Attack::kNone};
  std::atomic<int> inferences_{0};
  std::mutex mutex_;
  std::set<std::string> seen_encapsulated_keys_;
};

}  // namespace ppml::client::testing
