#include "queue/local_redis.h"

#include <sys/wait.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "common/file_io.h"

namespace ppml::queue {

Result<std::unique_ptr<LocalRedisServer>> LocalRedisServer::Start(LocalRedisOptions options) {
  std::unique_ptr<LocalRedisServer> server(new LocalRedisServer(std::move(options)));
  if (!server->dir_.ok()) return Status::IoError("cannot create a folder for redis-server under /tmp");
  if (server->options_.tls) PPML_RETURN_IF_ERROR(server->MakeCertificates());
  PPML_RETURN_IF_ERROR(server->WritePasswordFile());
  Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {  // the port may be taken between pick and bind
    PPML_ASSIGN_OR_RETURN(server->port_, PickFreePort());
    last = server->Launch();
    if (last.ok() || last.code() == StatusCode::kNotFound) break;
  }
  if (!last.ok()) return last;
  return server;
}

LocalRedisServer::LocalRedisServer(LocalRedisOptions options) : options_(std::move(options)) {}

LocalRedisServer::~LocalRedisServer() { Stop(); }

void LocalRedisServer::Stop() { process_.Stop(); }

Status LocalRedisServer::Restart() {
  Stop();
  return Launch();
}

RedisEndpoint LocalRedisServer::Endpoint() const {
  RedisEndpoint endpoint;
  endpoint.host = "127.0.0.1";
  endpoint.port = port_;
  endpoint.tls = options_.tls;
  if (options_.tls) endpoint.tls_options.ca_file = ca_file();
  if (options_.require_client_cert) {
    endpoint.tls_options.cert_file = client_cert_file();
    endpoint.tls_options.key_file = client_key_file();
  }
  if (!options_.acl_user.empty()) {
    endpoint.user = options_.acl_user;
    endpoint.password = options_.acl_password;
  } else {
    endpoint.password = options_.requirepass;
  }
  endpoint.connect_timeout_ms = 2000;
  endpoint.io_timeout_ms = 2000;
  return endpoint;
}

std::string LocalRedisServer::Url() const {
  std::string url = options_.tls ? "rediss://" : "redis://";
  if (!options_.acl_user.empty()) url += options_.acl_user + "@";
  return url + "127.0.0.1:" + std::to_string(port_);
}

std::string LocalRedisServer::LogTail() const {
  std::ifstream in(File("redis.log"));
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

Status LocalRedisServer::MakeCertificates() {
  PPML_ASSIGN_OR_RETURN(ca_, x509::GenerateDevCa("ppml local Redis CA"));
  x509::CertificateRequest server_request;
  server_request.common_name = "ppml local redis";
  server_request.dns_names = {"localhost"};
  server_request.ip_addresses = {"127.0.0.1"};
  PPML_ASSIGN_OR_RETURN(x509::CertifiedKey server_cert, x509::IssueCertificate(ca_, server_request));
  x509::CertificateRequest client_request;
  client_request.common_name = "ppml redis client";
  client_request.usage = x509::CertificateUsage::kClient;
  PPML_ASSIGN_OR_RETURN(x509::CertifiedKey client_cert, x509::IssueCertificate(ca_, client_request));
  PPML_RETURN_IF_ERROR(x509::WritePemFiles(server_cert, File("redis.key"), File("redis.crt")));
  PPML_RETURN_IF_ERROR(x509::WritePemFiles(client_cert, File("client.key"), File("client.crt")));
  return WriteFile(ca_file(), ca_.cert_pem);
}

Status LocalRedisServer::WritePasswordFile() const {
  const std::string& password = options_.acl_user.empty() ? options_.requirepass : options_.acl_password;
  if (password.empty()) return Status::Ok();
  return WriteFile(password_file(), password + "\n", 0600);
}

std::vector<std::string> LocalRedisServer::Arguments() const {
  std::vector<std::string> args = {"redis-server", "--bind", "127.0.0.1", "--save", "", "--dir", dir(),
                                   "--daemonize", "no", "--logfile", ""};
  if (options_.durable) {
    args.insert(args.end(), {"--appendonly", "yes", "--appendfsync", "everysec"});
  } else {
    args.insert(args.end(), {"--appendonly", "no"});
  }
  const std::string port = std::to_string(port_);
  if (options_.tls) {
    args.insert(args.end(), {"--port", "0", "--tls-port", port, "--tls-cert-file", File("redis.crt"), "--tls-key-file",
                             File("redis.key"), "--tls-ca-cert-file", ca_file(), "--tls-auth-clients",
                             options_.require_client_cert ? "yes" : "no"});
  } else {
    args.insert(args.end(), {"--port", port});
  }
  if (!options_.requirepass.empty()) args.insert(args.end(), {"--requirepass", options_.requirepass});
  if (!options_.acl_user.empty()) {
    args.insert(args.end(), {"--user", options_.acl_user, "on", ">" + options_.acl_password, "~*", "&*", "+@all"});
  }
  return args;
}

Status LocalRedisServer::Launch() {
  ProcessOptions options;
  options.argv = Arguments();
  options.log_file = File("redis.log");
  PPML_ASSIGN_OR_RETURN(process_, ChildProcess::Start(std::move(options)));
  return WaitUntilReady();
}

Status LocalRedisServer::WaitUntilReady() {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  RedisEndpoint endpoint = Endpoint();
  endpoint.connect_timeout_ms = 500;
  Status last;
  while (std::chrono::steady_clock::now() < give_up) {
    if (std::optional<int> exit = process_.Wait(std::chrono::milliseconds(0))) {
      if (WIFEXITED(*exit) && WEXITSTATUS(*exit) == 127) {
        return Status::NotFound("redis-server is not on PATH (install Debian's redis-server package)");
      }
      return Status::Unavailable("redis-server " + DescribeExit(*exit) + " during start-up; log:\n" + LogTail());
    }
    Result<RedisConnection> connection = RedisConnection::Connect(endpoint);
    if (connection.ok()) return Status::Ok();
    last = connection.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Stop();
  return Status::Unavailable("redis-server did not answer within 10 s (" + last.ToString() + "); log:\n" + LogTail());
}

}  // namespace ppml::queue
