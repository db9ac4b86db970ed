// The front-end's config: defaults, relative paths, and errors that name the
// file and the key.
#include <gtest/gtest.h>

#include "frontend/config.h"

namespace ppml::frontend {
namespace {

TEST(FrontendConfigTest, DefaultsAndPathsFromTheConfigFolder) {
  auto config = ParseFrontendConfig(
      "frontend:\n  tls: {cert: certs/server.crt, key: /abs/server.key, client_ca: ca.crt}\n  models: [fashion]\n",
      "/etc/ppml/frontend.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->id, "");
  EXPECT_EQ(config->host, "127.0.0.1");
  EXPECT_EQ(config->port, 8443);
  EXPECT_TRUE(config->tls.enabled);
  EXPECT_EQ(config->tls.cert_file, "/etc/ppml/certs/server.crt");
  EXPECT_EQ(config->tls.key_file, "/abs/server.key");
  EXPECT_EQ(config->tls.client_ca_file, "/etc/ppml/ca.crt");
  EXPECT_EQ(config->models, std::vector<std::string>{"fashion"});
  EXPECT_EQ(config->max_body_bytes, 16 << 20);
  EXPECT_EQ(config->default_timeout_ms, 10000);
  EXPECT_EQ(config->max_queue_length, 10000);
  EXPECT_EQ(config->results_max_length, 100000);
  EXPECT_FALSE(config->allow_plaintext);
  EXPECT_EQ(config->redis.host, "127.0.0.1");
  EXPECT_EQ(config->redis.port, 6379);
}

TEST(FrontendConfigTest, EveryKey) {
  auto config = ParseFrontendConfig(
      "redis: {url: 'redis://10.0.0.5:6390'}\n"
      "frontend:\n  id: fe-1\n  listen: {host: 0.0.0.0, port: 0}\n  tls: {enabled: false}\n"
      "  models: [a, b.v2]\n  max_body_bytes: 1024\n  default_timeout_ms: 250\n  max_queue_length: 7\n"
      "  client_timeout_ms: 5000\n  results_max_length: 50\n"
      "security:\n  allow_plaintext: true\n",
      "fe.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->id, "fe-1");
  EXPECT_EQ(config->host, "0.0.0.0");
  EXPECT_EQ(config->port, 0);
  EXPECT_FALSE(config->tls.enabled);
  EXPECT_EQ(config->models, (std::vector<std::string>{"a", "b.v2"}));
  EXPECT_EQ(config->max_body_bytes, 1024);
  EXPECT_EQ(config->default_timeout_ms, 250);
  EXPECT_EQ(config->max_queue_length, 7);
  EXPECT_EQ(config->client_timeout_ms, 5000);
  EXPECT_EQ(config->results_max_length, 50);
  EXPECT_TRUE(config->allow_plaintext);
  EXPECT_EQ(config->redis.port, 6390);
}

// Each bad config fails with a message naming the file and the key.
TEST(FrontendConfigTest, ErrorsNameTheFileAndKey) {
  const struct {
    const char* yaml;
    const char* key;
  } cases[] = {
      {"frontend:\n  models: [m]\n  tls: {enabled: false}\n  modles: [x]\n", "frontend.modles"},
      {"frontend:\n  tls: {enabled: false}\n", "frontend.models"},
      {"frontend:\n  models: []\n  tls: {enabled: false}\n", "frontend.models"},
      {"frontend:\n  models: [m, m]\n  tls: {enabled: false}\n", "frontend.models[1]"},
      {"frontend:\n  models: ['a b']\n  tls: {enabled: false}\n", "frontend.models[0]"},
      {"frontend:\n  id: 'fe/1'\n  models: [m]\n  tls: {enabled: false}\n", "frontend.id"},
      {"frontend:\n  models: [m]\n  listen: {port: 70000}\n  tls: {enabled: false}\n", "frontend.listen.port"},
      {"frontend:\n  models: [m]\n  tls: {key: k.pem}\n", "frontend.tls.cert"},
      {"frontend:\n  models: [m]\n  tls: {enabled: false, cert: c.pem}\n", "frontend.tls.cert"},
      {"frontend:\n  models: [m]\n  tls: {enabled: false}\n  max_body_bytes: 0\n", "frontend.max_body_bytes"},
      {"frontend:\n  models: [m]\n  tls: {enabled: false}\n  default_timeout_ms: soon\n",
       "frontend.default_timeout_ms"},
      {"frontend:\n  models: [m]\n  tls: {enabled: false}\n  max_queue_length: -1\n", "frontend.max_queue_length"},
      {"frontend:\n  models: [m]\n  tls: {enabled: false}\nsecurity:\n  allow_plaintext: maybe\n",
       "security.allow_plaintext"},
      {"redis: {url: 'http://x'}\nfrontend:\n  models: [m]\n  tls: {enabled: false}\n", "redis.url"},
  };
  for (const auto& c : cases) {
    auto config = ParseFrontendConfig(c.yaml, "bad.yaml");
    ASSERT_FALSE(config.ok()) << c.yaml;
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument) << config.status().ToString();
    EXPECT_NE(config.status().message().find("bad.yaml"), std::string::npos) << config.status().ToString();
    EXPECT_NE(config.status().message().find(c.key), std::string::npos) << c.key << ": " << config.status().ToString();
  }
}

// The annotated example in configs/ stays valid as the loader changes.
TEST(FrontendConfigTest, ShippedConfigLoads) {
  auto config = LoadFrontendConfig(std::string(PPML_SOURCE_DIR) + "/configs/frontend.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
}

TEST(FrontendConfigTest, DefaultIdIsAValidKeyName) {
  const std::string id = DefaultFrontendId();
  EXPECT_FALSE(id.empty());
  EXPECT_NE(id.find(std::to_string(::getpid())), std::string::npos);
  for (char c : id) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') << id;
}

}  // namespace
}  // namespace ppml::frontend
