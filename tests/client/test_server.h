// TestServer: a small threaded HTTP/1.1 server (plain or OpenSSL TLS) on
// 127.0.0.1 for the client tests. A handler sees each parsed request and
// returns the raw bytes to answer with, so tests can send canned, chunked,
// malformed, late or no replies. Requests must carry Content-Length when they
// have a body (what our client sends).
//
// One thread accepts; each connection gets a thread that serves requests
// until the client closes, the reply says close, or the server stops.
// Stop (and the destructor) shuts every connection down and joins them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "client/https.h"
#include "common/status.h"

namespace ppml::client::testing {

struct TestRequest {
  std::string method;
  std::string target;  // as sent: path and query
  std::string path;    // without the query
  std::string query;   // after '?', "" if none
  HttpHeaders headers;
  std::string body;

  std::optional<std::string> Header(std::string_view name) const;
  // The raw (not percent-decoded) value of query parameter `name`.
  std::optional<std::string> QueryParam(std::string_view name) const;
};

struct TestReply {
  std::string raw;     // written as is
  bool close = false;  // close the connection after writing
  int delay_ms = 0;    // wait before writing
  bool hang = false;   // never answer (until the server stops)
};

// A complete reply with Content-Length.
std::string MakeResponse(int status, const HttpHeaders& headers, std::string_view body);
// A complete chunked reply (each entry one chunk, then the last chunk and a trailer).
std::string MakeChunkedResponse(int status, const HttpHeaders& headers, const std::vector<std::string>& chunks);

// A fresh folder under $TMPDIR (or /tmp), removed with everything in it.
class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& prefix);
  ~ScopedTempDir();
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

class TestServer {
 public:
  struct Options {
    bool tls = true;
    std::string cert_pem;       // server certificate (TLS)
    std::string key_pem;        // its key
    std::string client_ca_pem;  // when set, a client certificate from this CA is required
  };
  using Handler = std::function<TestReply(const TestRequest&)>;

  static Result<std::unique_ptr<TestServer>> Start(Options options, Handler handler);
  ~TestServer();
  void Stop();

  uint16_t port() const { return port_; }
  std::string url() const;  // "https://127.0.0.1:PORT" (or http://)
  int connections() const { return connections_.load(); }
  int requests() const { return requests_.load(); }

 private:
  struct Tls;
  TestServer() = default;
  void AcceptLoop();
  void Serve(int fd);

  Options options_;
  Handler handler_;
  std::shared_ptr<Tls> tls_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::set<int> open_fds_;
  std::vector<std::thread> workers_;
};

}  // namespace ppml::client::testing
