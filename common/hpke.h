// HPKE (RFC 9180), base mode, for one KEM and KDF: DHKEM(X25519, HKDF-SHA256)
// (kem_id 0x0020) and HKDF-SHA256 (kdf_id 0x0001), with AES-256-GCM
// (aead_id 0x0002, what the service uses) or AES-128-GCM (0x0001, kept so the
// RFC's Appendix A.1 vectors can be checked byte for byte).
//
// OpenSSL 3.0 has no HPKE API; this composes it from common/crypto.h exactly
// as RFC 9180 §4 (labeled HKDF, DHKEM Encap/Decap, KeySchedule), §5.2
// (Seal/Open with nonce = base_nonce XOR big-endian sequence number) and
// §5.3 (Export) say. DeriveResponseKeys adds the OHTTP/EHBP response-key
// derivation of RFC 9458 §4.4.
//
//   Client (sender)                             Enclave (receiver)
//   enc, ctx = SetupBaseS(pkR, info)
//   ct = ctx.Seal(aad, request)  --- enc, ct -->  ctx = SetupBaseR(enc, skR, info)
//                                                request = ctx.Open(aad, ct)
//   keys = DeriveResponseKeys(ctx, enc, nonce) <-- nonce, AesGcmSeal(keys, reply)
//
// Thread safety: the free functions may be called from any thread. A
// context is a value with a sequence number that Seal/Open advance: use
// each one from one thread at a time (Export is const).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "common/crypto.h"
#include "common/status.h"

namespace ppml::hpke {

using crypto::Bytes;
using crypto::ByteSpan;
using crypto::SecretBytes;

inline constexpr uint16_t kKemX25519HkdfSha256 = 0x0020;
inline constexpr uint16_t kKdfHkdfSha256 = 0x0001;

enum class Aead : uint16_t {
  kAes128Gcm = 0x0001,
  kAes256Gcm = 0x0002,
};

inline constexpr size_t kEncLength = 32;        // Nenc: the encapsulated key, pkE
inline constexpr size_t kPublicKeyLength = 32;  // Npk
inline constexpr size_t kPrivateKeyLength = 32; // Nsk
inline constexpr size_t kNonceLength = 12;      // Nn, both AEADs
inline constexpr size_t kTagLength = 16;        // Nt, both AEADs
inline constexpr size_t kHashLength = 32;       // Nh of HKDF-SHA256
size_t KeyLength(Aead aead);                    // Nk: 16 or 32

// The RFC 9458 §4.4 exporter context for response keys.
inline constexpr std::string_view kOhttpResponseLabel = "message/bhttp response";

// What the sender and receiver contexts share: the key schedule's outputs
// and the sequence number.
class Context {
 public:
  // Move-only: a copy would reuse (key, nonce) pairs.
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  Context(Context&&) = default;
  Context& operator=(Context&&) = default;

  Aead aead() const { return aead_; }
  uint64_t sequence() const { return sequence_; }

  // RFC 9180 §5.3: LabeledExpand(exporter_secret, "sec", exporter_context, L),
  // L at most 255 * 32.
  Result<SecretBytes> Export(ByteSpan exporter_context, size_t length) const;

  // Key-schedule outputs, for tests against published vectors. Never log them.
  const SecretBytes& key() const { return key_; }
  const Bytes& base_nonce() const { return base_nonce_; }
  const SecretBytes& exporter_secret() const { return exporter_secret_; }
  // Jumps the sequence number (tests of the RFC's seq 255/256 vectors and of overflow).
  void set_sequence_for_testing(uint64_t sequence) { sequence_ = sequence; }

 protected:
  Context(Aead aead, SecretBytes key, Bytes base_nonce, SecretBytes exporter_secret)
      : aead_(aead), key_(std::move(key)), base_nonce_(std::move(base_nonce)),
        exporter_secret_(std::move(exporter_secret)) {}
  // base_nonce XOR I2OSP(seq, Nn), or ResourceExhausted once the sequence
  // number is spent (it is 64-bit here: stricter than the RFC's 2^96 - 1).
  Result<Bytes> CurrentNonce() const;

  Aead aead_;
  SecretBytes key_;
  Bytes base_nonce_;
  SecretBytes exporter_secret_;
  uint64_t sequence_ = 0;
};

class SenderContext : public Context {
 public:
  // Encrypts one message; the sequence number advances only on success.
  Result<Bytes> Seal(ByteSpan aad, ByteSpan plaintext);

 private:
  friend class ContextBuilder;
  SenderContext(Aead aead, SecretBytes key, Bytes base_nonce, SecretBytes exporter_secret)
      : Context(aead, std::move(key), std::move(base_nonce), std::move(exporter_secret)) {}
};

class ReceiverContext : public Context {
 public:
  // Decrypts the next message; DataLoss when it does not authenticate (the
  // sequence number does not advance then).
  Result<Bytes> Open(ByteSpan aad, ByteSpan ciphertext);

 private:
  friend class ContextBuilder;
  ReceiverContext(Aead aead, SecretBytes key, Bytes base_nonce, SecretBytes exporter_secret)
      : Context(aead, std::move(key), std::move(base_nonce), std::move(exporter_secret)) {}
};

struct SenderSetup {
  Bytes enc;  // the encapsulated key (pkE), 32 bytes, sent to the receiver
  SenderContext context;
};

// RFC 9180 §5.1.1 SetupBaseS. `fixed_ephemeral_private_key` (32 bytes) is for
// test vectors only; empty (the default) draws a fresh ephemeral key.
Result<SenderSetup> SetupBaseS(ByteSpan recipient_public_key, ByteSpan info, Aead aead = Aead::kAes256Gcm,
                               ByteSpan fixed_ephemeral_private_key = {});
// RFC 9180 §5.1.1 SetupBaseR. InvalidArgument for a malformed or low-order enc.
// A receiver of many messages keeps its key loaded (see X25519PrivateKey);
// the raw form loads it for one call.
Result<ReceiverContext> SetupBaseR(ByteSpan enc, const crypto::X25519PrivateKey& recipient_private_key,
                                   ByteSpan info, Aead aead = Aead::kAes256Gcm);
Result<ReceiverContext> SetupBaseR(ByteSpan enc, ByteSpan recipient_private_key, ByteSpan info,
                                   Aead aead = Aead::kAes256Gcm);

// RFC 9458 §4.4 response keys. The response nonce is random, of
// ResponseNonceLength(aead) = max(Nn, Nk) bytes, and sent with the reply.
//
//   secret = context.Export(export_label, max(Nn, Nk))
//   salt   = enc || response_nonce
//   prk    = Extract(salt, secret)
//   key    = Expand(prk, "key", Nk)
//   nonce  = Expand(prk, "nonce", Nn)
//
// The reply is then AesGcmSeal(key, nonce, aad = "", body) for OHTTP.
struct ResponseKeys {
  SecretBytes key;
  Bytes nonce;
};
size_t ResponseNonceLength(Aead aead);
Result<ResponseKeys> DeriveResponseKeys(const Context& context, ByteSpan enc, ByteSpan response_nonce,
                                        std::string_view export_label = kOhttpResponseLabel);

// The RFC 9180 steps, exposed for tests against the RFC's intermediate values.
namespace internal {
// "KEM" || I2OSP(0x0020, 2)
Bytes KemSuiteId();
// "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2)
Bytes HpkeSuiteId(Aead aead);
Result<SecretBytes> LabeledExtract(ByteSpan suite_id, ByteSpan salt, std::string_view label, ByteSpan ikm);
Result<SecretBytes> LabeledExpand(ByteSpan suite_id, ByteSpan prk, std::string_view label, ByteSpan info,
                                  size_t length);
// RFC 9180 §7.1.3 DeriveKeyPair for X25519: the private key from ikm.
Result<crypto::X25519KeyPair> DeriveKeyPair(ByteSpan ikm);
struct Encapsulation {
  SecretBytes shared_secret;
  Bytes enc;
};
Result<Encapsulation> Encap(ByteSpan recipient_public_key, const crypto::X25519PrivateKey& ephemeral);
Result<SecretBytes> Decap(ByteSpan enc, const crypto::X25519PrivateKey& recipient);
// mode_base || LabeledExtract("", "psk_id_hash", "") || LabeledExtract("", "info_hash", info)
Result<Bytes> KeyScheduleContext(Aead aead, ByteSpan info);
}  // namespace internal

}  // namespace ppml::hpke
