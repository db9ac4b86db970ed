#include "common/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <string>

namespace ppml::crypto {
namespace {

Status OpenSslError(const std::string& what) { return Status::Internal(OpenSslErrorMessage(what)); }

// OSSL_PARAM wants non-const pointers even for inputs it only reads.
void* Mutable(const uint8_t* p) { return const_cast<uint8_t*>(p); }

// OpenSSL reports a zero-length input given by a null pointer as missing.
const uint8_t* DataOrEmpty(ByteSpan bytes) {
  static const uint8_t kEmpty[1] = {0};
  return bytes.empty() ? kEmpty : bytes.data();
}

// OpenSSL takes int lengths; refuse anything that does not fit.
bool FitsInt(size_t n) { return n <= static_cast<size_t>(INT_MAX); }

// OpenSSL 3.0 looks an algorithm up by name (locks, hash lookups, string
// compares) each time a context is set up from a name or a legacy EVP_aes_*()
// object: on the request path that cost as much as the key schedule itself.
// So each algorithm is fetched once; the fetched objects are immutable and
// reference counted, one copy shared by every thread (static init is
// thread-safe). A null result surfaces as an OpenSSL error at first use.
EVP_KDF* HkdfAlgorithm() {
  static EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  return kdf;
}
EVP_MAC* HmacAlgorithm() {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}
EVP_MD* Sha256Algorithm() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}
EVP_CIPHER* AesGcmCipher(size_t key_length) {
  static EVP_CIPHER* aes128 = EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr);
  static EVP_CIPHER* aes256 = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return key_length == kAes256KeyLength ? aes256 : aes128;
}

// An HMAC-SHA256 context with its digest set (by name: a fetch), keyed with
// the empty key, as HMAC's copy needs an initialised state.
Result<EvpMacCtxPtr> NewHmacSha256Template() {
  if (HmacAlgorithm() == nullptr) return OpenSslError("HMAC-SHA256: EVP_MAC_fetch");
  EvpMacCtxPtr ctx(EVP_MAC_CTX_new(HmacAlgorithm()));
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (!ctx || EVP_MAC_init(ctx.get(), DataOrEmpty({}), 0, params) != 1) return OpenSslError("HMAC-SHA256: context");
  return ctx;
}

// A copy of this thread's template (EVP_MAC_CTX_dup: no lookup by name); the
// caller keys only the copy, which is wiped when freed, so the template never
// holds a secret.
Result<EvpMacCtxPtr> NewHmacSha256Context() {
  thread_local Result<EvpMacCtxPtr> hmac_template = NewHmacSha256Template();
  if (!hmac_template.ok()) return hmac_template.status();
  EvpMacCtxPtr ctx(EVP_MAC_CTX_dup(hmac_template->get()));
  if (!ctx) return OpenSslError("HMAC-SHA256: EVP_MAC_CTX_dup");
  return ctx;
}

// An HKDF-SHA256 expand context; setting the digest by name fetches it.
Result<EvpKdfCtxPtr> NewHkdfSha256ExpandContext() {
  if (HkdfAlgorithm() == nullptr) return OpenSslError("HKDF: EVP_KDF_fetch");
  EvpKdfCtxPtr ctx(EVP_KDF_CTX_new(HkdfAlgorithm()));
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
                         OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (!ctx || EVP_KDF_CTX_set_params(ctx.get(), params) != 1) return OpenSslError("HKDF: context");
  return ctx;
}

// OpenSSL 3.0's HKDF cannot be copied (no dupctx), so each thread keeps one
// expand context and rekeys it per use; the caller overwrites the key after.
Result<EVP_KDF_CTX*> ThreadHkdfSha256ExpandContext() {
  thread_local Result<EvpKdfCtxPtr> hkdf = NewHkdfSha256ExpandContext();
  if (!hkdf.ok()) return hkdf.status();
  return hkdf->get();
}

// HMAC-SHA256 of `data` under `key` into `out` (32 bytes).
Status HmacSha256Into(ByteSpan key, ByteSpan data, std::span<uint8_t> out) {
  PPML_ASSIGN_OR_RETURN(EvpMacCtxPtr ctx, NewHmacSha256Context());
  size_t length = 0;
  if (EVP_MAC_init(ctx.get(), DataOrEmpty(key), key.size(), nullptr) != 1 ||
      EVP_MAC_update(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_MAC_final(ctx.get(), out.data(), &length, out.size()) != 1 || length != kSha256Length) {
    return OpenSslError("HMAC-SHA256");
  }
  return Status::Ok();
}

Status CheckGcmArgs(ByteSpan key, ByteSpan nonce, ByteSpan aad, size_t text_length) {
  if (key.size() != kAes256KeyLength && key.size() != kAes128KeyLength) {
    return Status::InvalidArgument("AES-GCM: key must be 16 or 32 bytes, got " + std::to_string(key.size()));
  }
  if (nonce.size() != kAesGcmNonceLength) {
    return Status::InvalidArgument("AES-GCM: nonce must be 12 bytes, got " + std::to_string(nonce.size()));
  }
  if (!FitsInt(aad.size()) || !FitsInt(text_length)) {
    return Status::InvalidArgument("AES-GCM: input larger than 2 GiB");
  }
  return Status::Ok();
}

}  // namespace

// ---- SecretBytes -------------------------------------------------------------

void SecretBytes::Wipe() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

SecretBytes& SecretBytes::operator=(const SecretBytes& other) {
  if (this != &other) {
    Wipe();
    bytes_ = other.bytes_;
  }
  return *this;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = std::move(other.bytes_);
    other.bytes_.clear();
  }
  return *this;
}

SecretBytes::~SecretBytes() { Wipe(); }

// ---- Deleters ----------------------------------------------------------------

void EvpPkeyDeleter::operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
void EvpPkeyCtxDeleter::operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
void EvpCipherCtxDeleter::operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
void EvpMdCtxDeleter::operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
void EvpMacDeleter::operator()(EVP_MAC* p) const { EVP_MAC_free(p); }
void EvpMacCtxDeleter::operator()(EVP_MAC_CTX* p) const { EVP_MAC_CTX_free(p); }
void EvpKdfDeleter::operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
void EvpKdfCtxDeleter::operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }

// ---- Hashes, MACs, KDFs --------------------------------------------------

Result<Bytes> Sha256(ByteSpan data) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return OpenSslError("SHA-256: EVP_MD_CTX_new");
  Bytes out(kSha256Length);
  unsigned int length = 0;
  if (EVP_DigestInit_ex(ctx.get(), Sha256Algorithm(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), &length) != 1 || length != kSha256Length) {
    return OpenSslError("SHA-256");
  }
  return out;
}

Result<Bytes> HmacSha256(ByteSpan key, ByteSpan data) {
  Bytes out(kSha256Length);
  PPML_RETURN_IF_ERROR(HmacSha256Into(key, data, out));
  return out;
}

// RFC 5869 §2.2 defines Extract as HMAC(salt, ikm), an empty salt being
// HashLen zeros, which HMAC pads the empty key to anyway. It is computed so
// rather than through EVP_KDF: OpenSSL 3.0's HKDF extract fetches HMAC and
// SHA-256 by name on every call (EVP_Q_mac).
Result<SecretBytes> HkdfSha256Extract(ByteSpan salt, ByteSpan ikm) {
  SecretBytes prk(kSha256Length);
  PPML_RETURN_IF_ERROR(HmacSha256Into(salt, ikm, prk.mutable_span()));
  return prk;
}
Result<SecretBytes> HkdfSha256Expand(ByteSpan prk, ByteSpan info, size_t length) {
  if (prk.size() < kSha256Length) {
    return Status::InvalidArgument("HKDF-Expand: PRK must be at least 32 bytes, got " + std::to_string(prk.size()));
  }
  if (length == 0 || length > 255 * kSha256Length) {
    return Status::InvalidArgument("HKDF-Expand: length must be 1..8160, got " + std::to_string(length));
  }
  // OpenSSL 3.0 cannot clear a used context's info (setting an empty one
  // frees the old but keeps its length), so an empty info, which HPKE's
  // labelled expansions never have, gets a context of its own.
  EvpKdfCtxPtr own;
  EVP_KDF_CTX* ctx = nullptr;
  if (info.empty()) {
    PPML_ASSIGN_OR_RETURN(own, NewHkdfSha256ExpandContext());
    ctx = own.get();
  } else {
    PPML_ASSIGN_OR_RETURN(ctx, ThreadHkdfSha256ExpandContext());
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, Mutable(prk.data()), prk.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, Mutable(info.data()), info.size()),
      OSSL_PARAM_construct_end(),
  };
  if (info.empty()) params[1] = OSSL_PARAM_construct_end();
  SecretBytes out(length);
  const bool derived = EVP_KDF_derive(ctx, out.data(), out.size(), params) > 0;
  // The thread's context keeps no key between uses (OpenSSL wipes the one replaced).
  static const uint8_t kZeros[kSha256Length] = {};
  OSSL_PARAM scrub[] = {
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, Mutable(kZeros), sizeof(kZeros)),
      OSSL_PARAM_construct_end(),
  };
  const bool scrubbed = EVP_KDF_CTX_set_params(ctx, scrub) == 1;
  if (!derived) return OpenSslError("HKDF: EVP_KDF_derive");
  if (!scrubbed) return OpenSslError("HKDF: clear key");
  return out;
}

// ---- AES-GCM ---------------------------------------------------------------

Bytes CounterNonce(uint32_t domain, uint64_t counter) {
  Bytes nonce(kAesGcmNonceLength);
  for (int i = 0; i < 4; ++i) nonce[i] = static_cast<uint8_t>(domain >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<uint8_t>(counter >> (56 - 8 * i));
  return nonce;
}

Result<Bytes> AesGcmSeal(ByteSpan key, ByteSpan nonce, ByteSpan aad, ByteSpan plaintext) {
  PPML_RETURN_IF_ERROR(CheckGcmArgs(key, nonce, aad, plaintext.size()));
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return OpenSslError("AES-GCM seal: EVP_CIPHER_CTX_new");
  Bytes out(plaintext.size() + kAesGcmTagLength);
  int length = 0;
  int final_length = 0;
  if (EVP_EncryptInit_ex(ctx.get(), AesGcmCipher(key.size()), nullptr, nullptr, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce.data()) != 1) {
    return OpenSslError("AES-GCM seal: init");
  }
  if (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &length, aad.data(), static_cast<int>(aad.size())) != 1) {
    return OpenSslError("AES-GCM seal: aad");
  }
  length = 0;
  if (!plaintext.empty() &&
      EVP_EncryptUpdate(ctx.get(), out.data(), &length, plaintext.data(), static_cast<int>(plaintext.size())) != 1) {
    return OpenSslError("AES-GCM seal: update");
  }
  if (EVP_EncryptFinal_ex(ctx.get(), out.data() + length, &final_length) != 1 ||
      static_cast<size_t>(length + final_length) != plaintext.size()) {
    return OpenSslError("AES-GCM seal: final");
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kAesGcmTagLength),
                          out.data() + plaintext.size()) != 1) {
    return OpenSslError("AES-GCM seal: get tag");
  }
  return out;
}

Status AesGcmOpenInto(ByteSpan key, ByteSpan nonce, ByteSpan aad, ByteSpan sealed, std::span<uint8_t> out) {
  if (sealed.size() < kAesGcmTagLength) {
    return Status::DataLoss("AES-GCM open: sealed message of " + std::to_string(sealed.size()) +
                            " bytes is shorter than the 16-byte tag");
  }
  const size_t text_length = sealed.size() - kAesGcmTagLength;
  if (out.size() != text_length) {
    return Status::InvalidArgument("AES-GCM open: output of " + std::to_string(out.size()) + " bytes for " +
                                   std::to_string(text_length) + " bytes of plaintext");
  }
  PPML_RETURN_IF_ERROR(CheckGcmArgs(key, nonce, aad, text_length));
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return OpenSslError("AES-GCM open: EVP_CIPHER_CTX_new");
  // Unverified plaintext must not survive a failed tag check.
  auto wipe = [&] { OPENSSL_cleanse(out.data(), out.size()); };
  int length = 0;
  int final_length = 0;
  if (EVP_DecryptInit_ex(ctx.get(), AesGcmCipher(key.size()), nullptr, nullptr, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce.data()) != 1) {
    return OpenSslError("AES-GCM open: init");
  }
  if (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &length, aad.data(), static_cast<int>(aad.size())) != 1) {
    return OpenSslError("AES-GCM open: aad");
  }
  length = 0;
  if (text_length > 0 &&
      EVP_DecryptUpdate(ctx.get(), out.data(), &length, sealed.data(), static_cast<int>(text_length)) != 1) {
    wipe();
    return OpenSslError("AES-GCM open: update");
  }
  uint8_t tag[kAesGcmTagLength];
  std::copy(sealed.begin() + static_cast<std::ptrdiff_t>(text_length), sealed.end(), tag);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kAesGcmTagLength), tag) != 1) {
    wipe();
    return OpenSslError("AES-GCM open: set tag");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + length, &final_length) != 1) {
    ERR_clear_error();
    wipe();
    return Status::DataLoss("AES-GCM open: authentication failed (wrong key, nonce or aad, or the message was altered)");
  }
  return Status::Ok();
}

Result<Bytes> AesGcmOpen(ByteSpan key, ByteSpan nonce, ByteSpan aad, ByteSpan sealed) {
  SecretBytes out(sealed.size() < kAesGcmTagLength ? 0 : sealed.size() - kAesGcmTagLength);
  PPML_RETURN_IF_ERROR(AesGcmOpenInto(key, nonce, aad, sealed, std::span<uint8_t>(out.data(), out.size())));
  return out.Reveal();
}

// ---- X25519 ----------------------------------------------------------------

Result<X25519PrivateKey> X25519PrivateKey::FromRaw(ByteSpan private_key) {
  if (private_key.size() != kX25519KeyLength) {
    return Status::InvalidArgument("X25519: private key must be 32 bytes, got " + std::to_string(private_key.size()));
  }
  EvpPkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(), private_key.size()));
  if (!key) return OpenSslError("X25519: import private key");
  PPML_ASSIGN_OR_RETURN(Bytes public_key, RawPublicKey(key.get()));
  return X25519PrivateKey(std::move(key), std::move(public_key));
}

Result<X25519PrivateKey> X25519PrivateKey::Generate() {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  if (!ctx) return OpenSslError("X25519 keygen: EVP_PKEY_CTX_new_id");
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return OpenSslError("X25519 keygen");
  }
  EvpPkeyPtr key(raw);
  PPML_ASSIGN_OR_RETURN(Bytes public_key, RawPublicKey(key.get()));
  return X25519PrivateKey(std::move(key), std::move(public_key));
}

Result<SecretBytes> X25519PrivateKey::RawPrivate() const { return RawPrivateKey(key_.get()); }

Result<SecretBytes> X25519PrivateKey::Agree(ByteSpan peer_public_key) const {
  PPML_ASSIGN_OR_RETURN(EvpPkeyPtr peer, X25519PublicKeyFromRaw(peer_public_key));
  // The context only reads the key (and counts a reference to it).
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(key_.get(), nullptr));
  if (!ctx) return OpenSslError("X25519: EVP_PKEY_CTX_new");
  if (EVP_PKEY_derive_init(ctx.get()) != 1) return OpenSslError("X25519: derive init");
  if (EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1) {
    ERR_clear_error();
    return Status::InvalidArgument("X25519: peer public key rejected");
  }
  SecretBytes shared(kX25519KeyLength);
  size_t length = shared.size();
  // OpenSSL fails the derivation itself when the result is all zeros.
  if (EVP_PKEY_derive(ctx.get(), shared.data(), &length) != 1) {
    ERR_clear_error();
    return Status::InvalidArgument("X25519: key agreement failed (low-order peer public key)");
  }
  static const uint8_t kZeros[kX25519KeyLength] = {};
  if (length != kX25519KeyLength || CRYPTO_memcmp(shared.data(), kZeros, kX25519KeyLength) == 0) {
    return Status::InvalidArgument("X25519: all-zero shared secret (low-order peer public key)");
  }
  return shared;
}

Result<EvpPkeyPtr> X25519PublicKeyFromRaw(ByteSpan public_key) {
  if (public_key.size() != kX25519KeyLength) {
    return Status::InvalidArgument("X25519: public key must be 32 bytes, got " + std::to_string(public_key.size()));
  }
  EvpPkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, public_key.data(), public_key.size()));
  if (!key) return OpenSslError("X25519: import public key");
  return key;
}

Result<Bytes> RawPublicKey(const EVP_PKEY* key) {
  if (key == nullptr) return Status::InvalidArgument("raw public key: null key");
  size_t length = 0;
  if (EVP_PKEY_get_raw_public_key(key, nullptr, &length) != 1) return OpenSslError("raw public key: size");
  Bytes out(length);
  if (EVP_PKEY_get_raw_public_key(key, out.data(), &length) != 1) return OpenSslError("raw public key");
  out.resize(length);
  return out;
}

Result<SecretBytes> RawPrivateKey(const EVP_PKEY* key) {
  if (key == nullptr) return Status::InvalidArgument("raw private key: null key");
  size_t length = 0;
  if (EVP_PKEY_get_raw_private_key(key, nullptr, &length) != 1) return OpenSslError("raw private key: size");
  SecretBytes out(length);
  if (EVP_PKEY_get_raw_private_key(key, out.data(), &length) != 1 || length != out.size()) {
    return OpenSslError("raw private key");
  }
  return out;
}

Result<X25519KeyPair> X25519GenerateKeyPair() {
  PPML_ASSIGN_OR_RETURN(X25519PrivateKey key, X25519PrivateKey::Generate());
  X25519KeyPair pair;
  PPML_ASSIGN_OR_RETURN(pair.private_key, key.RawPrivate());
  pair.public_key = key.public_key();
  return pair;
}

Result<Bytes> X25519PublicFromPrivate(ByteSpan private_key) {
  PPML_ASSIGN_OR_RETURN(X25519PrivateKey key, X25519PrivateKey::FromRaw(private_key));
  return key.public_key();
}

// ---- Randomness and comparison ----------------------------------------------

Status FillRandom(std::span<uint8_t> out) {
  if (out.empty()) return Status::Ok();
  if (!FitsInt(out.size())) return Status::InvalidArgument("random: request larger than 2 GiB");
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) return OpenSslError("RAND_bytes");
  return Status::Ok();
}

Result<Bytes> RandomBytes(size_t length) {
  Bytes out(length);
  PPML_RETURN_IF_ERROR(FillRandom(out));
  return out;
}

bool ConstantTimeEquals(ByteSpan a, ByteSpan b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string OpenSslErrorMessage(const std::string& what) {
  unsigned long code = ERR_get_error();
  std::string message = what;
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    message += ": ";
    message += buf;
  }
  ERR_clear_error();
  return message;
}

std::string ToHex(ByteSpan bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0f]);
  }
  return out;
}

Result<Bytes> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return Status::InvalidArgument("hex string has odd length " + std::to_string(hex.size()));
  }
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Bytes out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = digit(hex[i]), lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return Status::InvalidArgument("non-hex character at offset " + std::to_string(hi < 0 ? i : i + 1));
    }
    out.push_back(static_cast<uint8_t>(hi << 4 | lo));
  }
  return out;
}

}  // namespace ppml::crypto
