// ppml model quantize --model m.onnx --calib SPEC --method minmax|percentile|entropy --out m.int8.onnx
//
// Post-training quantization: calibrates activation ranges on SPEC
// (fashion-mnist:train:N, random:N, or a folder of .npy files), then writes a
// standard QDQ ONNX model (QuantizeLinear/DequantizeLinear pairs, s8
// per-channel weights) that this engine runs at INT8 speed and other
// runtimes can read. The per-layer precision summary goes to stderr.
//
// ppml model seal --model m.onnx --quote quote.json --platform-pubkey platform.pub.pem
//                 --measurement HEX --out m.ppmlpkg [--model-name NAME] [--max-age-s N] [--nonce HEX]
//
// The model owner's step (enclave_sim/package.h): verifies the enclave's
// attestation document (pinned platform key, expected base measurement,
// freshness) and only then encrypts the model for the enclave key it attests.
//
// ppml model inspect --package m.ppmlpkg [--json]
//
// Prints a package's manifest without decrypting anything.
//
// ppml model uint8-input --model m.onnx --out m.u8.onnx [--mean M,...] [--std S,...] [--pixel-scale 255]
//
// Makes the model take its images as uint8 pixels and normalize them itself
// (engine/uint8_input.h): clients then send a quarter of the bytes.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include "common/file_io.h"
#include "common/json_line.h"
#include "enclave_sim/attestation.h"
#include "enclave_sim/package.h"
#include "engine/uint8_input.h"
#include "int8/quantize.h"
#include "tools/cli_support.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {

constexpr const char* kCommand = "model quantize";

struct QuantizeCommandOptions {
  std::string model;
  std::string calibration;
  std::string method = "entropy";
  std::string out;
  int threads = 2;
  bool keep_first_fp32 = false;
};

int RunQuantize(const QuantizeCommandOptions& o) {
  Result<int8::CalibrationMethod> method = int8::ParseCalibrationMethod(o.method);
  if (!method.ok()) return ReportError(kCommand, method.status().message(), kExitUsage);
  Result<std::string> bytes = int8::ReadModelBytes(o.model);
  if (!bytes.ok()) return ReportError(kCommand, bytes.status());
  engine::SetThreads(o.threads);
  int8::QuantizeOptions options = DefaultQuantizeOptions();
  options.keep_first_conv_fp32 = o.keep_first_fp32;
  Result<int8::QuantizedModel> quantized =
      int8::QuantizeModel(*bytes, o.calibration, *method, options, CalibrateOptionsWithProgress(o.threads));
  if (!quantized.ok()) return ReportError(kCommand, quantized.status());
  std::cerr << quantized->summary.ToTable();
  std::ofstream out(o.out, std::ios::binary | std::ios::trunc);
  out.write(quantized->onnx_bytes.data(), static_cast<std::streamsize>(quantized->onnx_bytes.size()));
  if (!out) return ReportError(kCommand, Status::IoError(o.out + ": cannot write the quantized model"));
  std::cout << "wrote " << o.out << " (" << quantized->onnx_bytes.size() << " bytes, "
            << quantized->summary.int8_nodes << " int8 and " << quantized->summary.fp32_nodes << " fp32 nodes)"
            << std::endl;
  return kExitOk;
}

// ---- seal ----------------------------------------------------------------------

struct SealCommandOptions {
  std::string model;
  std::string quote;
  std::string platform_public_key;
  std::string measurement;
  std::string out;
  std::string model_name;  // default: the model file's stem
  bool confidential = false;
  int64_t max_age_seconds = 86400;
  std::string nonce;  // hex; when given, the document must answer it
};

Result<std::string> ReadTextFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open the " + std::string(what));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Status::IoError(path + ": cannot read the " + std::string(what));
  return text;
}

Status WritePackage(const std::string& path, const crypto::Bytes& package) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(package.data()), static_cast<std::streamsize>(package.size()));
  out.close();
  if (!out) return Status::IoError(path + ": cannot write the package");
  return Status::Ok();
}

int RunSeal(const SealCommandOptions& o) {
  constexpr std::string_view kSeal = "model seal";
  Result<enclave::Measurement> measurement = enclave::MeasurementFromHex(o.measurement);
  if (!measurement.ok()) return ReportError(kSeal, "--measurement: " + measurement.status().message(), kExitUsage);
  crypto::Bytes nonce;
  if (!o.nonce.empty()) {
    Result<crypto::Bytes> parsed = crypto::FromHex(o.nonce);
    if (!parsed.ok()) return ReportError(kSeal, "--nonce: " + parsed.status().message(), kExitUsage);
    nonce = std::move(*parsed);
  }

  // Everything below is about files: failures, never usage errors.
  Result<std::string> quote_json = ReadTextFile(o.quote, "attestation document");
  if (!quote_json.ok()) return ReportError(kSeal, quote_json.status().message(), kExitFailure);
  Result<enclave::AttestationDocument> document = enclave::AttestationDocumentFromJson(*quote_json);
  if (!document.ok()) return ReportError(kSeal, o.quote + ": " + document.status().message(), kExitFailure);
  Result<crypto::EvpPkeyPtr> platform = enclave::LoadPlatformPublicKeyPem(o.platform_public_key);
  if (!platform.ok()) return ReportError(kSeal, platform.status().message(), kExitFailure);
  Status verified = enclave::VerifyAttestationDocument(*document, platform->get(), *measurement, o.max_age_seconds,
                                                       enclave::UnixNow(), nonce);
  if (!verified.ok()) {
    return ReportError(kSeal,
                       "refusing to seal: " + o.quote + " does not attest the expected enclave: " + verified.message(),
                       kExitFailure);
  }

  Result<std::string> model = int8::ReadModelBytes(o.model);
  if (!model.ok()) return ReportError(kSeal, model.status().message(), kExitFailure);
  const std::string name = o.model_name.empty() ? std::filesystem::path(o.model).stem().string() : o.model_name;
  Result<crypto::Bytes> package = enclave::SealModel(
      crypto::ByteSpan(reinterpret_cast<const uint8_t*>(model->data()), model->size()), name,
      document->enclave_public_key, o.confidential);
  if (!package.ok()) return ReportError(kSeal, o.model + ": " + package.status().message(), kExitFailure);
  Result<enclave::PackageView> view = enclave::OpenPackage(*package);
  if (!view.ok()) return ReportError(kSeal, view.status());
  Result<enclave::Sha256Digest> manifest_hash = enclave::ManifestHash(*view);
  if (!manifest_hash.ok()) return ReportError(kSeal, manifest_hash.status());
  Status written = WritePackage(o.out, *package);
  if (!written.ok()) return ReportError(kSeal, written.message(), kExitFailure);
  std::cout << "verified " << o.quote << ": measurement " << enclave::ToHex(*measurement) << ", enclave key "
            << enclave::ToHex(document->enclave_public_key) << "\n"
            << "wrote " << o.out << " (model '" << name << "', " << package->size() << " bytes, "
            << view->chunk_count() << " chunks: the graph and " << view->chunk_count() - 1 << " tensors)\n"
            << "manifest_sha256=" << enclave::ToHex(*manifest_hash) << std::endl;
  return kExitOk;
}

// ---- inspect -------------------------------------------------------------------

struct InspectCommandOptions {
  std::string package;
  bool json = false;
};

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i > 0 ? "," : "") << shape[i];
  out << "]";
  return out.str();
}

// `text` left-aligned in a column `width` wide, plus two spaces of gutter.
std::string Column(std::string_view text, size_t width) {
  std::string out(text);
  out.resize(std::max(width, text.size()) + 2, ' ');
  return out;
}

void PrintChunkTable(const enclave::PackageManifest& manifest) {
  size_t layer_width = 5, tensor_width = 6, shape_width = 5;
  for (const enclave::PackageChunk& c : manifest.chunks) {
    layer_width = std::max(layer_width, c.layer.size());
    tensor_width = std::max(tensor_width, c.tensor.size());
    shape_width = std::max(shape_width, ShapeText(c.shape).size());
  }
  std::cout << std::setw(5) << "index" << "  " << Column("kind", 6) << Column("layer", layer_width)
            << Column("tensor", tensor_width) << Column("dtype", 10) << Column("shape", shape_width) << "bytes\n";
  for (const enclave::PackageChunk& c : manifest.chunks) {
    std::cout << std::setw(5) << c.index << "  " << Column(enclave::ChunkKindName(c.kind), 6)
              << Column(c.layer, layer_width) << Column(c.tensor, tensor_width) << Column(c.dtype, 10)
              << Column(ShapeText(c.shape), shape_width) << c.plaintext_length() << "\n";
  }
}

int RunInspect(const InspectCommandOptions& o) {
  constexpr std::string_view kInspect = "model inspect";
  Result<crypto::Bytes> file = enclave::ReadPackageFile(o.package);
  if (!file.ok()) return ReportError(kInspect, file.status().message(), kExitFailure);
  Result<enclave::PackageView> view = enclave::OpenPackage(*file);
  if (!view.ok()) return ReportError(kInspect, o.package + ": " + view.status().message(), kExitFailure);
  Result<enclave::Sha256Digest> manifest_hash = enclave::ManifestHash(*view);
  if (!manifest_hash.ok()) return ReportError(kInspect, manifest_hash.status());
  const enclave::PackageManifest& m = view->manifest();
  uint64_t tensor_bytes = 0;
  for (const enclave::PackageChunk& c : m.chunks) {
    if (c.kind == enclave::ChunkKind::kTensor) tensor_bytes += c.plaintext_length();
  }
  const uint64_t graph_bytes = m.chunks[0].plaintext_length();
  if (o.json) {
    const crypto::ByteSpan manifest = view->manifest_bytes();
    JsonLine json;
    json.Add("package", o.package)
        .Add("file_bytes", view->file_size())
        .Add("manifest_sha256", enclave::ToHex(*manifest_hash))
        .Add("chunks", view->chunk_count())
        .Add("tensors", view->chunk_count() - 1)
        .Add("graph_bytes", graph_bytes)
        .Add("tensor_bytes", tensor_bytes)
        .AddRaw("manifest", std::string_view(reinterpret_cast<const char*>(manifest.data()), manifest.size()));
    std::cout << json.str() << std::endl;
    return kExitOk;
  }
  std::cout << "package          " << o.package << " (" << view->file_size() << " bytes, format version "
            << m.version << ")\n"
            << "model            " << m.model_name << "\n"
            << "source sha256    " << enclave::ToHex(m.source_sha256) << "\n"
            << "enclave key      " << enclave::ToHex(m.enclave_public_key) << " (X25519)\n"
            << "manifest sha256  " << enclave::ToHex(*manifest_hash) << " (" << view->manifest_bytes().size()
            << " bytes)\n\n";
  PrintChunkTable(m);
  std::cout << "\n" << view->chunk_count() << " chunks: graph " << graph_bytes << " bytes, "
            << view->chunk_count() - 1 << " tensors " << tensor_bytes << " bytes (plaintext; each chunk adds "
            << enclave::kChunkOverhead << " bytes of nonce and tag)" << std::endl;
  return kExitOk;
}

// ---- uint8-input ---------------------------------------------------------------

struct Uint8InputCommandOptions {
  std::string model;
  std::string out;
  engine::Uint8InputOptions rewrite;
};

int RunUint8Input(const Uint8InputCommandOptions& o) {
  constexpr const char* kUint8Command = "model uint8-input";
  Result<std::string> bytes = int8::ReadModelBytes(o.model);
  if (!bytes.ok()) return ReportError(kUint8Command, bytes.status());
  Result<std::string> rewritten = engine::WithUint8Input(*bytes, o.rewrite);
  if (!rewritten.ok()) return ReportError(kUint8Command, rewritten.status().WithContext(o.model));
  if (Status written = WriteFile(o.out, *rewritten); !written.ok()) return ReportError(kUint8Command, written);
  std::cout << "wrote " << o.out << " (" << rewritten->size() << " bytes): its input takes uint8 values v, "
            << "normalized inside as (v / " << o.rewrite.pixel_scale << " - mean) / std" << std::endl;
  return kExitOk;
}

}  // namespace

void AddModelCommands(CLI::App& app, int* exit_code) {
  CLI::App* model = app.add_subcommand("model", "Model preparation: quantize, uint8-input, seal, inspect");
  model->require_subcommand(1);
  auto o = std::make_shared<QuantizeCommandOptions>();
  CLI::App* quantize = model->add_subcommand("quantize", "Post-training INT8 quantization to a QDQ ONNX model");
  quantize->add_option("--model", o->model, "FP32 ONNX model")->required()->check(CLI::ExistingFile);
  quantize->add_option("--calib", o->calibration, "fashion-mnist:train:N, random:N, or a folder of .npy files")
      ->required();
  quantize->add_option("--method", o->method, "minmax, percentile or entropy")->capture_default_str();
  quantize->add_option("--out", o->out, "where to write the QDQ model")->required();
  quantize->add_option("--threads", o->threads, "oneDNN threads")->capture_default_str()->check(Positive());
  quantize->add_flag("--fp32-first-conv", o->keep_first_fp32,
                     "keep the first convolution (<= 4 input channels) FP32 (INT8 by default: faster, and no accuracy "
                     "lost on Fashion-MNIST)");
  quantize->callback([o, exit_code] { *exit_code = RunQuantize(*o); });

  auto u8 = std::make_shared<Uint8InputCommandOptions>();
  CLI::App* uint8_input = model->add_subcommand(
      "uint8-input", "Make a model take uint8 pixels and normalize them itself (a quarter of the bytes on the wire)");
  uint8_input->add_option("--model", u8->model, "ONNX model with one FLOAT input (FP32 or QDQ)")
      ->required()->check(CLI::ExistingFile);
  uint8_input->add_option("--out", u8->out, "where to write the rewritten model")->required();
  uint8_input->add_option("--mean", u8->rewrite.mean, "per-channel mean (dimension 1) of v / pixel-scale, or one value")
      ->delimiter(',')->capture_default_str();
  uint8_input->add_option("--std", u8->rewrite.std, "per-channel standard deviation, or one value")
      ->delimiter(',')->capture_default_str();
  uint8_input->add_option("--pixel-scale", u8->rewrite.pixel_scale, "what a pixel is divided by first")
      ->capture_default_str();
  uint8_input->callback([u8, exit_code] { *exit_code = RunUint8Input(*u8); });

  auto seal_options = std::make_shared<SealCommandOptions>();
  CLI::App* seal = model->add_subcommand(
      "seal", "Encrypt a model for an attested enclave (refused unless its attestation document verifies)");
  seal->add_option("--model", seal_options->model, "ONNX model")->required()->check(CLI::ExistingFile);
  seal->add_option("--quote", seal_options->quote, "the enclave's attestation document (JSON)")->required();
  seal->add_option("--platform-pubkey", seal_options->platform_public_key, "pinned platform public key (PEM)")
      ->required();
  seal->add_option("--measurement", seal_options->measurement,
                   "expected base measurement of the enclave, 64 hex digits")->required();
  seal->add_option("--out", seal_options->out, "where to write the package")->required();
  seal->add_option("--model-name", seal_options->model_name, "name in the manifest (default: the model file's stem)");
  seal->add_flag("--confidential", seal_options->confidential,
                 "forbid outsourcing its layers to an accelerator (which would see the weights)");
  seal->add_option("--max-age-s", seal_options->max_age_seconds, "oldest attestation accepted, in seconds")
      ->capture_default_str()->check(NonNegative());
  seal->add_option("--nonce", seal_options->nonce, "hex challenge the document must answer (optional)");
  seal->callback([seal_options, exit_code] { *exit_code = RunSeal(*seal_options); });

  auto inspect_options = std::make_shared<InspectCommandOptions>();
  CLI::App* inspect = model->add_subcommand("inspect", "Print a model package's manifest without decrypting it");
  inspect->add_option("--package", inspect_options->package, "model package (.ppmlpkg)")->required();
  inspect->add_flag("--json", inspect_options->json,
                    "one JSON line: totals and the manifest as stored (a chunk's plaintext is its length - 28)");
  inspect->callback([inspect_options, exit_code] { *exit_code = RunInspect(*inspect_options); });
}

}  // namespace ppml::tools
