// What a worker does with a batch once it has it: the enclave (one ecall
// per batch) or the null model. Both answer every request, in order; a
// request that fails gets its own error result and the others are unaffected.
//
// Thread safety: Process is called by one thread at a time.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <vector>

#include <optional>

#include "common/status.h"
#include "enclave_sim/enclave.h"
#include "queue/request_entry.h"
#include "worker/config.h"

namespace ppml::worker {

class BatchProcessor {
 public:
  virtual ~BatchProcessor() = default;
  // One result per request, in order; request ids copied over.
  virtual std::vector<queue::ResultEntry> Process(std::span<const queue::RequestEntry> requests) = 0;
  // A line's worth for the start-up log: "enclave measurement=..." or "echo".
  virtual std::string Describe() const = 0;
  // The attestation document (JSON) for a client's nonce; Unsupported without an enclave.
  virtual Result<std::string> Attest(std::string_view nonce) = 0;
  // What the worker publishes at ppml:{model}:info.
  virtual queue::WorkerInfo Info(std::string_view model_name) const = 0;
  // The enclave's memory, plan and verified-outsourcing counters; none without an enclave.
  virtual std::optional<enclave::EnclaveStats> EnclaveStats() const { return std::nullopt; }
};

// The null model: 200 with the request's body, header length and no nonce.
// `delay` stands in for inference time per batch (tests and benchmarks).
std::unique_ptr<BatchProcessor> MakeEchoProcessor(std::chrono::microseconds delay = {});

// Loads the platform, the sealed keys and the model package named by
// `config` into a new enclave. Errors name the file or key that failed.
Result<std::unique_ptr<BatchProcessor>> MakeEnclaveProcessor(const WorkerConfig& config);

// The processor `config.model.backend` names.
Result<std::unique_ptr<BatchProcessor>> MakeProcessor(const WorkerConfig& config);

}  // namespace ppml::worker
