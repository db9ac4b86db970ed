// ppml run --model FILE.onnx --input x.npy [--input y.npy ...] [--output out.npy] [--literal-qdq]
//          [--no-depthwise-fusion] [--no-batch-split]
//
// One inference on inputs saved with np.save, for checking a model by hand
// against another framework. Prints each output's name, type and shape, its
// first values and the argmax (per row for a batch); writes the first output
// as .npy when --output is given.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>

#include "common/npy.h"
#include "engine/engine.h"
#include "tools/cli_support.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {

constexpr const char* kCommand = "run";
constexpr int64_t kValuesShown = 10;
constexpr int64_t kRowsShown = 16;

struct RunOptions {
  std::string model;
  std::vector<std::string> inputs;
  std::string output;
  int threads = 2;
  bool literal_qdq = false;
  bool fuse_depthwise = true;
  bool split_batch = true;
};

double ValueAt(const Tensor& tensor, int64_t i) { return tensor.ElementAsDouble(i); }

std::string FormatValue(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.6g", value);
  return buffer;
}

int64_t ArgMax(const Tensor& tensor, int64_t begin, int64_t end) {
  int64_t best = begin;
  for (int64_t i = begin + 1; i < end; ++i) {
    if (ValueAt(tensor, i) > ValueAt(tensor, best)) best = i;
  }
  return best - begin;
}

void PrintOutput(const engine::TensorInfo& info, const Tensor& tensor) {
  std::cout << "output " << info.name << ": " << DataTypeName(tensor.dtype()) << " " << ShapeToString(tensor.shape())
            << "\n  values:";
  const int64_t shown = std::min(tensor.element_count(), kValuesShown);
  for (int64_t i = 0; i < shown; ++i) std::cout << " " << FormatValue(ValueAt(tensor, i));
  if (tensor.element_count() > shown) std::cout << " ...";
  std::cout << "\n";
  if (tensor.element_count() == 0) return;
  if (tensor.rank() >= 2 && tensor.dim(0) > 0) {
    // A batch: one argmax per item, over everything after the batch dimension.
    const int64_t rows = tensor.dim(0);
    const int64_t row_size = tensor.element_count() / rows;
    std::cout << "  argmax per item:";
    for (int64_t r = 0; r < std::min(rows, kRowsShown); ++r) {
      std::cout << " " << ArgMax(tensor, r * row_size, (r + 1) * row_size);
    }
    if (rows > kRowsShown) std::cout << " ...";
    std::cout << "\n";
  } else {
    std::cout << "  argmax: " << ArgMax(tensor, 0, tensor.element_count()) << "\n";
  }
}

int RunModelOnce(const RunOptions& options) {
  engine::SetThreads(options.threads);
  engine::EngineOptions engine_options;
  engine_options.threads = options.threads;
  engine_options.literal_qdq = options.literal_qdq;
  engine_options.fuse_depthwise = options.fuse_depthwise;
  if (!options.split_batch) engine_options.split_batch_max_weight_bytes = 0;
  auto model = engine::Model::LoadFile(options.model, engine_options);
  if (!model.ok()) return ReportError(kCommand, model.status().message(), kExitFailure);
  const auto& wanted = (*model)->inputs();
  if (options.inputs.size() != wanted.size()) {
    std::string names;
    for (const auto& input : wanted) names += (names.empty() ? "" : ", ") + input.name;
    return ReportError(kCommand,
                       options.model + " takes " + std::to_string(wanted.size()) + " input(s) (" + names + "), got " +
                           std::to_string(options.inputs.size()) + " --input file(s); give them in that order",
                       kExitUsage);
  }
  std::vector<Tensor> inputs;
  for (const std::string& path : options.inputs) {
    Result<Tensor> tensor = ReadNpyFile(path);
    if (!tensor.ok()) return ReportError(kCommand, tensor.status().message(), kExitFailure);
    inputs.push_back(std::move(tensor).value());
  }
  auto outputs = (*model)->Run(inputs);
  if (!outputs.ok()) return ReportError(kCommand, options.model + ": " + outputs.status().message(), kExitFailure);
  for (size_t i = 0; i < outputs->size(); ++i) PrintOutput((*model)->outputs().at(i), (*outputs)[i]);
  if (!options.output.empty()) {
    if (outputs->empty()) return ReportError(kCommand, options.model + " produced no output to write", kExitFailure);
    Status written = WriteNpyFile(options.output, outputs->front());
    if (!written.ok()) return ReportError(kCommand, written.message(), kExitFailure);
    std::cout << "wrote " << options.output << "\n";
  }
  return kExitOk;
}

}  // namespace

void AddRunCommand(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* run = app.add_subcommand("run", "Run one inference on .npy inputs and print the outputs");
  run->add_option("--model", options->model, "ONNX model file")->required()->check(CLI::ExistingFile);
  run->add_option("--input", options->inputs, "input .npy file, once per model input, in the model's order")
      ->required()
      ->check(CLI::ExistingFile);
  run->add_option("--output", options->output, "write the first output to this .npy file");
  run->add_option("--threads", options->threads, "oneDNN threads")->check(Positive());
  run->add_flag("--literal-qdq", options->literal_qdq,
                "run a QDQ model's Quantize/DequantizeLinear nodes as written, in float (a reference for the INT8 path)");
  run->add_flag("!--no-depthwise-fusion", options->fuse_depthwise,
                "run each 3x3 depthwise convolution apart from the 1x1 convolution before it");
  run->add_flag("!--no-batch-split", options->split_batch, "run the batch whole on all threads, not one slice per thread");
  run->callback([options, exit_code] { *exit_code = RunModelOnce(*options); });
}

}  // namespace ppml::tools
