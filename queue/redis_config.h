// The `redis` section of a service config (worker, front-end, serve):
//
//   redis:
//     url: rediss://ppml@redis.internal:6380/0   # redis:// or rediss:// (TLS)
//     password_file: secrets/redis.password     # first line; never put it in the url
//     tls:                                      # rediss:// only
//       ca: certs/redis-ca.crt                  # verify the server (default: system CAs)
//       cert: certs/worker.crt                  # client certificate (tls-auth-clients yes)
//       key: certs/worker.key
//       server_name: redis.internal             # SNI / name to verify (default: the url's host)
//     connect_timeout_ms: 5000
//     io_timeout_ms: 5000
//
// Every key is optional; url defaults to redis://127.0.0.1:6379. Relative
// paths are taken from the config file's folder. Errors name the file and key.
#pragma once

#include "common/config.h"
#include "common/status.h"
#include "queue/redis.h"

namespace ppml::queue {

inline constexpr std::string_view kDefaultRedisUrl = "redis://127.0.0.1:6379";

// Reads the section (reading password_file too) into *out.
Status LoadRedisConfig(ConfigReader& config, RedisEndpoint* out);

}  // namespace ppml::queue
