#include "worker/processor.h"

#include <thread>

#include "common/file_io.h"
#include "common/kserve.h"
#include "enclave_sim/enclave.h"
#include "enclave_sim/epc.h"

namespace ppml::worker {
namespace {

class EchoProcessor final : public BatchProcessor {
 public:
  explicit EchoProcessor(std::chrono::microseconds delay) : delay_(delay) {}

  std::vector<queue::ResultEntry> Process(std::span<const queue::RequestEntry> requests) override {
    if (delay_.count() > 0 && !requests.empty()) std::this_thread::sleep_for(delay_);
    std::vector<queue::ResultEntry> results;
    results.reserve(requests.size());
    for (const queue::RequestEntry& request : requests) {
      queue::ResultEntry& result = results.emplace_back();
      result.request_id = request.request_id;
      result.body = request.body;
      result.json_length = request.json_length;
    }
    return results;
  }

  std::string Describe() const override { return "echo"; }
  Result<std::string> Attest(std::string_view) override {
    return Status::Unsupported("the null model (backend: echo) runs no enclave and has no attestation");
  }
  queue::WorkerInfo Info(std::string_view model_name) const override {
    return {"", "", kserve::EncodeModelMetadata({std::string(model_name), "ppml-echo", {}, {}})};
  }

 private:
  std::chrono::microseconds delay_;
};

class EnclaveProcessor final : public BatchProcessor {
 public:
  explicit EnclaveProcessor(std::unique_ptr<enclave::Enclave> enclave) : enclave_(std::move(enclave)) {}

  std::vector<queue::ResultEntry> Process(std::span<const queue::RequestEntry> requests) override {
    // Copy-in: the ecall takes its own buffers, as SGX marshalling does.
    std::vector<enclave::SealedRequest> sealed;
    sealed.reserve(requests.size());
    for (const queue::RequestEntry& request : requests) {
      sealed.push_back({request.request_id, request.encapsulated_key,
                        crypto::Bytes(request.body.begin(), request.body.end()), request.json_length});
    }
    std::vector<enclave::SealedReply> replies = enclave_->InferBatch(sealed);
    std::vector<queue::ResultEntry> results;
    results.reserve(replies.size());
    for (enclave::SealedReply& reply : replies) {
      queue::ResultEntry& result = results.emplace_back();
      result.request_id = std::move(reply.request_id);
      result.http_status = reply.http_status;
      result.response_nonce = std::move(reply.response_nonce);
      result.body.assign(reply.body.begin(), reply.body.end());
      result.json_length = reply.json_length;
    }
    return results;
  }

  std::string Describe() const override {
    return "enclave measurement=" + crypto::ToHex(enclave_->measurement());
  }
  std::optional<enclave::EnclaveStats> EnclaveStats() const override { return enclave_->stats(); }
  Result<std::string> Attest(std::string_view nonce) override {
    return enclave_->Attest(crypto::ByteSpan(reinterpret_cast<const uint8_t*>(nonce.data()), nonce.size()));
  }
  queue::WorkerInfo Info(std::string_view model_name) const override {
    auto tensors = [](const std::vector<engine::TensorInfo>& list) {
      std::vector<kserve::TensorMetadata> out;
      for (const engine::TensorInfo& t : list) out.push_back({t.name, t.dtype, t.shape});
      return out;
    };
    const std::string platform = enclave_->quantized() ? "ppml-enclave-int8" : "ppml-enclave-fp32";
    const crypto::Bytes key_config = enclave_->HpkeKeyConfig();
    return {crypto::ToHex(enclave_->measurement()), std::string(key_config.begin(), key_config.end()),
            kserve::EncodeModelMetadata(
                {std::string(model_name), platform, tensors(enclave_->inputs()), tensors(enclave_->outputs())})};
  }

 private:
  std::unique_ptr<enclave::Enclave> enclave_;
};

}  // namespace

std::unique_ptr<BatchProcessor> MakeEchoProcessor(std::chrono::microseconds delay) {
  return std::make_unique<EchoProcessor>(delay);
}

Result<std::unique_ptr<BatchProcessor>> MakeEnclaveProcessor(const WorkerConfig& config) {
  Result<enclave::Platform> platform = enclave::Platform::Load(config.enclave.platform_dir);
  if (!platform.ok()) return platform.status().WithContext("enclave.platform");
  Result<std::string> sealed_keys = ReadFile(config.enclave.sealed_keys);
  if (!sealed_keys.ok()) return sealed_keys.status().WithContext("enclave.sealed_keys");
  Result<std::string> package = ReadFile(config.package);
  if (!package.ok()) return package.status().WithContext("model.package");

  enclave::EnclaveConfig enclave_config;
  enclave_config.security_config = config.enclave.config_entries;
  enclave_config.memory_budget_bytes = static_cast<size_t>(config.enclave.budget_mib) << 20;
  PPML_ASSIGN_OR_RETURN(enclave_config.weights, enclave::ParseWeightMode(config.enclave.weights));
  enclave_config.threads = config.threads;
  const auto& outsource = config.enclave.outsource;
  PPML_ASSIGN_OR_RETURN(enclave_config.outsource.mode, accel::ParseOutsourceMode(outsource.mode));
  enclave_config.outsource.accelerator = outsource.accelerator;
  enclave_config.outsource.calibration = outsource.calibration;
  enclave_config.outsource.pad_pool_images = outsource.pad_pool_images;
  enclave_config.outsource.max_failures = static_cast<int>(outsource.max_failures);
  const crypto::Bytes keys(sealed_keys->begin(), sealed_keys->end());
  auto package_bytes = std::make_shared<const crypto::Bytes>(package->begin(), package->end());
  Result<std::unique_ptr<enclave::Enclave>> created =
      enclave::Enclave::Create(enclave_config, *platform, keys, std::move(package_bytes));
  if (!created.ok()) return created.status().WithContext("enclave init (" + config.package + ")");
  std::unique_ptr<enclave::Enclave> enclave = std::move(created).value();
  if (enclave->model_name() != config.model_name) {
    return Status::InvalidArgument("model.name: '" + config.model_name + "' but the package " + config.package +
                                   " holds model '" + enclave->model_name() + "'");
  }
  if (enclave->quantized() != (config.precision == "int8")) {
    return Status::InvalidArgument("model.precision: '" + config.precision + "' but the package " + config.package +
                                   (enclave->quantized() ? " holds an INT8 model" : " holds an FP32 model") +
                                   " (quantize with `ppml model quantize`, then seal)");
  }
  return std::unique_ptr<BatchProcessor>(new EnclaveProcessor(std::move(enclave)));
}

Result<std::unique_ptr<BatchProcessor>> MakeProcessor(const WorkerConfig& config) {
  if (config.backend == Backend::kEcho) {
    return MakeEchoProcessor(std::chrono::microseconds(config.echo_delay_us));
  }
  return MakeEnclaveProcessor(config);
}

}  // namespace ppml::worker
