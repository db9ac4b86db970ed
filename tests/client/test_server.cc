#include "tests/client/test_server.h"

#include <signal.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "common/crypto.h"

namespace ppml::client::testing {
namespace {

struct SslCtxDeleter { void operator()(SSL_CTX* p) const { SSL_CTX_free(p); } };
struct SslDeleter { void operator()(SSL* p) const { SSL_free(p); } };
struct BioDeleter { void operator()(BIO* p) const { BIO_free(p); } };
struct X509Deleter { void operator()(X509* p) const { X509_free(p); } };
struct PkeyDeleter { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

BioPtr MemBio(const std::string& pem) { return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))); }

std::string HeadText(int status, const HttpHeaders& headers) {
  std::string head = "HTTP/1.1 " + std::to_string(status) + " Status\r\n";
  for (const auto& [k, v] : headers) head += k + ": " + v + "\r\n";
  return head;
}

}  // namespace

struct TestServer::Tls {
  SslCtxPtr ctx;
};

ScopedTempDir::ScopedTempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) != nullptr) path_ = buffer.data();
}

ScopedTempDir::~ScopedTempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::optional<std::string> TestRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoreCase(k, name)) return v;
  }
  return std::nullopt;
}

std::optional<std::string> TestRequest::QueryParam(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) return std::string(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::string MakeResponse(int status, const HttpHeaders& headers, std::string_view body) {
  return HeadText(status, headers) + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         std::string(body);
}

std::string MakeChunkedResponse(int status, const HttpHeaders& headers, const std::vector<std::string>& chunks) {
  std::string out = HeadText(status, headers) + "Transfer-Encoding: chunked\r\n\r\n";
  char size[32];
  for (const std::string& chunk : chunks) {
    std::snprintf(size, sizeof(size), "%zx;ext=1\r\n", chunk.size());
    out += size + chunk + "\r\n";
  }
  return out + "0\r\nX-Trailer: done\r\n\r\n";
}

std::string TestServer::url() const {
  return std::string(options_.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

Result<std::unique_ptr<TestServer>> TestServer::Start(Options options, Handler handler) {
  // OpenSSL's own socket BIO writes with write(2): a client that timed out and
  // hung up must give this server an error, not SIGPIPE (close_notify, a late reply).
  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<TestServer> server(new TestServer());
  server->options_ = std::move(options);
  server->handler_ = std::move(handler);
  if (server->options_.tls) {
    auto tls = std::make_shared<Tls>();
    tls->ctx.reset(SSL_CTX_new(TLS_server_method()));
    if (!tls->ctx) return Status::Internal(crypto::OpenSslErrorMessage("test server: SSL_CTX_new"));
    BioPtr cert_bio = MemBio(server->options_.cert_pem);
    X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    BioPtr key_bio = MemBio(server->options_.key_pem);
    PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    if (!cert || !key || SSL_CTX_use_certificate(tls->ctx.get(), cert.get()) != 1 ||
        SSL_CTX_use_PrivateKey(tls->ctx.get(), key.get()) != 1) {
      return Status::InvalidArgument(crypto::OpenSslErrorMessage("test server: certificate or key"));
    }
    if (!server->options_.client_ca_pem.empty()) {
      BioPtr ca_bio = MemBio(server->options_.client_ca_pem);
      X509Ptr ca(PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr));
      if (!ca || X509_STORE_add_cert(SSL_CTX_get_cert_store(tls->ctx.get()), ca.get()) != 1) {
        return Status::InvalidArgument(crypto::OpenSslErrorMessage("test server: client CA"));
      }
      SSL_CTX_set_verify(tls->ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
    server->tls_ = std::move(tls);
  }
  server->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (server->listen_fd_ < 0) return Status::IoError("test server: socket");
  int one = 1;
  ::setsockopt(server->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(server->listen_fd_, 64) != 0) {
    return Status::IoError(std::string("test server: bind/listen: ") + std::strerror(errno));
  }
  socklen_t length = sizeof(addr);
  ::getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &length);
  server->port_ = ntohs(addr.sin_port);
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

TestServer::~TestServer() { Stop(); }

void TestServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    workers.swap(workers_);
  }
  for (std::thread& t : workers) t.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

void TestServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd entry{listen_fd_, POLLIN, 0};
    if (::poll(&entry, 1, 50) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ++connections_;
    std::lock_guard<std::mutex> lock(mutex_);
    open_fds_.insert(fd);
    workers_.emplace_back([this, fd] { Serve(fd); });
  }
}

void TestServer::Serve(int fd) {
  timeval timeout{10, 0};  // a stuck client ends the connection, not the test run
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  SslPtr ssl;
  if (tls_) {
    ssl.reset(SSL_new(tls_->ctx.get()));
    SSL_set_fd(ssl.get(), fd);
    if (SSL_accept(ssl.get()) != 1) ssl.reset();  // the client refused us, or we it
    ERR_clear_error();
  }
  auto read_some = [&](char* buffer, size_t size) -> ssize_t {
    if (tls_) {
      if (!ssl) return -1;
      size_t got = 0;
      int rc = SSL_read_ex(ssl.get(), buffer, size, &got);
      ERR_clear_error();
      return rc == 1 ? static_cast<ssize_t>(got) : -1;
    }
    return ::recv(fd, buffer, size, 0);
  };
  auto write_all = [&](std::string_view data) {
    while (!data.empty()) {
      ssize_t n;
      if (tls_) {
        size_t written = 0;
        n = ssl && SSL_write_ex(ssl.get(), data.data(), data.size(), &written) == 1 ? static_cast<ssize_t>(written)
                                                                                      : -1;
        ERR_clear_error();
      } else {
        n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      }
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  };

  std::string buffer;
  bool open = !tls_ || ssl != nullptr;
  while (open && !stopping_.load()) {
    size_t head_end;
    while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      char chunk[16384];
      ssize_t n = read_some(chunk, sizeof(chunk));
      if (n <= 0) {
        open = false;
        break;
      }
      buffer.append(chunk, static_cast<size_t>(n));
    }
    if (!open) break;
    TestRequest request;
    const std::string head = buffer.substr(0, head_end);
    buffer.erase(0, head_end + 4);
    size_t line_end = head.find("\r\n");
    const std::string request_line = head.substr(0, line_end);
    const size_t sp1 = request_line.find(' ');
    const size_t sp2 = request_line.rfind(' ');
    if (sp1 == std::string::npos || sp2 == sp1) break;
    request.method = request_line.substr(0, sp1);
    request.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    const size_t q = request.target.find('?');
    request.path = request.target.substr(0, q);
    request.query = q == std::string::npos ? "" : request.target.substr(q + 1);
    size_t content_length = 0;
    while (line_end != std::string::npos && line_end < head.size()) {
      const size_t next = head.find("\r\n", line_end + 2);
      const std::string line = head.substr(line_end + 2, next == std::string::npos ? std::string::npos
                                                                                   : next - line_end - 2);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        request.headers.emplace_back(line.substr(0, colon), value);
        if (EqualsIgnoreCase(line.substr(0, colon), "Content-Length")) content_length = std::stoul(value);
      }
      line_end = next;
    }
    while (buffer.size() < content_length) {
      char chunk[16384];
      ssize_t n = read_some(chunk, sizeof(chunk));
      if (n <= 0) {
        open = false;
        break;
      }
      buffer.append(chunk, static_cast<size_t>(n));
    }
    if (!open) break;
    request.body = buffer.substr(0, content_length);
    buffer.erase(0, content_length);
    ++requests_;

    TestReply reply = handler_(request);
    if (reply.hang) {
      while (!stopping_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      break;
    }
    if (reply.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(reply.delay_ms));
    write_all(reply.raw);
    const std::optional<std::string> connection = request.Header("Connection");
    if (reply.close || (connection && EqualsIgnoreCase(*connection, "close"))) break;
  }
  if (ssl) {
    SSL_shutdown(ssl.get());
    ERR_clear_error();
  }
  ssl.reset();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    open_fds_.erase(fd);
  }
  ::close(fd);
}

}  // namespace ppml::client::testing
