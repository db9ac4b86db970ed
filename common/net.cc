#include "common/net.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <utility>

#include "common/crypto.h"

namespace ppml::net {
namespace {

using Clock = std::chrono::steady_clock;

// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

std::string ErrnoText(int error) { return std::strerror(error); }

// poll(2)'s timeout for `deadline`: -1 without one, rounded up so a wait
// never ends a fraction of a millisecond early and spins.
int PollTimeoutMs(Deadline deadline) {
  if (deadline == Deadline::max()) return -1;
  auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

// Whether a read on `fd` would not block: on an idle connection that means
// the peer closed it, reset it or sent something unasked.
bool Readable(int fd) {
  pollfd entry{fd, POLLIN, 0};
  return ::poll(&entry, 1, 0) != 0;
}

// Waits until `fd` is ready for `events` (or has an error or hang-up, which
// the next call reports). `what` names the operation: "redis h:p: read", "https://h:p: TLS write".
Status WaitReady(int fd, short events, Deadline deadline, const std::string& what) {
  for (;;) {
    int timeout = PollTimeoutMs(deadline);
    if (timeout == 0) return Status::DeadlineExceeded(what + " timed out");
    pollfd entry{fd, events, 0};
    int n = ::poll(&entry, 1, timeout);
    if (n > 0) return Status::Ok();
    if (n < 0 && errno != EINTR) return Status::Unavailable(what + ": poll: " + ErrnoText(errno));
  }
}

void SetSocketOptions(int fd) {
  int one = 1;
  // Best effort: a socket without them still works, only slower to notice.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

struct AddrinfoDeleter { void operator()(addrinfo* p) const { freeaddrinfo(p); } };

// Non-blocking connect to each resolved address in turn until one answers.
// getaddrinfo itself cannot be bounded.
Result<UniqueFd> ConnectTcp(const Endpoint& endpoint, Deadline deadline, const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(endpoint.host.c_str(), std::to_string(endpoint.port).c_str(), &hints, &found);
  if (rc != 0) return Status::Unavailable(name + ": cannot resolve host: " + gai_strerror(rc));
  std::unique_ptr<addrinfo, AddrinfoDeleter> addresses(found);

  Status last = Status::Unavailable(name + ": host resolved to no address");
  for (addrinfo* ai = addresses.get(); ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd.valid()) {
      last = Status::Unavailable(name + ": socket: " + ErrnoText(errno));
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last = Status::Unavailable(name + ": connect failed: " + ErrnoText(errno));
        continue;
      }
      // Past the deadline no other address has time either.
      PPML_RETURN_IF_ERROR(WaitReady(fd.get(), POLLOUT, deadline, name + ": connect"));
      int error = 0;
      socklen_t length = sizeof(error);
      if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
      if (error != 0) {
        last = Status::Unavailable(name + ": connect failed: " + ErrnoText(error));
        continue;
      }
    }
    SetSocketOptions(fd.get());
    return fd;
  }
  return last;
}

class TcpTransport final : public Transport {
 public:
  TcpTransport(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}

  Status Write(std::string_view data, Deadline deadline) override {
    while (!data.empty()) {
      ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        PPML_RETURN_IF_ERROR(WaitReady(fd_.get(), POLLOUT, deadline, name_ + ": write"));
      } else if (errno != EINTR) {
        return Status::Unavailable(name_ + ": write failed: " + ErrnoText(errno));
      }
    }
    return Status::Ok();
  }

  Result<size_t> Read(std::span<char> buffer, Deadline deadline) override {
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
      if (n >= 0) return static_cast<size_t>(n);  // 0: the peer ended the stream
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        PPML_RETURN_IF_ERROR(WaitReady(fd_.get(), POLLIN, deadline, name_ + ": read"));
      } else if (errno != EINTR) {
        return Status::Unavailable(name_ + ": read failed: " + ErrnoText(errno));
      }
    }
  }

  bool Stale() const override { return Readable(fd_.get()); }

 private:
  UniqueFd fd_;
  std::string name_;
};

// ---- A socket BIO that never raises SIGPIPE ------------------------------------
//
// OpenSSL's own socket BIO writes with write(2), which kills a process that
// does not ignore SIGPIPE when the peer has hung up. This one uses
// send(MSG_NOSIGNAL) and recv(2) on the fd kept as the BIO's data; it does not
// own the fd.

int FdOf(BIO* bio) { return static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(bio))); }

bool WouldBlock(int error) { return error == EAGAIN || error == EWOULDBLOCK || error == EINTR; }

int SocketBioWrite(BIO* bio, const char* data, int length) {
  BIO_clear_retry_flags(bio);
  ssize_t n = ::send(FdOf(bio), data, static_cast<size_t>(length), MSG_NOSIGNAL);
  if (n < 0 && WouldBlock(errno)) BIO_set_retry_write(bio);
  return static_cast<int>(n);
}

int SocketBioRead(BIO* bio, char* data, int length) {
  BIO_clear_retry_flags(bio);
  ssize_t n = ::recv(FdOf(bio), data, static_cast<size_t>(length), 0);
  if (n < 0 && WouldBlock(errno)) BIO_set_retry_read(bio);
  return static_cast<int>(n);
}

// Nothing is buffered in the BIO, so a flush is done at once; other controls
// (kTLS, datagram options) are not supported.
long SocketBioCtrl(BIO*, int command, long, void*) { return command == BIO_CTRL_FLUSH ? 1 : 0; }

int SocketBioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

// Created once per process; BIO_METHODs are immutable after setup.
BIO_METHOD* SocketBioMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ppml socket (MSG_NOSIGNAL)");
    if (m != nullptr) {
      BIO_meth_set_write(m, SocketBioWrite);
      BIO_meth_set_read(m, SocketBioRead);
      BIO_meth_set_ctrl(m, SocketBioCtrl);
      BIO_meth_set_create(m, SocketBioCreate);
    }
    return m;
  }();
  return method;
}

class TlsTransport final : public Transport {
 public:
  TlsTransport(UniqueFd fd, SslPtr ssl, std::string name)
      : fd_(std::move(fd)), ssl_(std::move(ssl)), name_(std::move(name)) {}

  ~TlsTransport() override {
    // close_notify, best effort and without waiting; not after a fatal error.
    if (!failed_) {
      ERR_clear_error();
      SSL_shutdown(ssl_.get());
      ERR_clear_error();
    }
  }

  Status Handshake(Deadline deadline) {
    for (;;) {
      ERR_clear_error();
      int rc = SSL_connect(ssl_.get());
      if (rc == 1) return Status::Ok();
      bool closed = false;
      PPML_RETURN_IF_ERROR(AwaitRetry(rc, deadline, "handshake", closed));
      if (closed) return Status::Unavailable(name_ + ": TLS handshake failed: connection closed by the server");
    }
  }

  Status Write(std::string_view data, Deadline deadline) override {
    while (!data.empty()) {
      ERR_clear_error();
      size_t written = 0;
      int rc = SSL_write_ex(ssl_.get(), data.data(), data.size(), &written);
      if (rc == 1) {
        data.remove_prefix(written);
        continue;
      }
      bool closed = false;
      PPML_RETURN_IF_ERROR(AwaitRetry(rc, deadline, "write", closed));
      if (closed) return Status::Unavailable(name_ + ": connection closed by the server");
    }
    return Status::Ok();
  }

  Result<size_t> Read(std::span<char> buffer, Deadline deadline) override {
    for (;;) {
      ERR_clear_error();
      size_t got = 0;
      int rc = SSL_read_ex(ssl_.get(), buffer.data(), buffer.size(), &got);
      if (rc == 1) return got;
      bool closed = false;
      PPML_RETURN_IF_ERROR(AwaitRetry(rc, deadline, "read", closed));
      if (closed) return size_t{0};
    }
  }

  // Bytes OpenSSL has decrypted but nobody read count as "sent unasked" too.
  bool Stale() const override { return SSL_pending(ssl_.get()) > 0 || Readable(fd_.get()); }

 private:
  // After an SSL_* call returned `rc`: OK once the socket is ready for the
  // retry OpenSSL asks for (TLS may need to read while writing and the other
  // way round); OK with `closed` set when the peer sent close_notify (each op
  // says what that means for it); the failure otherwise.
  Status AwaitRetry(int rc, Deadline deadline, const char* op, bool& closed) {
    int error = SSL_get_error(ssl_.get(), rc);
    int saved_errno = errno;
    std::string what = name_ + ": TLS " + op;
    if (error == SSL_ERROR_WANT_READ) return WaitReady(fd_.get(), POLLIN, deadline, what);
    if (error == SSL_ERROR_WANT_WRITE) return WaitReady(fd_.get(), POLLOUT, deadline, what);
    if (error == SSL_ERROR_ZERO_RETURN) {
      closed = true;
      return Status::Ok();
    }
    failed_ = true;
    if (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && !ReadAlertAfterHangUp(op)) {
      return Status::Unavailable(what + " failed: " +
                                 (saved_errno == 0 ? "connection closed by the server" : ErrnoText(saved_errno)));
    }
    Status failure = TlsFailure(name_, op, ssl_.get(), ERR_peek_error());
    ERR_clear_error();
    return failure;
  }

  // A server that rejects our client certificate (TLS 1.3: after our side of
  // the handshake is done) sends an alert and hangs up, so our first write can
  // fail with ECONNRESET while the alert still waits unread. Reading it turns
  // "connection reset" into the reason, left on OpenSSL's error queue. A peek:
  // an early reply the server sent before hanging up stays there to be read.
  bool ReadAlertAfterHangUp(const char* op) {
    if (std::string_view(op) != "write") return false;
    ERR_clear_error();
    char byte = 0;
    size_t got = 0;
    int rc = SSL_peek_ex(ssl_.get(), &byte, 1, &got);
    return rc != 1 && SSL_get_error(ssl_.get(), rc) == SSL_ERROR_SSL && ERR_peek_error() != 0;
  }

  UniqueFd fd_;  // declared first: destroyed after the SSL that uses it
  SslPtr ssl_;
  std::string name_;
  bool failed_ = false;
};

bool IsIpAddress(const std::string& text) {
  in6_addr v6;
  in_addr v4;
  return inet_pton(AF_INET, text.c_str(), &v4) == 1 || inet_pton(AF_INET6, text.c_str(), &v6) == 1;
}

// The alerts a server sends for a missing or rejected client certificate.
bool PeerRejectedCertificate(unsigned long error) {
  if (ERR_GET_LIB(error) != ERR_LIB_SSL) return false;
  int reason = ERR_GET_REASON(error);
  return reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED || reason == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
         reason == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN || reason == SSL_R_TLSV1_ALERT_UNKNOWN_CA ||
         reason == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE;
}

// "HOST:PORT", "[::1]:PORT": the name of an endpoint that has none.
std::string HostPort(const Endpoint& endpoint) {
  const bool v6 = endpoint.host.find(':') != std::string::npos;
  return (v6 ? "[" + endpoint.host + "]" : endpoint.host) + ":" + std::to_string(endpoint.port);
}

Status TlsSetupError(const std::string& what) {
  return Status::Internal(crypto::OpenSslErrorMessage("TLS: " + what));
}

}  // namespace

Status TlsFailure(const std::string& name, const char* op, SSL* ssl, unsigned long error) {
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    return Status::PermissionDenied(name + ": TLS handshake failed: certificate verify failed: " +
                                    X509_verify_cert_error_string(verify));
  }
  char reason[256] = "no OpenSSL error";
  if (error != 0) ERR_error_string_n(error, reason, sizeof(reason));
  // A certificate problem is a setup problem, not an outage: no point reconnecting.
  if (PeerRejectedCertificate(error)) {
    return Status::PermissionDenied(name + ": TLS: the server rejected the client certificate: " + reason);
  }
  // OpenSSL 3 reports a hang-up without close_notify so; say it in words.
  if (ERR_GET_LIB(error) == ERR_LIB_SSL && ERR_GET_REASON(error) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    return Status::Unavailable(name + ": TLS " + op +
                               " failed: connection closed by the server without close_notify (data may be missing)");
  }
  return Status::Unavailable(name + ": TLS " + op + " failed: " + reason);
}

void SslCtxDeleter::operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
void SslDeleter::operator()(SSL* p) const { SSL_free(p); }

Deadline DeadlineAfter(int timeout_ms) {
  if (timeout_ms <= 0) return Deadline::max();
  return Clock::now() + std::chrono::milliseconds(timeout_ms);
}

Result<SslCtxPtr> TlsClientContext(const TlsOptions& options) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return TlsSetupError("SSL_CTX_new");
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) return TlsSetupError("minimum version TLS 1.2");
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE);
  if (options.ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) return TlsSetupError("system CA certificates");
  } else if (::access(options.ca_file.c_str(), R_OK) != 0) {
    // OpenSSL would say only "system library"; errno says what is wrong.
    return Status::InvalidArgument("TLS: cannot load CA file " + options.ca_file + ": " + ErrnoText(errno));
  } else if (SSL_CTX_load_verify_locations(ctx.get(), options.ca_file.c_str(), nullptr) != 1) {
    return Status::InvalidArgument(
        crypto::OpenSslErrorMessage("TLS: cannot load CA file " + options.ca_file + " (PEM certificates)"));
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return Status::InvalidArgument("TLS: cert_file and key_file go together (client certificate and its key)");
  }
  if (!options.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), options.cert_file.c_str()) != 1) {
      return Status::InvalidArgument(
          crypto::OpenSslErrorMessage("TLS: cannot load client certificate file " + options.cert_file));
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return Status::InvalidArgument(
          crypto::OpenSslErrorMessage("TLS: cannot load client key file " + options.key_file));
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
      return Status::InvalidArgument(crypto::OpenSslErrorMessage("TLS: client key file " + options.key_file +
                                                                 " does not match " + options.cert_file));
    }
  }
  return ctx;
}

Status ConfigureTlsClient(SSL* ssl, const std::string& server_name) {
  if (IsIpAddress(server_name)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name.c_str()) != 1) {
      return TlsSetupError("verify IP " + server_name);
    }
    return Status::Ok();
  }
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_set_tlsext_host_name(ssl, server_name.c_str()) != 1 || SSL_set1_host(ssl, server_name.c_str()) != 1) {
    return TlsSetupError("server name " + server_name);
  }
  return Status::Ok();
}

Result<std::unique_ptr<Transport>> OpenTransport(const Endpoint& endpoint, Deadline deadline, SSL_CTX* tls_context) {
  const std::string name = endpoint.name.empty() ? HostPort(endpoint) : endpoint.name;
  SslCtxPtr own_ctx;
  if (endpoint.tls && tls_context == nullptr) {
    // Settings first: a missing CA file is reported without touching the network.
    Result<SslCtxPtr> made = TlsClientContext(endpoint.tls_options);
    if (!made.ok()) return made.status().WithContext(name);
    own_ctx = std::move(made).value();
    tls_context = own_ctx.get();
  }
  PPML_ASSIGN_OR_RETURN(UniqueFd fd, ConnectTcp(endpoint, deadline, name));
  if (!endpoint.tls) return std::unique_ptr<Transport>(std::make_unique<TcpTransport>(std::move(fd), name));

  SslPtr ssl(SSL_new(tls_context));  // holds its own reference to the context
  BIO* bio = BIO_new(SocketBioMethod());
  if (!ssl || bio == nullptr) {
    BIO_free(bio);
    return TlsSetupError("SSL_new").WithContext(name);
  }
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<intptr_t>(fd.get())));
  SSL_set_bio(ssl.get(), bio, bio);  // the SSL owns the BIO now
  const std::string& server_name =
      endpoint.tls_options.server_name.empty() ? endpoint.host : endpoint.tls_options.server_name;
  Status configured = ConfigureTlsClient(ssl.get(), server_name);
  if (!configured.ok()) return configured.WithContext(name);
  auto transport = std::make_unique<TlsTransport>(std::move(fd), std::move(ssl), name);
  PPML_RETURN_IF_ERROR(transport->Handshake(deadline));
  return std::unique_ptr<Transport>(std::move(transport));
}

}  // namespace ppml::net
