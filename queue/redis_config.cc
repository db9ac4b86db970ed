#include "queue/redis_config.h"

#include "common/file_io.h"

namespace ppml::queue {

Status LoadRedisConfig(ConfigReader& config, RedisEndpoint* out) {
  std::string url(kDefaultRedisUrl);
  PPML_RETURN_IF_ERROR(config.Optional("redis.url", &url));
  Result<RedisEndpoint> endpoint = ParseRedisUrl(url);
  if (!endpoint.ok()) return config.Invalid("redis.url", endpoint.status().message());
  *out = std::move(endpoint).value();

  std::string password_file;
  PPML_RETURN_IF_ERROR(config.OptionalPath("redis.password_file", &password_file));
  if (!password_file.empty()) {
    if (!out->password.empty()) {
      return config.Invalid("redis.password_file", "the url already holds a password; keep it in the file only");
    }
    Result<std::string> text = ReadFile(password_file);
    if (!text.ok()) return config.Invalid("redis.password_file", text.status().message());
    const size_t end = text->find_first_of("\r\n");
    out->password = text->substr(0, end);
    if (out->password.empty()) return config.Invalid("redis.password_file", "the first line of " + password_file + " is empty");
  }

  RedisTlsOptions& tls = out->tls_options;
  PPML_RETURN_IF_ERROR(config.OptionalPath("redis.tls.ca", &tls.ca_file));
  PPML_RETURN_IF_ERROR(config.OptionalPath("redis.tls.cert", &tls.cert_file));
  PPML_RETURN_IF_ERROR(config.OptionalPath("redis.tls.key", &tls.key_file));
  PPML_RETURN_IF_ERROR(config.Optional("redis.tls.server_name", &tls.server_name));
  const bool any_tls = !tls.ca_file.empty() || !tls.cert_file.empty() || !tls.key_file.empty() ||
                       !tls.server_name.empty();
  if (any_tls && !out->tls) return config.Invalid("redis.tls", "TLS settings need a rediss:// url");
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return config.Invalid(tls.cert_file.empty() ? "redis.tls.cert" : "redis.tls.key",
                          "a client certificate needs both redis.tls.cert and redis.tls.key");
  }

  PPML_RETURN_IF_ERROR(config.Optional("redis.connect_timeout_ms", &out->connect_timeout_ms));
  PPML_RETURN_IF_ERROR(config.CheckNonNegative("redis.connect_timeout_ms", out->connect_timeout_ms));
  PPML_RETURN_IF_ERROR(config.Optional("redis.io_timeout_ms", &out->io_timeout_ms));
  PPML_RETURN_IF_ERROR(config.CheckNonNegative("redis.io_timeout_ms", out->io_timeout_ms));
  return Status::Ok();
}

}  // namespace ppml::queue
