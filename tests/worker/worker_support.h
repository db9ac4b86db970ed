// Shared pieces of the worker tests: a real redis-server (plain or TLS with
// client certificates), requests in and results out through the real
// streams, workers in-process (the Worker loop on a thread) or as
// ppml-worker processes.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>

#include "common/file_io.h"
#include "common/process.h"
#include "enclave_sim/attestation.h"
#include "queue/local_redis.h"
#include "queue/request_entry.h"
#include "queue/streams.h"
#include "worker/processor.h"
#include "tests/support/run_to_end.h"
#include "worker/worker.h"

namespace ppml::testing {

using Clock = std::chrono::steady_clock;
using queue::RequestEntry;
using queue::ResultEntry;

inline std::unique_ptr<queue::LocalRedisServer> StartRedis(bool tls, bool durable = false) {
  queue::LocalRedisOptions options;
  options.tls = tls;
  options.require_client_cert = tls;
  options.durable = durable;
  auto server = queue::LocalRedisServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return server.ok() ? std::move(server).value() : nullptr;
}

inline RequestEntry MakeRequest(const std::string& rid, const std::string& reply_to, int64_t deadline_unix_ms = 0) {
  RequestEntry request;
  request.request_id = rid;
  request.encapsulated_key = std::string(64, 'a');
  request.body = "body-of-" + rid;
  request.reply_to = reply_to;
  request.deadline_unix_ms = deadline_unix_ms;
  return request;
}

// XADDs `count` requests "prefix0".."prefix{count-1}" in one pipeline.
inline void Push(queue::RedisClient& client, const std::string& model, const std::string& reply_to,
                 const std::string& prefix, int count, int64_t deadline_unix_ms = 0) {
  queue::CommandBatch batch;
  std::vector<RequestEntry> requests;
  for (int i = 0; i < count; ++i) requests.push_back(MakeRequest(prefix + std::to_string(i), reply_to, deadline_unix_ms));
  for (const RequestEntry& request : requests) queue::AppendXadd(batch, queue::RequestStream(model), request.Fields());
  auto replies = client.Execute(batch);
  ASSERT_TRUE(replies.ok()) << replies.status().ToString();
  for (const auto& reply : *replies) ASSERT_TRUE(reply.is_string()) << reply.Describe();
}

// Reads the result stream until `expected` distinct request ids have
// answers or `timeout` passes; every answer is kept (duplicates show).
class ResultCollector {
 public:
  ResultCollector(queue::RedisEndpoint endpoint, std::string reply_to)
      : client_(std::move(endpoint)), stream_(queue::ResultStream(reply_to)) {}

  std::map<std::string, std::vector<ResultEntry>>& Collect(size_t expected, std::chrono::milliseconds timeout) {
    const auto give_up = Clock::now() + timeout;
    while (results_.size() < expected && Clock::now() < give_up) Poll(100);
    return results_;
  }
  // One read; also used to see that nothing more arrives.
  void Poll(int block_ms) {
    auto entries = queue::Xread(client_, stream_, last_id_, 1000, block_ms);
    ASSERT_TRUE(entries.ok()) << entries.status().ToString();
    for (const queue::StreamEntry& entry : *entries) {
      last_id_ = entry.id;
      auto result = ResultEntry::FromStream(entry);
      ASSERT_TRUE(result.ok()) << result.status().ToString();
      results_[result->request_id].push_back(*result);
    }
  }
  std::map<std::string, std::vector<ResultEntry>>& results() { return results_; }

 private:
  queue::RedisClient client_;
  std::string stream_;
  std::string last_id_ = "0";
  std::map<std::string, std::vector<ResultEntry>> results_;
};

// The echo processor, recording each batch it is given.
class RecordingProcessor final : public worker::BatchProcessor {
 public:
  explicit RecordingProcessor(std::chrono::microseconds delay = {}) : echo_(worker::MakeEchoProcessor(delay)) {}
  std::vector<ResultEntry> Process(std::span<const RequestEntry> requests) override {
    {
      std::lock_guard lock(mutex_);
      std::vector<std::string> ids;
      for (const RequestEntry& r : requests) ids.push_back(r.request_id);
      batches_.push_back({Clock::now(), ids});
    }
    return echo_->Process(requests);
  }
  std::string Describe() const override { return "recording echo"; }
  Result<std::string> Attest(std::string_view nonce) override { return echo_->Attest(nonce); }
  queue::WorkerInfo Info(std::string_view model_name) const override { return echo_->Info(model_name); }

  struct Batch {
    Clock::time_point at;
    std::vector<std::string> ids;
  };
  std::vector<Batch> batches() {
    std::lock_guard lock(mutex_);
    return batches_;
  }

 private:
  std::unique_ptr<worker::BatchProcessor> echo_;
  std::mutex mutex_;
  std::vector<Batch> batches_;
};

// A Worker on its own thread; stopped and joined on destruction.
class InProcessWorker {
 public:
  InProcessWorker(worker::WorkerConfig config, std::unique_ptr<worker::BatchProcessor> processor)
      : worker_(std::move(config), std::move(processor), nullptr) {
    thread_ = std::thread([this] { status_ = worker_.Run(stop_); });
  }
  ~InProcessWorker() { static_cast<void>(Stop()); }
  Status Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return status_;
  }
  const worker::Worker& worker() const { return worker_; }

 private:
  worker::Worker worker_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Status status_;
};

inline worker::WorkerConfig EchoConfig(const queue::RedisEndpoint& endpoint, const std::string& model,
                                       const std::string& consumer) {
  worker::WorkerConfig config;
  config.redis = endpoint;
  config.model_name = model;
  config.backend = worker::Backend::kEcho;
  config.consumer = consumer;
  config.batching.max_batch_size = 8;
  config.batching.max_queue_delay_us = 1000;
  config.recovery.claim_idle_ms = 1000;
  config.metrics.port = -1;
  return config;
}

// The pending entries of `consumer` in the model's group.
inline int64_t PendingOf(queue::RedisClient& client, const std::string& model, const std::string& consumer) {
  queue::PendingQuery query;
  query.consumer = consumer;
  query.count = 10000;
  auto pending = queue::PendingRange(client, queue::RequestStream(model), queue::kWorkersGroup, query);
  return pending.ok() ? static_cast<int64_t>(pending->size()) : -1;
}

// The `redis:` section of a YAML config that reaches `server`.
inline std::string RedisYaml(const queue::LocalRedisServer& server) {
  const queue::RedisEndpoint endpoint = server.Endpoint();
  std::string yaml = "redis:\n  url: " + server.Url() + "\n";
  if (endpoint.tls) {
    yaml += "  tls:\n    ca: " + server.ca_file() + "\n    cert: " + server.client_cert_file() +
            "\n    key: " + server.client_key_file() + "\n";
  }
  return yaml;
}

inline std::string BinPath(const std::string& name) { return std::string(PPML_BIN_DIR) + "/" + name; }

// ppml-worker with `yaml` as its config; its stderr goes to DIR/NAME.log.
inline ChildProcess StartWorkerProcess(const TempDir& dir, const std::string& name, const std::string& yaml) {
  const std::string config = dir.File(name + ".yaml");
  EXPECT_TRUE(WriteFile(config, yaml).ok());
  // The tests read its info lines, whatever level the test runner set.
  ProcessOptions options;
  options.argv = {BinPath("ppml-worker"), "--config", config};
  options.log_file = dir.File(name + ".log");
  options.env = {"PPML_LOG_LEVEL=info"};
  auto process = ChildProcess::Start(std::move(options));
  EXPECT_TRUE(process.ok()) << process.status().ToString();
  return process.ok() ? std::move(process).value() : ChildProcess();
}

inline std::string ReadLog(const TempDir& dir, const std::string& name) {
  auto text = ReadFile(dir.File(name + ".log"));
  return text.ok() ? *text : "";
}

// Waits until `predicate` holds, polling; false when `timeout` passed first.
template <typename Predicate>
bool WaitFor(Predicate predicate, std::chrono::milliseconds timeout) {
  const auto give_up = Clock::now() + timeout;
  while (!predicate()) {
    if (Clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// Waits until the ppml-worker logging to DIR/NAME.log has joined its group.
inline bool WaitForServing(const TempDir& dir, const std::string& name, std::chrono::milliseconds timeout) {
  return WaitFor([&] { return ReadLog(dir, name).find("event=worker_serving") != std::string::npos; }, timeout);
}

// `ppml ARGS...` with its output in DIR/tool.log; its exit code (-1 when it did not finish).
inline int RunTool(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("ppml"));
  return RunToEnd(std::move(args), dir.File("tool.log"), std::chrono::seconds(60));
}

// The trust flow with the ppml CLI, in `dir`: platform/ (keygen), enclave/
// (provision: sealed_keys.bin, attestation.json) and fashion.ppmlpkg
// (models/fashion_cnn.onnx sealed to that enclave as model "fashion").
// The provisioning document; nullopt (with a test failure naming the step) otherwise.
// `provision_flags` and `seal_flags` are added to those two commands
// (e.g. --outsource integrity, --confidential).
inline std::optional<enclave::AttestationDocument> ProvisionAndSealFashion(const TempDir& dir,
                                                                         std::vector<std::string> provision_flags = {},
                                                                         std::vector<std::string> seal_flags = {}) {
  std::vector<std::string> provision = {"enclave", "provision", "--platform", dir.File("platform"), "--out-dir",
                                        dir.File("enclave")};
  provision.insert(provision.end(), provision_flags.begin(), provision_flags.end());
  if (RunTool(dir, {"keygen", "platform", "--out-dir", dir.File("platform")}) != 0 || RunTool(dir, provision) != 0) {
    ADD_FAILURE() << "keygen/provision failed: " << ReadLog(dir, "tool");
    return std::nullopt;
  }
  auto json = ReadFile(dir.File("enclave/attestation.json"));
  auto doc = json.ok() ? enclave::AttestationDocumentFromJson(*json) : Result<enclave::AttestationDocument>(json.status());
  if (!doc.ok()) {
    ADD_FAILURE() << doc.status().ToString();
    return std::nullopt;
  }
  std::vector<std::string> seal = {"model", "seal", "--model", std::string(PPML_SOURCE_DIR) + "/models/fashion_cnn.onnx",
                                   "--quote", dir.File("enclave/attestation.json"), "--platform-pubkey",
                                   dir.File("platform/platform.pub.pem"), "--measurement",
                                   crypto::ToHex(doc->quote.measurement), "--model-name", "fashion", "--out",
                                   dir.File("fashion.ppmlpkg")};
  seal.insert(seal.end(), seal_flags.begin(), seal_flags.end());
  if (RunTool(dir, seal) != 0) {
    ADD_FAILURE() << "model seal failed: " << ReadLog(dir, "tool");
    return std::nullopt;
  }
  return *doc;
}

}  // namespace ppml::testing
