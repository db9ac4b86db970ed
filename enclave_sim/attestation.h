// Simulated enclave trust core, first slice: measurement, the simulated
// platform (quoting) key, quotes and sealing.
//
// Everything is software, but the cryptography is the real one and goes
// through OpenSSL EVP only (via common/crypto.h where it has the primitive):
//
//   measurement  SHA-256 over a canonical encoding of the enclave identity
//   platform key ECDSA P-256 (EVP_PKEY "EC", group P-256), PEM on disk;
//                stand-in for Intel's DCAP quoting key, pinned by clients
//   quote        {version, measurement, signer id, report data, timestamp}
//                signed with ECDSA-P256-SHA256 (DER signature);
//                report data = SHA-512(enclave X25519 public key || nonce)
//   sealing      AES-256-GCM under HKDF-SHA256(platform secret,
//                salt "ppml-seal-v1", info measurement)
//
//   Client                                   Enclave (+ simulated platform)
//   nonce = random(32)   --- nonce --->
//                        <--- quote, pk --- SignQuote(platform key, measurement,
//                                                     signer id, pk, nonce)
//   VerifyQuote(quote, pinned platform public key, expected measurement,
//               pk, nonce, max age, now)  -> OK, or the reason it failed
//
// A real SGX build replaces SignQuote (the quoting enclave) and the platform
// secret (EGETKEY) only; the verifier and the formats stay.
//
// Thread safety: every free function is stateless and may be called from
// several threads at once; an EVP_PKEY may be shared read-only.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "common/status.h"

namespace ppml::enclave {

using crypto::Bytes;
using crypto::ByteSpan;

inline constexpr size_t kMeasurementLength = 32;
inline constexpr size_t kManifestHashLength = 32;
inline constexpr size_t kSignerIdLength = 32;
inline constexpr size_t kReportDataLength = 64;
inline constexpr size_t kEnclavePublicKeyLength = 32;  // X25519, the HPKE service key
inline constexpr size_t kMinNonceLength = 16;
inline constexpr size_t kMaxNonceLength = 64;
inline constexpr size_t kPlatformSecretLength = 32;
// A quote stamped at most this far ahead of the verifier's clock is accepted
// (clock skew between platform and client); further ahead is rejected.
inline constexpr int64_t kMaxClockSkewSeconds = 60;

using Measurement = std::array<uint8_t, kMeasurementLength>;
using SignerId = std::array<uint8_t, kSignerIdLength>;
using ReportData = std::array<uint8_t, kReportDataLength>;

// ---- Hex -------------------------------------------------------------------

// Lower-case hex.
using crypto::ToHex;
// Upper or lower case; InvalidArgument for an odd length or a non-hex digit.
using crypto::FromHex;
// Exactly 64 hex digits.
Result<Measurement> MeasurementFromHex(std::string_view hex);

// ---- Measurement -------------------------------------------------------------

struct EnclaveIdentity {
  std::string code_version;         // e.g. "ppml-worker 0.1.0+<git sha>"
  std::vector<std::string> config;  // security-relevant settings, "key=value"; any order
  std::array<uint8_t, kManifestHashLength> manifest_hash{};  // model package manifest hash
};

// SHA-256 over the canonical encoding drawn in attestation.cc
// (EncodeIdentity). The config entries are sorted first, so their order does
// not matter; an entry without '=' or with an empty key, or two entries with
// the same key, is InvalidArgument (it would make the identity ambiguous).
// Returns a Result (not a bare Measurement) for those errors and for OpenSSL
// failures.
Result<Measurement> ComputeMeasurement(const EnclaveIdentity& identity);

// ---- Platform key (simulated quoting key) -------------------------------------

// A fresh ECDSA P-256 key pair.
Result<crypto::EvpPkeyPtr> GeneratePlatformKey();
// PKCS#8 PEM, unencrypted, written with file mode 0600 (also when the file
// already existed). Errors name the file.
Status SavePlatformPrivateKeyPem(const EVP_PKEY* key, const std::string& path);
// SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY"), mode 0644.
Status SavePlatformPublicKeyPem(const EVP_PKEY* key, const std::string& path);
// Load and check that the key is EC on P-256. NotFound / IoError /
// InvalidArgument, each naming the file.
Result<crypto::EvpPkeyPtr> LoadPlatformPrivateKeyPem(const std::string& path);
Result<crypto::EvpPkeyPtr> LoadPlatformPublicKeyPem(const std::string& path);
// The same, in memory (transport, tests).
Result<std::string> PlatformPublicKeyToPem(const EVP_PKEY* key);
Result<crypto::EvpPkeyPtr> PlatformPublicKeyFromPem(std::string_view pem);

// ---- Quote -------------------------------------------------------------------

inline constexpr uint32_t kQuoteVersion = 1;
inline constexpr size_t kQuoteBodyLength = 4 + 4 + 32 + 32 + 64 + 8;  // 144
inline constexpr size_t kMaxQuoteSignatureLength = 72;  // DER ECDSA P-256 at most

struct Quote {
  uint32_t version = kQuoteVersion;
  Measurement measurement{};
  SignerId signer_id{};
  ReportData report_data{};
  int64_t timestamp_unix = 0;  // seconds since the epoch, platform clock
  Bytes signature;             // DER ECDSA-P256-SHA256 over EncodeQuoteBody
};

// SHA-512(enclave_public_key (32 bytes) || nonce); the key length is fixed,
// so the concatenation is unambiguous. InvalidArgument for a key that is not
// 32 bytes or a nonce outside [kMinNonceLength, kMaxNonceLength].
Result<ReportData> ComputeReportData(ByteSpan enclave_public_key, ByteSpan nonce);

// The canonical signed bytes (layout drawn in attestation.cc), 144 bytes.
Bytes EncodeQuoteBody(const Quote& quote);

// Seconds since the epoch, system clock.
int64_t UnixNow();

// Builds and signs a quote. `timestamp_unix` defaults to UnixNow().
Result<Quote> SignQuote(const EVP_PKEY* platform_private_key, const Measurement& measurement,
                        ByteSpan signer_id, ByteSpan enclave_public_key, ByteSpan nonce,
                        std::optional<int64_t> timestamp_unix = std::nullopt);

// The client-side check. OK, or the first failure, in this order:
//   Unsupported        the quote version is not kQuoteVersion
//   PermissionDenied   "bad signature": does not verify under the pinned key
//   PermissionDenied   "wrong measurement": names expected and quoted values
//   PermissionDenied   "report data does not bind this enclave key and nonce"
//                      (stale or replayed nonce, or another key)
//   DeadlineExceeded   "quote too old": older than max_age_seconds
//   PermissionDenied   "quote from the future": more than kMaxClockSkewSeconds ahead
// InvalidArgument for malformed arguments (key/nonce lengths, negative max age).
Status VerifyQuote(const Quote& quote, const EVP_PKEY* platform_public_key,
                   const Measurement& expected_measurement, ByteSpan enclave_public_key, ByteSpan nonce,
                   int64_t max_age_seconds, int64_t now_unix);

// JSON for transport, one line, keys in this order, byte fields in lower-case hex:
//   {"version":1,"measurement":"<64 hex>","signer_id":"<64 hex>",
//    "report_data":"<128 hex>","timestamp_unix":<int>,"signature":"<hex DER>"}
std::string QuoteToJson(const Quote& quote);
// Parses and validates the shape (every field present with its type and
// length; unknown fields are ignored). InvalidArgument naming the field. It
// does not verify the quote: call VerifyQuote.
Result<Quote> QuoteFromJson(std::string_view json);

// ---- Attestation document ------------------------------------------------------

// What an enclave hands out to be attested (GET /v2/attestation, and the
// quote.json a model owner checks before `ppml model seal`): the quote and the
// two values its report data binds. The document is not trusted by itself:
// VerifyAttestationDocument checks that the quote binds exactly this key and
// nonce.
struct AttestationDocument {
  Quote quote;
  Bytes enclave_public_key;  // 32-byte X25519 HPKE service key of the enclave
  Bytes nonce;               // the verifier's challenge, kMinNonceLength to kMaxNonceLength bytes
};

// One line, keys in this order:
//   {"quote":{...QuoteToJson...},"enclave_public_key":"<64 hex>","nonce":"<hex>"}
std::string AttestationDocumentToJson(const AttestationDocument& document);
// Parses and validates the shape (InvalidArgument naming the field, quote
// fields included); does not verify it.
Result<AttestationDocument> AttestationDocumentFromJson(std::string_view json);

// VerifyQuote over the document's own key and nonce (same errors, same
// order). When `expected_nonce` is not empty, the document's nonce must equal
// it first (PermissionDenied otherwise): a client that sent a fresh challenge
// passes it here to reject a replayed document.
Status VerifyAttestationDocument(const AttestationDocument& document, const EVP_PKEY* platform_public_key,
                                 const Measurement& expected_measurement, int64_t max_age_seconds,
                                 int64_t now_unix, ByteSpan expected_nonce = {});

// ---- Sealing -------------------------------------------------------------------

inline constexpr uint8_t kSealVersion = 1;
inline constexpr size_t kSealHeaderLength = 5;  // "PPSL" + version
inline constexpr size_t kSealMinBlobLength =
    kSealHeaderLength + crypto::kAesGcmNonceLength + crypto::kAesGcmTagLength;  // 33

// Encrypts `plaintext` so that only an enclave with this measurement on this
// platform (same 32-byte platform secret) can unseal it. `aad` is
// authenticated, not stored: Unseal needs the same one. Blob layout drawn in
// attestation.cc.
Result<Bytes> Seal(ByteSpan platform_secret, const Measurement& measurement, ByteSpan plaintext,
                   ByteSpan aad = {});
// DataLoss for a truncated blob, a wrong magic, or a blob that does not
// authenticate (another measurement or platform secret, other aad, altered
// bytes; no plaintext is returned then); Unsupported for an unknown version.
Result<Bytes> Unseal(ByteSpan platform_secret, const Measurement& measurement, ByteSpan blob,
                     ByteSpan aad = {});

}  // namespace ppml::enclave
