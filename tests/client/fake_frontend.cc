#include "tests/client/fake_frontend.h"

#include <algorithm>
#include <cmath>

#include "common/ehbp.h"
#include "common/json_line.h"
#include "common/kserve.h"

namespace ppml::client::testing {
namespace {

TestReply JsonReply(int status, const std::string& json) {
  return {MakeResponse(status, {{"Content-Type", "application/json"}}, json)};
}

TestReply PlainError(int status, const std::string& message) { return JsonReply(status, kserve::ErrorJson(message)); }

kserve::ModelMetadata MetadataOf(const std::string& model) {
  kserve::ModelMetadata m;
  m.name = model;
  m.platform = "ppml-fake";
  if (model == "double") {
    m.inputs = {{"x", DataType::kF32, {-1, 4}}};
    m.outputs = {{"y", DataType::kF32, {-1, 4}}};
  } else if (model == "image") {
    m.inputs = {{"image", DataType::kF32, {-1, 1, 28, 28}}};
    m.outputs = {{"mean", DataType::kF32, {-1, 1}}, {"scores", DataType::kF32, {-1, 10}}};
  } else if (model == "bytes") {
    m.inputs = {{"b", DataType::kU8, {-1, 3}}};
    m.outputs = {{"sum", DataType::kS64, {-1, 1}}};
  }
  return m;
}

// Runs a fake model: the outputs, or an InvalidArgument the client reads.
Result<std::vector<kserve::NamedTensor>> Run(const std::string& model, const kserve::InferRequest& request) {
  const kserve::ModelMetadata meta = MetadataOf(model);
  if (request.inputs.size() != 1 || request.inputs[0].name != meta.inputs[0].name) {
    return Status::InvalidArgument("model " + model + " takes one input named \"" + meta.inputs[0].name + "\"");
  }
  const Tensor& x = request.inputs[0].tensor;
  if (x.dtype() != meta.inputs[0].dtype || x.rank() != static_cast<int64_t>(meta.inputs[0].shape.size())) {
    return Status::InvalidArgument("input \"" + meta.inputs[0].name + "\": wrong datatype or rank");
  }
  for (size_t i = 1; i < meta.inputs[0].shape.size(); ++i) {
    if (x.dim(i) != meta.inputs[0].shape[i]) {
      return Status::InvalidArgument("input \"" + meta.inputs[0].name + "\": shape " + ShapeToString(x.shape()) +
                                     " does not fit " + ShapeToString(meta.inputs[0].shape));
    }
  }
  const int64_t n = x.dim(0);
  std::vector<kserve::NamedTensor> outputs;
  if (model == "double") {
    Tensor y(DataType::kF32, x.shape());
    for (int64_t i = 0; i < x.element_count(); ++i) y.data<float>()[i] = 2 * x.data<float>()[i];
    outputs.push_back({"y", std::move(y)});
  } else if (model == "image") {
    Tensor mean(DataType::kF32, {n, 1});
    Tensor scores(DataType::kF32, {n, 10});
    const int64_t per = 28 * 28;
    for (int64_t row = 0; row < n; ++row) {
      double sum = 0;
      for (int64_t i = 0; i < per; ++i) sum += x.data<float>()[row * per + i];
      const double m = sum / per;
      mean.data<float>()[row] = static_cast<float>(m);
      const int64_t cls = std::clamp<int64_t>(static_cast<int64_t>(std::floor(m * 10)), 0, 9);
      scores.data<float>()[row * 10 + cls] = 1.0f;
    }
    outputs.push_back({"mean", std::move(mean)});
    outputs.push_back({"scores", std::move(scores)});
  } else {
    Tensor sum(DataType::kS64, {n, 1});
    for (int64_t row = 0; row < n; ++row) {
      int64_t s = 0;
      for (int64_t i = 0; i < 3; ++i) s += x.data<uint8_t>()[row * 3 + i];
      sum.data<int64_t>()[row] = s;
    }
    outputs.push_back({"sum", std::move(sum)});
  }
  return outputs;
}

}  // namespace

Result<std::unique_ptr<FakeFrontend>> FakeFrontend::Create() {
  std::unique_ptr<FakeFrontend> f(new FakeFrontend());
  PPML_ASSIGN_OR_RETURN(f->platform_key_, enclave::GeneratePlatformKey());
  PPML_ASSIGN_OR_RETURN(f->other_platform_key_, enclave::GeneratePlatformKey());
  PPML_ASSIGN_OR_RETURN(f->platform_public_pem_, enclave::PlatformPublicKeyToPem(f->platform_key_.get()));
  enclave::EnclaveIdentity identity;
  identity.code_version = "ppml fake front-end (tests)";
  PPML_ASSIGN_OR_RETURN(f->measurement_, enclave::ComputeMeasurement(identity));
  PPML_ASSIGN_OR_RETURN(f->enclave_keys_, crypto::X25519GenerateKeyPair());
  PPML_ASSIGN_OR_RETURN(f->other_keys_, crypto::X25519GenerateKeyPair());
  return f;
}

TestReply FakeFrontend::Handle(const TestRequest& request) {
  if (request.method == "GET" && request.path == "/v2/attestation") return Attest(request);
  const std::string prefix = "/v2/models/";
  if (request.path.rfind(prefix, 0) == 0) {
    std::string rest = request.path.substr(prefix.size());
    const std::string suffix = "/infer";
    const bool infer = rest.size() > suffix.size() && rest.compare(rest.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (infer) rest.resize(rest.size() - suffix.size());
    if (MetadataOf(rest).inputs.empty()) return PlainError(404, "unknown model \"" + rest + "\"");
    if (infer && request.method == "POST") return Infer(request, rest);
    if (!infer && request.method == "GET") return Metadata(rest);
  }
  return PlainError(404, "no route for " + request.method + " " + request.path);
}

TestReply FakeFrontend::Attest(const TestRequest& request) {
  const std::optional<std::string> nonce_hex = request.QueryParam("nonce");
  if (!nonce_hex) return PlainError(400, "nonce missing");
  Result<crypto::Bytes> nonce = crypto::FromHex(*nonce_hex);
  if (!nonce.ok()) return PlainError(400, "nonce: " + nonce.status().message());
  const Attack attack = attack_.load();
  crypto::Bytes quoted_nonce = *nonce;
  if (attack == Attack::kReplayedNonce) quoted_nonce.assign(32, 0x42);
  const EVP_PKEY* signer = attack == Attack::kOtherPlatform ? other_platform_key_.get() : platform_key_.get();
  enclave::Measurement measurement = measurement_;
  if (attack == Attack::kWrongMeasurement) measurement[0] ^= 1;
  std::optional<int64_t> timestamp;
  if (attack == Attack::kStaleQuote) timestamp = enclave::UnixNow() - 3600;
  const crypto::Bytes signer_id(32, 7);
  Result<enclave::Quote> quote =
      enclave::SignQuote(signer, measurement, signer_id, enclave_keys_.public_key, quoted_nonce, timestamp);
  if (!quote.ok()) return PlainError(400, quote.status().message());
  enclave::AttestationDocument doc;
  doc.quote = *quote;
  doc.enclave_public_key = attack == Attack::kKeySwap ? other_keys_.public_key : enclave_keys_.public_key;
  doc.nonce = quoted_nonce;
  return JsonReply(200, enclave::AttestationDocumentToJson(doc));
}

TestReply FakeFrontend::Metadata(const std::string& model) {
  return JsonReply(200, kserve::EncodeModelMetadata(MetadataOf(model)));
}

TestReply FakeFrontend::Infer(const TestRequest& request, const std::string& model) {
  const std::optional<std::string> enc = request.Header(ehbp::kEncapsulatedKeyHeader);
  if (!enc) return PlainError(400, "Ehbp-Encapsulated-Key missing");
  const crypto::ByteSpan body(reinterpret_cast<const uint8_t*>(request.body.data()), request.body.size());
  Result<ehbp::DecryptedRequest> decrypted = ehbp::DecryptRequest(*enc, body, enclave_keys_.private_key.span());
  if (!decrypted.ok()) return PlainError(400, "request does not decrypt: " + decrypted.status().message());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!seen_encapsulated_keys_.insert(*enc).second) return PlainError(409, "replayed request");
  }
  std::optional<size_t> json_length;
  if (std::optional<std::string> h = request.Header(kserve::kHeaderLengthHeader)) json_length = std::stoul(*h);

  int status = 200;
  std::string error;
  kserve::EncodedBody reply_body{};
  Result<kserve::InferRequest> parsed = kserve::ParseInferRequest(decrypted->plaintext, json_length);
  if (!parsed.ok()) {
    status = 400;
    error = parsed.status().message();
  } else {
    Result<std::vector<kserve::NamedTensor>> outputs = Run(model, *parsed);
    if (!outputs.ok()) {
      status = 400;
      error = outputs.status().message();
    } else {
      kserve::InferResponse response;
      response.model_name = attack_.load() == Attack::kOtherModel ? model + "-other" : model;
      response.id = parsed->id;
      response.outputs = std::move(*outputs);
      Result<kserve::EncodedBody> encoded = kserve::EncodeInferResponse(response, *parsed);
      if (!encoded.ok()) {
        status = 500;
        error = encoded.status().message();
      } else {
        reply_body = std::move(*encoded);
      }
    }
  }
  if (status != 200) {
    const std::string json = kserve::ErrorJson(error);
    reply_body.body.assign(json.begin(), json.end());
    reply_body.json_length.reset();
  }
  const bool has_json_length = reply_body.json_length.has_value();
  const size_t json_length_value = reply_body.json_length.value_or(0);
  ++inferences_;
  HttpHeaders headers = {{"Content-Type", "application/octet-stream"}, {"X-Request-Id", "fake-" + std::to_string(inferences_.load())}};
  if (attack_.load() == Attack::kPlaintextReply) {
    return {MakeResponse(status, headers, std::string(reply_body.body.begin(), reply_body.body.end()))};
  }
  Result<ehbp::EncryptedResponse> encrypted = ehbp::EncryptResponse(decrypted->server_state, reply_body.body);
  if (!encrypted.ok()) return PlainError(500, encrypted.status().message());
  if (attack_.load() == Attack::kTamperedReply && encrypted->body.size() > 8) encrypted->body[8] ^= 1;
  headers.emplace_back(std::string(ehbp::kResponseNonceHeader), encrypted->response_nonce_header_value);
  if (has_json_length) headers.emplace_back(std::string(kserve::kHeaderLengthHeader), std::to_string(json_length_value));
  return {MakeResponse(status, headers, std::string(encrypted->body.begin(), encrypted->body.end()))};
}

}  // namespace ppml::client::testing
