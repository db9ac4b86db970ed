#include "client/client.h"

#include <simdjson.h>

#include <cctype>
#include <utility>

#include "common/ehbp.h"
#include "common/file_io.h"

namespace ppml::client {
namespace {

constexpr size_t kNonceLength = 32;
constexpr size_t kMaxShownErrorLength = 500;

// Server text made safe to print: printable ASCII kept, the rest as '?', cut
// at kMaxShownErrorLength.
std::string Printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, kMaxShownErrorLength)) {
    const unsigned char u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (text.size() > kMaxShownErrorLength) out += "...";
  return out;
}

// The "error" string of a {"error": ...} body, or the body itself (printable part).
std::string ServerMessage(std::string_view body) {
  if (body.empty()) return "(empty body)";
  simdjson::dom::parser parser;
  simdjson::padded_string padded(body);
  simdjson::dom::element root;
  if (parser.parse(padded).get(root) == simdjson::SUCCESS) {
    std::string_view message;
    if (root["error"].get_string().get(message) == simdjson::SUCCESS) return Printable(message);
  }
  return Printable(body);
}

StatusCode CodeForHttpStatus(int status) {
  switch (status) {
    case 400: return StatusCode::kInvalidArgument;
    case 401:
    case 403: return StatusCode::kPermissionDenied;
    case 404: return StatusCode::kNotFound;
    case 408:
    case 504: return StatusCode::kDeadlineExceeded;
    case 409: return StatusCode::kFailedPrecondition;
    case 413:
    case 429: return StatusCode::kResourceExhausted;
    case 500: return StatusCode::kInternal;
    case 501: return StatusCode::kUnsupported;
    default: break;
  }
  if (status >= 500) return StatusCode::kUnavailable;
  return StatusCode::kFailedPrecondition;  // 3xx and other 4xx: nothing this client follows
}

Result<DataType> DatatypeFromName(std::string_view name, const std::string& where) {
  if (name == "FP32") return DataType::kF32;
  if (name == "UINT8") return DataType::kU8;
  if (name == "INT8") return DataType::kS8;
  if (name == "INT32") return DataType::kS32;
  if (name == "INT64") return DataType::kS64;
  return Status::Unsupported(where + ": datatype " + std::string(name) + " is not supported by this client");
}

Result<std::vector<kserve::TensorMetadata>> ParseTensorList(simdjson::dom::object root, std::string_view key) {
  const std::string where = "model metadata: \"" + std::string(key) + "\"";
  simdjson::dom::array array;
  if (root[key].get_array().get(array) != simdjson::SUCCESS) {
    return Status::InvalidArgument(where + ": missing or not an array");
  }
  std::vector<kserve::TensorMetadata> tensors;
  size_t index = 0;
  for (simdjson::dom::element item : array) {
    const std::string item_where = where + "[" + std::to_string(index++) + "]";
    kserve::TensorMetadata tensor;
    std::string_view text;
    if (item["name"].get_string().get(text) != simdjson::SUCCESS) {
      return Status::InvalidArgument(item_where + ": \"name\" missing or not a string");
    }
    tensor.name = std::string(text);
    if (item["datatype"].get_string().get(text) != simdjson::SUCCESS) {
      return Status::InvalidArgument(item_where + ": \"datatype\" missing or not a string");
    }
    PPML_ASSIGN_OR_RETURN(tensor.dtype, DatatypeFromName(text, item_where + " (" + tensor.name + ")"));
    simdjson::dom::array shape;
    if (item["shape"].get_array().get(shape) != simdjson::SUCCESS) {
      return Status::InvalidArgument(item_where + ": \"shape\" missing or not an array");
    }
    for (simdjson::dom::element dim : shape) {
      int64_t value = 0;
      if (dim.get_int64().get(value) != simdjson::SUCCESS || value < -1) {
        return Status::InvalidArgument(item_where + ": \"shape\" holds something other than an integer >= -1");
      }
      tensor.shape.push_back(value);
    }
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

}  // namespace

Status HttpStatusError(const std::string& what, const HttpResponse& response,
                       const std::optional<std::string>& decrypted_body) {
  std::string message = what + ": HTTP " + std::to_string(response.status);
  if (decrypted_body) {
    message += " (encrypted error from the enclave): " + ServerMessage(*decrypted_body);
  } else {
    message += ": " + ServerMessage(response.body);
  }
  return Status(CodeForHttpStatus(response.status), std::move(message));
}

Result<kserve::ModelMetadata> ParseModelMetadata(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element root;
  if (auto error = parser.parse(padded).get(root); error != simdjson::SUCCESS) {
    return Status::InvalidArgument(std::string("model metadata: not valid JSON: ") + simdjson::error_message(error));
  }
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) {
    return Status::InvalidArgument("model metadata: not a JSON object");
  }
  kserve::ModelMetadata metadata;
  std::string_view text;
  if (object["name"].get_string().get(text) != simdjson::SUCCESS) {
    return Status::InvalidArgument("model metadata: \"name\" missing or not a string");
  }
  metadata.name = std::string(text);
  if (object["platform"].get_string().get(text) == simdjson::SUCCESS) metadata.platform = std::string(text);
  PPML_ASSIGN_OR_RETURN(metadata.inputs, ParseTensorList(object, "inputs"));
  PPML_ASSIGN_OR_RETURN(metadata.outputs, ParseTensorList(object, "outputs"));
  return metadata;
}

PpmlClient::PpmlClient(ClientOptions options, HttpClient http, crypto::EvpPkeyPtr platform_key,
                       std::optional<enclave::Measurement> expected_measurement)
    : options_(std::move(options)), url_(http.target().Url()), http_(std::move(http)),
      platform_key_(std::move(platform_key)), expected_measurement_(expected_measurement) {}

Result<PpmlClient> PpmlClient::Connect(ClientOptions options) {
  PPML_ASSIGN_OR_RETURN(HttpTarget target, ParseUrl(options.url));
  target.ca_file = options.ca_file;
  target.client_cert_file = options.client_cert_file;
  target.client_key_file = options.client_key_file;
  target.connect_timeout_ms = options.connect_timeout_ms;
  target.io_timeout_ms = options.io_timeout_ms;
  if (options.max_quote_age_seconds < 0) {
    return Status::InvalidArgument("max_quote_age_seconds is negative");
  }
  if (options.platform_pubkey_pem_path.empty()) {
    return Status::InvalidArgument(
        "no platform public key: the enclave's quote can only be trusted under a pinned platform key "
        "(platform.pub.pem from `ppml keygen platform`, or the platform_pubkey= of `ppml serve`'s ready line)");
  }
  std::optional<enclave::Measurement> expected;
  if (!options.expected_measurement_hex.empty()) {
    Result<enclave::Measurement> parsed = enclave::MeasurementFromHex(options.expected_measurement_hex);
    if (!parsed.ok()) return parsed.status().WithContext("expected measurement");
    expected = *parsed;
  }
  PPML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, enclave::LoadPlatformPublicKeyPem(options.platform_pubkey_pem_path));
  PPML_ASSIGN_OR_RETURN(HttpClient http, HttpClient::Create(std::move(target)));
  PpmlClient client(std::move(options), std::move(http), std::move(key), expected);
  PPML_RETURN_IF_ERROR(client.Attest().status());
  return client;
}

Result<enclave::AttestationDocument> PpmlClient::Attest() {
  PPML_ASSIGN_OR_RETURN(crypto::Bytes nonce, crypto::RandomBytes(kNonceLength));
  std::string path = "/v2/attestation?nonce=" + crypto::ToHex(nonce);
  if (!options_.model.empty()) path += "&model=" + UrlEncode(options_.model);
  const std::string what = url_ + ": GET /v2/attestation";
  Result<HttpResponse> response = http_.Request("GET", path, {{"Accept", "application/json"}}, {});
  if (!response.ok()) return response.status().WithContext("attestation");
  if (response->status != 200) return HttpStatusError(what, *response);

  Result<enclave::AttestationDocument> document = enclave::AttestationDocumentFromJson(response->body);
  if (!document.ok()) return document.status().WithContext(what);
  // Unpinned: the measurement check compares the quote with itself; the
  // signature (which covers the measurement), binding, nonce and age checks
  // all still run.
  const enclave::Measurement expected = expected_measurement_.value_or(document->quote.measurement);
  Status verified = enclave::VerifyAttestationDocument(*document, platform_key_.get(), expected,
                                                       options_.max_quote_age_seconds, enclave::UnixNow(), nonce);
  if (!verified.ok()) return verified.WithContext(url_ + ": attestation rejected");
  attestation_ = *document;
  attested_ = true;
  return std::move(document).value();
}

Result<kserve::ModelMetadata> PpmlClient::GetModelMetadata() {
  if (options_.model.empty()) return Status::InvalidArgument("no model given (ClientOptions.model)");
  const std::string path = "/v2/models/" + UrlEncode(options_.model);
  const std::string what = url_ + ": GET " + path;
  Result<HttpResponse> response = http_.Request("GET", path, {{"Accept", "application/json"}}, {});
  if (!response.ok()) return response.status();
  if (response->status != 200) return HttpStatusError(what, *response);
  Result<kserve::ModelMetadata> metadata = ParseModelMetadata(response->body);
  if (!metadata.ok()) return metadata.status().WithContext(what);
  return metadata;
}

Result<kserve::InferResponse> PpmlClient::Infer(const kserve::InferRequest& request, bool binary) {
  PPML_ASSIGN_OR_RETURN(kserve::EncodedBody body, kserve::EncodeInferRequest(request, binary));
  return InferBody(body.body, body.json_length);
}

Result<kserve::InferResponse> PpmlClient::InferBody(std::span<const uint8_t> body, std::optional<size_t> json_length) {
  if (!attested_) return Status::FailedPrecondition("no verified attestation: call Attest() first");
  if (options_.model.empty()) return Status::InvalidArgument("no model given (ClientOptions.model)");
  const std::string path = "/v2/models/" + UrlEncode(options_.model) + "/infer";
  const std::string what = url_ + ": POST " + path;
  last_request_id_.clear();

  Result<ehbp::EncryptedRequest> encrypted = ehbp::EncryptRequest(attestation_.enclave_public_key, body);
  if (!encrypted.ok()) return encrypted.status().WithContext(what + ": encrypting the request");
  HttpHeaders headers = {
      {std::string(ehbp::kEncapsulatedKeyHeader), encrypted->encapsulated_key_header_value},
      {"Content-Type", "application/octet-stream"},
      {"Accept", "application/octet-stream, application/json"},
  };
  if (json_length) headers.emplace_back(std::string(kserve::kHeaderLengthHeader), std::to_string(*json_length));

  Result<HttpResponse> response = http_.Request("POST", path, headers, encrypted->body);
  if (!response.ok()) return response.status();
  last_request_id_ = response->Header("X-Request-Id").value_or("");

  const std::optional<std::string> nonce = response->Header(ehbp::kResponseNonceHeader);
  std::optional<std::string> plaintext;
  if (nonce) {
    Result<crypto::Bytes> decrypted = ehbp::DecryptResponse(
        encrypted->client_state, *nonce,
        crypto::ByteSpan(reinterpret_cast<const uint8_t*>(response->body.data()), response->body.size()));
    if (!decrypted.ok()) {
      return Status(decrypted.status().code() == StatusCode::kInvalidArgument ? StatusCode::kDataLoss
                                                                               : decrypted.status().code(),
                    what + ": HTTP " + std::to_string(response->status) +
                        ": the reply does not decrypt under this request's response key: " +
                        decrypted.status().message());
    }
    plaintext = std::string(decrypted->begin(), decrypted->end());
  }
  if (response->status != 200) return HttpStatusError(what, *response, plaintext);
  if (!plaintext) {
    return Status::PermissionDenied(what + ": HTTP 200 without an " + std::string(ehbp::kResponseNonceHeader) +
                                    " header: an unencrypted reply is refused");
  }

  std::optional<size_t> reply_json_length;
  if (std::optional<std::string> header = response->Header(kserve::kHeaderLengthHeader)) {
    size_t value = 0;
    bool valid = !header->empty() && header->size() <= 12;
    for (char c : *header) {
      if (c < '0' || c > '9') valid = false;
      else value = value * 10 + static_cast<size_t>(c - '0');
    }
    if (!valid) {
      return Status::DataLoss(what + ": the reply's " + std::string(kserve::kHeaderLengthHeader) + " \"" +
                              Printable(*header) + "\" is not a length");
    }
    reply_json_length = value;
  }
  Result<kserve::InferResponse> parsed = kserve::ParseInferResponse(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(plaintext->data()), plaintext->size()),
      reply_json_length);
  if (!parsed.ok()) return parsed.status().WithContext(what);
  // The model that ran is named inside the encryption, from the enclave's
  // sealed package: an operator routing the request to another model's
  // enclave (one holding the same service key) is caught here.
  if (parsed->model_name != options_.model) {
    return Status::DataLoss(what + ": the encrypted reply was computed by model '" + Printable(parsed->model_name) +
                            "', not '" + options_.model + "': the request was routed to another model's enclave");
  }
  return parsed;
}

}  // namespace ppml::client
