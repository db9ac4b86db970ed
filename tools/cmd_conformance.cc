// ppml conformance --testdata DIR [--filter SUBSTR] [--verbose] [--list-failures]
//                  [--min-pass-rate R]
//
// Runs the engine on ONNX's backend test data (Debian libonnx-testdata):
//
//   DIR/{node,pytorch-converted,pytorch-operator,simple}/<case>/
//       model.onnx
//       test_data_set_0/input_0.pb ... output_0.pb ...   (serialized TensorProtos)
//
// A case whose model the engine refuses as Unsupported is skipped; any other
// load error, a run error or a wrong output is a failure, printed with its
// reason. Prints one line per suite folder; the last stdout line is exactly
// "N passed, N failed, N skipped" (scripts parse it). The exit code is 0
// even with failures, unless --min-pass-rate is given and not met.
#include <CLI/CLI.hpp>

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "engine/engine.h"
#include "engine/onnx_tensor.h"
#include "tools/cli_support.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCommand = "conformance";
constexpr const char* kSuites[] = {"node", "pytorch-converted", "pytorch-operator", "simple"};

struct ConformanceOptions {
  std::string testdata = "/usr/share/libonnx-testdata/data";
  std::string filter;
  bool verbose = false;
  bool list_failures = false;
  std::optional<double> min_pass_rate;
  int min_attempted = 0;
};

// |actual - expected| <= atol + rtol * |expected|, element by element.
struct Tolerance {
  double rtol = 1e-3;
  double atol = 1e-4;
};

// Cases allowed a looser float tolerance, keyed "suite/case". Empty so far:
// every case either meets the default or is a real bug. An entry needs a
// comment saying why the difference is legitimate (e.g. a long reduction
// summed in another order than NumPy's reference), never "to make it pass".
const std::map<std::string, Tolerance, std::less<>>& LooserTolerances() {
  static const std::map<std::string, Tolerance, std::less<>> table = {};
  return table;
}

enum class Outcome { kPassed, kFailed, kSkipped };

struct CaseResult {
  Outcome outcome = Outcome::kPassed;
  std::string reason;
};

CaseResult Failed(std::string reason) { return {Outcome::kFailed, std::move(reason)}; }

// Graph input names as the file lists them. IR < 4 models also list their
// initializers as inputs; the engine's inputs() leaves those out.
struct GraphInputs {
  std::vector<std::string> all;
  std::vector<std::string> runtime;  // `all` without the initializers
  std::set<std::string> initializers;
};

Result<GraphInputs> ReadGraphInputs(const fs::path& model_path) {
  std::ifstream in(model_path, std::ios::binary);
  onnx::ModelProto model;
  if (!in || !model.ParseFromIstream(&in)) {
    return Status::DataLoss(model_path.string() + ": cannot parse the model to read its graph inputs");
  }
  GraphInputs inputs;
  for (const auto& initializer : model.graph().initializer()) inputs.initializers.insert(initializer.name());
  for (const auto& input : model.graph().input()) {
    inputs.all.push_back(input.name());
    if (!inputs.initializers.count(input.name())) inputs.runtime.push_back(input.name());
  }
  return inputs;
}

struct TestFile {
  std::string name;  // the TensorProto's name field, often empty
  Tensor tensor;
};

// Reads prefix_0.pb, prefix_1.pb, ... until the next index is missing.
Result<std::vector<TestFile>> ReadNumberedTensors(const fs::path& dir, const std::string& prefix) {
  std::vector<TestFile> files;
  for (int k = 0;; ++k) {
    const fs::path path = dir / (prefix + "_" + std::to_string(k) + ".pb");
    if (!fs::exists(path)) break;
    TestFile file;
    PPML_ASSIGN_OR_RETURN(file.tensor, engine::ReadTensorProtoFile(path.string(), &file.name));
    files.push_back(std::move(file));
  }
  return files;
}

int IndexOf(const std::vector<engine::TensorInfo>& infos, const std::string& name) {
  for (size_t i = 0; i < infos.size(); ++i) {
    if (infos[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

// Puts input_K.pb in the engine's input order. A file names its input when
// its TensorProto name matches one; otherwise input_K is the K-th graph input
// of the file: counting all inputs when the data set provides one per input
// (initializers included), else counting the runtime inputs only. Files for
// initializer-backed inputs are dropped: the engine holds those as constants.
Result<std::vector<Tensor>> ArrangeInputs(std::vector<TestFile> files, const GraphInputs& graph,
                                          const std::vector<engine::TensorInfo>& wanted) {
  const std::vector<std::string>& positional =
      files.size() == graph.all.size() && graph.all.size() != graph.runtime.size() ? graph.all : graph.runtime;
  std::vector<std::optional<Tensor>> slots(wanted.size());
  for (size_t k = 0; k < files.size(); ++k) {
    const std::string& position_name = k < positional.size() ? positional[k] : files[k].name;
    int slot = IndexOf(wanted, files[k].name);
    if (slot < 0) slot = IndexOf(wanted, position_name);
    if (slot < 0) {
      // A value for an initializer-backed input: the model's own constant stands.
      if (graph.initializers.count(files[k].name) || graph.initializers.count(position_name)) continue;
      return Status::InvalidArgument("input_" + std::to_string(k) + ".pb (tensor '" + files[k].name +
                                     "') matches no model input");
    }
    if (slots[slot]) return Status::InvalidArgument("two test inputs for '" + wanted[slot].name + "'");
    slots[slot] = std::move(files[k].tensor);
  }
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < slots.size(); ++i) {
    if (!slots[i]) return Status::InvalidArgument("no test data for input '" + wanted[i].name + "'");
    inputs.push_back(std::move(*slots[i]));
  }
  return inputs;
}

double FloatAt(const Tensor& tensor, int64_t i) { return tensor.data<float>()[i]; }

int64_t IntegerAt(const Tensor& tensor, int64_t i) {
  switch (tensor.dtype()) {
    case DataType::kU8: return tensor.data<uint8_t>()[i];
    case DataType::kS8: return tensor.data<int8_t>()[i];
    case DataType::kS32: return tensor.data<int32_t>()[i];
    case DataType::kS64: return tensor.data<int64_t>()[i];
    case DataType::kF32: break;
  }
  return 0;
}

std::string FormatDouble(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.7g", value);
  return buffer;
}

bool FloatsMatch(double actual, double expected, const Tolerance& tolerance) {
  if (std::isnan(expected) || std::isnan(actual)) return std::isnan(expected) && std::isnan(actual);
  if (std::isinf(expected) || std::isinf(actual)) return actual == expected;
  return std::fabs(actual - expected) <= tolerance.atol + tolerance.rtol * std::fabs(expected);
}

// Empty when `actual` matches `expected`, else what differs.
std::string CompareTensors(const Tensor& actual, const Tensor& expected, const Tolerance& tolerance) {
  if (actual.dtype() != expected.dtype()) {
    return std::string("type ") + DataTypeName(actual.dtype()) + ", expected " + DataTypeName(expected.dtype());
  }
  if (actual.shape() != expected.shape()) {
    return "shape " + ShapeToString(actual.shape()) + ", expected " + ShapeToString(expected.shape());
  }
  const bool is_float = actual.dtype() == DataType::kF32;
  int64_t mismatches = 0;
  int64_t first = -1;
  double max_difference = 0;
  for (int64_t i = 0; i < actual.element_count(); ++i) {
    bool match;
    if (is_float) {
      match = FloatsMatch(FloatAt(actual, i), FloatAt(expected, i), tolerance);
      if (!match && std::isfinite(FloatAt(actual, i)) && std::isfinite(FloatAt(expected, i))) {
        max_difference = std::max(max_difference, std::fabs(FloatAt(actual, i) - FloatAt(expected, i)));
      }
    } else {
      match = IntegerAt(actual, i) == IntegerAt(expected, i);
    }
    if (!match && mismatches++ == 0) first = i;
  }
  if (mismatches == 0) return "";
  std::string report = std::to_string(mismatches) + " of " + std::to_string(actual.element_count()) +
                       " values differ; first at flat index " + std::to_string(first) + ": got ";
  if (is_float) {
    report += FormatDouble(FloatAt(actual, first)) + ", expected " + FormatDouble(FloatAt(expected, first)) +
              " (max |diff| " + FormatDouble(max_difference) + ", rtol " + FormatDouble(tolerance.rtol) + ", atol " +
              FormatDouble(tolerance.atol) + ")";
  } else {
    report += std::to_string(IntegerAt(actual, first)) + ", expected " + std::to_string(IntegerAt(expected, first));
  }
  return report;
}

std::vector<fs::path> SortedSubdirectories(const fs::path& dir, std::string_view prefix) {
  std::vector<fs::path> found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    if (entry.is_directory() && entry.path().filename().string().rfind(prefix, 0) == 0) found.push_back(entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

// One data set: feed its inputs, compare every output it provides.
std::string RunDataSet(engine::Model& model, const GraphInputs& graph, const fs::path& data_dir,
                       const Tolerance& tolerance) {
  const std::string set_name = data_dir.filename().string();
  auto files = ReadNumberedTensors(data_dir, "input");
  if (!files.ok()) return set_name + ": " + files.status().message();
  auto expected = ReadNumberedTensors(data_dir, "output");
  if (!expected.ok()) return set_name + ": " + expected.status().message();
  auto inputs = ArrangeInputs(std::move(files).value(), graph, model.inputs());
  if (!inputs.ok()) return set_name + ": " + inputs.status().message();

  auto outputs = model.Run(*inputs);
  if (!outputs.ok()) return set_name + ": run failed: " + outputs.status().ToString();
  if (outputs->size() < expected->size()) {
    return set_name + ": the engine returned " + std::to_string(outputs->size()) + " outputs, the test expects " +
           std::to_string(expected->size());
  }
  for (size_t k = 0; k < expected->size(); ++k) {
    // Match by name when the expected tensor carries one, else by position.
    int index = IndexOf(model.outputs(), (*expected)[k].name);
    if (index < 0) index = static_cast<int>(k);
    const std::string difference = CompareTensors((*outputs)[index], (*expected)[k].tensor, tolerance);
    if (!difference.empty()) {
      return set_name + ": output " + std::to_string(k) + " '" + model.outputs()[index].name + "': " + difference;
    }
  }
  return "";
}

CaseResult RunCase(const fs::path& case_dir, const std::string& case_name) {
  const fs::path model_path = case_dir / "model.onnx";
  auto model = engine::Model::LoadFile(model_path.string());
  if (!model.ok()) {
    if (model.status().code() == StatusCode::kUnsupported) return {Outcome::kSkipped, model.status().message()};
    return Failed("load failed: " + model.status().ToString());
  }
  auto graph = ReadGraphInputs(model_path);
  if (!graph.ok()) return Failed(graph.status().message());

  const auto tolerance_entry = LooserTolerances().find(case_name);
  const Tolerance tolerance = tolerance_entry == LooserTolerances().end() ? Tolerance{} : tolerance_entry->second;
  const std::vector<fs::path> data_sets = SortedSubdirectories(case_dir, "test_data_set_");
  if (data_sets.empty()) return Failed("no test_data_set_* folder");
  for (const fs::path& data_dir : data_sets) {
    std::string failure = RunDataSet(**model, *graph, data_dir, tolerance);
    if (!failure.empty()) return Failed(std::move(failure));
  }
  return {};
}

struct Tally {
  int passed = 0;
  int failed = 0;
  int skipped = 0;
  std::string Summary() const {
    return std::to_string(passed) + " passed, " + std::to_string(failed) + " failed, " + std::to_string(skipped) +
           " skipped";
  }
};

int RunConformance(const ConformanceOptions& options) {
  const fs::path root(options.testdata);
  if (!fs::is_directory(root)) {
    return ReportError(kCommand, "--testdata " + options.testdata + ": no such directory (install libonnx-testdata)",
                       kExitFailure);
  }
  Tally total;
  std::vector<std::string> failures;
  int suites_found = 0;
  for (const char* suite : kSuites) {
    const fs::path suite_dir = root / suite;
    if (!fs::is_directory(suite_dir)) {
      std::cerr << "ppml conformance: " << suite_dir.string() << " not found, skipping that folder" << std::endl;
      continue;
    }
    ++suites_found;
    Tally tally;
    for (const fs::path& case_dir : SortedSubdirectories(suite_dir, "")) {
      const std::string case_name = std::string(suite) + "/" + case_dir.filename().string();
      if (case_name.find(options.filter) == std::string::npos) continue;
      if (!fs::exists(case_dir / "model.onnx")) continue;
      CaseResult result;
      try {
        result = RunCase(case_dir, case_name);
      } catch (const std::exception& e) {
        // The engine must not throw, but one bad case must not end the whole run.
        result = Failed(std::string("exception: ") + e.what());
      }
      switch (result.outcome) {
        case Outcome::kPassed:
          ++tally.passed;
          if (options.verbose) std::cout << "PASS " << case_name << "\n";
          break;
        case Outcome::kSkipped:
          ++tally.skipped;
          if (options.verbose) std::cout << "SKIP " << case_name << ": " << result.reason << "\n";
          break;
        case Outcome::kFailed:
          ++tally.failed;
          failures.push_back(case_name);
          std::cout << "FAIL " << case_name << ": " << result.reason << "\n";
          break;
      }
    }
    std::cout << suite << ": " << tally.Summary() << std::endl;
    total.passed += tally.passed;
    total.failed += tally.failed;
    total.skipped += tally.skipped;
  }
  if (suites_found == 0) {
    return ReportError(kCommand, "--testdata " + options.testdata + " holds none of node/, pytorch-converted/, "
                                 "pytorch-operator/, simple/", kExitFailure);
  }
  if (options.list_failures && !failures.empty()) {
    std::cout << "failures:\n";
    for (const std::string& name : failures) std::cout << "  " << name << "\n";
  }
  std::cout << total.Summary() << std::endl;

  if (total.passed + total.failed < options.min_attempted) {
    return ReportError(kCommand,
                       std::to_string(total.passed + total.failed) + " cases run, fewer than --min-attempted " +
                           std::to_string(options.min_attempted),
                       kExitFailure);
  }
  if (options.min_pass_rate) {
    // The rate counts the cases the engine claims to run: skipped (unsupported)
    // cases measure coverage, not correctness. No case run means rate 0.
    const int attempted = total.passed + total.failed;
    const double rate = attempted > 0 ? static_cast<double>(total.passed) / attempted : 0.0;
    if (rate < *options.min_pass_rate) {
      return ReportError(kCommand,
                         "pass rate " + FormatDouble(rate) + " (" + std::to_string(total.passed) + " of " +
                             std::to_string(attempted) + " cases run) is below --min-pass-rate " +
                             FormatDouble(*options.min_pass_rate),
                         kExitFailure);
    }
  }
  return kExitOk;
}

}  // namespace

void AddConformanceCommand(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<ConformanceOptions>();
  CLI::App* conformance = app.add_subcommand("conformance", "Run the engine on ONNX's backend test data");
  conformance->add_option("--testdata", options->testdata, "the data folder of libonnx-testdata")
      ->capture_default_str();
  conformance->add_option("--filter", options->filter, "only cases whose \"suite/case\" name contains this");
  conformance->add_flag("--verbose", options->verbose, "also print passing cases and why cases are skipped");
  conformance->add_flag("--list-failures", options->list_failures, "list the failed cases again before the summary");
  conformance
      ->add_option("--min-pass-rate", options->min_pass_rate,
                   "exit 1 unless passed / (passed + failed) reaches this fraction (0..1)")
      ->check(CLI::Range(0.0, 1.0));
  conformance->add_option("--min-attempted", options->min_attempted, "exit 1 unless at least this many cases run")
      ->check(CLI::NonNegativeNumber);
  conformance->callback([options, exit_code] { *exit_code = RunConformance(*options); });
}

}  // namespace ppml::tools
