// ppml-worker --config FILE [--consumer NAME]
//
// Loads the sealed keys and the model package into the enclave, joins the
// consumer group of ppml:{model}:requests and serves batches until SIGTERM or
// SIGINT, on which it finishes the batch in hand and exits 0. Exit 2: bad
// command line or config (the message names the file and key); 1: it could
// not start (enclave, Redis credentials, metrics port).
#include <CLI/CLI.hpp>

#include <atomic>
#include <iostream>

#include "common/log.h"
#include "common/process.h"
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "worker/config.h"
#include "worker/processor.h"
#include "worker/worker.h"

namespace {

int Fail(int code, const ppml::Status& status) {
  std::cerr << "ppml-worker: " << status.message() << std::endl;
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ppml-worker: one consumer of a model's request stream, running it in the enclave"};
  std::string config_path, consumer;
  app.add_option("--config", config_path, "worker config (YAML), e.g. configs/worker.yaml")->required();
  app.add_option("--consumer", consumer, "consumer name in the group (overrides worker.consumer)");
  CLI11_PARSE(app, argc, argv);

  ppml::Result<ppml::worker::WorkerConfig> config = ppml::worker::LoadWorkerConfig(config_path);
  if (!config.ok()) return Fail(2, config.status());
  if (!consumer.empty()) {
    if (ppml::Status s = ppml::queue::CheckKeyName(consumer, "--consumer"); !s.ok()) return Fail(2, s);
    config->consumer = consumer;
  }

  const std::atomic<bool>& stop_requested = ppml::StopFlagOnSignals();

  ppml::Result<std::unique_ptr<ppml::worker::BatchProcessor>> processor = ppml::worker::MakeProcessor(*config);
  if (!processor.ok()) return Fail(1, processor.status());

  ppml::metrics::Registry registry;
  const ppml::worker::MetricsConfig metrics_config = config->metrics;
  ppml::worker::Worker worker(std::move(config).value(), std::move(processor).value(), &registry);
  std::unique_ptr<ppml::metrics::MetricsServer> metrics_server;
  if (metrics_config.port >= 0) {
    auto started = ppml::metrics::MetricsServer::Start(registry, metrics_config.host,
                                                       static_cast<uint16_t>(metrics_config.port),
                                                       [&worker] { return worker.counters().ready.load(); });
    if (!started.ok()) return Fail(1, started.status().WithContext("worker.metrics"));
    metrics_server = std::move(started).value();
    ppml::LogInfo("worker_metrics", {{"consumer", worker.consumer()},
                                     {"address", metrics_config.host + ":" + std::to_string(metrics_server->port())}});
  }
  ppml::Status status = worker.Run(stop_requested);
  if (!status.ok()) return Fail(1, status);
  return 0;
}
