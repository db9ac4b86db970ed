// A real redis-server for tests: Debian's binary (7.0, TLS built in) started
// on a free port in a fresh temporary folder, with no persistence.
//
//   plain:  redis-server --bind 127.0.0.1 --port P --save "" --appendonly no --dir D
//   TLS:    ... --port 0 --tls-port P --tls-cert-file --tls-key-file
//               --tls-ca-cert-file --tls-auth-clients yes|no
//   auth:   --requirepass PW (default user) and/or --user NAME on >PW ~* &* +@all
//
// TLS servers get certificates from common/x509: a dev CA, a server
// certificate for localhost and 127.0.0.1, and a client certificate; the
// files lie in dir(). Endpoint() is a RedisEndpoint that reaches the server
// with all of that filled in.
//
// The server is a child of the test process and is stopped, waited for and
// its folder removed when the object goes. Should the test crash, the kernel
// kills it too (PR_SET_PDEATHSIG), which fires when the *thread* that started
// it ends: start and restart it from a thread that outlives it.
// Stop() and Restart() keep the port, for reconnect tests.
//
// Thread safety: one thread at a time.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/x509.h"
#include "queue/redis.h"

namespace ppml::testing {

// A fresh folder under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/ppml-queue-test-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    path_ = made != nullptr ? made : "";
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for
// port 0). Another process may take it before we bind: Start retries.
inline Result<uint16_t> PickFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IoError(std::string("socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  if (!ok) return Status::IoError("cannot find a free port");
  return static_cast<uint16_t>(ntohs(address.sin_port));
}

struct RedisServerOptions {
  bool tls = false;                  // TLS only (no plain port)
  bool require_client_cert = false;  // tls-auth-clients yes
  std::string requirepass;           // password of the default user
  std::string acl_user;              // an extra user with every permission ...
  std::string acl_password;          // ... and this password
};

class RedisServer {
 public:
  static Result<std::unique_ptr<RedisServer>> Start(RedisServerOptions options = {}) {
    std::unique_ptr<RedisServer> server(new RedisServer(std::move(options)));
    if (!server->dir_.ok()) return Status::IoError("mkdtemp failed");
    if (server->options_.tls) PPML_RETURN_IF_ERROR(server->MakeCertificates());
    Status last;
    for (int attempt = 0; attempt < 5; ++attempt) {  // the port may be taken between pick and bind
      PPML_ASSIGN_OR_RETURN(server->port_, PickFreePort());
      last = server->Launch();
      if (last.ok()) return server;
    }
    return last;
  }

  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;
  ~RedisServer() { Stop(); }

  // SIGTERM, then SIGKILL if it has not exited within 5 s.
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > give_up) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
  }

  // Stops if running and starts again on the same port.
  Status Restart() {
    Stop();
    return Launch();
  }

  uint16_t port() const { return port_; }
  const std::string& dir() const { return dir_.path(); }
  std::string File(const std::string& name) const { return dir_.File(name); }
  const x509::CertifiedKey& ca() const { return ca_; }
  std::string ca_file() const { return File("ca.crt"); }
  std::string client_cert_file() const { return File("client.crt"); }
  std::string client_key_file() const { return File("client.key"); }

  // Reaches this server: 127.0.0.1, TLS settings, client certificate and
  // credentials as configured (the ACL user when there is one).
  queue::RedisEndpoint Endpoint() const {
    queue::RedisEndpoint endpoint;
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

  // The end of the server's log, for failure messages.
  std::string LogTail() const {
    std::ifstream in(File("redis.log"));
    std::stringstream text;
    text << in.rdbuf();
    std::string all = text.str();
    return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
  }

 private:
  explicit RedisServer(RedisServerOptions options) : options_(std::move(options)) {}

  Status MakeCertificates() {
    PPML_ASSIGN_OR_RETURN(ca_, x509::GenerateDevCa("ppml test CA"));
    x509::CertificateRequest server_request;
    server_request.common_name = "redis test server";
    server_request.dns_names = {"localhost"};
    server_request.ip_addresses = {"127.0.0.1"};
    PPML_ASSIGN_OR_RETURN(x509::CertifiedKey server_cert, x509::IssueCertificate(ca_, server_request));
    x509::CertificateRequest client_request;
    client_request.common_name = "redis test client";
    client_request.usage = x509::CertificateUsage::kClient;
    PPML_ASSIGN_OR_RETURN(x509::CertifiedKey client_cert, x509::IssueCertificate(ca_, client_request));
    PPML_RETURN_IF_ERROR(x509::WritePemFiles(server_cert, File("redis.key"), File("redis.crt")));
    PPML_RETURN_IF_ERROR(x509::WritePemFiles(client_cert, File("client.key"), File("client.crt")));
    std::ofstream(ca_file()) << ca_.cert_pem;
    return Status::Ok();
  }

  std::vector<std::string> Arguments() const {
    std::vector<std::string> args = {"redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                     "--dir", dir(), "--daemonize", "no", "--logfile", ""};
    const std::string port = std::to_string(port_);
    if (options_.tls) {
      args.insert(args.end(), {"--port", "0", "--tls-port", port, "--tls-cert-file", File("redis.crt"),
                               "--tls-key-file", File("redis.key"), "--tls-ca-cert-file", ca_file(),
                               "--tls-auth-clients", options_.require_client_cert ? "yes" : "no"});
    } else {
      args.insert(args.end(), {"--port", port});
    }
    if (!options_.requirepass.empty()) args.insert(args.end(), {"--requirepass", options_.requirepass});
    if (!options_.acl_user.empty()) {
      args.insert(args.end(), {"--user", options_.acl_user, "on", ">" + options_.acl_password, "~*", "&*", "+@all"});
    }
    return args;
  }

  // fork + exec (not posix_spawn) to set PR_SET_PDEATHSIG in the child, then
  // wait until the server answers PING.
  Status Launch() {
    std::vector<std::string> args = Arguments();
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const std::string log = File("redis.log");
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return Status::IoError(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
      }
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    return WaitUntilReady();
  }

  Status WaitUntilReady() {
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    queue::RedisEndpoint endpoint = Endpoint();
    endpoint.connect_timeout_ms = 500;
    Status last;
    while (std::chrono::steady_clock::now() < give_up) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return Status::Unavailable("redis-server exited during start-up; log:\n" + LogTail());
      }
      Result<queue::RedisConnection> connection = queue::RedisConnection::Connect(endpoint);
      if (connection.ok()) return Status::Ok();
      last = connection.status();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Stop();
    return Status::Unavailable("redis-server did not answer within 10 s (" + last.ToString() + "); log:\n" +
                               LogTail());
  }

  RedisServerOptions options_;
  TempDir dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  x509::CertifiedKey ca_;
};

}  // namespace ppml::testing
