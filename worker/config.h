// The worker's config file (configs/worker.yaml is the annotated example):
//
//   redis:   see queue/redis_config.h
//   model:
//     name: fashion            # the stream ppml:{fashion}:requests; [A-Za-z0-9_.-]
//     backend: enclave         # enclave | echo (the null model: returns each
//                              # request body as it came; for measuring the queue)
//     package: fashion.ppmlpkg # `ppml model seal` output (enclave backend)
//     precision: fp32          # fp32 | int8: what the package must hold
//     echo_delay_us: 0         # echo only: simulated inference time per batch
//   worker:
//     consumer: ""             # unique name in the group; default HOST-PID
//     threads: 2               # oneDNN threads inside the enclave
//     batching:
//       max_batch_size: 16
//       max_queue_delay_us: 2000   # a batch closes when its oldest entry waited this long
//     recovery:
//       claim_idle_ms: 10000       # take over entries pending this long on another consumer
//       max_deliveries: 3          # then: ppml:{model}:dead and an error result
//     results_max_length: 100000   # MAXLEN ~ of the result streams
//     metrics:
//       host: 127.0.0.1
//       port: 9100                 # 0: the kernel picks (logged at start); -1: off
//   enclave:
//     platform: platform/          # `ppml keygen platform` folder (simulated platform)
//     sealed_keys: enclave/sealed_keys.bin   # `ppml enclave provision` output
//     budget_mib: 93               # EPC budget
//     weights: auto                # auto | resident | on-demand
//     config_entries: []           # measured "key=value" entries (as at provisioning)
//
// Unknown keys, wrong types and values out of range are errors naming the
// file, the key path and the line. Relative paths are from the file's folder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "queue/redis.h"

namespace ppml::worker {

enum class Backend { kEnclave, kEcho };

struct BatchingConfig {
  int max_batch_size = 16;
  int64_t max_queue_delay_us = 2000;
};

struct RecoveryConfig {
  int64_t claim_idle_ms = 10000;
  int max_deliveries = 3;
};

struct MetricsConfig {
  std::string host = "127.0.0.1";
  int port = 9100;  // 0: any free port; -1: no metrics server
};

struct EnclaveSection {
  std::string platform_dir;
  std::string sealed_keys;
  int64_t budget_mib = 93;
  std::string weights = "auto";
  std::vector<std::string> config_entries;
  // enclave.outsource: verified outsourcing of the linear layers (accel/).
  struct Outsource {
    std::string mode = "off";          // off | integrity | private
    std::string accelerator;           // ppml-accel address; required unless off
    std::string calibration = "random:16";
    int64_t pad_pool_images = 32;
    int64_t max_failures = 3;
  } outsource;
};

struct WorkerConfig {
  queue::RedisEndpoint redis;
  std::string model_name;
  Backend backend = Backend::kEnclave;
  std::string package;
  std::string precision = "fp32";
  int64_t echo_delay_us = 0;
  std::string consumer;  // empty: DefaultConsumerName()
  int threads = 2;
  BatchingConfig batching;
  RecoveryConfig recovery;
  int64_t results_max_length = 100000;
  MetricsConfig metrics;
  EnclaveSection enclave;
};

Result<WorkerConfig> LoadWorkerConfig(const std::string& path);
// The same from YAML text; `source_name` stands for the file in messages.
Result<WorkerConfig> ParseWorkerConfig(std::string_view yaml, const std::string& source_name);

// "HOST-PID-XXXX": unique among the group's consumers, also across restarts.
std::string DefaultConsumerName();

}  // namespace ppml::worker
