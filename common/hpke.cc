#include "common/hpke.h"

#include <algorithm>
#include <array>
#include <initializer_list>
#include <string>

namespace ppml::hpke {
namespace {

constexpr uint8_t kModeBase = 0x00;
constexpr std::string_view kVersionLabel = "HPKE-v1";

// I2OSP(v, 2)
std::array<uint8_t, 2> U16(uint16_t v) { return {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)}; }
ByteSpan AsBytes(std::string_view text) { return {reinterpret_cast<const uint8_t*>(text.data()), text.size()}; }

// The concatenation of `parts`, sized once (no growth, so a SecretBytes
// target never leaves an unwiped copy behind).
template <typename Out>
Out Concat(std::initializer_list<ByteSpan> parts) {
  size_t total = 0;
  for (ByteSpan part : parts) total += part.size();
  Out out(total);
  size_t at = 0;
  for (ByteSpan part : parts) {
    std::copy(part.begin(), part.end(), out.data() + at);
    at += part.size();
  }
  return out;
}

bool IsSupported(Aead aead) { return aead == Aead::kAes128Gcm || aead == Aead::kAes256Gcm; }

// RFC 9180 §4 ExtractAndExpand for DHKEM(X25519, HKDF-SHA256).
Result<SecretBytes> ExtractAndExpand(ByteSpan dh, ByteSpan kem_context) {
  const Bytes suite_id = internal::KemSuiteId();
  PPML_ASSIGN_OR_RETURN(SecretBytes eae_prk, internal::LabeledExtract(suite_id, {}, "eae_prk", dh));
  return internal::LabeledExpand(suite_id, eae_prk.span(), "shared_secret", kem_context, kHashLength);
}

}  // namespace

// Builds contexts from a shared secret (RFC 9180 §5.1 KeySchedule, base mode).
class ContextBuilder {
 public:
  template <typename T>
  static Result<T> KeySchedule(Aead aead, ByteSpan shared_secret, ByteSpan info) {
    const Bytes suite_id = internal::HpkeSuiteId(aead);
    PPML_ASSIGN_OR_RETURN(Bytes context, internal::KeyScheduleContext(aead, info));
    // psk = "" in base mode.
    PPML_ASSIGN_OR_RETURN(SecretBytes secret, internal::LabeledExtract(suite_id, shared_secret, "secret", {}));
    PPML_ASSIGN_OR_RETURN(SecretBytes key,
                          internal::LabeledExpand(suite_id, secret.span(), "key", context, KeyLength(aead)));
    PPML_ASSIGN_OR_RETURN(SecretBytes base_nonce,
                          internal::LabeledExpand(suite_id, secret.span(), "base_nonce", context, kNonceLength));
    PPML_ASSIGN_OR_RETURN(SecretBytes exporter_secret,
                          internal::LabeledExpand(suite_id, secret.span(), "exp", context, kHashLength));
    return T(aead, std::move(key), base_nonce.Reveal(), std::move(exporter_secret));
  }
};

size_t KeyLength(Aead aead) {
  return aead == Aead::kAes128Gcm ? crypto::kAes128KeyLength : crypto::kAes256KeyLength;
}

size_t ResponseNonceLength(Aead aead) { return std::max(kNonceLength, KeyLength(aead)); }

// ---- RFC 9180 §4 ------------------------------------------------------------

namespace internal {

Bytes KemSuiteId() { return Concat<Bytes>({AsBytes("KEM"), U16(kKemX25519HkdfSha256)}); }

Bytes HpkeSuiteId(Aead aead) {
  return Concat<Bytes>(
      {AsBytes("HPKE"), U16(kKemX25519HkdfSha256), U16(kKdfHkdfSha256), U16(static_cast<uint16_t>(aead))});
}

// LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" || suite_id || label || ikm)
Result<SecretBytes> LabeledExtract(ByteSpan suite_id, ByteSpan salt, std::string_view label, ByteSpan ikm) {
  // The ikm may be a secret (the DH output): keep the concatenation wiped.
  SecretBytes labeled_ikm = Concat<SecretBytes>({AsBytes(kVersionLabel), suite_id, AsBytes(label), ikm});
  return crypto::HkdfSha256Extract(salt, labeled_ikm.span());
}

// LabeledExpand(prk, label, info, L) =
//   Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L)
Result<SecretBytes> LabeledExpand(ByteSpan suite_id, ByteSpan prk, std::string_view label, ByteSpan info,
                                  size_t length) {
  if (length > 0xFFFF) return Status::InvalidArgument("HPKE LabeledExpand: length over 65535");
  Bytes labeled_info =
      Concat<Bytes>({U16(static_cast<uint16_t>(length)), AsBytes(kVersionLabel), suite_id, AsBytes(label), info});
  return crypto::HkdfSha256Expand(prk, labeled_info, length);
}

// RFC 9180 §7.1.3: sk = LabeledExpand(LabeledExtract("", "dkp_prk", ikm), "sk", "", Nsk).
Result<crypto::X25519KeyPair> DeriveKeyPair(ByteSpan ikm) {
  const Bytes suite_id = KemSuiteId();
  PPML_ASSIGN_OR_RETURN(SecretBytes dkp_prk, LabeledExtract(suite_id, {}, "dkp_prk", ikm));
  crypto::X25519KeyPair pair;
  PPML_ASSIGN_OR_RETURN(pair.private_key, LabeledExpand(suite_id, dkp_prk.span(), "sk", {}, kPrivateKeyLength));
  PPML_ASSIGN_OR_RETURN(pair.public_key, crypto::X25519PublicFromPrivate(pair.private_key.span()));
  return pair;
}

// Encap: dh = DH(skE, pkR); enc = pkE; kem_context = enc || pkR;
// shared_secret = ExtractAndExpand(dh, kem_context).
Result<Encapsulation> Encap(ByteSpan recipient_public_key, const crypto::X25519PrivateKey& ephemeral) {
  if (recipient_public_key.size() != kPublicKeyLength) {
    return Status::InvalidArgument("HPKE Encap: recipient public key must be 32 bytes, got " +
                                   std::to_string(recipient_public_key.size()));
  }
  PPML_ASSIGN_OR_RETURN(SecretBytes dh, ephemeral.Agree(recipient_public_key));
  Encapsulation out;
  out.enc = ephemeral.public_key();
  Bytes kem_context = Concat<Bytes>({out.enc, recipient_public_key});
  PPML_ASSIGN_OR_RETURN(out.shared_secret, ExtractAndExpand(dh.span(), kem_context));
  return out;
}

// Decap: pkE = enc; dh = DH(skR, pkE); kem_context = enc || pk(skR).
Result<SecretBytes> Decap(ByteSpan enc, const crypto::X25519PrivateKey& recipient) {
  if (enc.size() != kEncLength) {
    return Status::InvalidArgument("HPKE Decap: enc must be 32 bytes, got " + std::to_string(enc.size()));
  }
  PPML_ASSIGN_OR_RETURN(SecretBytes dh, recipient.Agree(enc));
  Bytes kem_context = Concat<Bytes>({enc, recipient.public_key()});
  return ExtractAndExpand(dh.span(), kem_context);
}

Result<Bytes> KeyScheduleContext(Aead aead, ByteSpan info) {
  const Bytes suite_id = HpkeSuiteId(aead);
  PPML_ASSIGN_OR_RETURN(SecretBytes psk_id_hash, LabeledExtract(suite_id, {}, "psk_id_hash", {}));
  PPML_ASSIGN_OR_RETURN(SecretBytes info_hash, LabeledExtract(suite_id, {}, "info_hash", info));
  const uint8_t mode[1] = {kModeBase};
  return Concat<Bytes>({mode, psk_id_hash.span(), info_hash.span()});
}

}  // namespace internal

// ---- RFC 9180 §5 -------------------------------------------------------------

Result<SenderSetup> SetupBaseS(ByteSpan recipient_public_key, ByteSpan info, Aead aead,
                               ByteSpan fixed_ephemeral_private_key) {
  if (!IsSupported(aead)) return Status::Unsupported("HPKE: unsupported aead id");
  PPML_ASSIGN_OR_RETURN(crypto::X25519PrivateKey ephemeral,
                        fixed_ephemeral_private_key.empty()
                            ? crypto::X25519PrivateKey::Generate()
                            : crypto::X25519PrivateKey::FromRaw(fixed_ephemeral_private_key));
  PPML_ASSIGN_OR_RETURN(internal::Encapsulation encap, internal::Encap(recipient_public_key, ephemeral));
  PPML_ASSIGN_OR_RETURN(SenderContext context,
                        ContextBuilder::KeySchedule<SenderContext>(aead, encap.shared_secret.span(), info));
  return SenderSetup{std::move(encap.enc), std::move(context)};
}

Result<ReceiverContext> SetupBaseR(ByteSpan enc, const crypto::X25519PrivateKey& recipient_private_key,
                                   ByteSpan info, Aead aead) {
  if (!IsSupported(aead)) return Status::Unsupported("HPKE: unsupported aead id");
  PPML_ASSIGN_OR_RETURN(SecretBytes shared_secret, internal::Decap(enc, recipient_private_key));
  return ContextBuilder::KeySchedule<ReceiverContext>(aead, shared_secret.span(), info);
}

Result<ReceiverContext> SetupBaseR(ByteSpan enc, ByteSpan recipient_private_key, ByteSpan info, Aead aead) {
  PPML_ASSIGN_OR_RETURN(crypto::X25519PrivateKey key, crypto::X25519PrivateKey::FromRaw(recipient_private_key));
  return SetupBaseR(enc, key, info, aead);
}

Result<Bytes> Context::CurrentNonce() const {
  // Sequence numbers 0 .. 2^64 - 2 are usable; the last value marks the end.
  if (sequence_ == UINT64_MAX) {
    return Status::ResourceExhausted("HPKE: message limit reached (sequence number overflow)");
  }
  Bytes nonce = base_nonce_;
  for (size_t i = 0; i < 8; ++i) {
    nonce[kNonceLength - 1 - i] ^= static_cast<uint8_t>(sequence_ >> (8 * i));
  }
  return nonce;
}

Result<SecretBytes> Context::Export(ByteSpan exporter_context, size_t length) const {
  if (length == 0 || length > 255 * kHashLength) {
    return Status::InvalidArgument("HPKE Export: length must be 1..8160, got " + std::to_string(length));
  }
  return internal::LabeledExpand(internal::HpkeSuiteId(aead_), exporter_secret_.span(), "sec", exporter_context,
                                 length);
}

Result<Bytes> SenderContext::Seal(ByteSpan aad, ByteSpan plaintext) {
  PPML_ASSIGN_OR_RETURN(Bytes nonce, CurrentNonce());
  PPML_ASSIGN_OR_RETURN(Bytes ciphertext, crypto::AesGcmSeal(key_.span(), nonce, aad, plaintext));
  ++sequence_;
  return ciphertext;
}

Result<Bytes> ReceiverContext::Open(ByteSpan aad, ByteSpan ciphertext) {
  PPML_ASSIGN_OR_RETURN(Bytes nonce, CurrentNonce());
  Result<Bytes> plaintext = crypto::AesGcmOpen(key_.span(), nonce, aad, ciphertext);
  if (!plaintext.ok()) return plaintext.status().WithContext("HPKE Open (seq " + std::to_string(sequence_) + ")");
  ++sequence_;
  return plaintext;
}

// ---- RFC 9458 §4.4 -----------------------------------------------------------

Result<ResponseKeys> DeriveResponseKeys(const Context& context, ByteSpan enc, ByteSpan response_nonce,
                                        std::string_view export_label) {
  const size_t nk = KeyLength(context.aead());
  const size_t secret_length = std::max(kNonceLength, nk);
  if (response_nonce.size() != secret_length) {
    return Status::InvalidArgument("response keys: response nonce must be " + std::to_string(secret_length) +
                                   " bytes, got " + std::to_string(response_nonce.size()));
  }
  if (enc.size() != kEncLength) {
    return Status::InvalidArgument("response keys: enc must be 32 bytes, got " + std::to_string(enc.size()));
  }
  PPML_ASSIGN_OR_RETURN(SecretBytes secret, context.Export(AsBytes(export_label), secret_length));
  Bytes salt = Concat<Bytes>({enc, response_nonce});
  PPML_ASSIGN_OR_RETURN(SecretBytes prk, crypto::HkdfSha256Extract(salt, secret.span()));
  ResponseKeys keys;
  PPML_ASSIGN_OR_RETURN(keys.key, crypto::HkdfSha256Expand(prk.span(), AsBytes("key"), nk));
  PPML_ASSIGN_OR_RETURN(SecretBytes nonce, crypto::HkdfSha256Expand(prk.span(), AsBytes("nonce"), kNonceLength));
  keys.nonce = nonce.Reveal();
  return keys;
}

}  // namespace ppml::hpke
