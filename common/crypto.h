// Cryptographic building blocks: thin wrappers over OpenSSL 3 EVP.
//
// Nothing here implements a primitive: every function hands its work to
// OpenSSL (EVP_Digest, EVP_MAC "HMAC", EVP_KDF "HKDF", EVP_CIPHER AES-GCM,
// EVP_PKEY X25519, RAND_bytes, CRYPTO_memcmp) and turns OpenSSL's error queue
// into a Status. HPKE (common/hpke.h), the sealing key and the model package
// are composed from these.
//
// Bytes are std::vector<uint8_t> in, std::span<const uint8_t> out of the
// caller. Secret values (keys, PRKs, DH outputs) come back as SecretBytes,
// which wipes its memory with OPENSSL_cleanse when destroyed.
//
// Thread safety: every free function is stateless and may be called from
// several threads at once. A SecretBytes or an owning EVP_* pointer is a
// plain value: one thread at a time, like a std::vector.
#pragma once

#include <openssl/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ppml::crypto {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

inline constexpr size_t kSha256Length = 32;
inline constexpr size_t kAesGcmNonceLength = 12;
inline constexpr size_t kAesGcmTagLength = 16;
inline constexpr size_t kAes128KeyLength = 16;
inline constexpr size_t kAes256KeyLength = 32;
inline constexpr size_t kX25519KeyLength = 32;

// A fixed-size byte buffer for secrets, wiped with OPENSSL_cleanse when it is
// destroyed or overwritten. Its size is set at construction and never grows,
// so no reallocation leaves an unwiped copy behind.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size) : bytes_(size, 0) {}
  explicit SecretBytes(ByteSpan bytes) : bytes_(bytes.begin(), bytes.end()) {}
  SecretBytes(const SecretBytes& other) : bytes_(other.bytes_) {}
  SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) { other.bytes_.clear(); }
  SecretBytes& operator=(const SecretBytes& other);
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  ~SecretBytes();

  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  uint8_t& operator[](size_t i) { return bytes_[i]; }
  uint8_t operator[](size_t i) const { return bytes_[i]; }
  ByteSpan span() const { return bytes_; }
  std::span<uint8_t> mutable_span() { return bytes_; }
  // A copy that is no longer wiped; for values that stop being secret.
  Bytes Reveal() const { return bytes_; }

 private:
  void Wipe();
  Bytes bytes_;
};

// Owning pointers for OpenSSL objects.
struct EvpPkeyDeleter { void operator()(EVP_PKEY* p) const; };
struct EvpPkeyCtxDeleter { void operator()(EVP_PKEY_CTX* p) const; };
struct EvpCipherCtxDeleter { void operator()(EVP_CIPHER_CTX* p) const; };
struct EvpMdCtxDeleter { void operator()(EVP_MD_CTX* p) const; };
struct EvpMacDeleter { void operator()(EVP_MAC* p) const; };
struct EvpMacCtxDeleter { void operator()(EVP_MAC_CTX* p) const; };
struct EvpKdfDeleter { void operator()(EVP_KDF* p) const; };
struct EvpKdfCtxDeleter { void operator()(EVP_KDF_CTX* p) const; };
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, EvpPkeyCtxDeleter>;
using EvpCipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, EvpCipherCtxDeleter>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;
using EvpMacPtr = std::unique_ptr<EVP_MAC, EvpMacDeleter>;
using EvpMacCtxPtr = std::unique_ptr<EVP_MAC_CTX, EvpMacCtxDeleter>;
using EvpKdfPtr = std::unique_ptr<EVP_KDF, EvpKdfDeleter>;
using EvpKdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, EvpKdfCtxDeleter>;

// ---- Hashes, MACs, KDFs --------------------------------------------------

// Lower-case hex, and its inverse (either case; odd length or a non-hex
// character is InvalidArgument naming the offset).
std::string ToHex(ByteSpan bytes);
Result<Bytes> FromHex(std::string_view hex);

// "what: <first queued OpenSSL error>"; clears OpenSSL's error queue so the
// next call starts clean.
std::string OpenSslErrorMessage(const std::string& what);

Result<Bytes> Sha256(ByteSpan data);
Result<Bytes> HmacSha256(ByteSpan key, ByteSpan data);

// RFC 5869 HKDF with SHA-256, split in its two steps as HPKE needs them.
// Extract: PRK = HMAC(salt, ikm); an empty salt means HashLen zero bytes.
Result<SecretBytes> HkdfSha256Extract(ByteSpan salt, ByteSpan ikm);
// Expand: `length` bytes (at most 255 * 32) from a PRK of at least 32 bytes.
Result<SecretBytes> HkdfSha256Expand(ByteSpan prk, ByteSpan info, size_t length);

// ---- AES-GCM ---------------------------------------------------------------

// Sealed message layout (what Seal returns and Open takes):
//
//   +---------------------------+----------------+
//   | ciphertext (= len of pt)  | tag (16 bytes) |
//   +---------------------------+----------------+
//
// The key length picks the cipher: 32 bytes AES-256-GCM (what this project
// uses), 16 bytes AES-128-GCM (kept for the RFC 9180 A.1 test vector). The
// nonce is 12 bytes and must never repeat under one key.
Result<Bytes> AesGcmSeal(ByteSpan key, ByteSpan nonce, ByteSpan aad, ByteSpan plaintext);
// A nonce that never repeats under one key as long as (domain, counter)
// does not: the domain in the first 4 bytes, the counter in the last 8
// (big-endian).
Bytes CounterNonce(uint32_t domain, uint64_t counter);
// DataLoss when the tag does not verify (wrong key, nonce, aad, or altered
// bytes); no plaintext is ever returned unless the tag verified.
Result<Bytes> AesGcmOpen(ByteSpan key, ByteSpan nonce, ByteSpan aad, ByteSpan sealed);
// The same into caller memory of exactly the plaintext length (an enclave's
// weight pool); `out` is wiped when the tag does not verify.
Status AesGcmOpenInto(ByteSpan key, ByteSpan nonce, ByteSpan aad, ByteSpan sealed, std::span<uint8_t> out);

// ---- X25519 ----------------------------------------------------------------

struct X25519KeyPair {
  SecretBytes private_key;  // 32 raw bytes (RFC 7748 scalar, unclamped form as stored)
  Bytes public_key;         // 32 raw bytes
};

// A private key loaded once. Importing a raw key makes OpenSSL compute its
// public half, a scalar multiplication as costly as the key agreement itself,
// so code that agrees many times (the enclave, once per request) keeps this
// instead of raw bytes. Agree may be called from several threads at once.
class X25519PrivateKey {
 public:
  static Result<X25519PrivateKey> FromRaw(ByteSpan private_key);
  static Result<X25519PrivateKey> Generate();

  const Bytes& public_key() const { return public_key_; }
  Result<SecretBytes> RawPrivate() const;
  // The 32-byte shared secret X25519(this, peer_public_key). An all-zero
  // result (a low-order peer key) is an InvalidArgument error, as RFC 7748
  // §6.1 and RFC 9180 §7.1.4 require.
  Result<SecretBytes> Agree(ByteSpan peer_public_key) const;

 private:
  X25519PrivateKey(EvpPkeyPtr key, Bytes public_key) : key_(std::move(key)), public_key_(std::move(public_key)) {}
  EvpPkeyPtr key_;
  Bytes public_key_;
};

Result<X25519KeyPair> X25519GenerateKeyPair();
Result<Bytes> X25519PublicFromPrivate(ByteSpan private_key);
// Raw 32-byte import and export of EVP_PKEY objects.
Result<EvpPkeyPtr> X25519PublicKeyFromRaw(ByteSpan public_key);
Result<Bytes> RawPublicKey(const EVP_PKEY* key);
Result<SecretBytes> RawPrivateKey(const EVP_PKEY* key);

// ---- Randomness and comparison ----------------------------------------------

// Fills `out` from the OpenSSL DRBG (RAND_bytes).
Status FillRandom(std::span<uint8_t> out);
Result<Bytes> RandomBytes(size_t length);

// True when a and b have the same length and the same bytes; the time taken
// depends on the length only (CRYPTO_memcmp), never on where they differ.
bool ConstantTimeEquals(ByteSpan a, ByteSpan b);

}  // namespace ppml::crypto
