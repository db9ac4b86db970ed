// The byte streams RESP travels over: plain TCP or TLS (OpenSSL).
//
// Sockets are non-blocking; every wait is a poll(2) bounded by a deadline, so
// a dead peer costs at most the caller's timeout. TCP_NODELAY is on: a
// pipelined batch goes out as soon as it is written, not after Nagle's delay.
//
// TLS (TlsClientContext / ConfigureTlsClient, also for event-driven users):
//   - TLS 1.2 at least; the server certificate must chain to ca_file (or the
//     system's CAs when none is given): SSL_VERIFY_PEER;
//   - the name checked is server_name or else the host: an IP address is
//     matched against the certificate's IP SANs (X509_VERIFY_PARAM_set1_ip_asc),
//     a DNS name against its DNS SANs (SSL_set1_host), and only a DNS name is
//     sent as SNI (RFC 6066 forbids literal addresses there);
//   - cert_file/key_file, when set, are offered as the client certificate.
// Writes use send(MSG_NOSIGNAL), also under TLS (a socket BIO of ours), so a
// peer that hung up yields an error, never SIGPIPE.
//
// Thread safety: a Transport is used by one thread at a time. A TLS context
// from TlsClientContext may be shared by connections on several threads
// once configured (OpenSSL's SSL_CTX rules).
#pragma once

#include <openssl/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "queue/redis.h"

namespace ppml::queue {

// A deadline `timeout_ms` from now; time_point::max() (no limit) for 0.
Deadline DeadlineAfter(int timeout_ms);

class Transport {
 public:
  virtual ~Transport() = default;
  // Sends all of `data`; Unavailable when the peer fails, DeadlineExceeded
  // when the deadline passes first.
  virtual Status Write(std::string_view data, Deadline deadline) = 0;
  // Receives 1 to buffer.size() bytes; Unavailable when the peer closes or
  // fails, DeadlineExceeded when the deadline passes first.
  virtual Result<size_t> Read(std::span<char> buffer, Deadline deadline) = 0;
};

// TCP connect (every address the host resolves to, in order) and, for a
// rediss:// endpoint, the TLS handshake, both before `deadline`. Messages
// start with "redis HOST:PORT: ".
Result<std::unique_ptr<Transport>> OpenTransport(const RedisEndpoint& endpoint, Deadline deadline);

struct SslCtxDeleter { void operator()(SSL_CTX* p) const; };
struct SslDeleter { void operator()(SSL* p) const; };
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// A client SSL_CTX with the settings above. InvalidArgument naming the file
// when the CA file, certificate or key cannot be loaded.
Result<SslCtxPtr> TlsClientContext(const RedisTlsOptions& options);
// SNI and the name to verify, on one SSL before its handshake.
Status ConfigureTlsClient(SSL* ssl, const std::string& server_name);

// The Status for a failed TLS `op` ("handshake", "read", "write") on `ssl`
// whose first OpenSSL error is `error` (0 if none): PermissionDenied when the
// server certificate did not verify ("certificate verify failed: hostname
// mismatch") or the server rejected ours (its alert), Unavailable otherwise.
// `name` starts the message: "redis HOST:PORT".
Status TlsFailure(const std::string& name, const char* op, SSL* ssl, unsigned long error);

}  // namespace ppml::queue
