// ppml infer --url URL --model M --input FILE (.npy | .png | .json)
//            --platform-pubkey PEM [--measurement HEX] [--ca PEM]
//            [--cert PEM --key PEM] [--binary] [--json] [--timeout S]
//   Attests the enclave behind URL (fresh nonce, quote verified under the
//   pinned platform key, the measurement when given), encrypts one KServe v2
//   request to the attested key (HPKE/EHBP), sends it, decrypts the reply and
//   prints each output: name, datatype, shape, first values, and the top-1
//   class of each row of an [N, C] FP32 output.
//     .npy   one tensor for the model's first input (GET /v2/models/{m});
//            a batch dimension of 1 is added when the model's rank is one more
//     .png   decoded for the model's first input (client/image.h)
//     .json  a KServe v2 request body, sent as is
//   --binary sends .npy/.png inputs and asks for outputs as binary tensor data.
//   With --json the last stdout line is
//     {"model","outputs":[{"name","shape","datatype","argmax"}],"latency_ms","measurement"}
//   argmax: the top-1 index of each row for an [N, C] FP32 output, else null;
//   latency_ms: encrypt + round trip + decrypt of the inference (not the
//   attestation).
//
// ppml attest --url URL --platform-pubkey PEM [--measurement HEX] [--model M]
//             [--ca PEM] [--cert PEM --key PEM] [--json]
//   Fetches a quote for a fresh nonce and prints the verified fields
//   (measurement, signer, timestamp, enclave key); exits 1 with the reason
//   when it is rejected. With --json the last stdout line is
//     {"url","measurement","measurement_pinned","signer_id","timestamp_unix",
//      "enclave_public_key","nonce"}
//
// --url, --ca, --platform-pubkey and --measurement default to the environment
// variables PPML_URL, PPML_CA, PPML_PLATFORM_PUBKEY and PPML_MEASUREMENT (the
// fields of `ppml serve`'s ready line). Exit codes: 0 ok, 1 the server, the
// attestation or the inference failed, 2 a flag or an input file is wrong.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <unistd.h>

#include "client/client.h"
#include "client/image.h"
#include "common/file_io.h"
#include "common/json_line.h"
#include "common/kserve.h"
#include "common/npy.h"
#include "tools/cli_support.h"
#include "tools/client_flags.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {


// A failure of the server, the attestation or the inference: exit 1 (flags
// and input files were checked before, as usage errors).
int Fail(std::string_view command, const Status& status) {
  return ReportError(command, status.message(), kExitFailure);
}

std::string UnixToIso(int64_t t) {
  std::time_t time = static_cast<std::time_t>(t);
  std::tm tm{};
  if (gmtime_r(&time, &tm) == nullptr) return "?";
  std::ostringstream out;
  out << std::put_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  return out.str();
}

void PrintMeasurement(const client::PpmlClient& client) {
  const std::string hex = crypto::ToHex(client.measurement());
  if (client.measurement_pinned()) {
    std::cout << "measurement: " << hex << " (matches the pinned value)\n";
  } else {
    std::cout << "measurement: " << hex << " (NOT PINNED: pass --measurement " << hex << " to require it)\n";
  }
}

// ---- ppml attest ------------------------------------------------------------------------

struct AttestFlags {
  ConnectFlags connect;
  bool json = false;
};

int RunAttest(const AttestFlags& flags) {
  constexpr const char* kCommand = "attest";
  if (Status s = CheckConnectFlags(flags.connect); !s.ok()) return ReportError(kCommand, s.message(), kExitUsage);
  Result<client::PpmlClient> client = client::PpmlClient::Connect(OptionsFrom(flags.connect));
  if (!client.ok()) return Fail(kCommand, client.status());
  const enclave::AttestationDocument& doc = client->attestation();
  const int64_t age = enclave::UnixNow() - doc.quote.timestamp_unix;
  std::cout << "url: " << client->url() << "\n";
  PrintMeasurement(*client);
  std::cout << "signer_id: " << crypto::ToHex(doc.quote.signer_id) << "\n"
            << "timestamp: " << doc.quote.timestamp_unix << " (" << UnixToIso(doc.quote.timestamp_unix) << ", "
            << age << " s old)\n"
            << "enclave_public_key: " << crypto::ToHex(doc.enclave_public_key) << " (X25519, HPKE)\n"
            << "nonce: " << crypto::ToHex(doc.nonce) << "\n"
            << "verified: quote signature under " << flags.connect.platform_pubkey
            << "; report data binds the enclave key to this fresh nonce\n";
  if (flags.json) {
    JsonLine json;
    json.Add("url", client->url())
        .Add("measurement", crypto::ToHex(client->measurement()))
        .Add("measurement_pinned", client->measurement_pinned())
        .Add("signer_id", crypto::ToHex(doc.quote.signer_id))
        .Add("timestamp_unix", doc.quote.timestamp_unix)
        .Add("enclave_public_key", crypto::ToHex(doc.enclave_public_key))
        .Add("nonce", crypto::ToHex(doc.nonce));
    std::cout << json.str() << "\n";
  }
  std::cout.flush();
  return kExitOk;
}

// ---- ppml infer -------------------------------------------------------------------------

struct InferFlags {
  ConnectFlags connect;
  std::string input;
  bool binary = false;
  bool json = false;
};

std::string Extension(const std::string& path) {
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

// The .npy tensor shaped for `input`: a leading 1 is added when the model's
// rank is one more; every fixed dimension must match.
Result<Tensor> FitNpy(Tensor tensor, const kserve::TensorMetadata& input, const std::string& path) {
  const std::string where = path + ": tensor " + std::string(DataTypeName(tensor.dtype())) + " " +
                            ShapeToString(tensor.shape()) + " does not fit model input \"" + input.name +
                            "\" " + std::string(kserve::DatatypeName(input.dtype)) + " " + ShapeToString(input.shape);
  if (tensor.dtype() != input.dtype) {
    return Status::InvalidArgument(where + ": save it with the model's datatype (" + NumpyAstype(input.dtype) + ")");
  }
  if (tensor.rank() + 1 == static_cast<int64_t>(input.shape.size())) {
    Shape shape = tensor.shape();
    shape.insert(shape.begin(), 1);
    PPML_ASSIGN_OR_RETURN(tensor, tensor.Reshaped(shape));
  }
  if (tensor.rank() != static_cast<int64_t>(input.shape.size())) {
    return Status::InvalidArgument(where + ": the ranks differ");
  }
  for (size_t i = 0; i < input.shape.size(); ++i) {
    if (input.shape[i] != -1 && input.shape[i] != tensor.dim(i)) {
      return Status::InvalidArgument(where + ": dimension " + std::to_string(i) + " differs");
    }
  }
  return tensor;
}

// The output's first values, "0.1, 0.2, ..." (at most `count`).
std::string FirstValues(const Tensor& t, int64_t count) {
  std::ostringstream out;
  out << std::setprecision(6);
  const int64_t n = std::min(count, t.element_count());
  for (int64_t i = 0; i < n; ++i) out << (i ? ", " : "") << t.ElementAsDouble(i);
  if (t.element_count() > n) out << ", ... (" << t.element_count() << " values)";
  return out.str();
}

// Top-1 index of each row of an [N, C] FP32 tensor, or empty.
std::vector<int64_t> RowArgmax(const Tensor& t) {
  std::vector<int64_t> result;
  if (t.dtype() != DataType::kF32 || t.rank() != 2 || t.dim(1) < 1) return result;
  const float* data = t.data<float>();
  for (int64_t row = 0; row < t.dim(0); ++row) {
    const float* begin = data + row * t.dim(1);
    result.push_back(std::max_element(begin, begin + t.dim(1)) - begin);
  }
  return result;
}

int RunInfer(const InferFlags& flags) {
  constexpr const char* kCommand = "infer";
  if (Status s = CheckConnectFlags(flags.connect); !s.ok()) return ReportError(kCommand, s.message(), kExitUsage);
  if (flags.connect.model.empty()) return ReportError(kCommand, "--model is empty", kExitUsage);
  const std::string ext = Extension(flags.input);
  if (ext != ".npy" && ext != ".png" && ext != ".json") {
    return ReportError(kCommand, "--input " + flags.input + ": expected a .npy, .png or .json file", kExitUsage);
  }
  if (ext == ".json" && flags.binary) {
    return ReportError(kCommand, "--binary applies to .npy and .png inputs; a .json request body is sent as is",
                       kExitUsage);
  }
  if (ext == ".png" && !client::PngSupported()) {
    return ReportError(kCommand, client::PngToTensor(flags.input, {}).status().message(), kExitUsage);
  }
  // The input file is read before the network is touched: a bad file is a usage error.
  std::string json_body;
  Result<Tensor> npy = Status::Internal("unset");
  if (ext == ".json") {
    Result<std::string> body = ReadFile(flags.input);
    if (!body.ok()) return ReportError(kCommand, "--input: " + body.status().message(), kExitUsage);
    json_body = std::move(*body);
    Result<kserve::InferRequest> parsed = kserve::ParseInferRequest(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(json_body.data()), json_body.size()),
        std::nullopt);
    if (!parsed.ok()) return ReportError(kCommand, flags.input + ": " + parsed.status().message(), kExitUsage);
  } else if (ext == ".npy") {
    npy = ReadNpyFile(flags.input);
    if (!npy.ok()) return ReportError(kCommand, "--input: " + npy.status().message(), kExitUsage);
  } else if (::access(flags.input.c_str(), R_OK) != 0) {
    return ReportError(kCommand, "--input " + flags.input + ": cannot read the file", kExitUsage);
  }

  Result<client::PpmlClient> client = client::PpmlClient::Connect(OptionsFrom(flags.connect));
  if (!client.ok()) return Fail(kCommand, client.status());
  if (!client->measurement_pinned()) {
    std::cerr << "ppml infer: warning: measurement not pinned; the enclave attested "
              << crypto::ToHex(client->measurement()) << " (pass --measurement to require it)" << std::endl;
  }

  kserve::InferRequest request;
  request.binary_output = flags.binary;
  if (ext != ".json") {
    Result<kserve::ModelMetadata> metadata = client->GetModelMetadata();
    if (!metadata.ok()) return Fail(kCommand, metadata.status());
    if (metadata->inputs.empty()) {
      return Fail(kCommand, Status::FailedPrecondition(client->url() + ": model " + flags.connect.model +
                                                       " lists no inputs"));
    }
    const kserve::TensorMetadata& input = metadata->inputs.front();
    Result<Tensor> tensor = ext == ".npy" ? FitNpy(std::move(npy).value(), input, flags.input)
                                          : client::PngToTensor(flags.input, input);
    if (!tensor.ok()) return ReportError(kCommand, tensor.status().message(), kExitUsage);
    request.inputs.push_back({input.name, std::move(tensor).value()});
  }

  const auto start = std::chrono::steady_clock::now();
  Result<kserve::InferResponse> response =
      ext == ".json" ? client->InferBody(std::span<const uint8_t>(
                                             reinterpret_cast<const uint8_t*>(json_body.data()), json_body.size()),
                                         std::nullopt)
                     : client->Infer(request, flags.binary);
  const double latency_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!response.ok()) return Fail(kCommand, response.status());

  std::cout << "model: " << response->model_name << "\n";
  PrintMeasurement(*client);
  std::cout << "latency: " << std::fixed << std::setprecision(2) << latency_ms << " ms" << std::defaultfloat << "\n";
  std::string outputs_json = "[";
  for (size_t i = 0; i < response->outputs.size(); ++i) {
    const kserve::NamedTensor& output = response->outputs[i];
    const Tensor& t = output.tensor;
    std::cout << "output \"" << output.name << "\" " << std::string(kserve::DatatypeName(t.dtype())) << " " << ShapeToString(t.shape())
              << ": " << FirstValues(t, 10) << "\n";
    const std::vector<int64_t> argmax = RowArgmax(t);
    for (size_t row = 0; row < argmax.size() && row < 10; ++row) {
      std::cout << "  row " << row << ": top-1 class " << argmax[row] << " (score "
                << t.data<float>()[static_cast<int64_t>(row) * t.dim(1) + argmax[row]] << ")\n";
    }
    std::string argmax_json = "null";
    if (!argmax.empty()) {
      argmax_json = "[";
      for (size_t row = 0; row < argmax.size(); ++row) {
        if (row > 0) argmax_json += ',';
        argmax_json += std::to_string(argmax[row]);
      }
      argmax_json += "]";
    }
    JsonLine entry;
    entry.Add("name", output.name)
        .AddRaw("shape", ShapeToString(t.shape()))
        .Add("datatype", std::string(kserve::DatatypeName(t.dtype())))
        .AddRaw("argmax", argmax_json);
    if (i > 0) outputs_json += ',';
    outputs_json += entry.str();
  }
  outputs_json += "]";
  if (flags.json) {
    JsonLine json;
    json.Add("model", response->model_name)
        .AddRaw("outputs", outputs_json)
        .Add("latency_ms", latency_ms)
        .Add("measurement", crypto::ToHex(client->measurement()));
    std::cout << json.str() << "\n";
  }
  std::cout.flush();
  return kExitOk;
}

}  // namespace

void AddClientCommands(CLI::App& app, int* exit_code) {
  auto attest_flags = std::make_shared<AttestFlags>();
  CLI::App* attest = app.add_subcommand(
      "attest", "Fetch and verify the enclave's quote for a fresh nonce; print measurement, signer, time, key");
  AddConnectFlags(*attest, attest_flags->connect);
  attest->add_option("--model", attest_flags->connect.model, "the model whose enclave to attest");
  attest->add_flag("--json", attest_flags->json, "end with one JSON line");
  attest->callback([attest_flags, exit_code] { *exit_code = RunAttest(*attest_flags); });

  auto infer_flags = std::make_shared<InferFlags>();
  CLI::App* infer = app.add_subcommand(
      "infer", "Attest the enclave, then run one encrypted inference (HPKE/EHBP, KServe v2) and print the outputs");
  AddConnectFlags(*infer, infer_flags->connect);
  infer->add_option("--model", infer_flags->connect.model, "the model to run")->required();
  infer->add_option("--input", infer_flags->input, "the input: .npy (first model input), .png, or a KServe v2 .json body")
      ->required();
  infer->add_flag("--binary", infer_flags->binary, "send the input and ask for outputs as binary tensor data");
  infer->add_flag("--json", infer_flags->json, "end with one JSON line");
  infer->callback([infer_flags, exit_code] { *exit_code = RunInfer(*infer_flags); });
}

}  // namespace ppml::tools
