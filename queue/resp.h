// RESP (the Redis protocol) on the wire: commands out, replies in.
//
// Both directions are hiredis's, and only its protocol code: commands are
// encoded by redisFormatCommandArgv and replies decoded by redisReader.
// hiredis's own networking (redisContext) is never used; the bytes travel
// over our transports (queue/transport.h: TCP or TLS with OpenSSL), so the
// blocking client (queue/redis.h) and any event-driven one share this file.
//
// A command is an array of binary-safe bulk strings:
//
//   XADD s * f v   ->   *5\r\n $4\r\nXADD\r\n $1\r\ns\r\n $1\r\n*\r\n $1\r\nf\r\n $1\r\nv\r\n
//
// Replies are RESP2 (what Redis speaks until a client sends HELLO 3):
// simple string (+), error (-), integer (:), bulk string ($, nil as $-1) and
// array (*, nil as *-1), nested arrays for stream entries.
//
// Thread safety: none of these types is shared; one thread at a time per
// object. A RedisReplyView is only valid while the RedisReply it came from is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

// hiredis types, kept out of this header's users.
struct redisReply;
struct redisReader;

namespace ppml::queue {

// A non-owning look at one reply or one element of an array reply.
class RedisReplyView {
 public:
  enum class Type { kNone, kString, kArray, kInteger, kNil, kStatus, kError };

  RedisReplyView() = default;
  explicit RedisReplyView(const redisReply* reply) : reply_(reply) {}

  Type type() const;
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_integer() const { return type() == Type::kInteger; }
  bool is_nil() const { return type() == Type::kNil; }
  bool is_status() const { return type() == Type::kStatus; }  // +OK, +PONG
  bool is_error() const { return type() == Type::kError; }

  // The bytes of a bulk string, status or error reply; empty for other types.
  std::string_view str() const;
  // The message of an error reply ("WRONGTYPE Operation against ..."); empty otherwise.
  std::string_view error() const { return is_error() ? str() : std::string_view(); }
  // The value of an integer reply; 0 for other types.
  int64_t integer() const;
  // The elements of an array reply; 0 for other types.
  size_t size() const;
  // Element `i` of an array reply; a kNone view when out of range or not an array.
  RedisReplyView operator[](size_t i) const;

  // The shape for error messages: "string(12 bytes)", "array(3)", "integer",
  // "error(ERR ...)". Never the content of a string: it may be a payload.
  std::string Describe() const;

 protected:
  const redisReply* reply_ = nullptr;
};

// Owns one reply tree from the reader; moves, never copies.
class RedisReply : public RedisReplyView {
 public:
  RedisReply() = default;
  explicit RedisReply(redisReply* owned) : RedisReplyView(owned) {}
  RedisReply(RedisReply&& other) noexcept;
  RedisReply& operator=(RedisReply&& other) noexcept;
  RedisReply(const RedisReply&) = delete;
  RedisReply& operator=(const RedisReply&) = delete;
  ~RedisReply();

  const RedisReplyView& view() const { return *this; }
};

// The Status for an error reply, "what: <Redis message>", its code from the
// error prefix: NOAUTH/WRONGPASS/NOPERM PermissionDenied, LOADING/BUSY/
// MASTERDOWN/TRYAGAIN/READONLY Unavailable, OOM ResourceExhausted, NOGROUP
// NotFound, anything else FailedPrecondition. OK when `reply` is no error.
Status RedisErrorStatus(const RedisReplyView& reply, std::string_view what);

// Commands encoded back to back, ready to be written in one go (pipelining:
// N commands, one write, then N replies in order).
class CommandBatch {
 public:
  // Appends one command; every argument is sent as a binary-safe bulk
  // string. An empty argument list is recorded as an error in status():
  // Redis would answer it with nothing and the replies would fall out of step.
  void Add(std::span<const std::string_view> args);
  void Add(std::initializer_list<std::string_view> args) { Add(std::span(args.begin(), args.size())); }

  size_t size() const { return count_; }  // commands, i.e. replies to expect
  bool empty() const { return count_ == 0; }
  std::string_view bytes() const { return bytes_; }
  // OK, or InvalidArgument naming the first command that could not be added.
  const Status& status() const { return status_; }
  void Clear();

 private:
  std::string bytes_;
  size_t count_ = 0;
  Status status_;
  // Scratch for the argv form redisFormatCommandArgv takes, kept between calls.
  std::vector<const char*> argv_;
  std::vector<size_t> argv_lengths_;
};

// Incremental reply decoder over hiredis's redisReader: feed whatever bytes
// arrived, take out every reply that is complete.
class RespReader {
 public:
  RespReader();
  RespReader(RespReader&&) noexcept;
  RespReader& operator=(RespReader&&) noexcept;
  ~RespReader();

  // Buffers `bytes`; DataLoss after a protocol error.
  Status Feed(std::string_view bytes);
  // The next complete reply, nullopt when more bytes are needed, DataLoss
  // when the stream is not RESP (the connection must then be dropped).
  Result<std::optional<RedisReply>> Next();

 private:
  struct ReaderDeleter { void operator()(redisReader* r) const; };
  std::unique_ptr<redisReader, ReaderDeleter> reader_;
};

}  // namespace ppml::queue
