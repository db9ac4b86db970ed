// ehbp_vector_tool: the C++ side of the Python client's cross-check
// (tests/client/python_vectors_test.py), with no server in between.
//
//   ehbp_vector_tool vectors
//     One JSON object on stdout:
//       {"recipient_sk","recipient_pk","ephemeral_sk",
//        "cases":[{"name","plaintext","chunk_size","enc","body","response_plaintext",
//                  "response_chunk_size","response_nonce","response_body","json_length"}...],
//        "attestation":{"platform_public_key_pem","other_platform_public_key_pem",
//                       "document","stale_document","nonce","measurement","now","max_age"}}
//     bytes in lowercase hex; the documents as JSON text. Requests are
//     EncryptRequest with the fixed ephemeral key, responses EncryptResponse
//     with a fixed nonce, so a second implementation must reproduce every
//     byte. The documents are signed now (and an hour ago) by a platform key
//     made for this run.
//
//   ehbp_vector_tool roundtrip --sk HEX --enc HEX --body FILE --out FILE
//                              [--json-length N]
//     The enclave's side for a request encrypted elsewhere: DecryptRequest,
//     kserve::ParseInferRequest, an echo model (every input back as an output
//     of the same name; binary as the request asks), EncodeInferResponse,
//     EncryptResponse (8 KiB frames) into FILE. Prints
//       {"response_nonce","json_length":N|null,"plaintext_sha256",
//        "inputs":[{"name","datatype","shape"}]}
//
// Exit 0, or 1 with "error: <status>" on stderr.
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "common/ehbp.h"
#include "common/json_line.h"
#include "common/kserve.h"
#include "enclave_sim/attestation.h"

namespace ppml {
namespace {

using crypto::Bytes;
using crypto::ToHex;

Bytes Digest(const std::string& label) { return crypto::Sha256(Bytes(label.begin(), label.end())).value(); }

struct Case {
  std::string name;
  Bytes plaintext;
  size_t chunk_size = ehbp::kDefaultChunkSize;
  Bytes response_plaintext;
  size_t response_chunk_size = ehbp::kDefaultChunkSize;
  std::optional<size_t> json_length;
};

Result<std::string> CaseJson(const Case& c, const crypto::X25519KeyPair& recipient, const Bytes& ephemeral,
                             const Bytes& response_nonce) {
  PPML_ASSIGN_OR_RETURN(ehbp::EncryptedRequest request,
                        ehbp::EncryptRequest(recipient.public_key, c.plaintext, c.chunk_size, ephemeral));
  PPML_ASSIGN_OR_RETURN(ehbp::DecryptedRequest server,
                        ehbp::DecryptRequest(request.encapsulated_key_header_value, request.body,
                                             recipient.private_key.span()));
  if (server.plaintext != c.plaintext) return Status::Internal(c.name + ": request does not round-trip");
  PPML_ASSIGN_OR_RETURN(ehbp::EncryptedResponse response,
                        ehbp::EncryptResponse(server.server_state, c.response_plaintext, c.response_chunk_size,
                                              response_nonce));
  PPML_ASSIGN_OR_RETURN(Bytes back, ehbp::DecryptResponse(request.client_state, response.response_nonce_header_value,
                                                          response.body));
  if (back != c.response_plaintext) return Status::Internal(c.name + ": response does not round-trip");
  JsonLine json;
  json.Add("name", c.name)
      .Add("plaintext", ToHex(c.plaintext))
      .Add("chunk_size", c.chunk_size)
      .Add("enc", request.encapsulated_key_header_value)
      .Add("body", ToHex(request.body))
      .Add("response_plaintext", ToHex(c.response_plaintext))
      .Add("response_chunk_size", c.response_chunk_size)
      .Add("response_nonce", response.response_nonce_header_value)
      .Add("response_body", ToHex(response.body));
  if (c.json_length) json.Add("json_length", *c.json_length);
  else json.AddNull("json_length");
  return json.str();
}

Bytes ToBytes(const kserve::EncodedBody& body) { return body.body; }

Result<std::string> Vectors() {
  // Fixed keys: X25519 takes any 32 bytes as a private key.
  const Bytes recipient_sk = Digest("ppml python vectors: recipient");
  const Bytes ephemeral_sk = Digest("ppml python vectors: ephemeral");
  crypto::X25519KeyPair recipient;
  recipient.private_key = crypto::SecretBytes(recipient_sk);
  PPML_ASSIGN_OR_RETURN(recipient.public_key, crypto::X25519PublicFromPrivate(recipient_sk));

  std::vector<Case> cases;
  {
    // A KServe JSON request and reply.
    kserve::InferRequest request;
    request.id = "vector-1";
    request.inputs.push_back({"x", Tensor::FromVector<float>({2, 3}, {0.5f, -1.25f, 3.0f, 1e-7f, 65504.0f, -0.0f})});
    request.inputs.push_back({"ids", Tensor::FromVector<int64_t>({2}, {-9007199254740993LL, 42})});
    PPML_ASSIGN_OR_RETURN(kserve::EncodedBody body, kserve::EncodeInferRequest(request, false));
    kserve::InferResponse response;
    response.model_name = "vectors";
    response.id = "vector-1";
    response.outputs.push_back({"y", Tensor::FromVector<float>({2, 2}, {0.25f, 0.75f, -3.5f, 1.0f / 3})});
    response.outputs.push_back({"k", Tensor::FromVector<int32_t>({1, 2}, {-7, 2147483647})});
    PPML_ASSIGN_OR_RETURN(kserve::EncodedBody reply, kserve::EncodeInferResponse(response, request));
    cases.push_back({"kserve_json", ToBytes(body), ehbp::kDefaultChunkSize, ToBytes(reply), ehbp::kDefaultChunkSize,
                     reply.json_length});
  }
  {
    // Binary tensors both ways (the reply's JSON length travels in a header).
    kserve::InferRequest request;
    request.binary_output = true;
    request.inputs.push_back({"u", Tensor::FromVector<uint8_t>({4}, {0, 1, 128, 255})});
    request.inputs.push_back({"s", Tensor::FromVector<int8_t>({2, 2}, {-128, -1, 0, 127})});
    PPML_ASSIGN_OR_RETURN(kserve::EncodedBody body, kserve::EncodeInferRequest(request, true));
    kserve::InferResponse response;
    response.model_name = "vectors";
    response.outputs.push_back({"y", Tensor::FromVector<float>({3}, {1.5f, -2.0f, 1e30f})});
    response.outputs.push_back({"n", Tensor::FromVector<int64_t>({2}, {-1, 1LL << 40})});
    PPML_ASSIGN_OR_RETURN(kserve::EncodedBody reply, kserve::EncodeInferResponse(response, request));
    Case c{"kserve_binary", ToBytes(body), 32, ToBytes(reply), 24, reply.json_length};
    cases.push_back(c);
  }
  {
    Bytes pattern(100), reply(40);
    for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i * 7 + 3);
    for (size_t i = 0; i < reply.size(); ++i) reply[i] = static_cast<uint8_t>(255 - i);
    cases.push_back({"multi_frame", pattern, 16, reply, 16, std::nullopt});
  }
  cases.push_back({"empty", Bytes{}, ehbp::kDefaultChunkSize, Bytes{}, ehbp::kDefaultChunkSize, std::nullopt});

  std::string cases_json = "[";
  for (size_t i = 0; i < cases.size(); ++i) {
    const Bytes nonce = Digest("ppml python vectors: response nonce " + std::to_string(i));
    PPML_ASSIGN_OR_RETURN(std::string json, CaseJson(cases[i], recipient, ephemeral_sk, nonce));
    cases_json += (i ? "," : "") + json;
  }
  cases_json += "]";

  // Attestation documents signed by a platform key made for this run.
  PPML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr platform, enclave::GeneratePlatformKey());
  PPML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr other, enclave::GeneratePlatformKey());
  PPML_ASSIGN_OR_RETURN(std::string platform_pem, enclave::PlatformPublicKeyToPem(platform.get()));
  PPML_ASSIGN_OR_RETURN(std::string other_pem, enclave::PlatformPublicKeyToPem(other.get()));
  enclave::EnclaveIdentity identity;
  identity.code_version = "ppml python vectors";
  identity.config = {"precision=fp32"};
  PPML_ASSIGN_OR_RETURN(enclave::Measurement measurement, enclave::ComputeMeasurement(identity));
  const Bytes nonce = Digest("ppml python vectors: attestation nonce");
  const Bytes signer(32, 0x5a);
  const int64_t now = enclave::UnixNow();
  auto document = [&](int64_t timestamp) -> Result<std::string> {
    PPML_ASSIGN_OR_RETURN(enclave::Quote quote,
                          enclave::SignQuote(platform.get(), measurement, signer, recipient.public_key, nonce,
                                             timestamp));
    enclave::AttestationDocument doc{quote, recipient.public_key, nonce};
    // Our own verifier accepts it (fresh) before Python is asked to.
    if (timestamp == now) {
      PPML_RETURN_IF_ERROR(enclave::VerifyAttestationDocument(doc, platform.get(), measurement, 300, now, nonce));
    }
    return enclave::AttestationDocumentToJson(doc);
  };
  PPML_ASSIGN_OR_RETURN(std::string fresh, document(now));
  PPML_ASSIGN_OR_RETURN(std::string stale, document(now - 3600));
  JsonLine attestation;
  attestation.Add("platform_public_key_pem", platform_pem)
      .Add("other_platform_public_key_pem", other_pem)
      .Add("document", fresh)
      .Add("stale_document", stale)
      .Add("nonce", ToHex(nonce))
      .Add("measurement", ToHex(measurement))
      .Add("now", now)
      .Add("max_age", 300);

  JsonLine out;
  out.Add("recipient_sk", ToHex(recipient_sk))
      .Add("recipient_pk", ToHex(recipient.public_key))
      .Add("ephemeral_sk", ToHex(ephemeral_sk))
      .AddRaw("cases", cases_json)
      .AddRaw("attestation", attestation.str());
  return out.str();
}

Result<std::string> Roundtrip(const std::map<std::string, std::string>& args) {
  auto get = [&](const std::string& key) -> Result<std::string> {
    auto it = args.find(key);
    if (it == args.end()) return Status::InvalidArgument("missing --" + key);
    return it->second;
  };
  PPML_ASSIGN_OR_RETURN(std::string sk_hex, get("sk"));
  PPML_ASSIGN_OR_RETURN(std::string enc, get("enc"));
  PPML_ASSIGN_OR_RETURN(std::string body_path, get("body"));
  PPML_ASSIGN_OR_RETURN(std::string out_path, get("out"));
  PPML_ASSIGN_OR_RETURN(Bytes sk, crypto::FromHex(sk_hex));
  std::ifstream in(body_path, std::ios::binary);
  if (!in) return Status::NotFound(body_path + ": cannot open");
  const Bytes body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::optional<size_t> json_length;
  if (auto it = args.find("json-length"); it != args.end()) json_length = std::stoul(it->second);

  PPML_ASSIGN_OR_RETURN(ehbp::DecryptedRequest decrypted, ehbp::DecryptRequest(enc, body, sk));
  PPML_ASSIGN_OR_RETURN(kserve::InferRequest request, kserve::ParseInferRequest(decrypted.plaintext, json_length));
  kserve::InferResponse response;
  response.model_name = "echo";
  response.id = request.id;
  std::string inputs_json = "[";
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    const kserve::NamedTensor& input = request.inputs[i];
    JsonLine entry;
    entry.Add("name", input.name)
        .Add("datatype", std::string(kserve::DatatypeName(input.tensor.dtype())))
        .AddRaw("shape", ShapeToString(input.tensor.shape()));
    inputs_json += (i ? "," : "") + entry.str();
    response.outputs.push_back({input.name, input.tensor.Clone()});
  }
  inputs_json += "]";
  PPML_ASSIGN_OR_RETURN(kserve::EncodedBody reply, kserve::EncodeInferResponse(response, request));
  PPML_ASSIGN_OR_RETURN(ehbp::EncryptedResponse encrypted,
                        ehbp::EncryptResponse(decrypted.server_state, reply.body, 8192));
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(encrypted.body.data()), static_cast<std::streamsize>(encrypted.body.size()));
  if (!out) return Status::IoError(out_path + ": write failed");
  PPML_ASSIGN_OR_RETURN(Bytes digest, crypto::Sha256(decrypted.plaintext));
  JsonLine json;
  json.Add("response_nonce", encrypted.response_nonce_header_value);
  if (reply.json_length) json.Add("json_length", *reply.json_length);
  else json.AddNull("json_length");
  json.Add("plaintext_sha256", ToHex(digest)).AddRaw("inputs", inputs_json);
  return json.str();
}

}  // namespace
}  // namespace ppml

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: ehbp_vector_tool vectors | roundtrip --sk HEX --enc HEX --body FILE --out FILE "
                 "[--json-length N]"
              << std::endl;
    return 2;
  }
  const std::string mode = argv[1];
  ppml::Result<std::string> result = ppml::Status::InvalidArgument("unknown mode " + mode);
  if (mode == "vectors") {
    result = ppml::Vectors();
  } else if (mode == "roundtrip") {
    std::map<std::string, std::string> args;
    for (int i = 2; i + 1 < argc; i += 2) {
      if (std::strncmp(argv[i], "--", 2) == 0) args[argv[i] + 2] = argv[i + 1];
    }
    result = ppml::Roundtrip(args);
  }
  if (!result.ok()) {
    std::cerr << "error: " << result.status().ToString() << std::endl;
    return 1;
  }
  std::cout << *result << std::endl;
  return 0;
}
