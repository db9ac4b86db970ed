#include "common/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace ppml {
namespace {

// The pattern later config sections (redis, model, worker, enclave) follow:
// a struct with its defaults at the fields, one Load function that reads and
// validates every key, then CheckNoUnknownKeys once all sections are read.
struct ExampleBatching {
  int max_batch_size = 8;
  int64_t max_queue_delay_us = 2000;
};

struct ExampleConfig {
  std::string model_name;  // required
  std::string precision = "fp32";
  ExampleBatching batching;
  bool allow_plaintext = false;
  double accuracy_budget = 0.01;
  std::vector<std::string> redis_hosts;
};

Status LoadExampleConfig(ConfigReader& config, ExampleConfig* out) {
  PPML_RETURN_IF_ERROR(config.Required("model.name", &out->model_name));
  PPML_RETURN_IF_ERROR(config.Optional("model.precision", &out->precision));
  PPML_RETURN_IF_ERROR(config.CheckOneOf("model.precision", out->precision, {"fp32", "int8"}));
  PPML_RETURN_IF_ERROR(config.Optional("worker.batching.max_batch_size", &out->batching.max_batch_size));
  PPML_RETURN_IF_ERROR(config.CheckPositive("worker.batching.max_batch_size", out->batching.max_batch_size));
  PPML_RETURN_IF_ERROR(config.Optional("worker.batching.max_queue_delay_us", &out->batching.max_queue_delay_us));
  PPML_RETURN_IF_ERROR(config.CheckNonNegative("worker.batching.max_queue_delay_us", out->batching.max_queue_delay_us));
  PPML_RETURN_IF_ERROR(config.Optional("frontend.allow_plaintext", &out->allow_plaintext));
  PPML_RETURN_IF_ERROR(config.Optional("model.accuracy_budget", &out->accuracy_budget));
  PPML_RETURN_IF_ERROR(config.CheckInRange("model.accuracy_budget", out->accuracy_budget, 0.0, 1.0));
  PPML_RETURN_IF_ERROR(config.Optional("redis.hosts", &out->redis_hosts));
  return config.CheckNoUnknownKeys();
}

ConfigReader Parse(const std::string& yaml) {
  Result<ConfigReader> config = ConfigReader::LoadString(yaml, "configs/x.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return std::move(config).value();
}

Status LoadExample(const std::string& yaml, ExampleConfig* out) {
  Result<ConfigReader> config = ConfigReader::LoadString(yaml, "configs/x.yaml");
  if (!config.ok()) return config.status();
  return LoadExampleConfig(*config, out);
}

TEST(ConfigTest, ExampleLoadsEveryField) {
  ExampleConfig config;
  Status status = LoadExample(R"(
model:
  name: fashion_cnn
  precision: int8
  accuracy_budget: 0.005
worker:
  batching:
    max_batch_size: 16
    max_queue_delay_us: 500
frontend:
  allow_plaintext: yes
redis:
  hosts: [a:6379, b:6379]
)",
                              &config);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(config.model_name, "fashion_cnn");
  EXPECT_EQ(config.precision, "int8");
  EXPECT_DOUBLE_EQ(config.accuracy_budget, 0.005);
  EXPECT_EQ(config.batching.max_batch_size, 16);
  EXPECT_EQ(config.batching.max_queue_delay_us, 500);
  EXPECT_TRUE(config.allow_plaintext);
  EXPECT_EQ(config.redis_hosts, (std::vector<std::string>{"a:6379", "b:6379"}));
}

TEST(ConfigTest, OptionalKeysKeepTheirDefaults) {
  ExampleConfig config;
  Status status = LoadExample("model:\n  name: m\nworker:\n  batching:\n    max_batch_size: ~\n", &config);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(config.precision, "fp32");
  EXPECT_EQ(config.batching.max_batch_size, 8);
  EXPECT_EQ(config.batching.max_queue_delay_us, 2000);
  EXPECT_FALSE(config.allow_plaintext);
  EXPECT_TRUE(config.redis_hosts.empty());
}

TEST(ConfigTest, TypeErrorNamesFileKeyValueAndLine) {
  ExampleConfig config;
  Status status = LoadExample("model:\n  name: m\nworker:\n  batching:\n    max_batch_size: abc\n", &config);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "configs/x.yaml: worker.batching.max_batch_size: expected an integer, got \"abc\" (line 5)");
}

TEST(ConfigTest, MissingRequiredKey) {
  ExampleConfig config;
  Status status = LoadExample("worker:\n  batching:\n    max_batch_size: 4\n", &config);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "configs/x.yaml: missing required key model.name");
}

TEST(ConfigTest, RequiredKeyWithoutValue) {
  ConfigReader config = Parse("model:\n  name:\n");
  std::string name;
  Status status = config.Required("model.name", &name);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "configs/x.yaml: model.name: required key has no value (line 2)");
}

TEST(ConfigTest, UnknownKeyWithSuggestion) {
  ExampleConfig config;
  Status status = LoadExample("model:\n  name: m\nworker:\n  batching:\n    max_batch_siz: 4\n", &config);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "configs/x.yaml: unknown key worker.batching.max_batch_siz "
            "(line 5; did you mean worker.batching.max_batch_size?)");
}

TEST(ConfigTest, UnknownKeysAreAllListed) {
  ExampleConfig config;
  Status status = LoadExample("model:\n  name: m\ncolour: blue\nworker:\n  threads: 4\n", &config);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "configs/x.yaml: unknown key colour (line 3); unknown key worker.threads (line 5)");
}

TEST(ConfigTest, UnknownSectionWithoutNearKey) {
  ConfigReader config = Parse("enclave:\n  budget_mib: 64\n");
  Status status = config.CheckNoUnknownKeys();
  EXPECT_EQ(status.message(), "configs/x.yaml: unknown key enclave (line 1)");
}

TEST(ConfigTest, MarkReadAcceptsAWholeSection) {
  ConfigReader config = Parse("enclave:\n  budget_mib: 64\n  sealing: {key: x}\n");
  config.MarkRead("enclave");
  EXPECT_TRUE(config.CheckNoUnknownKeys().ok());
}

TEST(ConfigTest, BoolErrors) {
  ConfigReader config = Parse("frontend:\n  allow_plaintext: maybe\n");
  bool value = false;
  EXPECT_EQ(config.Optional("frontend.allow_plaintext", &value).message(),
            "configs/x.yaml: frontend.allow_plaintext: expected true or false, got \"maybe\" (line 2)");
}

TEST(ConfigTest, NumberErrors) {
  ConfigReader config = Parse("a: 1.5\nb: nan\nc: 99999999999\nd: 99999999999999999999\ne: 0x10\nf: -3\n");
  int small = 0;
  int64_t wide = 0;
  double real = 0;
  EXPECT_EQ(config.Optional("a", &small).message(), "configs/x.yaml: a: expected an integer, got \"1.5\" (line 1)");
  EXPECT_EQ(config.Optional("b", &real).message(), "configs/x.yaml: b: expected a number, got \"nan\" (line 2)");
  EXPECT_EQ(config.Optional("c", &small).message(),
            "configs/x.yaml: c: integer \"99999999999\" is out of range (at most 2147483647) (line 3)");
  EXPECT_TRUE(config.Optional("c", &wide).ok());
  EXPECT_EQ(wide, 99999999999);
  EXPECT_EQ(config.Optional("d", &wide).message(),
            "configs/x.yaml: d: integer \"99999999999999999999\" is out of range (line 4)");
  EXPECT_EQ(config.Optional("e", &wide).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(config.Optional("f", &small).ok());
  EXPECT_EQ(small, -3);
  EXPECT_TRUE(config.Optional("a", &real).ok());
  EXPECT_DOUBLE_EQ(real, 1.5);
  EXPECT_TRUE(config.Optional("f", &real).ok());
  EXPECT_DOUBLE_EQ(real, -3.0);
}

TEST(ConfigTest, StringAndSequenceErrors) {
  ConfigReader config = Parse("name: {a: 1}\nhosts: a:6379\nsizes: [1, two]\n");
  std::string name;
  std::vector<std::string> hosts;
  std::vector<int64_t> sizes;
  EXPECT_EQ(config.Optional("name", &name).message(),
            "configs/x.yaml: name: expected a string, got a mapping (line 1)");
  EXPECT_EQ(config.Optional("hosts", &hosts).message(),
            "configs/x.yaml: hosts: expected a sequence of strings, got \"a:6379\" (line 2)");
  EXPECT_EQ(config.Optional("sizes", &sizes).message(),
            "configs/x.yaml: sizes: element 1: expected an integer, got \"two\" (line 3)");
}

TEST(ConfigTest, PathThroughAScalar) {
  ConfigReader config = Parse("worker: 4\n");
  int value = 0;
  EXPECT_EQ(config.Optional("worker.batching.max_batch_size", &value).message(),
            "configs/x.yaml: worker: expected a mapping, got \"4\" (line 1)");
}

TEST(ConfigTest, RangeChecksNameKeyAndLine) {
  ConfigReader config = Parse("worker:\n  workers: 0\n  ratio: 2.5\n  mode: fast\n");
  EXPECT_EQ(config.CheckPositive("worker.workers", int64_t{0}).message(),
            "configs/x.yaml: worker.workers: must be a positive integer, got 0 (line 2)");
  EXPECT_EQ(config.CheckInRange("worker.ratio", 2.5, 0.0, 1.0).message(),
            "configs/x.yaml: worker.ratio: must be between 0 and 1, got 2.5 (line 3)");
  EXPECT_EQ(config.CheckInRange("worker.workers", int64_t{0}, 1, 64).message(),
            "configs/x.yaml: worker.workers: must be between 1 and 64, got 0 (line 2)");
  EXPECT_EQ(config.CheckOneOf("worker.mode", "fast", {"off", "integrity", "private"}).message(),
            "configs/x.yaml: worker.mode: must be one of off, integrity, private, got \"fast\" (line 4)");
  EXPECT_EQ(config.CheckNonNegative("worker.absent", int64_t{-1}).message(),
            "configs/x.yaml: worker.absent: must not be negative, got -1");
  EXPECT_TRUE(config.CheckPositive("worker.workers", 1.5).ok());
  EXPECT_EQ(config.CheckPositive("worker.ratio", -0.5).message(),
            "configs/x.yaml: worker.ratio: must be positive, got -0.5 (line 3)");
}

TEST(ConfigTest, SequencesOfSections) {
  ConfigReader config = Parse(R"(
models:
  - name: a
    batch: 4
  - name: b
    bach: 8
)");
  Result<size_t> count = config.SequenceSize("models");
  ASSERT_TRUE(count.ok());
  ASSERT_EQ(*count, 2u);
  std::vector<std::string> names;
  for (size_t i = 0; i < *count; ++i) {
    const std::string prefix = "models[" + std::to_string(i) + "]";
    std::string name;
    int batch = 1;
    ASSERT_TRUE(config.Required(prefix + ".name", &name).ok());
    ASSERT_TRUE(config.Optional(prefix + ".batch", &batch).ok());
    names.push_back(name);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(config.CheckNoUnknownKeys().message(),
            "configs/x.yaml: unknown key models[1].bach (line 6; did you mean models[1].batch?)");
}

TEST(ConfigTest, EmptySequenceAndAbsentSequence) {
  ConfigReader config = Parse("models: []\n");
  EXPECT_EQ(*config.SequenceSize("models"), 0u);
  EXPECT_EQ(*config.SequenceSize("absent"), 0u);
  EXPECT_TRUE(config.CheckNoUnknownKeys().ok());
  ConfigReader scalar = Parse("models: 3\n");
  EXPECT_EQ(scalar.SequenceSize("models").status().message(),
            "configs/x.yaml: models: expected a sequence, got \"3\" (line 1)");
}

TEST(ConfigTest, HasDoesNotCountAsRead) {
  ConfigReader config = Parse("a:\n  b: 1\n  c: ~\n");
  EXPECT_TRUE(config.Has("a.b"));
  EXPECT_FALSE(config.Has("a.c"));
  EXPECT_FALSE(config.Has("a.d"));
  EXPECT_FALSE(config.Has("a.b.c"));
  EXPECT_FALSE(config.CheckNoUnknownKeys().ok());
}

TEST(ConfigTest, SyntaxErrorHasLineAndColumn) {
  Result<ConfigReader> config = ConfigReader::LoadString("model:\n  name: [unclosed\n", "configs/x.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message().rfind("configs/x.yaml:", 0), 0u) << config.status().message();
  EXPECT_NE(config.status().message().find("YAML syntax error"), std::string::npos) << config.status().message();
}

TEST(ConfigTest, SyntaxErrorLocation) {
  Result<ConfigReader> config = ConfigReader::LoadString("a: 1\nb: [1, 2\nc: 3\n", "x.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("x.yaml:"), std::string::npos);
  Result<ConfigReader> tab = ConfigReader::LoadString("a:\n\tb: 1\n", "x.yaml");
  ASSERT_FALSE(tab.ok());
  EXPECT_EQ(tab.status().message().rfind("x.yaml:", 0), 0u) << tab.status().message();
}

TEST(ConfigTest, DuplicateKey) {
  Result<ConfigReader> config = ConfigReader::LoadString("worker:\n  workers: 1\n  workers: 2\n", "x.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(), "x.yaml: duplicate key worker.workers (line 3)");
}

TEST(ConfigTest, TopLevelMustBeAMapping) {
  Result<ConfigReader> config = ConfigReader::LoadString("- a\n- b\n", "x.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(), "x.yaml: the top level must be a mapping of sections, got a sequence");
}

TEST(ConfigTest, EmptyFileIsAnEmptyConfig) {
  ConfigReader config = Parse("");
  std::string name = "default";
  EXPECT_TRUE(config.Optional("model.name", &name).ok());
  EXPECT_EQ(name, "default");
  EXPECT_EQ(config.Required("model.name", &name).message(), "configs/x.yaml: missing required key model.name");
  EXPECT_TRUE(config.CheckNoUnknownKeys().ok());
}

TEST(ConfigTest, LoadFileMissing) {
  Result<ConfigReader> config = ConfigReader::LoadFile("/nonexistent/ppml.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(), "/nonexistent/ppml.yaml: cannot open config file: No such file or directory");
}

TEST(ConfigTest, LoadFileReadsAndNamesTheFile) {
  const std::string path = (std::filesystem::path(testing::TempDir()) / "ppml_config_test.yaml").string();
  {
    std::ofstream out(path);
    out << "model:\n  name: m\n  batch: many\n";
  }
  Result<ConfigReader> config = ConfigReader::LoadFile(path);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->source_name(), path);
  int batch = 0;
  EXPECT_EQ(config->Optional("model.batch", &batch).message(),
            path + ": model.batch: expected an integer, got \"many\" (line 3)");
  std::remove(path.c_str());
}

TEST(ConfigTest, MalformedPathIsAnInternalError) {
  ConfigReader config = Parse("a: 1\n");
  int value = 0;
  EXPECT_EQ(config.Optional("a..b", &value).code(), StatusCode::kInternal);
  EXPECT_EQ(config.Optional("a[x]", &value).code(), StatusCode::kInternal);
  EXPECT_EQ(config.Optional("", &value).code(), StatusCode::kInternal);
}

TEST(ConfigTest, QuotedScalarsAndBoolSpellings) {
  ConfigReader config = Parse("port: \"6379\"\nt: True\nf: off\nname: 123\n");
  int port = 0;
  bool t = false, f = true;
  std::string name;
  EXPECT_TRUE(config.Required("port", &port).ok());
  EXPECT_EQ(port, 6379);
  EXPECT_TRUE(config.Required("t", &t).ok());
  EXPECT_TRUE(t);
  EXPECT_TRUE(config.Required("f", &f).ok());
  EXPECT_FALSE(f);
  EXPECT_TRUE(config.Required("name", &name).ok());
  EXPECT_EQ(name, "123");
}

}  // namespace
}  // namespace ppml
