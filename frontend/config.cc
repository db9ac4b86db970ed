#include "frontend/config.h"

#include <unistd.h>

#include <cctype>
#include <set>

#include "queue/redis_config.h"
#include "queue/request_entry.h"

namespace ppml::frontend {
namespace {

Status LoadFrontend(ConfigReader& config, FrontendConfig* out) {
  PPML_RETURN_IF_ERROR(config.Optional("frontend.id", &out->id));
  if (!out->id.empty()) {
    if (Status s = queue::CheckKeyName(out->id, "front-end id"); !s.ok()) return config.Invalid("frontend.id", s.message());
  }
  PPML_RETURN_IF_ERROR(config.Optional("frontend.listen.host", &out->host));
  if (out->host.empty()) return config.Invalid("frontend.listen.host", "must not be empty");
  PPML_RETURN_IF_ERROR(config.Optional("frontend.listen.port", &out->port));
  PPML_RETURN_IF_ERROR(config.CheckInRange("frontend.listen.port", out->port, 0, 65535));

  TlsSection& tls = out->tls;
  PPML_RETURN_IF_ERROR(config.Optional("frontend.tls.enabled", &tls.enabled));
  if (tls.enabled) {
    PPML_RETURN_IF_ERROR(config.RequiredPath("frontend.tls.cert", &tls.cert_file));
    PPML_RETURN_IF_ERROR(config.RequiredPath("frontend.tls.key", &tls.key_file));
    PPML_RETURN_IF_ERROR(config.OptionalPath("frontend.tls.client_ca", &tls.client_ca_file));
  } else {
    for (const char* key : {"frontend.tls.cert", "frontend.tls.key", "frontend.tls.client_ca"}) {
      // A certificate next to enabled: false is a config that does not say what it means.
      std::string ignored;
      PPML_RETURN_IF_ERROR(config.Optional(key, &ignored));
      if (!ignored.empty()) return config.Invalid(key, "set while frontend.tls.enabled is false");
    }
  }

  PPML_RETURN_IF_ERROR(config.Required("frontend.models", &out->models));
  if (out->models.empty()) return config.Invalid("frontend.models", "lists no model");
  std::set<std::string> seen;
  for (size_t i = 0; i < out->models.size(); ++i) {
    const std::string key = "frontend.models[" + std::to_string(i) + "]";
    if (Status s = queue::CheckKeyName(out->models[i], "model name"); !s.ok()) return config.Invalid(key, s.message());
    if (!seen.insert(out->models[i]).second) return config.Invalid(key, "model '" + out->models[i] + "' is listed twice");
  }

  PPML_RETURN_IF_ERROR(config.Optional("frontend.max_body_bytes", &out->max_body_bytes));
  PPML_RETURN_IF_ERROR(
      config.CheckInRange("frontend.max_body_bytes", out->max_body_bytes, int64_t{1}, int64_t{1} << 30));
  PPML_RETURN_IF_ERROR(config.Optional("frontend.default_timeout_ms", &out->default_timeout_ms));
  PPML_RETURN_IF_ERROR(config.CheckInRange("frontend.default_timeout_ms", out->default_timeout_ms, int64_t{1},
                                           int64_t{3'600'000}));
  PPML_RETURN_IF_ERROR(config.Optional("frontend.max_queue_length", &out->max_queue_length));
  PPML_RETURN_IF_ERROR(config.CheckPositive("frontend.max_queue_length", out->max_queue_length));
  PPML_RETURN_IF_ERROR(config.Optional("frontend.client_timeout_ms", &out->client_timeout_ms));
  PPML_RETURN_IF_ERROR(config.CheckInRange("frontend.client_timeout_ms", out->client_timeout_ms, int64_t{100},
                                           int64_t{3'600'000}));
  PPML_RETURN_IF_ERROR(config.Optional("frontend.results_max_length", &out->results_max_length));
  PPML_RETURN_IF_ERROR(config.CheckPositive("frontend.results_max_length", out->results_max_length));
  return Status::Ok();
}

Result<FrontendConfig> Load(Result<ConfigReader> reader) {
  if (!reader.ok()) return reader.status();
  FrontendConfig out;
  PPML_RETURN_IF_ERROR(LoadFrontendSections(*reader, &out));
  PPML_RETURN_IF_ERROR(reader->CheckNoUnknownKeys());
  return out;
}

}  // namespace

Status LoadFrontendSections(ConfigReader& config, FrontendConfig* out) {
  PPML_RETURN_IF_ERROR(queue::LoadRedisConfig(config, &out->redis));
  PPML_RETURN_IF_ERROR(LoadFrontend(config, out));
  PPML_RETURN_IF_ERROR(config.Optional("security.allow_plaintext", &out->allow_plaintext));
  return Status::Ok();
}

Result<FrontendConfig> LoadFrontendConfig(const std::string& path) { return Load(ConfigReader::LoadFile(path)); }

Result<FrontendConfig> ParseFrontendConfig(std::string_view yaml, const std::string& source_name) {
  return Load(ConfigReader::LoadString(yaml, source_name));
}

std::string DefaultFrontendId() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof(host), "frontend");
  std::string name;
  for (const char* c = host; *c != '\0' && name.size() < 100; ++c) {
    name += (std::isalnum(static_cast<unsigned char>(*c)) || *c == '-' || *c == '.') ? *c : '_';
  }
  return name + "-" + std::to_string(::getpid());
}

}  // namespace ppml::frontend
