// ppml he bench [--spec FILE] [--images N] [--n 32768] [--run-n 16384]
//               [--min-agreement F] [--max-estimate-error F] [--details-out FILE] [--json]
//
// The real CKKS check of issue 10, with Microsoft SEAL (npm node-seal,
// WebAssembly) run by he/seal/ckks.mjs under node:
//   - per-operation CKKS costs at N = --n (encrypt, plaintext multiply,
//     multiply + relinearize + rescale, rotate, add) on a fresh ciphertext;
//   - with --spec (from `ppml he search --spec-out`), the approximated RNN or
//     GRU run encrypted end to end at N = --run-n on the first --images test
//     samples: agreement of the encrypted predictions with the plaintext
//     simulation, seconds per image measured and estimated (operation counts
//     times the per-operation costs measured at the run's parameters), and
//     the key-holder refreshes that stand in for bootstrapping.
// Progress goes to stderr. With --json the last stdout line is one object:
//   {"n","encrypt_ms","plain_multiply_ms","multiply_relin_rescale_ms",
//    "rotate_ms","add_ms","cell","run_n","images","agreement",
//    "seconds_per_image_measured","seconds_per_image_estimated",
//    "estimate_over_measured","refreshes_per_image","max_abs_logit_error"}
// (the run's keys are null without --spec). --details-out keeps ckks.mjs's
// whole result: costs by level, operation counts, per-image predictions.
//
// node and the pinned npm packages come from scripts/install-node-deps.sh;
// without them the command fails saying so. The script is looked for in
// $PPML_HE_SEAL_DIR, then in the source tree this binary was built from, then
// at ../../he/seal from the binary (build/bin/ppml in a checkout).
#include <CLI/CLI.hpp>
#include <simdjson.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/file_io.h"
#include "common/json_line.h"
#include "common/process.h"
#include "tools/cli_support.h"
#include "tools/commands.h"

#ifndef PPML_SOURCE_DIR
#define PPML_SOURCE_DIR ""
#endif

namespace ppml::tools {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCommand = "he bench";
constexpr const char* kInstallHint = "run scripts/install-node-deps.sh";

struct HeBenchOptions {
  std::string spec;
  int images = 20;
  int cost_n = 32768;
  int run_n = 16384;
  bool json = false;
  std::optional<double> min_agreement;
  std::optional<double> max_estimate_error;
  std::string details_out;
};

// he/seal with ckks.mjs and its installed packages, or an error saying what is missing.
Result<std::string> FindSealScriptDir() {
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("PPML_HE_SEAL_DIR"); env && *env) candidates.emplace_back(env);
  if (*PPML_SOURCE_DIR) candidates.push_back(fs::path(PPML_SOURCE_DIR) / "he" / "seal");
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(self.parent_path() / ".." / ".." / "he" / "seal");
  for (const fs::path& dir : candidates) {
    if (!fs::exists(dir / "ckks.mjs", ec)) continue;
    if (!fs::exists(dir / "node_modules" / "node-seal", ec)) {
      return Status::FailedPrecondition((dir / "node_modules").lexically_normal().string() +
                                        " has no node-seal; " + kInstallHint);
    }
    return dir.lexically_normal().string();
  }
  std::string tried;
  for (const fs::path& dir : candidates) tried += (tried.empty() ? "" : ", ") + dir.lexically_normal().string();
  return Status::NotFound("he/seal/ckks.mjs not found (looked in " + tried + "); set PPML_HE_SEAL_DIR");
}

// The node executable on PATH.
Result<std::string> FindNode() {
  const char* path = std::getenv("PATH");
  std::string_view rest = path ? path : "";
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    const std::string dir(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    const std::string candidate = (dir.empty() ? "." : dir) + "/node";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return Status::FailedPrecondition(std::string("node is not installed (not on PATH); ") + kInstallHint);
}

// Runs ckks.mjs bench; its progress and errors reach our stderr, its result lands in `result_file`.
Status RunSealBench(const HeBenchOptions& options, const std::string& result_file) {
  PPML_ASSIGN_OR_RETURN(std::string node, FindNode());
  PPML_ASSIGN_OR_RETURN(std::string dir, FindSealScriptDir());
  ProcessOptions process;
  process.argv = {node, dir + "/ckks.mjs", "bench", "--n", std::to_string(options.cost_n), "--json-out", result_file};
  if (!options.spec.empty()) {
    for (const std::string& arg : {std::string("--spec"), options.spec, std::string("--images"),
                                   std::to_string(options.images), std::string("--run-n"), std::to_string(options.run_n)}) {
      process.argv.push_back(arg);
    }
  }
  PPML_ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::Start(std::move(process)));
  // A GRU on 20 images takes minutes; no deadline of our own (Ctrl-C stops both).
  std::optional<int> status;
  while (!(status = child.Wait(std::chrono::hours(1)))) {
  }
  if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) return Status::Ok();
  const std::string how = "ckks.mjs " + DescribeExit(*status) + " (its message is above)";
  if (WIFEXITED(*status) && WEXITSTATUS(*status) == 2) return Status::InvalidArgument(how);
  return Status::Internal(how);
}

// The numbers `ppml he bench` reports, read from ckks.mjs's result.
struct BenchFigures {
  double n = 0, encrypt_ms = 0, plain_multiply_ms = 0, multiply_relin_rescale_ms = 0, rotate_ms = 0, add_ms = 0;
  bool has_run = false;
  std::string cell;
  double run_n = 0, images = 0, agreement = 0, seconds_measured = 0, seconds_estimated = 0, estimate_over_measured = 0,
         refreshes = 0, max_logit_error = 0, scale_bits = 0, levels = 0, images_per_ciphertext = 0;
};

Result<double> NumberField(simdjson::dom::object object, std::string_view section, std::string_view key,
                           const std::string& file) {
  double value = 0;
  if (object[key].get_double().get(value) != simdjson::SUCCESS) {
    return Status::Internal(file + ": " + std::string(section) + "." + std::string(key) + " is missing or not a number");
  }
  return value;
}

Result<BenchFigures> ReadFigures(const std::string& file) {
  PPML_ASSIGN_OR_RETURN(std::string text, ReadFile(file));
  simdjson::dom::parser parser;
  simdjson::dom::object root, costs, run;
  if (parser.parse(simdjson::padded_string(text)).get_object().get(root) != simdjson::SUCCESS ||
      root["costs"].get_object().get(costs) != simdjson::SUCCESS) {
    return Status::Internal(file + ": ckks.mjs wrote no {\"costs\": {...}} object");
  }
  BenchFigures f;
  PPML_ASSIGN_OR_RETURN(f.n, NumberField(costs, "costs", "n", file));
  PPML_ASSIGN_OR_RETURN(f.encrypt_ms, NumberField(costs, "costs", "encrypt_ms", file));
  PPML_ASSIGN_OR_RETURN(f.plain_multiply_ms, NumberField(costs, "costs", "plain_multiply_ms", file));
  PPML_ASSIGN_OR_RETURN(f.multiply_relin_rescale_ms, NumberField(costs, "costs", "multiply_relin_rescale_ms", file));
  PPML_ASSIGN_OR_RETURN(f.rotate_ms, NumberField(costs, "costs", "rotate_ms", file));
  PPML_ASSIGN_OR_RETURN(f.add_ms, NumberField(costs, "costs", "add_ms", file));
  if (root["rnn"].get_object().get(run) != simdjson::SUCCESS) return f;
  f.has_run = true;
  std::string_view cell;
  if (run["cell"].get_string().get(cell) == simdjson::SUCCESS) f.cell = std::string(cell);
  PPML_ASSIGN_OR_RETURN(f.run_n, NumberField(run, "rnn", "n", file));
  PPML_ASSIGN_OR_RETURN(f.levels, NumberField(run, "rnn", "levels", file));
  PPML_ASSIGN_OR_RETURN(f.scale_bits, NumberField(run, "rnn", "scale_bits", file));
  PPML_ASSIGN_OR_RETURN(f.images, NumberField(run, "rnn", "images", file));
  PPML_ASSIGN_OR_RETURN(f.images_per_ciphertext, NumberField(run, "rnn", "images_per_ciphertext", file));
  PPML_ASSIGN_OR_RETURN(f.agreement, NumberField(run, "rnn", "agreement", file));
  PPML_ASSIGN_OR_RETURN(f.seconds_measured, NumberField(run, "rnn", "seconds_per_image_measured", file));
  PPML_ASSIGN_OR_RETURN(f.seconds_estimated, NumberField(run, "rnn", "seconds_per_image_estimated", file));
  PPML_ASSIGN_OR_RETURN(f.estimate_over_measured, NumberField(run, "rnn", "estimate_over_measured", file));
  PPML_ASSIGN_OR_RETURN(f.refreshes, NumberField(run, "rnn", "refreshes_per_image", file));
  PPML_ASSIGN_OR_RETURN(f.max_logit_error, NumberField(run, "rnn", "max_abs_logit_error", file));
  return f;
}

void PrintFigures(const BenchFigures& f) {
  std::printf("CKKS per-operation costs (Microsoft SEAL 4.1, WebAssembly, one thread), N=%.0f, fresh ciphertext:\n", f.n);
  std::printf("  encrypt (encode + encrypt)            %10.2f ms\n", f.encrypt_ms);
  std::printf("  plaintext multiply + rescale          %10.2f ms\n", f.plain_multiply_ms);
  std::printf("  multiply + relinearize + rescale      %10.2f ms\n", f.multiply_relin_rescale_ms);
  std::printf("  rotate                                %10.2f ms\n", f.rotate_ms);
  std::printf("  add                                   %10.2f ms\n", f.add_ms);
  if (!f.has_run) return;
  std::printf("Encrypted %s end to end, N=%.0f (%.0f levels of %.0f bits), %.0f images, %.0f per ciphertext:\n",
              f.cell.c_str(), f.run_n, f.levels, f.scale_bits, f.images, f.images_per_ciphertext);
  std::printf("  agreement with the plaintext simulation   %.1f%%\n", 100 * f.agreement);
  std::printf("  seconds per image measured                %.3f\n", f.seconds_measured);
  std::printf("  seconds per image estimated               %.3f (estimate/measured %.3f)\n", f.seconds_estimated,
              f.estimate_over_measured);
  std::printf("  key-holder refreshes per image            %.1f\n", f.refreshes);
  std::printf("  max |encrypted - plaintext logit|          %.2e\n", f.max_logit_error);
}

std::string FiguresJson(const BenchFigures& f) {
  JsonLine json;
  json.Add("n", static_cast<int64_t>(f.n))
      .Add("encrypt_ms", f.encrypt_ms)
      .Add("plain_multiply_ms", f.plain_multiply_ms)
      .Add("multiply_relin_rescale_ms", f.multiply_relin_rescale_ms)
      .Add("rotate_ms", f.rotate_ms)
      .Add("add_ms", f.add_ms);
  if (f.has_run) {
    json.Add("cell", f.cell)
        .Add("run_n", static_cast<int64_t>(f.run_n))
        .Add("images", static_cast<int64_t>(f.images))
        .Add("agreement", f.agreement)
        .Add("seconds_per_image_measured", f.seconds_measured)
        .Add("seconds_per_image_estimated", f.seconds_estimated)
        .Add("estimate_over_measured", f.estimate_over_measured)
        .Add("refreshes_per_image", f.refreshes)
        .Add("max_abs_logit_error", f.max_logit_error);
  } else {
    for (const char* key : {"cell", "run_n", "images", "agreement", "seconds_per_image_measured",
                            "seconds_per_image_estimated", "estimate_over_measured", "refreshes_per_image",
                            "max_abs_logit_error"}) {
      json.AddNull(key);
    }
  }
  return json.str();
}

int RunHeBench(const HeBenchOptions& options) {
  TempDir dir("ppml-he-bench");
  if (!dir.ok()) return ReportError(kCommand, "cannot create a temporary folder under /tmp", kExitFailure);
  const std::string result_file = dir.File("result.json");
  if (Status status = RunSealBench(options, result_file); !status.ok()) {
    // ckks.mjs printed the specifics (file, field); this line says who failed.
    return ReportError(kCommand, status.message(),
                       status.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure);
  }
  Result<BenchFigures> figures = ReadFigures(result_file);
  if (!figures.ok()) return ReportError(kCommand, figures.status().message(), kExitFailure);
  if (!options.details_out.empty()) {
    Result<std::string> details = ReadFile(result_file);
    Status written = details.ok() ? WriteFile(options.details_out, *details) : details.status();
    if (!written.ok()) return ReportError(kCommand, "--details-out: " + written.message(), kExitFailure);
  }
  if (options.json) {
    std::cout << FiguresJson(*figures) << std::endl;
  } else {
    PrintFigures(*figures);
    std::fflush(stdout);
  }
  if (figures->has_run && options.min_agreement && figures->agreement < *options.min_agreement) {
    return ReportError(kCommand,
                       "agreement " + std::to_string(figures->agreement) + " is below --min-agreement " +
                           std::to_string(*options.min_agreement),
                       kExitFailure);
  }
  if (figures->has_run && options.max_estimate_error &&
      std::abs(figures->estimate_over_measured - 1) > *options.max_estimate_error) {
    return ReportError(kCommand,
                       "estimated/measured time " + std::to_string(figures->estimate_over_measured) +
                           " is off by more than --max-estimate-error " + std::to_string(*options.max_estimate_error),
                       kExitFailure);
  }
  return kExitOk;
}

}  // namespace

void AddHeBenchCommand(CLI::App& he, int* exit_code) {
  auto options = std::make_shared<HeBenchOptions>();
  CLI::App* bench = he.add_subcommand(
      "bench", "Real CKKS (Microsoft SEAL via node-seal): per-operation costs, and the approximated RNN run encrypted");
  bench->add_option("--spec", options->spec, "approximation spec from `ppml he search --spec-out` (runs it encrypted)")
      ->check(CLI::ExistingFile);
  bench->add_option("--images", options->images, "test samples of the spec to run encrypted")
      ->capture_default_str()
      ->check(Positive());
  bench->add_option("--n", options->cost_n, "polynomial degree N for the per-operation costs")
      ->capture_default_str()
      ->check(CLI::IsMember({16384, 32768, 65536}));  // 9 levels need N >= 2^14 at 128-bit security
  bench->add_option("--run-n", options->run_n, "polynomial degree N of the encrypted run (its costs are measured too)")
      ->capture_default_str()
      ->check(CLI::IsMember({8192, 16384, 32768}));
  bench->add_option("--min-agreement", options->min_agreement,
                    "exit 1 when the encrypted predictions agree with the plaintext ones on fewer than this fraction")
      ->check(CLI::Range(0.0, 1.0));
  bench->add_option("--max-estimate-error", options->max_estimate_error,
                    "exit 1 when |estimated/measured - 1| exceeds this")
      ->check(NonNegative());
  bench->add_option("--details-out", options->details_out,
                    "write ckks.mjs's whole result (costs by level, operation counts, per image) to this JSON file");
  bench->add_flag("--json", options->json, "print the result as one JSON object on the last line");
  bench->callback([options, exit_code] { *exit_code = RunHeBench(*options); });
}

}  // namespace ppml::tools
