// Verified outsourcing (accel/):
//
//   ppml bench outsource --model M --mode off|integrity|private --batch B --seconds S
//                        [--accel ADDR] [--threads T] [--accel-threads T] [--calib SPEC]
//                        [--accel-backend cpu|cuda] [--cuda-kernel int8|fp64] [--pads N] [--json]
//     Throughput of the model with its linear layers inside (off) or on
//     ppml-accel (started on a private Unix socket unless --accel names
//     one), and what stays inside: the share of multiply-accumulates and the
//     enclave-side time per image. With --json the last stdout line holds
//     {"model","mode","batch","threads","precision","isa","device",
//      "throughput_per_s","latency_ms_p50","latency_ms_p99",
//      "enclave_mac_fraction","enclave_ms_per_image","accelerator_ms_per_image",
//      "failed_checks","pad_fallbacks","pad_ms_per_image",...}.
//
//   ppml accel tamper-test --replies N [--model M] [--mode integrity|private|both] [--batch B]
//                          [--accel-backend cpu|cuda] [--cuda-kernel int8|fp64]
//     Runs the model against a ppml-accel that corrupts every reply (one
//     element, a row, off-by-one, a replayed reply) and checks that every
//     corrupted reply is detected and no wrong result comes out: each output
//     is compared bit for bit with the enclave-only run. Last stdout line:
//     {"replies","corrupted","detected","wrong_results_returned",...}; exit 1
//     unless detected == corrupted and wrong_results_returned == 0.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>
#include <thread>

#include "accel/client.h"
#include "accel/outsource.h"
#include "common/file_io.h"
#include "common/json_line.h"
#include "common/process.h"
#include "int8/quantize.h"
#include "tools/cli_support.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {

using Clock = std::chrono::steady_clock;

// A ppml-accel this command starts and stops, listening on a Unix socket in
// its own temporary folder.
struct LocalAccelerator {
  TempDir dir{"ppml-accel"};
  ChildProcess process;
  std::string address;
  std::string backend;  // as its accel_listen log line names it
};

// Where a started ppml-accel computes: `cpu`, or `cuda` with its kernel.
struct AcceleratorChoice {
  std::string backend = "cpu";
  std::string cuda_kernel = "int8";

  std::vector<std::string> Flags() const {
    if (backend == "cpu") return {"--backend", "cpu"};
    return {"--backend", backend, "--cuda-kernel", cuda_kernel};
  }
  void AddOptions(CLI::App& command) {
    command.add_option("--accel-backend", backend, "backend of the ppml-accel this command starts: cpu or cuda")
        ->capture_default_str();
    command.add_option("--cuda-kernel", cuda_kernel, "with --accel-backend cuda: int8 or fp64")->capture_default_str();
  }
};

// The value of `backend=` in a key=value log line (quoted when it holds spaces).
std::string LoggedBackend(const std::string& log) {
  size_t at = log.find(" backend=");
  if (at == std::string::npos) return "";
  at += 9;
  if (at < log.size() && log[at] == '"') {
    const size_t end = log.find('"', at + 1);
    return log.substr(at + 1, end == std::string::npos ? std::string::npos : end - at - 1);
  }
  return log.substr(at, log.find_first_of(" \n", at) - at);
}

Result<std::unique_ptr<LocalAccelerator>> StartAccelerator(int threads, std::vector<std::string> extra) {
  auto accel = std::make_unique<LocalAccelerator>();
  if (!accel->dir.ok()) return Status::IoError("cannot create a temporary folder for ppml-accel");
  accel->address = "unix:" + accel->dir.File("accel.sock");
  ProcessOptions options;
  options.argv = {ProgramDir() + "/ppml-accel", "--listen", accel->address, "--threads", std::to_string(threads)};
  options.argv.insert(options.argv.end(), extra.begin(), extra.end());
  options.log_file = accel->dir.File("accel.log");
  PPML_ASSIGN_OR_RETURN(accel->process, ChildProcess::Start(options));
  PPML_RETURN_IF_ERROR(
      WaitForAccelerator(accel->process, accel->address, options.log_file, std::chrono::seconds(20)));
  Result<std::string> log = ReadFile(options.log_file);
  accel->backend = LoggedBackend(log.ok() ? *log : "");
  return accel;
}

// ------------------------------------------------------------ bench outsource

constexpr std::string_view kBench = "bench outsource";

struct BenchOutsourceOptions {
  std::string model;
  std::string mode = "off";
  int64_t batch = 8;
  double seconds = 10;
  int threads = 2;
  int accel_threads = 2;
  std::string accel;
  std::string calibration = "random:16";
  AcceleratorChoice accelerator;
  int64_t pads = 64;
  int warmup = 2;
  bool json = false;
};

int RunBenchOutsource(const BenchOutsourceOptions& o) {
  Result<accel::OutsourceMode> mode = accel::ParseOutsourceMode(o.mode);
  if (!mode.ok()) return ReportError(kBench, mode.status());
  Result<std::string> bytes = int8::ReadModelBytes(o.model);
  if (!bytes.ok()) return ReportError(kBench, bytes.status());

  std::unique_ptr<LocalAccelerator> local;
  accel::OutsourceOptions options;
  options.mode = *mode;
  options.accelerator = o.accel;
  if (*mode != accel::OutsourceMode::kOff && o.accel.empty()) {
    Result<std::unique_ptr<LocalAccelerator>> started = StartAccelerator(o.accel_threads, o.accelerator.Flags());
    if (!started.ok()) return ReportError(kBench, started.status());
    local = std::move(*started);
    options.accelerator = local->address;
  }
  options.calibration = o.calibration;
  options.threads = o.threads;
  options.pad_pool_images = o.pads;
  std::cerr << "ppml bench outsource: loading " << o.model << " mode=" << o.mode << " isa=" << engine::EffectiveCpuIsa()
            << std::endl;
  Result<std::unique_ptr<accel::OutsourcedModel>> model = accel::OutsourcedModel::Load(*bytes, o.model, options);
  if (!model.ok()) return ReportError(kBench, model.status());
  std::cerr << (*model)->LayerTable();

  std::mt19937 rng(7);
  Result<std::vector<Tensor>> inputs = RandomInputs((*model)->inputs(), o.batch, rng);
  if (!inputs.ok()) return ReportError(kBench, inputs.status().WithContext(o.model));
  for (int i = 0; i < o.warmup; ++i) {
    auto out = (*model)->Run(*inputs);
    if (!out.ok()) return ReportError(kBench, out.status());
  }
  if (Status filled = (*model)->FillPads(o.pads); !filled.ok()) return ReportError(kBench, filled);
  const accel::OutsourceStats before = (*model)->outsource_stats();

  std::vector<double> latencies_ms;
  const auto start = Clock::now();
  const auto budget = std::chrono::duration<double>(o.seconds);
  auto next_report = start + std::chrono::seconds(1);
  auto now = start;
  do {
    const auto t0 = Clock::now();
    auto out = (*model)->Run(*inputs);
    now = Clock::now();
    if (!out.ok()) return ReportError(kBench, out.status());
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(now - t0).count());
    if (now >= next_report) {
      std::cerr << "ppml bench outsource: " << std::chrono::duration<double>(now - start).count() << " s, "
                << latencies_ms.size() << " batches" << std::endl;
      next_report += std::chrono::seconds(1);
    }
  } while (now - start < budget);
  const double elapsed = std::chrono::duration<double>(now - start).count();
  const accel::OutsourceStats after = (*model)->outsource_stats();

  const double images = static_cast<double>(after.images - before.images);
  const double run_s = after.run_seconds - before.run_seconds;
  const double wait_s = after.accelerator_wait_seconds - before.accelerator_wait_seconds;
  accel::OutsourceStats window = after;  // the timed part only, for the MAC share
  window.linear_macs -= before.linear_macs;
  window.enclave_linear_macs -= before.enclave_linear_macs;
  window.check_macs -= before.check_macs;
  const double pad_ms_per_image = after.pads_generated > 0 && after.layers > 0
                                      ? 1000.0 * after.pad_generation_seconds * after.layers / after.pads_generated
                                      : 0.0;
  const LatencySummary latency = SummarizeLatencies(latencies_ms);
  const std::string device = *mode == accel::OutsourceMode::kOff ? std::string("none")
                             : local ? "ppml-accel " + local->backend
                                     : "ppml-accel at " + o.accel;
  const double throughput = elapsed > 0 ? images / elapsed : 0;
  if (o.json) {
    JsonLine json;
    json.Add("model", o.model)
        .Add("mode", o.mode)
        .Add("batch", o.batch)
        .Add("threads", o.threads)
        .Add("accel_threads", o.accel_threads)
        .Add("precision", "int8-field")
        .Add("isa", engine::EffectiveCpuIsa())
        .Add("device", device)
        .Add("throughput_per_s", throughput)
        .Add("latency_ms_p50", latency.p50_ms)
        .Add("latency_ms_p99", latency.p99_ms)
        .Add("enclave_mac_fraction", window.enclave_mac_fraction())
        .Add("enclave_ms_per_image", images > 0 ? 1000.0 * (run_s - wait_s) / images : 0.0)
        .Add("accelerator_ms_per_image", images > 0 ? 1000.0 * wait_s / images : 0.0)
        .Add("outsourced_calls", after.outsourced_calls - before.outsourced_calls)
        .Add("local_calls", after.local_calls - before.local_calls)
        .Add("failed_checks", after.failed_checks)
        .Add("pad_fallbacks", after.pad_fallbacks - before.pad_fallbacks)
        .Add("pads_generated", after.pads_generated)
        .Add("pad_ms_per_image", pad_ms_per_image)
        .Add("layers", after.layers)
        .Add("seconds", elapsed);
    std::cout << json.str() << std::endl;
  } else {
    std::cout << o.model << " mode " << o.mode << ": " << throughput << " images/s at batch " << o.batch
              << ", enclave " << (images > 0 ? 1000.0 * (run_s - wait_s) / images : 0.0) << " ms/image, MACs inside "
              << 100.0 * window.enclave_mac_fraction() << "%, device " << device << std::endl;
  }
  return kExitOk;
}

// ---------------------------------------------------------- accel tamper-test

constexpr std::string_view kTamper = "accel tamper-test";

struct TamperOptions {
  std::string model = std::string(PPML_SOURCE_DIR) + "/models/fashion_cnn.onnx";
  int64_t replies = 10000;
  std::string mode = "both";
  int64_t batch = 4;
  int threads = 2;
  AcceleratorChoice accelerator;
  bool json = false;
};

int RunTamperTest(const TamperOptions& o) {
  std::vector<accel::OutsourceMode> modes;
  if (o.mode == "both") {
    modes = {accel::OutsourceMode::kIntegrity, accel::OutsourceMode::kPrivate};
  } else {
    Result<accel::OutsourceMode> m = accel::ParseOutsourceMode(o.mode);
    if (!m.ok() || *m == accel::OutsourceMode::kOff) {
      return ReportError(kTamper, "--mode must be integrity, private or both, got '" + o.mode + "'", kExitUsage);
    }
    modes = {*m};
  }
  Result<std::string> bytes = int8::ReadModelBytes(o.model);
  if (!bytes.ok()) return ReportError(kTamper, bytes.status());
  std::vector<std::string> flags = o.accelerator.Flags();
  flags.insert(flags.end(), {"--tamper-rate", "1", "--tamper-seed", "1"});
  Result<std::unique_ptr<LocalAccelerator>> accelerator = StartAccelerator(1, flags);
  if (!accelerator.ok()) return ReportError(kTamper, accelerator.status());

  accel::OutsourceOptions base;
  base.calibration = "random:8";
  base.threads = o.threads;
  base.max_failures = 0;  // keep using the accelerator: every reply is a trial
  base.audit_replies = true;
  base.pad_pool_images = 0;
  base.background_refill = false;
  Result<std::unique_ptr<accel::OutsourcedModel>> reference = accel::OutsourcedModel::Load(*bytes, o.model, base);
  if (!reference.ok()) return ReportError(kTamper, reference.status());
  std::vector<std::unique_ptr<accel::OutsourcedModel>> outsourced;
  for (accel::OutsourceMode mode : modes) {
    accel::OutsourceOptions options = base;
    options.mode = mode;
    options.accelerator = (*accelerator)->address;
    Result<std::unique_ptr<accel::OutsourcedModel>> m = accel::OutsourcedModel::Load(*bytes, o.model, options);
    if (!m.ok()) return ReportError(kTamper, m.status());
    outsourced.push_back(std::move(*m));
  }

  std::mt19937 rng(11);
  int64_t wrong = 0, images = 0;
  const auto start = Clock::now();
  auto next_report = start + std::chrono::seconds(2);
  auto totals = [&] {
    accel::OutsourceStats sum;
    for (const auto& m : outsourced) {
      const accel::OutsourceStats s = m->outsource_stats();
      sum.outsourced_calls += s.outsourced_calls;
      sum.failed_checks += s.failed_checks;
      sum.accelerator_errors += s.accelerator_errors;
      sum.corrupted_replies += s.corrupted_replies;
    }
    return sum;
  };
  auto replies = [](const accel::OutsourceStats& s) {
    return s.outsourced_calls + s.failed_checks + s.accelerator_errors;
  };
  for (size_t turn = 0; replies(totals()) < o.replies; ++turn) {
    accel::OutsourcedModel& model = *outsourced[turn % outsourced.size()];
    Result<std::vector<Tensor>> inputs = RandomInputs(model.inputs(), o.batch, rng);
    if (!inputs.ok()) return ReportError(kTamper, inputs.status().WithContext(o.model));
    if (Status s = model.FillPads(o.batch); !s.ok()) return ReportError(kTamper, s);
    auto expected = (*reference)->Run(*inputs);
    auto got = model.Run(*inputs);
    if (!expected.ok()) return ReportError(kTamper, expected.status());
    if (!got.ok()) return ReportError(kTamper, got.status());
    for (size_t i = 0; i < got->size(); ++i) {
      const Tensor& a = (*got)[i];
      const Tensor& b = (*expected)[i];
      const int64_t per_image = a.element_count() / o.batch;
      for (int64_t image = 0; image < o.batch; ++image) {
        const size_t offset = static_cast<size_t>(image * per_image) * ElementSize(a.dtype());
        const size_t length = static_cast<size_t>(per_image) * ElementSize(a.dtype());
        if (a.byte_size() != b.byte_size() ||
            std::memcmp(a.bytes().data() + offset, b.bytes().data() + offset, length) != 0) {
          ++wrong;
        }
      }
    }
    images += o.batch;
    if (Clock::now() >= next_report) {
      const accel::OutsourceStats s = totals();
      std::cerr << "ppml accel tamper-test: replies=" << replies(s) << "/" << o.replies
                << " corrupted=" << s.corrupted_replies << " detected=" << s.failed_checks << " wrong=" << wrong
                << std::endl;
      next_report += std::chrono::seconds(2);
    }
  }
  const accel::OutsourceStats s = totals();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  JsonLine json;
  json.Add("model", o.model)
      .Add("mode", o.mode)
      .Add("batch", o.batch)
      .Add("isa", engine::EffectiveCpuIsa())
      .Add("device", "ppml-accel " + (*accelerator)->backend)
      .Add("replies", replies(s))
      .Add("corrupted", s.corrupted_replies)
      .Add("detected", s.failed_checks)
      .Add("accelerator_errors", s.accelerator_errors)
      .Add("wrong_results_returned", wrong)
      .Add("images", images)
      .Add("seconds", seconds);
  std::cout << json.str() << std::endl;
  const bool passed = s.failed_checks == s.corrupted_replies && wrong == 0;
  if (!passed) return ReportError(kTamper, "a corrupted reply went undetected or a wrong result came out", kExitFailure);
  return kExitOk;
}

}  // namespace

void AddBenchOutsourceCommand(CLI::App& bench, int* exit_code) {
  auto o = std::make_shared<BenchOutsourceOptions>();
  CLI::App* c = bench.add_subcommand("outsource", "Verified outsourcing of linear layers: off, integrity or private");
  c->add_option("--model", o->model, "FP32 ONNX model")->required()->check(CLI::ExistingFile);
  c->add_option("--mode", o->mode, "off, integrity or private")->capture_default_str();
  c->add_option("--batch", o->batch, "images per run")->capture_default_str()->check(Positive());
  c->add_option("--seconds", o->seconds, "timed seconds")->capture_default_str()->check(Positive());
  c->add_option("--threads", o->threads, "enclave oneDNN threads")->capture_default_str()->check(Positive());
  c->add_option("--accel-threads", o->accel_threads, "threads of the ppml-accel this command starts")
      ->capture_default_str()
      ->check(Positive());
  c->add_option("--accel", o->accel, "a running ppml-accel (unix:PATH or HOST:PORT); default: start one");
  c->add_option("--calib", o->calibration, "calibration samples (fashion-mnist:train:N, random:N, .npy folder)")
      ->capture_default_str();
  c->add_option("--pads", o->pads, "private mode: blinding pads per layer made before timing")
      ->capture_default_str()
      ->check(NonNegative());
  c->add_option("--warmup", o->warmup, "untimed runs first")->capture_default_str()->check(NonNegative());
  o->accelerator.AddOptions(*c);
  c->add_flag("--json", o->json, "print the result as one JSON object on the last line");
  c->callback([o, exit_code] { *exit_code = RunBenchOutsource(*o); });
}

void AddAccelCommands(CLI::App& app, int* exit_code) {
  CLI::App* accel = app.add_subcommand("accel", "The untrusted accelerator (ppml-accel)");
  accel->require_subcommand(1);
  auto o = std::make_shared<TamperOptions>();
  CLI::App* t = accel->add_subcommand("tamper-test", "Every corrupted accelerator reply must be detected");
  t->add_option("--replies", o->replies, "accelerator replies to corrupt")->capture_default_str()->check(Positive());
  t->add_option("--model", o->model, "FP32 ONNX model")->capture_default_str()->check(CLI::ExistingFile);
  t->add_option("--mode", o->mode, "integrity, private or both")->capture_default_str();
  t->add_option("--batch", o->batch, "images per run")->capture_default_str()->check(Positive());
  t->add_option("--threads", o->threads, "oneDNN threads")->capture_default_str()->check(Positive());
  o->accelerator.AddOptions(*t);
  t->callback([o, exit_code] { *exit_code = RunTamperTest(*o); });
}

}  // namespace ppml::tools
