// Client byte streams over plain TCP or TLS (OpenSSL), shared by the Redis
// client (queue/) and the HTTPS client (client/): one place for connecting,
// deadlines, TLS settings and the mapping of failures to Status codes.
//
//   net::Endpoint endpoint{"redis 10.0.0.5:6379", "10.0.0.5", 6379, /*tls=*/true, tls_options};
//   Result<std::unique_ptr<net::Transport>> t = net::OpenTransport(endpoint, net::DeadlineAfter(5000));
//   (*t)->Write(bytes, deadline); (*t)->Read(buffer, deadline);
//
// Connecting: every address the host resolves to, in order, each with a
// non-blocking connect, until one answers or the deadline passes (a deadline
// hit on one address leaves no time for the next). getaddrinfo itself cannot
// be bounded. TCP_NODELAY (a request or pipelined batch goes out when
// written, not after Nagle's delay) and SO_KEEPALIVE are set.
//
// I/O: sockets are non-blocking; every wait is a poll(2) bounded by the
// caller's deadline, so a dead peer costs at most that. Writes use
// send(MSG_NOSIGNAL), also under TLS (a socket BIO of ours), so a peer that
// hung up yields an error, never SIGPIPE.
//
// TLS (TlsClientContext / ConfigureTlsClient, also for event-driven users):
//   - TLS 1.2 at least; the server certificate must chain to ca_file (or the
//     system's CAs when none is given): SSL_VERIFY_PEER;
//   - the name checked is server_name or else the host: an IP address is
//     matched against the certificate's IP SANs (X509_VERIFY_PARAM_set1_ip_asc),
//     a DNS name against its DNS SANs (SSL_set1_host), and only a DNS name is
//     sent as SNI (RFC 6066 forbids literal addresses there);
//   - cert_file/key_file, when set, are offered as the client certificate.
//
// Errors: every message starts with the endpoint's `name` ("redis h:6379",
// "https://h:8443"): Unavailable when the peer cannot be resolved, refuses,
// resets or fails; DeadlineExceeded when a deadline passes ("NAME: connect
// timed out", "NAME: read timed out"); PermissionDenied when the server
// certificate does not verify or the server rejects ours; InvalidArgument for
// TLS files that do not load (naming the file); Internal for OpenSSL setup
// failures.
//
// Thread safety: a Transport is used by one thread at a time. An SSL_CTX from
// TlsClientContext may be shared by connections on several threads once
// configured (OpenSSL's SSL_CTX rules).
#pragma once

#include <openssl/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ppml::net {

using Deadline = std::chrono::steady_clock::time_point;

// A deadline `timeout_ms` from now; time_point::max() (no limit) for 0 or less.
Deadline DeadlineAfter(int timeout_ms);

struct TlsOptions {
  std::string ca_file;      // PEM CA bundle to verify the server with; empty: the system's CAs
  std::string cert_file;    // client certificate (PEM chain); set with key_file or not at all
  std::string key_file;     // its private key (PEM)
  std::string server_name;  // SNI and the name or IP to verify; empty: the endpoint's host
};

struct Endpoint {
  std::string name;  // starts every message; empty: "HOST:PORT"
  std::string host;  // DNS name, IPv4 or IPv6 (without brackets)
  uint16_t port = 0;
  bool tls = false;
  TlsOptions tls_options;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Sends all of `data`; Unavailable when the peer fails, DeadlineExceeded
  // when the deadline passes first.
  virtual Status Write(std::string_view data, Deadline deadline) = 0;
  // Receives 1 to buffer.size() bytes (`buffer` not empty), or 0 when the
  // peer ended the stream (TCP FIN; under TLS a close_notify). Unavailable
  // when the peer fails (under TLS also a hang-up without close_notify: data
  // may be missing), DeadlineExceeded when the deadline passes first.
  virtual Result<size_t> Read(std::span<char> buffer, Deadline deadline) = 0;
  // Whether an idle connection can no longer carry a request: the peer closed
  // it, failed, or sent something unasked. Does not wait.
  virtual bool Stale() const = 0;
};

struct SslCtxDeleter { void operator()(SSL_CTX* p) const; };
struct SslDeleter { void operator()(SSL* p) const; };
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// TCP connect and, when endpoint.tls, the TLS handshake, both before
// `deadline`. The TLS context is `tls_context` when given (one context serves
// many connections; its settings win over endpoint.tls_options, except
// server_name), else one made from endpoint.tls_options: then a file that does
// not load is reported before anything touches the network.
Result<std::unique_ptr<Transport>> OpenTransport(const Endpoint& endpoint, Deadline deadline,
                                                 SSL_CTX* tls_context = nullptr);

// A client SSL_CTX with the settings above. InvalidArgument naming the file
// when the CA file, certificate or key cannot be loaded; messages start with
// "TLS: " (callers put their name before it).
Result<SslCtxPtr> TlsClientContext(const TlsOptions& options);
// SNI and the name to verify, on one SSL before its handshake.
Status ConfigureTlsClient(SSL* ssl, const std::string& server_name);

// The Status for a failed TLS `op` ("handshake", "read", "write") on `ssl`
// whose first OpenSSL error is `error` (0 if none): PermissionDenied when the
// server certificate did not verify ("certificate verify failed: hostname
// mismatch") or the server rejected ours (its alert), Unavailable otherwise.
// `name` starts the message.
Status TlsFailure(const std::string& name, const char* op, SSL* ssl, unsigned long error);

}  // namespace ppml::net
