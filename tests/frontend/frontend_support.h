// Shared pieces of the front-end tests: a dev CA and a server certificate
// for 127.0.0.1, a front-end config, ppml-frontend as a process (its port
// read from its start-up line), and echo workers as ppml-worker processes.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/file_io.h"
#include "common/x509.h"
#include "tests/frontend/https_client.h"
#include "tests/support/metric_value.h"
#include "tests/worker/worker_support.h"

namespace ppml::testing {

// ca.crt, server.crt and server.key in `dir` (server: localhost and 127.0.0.1).
inline x509::CertifiedKey MakeServerCertificates(const TempDir& dir) {
  auto ca = x509::GenerateDevCa("ppml frontend test CA");
  EXPECT_TRUE(ca.ok()) << ca.status().ToString();
  if (!ca.ok()) return {};
  x509::CertificateRequest request;
  request.common_name = "ppml-frontend";
  request.dns_names = {"localhost"};
  request.ip_addresses = {"127.0.0.1"};
  auto server = x509::IssueCertificate(*ca, request);
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_TRUE(WriteFile(dir.File("ca.crt"), ca->cert_pem).ok());
  if (server.ok()) {
    EXPECT_TRUE(x509::WritePemFiles(*server, dir.File("server.key"), dir.File("server.crt")).ok());
  }
  return *ca;
}

struct FrontendOptions {
  std::string id = "fe-test";
  std::string models = "[m]";
  bool tls = true;
  std::string client_ca = "";  // file name in the test folder
  int64_t max_body_bytes = 65536;
  int64_t default_timeout_ms = 5000;
  int64_t max_queue_length = 1000;
  bool allow_plaintext = false;
};

inline std::string FrontendYaml(const queue::LocalRedisServer& redis, const FrontendOptions& options) {
  std::string yaml = RedisYaml(redis) + "frontend:\n  id: " + options.id + "\n  listen: {host: 127.0.0.1, port: 0}\n";
  if (options.tls) {
    yaml += "  tls:\n    cert: server.crt\n    key: server.key\n";
    if (!options.client_ca.empty()) yaml += "    client_ca: " + options.client_ca + "\n";
  } else {
    yaml += "  tls: {enabled: false}\n";
  }
  yaml += "  models: " + options.models + "\n  max_body_bytes: " + std::to_string(options.max_body_bytes) +
          "\n  default_timeout_ms: " + std::to_string(options.default_timeout_ms) +
          "\n  max_queue_length: " + std::to_string(options.max_queue_length) +
          "\nsecurity:\n  allow_plaintext: " + (options.allow_plaintext ? "true" : "false") + "\n";
  return yaml;
}

// ppml-frontend with `yaml` as DIR/NAME.yaml; its stderr goes to DIR/NAME.log.
inline ChildProcess StartFrontendProcess(const TempDir& dir, const std::string& name, const std::string& yaml) {
  const std::string config = dir.File(name + ".yaml");
  EXPECT_TRUE(WriteFile(config, yaml).ok());
  ProcessOptions options;
  options.argv = {BinPath("ppml-frontend"), "--config", config};
  options.log_file = dir.File(name + ".log");
  options.env = {"PPML_LOG_LEVEL=info"};
  auto process = ChildProcess::Start(std::move(options));
  EXPECT_TRUE(process.ok()) << process.status().ToString();
  return process.ok() ? std::move(process).value() : ChildProcess();
}

// The port of "event=frontend_listening url=https://127.0.0.1:PORT" in
// DIR/NAME.log; 0 when the line did not come in time.
inline uint16_t WaitForListening(const TempDir& dir, const std::string& name, std::chrono::milliseconds timeout) {
  uint16_t port = 0;
  WaitFor(
      [&] {
        const std::string log = ReadLog(dir, name);
        const size_t line = log.find("event=frontend_listening");
        if (line == std::string::npos) return false;
        const size_t url = log.find("url=", line);
        const size_t end = log.find_first_of(" \n", url);
        const std::string text = log.substr(url, end - url);
        port = static_cast<uint16_t>(std::stoi(text.substr(text.rfind(':') + 1)));
        return true;
      },
      timeout);
  return port;
}

inline std::string EchoWorkerYaml(const queue::LocalRedisServer& redis, const std::string& model,
                                  const std::string& consumer) {
  return RedisYaml(redis) + "model:\n  name: " + model + "\n  backend: echo\nworker:\n  consumer: " + consumer +
         "\n  batching:\n    max_batch_size: 16\n    max_queue_delay_us: 1000\n  metrics:\n    port: -1\n";
}

}  // namespace ppml::testing
