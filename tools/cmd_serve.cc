// ppml serve --config configs/quickstart.yaml
//
//   The whole service on one machine (DESIGN.md contracts). On the first run
//   it makes, under serve.state_dir, what a deployment gets from its owners
//   and operators (reused on later runs):
//     platform/   the simulated platform key and sealing secret (ppml keygen platform)
//     enclave/    the enclave's sealed service key and attestation (ppml enclave provision)
//     MODEL.ppmlpkg  the model sealed to that enclave (ppml model seal), made
//                 again when the ONNX file is newer
//     certs/      a dev CA and the front-end's certificate (localhost, 127.0.0.1)
//   then starts redis-server (TLS only, client certificates and passwords
//   required, a free private port; unless redis.url is set), the front-end
//   and serve.workers workers, each with a generated config in run/ and a log
//   in logs/; once the front-end listens and every worker's heartbeat is in
//   Redis, prints one line
//     ready: url=https://HOST:PORT ca=PATH platform_pubkey=PATH measurement=HEX
//            redis=rediss://HOST:PORT redis_ca=PATH redis_password_file=PATH
//   (plus outsource=MODE accelerator=ADDR when enclave.outsource.mode is
//   integrity or private) and supervises: a process that dies is started
//   again. With outsourcing on and no enclave.outsource.accelerator, serve
//   starts ppml-accel itself (serve.accelerator.threads, .backend) on a Unix
//   socket in run/, before the workers; the workers reconnect to it when it
//   is restarted, running its layers inside meanwhile. SIGINT/SIGTERM
//   stop every process it started; then it exits 0.
#include <CLI/CLI.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>

#include "common/config.h"
#include "common/crypto.h"
#include "common/file_io.h"
#include "common/log.h"
#include "common/process.h"
#include "common/x509.h"
#include "enclave_sim/attestation.h"
#include "enclave_sim/enclave.h"
#include "queue/local_redis.h"
#include "queue/redis.h"
#include "queue/redis_config.h"
#include "queue/request_entry.h"
#include "tools/cli_support.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr const char* kCommand = "serve";

struct ServeConfig {
  std::string source;
  std::string state_dir;
  int workers = 2;
  std::string model_name;
  std::string model_onnx;
  std::string precision = "fp32";
  std::vector<std::string> config_entries;  // enclave.config_entries: measured at provisioning
  bool external_redis = false;
  // enclave.outsource: the mode is measured (provisioning must know it); with
  // no enclave.outsource.accelerator, serve starts ppml-accel itself.
  std::string outsource_mode = "off";
  std::string accelerator;  // enclave.outsource.accelerator
  bool start_accelerator = false;
  int accelerator_threads = 1;
  std::string accelerator_backend = "cpu";
  YAML::Node root;  // the sections passed on to the front-end and the workers
};

Result<ServeConfig> LoadServeConfig(const std::string& path) {
  PPML_ASSIGN_OR_RETURN(ConfigReader config, ConfigReader::LoadFile(path));
  ServeConfig out;
  out.source = path;
  out.state_dir = "serve-state";
  PPML_RETURN_IF_ERROR(config.OptionalPath("serve.state_dir", &out.state_dir));
  PPML_RETURN_IF_ERROR(config.Optional("serve.workers", &out.workers));
  PPML_RETURN_IF_ERROR(config.CheckInRange("serve.workers", out.workers, 1, 64));
  PPML_RETURN_IF_ERROR(config.Required("model.name", &out.model_name));
  if (Status s = queue::CheckKeyName(out.model_name, "model name"); !s.ok()) return config.Invalid("model.name", s.message());
  PPML_RETURN_IF_ERROR(config.RequiredPath("model.onnx", &out.model_onnx));
  PPML_RETURN_IF_ERROR(config.Optional("model.precision", &out.precision));
  PPML_RETURN_IF_ERROR(config.CheckOneOf("model.precision", out.precision, {"fp32", "int8"}));
  PPML_RETURN_IF_ERROR(config.Optional("enclave.config_entries", &out.config_entries));
  bool allow_plaintext = false;
  PPML_RETURN_IF_ERROR(config.Optional("security.allow_plaintext", &allow_plaintext));
  // The enclave must allow it too, visibly: a measured entry.
  const std::string plaintext_entry(enclave::kAllowPlaintextEntry);
  if (allow_plaintext && std::find(out.config_entries.begin(), out.config_entries.end(), plaintext_entry) ==
                             out.config_entries.end()) {
    out.config_entries.push_back(plaintext_entry);
  }
  PPML_RETURN_IF_ERROR(config.Optional("enclave.outsource.mode", &out.outsource_mode));
  PPML_RETURN_IF_ERROR(config.CheckOneOf("enclave.outsource.mode", out.outsource_mode, {"off", "integrity", "private"}));
  PPML_RETURN_IF_ERROR(config.Optional("enclave.outsource.accelerator", &out.accelerator));
  out.start_accelerator = out.outsource_mode != "off" && out.accelerator.empty();
  PPML_RETURN_IF_ERROR(config.Optional("serve.accelerator.threads", &out.accelerator_threads));
  PPML_RETURN_IF_ERROR(config.CheckInRange("serve.accelerator.threads", out.accelerator_threads, 0, 1024));
  PPML_RETURN_IF_ERROR(config.Optional("serve.accelerator.backend", &out.accelerator_backend));
  PPML_RETURN_IF_ERROR(config.CheckOneOf("serve.accelerator.backend", out.accelerator_backend, {"cpu", "cuda"}));
  out.external_redis = config.Has("redis.url");
  if (out.external_redis) {
    queue::RedisEndpoint ignored;  // checked here so that errors name this file
    PPML_RETURN_IF_ERROR(queue::LoadRedisConfig(config, &ignored));
  }
  // The front-end and the workers check their own sections when they start.
  for (const char* section : {"redis", "frontend", "worker", "enclave", "security"}) config.MarkRead(section);
  PPML_RETURN_IF_ERROR(config.CheckNoUnknownKeys());
  try {
    out.root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(path + ": " + e.what());
  }
  return out;
}

// Runs `ppml ARGS...` (this binary), its output into `log`; error naming the step.
Status RunStep(const std::string& step, std::vector<std::string> args, const std::string& log) {
  std::cerr << "ppml serve: " << step << std::endl;
  args.insert(args.begin(), ProgramDir() + "/ppml");
  ProcessOptions options;
  options.argv = std::move(args);
  options.log_file = log;
  PPML_ASSIGN_OR_RETURN(ChildProcess process, ChildProcess::Start(std::move(options)));
  const std::optional<int> status = process.Wait(std::chrono::minutes(10));
  if (status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) return Status::Ok();
  Result<std::string> text = ReadFile(log);
  return Status::Internal(step + " failed (" + (status ? DescribeExit(*status) : "timed out") + "); " + log + ":\n" +
                          (text.ok() ? *text : ""));
}

bool Exists(const std::string& path) { return fs::exists(path); }
bool OlderThan(const std::string& a, const std::string& b) {
  std::error_code ec1, ec2;
  const auto ta = fs::last_write_time(a, ec1), tb = fs::last_write_time(b, ec2);
  return !ec1 && !ec2 && ta < tb;
}

struct StatePaths {
  std::string dir, platform, enclave, package, certs, run, logs;
  std::string ca_cert() const { return certs + "/ca.crt"; }
  std::string platform_pubkey() const { return platform + "/platform.pub.pem"; }
  std::string sealed_keys() const { return enclave + "/sealed_keys.bin"; }
};

// Keys, the sealed model and certificates: made when missing, else reused.
Status PrepareState(const ServeConfig& config, const StatePaths& paths) {
  std::error_code ec;
  for (const std::string& dir : {paths.dir, paths.certs, paths.run, paths.logs}) {
    fs::create_directories(dir, ec);
    if (ec) return Status::IoError("cannot create " + dir + ": " + ec.message());
  }
  const std::string log = paths.logs + "/setup.log";
  if (!Exists(paths.platform + "/platform.key.pem")) {
    PPML_RETURN_IF_ERROR(RunStep("making the simulated platform keys", {"keygen", "platform", "--out-dir", paths.platform}, log));
  }
  // The sealed keys are bound to the measured config: other entries, new keys.
  std::string entries_text;
  for (const std::string& entry : config.config_entries) entries_text += entry + "\n";
  if (config.outsource_mode != "off") entries_text += "outsource=" + config.outsource_mode + "\n";
  const std::string entries_file = paths.enclave + "/config_entries.txt";
  Result<std::string> previous_entries = ReadFile(entries_file);
  const bool entries_changed = !previous_entries.ok() || *previous_entries != entries_text;
  // A fresh service key and attestation; the model owner seals only to a
  // fresh attestation, so sealing the model provisions again too.
  const auto provision = [&]() -> Status {
    std::vector<std::string> args = {"enclave", "provision", "--platform", paths.platform, "--out-dir", paths.enclave};
    for (const std::string& entry : config.config_entries) args.insert(args.end(), {"--config-entry", entry});
    args.insert(args.end(), {"--outsource", config.outsource_mode});
    PPML_RETURN_IF_ERROR(RunStep("provisioning the enclave (sealed service key, attestation)", args, log));
    return WriteFile(entries_file, entries_text);
  };
  if (!Exists(paths.package) || !Exists(paths.sealed_keys()) || entries_changed ||
      OlderThan(paths.package, config.model_onnx)) {
    PPML_RETURN_IF_ERROR(provision());
    PPML_ASSIGN_OR_RETURN(std::string doc_json, ReadFile(paths.enclave + "/attestation.json"));
    PPML_ASSIGN_OR_RETURN(enclave::AttestationDocument doc, enclave::AttestationDocumentFromJson(doc_json));
    PPML_RETURN_IF_ERROR(RunStep("sealing " + config.model_onnx + " for the attested enclave",
                                 {"model", "seal", "--model", config.model_onnx, "--quote",
                                  paths.enclave + "/attestation.json", "--platform-pubkey", paths.platform_pubkey(),
                                  "--measurement", crypto::ToHex(doc.quote.measurement), "--model-name",
                                  config.model_name, "--out", paths.package},
                                 log));
  }
  if (!Exists(paths.certs + "/frontend.crt")) {
    std::cerr << "ppml serve: making a dev CA and the front-end's certificate" << std::endl;
    PPML_ASSIGN_OR_RETURN(x509::CertifiedKey ca, x509::GenerateDevCa("ppml serve dev CA"));
    x509::CertificateRequest request;
    request.common_name = "ppml front-end";
    request.dns_names = {"localhost"};
    request.ip_addresses = {"127.0.0.1", "::1"};
    PPML_ASSIGN_OR_RETURN(x509::CertifiedKey server, x509::IssueCertificate(ca, request));
    PPML_RETURN_IF_ERROR(x509::WritePemFiles(ca, paths.certs + "/ca.key", paths.ca_cert()));
    PPML_RETURN_IF_ERROR(x509::WritePemFiles(server, paths.certs + "/frontend.key", paths.certs + "/frontend.crt"));
  }
  return Status::Ok();
}

// The `redis:` section for the children: the user's, or the one reaching our own server.
YAML::Node RedisSection(const ServeConfig& config, const queue::LocalRedisServer* local) {
  if (local == nullptr) return YAML::Clone(config.root["redis"]);
  YAML::Node redis;
  redis["url"] = local->Url();
  redis["password_file"] = local->password_file();
  redis["tls"]["ca"] = local->ca_file();
  redis["tls"]["cert"] = local->client_cert_file();
  redis["tls"]["key"] = local->client_key_file();
  return redis;
}

YAML::Node Section(const ServeConfig& config, const char* name) {
  const YAML::Node node = config.root[name];
  return node && node.IsMap() ? YAML::Clone(node) : YAML::Node(YAML::NodeType::Map);
}

Status WriteYaml(const std::string& path, const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return WriteFile(path, std::string(out.c_str()) + "\n", 0600);
}

// `accelerator`: the ppml-accel the workers use, or empty without outsourcing.
Result<std::string> WriteWorkerConfig(const ServeConfig& config, const StatePaths& paths, const YAML::Node& redis,
                                      const std::string& accelerator) {
  YAML::Node root;
  root["redis"] = redis;
  root["model"]["name"] = config.model_name;
  root["model"]["package"] = paths.package;
  root["model"]["precision"] = config.precision;
  root["worker"] = Section(config, "worker");
  root["worker"]["metrics"]["port"] = 0;
  root["enclave"] = Section(config, "enclave");
  root["enclave"]["platform"] = paths.platform;
  root["enclave"]["sealed_keys"] = paths.sealed_keys();
  root["enclave"]["config_entries"] = config.config_entries;
  if (!accelerator.empty()) root["enclave"]["outsource"]["accelerator"] = accelerator;
  const std::string path = paths.run + "/worker.yaml";
  PPML_RETURN_IF_ERROR(WriteYaml(path, root));
  return path;
}

Result<std::string> WriteFrontendConfig(const ServeConfig& config, const StatePaths& paths, const YAML::Node& redis) {
  YAML::Node root;
  root["redis"] = redis;
  root["frontend"] = Section(config, "frontend");
  root["frontend"]["id"] = "serve-" + std::to_string(::getpid());
  if (!root["frontend"]["tls"]) {
    root["frontend"]["tls"]["cert"] = paths.certs + "/frontend.crt";
    root["frontend"]["tls"]["key"] = paths.certs + "/frontend.key";
  }
  root["frontend"]["models"].push_back(config.model_name);
  if (config.root["security"]) root["security"] = YAML::Clone(config.root["security"]);
  const std::string path = paths.run + "/frontend.yaml";
  PPML_RETURN_IF_ERROR(WriteYaml(path, root));
  return path;
}

// One supervised process: started again when it dies.
struct Supervised {
  std::string name;  // "frontend", "worker-1"
  std::vector<std::string> argv;
  std::string log;
  ChildProcess process;
  int restarts = 0;

  Status Start() {
    ProcessOptions options;
    options.argv = argv;
    options.log_file = log;
    // serve reads its children's info lines (readiness); debug stays debug.
    if (CurrentLogLevel() != LogLevel::kDebug) options.env = {"PPML_LOG_LEVEL=info"};
    PPML_ASSIGN_OR_RETURN(process, ChildProcess::Start(std::move(options)));
    return Status::Ok();
  }
};

// The value of `key=` in the last line of `log` holding `event`.
std::string LoggedField(const std::string& log, std::string_view event, std::string_view key) {
  Result<std::string> text = ReadFile(log);
  if (!text.ok()) return "";
  const size_t at = text->rfind("event=" + std::string(event));
  if (at == std::string::npos) return "";
  const size_t line_end = text->find('\n', at);
  const std::string line = text->substr(at, line_end == std::string::npos ? std::string::npos : line_end - at);
  const size_t field = line.find(" " + std::string(key) + "=");
  if (field == std::string::npos) return "";
  const size_t start = field + key.size() + 2;
  return line.substr(start, line.find(' ', start) - start);
}

int64_t LiveWorkers(queue::RedisClient& client, const std::string& model) {
  const std::string since = std::to_string(queue::UnixNowMs() - queue::kHeartbeatTtlMs);
  Result<queue::RedisReply> reply = client.Command({"ZCOUNT", queue::WorkersKey(model), since, "+inf"});
  return reply.ok() && reply->is_integer() ? reply->integer() : 0;
}

int RunServe(const std::string& config_path) {
  Result<ServeConfig> loaded = LoadServeConfig(config_path);
  if (!loaded.ok()) return ReportError(kCommand, loaded.status().message(), kExitUsage);
  const ServeConfig& config = *loaded;
  StatePaths paths;
  paths.dir = fs::absolute(config.state_dir).lexically_normal().string();
  paths.platform = paths.dir + "/platform";
  paths.enclave = paths.dir + "/enclave";
  paths.package = paths.dir + "/" + config.model_name + ".ppmlpkg";
  paths.certs = paths.dir + "/certs";
  paths.run = paths.dir + "/run";
  paths.logs = paths.dir + "/logs";
  if (Status s = PrepareState(config, paths); !s.ok()) return ReportError(kCommand, s);

  const std::atomic<bool>& serve_stop = StopFlagOnSignals();

  std::unique_ptr<queue::LocalRedisServer> local_redis;
  if (!config.external_redis) {
    std::cerr << "ppml serve: starting redis-server (TLS, client certificates, password)" << std::endl;
    Result<crypto::Bytes> default_password = crypto::RandomBytes(24), password = crypto::RandomBytes(24);
    if (!default_password.ok()) return ReportError(kCommand, default_password.status());
    if (!password.ok()) return ReportError(kCommand, password.status());
    queue::LocalRedisOptions options;
    options.tls = true;
    options.require_client_cert = true;
    options.requirepass = crypto::ToHex(*default_password);  // locks the default user
    options.acl_user = "ppml";
    options.acl_password = crypto::ToHex(*password);
    Result<std::unique_ptr<queue::LocalRedisServer>> started = queue::LocalRedisServer::Start(options);
    if (!started.ok()) return ReportError(kCommand, started.status());
    local_redis = std::move(started).value();
  }
  const YAML::Node redis = RedisSection(config, local_redis.get());
  const std::string accelerator = config.start_accelerator ? "unix:" + paths.run + "/accel.sock" : config.accelerator;
  Result<std::string> worker_config = WriteWorkerConfig(config, paths, redis, accelerator);
  if (!worker_config.ok()) return ReportError(kCommand, worker_config.status());
  Result<std::string> frontend_config = WriteFrontendConfig(config, paths, redis);
  if (!frontend_config.ok()) return ReportError(kCommand, frontend_config.status());

  std::vector<Supervised> processes;
  processes.push_back({"frontend", {ProgramDir() + "/ppml-frontend", "--config", *frontend_config},
                       paths.logs + "/frontend.log", {}, 0});
  // Before the workers: each connects to it when it loads the model.
  if (config.start_accelerator) {
    processes.push_back({"accelerator",
                         {ProgramDir() + "/ppml-accel", "--listen", accelerator, "--threads",
                          std::to_string(config.accelerator_threads), "--backend", config.accelerator_backend},
                         paths.logs + "/accelerator.log", {}, 0});
  }
  for (int i = 0; i < config.workers; ++i) {
    const std::string name = "worker-" + std::to_string(i + 1);
    processes.push_back({name, {ProgramDir() + "/ppml-worker", "--config", *worker_config}, paths.logs + "/" + name + ".log", {}, 0});
  }
  for (Supervised& p : processes) {
    std::error_code ignored;
    fs::remove(p.log, ignored);  // this run's lines only: readiness is read from them
    if (Status s = p.Start(); !s.ok()) return ReportError(kCommand, s.WithContext(p.name));
    if (p.name == "accelerator") {
      std::cerr << "ppml serve: starting ppml-accel (" << config.accelerator_backend << ") at " << accelerator
                << std::endl;
      if (Status s = WaitForAccelerator(p.process, accelerator, p.log, std::chrono::seconds(20)); !s.ok()) {
        return ReportError(kCommand, s.ToString(), kExitFailure);
      }
    }
  }
  std::cerr << "ppml serve: started the front-end" << (config.start_accelerator ? ", the accelerator" : "") << " and "
            << config.workers << " worker(s); logs in " << paths.logs << std::endl;

  // Ready: the front-end listens and every worker's heartbeat is in Redis.
  Result<queue::RedisEndpoint> endpoint_or = [&]() -> Result<queue::RedisEndpoint> {
    if (local_redis) return local_redis->Endpoint();
    PPML_ASSIGN_OR_RETURN(ConfigReader reader, ConfigReader::LoadFile(config_path));
    queue::RedisEndpoint endpoint;
    PPML_RETURN_IF_ERROR(queue::LoadRedisConfig(reader, &endpoint));
    return endpoint;
  }();
  if (!endpoint_or.ok()) return ReportError(kCommand, endpoint_or.status());
  queue::RedisClient client(*endpoint_or);
  const auto give_up = Clock::now() + std::chrono::minutes(3);
  std::string url;
  while (!serve_stop) {
    for (Supervised& p : processes) {
      if (!p.process.Running()) {
        return ReportError(kCommand, p.name + " exited during start-up; " + p.log + ":\n" + FileTail(p.log), kExitFailure);
      }
    }
    url = LoggedField(processes[0].log, "frontend_listening", "url");
    if (!url.empty() && LiveWorkers(client, config.model_name) >= config.workers) break;
    if (Clock::now() > give_up) {
      return ReportError(kCommand, "the service was not ready within 3 minutes; logs in " + paths.logs, kExitFailure);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (serve_stop) return kExitOk;
  Result<queue::RedisReply> measurement = client.Command({"HGET", queue::InfoKey(config.model_name), "measurement"});
  const std::string measurement_hex = measurement.ok() && measurement->is_string() ? std::string(measurement->str()) : "";

  std::string ready = "ready: url=" + url + " ca=" + paths.ca_cert() + " platform_pubkey=" + paths.platform_pubkey() +
                      " measurement=" + measurement_hex;
  if (config.outsource_mode != "off") {
    ready += " outsource=" + config.outsource_mode + " accelerator=" + accelerator;
  }
  if (local_redis) {
    ready += " redis=" + local_redis->Url() + " redis_ca=" + local_redis->ca_file() +
             " redis_password_file=" + local_redis->password_file();
  } else {
    ready += " redis=" + endpoint_or->RedactedUrl();
  }
  std::cout << ready << std::endl;

  while (!serve_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (Supervised& p : processes) {
      if (serve_stop || p.process.Running()) continue;
      ++p.restarts;
      LogWarn("serve_restarting", {{"process", p.name}, {"restarts", p.restarts}, {"log", p.log}});
      std::this_thread::sleep_for(std::chrono::seconds(1));
      if (Status s = p.Start(); !s.ok()) LogError("serve_restart_failed", {{"process", p.name}, {"error", s.ToString()}});
    }
  }
  std::cerr << "ppml serve: stopping" << std::endl;
  // The front-end first (no new work), then the workers finish their batches.
  for (Supervised& p : processes) p.process.Signal(SIGTERM);
  for (Supervised& p : processes) p.process.Stop(std::chrono::seconds(10));
  return kExitOk;
}

}  // namespace

void AddServeCommand(CLI::App& app, int* exit_code) {
  auto config = std::make_shared<std::string>();
  CLI::App* serve = app.add_subcommand(
      "serve", "The whole service on this machine: Redis, the front-end and workers; prints a ready: line");
  serve->add_option("--config", *config, "serve config, e.g. configs/quickstart.yaml")->required();
  serve->callback([config, exit_code] { *exit_code = RunServe(*config); });
}

}  // namespace ppml::tools
