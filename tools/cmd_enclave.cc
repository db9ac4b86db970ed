// ppml enclave provision --platform DIR --out-dir DIR [--nonce HEX] [--config-entry k=v ...]
//   A fresh enclave service key, sealed to the enclave's base measurement
//   (sealed_keys.bin), and the attestation document a model owner verifies
//   before `ppml model seal` (attestation.json).
//
// ppml bench enclave --model M --precision fp32|int8 --batch B --budget-mib X
//                    --seconds S [--threads T] [--rounds R] [--prefetch | --no-prefetch] [--json]
//   Encrypted inference through the enclave (decrypt, KServe parse, run,
//   encrypt) with on-demand weights under the budget, against the same model
//   fully resident (no budget), alternating in R rounds. Only InferBatch is
//   timed (the client's encryption is not). With --json the last stdout line:
//   {"model","precision","batch","threads","isa","budget_mib",
//    "throughput_per_s","resident_throughput_per_s","ratio",
//    "peak_enclave_mib","resident_peak_enclave_mib","arena_mib",
//    "streamed_mib_per_run","seconds"}
#include <CLI/CLI.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>

#include "common/ehbp.h"
#include "common/file_io.h"
#include "common/json_line.h"
#include "common/kserve.h"
#include "enclave_sim/enclave.h"
#include "enclave_sim/package.h"
#include "engine/engine.h"
#include "tools/cli_support.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {

using enclave::Enclave;
using enclave::EnclaveConfig;

struct ProvisionOptions {
  std::string platform_dir;
  std::string out_dir;
  std::string nonce_hex;
  std::vector<std::string> config_entries;
  std::string outsource = "off";
};

int RunProvision(const ProvisionOptions& options) {
  constexpr const char* kCommand = "enclave provision";
  Result<enclave::Platform> platform = enclave::Platform::Load(options.platform_dir);
  if (!platform.ok()) return ReportError(kCommand, platform.status());
  crypto::Bytes nonce;
  if (options.nonce_hex.empty()) {
    nonce = crypto::RandomBytes(32).value();
  } else {
    Result<crypto::Bytes> parsed = crypto::FromHex(options.nonce_hex);
    if (!parsed.ok()) return ReportError(kCommand, "--nonce: " + parsed.status().message(), kExitUsage);
    nonce = *parsed;
  }
  EnclaveConfig config;
  config.security_config = options.config_entries;
  Result<accel::OutsourceMode> outsource = accel::ParseOutsourceMode(options.outsource);
  if (!outsource.ok()) return ReportError(kCommand, "--outsource: " + outsource.status().message(), kExitUsage);
  config.outsource.mode = *outsource;
  Result<enclave::ProvisionResult> result = Enclave::Provision(config, *platform, nonce);
  if (!result.ok()) return ReportError(kCommand, result.status());
  std::error_code ec;
  std::filesystem::create_directories(options.out_dir, ec);
  const std::string keys_path = options.out_dir + "/sealed_keys.bin";
  const std::string doc_path = options.out_dir + "/attestation.json";
  if (Status s = WriteFile(keys_path, std::string_view(reinterpret_cast<const char*>(result->sealed_keys.data()), result->sealed_keys.size()), 0600); !s.ok()) return ReportError(kCommand, s);
  const std::string doc = result->attestation_json + "\n";
  if (Status s = WriteFile(doc_path, doc); !s.ok()) {
    return ReportError(kCommand, s);
  }
  std::cout << "sealed keys: " << keys_path << "\nattestation: " << doc_path
            << "\nbase measurement: " << crypto::ToHex(result->base_measurement) << std::endl;
  return kExitOk;
}

struct BenchEnclaveOptions {
  std::string model;
  std::string precision = "fp32";
  int64_t batch = 1;
  double budget_mib = 24;
  double seconds = 20;
  int threads = 2;
  int rounds = 3;
  std::optional<bool> prefetch;  // unset: the enclave's default
  bool json = false;
};

// One enclave, its model input and a client that encrypts fresh requests.
struct BenchSubject {
  std::unique_ptr<Enclave> enclave;
  double busy_s = 0;
  int64_t items = 0;
};

Result<BenchSubject> MakeSubject(const EnclaveConfig& config, const enclave::Platform& platform,
                                 const crypto::Bytes& onnx, const std::string& name) {
  const crypto::Bytes nonce(32, 1);
  PPML_ASSIGN_OR_RETURN(enclave::ProvisionResult provisioned, Enclave::Provision(config, platform, nonce));
  PPML_ASSIGN_OR_RETURN(enclave::AttestationDocument doc,
                        enclave::AttestationDocumentFromJson(provisioned.attestation_json));
  PPML_ASSIGN_OR_RETURN(crypto::Bytes package, enclave::SealModel(onnx, name, doc.enclave_public_key));
  BenchSubject subject;
  PPML_ASSIGN_OR_RETURN(subject.enclave,
                        Enclave::Create(config, platform, provisioned.sealed_keys,
                                        std::make_shared<const crypto::Bytes>(std::move(package))));
  return subject;
}

// Encrypts one request (not timed), runs it through the enclave (timed).
Status TimedRequest(BenchSubject& subject, const kserve::InferRequest& request, int64_t batch, bool timed) {
  PPML_ASSIGN_OR_RETURN(kserve::EncodedBody body, kserve::EncodeInferRequest(request, true));
  PPML_ASSIGN_OR_RETURN(ehbp::EncryptedRequest encrypted,
                        ehbp::EncryptRequest(subject.enclave->public_key(), body.body));
  std::vector<enclave::SealedRequest> batch_in = {
      {"bench", encrypted.encapsulated_key_header_value, std::move(encrypted.body), body.json_length}};
  const auto start = std::chrono::steady_clock::now();
  std::vector<enclave::SealedReply> replies = subject.enclave->InferBatch(batch_in);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (replies.at(0).http_status != 200) {
    Result<crypto::Bytes> plain =
        ehbp::DecryptResponse(encrypted.client_state, replies[0].response_nonce, replies[0].body);
    const crypto::Bytes& shown = plain.ok() ? *plain : replies[0].body;
    return Status::Internal("the enclave answered " + std::to_string(replies[0].http_status) + ": " +
                            std::string(shown.begin(), shown.end()));
  }
  if (timed) {
    subject.busy_s += elapsed;
    subject.items += batch;
  }
  return Status::Ok();
}

int RunBenchEnclave(const BenchEnclaveOptions& options) {
  constexpr const char* kCommand = "bench enclave";
  if (Status s = CheckPrecision(options.precision); !s.ok()) return ReportError(kCommand, s.message(), kExitUsage);
  std::ifstream file(options.model, std::ios::binary);
  if (!file) return ReportError(kCommand, options.model + ": cannot open the model file", kExitFailure);
  const crypto::Bytes onnx((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  engine::SetThreads(options.threads);

  // The platform exists only for this run: nothing here is provisioned for real.
  enclave::Platform platform;
  platform.secret = crypto::SecretBytes(enclave::kPlatformSecretLength);
  if (Status s = crypto::FillRandom({platform.secret.data(), platform.secret.size()}); !s.ok()) {
    return ReportError(kCommand, s);
  }
  platform.signing_key = enclave::GeneratePlatformKey().value();

  EnclaveConfig on_demand;
  on_demand.weights = enclave::WeightMode::kOnDemand;
  on_demand.memory_budget_bytes = static_cast<size_t>(options.budget_mib * (1 << 20));
  on_demand.threads = options.threads;
  on_demand.prefetch = options.prefetch;
  EnclaveConfig resident = on_demand;
  resident.weights = enclave::WeightMode::kResident;
  resident.memory_budget_bytes = size_t{1} << 40;  // unbounded: the fully resident reference

  std::cerr << "ppml bench enclave: " << options.model << " batch=" << options.batch << " budget="
            << options.budget_mib << " MiB threads=" << options.threads << " isa=" << engine::EffectiveCpuIsa()
            << std::endl;
  Result<BenchSubject> streamed = MakeSubject(on_demand, platform, onnx, "bench");
  if (!streamed.ok()) return ReportError(kCommand, streamed.status().WithContext("on-demand enclave"));
  Result<BenchSubject> full = MakeSubject(resident, platform, onnx, "bench");
  if (!full.ok()) return ReportError(kCommand, full.status().WithContext("resident enclave"));

  // The input: the model's one input at this batch, uniform [0, 1).
  kserve::InferRequest request;
  std::mt19937 rng(42);
  if (full->enclave->quantized() ? options.precision != "int8" : options.precision != "fp32") {
    return ReportError(kCommand,
                       options.model + ": --precision " + options.precision +
                           " does not match the model (give an INT8 QDQ model from `ppml model quantize` for int8)",
                       kExitUsage);
  }
  for (const engine::TensorInfo& info : full->enclave->inputs()) {
    Result<Shape> shape = ShapeForBatch(info, options.batch);
    if (!shape.ok()) return ReportError(kCommand, shape.status().message(), kExitUsage);
    request.inputs.push_back({info.name, RandomInput(info.dtype, *shape, rng)});
  }
  for (BenchSubject* s : {&*streamed, &*full}) {
    for (int i = 0; i < 2; ++i) {
      if (Status st = TimedRequest(*s, request, options.batch, false); !st.ok()) return ReportError(kCommand, st);
    }
  }
  const double per_round = options.seconds / options.rounds;
  for (int round = 0; round < options.rounds; ++round) {
    for (BenchSubject* s : {&*streamed, &*full}) {
      const auto start = std::chrono::steady_clock::now();
      while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < per_round) {
        if (Status st = TimedRequest(*s, request, options.batch, true); !st.ok()) return ReportError(kCommand, st);
      }
    }
    std::cerr << "ppml bench enclave: round " << round + 1 << "/" << options.rounds << std::endl;
  }
  const double on_demand_tp = streamed->items / streamed->busy_s;
  const double resident_tp = full->items / full->busy_s;
  const enclave::EnclaveStats stats = streamed->enclave->stats();
  const enclave::EnclaveStats resident_stats = full->enclave->stats();
  auto mib = [](size_t bytes) { return static_cast<double>(bytes) / (1 << 20); };
  if (options.json) {
    JsonLine json;
    json.Add("model", options.model)
        .Add("precision", options.precision)
        .Add("batch", options.batch)
        .Add("threads", options.threads)
        .Add("isa", engine::EffectiveCpuIsa())
        .Add("budget_mib", options.budget_mib)
        .Add("throughput_per_s", on_demand_tp)
        .Add("resident_throughput_per_s", resident_tp)
        .Add("ratio", on_demand_tp / resident_tp)
        .Add("peak_enclave_mib", mib(stats.memory.peak_bytes))
        .Add("resident_peak_enclave_mib", mib(resident_stats.memory.peak_bytes))
        .Add("arena_mib", mib(stats.arena_bytes))
        .Add("streamed_mib_per_run", mib(stats.streamed_bytes_per_run))
        .Add("prefetch", stats.prefetch)
        .Add("seconds", options.seconds);
    std::cout << json.str() << std::endl;
  } else {
    std::cout << options.model << " batch " << options.batch << ": on-demand " << on_demand_tp << " items/s (peak "
              << mib(stats.memory.peak_bytes) << " MiB of " << options.budget_mib << " MiB), resident " << resident_tp
              << " items/s (peak " << mib(resident_stats.memory.peak_bytes) << " MiB), ratio "
              << on_demand_tp / resident_tp << " (" << engine::EffectiveCpuIsa() << ", " << options.threads
              << " threads)" << std::endl;
  }
  return kExitOk;
}

}  // namespace

void AddEnclaveCommands(CLI::App& app, int* exit_code) {
  CLI::App* group = app.add_subcommand("enclave", "Simulated enclave: provisioning");
  group->require_subcommand(1);
  auto provision = std::make_shared<ProvisionOptions>();
  CLI::App* p = group->add_subcommand("provision", "New enclave service key, sealed, and its attestation document");
  p->add_option("--platform", provision->platform_dir, "Folder from `ppml keygen platform`")->required();
  p->add_option("--out-dir", provision->out_dir, "Where to write sealed_keys.bin and attestation.json")->required();
  p->add_option("--nonce", provision->nonce_hex, "Hex challenge for the attestation document (default: random)");
  p->add_option("--config-entry", provision->config_entries, "Measured security config entry key=value (repeatable)");
  p->add_option("--outsource", provision->outsource,
                "off, integrity or private: the enclave.outsource.mode the worker will run (it is measured)")
      ->capture_default_str();
  p->callback([provision, exit_code] { *exit_code = RunProvision(*provision); });
}

void AddBenchEnclaveCommand(CLI::App& bench, int* exit_code) {
  auto options = std::make_shared<BenchEnclaveOptions>();
  CLI::App* c = bench.add_subcommand("enclave", "Encrypted inference: on-demand weights under a budget vs resident");
  c->add_option("--model", options->model, "ONNX model (an INT8 QDQ model for --precision int8)")->required();
  c->add_option("--precision", options->precision, "fp32 or int8 (must match the model)");
  c->add_option("--batch", options->batch, "Rows per request")->check(Positive());
  c->add_option("--budget-mib", options->budget_mib, "Enclave memory budget for the on-demand enclave")->check(Positive());
  c->add_option("--seconds", options->seconds, "Timed seconds per mode")->check(Positive());
  c->add_option("--threads", options->threads, "oneDNN threads")->check(Positive());
  c->add_option("--rounds", options->rounds, "Alternations of the two modes")->check(Positive());
  c->add_flag("--json", options->json, "End with one JSON line");
  c->add_flag("--prefetch,!--no-prefetch", options->prefetch,
              "Decrypt weights ahead on a helper thread, or each layer's when it runs on the engine's threads "
              "(default: ahead only when a core is free of the engine's threads)");
  c->callback([options, exit_code] { *exit_code = RunBenchEnclave(*options); });
}

}  // namespace ppml::tools
