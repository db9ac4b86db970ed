#include "tools/cli_support.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <numeric>

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
  if (precision == "fp32") return Status::Ok();
  if (precision == "int8") {
    return Status::InvalidArgument("--precision int8 is not available yet: INT8 comes with the INT8 issue; use fp32");
  }
  return Status::InvalidArgument("--precision " + std::string(precision) + " is unknown; use fp32");
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

}  // namespace ppml::tools
