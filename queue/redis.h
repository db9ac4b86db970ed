// Blocking Redis client: where Redis is (RedisEndpoint), one connection
// (RedisConnection) and a connection that comes back by itself
// (RedisClient).
//
// The protocol is hiredis's (queue/resp.h); the transport is ours: TCP, or
// TLS with OpenSSL that verifies the server certificate against a CA file and
// the host name or IP, sends SNI and optionally a client certificate
// (queue/transport.h, over common/net.h). Connect sends the
// ConnectionHandshake below.
//
// Errors, and who sees them:
//   - a Redis error reply ("-WRONGTYPE ...") is a value: the reply says
//     is_error() and the caller decides (RedisErrorStatus makes a Status);
//   - a transport failure is a non-OK Status and leaves the connection
//     closed (healthy() turns false): Unavailable when the link failed
//     (refused, reset, closed, TLS error), DeadlineExceeded when a timeout
//     passed, DataLoss when the bytes are not RESP;
//   - a server certificate that does not verify, a client certificate the
//     server rejects, or AUTH that fails is PermissionDenied and is not
//     retried by RedisClient;
//   - bad settings (a URL, a missing CA file) are InvalidArgument.
// Messages start with "redis HOST:PORT" and never contain a password or a
// command's arguments (they may be payloads).
//
// Timeouts: connect_timeout_ms bounds all of Connect (TCP, TLS handshake and
// the handshake round trip); io_timeout_ms bounds each Flush and each reply.
// Commands that block inside Redis (XREADGROUP BLOCK ms) pass that time as
// `block_ms`, which is added to the reply's wait.
//
// Thread safety: a RedisConnection or a RedisClient is used by one thread at
// a time (each worker thread owns its own). ParseRedisUrl is stateless.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/net.h"
#include "common/status.h"
#include "queue/resp.h"

namespace ppml::queue {

using net::Transport;

using Deadline = net::Deadline;

// TLS settings of a rediss:// endpoint; they come from the config, not the
// URL: ca_file, cert_file/key_file (when Redis has tls-auth-clients yes),
// server_name (empty: the endpoint's host).
using RedisTlsOptions = net::TlsOptions;

struct RedisEndpoint {
  std::string host;  // name, IPv4 or IPv6 (without brackets)
  uint16_t port = 6379;
  bool tls = false;  // rediss://
  std::optional<int> db;  // SELECT when set
  std::string user;       // ACL user; empty: the default user (AUTH password)
  std::string password;   // empty: no AUTH. The caller reads password_file into it.
  std::string client_name;  // CLIENT SETNAME when set (shows in CLIENT LIST)
  RedisTlsOptions tls_options;
  int connect_timeout_ms = 5000;  // 0: no limit
  int io_timeout_ms = 5000;       // 0: no limit

  // "HOST:PORT" ("[::1]:6379" for IPv6), used in every message.
  std::string Address() const;
  // The URL without the password: "rediss://user@host:port/db".
  std::string RedactedUrl() const;
};

// redis://[user[:password]@]host[:port][/db] or rediss://... (TLS); the
// port defaults to 6379; user and password may be %-encoded; an IPv6 host
// is written in brackets. InvalidArgument naming what is wrong otherwise
// (the message never repeats the password).
Result<RedisEndpoint> ParseRedisUrl(std::string_view url);

// The commands every connection sends first, in one round trip:
//
//   [AUTH user password | AUTH password]  [SELECT db]  [CLIENT SETNAME name]  PING
//
// PING last proves the link carries replies (under TLS 1.3 a rejected client
// certificate only shows on the first read). Shared by the blocking and the
// event-driven connection.
struct ConnectionHandshake {
  CommandBatch commands;
  std::vector<const char*> steps;  // what each reply answers: "AUTH", "SELECT", ...

  static ConnectionHandshake For(const RedisEndpoint& endpoint);
  // Connect's result from the replies, in order: the first error wins, so a
  // failed AUTH is reported as such rather than as PING's NOAUTH.
  Status Check(const RedisEndpoint& endpoint, std::span<const RedisReply> replies) const;

 private:
  void Add(const char* step, std::initializer_list<std::string_view> args);
};

// One blocking connection. Commands either go one at a time (Command) or are
// pipelined: Append any number, Flush once, then ReadReply once per command,
// in order; Execute does the three for a CommandBatch.
class RedisConnection {
 public:
  // TCP (and TLS) connect, then the handshake round trip above.
  static Result<RedisConnection> Connect(const RedisEndpoint& endpoint);

  RedisConnection(RedisConnection&&) noexcept;
  RedisConnection& operator=(RedisConnection&&) noexcept;
  ~RedisConnection();

  // One command, its reply. FailedPrecondition while pipelined replies are unread.
  Result<RedisReply> Command(std::initializer_list<std::string_view> args, int block_ms = 0);
  Result<RedisReply> Command(std::span<const std::string_view> args, int block_ms = 0);

  // Pipelining. Append only buffers; Flush writes everything buffered.
  void Append(std::initializer_list<std::string_view> args);
  void Append(std::span<const std::string_view> args);
  Status Flush();
  Result<RedisReply> ReadReply(int block_ms = 0);
  // Commands appended (flushed or not) whose replies are not read yet.
  size_t pending_replies() const { return pending_replies_; }

  // All of `batch` in one write, then its replies in order.
  Result<std::vector<RedisReply>> Execute(const CommandBatch& batch, int block_ms = 0);

  // False once a transport or protocol failure closed the connection.
  bool healthy() const { return transport_ != nullptr; }
  const RedisEndpoint& endpoint() const { return endpoint_; }

 private:
  RedisConnection(RedisEndpoint endpoint, std::unique_ptr<Transport> transport);
  Status Handshake(Deadline deadline);
  // Writes `batch` and reads its replies, before `deadline` when given, else
  // with the io timeout (plus block_ms) for each step.
  Result<std::vector<RedisReply>> SendAndRead(const CommandBatch& batch, const Deadline* deadline, int block_ms);
  Status FlushUntil(Deadline deadline);
  Result<RedisReply> ReadReplyUntil(Deadline deadline);
  Deadline IoDeadline(int block_ms) const;
  // Closes the transport (replies would be out of step after any failure) and returns `status`.
  Status Broken(Status status);
  Status CheckHealthy() const;

  RedisEndpoint endpoint_;
  std::unique_ptr<Transport> transport_;
  RespReader reader_;
  CommandBatch outgoing_;
  size_t pending_replies_ = 0;
  std::vector<char> read_buffer_;
};

// How RedisClient comes back after a transport failure: attempt k waits
// min(initial_delay_ms * 2^(k-2), max_delay_ms) before it tries (the first
// attempt does not wait), each wait shortened by up to half at random so
// workers that lost Redis together do not return in lockstep. It gives up
// after max_attempts attempts or once give_up_after_ms have passed since the
// call began, whichever comes first (0: that bound is off; both 0: it never
// gives up). Connect errors that waiting cannot fix (PermissionDenied,
// InvalidArgument) end the call at once.
struct ReconnectPolicy {
  int initial_delay_ms = 50;
  int max_delay_ms = 2000;
  int max_attempts = 10;
  int give_up_after_ms = 0;
};

// A RedisConnection that reconnects. A command or batch whose link fails
// (Unavailable) is sent again on the next connection: delivery is at least
// once, as everywhere on the Redis streams path (a repeated XADD adds a
// duplicate the reader drops by request id; XACK and XDEL are idempotent).
// One that timed out (DeadlineExceeded) or met garbage (DataLoss) is not
// sent again, as it may have run; the next call reconnects. Logs one line
// per connect (redis_connected), reconnect (redis_reconnected) and give-up
// (redis_unavailable), and each failed attempt at debug level; never a
// password or an argument.
class RedisClient {
 public:
  explicit RedisClient(RedisEndpoint endpoint, ReconnectPolicy policy = {});

  // Connects now (with the retries of the policy); commands also connect on demand.
  Status Connect();
  void Disconnect();
  bool connected() const { return connection_.has_value() && connection_->healthy(); }

  Result<RedisReply> Command(std::initializer_list<std::string_view> args, int block_ms = 0);
  Result<RedisReply> Command(std::span<const std::string_view> args, int block_ms = 0);
  Result<std::vector<RedisReply>> Execute(const CommandBatch& batch, int block_ms = 0);

  const RedisEndpoint& endpoint() const { return endpoint_; }
  // Successful reconnects so far (for metrics and tests).
  int64_t reconnects() const { return reconnects_; }

 private:
  // What one call may still spend on connecting.
  struct RetryBudget {
    using Clock = std::chrono::steady_clock;
    int attempts = 0;
    Clock::time_point start = Clock::now();
  };
  // Connects with backoff unless connected; `cause` (why the last connection
  // ended, empty at first) goes into the log line.
  Status EnsureConnected(RetryBudget* budget, const std::string& cause);
  // The wait before the next attempt, after `attempts_made` attempts.
  int BackoffDelayMs(int attempts_made);

  RedisEndpoint endpoint_;
  ReconnectPolicy policy_;
  std::optional<RedisConnection> connection_;
  bool ever_connected_ = false;
  int64_t reconnects_ = 0;
  std::minstd_rand jitter_;
};

}  // namespace ppml::queue
