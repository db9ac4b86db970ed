// Helpers shared by the `ppml` commands: exit codes, error reporting,
// process statistics, latency summaries and model input shapes.
// Thread safety: free functions; call them from the command's thread.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/process.h"
#include "common/status.h"
#include "common/tensor.h"
#include "engine/engine.h"
#include "int8/quantize.h"

namespace ppml::tools {

// Process exit codes every command follows (scripts rely on them).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  // the work failed: a file, the model, a run, a quality bar
  kExitUsage = 2,    // the command line was wrong: a flag, a value, a combination
};

// Prints "ppml <command>: <message>" on stderr and returns `exit_code`.
int ReportError(std::string_view command, std::string_view message, int exit_code);
// The same for a Status: InvalidArgument counts as usage, anything else as failure.
int ReportError(std::string_view command, const Status& status);

// The one precision this build runs; anything else is a usage error whose
// message says when the others arrive.
Status CheckPrecision(std::string_view precision);

// How a command gets its model: FP32 as the file says, or INT8 quantized on
// the fly (calibrated on `calibration` with `method`; the per-layer summary
// goes to stderr).
struct ModelSource {
  std::string path;
  std::string precision = "fp32";
  std::string calibration;         // SPEC for int8: fashion-mnist:train:N, random:N, or a .npy folder
  std::string method = "entropy";  // minmax | percentile | entropy
  int threads = 2;
  bool winograd = true;            // EngineOptions::winograd
  bool fuse_depthwise = true;      // EngineOptions::fuse_depthwise
  bool split_batch = true;         // false: EngineOptions::split_batch_max_weight_bytes = 0
  bool profile = false;            // EngineOptions::profile
};
// Adds --precision, --calib, --method, --no-winograd, --no-depthwise-fusion and --no-batch-split to a command.
void AddPrecisionOptions(CLI::App& command, ModelSource& source);
Result<std::unique_ptr<engine::Model>> LoadModel(const ModelSource& source);
// The precision `model` runs in: "int8" for a QDQ file (quantized already)
// or one quantized on load, else the --precision asked for.
std::string RunningPrecision(const engine::Model& model, const ModelSource& source);
// The quantizer's options for this CPU, and calibration options printing progress.
int8::QuantizeOptions DefaultQuantizeOptions();
int8::CalibrateOptions CalibrateOptionsWithProgress(int threads);

// CLI11 validators with short messages ("must be positive, got 0");
// CLI::PositiveNumber prints the whole range up to DBL_MAX instead.
CLI::Validator Positive();
CLI::Validator NonNegative();

// The folder of this executable (where ppml-worker, ppml-frontend and
// ppml-accel are built next to it); "." when /proc does not say.
std::string ProgramDir();

// The last `bytes` of a file (a child's log), for an error that says why the
// child stopped; empty when it cannot be read.
std::string FileTail(const std::string& path, size_t bytes = 2000);

// Waits until the ppml-accel `process`, started with `--listen address`,
// answers a Hello there. Unavailable (with the end of `log_file`) when it
// exits first, DeadlineExceeded after `timeout`.
Status WaitForAccelerator(ChildProcess& process, const std::string& address, const std::string& log_file,
                          std::chrono::milliseconds timeout);

// Peak resident set size of this process in MiB (VmHWM), or -1 when unknown.
double PeakRssMb();

struct LatencySummary {
  double p50_ms = 0;
  double p99_ms = 0;
  double mean_ms = 0;
};
// Nearest-rank percentiles; all zero for an empty list.
LatencySummary SummarizeLatencies(std::vector<double> latencies_ms);

// The concrete shape to feed `input` with `batch` items: a symbolic first
// dimension becomes `batch`. Any other symbolic dimension, or a fixed first
// dimension different from `batch`, is InvalidArgument naming the input.
Result<Shape> ShapeForBatch(const engine::TensorInfo& input, int64_t batch);

// FillUniform's values: floats in [0, 1], u8 and s8 (pixels, quantized
// values) over their whole range. Wider integer inputs (indices, shapes) get
// zeros, the only value that is valid for every such input.
Tensor RandomInput(DataType type, const Shape& shape, std::mt19937& rng);
// One RandomInput per model input, shaped by ShapeForBatch (whose error it returns).
Result<std::vector<Tensor>> RandomInputs(const std::vector<engine::TensorInfo>& inputs, int64_t batch,
                                         std::mt19937& rng);

}  // namespace ppml::tools
