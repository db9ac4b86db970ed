// ppml model quantize --model m.onnx --calib SPEC --method minmax|percentile|entropy --out m.int8.onnx
//
// Post-training quantization: calibrates activation ranges on SPEC
// (fashion-mnist:train:N, random:N, or a folder of .npy files), then writes a
// standard QDQ ONNX model (QuantizeLinear/DequantizeLinear pairs, s8
// per-channel weights) that this engine runs at INT8 speed and other
// runtimes can read. The per-layer precision summary goes to stderr.
#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>
#include <memory>

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
  bool keep_first_fp32 = true;
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

}  // namespace

void AddModelCommands(CLI::App& app, int* exit_code) {
  CLI::App* model = app.add_subcommand("model", "Model preparation: quantize");
  model->require_subcommand(1);
  auto o = std::make_shared<QuantizeCommandOptions>();
  CLI::App* quantize = model->add_subcommand("quantize", "Post-training INT8 quantization to a QDQ ONNX model");
  quantize->add_option("--model", o->model, "FP32 ONNX model")->required()->check(CLI::ExistingFile);
  quantize->add_option("--calib", o->calibration, "fashion-mnist:train:N, random:N, or a folder of .npy files")
      ->required();
  quantize->add_option("--method", o->method, "minmax, percentile or entropy")->capture_default_str();
  quantize->add_option("--out", o->out, "where to write the QDQ model")->required();
  quantize->add_option("--threads", o->threads, "oneDNN threads")->capture_default_str()->check(Positive());
  quantize->add_flag("!--int8-first-conv", o->keep_first_fp32,
                     "quantize the first convolution too (kept FP32 by default: it costs accuracy and buys little)");
  quantize->callback([o, exit_code] { *exit_code = RunQuantize(*o); });
}

}  // namespace ppml::tools
