// PpmlClient: the data owner's side of ppml-serving (DESIGN.md, "Request
// life"). It attests the enclave before trusting its key, then sends
// KServe v2 inference requests encrypted to that key only.
//
//   ClientOptions options;
//   options.url = "https://127.0.0.1:8443";
//   options.ca_file = "ca.pem";                        // the server's CA
//   options.platform_pubkey_pem_path = "platform.pub.pem";  // pinned quoting key
//   options.expected_measurement_hex = "9f2c...";      // empty: any (reported)
//   options.model = "fashion";
//   Result<PpmlClient> client = PpmlClient::Connect(options);   // attests
//   Result<kserve::InferResponse> reply = client->Infer(request, /*binary=*/true);
//
// Trust flow
//   Connect = load the pinned platform public key and the expected
//   measurement, then Attest(). Attest draws a fresh random 32-byte nonce,
//   GETs /v2/attestation?nonce=HEX[&model=M] and verifies the document with
//   VerifyAttestationDocument: the document answers our nonce, its quote
//   verifies under the pinned platform key, carries the expected measurement
//   (when one is pinned), binds the enclave's X25519 key to our nonce in its
//   report data, and is at most max_quote_age_seconds old. Only then is the
//   enclave key kept; Infer encrypts to it and to nothing else. Without a
//   pinned measurement every check but the measurement still runs, and
//   measurement() tells the caller what to pin.
//
// Infer
//   EncodeInferRequest (`binary`: inputs as binary tensor data; which outputs
//   come back binary is the request's binary_output / outputs[].binary) ->
//   ehbp::EncryptRequest to the attested key -> POST /v2/models/{m}/infer
//   with Ehbp-Encapsulated-Key and, for binary inputs,
//   Inference-Header-Content-Length -> 200 with Ehbp-Response-Nonce:
//   ehbp::DecryptResponse and kserve::ParseInferResponse (with the reply's
//   Inference-Header-Content-Length). A 200 without the nonce header
//   (plaintext) is refused.
//
// Errors name the URL and the step. HTTP failures keep the server's message
// (decrypted when the reply carries Ehbp-Response-Nonce, else the plaintext
// {"error": ...}) and map the status: 400 InvalidArgument, 401/403
// PermissionDenied, 404 NotFound, 409 FailedPrecondition (a replayed
// request), 413/429 ResourceExhausted, 408/504 DeadlineExceeded, 501
// Unsupported, 500 Internal, other 5xx Unavailable. A rejected attestation
// keeps VerifyAttestationDocument's code (PermissionDenied,
// DeadlineExceeded, Unsupported) and reason. Nothing is logged; keys and
// plaintext never appear in messages.
//
// Thread safety: one thread at a time per PpmlClient (it keeps one HTTP
// connection); use one client per thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "client/https.h"
#include "common/crypto.h"
#include "common/kserve.h"
#include "common/status.h"
#include "enclave_sim/attestation.h"

namespace ppml::client {

struct ClientOptions {
  std::string url;                  // https://HOST:PORT (http:// for development)
  std::string ca_file;              // PEM CA of the server certificate; empty: system CAs
  std::string client_cert_file;     // optional client certificate (mutual TLS) ...
  std::string client_key_file;      // ... and its key
  std::string platform_pubkey_pem_path;  // the pinned platform (quoting) public key, PEM
  std::string expected_measurement_hex;  // 64 hex digits; empty: accept any, report it
  std::string model;                // the model to attest for and infer with
  int64_t max_quote_age_seconds = 300;
  int connect_timeout_ms = 10'000;
  int io_timeout_ms = 120'000;      // one request, sent and answered
};

class PpmlClient {
 public:
  // Checks the options, loads the platform key, attests. InvalidArgument for
  // a bad URL or measurement (naming the option), NotFound/InvalidArgument
  // for a key file that does not load (naming the file); then Attest's errors.
  static Result<PpmlClient> Connect(ClientOptions options);

  // A fresh attestation (new nonce); on success its key replaces the one
  // Infer encrypts to. On failure the previous attestation stays in force.
  Result<enclave::AttestationDocument> Attest();

  // GET /v2/models/{model}: names, datatypes and shapes (-1 for a symbolic
  // dimension) of the model's inputs and outputs.
  Result<kserve::ModelMetadata> GetModelMetadata();

  // Encodes, encrypts, sends, decrypts and parses one inference.
  Result<kserve::InferResponse> Infer(const kserve::InferRequest& request, bool binary);
  // The same for a KServe v2 body encoded by the caller (JSON, or JSON and
  // binary tensors with `json_length` its JSON length), sent as is.
  Result<kserve::InferResponse> InferBody(std::span<const uint8_t> body, std::optional<size_t> json_length);

  // The last verified attestation and its measurement.
  const enclave::AttestationDocument& attestation() const { return attestation_; }
  const enclave::Measurement& measurement() const { return attestation_.quote.measurement; }
  // Whether Connect was given a measurement to require.
  bool measurement_pinned() const { return expected_measurement_.has_value(); }
  const std::string& model() const { return options_.model; }
  const std::string& url() const { return url_; }
  // The X-Request-Id header of the last inference reply, "" when it had none.
  const std::string& last_request_id() const { return last_request_id_; }

 private:
  PpmlClient(ClientOptions options, HttpClient http, crypto::EvpPkeyPtr platform_key,
             std::optional<enclave::Measurement> expected_measurement);

  ClientOptions options_;
  std::string url_;
  HttpClient http_;
  crypto::EvpPkeyPtr platform_key_;
  std::optional<enclave::Measurement> expected_measurement_;
  enclave::AttestationDocument attestation_;
  bool attested_ = false;
  std::string last_request_id_;
};

// The Status for a failed HTTP reply (status >= 300): code from the HTTP
// status as above, message "<what>: HTTP <status>: <server's error>".
// `decrypted_body` is the reply's decrypted body when it was encrypted.
Status HttpStatusError(const std::string& what, const HttpResponse& response,
                       const std::optional<std::string>& decrypted_body = std::nullopt);

// Parses a GET /v2/models/{m} body (kserve::EncodeModelMetadata's format).
Result<kserve::ModelMetadata> ParseModelMetadata(std::string_view json);

}  // namespace ppml::client
