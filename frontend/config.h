// The front-end's config file. Required: frontend.models, and frontend.tls.cert
// and .key while TLS is on; other keys show their defaults:
//
//   redis:   see queue/redis_config.h
//   frontend:
//     id: ""                      # result stream ppml:results:{id}; [A-Za-z0-9_.-];
//                                 # empty: HOST-PID (unique per process)
//     listen: {host: 127.0.0.1, port: 8443}   # port 0: the kernel picks (logged)
//     tls:
//       enabled: true             # false: plain HTTP (development only)
//       cert: certs/server.crt    # PEM chain, served to clients
//       key: certs/server.key     # its private key
//       client_ca: ""             # set: clients must present a certificate from this CA
//     models: [fashion]           # models served; any other is 404
//     max_body_bytes: 16777216    # larger request bodies: 413
//     default_timeout_ms: 10000   # request deadline; a client may ask for less
//                                 # with the header Inference-Timeout-Ms
//     max_queue_length: 10000     # XLEN of ppml:{m}:requests at or above: 429
//     client_timeout_ms: 30000    # a client silent this long mid-request is dropped
//     results_max_length: 100000  # MAXLEN ~ the front-end trims its result stream to
//   security:
//     allow_plaintext: false      # plaintext KServe JSON inference (else 403)
//
// Unknown keys, wrong types and values out of range are errors naming the
// file, the key path and the line. Relative paths are from the file's folder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "queue/redis.h"

namespace ppml::frontend {

struct TlsSection {
  bool enabled = true;
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // empty: no client certificates asked for
};

struct FrontendConfig {
  queue::RedisEndpoint redis;
  std::string id;  // empty: DefaultFrontendId()
  std::string host = "127.0.0.1";
  int port = 8443;
  TlsSection tls;
  std::vector<std::string> models;
  int64_t max_body_bytes = int64_t{16} << 20;
  int64_t default_timeout_ms = 10000;
  int64_t max_queue_length = 10000;
  int64_t client_timeout_ms = 30000;
  int64_t results_max_length = 100000;
  bool allow_plaintext = false;
};

Result<FrontendConfig> LoadFrontendConfig(const std::string& path);
// The same from YAML text; `source_name` stands for the file in messages.
Result<FrontendConfig> ParseFrontendConfig(std::string_view yaml, const std::string& source_name);
// Reads the redis, frontend and security sections from a reader that may hold
// other sections too (a combined config); does not check for unknown keys.
Status LoadFrontendSections(ConfigReader& config, FrontendConfig* out);

// "HOST-PID", cut to the key-name rules: unique among running front-ends.
std::string DefaultFrontendId();

}  // namespace ppml::frontend
