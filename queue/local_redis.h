// LocalRedisServer: Debian's redis-server (7.0, TLS built in) started as a
// child on a free port of 127.0.0.1 in a fresh folder under /tmp: for tests,
// `ppml bench queue` and `ppml serve` without a configured Redis.
//
//   plain:  redis-server --bind 127.0.0.1 --port P --save "" --appendonly no --dir D
//   TLS:    ... --port 0 --tls-port P --tls-cert-file --tls-key-file
//               --tls-ca-cert-file --tls-auth-clients yes|no
//   auth:   --requirepass PW (default user) and/or --user NAME on >PW ~* &* +@all
//   durable: --appendonly yes --appendfsync everysec (survives Restart)
//
// TLS servers get certificates from common/x509: a dev CA, a server
// certificate for localhost and 127.0.0.1, and a client certificate; the
// files lie in dir(). Endpoint() reaches the server with all of that filled in.
//
// The server is a ChildProcess (common/process.h): stopped, reaped and its
// folder removed when the object goes, and killed by the kernel when the
// thread that started it ends. Stop() and Restart() keep the port.
//
// Thread safety: one thread at a time.
#pragma once

#include <memory>
#include <string>

#include "common/process.h"
#include "common/status.h"
#include "common/x509.h"
#include "queue/redis.h"

namespace ppml::queue {

struct LocalRedisOptions {
  bool tls = false;                  // TLS only (no plain port)
  bool require_client_cert = false;  // tls-auth-clients yes
  bool durable = false;              // append-only file, so Restart keeps the data
  std::string requirepass;           // password of the default user
  std::string acl_user;              // an extra user with every permission ...
  std::string acl_password;          // ... and this password
};

class LocalRedisServer {
 public:
  // Starts it and waits (up to 10 s) until it answers PING. Unavailable with
  // the end of its log when it does not; NotFound when redis-server is not installed.
  static Result<std::unique_ptr<LocalRedisServer>> Start(LocalRedisOptions options = {});

  LocalRedisServer(const LocalRedisServer&) = delete;
  LocalRedisServer& operator=(const LocalRedisServer&) = delete;
  ~LocalRedisServer();

  // SIGTERM, then SIGKILL if it has not exited within 5 s.
  void Stop();
  // Stops if running and starts again on the same port.
  Status Restart();

  uint16_t port() const { return port_; }
  const std::string& dir() const { return dir_.path(); }
  std::string File(const std::string& name) const { return dir_.File(name); }
  const x509::CertifiedKey& ca() const { return ca_; }
  std::string ca_file() const { return File("ca.crt"); }
  std::string client_cert_file() const { return File("client.crt"); }
  std::string client_key_file() const { return File("client.key"); }
  // The password file of the ACL user (or the default user), when one is set.
  std::string password_file() const { return File("redis.password"); }

  // Reaches this server: 127.0.0.1, TLS settings, client certificate and
  // credentials as configured (the ACL user when there is one).
  RedisEndpoint Endpoint() const;
  // redis://127.0.0.1:P or rediss://[user@]127.0.0.1:P (no password: that is
  // in password_file()).
  std::string Url() const;

  // The end of the server's log, for failure messages.
  std::string LogTail() const;

 private:
  explicit LocalRedisServer(LocalRedisOptions options);
  Status MakeCertificates();
  Status WritePasswordFile() const;
  std::vector<std::string> Arguments() const;
  Status Launch();
  Status WaitUntilReady();

  LocalRedisOptions options_;
  TempDir dir_{"ppml-redis"};
  uint16_t port_ = 0;
  ChildProcess process_;
  x509::CertifiedKey ca_;
};

}  // namespace ppml::queue
