#include "tools/cli_support.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <span>
#include <thread>

#include "accel/client.h"
#include "common/file_io.h"

namespace ppml::tools {

int ReportError(std::string_view command, std::string_view message, int exit_code) {
  std::cerr << "ppml " << command << ": " << message << std::endl;
  return exit_code;
}

int ReportError(std::string_view command, const Status& status) {
  return ReportError(command, status.message(),
                     status.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure);
}

Status CheckPrecision(std::string_view precision) {
  if (precision == "fp32" || precision == "int8") return Status::Ok();
  return Status::InvalidArgument("--precision " + std::string(precision) + " is unknown; use fp32 or int8");
}

void AddPrecisionOptions(CLI::App& command, ModelSource& source) {
  command.add_option("--precision", source.precision, "fp32, or int8 (quantized on the fly with --calib)")
      ->capture_default_str();
  command.add_option("--calib", source.calibration,
                     "int8 calibration set: fashion-mnist:train:N, random:N, or a folder of .npy files");
  command.add_option("--method", source.method, "int8 calibration method: minmax, percentile or entropy")
      ->capture_default_str();
  command.add_flag("!--no-winograd", source.winograd,
                   "FP32 3x3 convolutions on oneDNN's direct kernels only (Winograd is used where oneDNN has it, "
                   "AVX-512)");
  command.add_flag("!--no-depthwise-fusion", source.fuse_depthwise,
                   "run each 3x3 depthwise convolution apart from the 1x1 convolution before it (fused by default: "
                   "the 1x1's output then stays in cache)");
  command.add_flag("!--no-batch-split", source.split_batch,
                   "run each batch whole on all threads (by default a batch of a model with at most 16 MiB of weights "
                   "that keeps its samples apart runs as one slice per thread, side by side)");
}

Result<std::unique_ptr<engine::Model>> LoadModel(const ModelSource& source) {
  PPML_RETURN_IF_ERROR(CheckPrecision(source.precision));
  engine::SetThreads(source.threads);
  engine::EngineOptions options;
  options.threads = source.threads;
  options.winograd = source.winograd;
  options.fuse_depthwise = source.fuse_depthwise;
  if (!source.split_batch) options.split_batch_max_weight_bytes = 0;
  options.profile = source.profile;
  if (source.precision == "fp32") return engine::Model::LoadFile(source.path, options);
  PPML_ASSIGN_OR_RETURN(std::string bytes, int8::ReadModelBytes(source.path));
  Result<bool> quantized_already = int8::IsQuantizedModel(bytes);
  if (!quantized_already.ok()) return quantized_already.status().WithContext(source.path);
  if (*quantized_already) {
    // A QDQ file (`ppml model quantize`) runs in INT8 as it is.
    if (!source.calibration.empty()) {
      return Status::InvalidArgument(source.path + " is quantized already: drop --calib, or pass its FP32 original");
    }
    return engine::Model::LoadBytes(std::as_bytes(std::span<const char>(bytes)), source.path, options);
  }
  if (source.calibration.empty()) {
    return Status::InvalidArgument("--precision int8 needs --calib SPEC (fashion-mnist:train:N, random:N or a folder) "
                                   "to quantize " + source.path + " (or pass a model that `ppml model quantize` wrote)");
  }
  PPML_ASSIGN_OR_RETURN(int8::CalibrationMethod method, int8::ParseCalibrationMethod(source.method));
  PPML_ASSIGN_OR_RETURN(int8::QuantizedModel quantized,
                        int8::QuantizeModel(bytes, source.calibration, method, DefaultQuantizeOptions(),
                                            CalibrateOptionsWithProgress(source.threads)));
  std::cerr << quantized.summary.ToTable();
  return engine::Model::LoadBytes(std::as_bytes(std::span<const char>(quantized.onnx_bytes)),
                                  source.path + " (int8)", options);
}

std::string RunningPrecision(const engine::Model& model, const ModelSource& source) {
  return model.stats().quantized_tensors > 0 ? std::string("int8") : source.precision;
}

int8::QuantizeOptions DefaultQuantizeOptions() {
  int8::QuantizeOptions options;
  // Without VNNI, oneDNN multiplies u8 x s8 pairs into saturating 16-bit sums;
  // 7-bit weights keep those sums exact (onnxruntime's reduce_range).
  options.reduce_range = !engine::CpuHasVnni();
  return options;
}

int8::CalibrateOptions CalibrateOptionsWithProgress(int threads) {
  int8::CalibrateOptions options;
  options.threads = threads;
  options.progress = [](const int8::CalibrationProgress& p) {
    std::cerr << "calibrate: batch " << p.batch << "/" << p.batches << " (" << p.samples_done << "/"
              << p.samples_total << " samples, " << p.tensors << " tensors)" << std::endl;
  };
  return options;
}

namespace {

// A validator on the option's text read as a number; `accept` says whether it fits.
CLI::Validator NumberValidator(const std::string& requirement, bool (*accept)(double)) {
  return CLI::Validator(
      [requirement, accept](std::string& text) -> std::string {
        double value = 0;
        size_t used = 0;
        try {
          value = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != text.size() || used == 0) return "expected a number, got \"" + text + "\"";
        if (!accept(value)) return "must be " + requirement + ", got " + text;
        return "";
      },
      requirement);
}

}  // namespace

CLI::Validator Positive() {
  return NumberValidator("positive", [](double value) { return value > 0; });
}

CLI::Validator NonNegative() {
  return NumberValidator("non-negative", [](double value) { return value >= 0; });
}

std::string ProgramDir() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : self.parent_path().string();
}

std::string FileTail(const std::string& path, size_t bytes) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return "";
  return text->size() > bytes ? text->substr(text->size() - bytes) : *text;
}

Status WaitForAccelerator(ChildProcess& process, const std::string& address, const std::string& log_file,
                          std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process.Running()) return Status::Unavailable("ppml-accel exited at start: " + FileTail(log_file));
    if (accel::AccelClient::Connect(address).ok()) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::DeadlineExceeded("ppml-accel did not listen at " + address + " within " +
                                  std::to_string(timeout.count() / 1000) + " s: " + FileTail(log_file));
}

double PeakRssMb() {
  // /proc/self/status has "VmHWM:     123456 kB": the high-water mark of the RSS.
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) != 0) continue;
    try {
      return std::stod(line.substr(6)) / 1024.0;
    } catch (const std::exception&) {
      return -1;
    }
  }
  return -1;
}

LatencySummary SummarizeLatencies(std::vector<double> latencies_ms) {
  LatencySummary summary;
  if (latencies_ms.empty()) return summary;
  std::sort(latencies_ms.begin(), latencies_ms.end());
  const auto nearest_rank = [&](double quantile) {
    const size_t rank = static_cast<size_t>(std::ceil(quantile * static_cast<double>(latencies_ms.size())));
    return latencies_ms[std::clamp<size_t>(rank, 1, latencies_ms.size()) - 1];
  };
  summary.p50_ms = nearest_rank(0.50);
  summary.p99_ms = nearest_rank(0.99);
  summary.mean_ms =
      std::accumulate(latencies_ms.begin(), latencies_ms.end(), 0.0) / static_cast<double>(latencies_ms.size());
  return summary;
}

Result<Shape> ShapeForBatch(const engine::TensorInfo& input, int64_t batch) {
  Shape shape = input.shape;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i == 0 && shape[0] < 0) {
      shape[0] = batch;
    } else if (i == 0 && shape[0] != batch) {
      return Status::InvalidArgument("--batch " + std::to_string(batch) + " does not fit input '" + input.name +
                                     "' of shape " + ShapeToString(input.shape) + ", whose batch is fixed at " +
                                     std::to_string(shape[0]));
    } else if (shape[i] < 0) {
      return Status::InvalidArgument("input '" + input.name + "' of shape " + ShapeToString(input.shape) +
                                     " has a symbolic dimension " + std::to_string(i) +
                                     "; only the first (batch) dimension may be symbolic");
    }
  }
  if (shape.empty() && batch != 1) {
    return Status::InvalidArgument("input '" + input.name + "' is a scalar; it takes no --batch");
  }
  return shape;
}

Tensor RandomInput(DataType type, const Shape& shape, std::mt19937& rng) {
  Tensor tensor(type, shape);
  FillUniform(tensor, rng);  // other types keep their zeros
  return tensor;
}

Result<std::vector<Tensor>> RandomInputs(const std::vector<engine::TensorInfo>& inputs, int64_t batch,
                                         std::mt19937& rng) {
  std::vector<Tensor> tensors;
  for (const engine::TensorInfo& info : inputs) {
    PPML_ASSIGN_OR_RETURN(Shape shape, ShapeForBatch(info, batch));
    tensors.push_back(RandomInput(info.dtype, shape, rng));
  }
  return tensors;
}

}  // namespace ppml::tools
