#include "worker/config.h"

#include <unistd.h>

#include <random>

#include "common/config.h"
#include "queue/redis_config.h"
#include "queue/request_entry.h"

namespace ppml::worker {
namespace {

Status LoadModel(ConfigReader& config, WorkerConfig* out) {
  PPML_RETURN_IF_ERROR(config.Required("model.name", &out->model_name));
  if (Status s = queue::CheckKeyName(out->model_name, "model name"); !s.ok()) {
    return config.Invalid("model.name", s.message());
  }
  std::string backend = "enclave";
  PPML_RETURN_IF_ERROR(config.Optional("model.backend", &backend));
  PPML_RETURN_IF_ERROR(config.CheckOneOf("model.backend", backend, {"enclave", "echo"}));
  out->backend = backend == "echo" ? Backend::kEcho : Backend::kEnclave;
  PPML_RETURN_IF_ERROR(config.Optional("model.precision", &out->precision));
  PPML_RETURN_IF_ERROR(config.CheckOneOf("model.precision", out->precision, {"fp32", "int8"}));
  PPML_RETURN_IF_ERROR(config.Optional("model.echo_delay_us", &out->echo_delay_us));
  PPML_RETURN_IF_ERROR(config.CheckInRange("model.echo_delay_us", out->echo_delay_us, int64_t{0}, int64_t{60'000'000}));
  if (out->backend == Backend::kEnclave) {
    if (out->echo_delay_us != 0) return config.Invalid("model.echo_delay_us", "applies to backend: echo only");
    PPML_RETURN_IF_ERROR(config.RequiredPath("model.package", &out->package));
  } else {
    PPML_RETURN_IF_ERROR(config.OptionalPath("model.package", &out->package));
  }
  return Status::Ok();
}

Status LoadWorker(ConfigReader& config, WorkerConfig* out) {
  PPML_RETURN_IF_ERROR(config.Optional("worker.consumer", &out->consumer));
  if (!out->consumer.empty()) {
    if (Status s = queue::CheckKeyName(out->consumer, "consumer name"); !s.ok()) {
      return config.Invalid("worker.consumer", s.message());
    }
  }
  PPML_RETURN_IF_ERROR(config.Optional("worker.threads", &out->threads));
  PPML_RETURN_IF_ERROR(config.CheckInRange("worker.threads", out->threads, 1, 1024));

  BatchingConfig& batching = out->batching;
  PPML_RETURN_IF_ERROR(config.Optional("worker.batching.max_batch_size", &batching.max_batch_size));
  PPML_RETURN_IF_ERROR(config.CheckInRange("worker.batching.max_batch_size", batching.max_batch_size, 1, 4096));
  PPML_RETURN_IF_ERROR(config.Optional("worker.batching.max_queue_delay_us", &batching.max_queue_delay_us));
  PPML_RETURN_IF_ERROR(config.CheckInRange("worker.batching.max_queue_delay_us", batching.max_queue_delay_us,
                                           int64_t{0}, int64_t{10'000'000}));

  RecoveryConfig& recovery = out->recovery;
  PPML_RETURN_IF_ERROR(config.Optional("worker.recovery.claim_idle_ms", &recovery.claim_idle_ms));
  PPML_RETURN_IF_ERROR(config.CheckInRange("worker.recovery.claim_idle_ms", recovery.claim_idle_ms, int64_t{10},
                                           int64_t{86'400'000}));
  PPML_RETURN_IF_ERROR(config.Optional("worker.recovery.max_deliveries", &recovery.max_deliveries));
  PPML_RETURN_IF_ERROR(config.CheckInRange("worker.recovery.max_deliveries", recovery.max_deliveries, 1, 1000));

  PPML_RETURN_IF_ERROR(config.Optional("worker.results_max_length", &out->results_max_length));
  PPML_RETURN_IF_ERROR(config.CheckPositive("worker.results_max_length", out->results_max_length));

  PPML_RETURN_IF_ERROR(config.Optional("worker.metrics.host", &out->metrics.host));
  PPML_RETURN_IF_ERROR(config.Optional("worker.metrics.port", &out->metrics.port));
  PPML_RETURN_IF_ERROR(config.CheckInRange("worker.metrics.port", out->metrics.port, -1, 65535));
  return Status::Ok();
}

Status LoadEnclave(ConfigReader& config, WorkerConfig* out) {
  EnclaveSection& enclave = out->enclave;
  if (out->backend == Backend::kEcho) {
    config.MarkRead("enclave");  // the null model has no enclave
    return Status::Ok();
  }
  PPML_RETURN_IF_ERROR(config.RequiredPath("enclave.platform", &enclave.platform_dir));
  PPML_RETURN_IF_ERROR(config.RequiredPath("enclave.sealed_keys", &enclave.sealed_keys));
  PPML_RETURN_IF_ERROR(config.Optional("enclave.budget_mib", &enclave.budget_mib));
  PPML_RETURN_IF_ERROR(config.CheckInRange("enclave.budget_mib", enclave.budget_mib, int64_t{1}, int64_t{1} << 20));
  PPML_RETURN_IF_ERROR(config.Optional("enclave.weights", &enclave.weights));
  PPML_RETURN_IF_ERROR(config.CheckOneOf("enclave.weights", enclave.weights, {"auto", "resident", "on-demand"}));
  PPML_RETURN_IF_ERROR(config.Optional("enclave.config_entries", &enclave.config_entries));
  auto& outsource = enclave.outsource;
  PPML_RETURN_IF_ERROR(config.Optional("enclave.outsource.mode", &outsource.mode));
  PPML_RETURN_IF_ERROR(config.CheckOneOf("enclave.outsource.mode", outsource.mode, {"off", "integrity", "private"}));
  PPML_RETURN_IF_ERROR(config.Optional("enclave.outsource.accelerator", &outsource.accelerator));
  if (outsource.mode != "off" && outsource.accelerator.empty()) {
    return config.Invalid("enclave.outsource.accelerator", "required when enclave.outsource.mode is " + outsource.mode);
  }
  PPML_RETURN_IF_ERROR(config.Optional("enclave.outsource.calibration", &outsource.calibration));
  PPML_RETURN_IF_ERROR(config.Optional("enclave.outsource.pad_pool_images", &outsource.pad_pool_images));
  PPML_RETURN_IF_ERROR(config.CheckInRange("enclave.outsource.pad_pool_images", outsource.pad_pool_images,
                                           int64_t{0}, int64_t{1} << 20));
  PPML_RETURN_IF_ERROR(config.Optional("enclave.outsource.max_failures", &outsource.max_failures));
  PPML_RETURN_IF_ERROR(config.CheckInRange("enclave.outsource.max_failures", outsource.max_failures, int64_t{0},
                                           int64_t{1} << 30));
  return Status::Ok();
}

Result<WorkerConfig> Load(Result<ConfigReader> reader) {
  if (!reader.ok()) return reader.status();
  ConfigReader& config = *reader;
  WorkerConfig out;
  if (Status s = queue::LoadRedisConfig(config, &out.redis); !s.ok()) return s;
  PPML_RETURN_IF_ERROR(LoadModel(config, &out));
  PPML_RETURN_IF_ERROR(LoadWorker(config, &out));
  PPML_RETURN_IF_ERROR(LoadEnclave(config, &out));
  PPML_RETURN_IF_ERROR(config.CheckNoUnknownKeys());
  return out;
}

}  // namespace

Result<WorkerConfig> LoadWorkerConfig(const std::string& path) { return Load(ConfigReader::LoadFile(path)); }

Result<WorkerConfig> ParseWorkerConfig(std::string_view yaml, const std::string& source_name) {
  return Load(ConfigReader::LoadString(yaml, source_name));
}

std::string DefaultConsumerName() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof(host), "worker");
  std::string name;
  for (const char* c = host; *c != '\0'; ++c) name += (std::isalnum(static_cast<unsigned char>(*c)) || *c == '-') ? *c : '_';
  std::random_device random;
  char suffix[8];
  std::snprintf(suffix, sizeof(suffix), "%04x", random() & 0xffff);
  return name + "-" + std::to_string(::getpid()) + "-" + suffix;
}

}  // namespace ppml::worker
