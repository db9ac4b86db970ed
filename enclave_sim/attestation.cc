#include "enclave_sim/attestation.h"

#include "common/file_io.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <simdjson.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <memory>
#include <set>

#include "common/json_line.h"

namespace ppml::enclave {
namespace {

struct BioDeleter { void operator()(BIO* b) const { BIO_free(b); } };
using BioPtr = std::unique_ptr<BIO, BioDeleter>;


void AppendU32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}
void AppendU64(Bytes& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}
void AppendBytes(Bytes& out, ByteSpan b) { out.insert(out.end(), b.begin(), b.end()); }
void AppendBytes(Bytes& out, std::string_view s) { out.insert(out.end(), s.begin(), s.end()); }
// u32 big-endian length, then the bytes.
void AppendPrefixed(Bytes& out, std::string_view s) {
  AppendU32(out, static_cast<uint32_t>(s.size()));
  AppendBytes(out, s);
}
void AppendPrefixed(Bytes& out, ByteSpan b) {
  AppendU32(out, static_cast<uint32_t>(b.size()));
  AppendBytes(out, b);
}

inline constexpr std::string_view kMeasurementDomain = "ppml-enclave-measurement-v1";
inline constexpr std::string_view kQuoteMagic = "PPQT";
inline constexpr std::string_view kSealMagic = "PPSL";
inline constexpr std::string_view kSealSalt = "ppml-seal-v1";

// The canonical identity encoding that ComputeMeasurement hashes. Every
// variable field is length-prefixed (u32 big-endian), so no two identities
// share an encoding:
//
//   +--------+-----------------------------------+
//   | u32 27 | "ppml-enclave-measurement-v1"     |  domain tag
//   +--------+-----------------------------------+
//   | u32 n  | code_version (n bytes, UTF-8)     |
//   +--------+-----------------------------------+
//   | u32 k  | number of config entries          |
//   +--------+-----------------------------------+
//   | u32 m1 | config[0] "key=value" (m1 bytes)  |  entries sorted by bytes
//   | ...    | ...                               |  (std::string operator<)
//   | u32 mk | config[k-1]                       |
//   +--------+-----------------------------------+
//   | u32 32 | manifest_hash (32 bytes)          |
//   +--------+-----------------------------------+
//
//   measurement = SHA-256(all of the above)
Result<Bytes> EncodeIdentity(const EnclaveIdentity& identity) {
  std::vector<std::string> config = identity.config;
  std::sort(config.begin(), config.end());
  std::set<std::string> keys;
  for (const std::string& entry : config) {
    size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument("enclave identity: config entry \"" + entry +
                                     "\" is not of the form key=value");
    }
    if (!keys.insert(entry.substr(0, eq)).second) {
      return Status::InvalidArgument("enclave identity: config key \"" + entry.substr(0, eq) +
                                     "\" appears more than once");
    }
  }
  if (identity.code_version.empty()) {
    return Status::InvalidArgument("enclave identity: code_version is empty");
  }
  Bytes out;
  AppendPrefixed(out, kMeasurementDomain);
  AppendPrefixed(out, identity.code_version);
  AppendU32(out, static_cast<uint32_t>(config.size()));
  for (const std::string& entry : config) AppendPrefixed(out, entry);
  AppendPrefixed(out, ByteSpan(identity.manifest_hash));
  return out;
}

Status CheckP256(const EVP_PKEY* key, const std::string& what) {
  if (key == nullptr) return Status::InvalidArgument(what + ": no key");
  if (!EVP_PKEY_is_a(key, "EC")) {
    return Status::InvalidArgument(what + ": not an EC key (the platform key is ECDSA P-256)");
  }
  char group[64] = {0};
  size_t group_len = 0;
  if (EVP_PKEY_get_group_name(key, group, sizeof(group), &group_len) != 1) {
    return Status::InvalidArgument(crypto::OpenSslErrorMessage(what + ": EC key without a named group"));
  }
  std::string_view name(group, group_len);
  if (name != "prime256v1" && name != "P-256" && name != "secp256r1") {
    return Status::InvalidArgument(what + ": EC group " + std::string(name) + ", expected P-256");
  }
  return Status::Ok();
}


std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

Result<crypto::EvpPkeyPtr> PublicFromPem(std::string_view pem, const std::string& what) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Status::Internal(crypto::OpenSslErrorMessage(what + ": BIO_new_mem_buf"));
  crypto::EvpPkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return Status::InvalidArgument(crypto::OpenSslErrorMessage(what + ": not a PEM public key"));
  PPML_RETURN_IF_ERROR(CheckP256(key.get(), what));
  return key;
}

template <size_t N>
std::array<uint8_t, N> ToArray(ByteSpan b) {
  std::array<uint8_t, N> out{};
  std::copy_n(b.begin(), N, out.begin());
  return out;
}

Status CheckKeyAndNonce(ByteSpan enclave_public_key, ByteSpan nonce) {
  if (enclave_public_key.size() != kEnclavePublicKeyLength) {
    return Status::InvalidArgument("enclave public key is " + std::to_string(enclave_public_key.size()) +
                                   " bytes, expected 32 (X25519)");
  }
  if (nonce.size() < kMinNonceLength || nonce.size() > kMaxNonceLength) {
    return Status::InvalidArgument("nonce is " + std::to_string(nonce.size()) + " bytes, expected " +
                                   std::to_string(kMinNonceLength) + " to " + std::to_string(kMaxNonceLength));
  }
  return Status::Ok();
}

Result<crypto::SecretBytes> SealKey(ByteSpan platform_secret, const Measurement& measurement) {
  if (platform_secret.size() != kPlatformSecretLength) {
    return Status::InvalidArgument("platform secret is " + std::to_string(platform_secret.size()) +
                                   " bytes, expected 32");
  }
  Bytes salt(kSealSalt.begin(), kSealSalt.end());
  PPML_ASSIGN_OR_RETURN(crypto::SecretBytes prk, crypto::HkdfSha256Extract(salt, platform_secret));
  return crypto::HkdfSha256Expand(prk.span(), measurement, crypto::kAes256KeyLength);
}

Bytes SealHeader() {
  Bytes header(kSealMagic.begin(), kSealMagic.end());
  header.push_back(kSealVersion);
  return header;
}

}  // namespace

// ---- Hex -------------------------------------------------------------------

Result<Measurement> MeasurementFromHex(std::string_view hex) {
  if (hex.size() != 2 * kMeasurementLength) {
    return Status::InvalidArgument("measurement must be 64 hex characters, got " + std::to_string(hex.size()));
  }
  PPML_ASSIGN_OR_RETURN(Bytes bytes, FromHex(hex));
  return ToArray<kMeasurementLength>(bytes);
}

// ---- Measurement -------------------------------------------------------------

Result<Measurement> ComputeMeasurement(const EnclaveIdentity& identity) {
  PPML_ASSIGN_OR_RETURN(Bytes encoding, EncodeIdentity(identity));
  PPML_ASSIGN_OR_RETURN(Bytes digest, crypto::Sha256(encoding));
  return ToArray<kMeasurementLength>(digest);
}

// ---- Platform key -------------------------------------------------------------

Result<crypto::EvpPkeyPtr> GeneratePlatformKey() {
  crypto::EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return Status::Internal(crypto::OpenSslErrorMessage("platform key: EC P-256 key generation"));
  return key;
}

Status SavePlatformPrivateKeyPem(const EVP_PKEY* key, const std::string& path) {
  PPML_RETURN_IF_ERROR(CheckP256(key, "platform private key for " + path));
  // Secure-heap BIO: the PEM text of the private key is wiped when freed.
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio) return Status::Internal(crypto::OpenSslErrorMessage("platform private key " + path + ": BIO_new"));
  if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Status::Internal(crypto::OpenSslErrorMessage("platform private key " + path + ": PEM encoding"));
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return WriteFile(path, std::string_view(data, len > 0 ? static_cast<size_t>(len) : 0), 0600);
}

Result<std::string> PlatformPublicKeyToPem(const EVP_PKEY* key) {
  PPML_RETURN_IF_ERROR(CheckP256(key, "platform public key"));
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return Status::Internal(crypto::OpenSslErrorMessage("platform public key: BIO_new"));
  if (PEM_write_bio_PUBKEY(bio.get(), key) != 1) {
    return Status::Internal(crypto::OpenSslErrorMessage("platform public key: PEM encoding"));
  }
  return BioContents(bio.get());
}

Status SavePlatformPublicKeyPem(const EVP_PKEY* key, const std::string& path) {
  Result<std::string> pem = PlatformPublicKeyToPem(key);
  if (!pem.ok()) return pem.status().WithContext(path);
  return WriteFile(path, *pem, 0644);
}

Result<crypto::EvpPkeyPtr> LoadPlatformPrivateKeyPem(const std::string& path) {
  PPML_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Status::Internal(crypto::OpenSslErrorMessage(path + ": BIO_new_mem_buf"));
  crypto::EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  OPENSSL_cleanse(pem.data(), pem.size());
  if (!key) return Status::InvalidArgument(crypto::OpenSslErrorMessage(path + ": not a PEM private key"));
  PPML_RETURN_IF_ERROR(CheckP256(key.get(), path));
  return key;
}

Result<crypto::EvpPkeyPtr> LoadPlatformPublicKeyPem(const std::string& path) {
  PPML_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  return PublicFromPem(pem, path);
}

Result<crypto::EvpPkeyPtr> PlatformPublicKeyFromPem(std::string_view pem) {
  return PublicFromPem(pem, "platform public key");
}

// ---- Quote -------------------------------------------------------------------

Result<ReportData> ComputeReportData(ByteSpan enclave_public_key, ByteSpan nonce) {
  PPML_RETURN_IF_ERROR(CheckKeyAndNonce(enclave_public_key, nonce));
  Bytes input;
  AppendBytes(input, enclave_public_key);
  AppendBytes(input, nonce);
  ReportData out{};
  unsigned int len = 0;
  if (EVP_Digest(input.data(), input.size(), out.data(), &len, EVP_sha512(), nullptr) != 1 ||
      len != kReportDataLength) {
    return Status::Internal(crypto::OpenSslErrorMessage("report data: SHA-512"));
  }
  return out;
}

// The canonical quote body, what the platform key signs (144 bytes, integers
// big-endian):
//
//   offset  size
//        0     4  magic "PPQT"
//        4     4  version (u32) = 1
//        8    32  measurement
//       40    32  signer_id
//       72    64  report_data = SHA-512(enclave X25519 public key || nonce)
//      136     8  timestamp_unix (i64, two's complement)
//      144        end
//
//   signature = ECDSA-P256-SHA256(platform key, body), DER (at most 72 bytes)
Bytes EncodeQuoteBody(const Quote& quote) {
  Bytes out;
  out.reserve(kQuoteBodyLength);
  AppendBytes(out, kQuoteMagic);
  AppendU32(out, quote.version);
  AppendBytes(out, ByteSpan(quote.measurement));
  AppendBytes(out, ByteSpan(quote.signer_id));
  AppendBytes(out, ByteSpan(quote.report_data));
  AppendU64(out, static_cast<uint64_t>(quote.timestamp_unix));
  return out;
}

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<Quote> SignQuote(const EVP_PKEY* platform_private_key, const Measurement& measurement,
                        ByteSpan signer_id, ByteSpan enclave_public_key, ByteSpan nonce,
                        std::optional<int64_t> timestamp_unix) {
  PPML_RETURN_IF_ERROR(CheckP256(platform_private_key, "platform private key"));
  if (signer_id.size() != kSignerIdLength) {
    return Status::InvalidArgument("signer id is " + std::to_string(signer_id.size()) + " bytes, expected 32");
  }
  Quote quote;
  quote.measurement = measurement;
  quote.signer_id = ToArray<kSignerIdLength>(signer_id);
  PPML_ASSIGN_OR_RETURN(quote.report_data, ComputeReportData(enclave_public_key, nonce));
  quote.timestamp_unix = timestamp_unix.value_or(UnixNow());
  Bytes body = EncodeQuoteBody(quote);

  crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return Status::Internal(crypto::OpenSslErrorMessage("quote signing: EVP_MD_CTX_new"));
  // EVP_DigestSignInit takes a non-const key; it only reads it.
  if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, const_cast<EVP_PKEY*>(platform_private_key)) !=
      1) {
    return Status::Internal(crypto::OpenSslErrorMessage("quote signing: EVP_DigestSignInit"));
  }
  size_t sig_len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &sig_len, body.data(), body.size()) != 1) {
    return Status::Internal(crypto::OpenSslErrorMessage("quote signing: EVP_DigestSign (length)"));
  }
  quote.signature.resize(sig_len);
  if (EVP_DigestSign(ctx.get(), quote.signature.data(), &sig_len, body.data(), body.size()) != 1) {
    return Status::Internal(crypto::OpenSslErrorMessage("quote signing: EVP_DigestSign"));
  }
  quote.signature.resize(sig_len);
  return quote;
}

Status VerifyQuote(const Quote& quote, const EVP_PKEY* platform_public_key,
                   const Measurement& expected_measurement, ByteSpan enclave_public_key, ByteSpan nonce,
                   int64_t max_age_seconds, int64_t now_unix) {
  PPML_RETURN_IF_ERROR(CheckP256(platform_public_key, "platform public key"));
  PPML_RETURN_IF_ERROR(CheckKeyAndNonce(enclave_public_key, nonce));
  if (max_age_seconds < 0) return Status::InvalidArgument("max_age_seconds is negative");
  if (quote.version != kQuoteVersion) {
    return Status::Unsupported("quote version " + std::to_string(quote.version) + " is not supported (expected " +
                               std::to_string(kQuoteVersion) + ")");
  }

  Bytes body = EncodeQuoteBody(quote);
  crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return Status::Internal(crypto::OpenSslErrorMessage("quote verification: EVP_MD_CTX_new"));
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, const_cast<EVP_PKEY*>(platform_public_key)) !=
      1) {
    return Status::Internal(crypto::OpenSslErrorMessage("quote verification: EVP_DigestVerifyInit"));
  }
  int verified = EVP_DigestVerify(ctx.get(), quote.signature.data(), quote.signature.size(), body.data(), body.size());
  ERR_clear_error();  // a malformed DER signature leaves decoding errors behind
  if (verified != 1) {
    return Status::PermissionDenied(
        "bad signature: the quote does not verify under the pinned platform key (another platform, or a "
        "field was altered)");
  }

  if (!crypto::ConstantTimeEquals(quote.measurement, expected_measurement)) {
    return Status::PermissionDenied("wrong measurement: the quote attests enclave " + ToHex(quote.measurement) +
                                    ", expected " + ToHex(expected_measurement));
  }

  PPML_ASSIGN_OR_RETURN(ReportData expected_report, ComputeReportData(enclave_public_key, nonce));
  if (!crypto::ConstantTimeEquals(quote.report_data, expected_report)) {
    return Status::PermissionDenied(
        "report data does not bind this enclave key and nonce (a stale or replayed nonce, or a quote for "
        "another key)");
  }

  // Overflow-safe comparisons: timestamps come from the wire.
  if (quote.timestamp_unix < now_unix &&
      static_cast<uint64_t>(now_unix) - static_cast<uint64_t>(quote.timestamp_unix) >
          static_cast<uint64_t>(max_age_seconds)) {
    return Status::DeadlineExceeded("quote too old: stamped " + std::to_string(quote.timestamp_unix) + ", now " +
                                    std::to_string(now_unix) + ", max age " + std::to_string(max_age_seconds) +
                                    " s");
  }
  if (quote.timestamp_unix > now_unix &&
      static_cast<uint64_t>(quote.timestamp_unix) - static_cast<uint64_t>(now_unix) >
          static_cast<uint64_t>(kMaxClockSkewSeconds)) {
    return Status::PermissionDenied("quote from the future: stamped " + std::to_string(quote.timestamp_unix) +
                                    ", now " + std::to_string(now_unix) + " (more than " +
                                    std::to_string(kMaxClockSkewSeconds) + " s ahead)");
  }
  return Status::Ok();
}

std::string QuoteToJson(const Quote& quote) {
  JsonLine json;
  json.Add("version", quote.version)
      .Add("measurement", ToHex(quote.measurement))
      .Add("signer_id", ToHex(quote.signer_id))
      .Add("report_data", ToHex(quote.report_data))
      .Add("timestamp_unix", quote.timestamp_unix)
      .Add("signature", ToHex(quote.signature));
  return json.str();
}

namespace {

// `what` names the JSON document in messages.
Status FieldError(std::string_view field, const std::string& why, std::string_view what = "quote JSON") {
  return Status::InvalidArgument(std::string(what) + ": field \"" + std::string(field) + "\": " + why);
}

// A required string field of hex, decoding to exactly `length` bytes (or 1 to
// `length` bytes when `exact` is false).
Result<Bytes> HexField(simdjson::dom::object& object, std::string_view field, size_t length, bool exact,
                       std::string_view what = "quote JSON") {
  simdjson::dom::element element;
  if (object[field].get(element) != simdjson::SUCCESS) return FieldError(field, "missing", what);
  std::string_view text;
  if (element.get_string().get(text) != simdjson::SUCCESS) return FieldError(field, "not a string", what);
  Result<Bytes> bytes = FromHex(text);
  if (!bytes.ok()) return FieldError(field, bytes.status().message(), what);
  if (exact ? bytes->size() != length : (bytes->empty() || bytes->size() > length)) {
    return FieldError(field, std::to_string(bytes->size()) + " bytes, expected " +
                                 (exact ? "" : "1 to ") + std::to_string(length), what);
  }
  return bytes;
}

}  // namespace

Result<Quote> QuoteFromJson(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  simdjson::padded_string padded(json);
  if (auto error = parser.parse(padded).get(root); error != simdjson::SUCCESS) {
    return Status::InvalidArgument(std::string("quote JSON: not valid JSON: ") + simdjson::error_message(error));
  }
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) {
    return Status::InvalidArgument("quote JSON: not a JSON object");
  }

  Quote quote;
  {
    simdjson::dom::element element;
    if (object["version"].get(element) != simdjson::SUCCESS) return FieldError("version", "missing");
    uint64_t version = 0;
    if (element.get_uint64().get(version) != simdjson::SUCCESS) {
      return FieldError("version", "not a non-negative integer");
    }
    if (version != kQuoteVersion) {
      return FieldError("version", std::to_string(version) + " is not supported (expected " +
                                       std::to_string(kQuoteVersion) + ")");
    }
    quote.version = static_cast<uint32_t>(version);
  }
  PPML_ASSIGN_OR_RETURN(Bytes measurement, HexField(object, "measurement", kMeasurementLength, true));
  PPML_ASSIGN_OR_RETURN(Bytes signer_id, HexField(object, "signer_id", kSignerIdLength, true));
  PPML_ASSIGN_OR_RETURN(Bytes report_data, HexField(object, "report_data", kReportDataLength, true));
  {
    simdjson::dom::element element;
    if (object["timestamp_unix"].get(element) != simdjson::SUCCESS) return FieldError("timestamp_unix", "missing");
    int64_t timestamp = 0;
    if (element.get_int64().get(timestamp) != simdjson::SUCCESS) {
      return FieldError("timestamp_unix", "not an integer");
    }
    quote.timestamp_unix = timestamp;
  }
  PPML_ASSIGN_OR_RETURN(quote.signature, HexField(object, "signature", kMaxQuoteSignatureLength, false));
  quote.measurement = ToArray<kMeasurementLength>(measurement);
  quote.signer_id = ToArray<kSignerIdLength>(signer_id);
  quote.report_data = ToArray<kReportDataLength>(report_data);
  return quote;
}

// ---- Attestation document ------------------------------------------------------

std::string AttestationDocumentToJson(const AttestationDocument& document) {
  JsonLine json;
  json.AddRaw("quote", QuoteToJson(document.quote))
      .Add("enclave_public_key", ToHex(document.enclave_public_key))
      .Add("nonce", ToHex(document.nonce));
  return json.str();
}

Result<AttestationDocument> AttestationDocumentFromJson(std::string_view json) {
  constexpr std::string_view kWhat = "attestation document";
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  simdjson::padded_string padded(json);
  if (auto error = parser.parse(padded).get(root); error != simdjson::SUCCESS) {
    return Status::InvalidArgument(std::string(kWhat) + ": not valid JSON: " + simdjson::error_message(error));
  }
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) {
    return Status::InvalidArgument(std::string(kWhat) + ": not a JSON object");
  }
  simdjson::dom::object quote_object;
  if (auto error = object["quote"].get(quote_object); error != simdjson::SUCCESS) {
    return FieldError("quote", error == simdjson::NO_SUCH_FIELD ? "missing" : "not an object", kWhat);
  }
  AttestationDocument document;
  // The quote keeps its own parser and messages; it gets its JSON text back.
  Result<Quote> quote = QuoteFromJson(simdjson::minify(quote_object));
  if (!quote.ok()) return quote.status().WithContext(std::string(kWhat));
  document.quote = std::move(*quote);
  PPML_ASSIGN_OR_RETURN(document.enclave_public_key,
                        HexField(object, "enclave_public_key", kEnclavePublicKeyLength, true, kWhat));
  PPML_ASSIGN_OR_RETURN(document.nonce, HexField(object, "nonce", kMaxNonceLength, false, kWhat));
  if (document.nonce.size() < kMinNonceLength) {
    return FieldError("nonce", std::to_string(document.nonce.size()) + " bytes, expected " +
                                   std::to_string(kMinNonceLength) + " to " + std::to_string(kMaxNonceLength),
                      kWhat);
  }
  return document;
}

Status VerifyAttestationDocument(const AttestationDocument& document, const EVP_PKEY* platform_public_key,
                                 const Measurement& expected_measurement, int64_t max_age_seconds,
                                 int64_t now_unix, ByteSpan expected_nonce) {
  if (!expected_nonce.empty() && !crypto::ConstantTimeEquals(document.nonce, expected_nonce)) {
    return Status::PermissionDenied(
        "the attestation document answers another nonce than the one sent (a replayed document)");
  }
  return VerifyQuote(document.quote, platform_public_key, expected_measurement, document.enclave_public_key,
                     document.nonce, max_age_seconds, now_unix);
}

// ---- Sealing -------------------------------------------------------------------

// Sealed blob layout:
//
//   +--------+---------+--------------+----------------------------+-----------+
//   | "PPSL" | version | nonce        | ciphertext                 | GCM tag   |
//   | 4 B    | 1 B = 1 | 12 B random  | (= plaintext length)       | 16 B      |
//   +--------+---------+--------------+----------------------------+-----------+
//
//   key = HKDF-SHA256(ikm = platform secret (32 B), salt = "ppml-seal-v1",
//                     info = measurement (32 B)), 32 bytes
//   AES-256-GCM(key, nonce, aad = "PPSL" || version || caller aad, plaintext)
//
// The header is authenticated with the caller's aad (it is fixed-length, so
// the concatenation is unambiguous); the caller's aad itself is not stored.
Result<Bytes> Seal(ByteSpan platform_secret, const Measurement& measurement, ByteSpan plaintext, ByteSpan aad) {
  PPML_ASSIGN_OR_RETURN(crypto::SecretBytes key, SealKey(platform_secret, measurement));
  PPML_ASSIGN_OR_RETURN(Bytes nonce, crypto::RandomBytes(crypto::kAesGcmNonceLength));
  Bytes header = SealHeader();
  Bytes full_aad = header;
  AppendBytes(full_aad, aad);
  PPML_ASSIGN_OR_RETURN(Bytes sealed, crypto::AesGcmSeal(key.span(), nonce, full_aad, plaintext));
  Bytes blob = std::move(header);
  blob.reserve(kSealHeaderLength + nonce.size() + sealed.size());
  AppendBytes(blob, nonce);
  AppendBytes(blob, sealed);
  return blob;
}

Result<Bytes> Unseal(ByteSpan platform_secret, const Measurement& measurement, ByteSpan blob, ByteSpan aad) {
  if (blob.size() < kSealMinBlobLength) {
    return Status::DataLoss("sealed blob is " + std::to_string(blob.size()) + " bytes, shorter than the " +
                            std::to_string(kSealMinBlobLength) + " of header, nonce and tag (truncated)");
  }
  if (!std::equal(kSealMagic.begin(), kSealMagic.end(), blob.begin())) {
    return Status::DataLoss("not a sealed blob: magic is not \"PPSL\"");
  }
  if (blob[4] != kSealVersion) {
    return Status::Unsupported("sealed blob version " + std::to_string(blob[4]) + " is not supported (expected " +
                               std::to_string(kSealVersion) + ")");
  }
  PPML_ASSIGN_OR_RETURN(crypto::SecretBytes key, SealKey(platform_secret, measurement));
  Bytes full_aad(blob.begin(), blob.begin() + kSealHeaderLength);
  AppendBytes(full_aad, aad);
  ByteSpan nonce = blob.subspan(kSealHeaderLength, crypto::kAesGcmNonceLength);
  ByteSpan sealed = blob.subspan(kSealHeaderLength + crypto::kAesGcmNonceLength);
  Result<Bytes> plaintext = crypto::AesGcmOpen(key.span(), nonce, full_aad, sealed);
  if (!plaintext.ok()) {
    if (plaintext.status().code() != StatusCode::kDataLoss) return plaintext.status();
    return Status::DataLoss(
        "sealed blob does not authenticate: sealed for another enclave measurement or platform, with other "
        "associated data, or altered");
  }
  return plaintext;
}

}  // namespace ppml::enclave
