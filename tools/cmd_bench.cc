// ppml bench engine --model FILE.onnx --batch B --precision fp32 --seconds S
//                   [--threads T] [--warmup N] [--profile N] [--json]
//
// Engine throughput and latency on random inputs, with no queue, enclave or
// network in the way: the baseline every other benchmark is compared with.
// Progress goes to stderr; with --json the last stdout line is one object:
//   {"model","batch","threads","precision","isa","throughput_per_s",
//    "latency_ms_p50","latency_ms_p99","latency_ms_mean","iterations",
//    "seconds","gflops","arena_mb","winograd_convs","fused_depthwise","reference_kernels","batch_lanes","peak_rss_mb"}
//   batch_lanes: the slices each batch ran as, side by side, one per thread
//   (1: the whole batch on all threads; see --no-batch-split).
//   reference_kernels counts oneDNN primitives on its scalar reference code
//   (10-100x slower than its vector kernels; a layout or shape it lacks a
//   kernel for): not 0 is worth a look with ONEDNN_VERBOSE=1.
// --profile N times every step (a little slower) and prints to stderr where
// the time goes: per kernel kind (oneDNN primitive and implementation, or the
// engine's own loops), the N largest kernel-and-op pairs and the N slowest
// nodes, in ms per run.
// Later benchmarks (queue, enclave, outsource) join the `bench` group.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <random>

#include "common/json_line.h"
#include "engine/engine.h"
#include "tools/cli_support.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {

constexpr const char* kCommand = "bench engine";
// Fixed so that two runs (and two machines) time the same inputs.
constexpr uint32_t kInputSeed = 42;

struct BenchEngineOptions {
  ModelSource source;
  int64_t batch = 1;
  double seconds = 10;
  int warmup = 3;
  int profile_top = 0;  // --profile: nodes listed
  bool json = false;
};

// Sums the steps' times by `key` and prints the largest `top`, ms per run.
template <typename Key>
void PrintProfileTable(const std::string& title, const std::vector<engine::StepTime>& steps, Key key, size_t top) {
  std::map<std::string, std::pair<double, int>> sums;  // ms per run, steps
  double total = 0;
  for (const engine::StepTime& s : steps) {
    const double ms = s.runs > 0 ? s.total_ms / static_cast<double>(s.runs) : 0;
    auto& [sum, count] = sums[key(s)];
    sum += ms;
    ++count;
    total += ms;
  }
  std::vector<std::pair<std::string, std::pair<double, int>>> rows(sums.begin(), sums.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  std::fprintf(stderr, "%s (ms per run, %.2f in all):\n", title.c_str(), total);
  for (size_t i = 0; i < std::min(top, rows.size()); ++i) {
    const auto& [name, value] = rows[i];
    std::fprintf(stderr, "  %9.3f %5.1f%% %4d step(s)  %s\n", value.first, total > 0 ? 100 * value.first / total : 0.0,
                 value.second, name.c_str());
  }
}

void PrintProfile(const engine::Model& model, int top) {
  const std::vector<engine::StepTime> steps = model.Profile();
  if (steps.empty()) return;
  PrintProfileTable("ppml bench engine: time by kernel", steps, [](const engine::StepTime& s) { return s.kernel; },
                    steps.size());
  PrintProfileTable("ppml bench engine: time by kernel and op", steps,
                    [](const engine::StepTime& s) { return s.kernel + " in " + s.op; }, static_cast<size_t>(top));
  PrintProfileTable("ppml bench engine: slowest nodes", steps,
                    [](const engine::StepTime& s) { return s.node + " (" + s.op + ")"; }, static_cast<size_t>(top));
}

int RunBenchEngine(const BenchEngineOptions& options) {
  auto model = LoadModel(options.source);
  if (!model.ok()) return ReportError(kCommand, model.status().message(), kExitFailure);

  std::mt19937 rng(kInputSeed);
  Result<std::vector<Tensor>> random = RandomInputs((*model)->inputs(), options.batch, rng);
  if (!random.ok()) return ReportError(kCommand, options.source.path + ": " + random.status().message(), kExitUsage);
  const std::vector<Tensor> inputs = std::move(random).value();

  using Clock = std::chrono::steady_clock;
  std::cerr << "ppml bench engine: " << options.source.path << " batch=" << options.batch << " threads=" << options.source.threads
            << " isa=" << engine::EffectiveCpuIsa() << ", " << options.warmup << " warmup run(s)" << std::endl;
  for (int i = 0; i < options.warmup; ++i) {
    auto outputs = (*model)->Run(inputs);
    if (!outputs.ok()) return ReportError(kCommand, options.source.path + ": " + outputs.status().message(), kExitFailure);
  }

  std::vector<double> latencies_ms;
  const Clock::time_point start = Clock::now();
  const auto budget = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.seconds));
  Clock::time_point next_report = start + std::chrono::seconds(1);
  Clock::time_point now = start;
  do {
    const Clock::time_point before = Clock::now();
    auto outputs = (*model)->Run(inputs);
    now = Clock::now();
    if (!outputs.ok()) return ReportError(kCommand, options.source.path + ": " + outputs.status().message(), kExitFailure);
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(now - before).count());
    if (now >= next_report) {
      std::cerr << "ppml bench engine: " << std::chrono::duration<double>(now - start).count() << " s, "
                << latencies_ms.size() << " runs" << std::endl;
      next_report += std::chrono::seconds(1);
    }
  } while (now - start < budget);

  const double elapsed_s = std::chrono::duration<double>(now - start).count();
  const double items = static_cast<double>(options.batch) * static_cast<double>(latencies_ms.size());
  const double throughput = elapsed_s > 0 ? items / elapsed_s : 0;
  const LatencySummary latency = SummarizeLatencies(latencies_ms);
  if (options.profile_top > 0) PrintProfile(**model, options.profile_top);
  if (options.json) {
    JsonLine json;
    json.Add("model", options.source.path)
        .Add("batch", options.batch)
        .Add("threads", options.source.threads)
        .Add("precision", RunningPrecision(**model, options.source))
        .Add("isa", engine::EffectiveCpuIsa())
        .Add("throughput_per_s", throughput)
        .Add("latency_ms_p50", latency.p50_ms)
        .Add("latency_ms_p99", latency.p99_ms)
        .Add("latency_ms_mean", latency.mean_ms)
        .Add("iterations", latencies_ms.size())
        .Add("seconds", elapsed_s)
        .Add("gflops", elapsed_s > 0 ? 2.0 * static_cast<double>((*model)->stats().macs) *
                                           static_cast<double>(latencies_ms.size()) / elapsed_s / 1e9
                                     : 0.0)
        .Add("arena_mb", static_cast<double>((*model)->stats().arena_bytes) / (1 << 20))
        .Add("winograd_convs", (*model)->stats().winograd_convs)
        .Add("fused_depthwise", (*model)->stats().fused_depthwise)
        .Add("reference_kernels", (*model)->stats().reference_kernels)
        .Add("batch_lanes", (*model)->stats().batch_lanes)
        .Add("peak_rss_mb", PeakRssMb());
    std::cout << json.str() << std::endl;
  } else {
    std::cout << options.source.path << ": " << throughput << " items/s at batch " << options.batch << ", latency p50 "
              << latency.p50_ms << " ms, p99 " << latency.p99_ms << " ms, mean " << latency.mean_ms << " ms ("
              << latencies_ms.size() << " runs in " << elapsed_s << " s, " << options.source.threads << " threads, "
              << (*model)->stats().batch_lanes << " batch lane(s), " << engine::EffectiveCpuIsa() << ")" << std::endl;
  }
  return kExitOk;
}

// Top-1 agreement of the INT8 model (quantized on the fly) with the FP32 one
// on fixed synthetic inputs: how often both pick the same class.
struct AgreementOptions {
  ModelSource source;  // precision is forced to int8 for the second model
  int64_t samples = 256;
  int64_t batch = 16;
};

int RunAgreement(const AgreementOptions& options) {
  constexpr const char* kAgreement = "bench agreement";
  ModelSource fp32 = options.source;
  fp32.precision = "fp32";
  ModelSource int8 = options.source;
  int8.precision = "int8";
  auto reference = LoadModel(fp32);
  if (!reference.ok()) return ReportError(kAgreement, reference.status());
  auto quantized = LoadModel(int8);
  if (!quantized.ok()) return ReportError(kAgreement, quantized.status());
  std::mt19937 rng(kInputSeed);
  int64_t agree = 0, done = 0;
  while (done < options.samples) {
    const int64_t batch = std::min(options.batch, options.samples - done);
    Result<std::vector<Tensor>> inputs = RandomInputs((*reference)->inputs(), batch, rng);
    if (!inputs.ok()) return ReportError(kAgreement, inputs.status().message(), kExitUsage);
    auto a = (*reference)->Run(*inputs);
    if (!a.ok()) return ReportError(kAgreement, a.status());
    auto b = (*quantized)->Run(*inputs);
    if (!b.ok()) return ReportError(kAgreement, b.status());
    const Tensor& x = (*a)[0];
    const Tensor& y = (*b)[0];
    const int64_t classes = x.element_count() / batch;
    for (int64_t i = 0; i < batch; ++i) {
      const float* row_x = x.data<float>() + i * classes;
      const float* row_y = y.data<float>() + i * classes;
      agree += std::max_element(row_x, row_x + classes) - row_x == std::max_element(row_y, row_y + classes) - row_y;
    }
    done += batch;
    std::cerr << "ppml bench agreement: " << done << "/" << options.samples << " samples" << std::endl;
  }
  JsonLine json;
  json.Add("model", options.source.path)
      .Add("calibration", options.source.calibration)
      .Add("method", options.source.method)
      .Add("threads", options.source.threads)
      .Add("precision", "int8 vs fp32")
      .Add("isa", engine::EffectiveCpuIsa())
      .Add("samples", done)
      .Add("top1_agreement", static_cast<double>(agree) / static_cast<double>(done));
  std::cout << json.str() << std::endl;
  return kExitOk;
}

}  // namespace

void AddBenchCommands(CLI::App& app, int* exit_code) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks; the last stdout line is a JSON object with --json");
  bench->require_subcommand(1);
  AddBenchEnclaveCommand(*bench, exit_code);
  AddBenchQueueCommand(*bench, exit_code);
  AddBenchServeCommand(*bench, exit_code);
  AddBenchOutsourceCommand(*bench, exit_code);

  auto options = std::make_shared<BenchEngineOptions>();
  CLI::App* engine_bench = bench->add_subcommand("engine", "Engine throughput and latency on random inputs (FP32 or INT8)");
  engine_bench->add_option("--model", options->source.path, "ONNX model file")->required()->check(CLI::ExistingFile);
  engine_bench->add_option("--batch", options->batch, "items per run (fills the symbolic batch dimension)")
      ->capture_default_str()
      ->check(Positive());
  AddPrecisionOptions(*engine_bench, options->source);
  engine_bench->add_option("--seconds", options->seconds, "how long to measure")
      ->capture_default_str()
      ->check(Positive());
  engine_bench->add_option("--threads", options->source.threads, "oneDNN threads")
      ->capture_default_str()
      ->check(Positive());
  engine_bench->add_option("--warmup", options->warmup, "untimed runs first (plan compilation, caches)")
      ->capture_default_str()
      ->check(NonNegative());
  engine_bench
      ->add_option("--profile", options->profile_top,
                   "time every step and print, to stderr, the time per kernel kind, the N largest kernel-and-op pairs "
                   "and the N slowest nodes")
      ->check(Positive())
      ->each([options](const std::string&) { options->source.profile = true; });
  engine_bench->add_flag("--json", options->json, "print the result as one JSON object on the last line");
  engine_bench->callback([options, exit_code] { *exit_code = RunBenchEngine(*options); });

  auto agreement = std::make_shared<AgreementOptions>();
  CLI::App* agree = bench->add_subcommand("agreement", "Top-1 agreement of INT8 with FP32 on fixed synthetic inputs");
  agree->add_option("--model", agreement->source.path, "FP32 ONNX model")->required()->check(CLI::ExistingFile);
  agree->add_option("--calib", agreement->source.calibration, "calibration set for the INT8 model")->required();
  agree->add_option("--method", agreement->source.method, "minmax, percentile or entropy")->capture_default_str();
  agree->add_option("--samples", agreement->samples, "synthetic inputs")->capture_default_str()->check(Positive());
  agree->add_option("--batch", agreement->batch, "inputs per run")->capture_default_str()->check(Positive());
  agree->add_option("--threads", agreement->source.threads, "oneDNN threads")->capture_default_str()->check(Positive());
  agree->callback([agreement, exit_code] { *exit_code = RunAgreement(*agreement); });
}

}  // namespace ppml::tools
