// The worker config and its redis section: defaults, every value read, and a
// clear error (file, key path, line) for each kind of mistake.
#include <gtest/gtest.h>

#include "common/file_io.h"
#include "common/process.h"
#include "worker/config.h"

namespace ppml::worker {
namespace {

Status ParseError(const std::string& yaml) {
  Result<WorkerConfig> config = ParseWorkerConfig(yaml, "w.yaml");
  return config.ok() ? Status::Ok() : config.status();
}

void ExpectError(const std::string& yaml, const std::string& needle) {
  const Status status = ParseError(yaml);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << yaml;
  EXPECT_NE(status.message().find(needle), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("w.yaml"), std::string::npos) << status.message();
}

TEST(WorkerConfigTest, EchoDefaults) {
  Result<WorkerConfig> config = ParseWorkerConfig("model:\n  name: m\n  backend: echo\n", "w.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->backend, Backend::kEcho);
  EXPECT_EQ(config->redis.host, "127.0.0.1");
  EXPECT_EQ(config->redis.port, 6379);
  EXPECT_EQ(config->batching.max_batch_size, 16);
  EXPECT_EQ(config->batching.max_queue_delay_us, 2000);
  EXPECT_EQ(config->recovery.claim_idle_ms, 10000);
  EXPECT_EQ(config->recovery.max_deliveries, 3);
  EXPECT_EQ(config->metrics.port, 9100);
}

TEST(WorkerConfigTest, EverySectionRead) {
  TempDir dir("ppml-config-test");
  ASSERT_TRUE(WriteFile(dir.File("redis.password"), "s3cret\nignored\n").ok());
  const std::string yaml =
      "redis:\n  url: rediss://ppml@redis.internal:6380/2\n  password_file: redis.password\n"
      "  tls:\n    ca: ca.crt\n    cert: /abs/w.crt\n    key: w.key\n    server_name: r.internal\n"
      "  connect_timeout_ms: 100\n  io_timeout_ms: 200\n"
      "model:\n  name: resnet50\n  package: pkg/r.ppmlpkg\n  precision: int8\n"
      "worker:\n  consumer: w-1\n  threads: 4\n  batching:\n    max_batch_size: 32\n    max_queue_delay_us: 500\n"
      "  recovery:\n    claim_idle_ms: 2000\n    max_deliveries: 5\n  results_max_length: 1000\n"
      "  metrics:\n    host: 0.0.0.0\n    port: 0\n"
      "enclave:\n  platform: platform\n  sealed_keys: keys.bin\n  budget_mib: 64\n  weights: on-demand\n"
      "  config_entries: [a=b]\n";
  Result<WorkerConfig> config = ParseWorkerConfig(yaml, dir.File("w.yaml"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_TRUE(config->redis.tls);
  EXPECT_EQ(config->redis.user, "ppml");
  EXPECT_EQ(config->redis.password, "s3cret");
  EXPECT_EQ(config->redis.db, 2);
  EXPECT_EQ(config->redis.tls_options.ca_file, dir.File("ca.crt"));
  EXPECT_EQ(config->redis.tls_options.cert_file, "/abs/w.crt");
  EXPECT_EQ(config->redis.tls_options.server_name, "r.internal");
  EXPECT_EQ(config->redis.io_timeout_ms, 200);
  EXPECT_EQ(config->package, dir.File("pkg/r.ppmlpkg"));
  EXPECT_EQ(config->precision, "int8");
  EXPECT_EQ(config->consumer, "w-1");
  EXPECT_EQ(config->threads, 4);
  EXPECT_EQ(config->batching.max_batch_size, 32);
  EXPECT_EQ(config->recovery.max_deliveries, 5);
  EXPECT_EQ(config->results_max_length, 1000);
  EXPECT_EQ(config->metrics.port, 0);
  EXPECT_EQ(config->enclave.platform_dir, dir.File("platform"));
  EXPECT_EQ(config->enclave.budget_mib, 64);
  EXPECT_EQ(config->enclave.weights, "on-demand");
  EXPECT_EQ(config->enclave.config_entries, std::vector<std::string>{"a=b"});
}

TEST(WorkerConfigTest, EachMistakeNamesItsKey) {
  const std::string echo = "model:\n  name: m\n  backend: echo\n";
  ExpectError("model:\n  backend: echo\n", "model.name");
  ExpectError("model:\n  name: 'a b'\n  backend: echo\n", "model.name");
  ExpectError("model:\n  name: m\n  backend: gpu\n", "model.backend");
  ExpectError("model:\n  name: m\n", "model.package");
  ExpectError("model:\n  name: m\n  package: p\n", "enclave.platform");
  ExpectError(echo + "  precision: fp16\n", "model.precision");
  ExpectError(echo + "worker:\n  batching:\n    max_batch_size: 0\n", "worker.batching.max_batch_size");
  ExpectError(echo + "worker:\n  batching:\n    max_batch_size: many\n", "worker.batching.max_batch_size");
  ExpectError(echo + "worker:\n  batching:\n    max_queue_delay_us: -1\n", "worker.batching.max_queue_delay_us");
  ExpectError(echo + "worker:\n  recovery:\n    claim_idle_ms: 1\n", "worker.recovery.claim_idle_ms");
  ExpectError(echo + "worker:\n  recovery:\n    max_deliveries: 0\n", "worker.recovery.max_deliveries");
  ExpectError(echo + "worker:\n  metrics:\n    port: 70000\n", "worker.metrics.port");
  ExpectError(echo + "worker:\n  consumer: 'x y'\n", "worker.consumer");
  ExpectError(echo + "worker:\n  batching:\n    max_batch_sise: 4\n", "did you mean worker.batching.max_batch_size");
  ExpectError(echo + "redis:\n  url: http://x\n", "redis.url");
  ExpectError(echo + "redis:\n  tls:\n    ca: ca.crt\n", "need a rediss:// url");
  ExpectError(echo + "redis:\n  url: rediss://x\n  tls:\n    cert: c.crt\n", "redis.tls.key");
  ExpectError(echo + "redis:\n  password_file: /nonexistent/pw\n", "redis.password_file");
  ExpectError(echo + "redis:\n  url: redis://:pw@x\n  password_file: /etc/hostname\n", "already holds a password");
  ExpectError("model:\n  name: m\n  package: p\n  echo_delay_us: 5\nenclave:\n  platform: p\n  sealed_keys: k\n",
              "model.echo_delay_us");
  ExpectError("model:\n  name: m\n  package: p\nenclave:\n  platform: p\n  sealed_keys: k\n  weights: lazy\n",
              "enclave.weights");
}

// The annotated examples in configs/ stay valid as the loader changes.
TEST(WorkerConfigTest, ShippedConfigsLoad) {
  for (const char* name : {"worker.yaml", "worker-echo.yaml"}) {
    Result<WorkerConfig> config = LoadWorkerConfig(std::string(PPML_SOURCE_DIR) + "/configs/" + name);
    EXPECT_TRUE(config.ok()) << name << ": " << config.status().ToString();
  }
}

TEST(WorkerConfigTest, MissingFileIsNotFound) {
  Result<WorkerConfig> config = LoadWorkerConfig("/nonexistent/worker.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kNotFound);
  EXPECT_NE(config.status().message().find("/nonexistent/worker.yaml"), std::string::npos);
}

TEST(WorkerConfigTest, DefaultConsumerNamesDiffer) {
  EXPECT_NE(DefaultConsumerName(), DefaultConsumerName());
}

}  // namespace
}  // namespace ppml::worker
