// Event-driven Redis connection for libevent programs (the front-end, which
// parks HTTP requests and must not block its event loop on Redis).
//
// Same protocol code as the blocking client: commands are encoded by
// CommandBatch and replies decoded by RespReader (queue/resp.h); the first
// round trip is the same ConnectionHandshake (queue/redis.h); TLS uses the
// same settings (TlsClientContext, ConfigureTlsClient in queue/transport.h)
// through bufferevent_openssl. Only the I/O differs: a bufferevent.
//
// Redis answers in order, so replies are matched to callbacks by a FIFO:
//
//   Command(A, cbA)  Command(B, cbB)  ──▶ writes A B
//                                      ◀── reply A → cbA, reply B → cbB
//
// Timeouts: connect_timeout_ms bounds Connect up to the handshake's last
// reply; each reply must come within io_timeout_ms (+ block_ms for commands
// that block in Redis) of the moment it became the next one awaited. When a
// timeout passes or the link fails, every waiting callback gets the error
// (DeadlineExceeded, Unavailable, PermissionDenied for a rejected
// certificate), the connection closes, and the lost callback is told; a
// program reconnects by calling Connect again, on a timer of its choosing.
//
// A libevent program must ignore SIGPIPE (libevent writes with write(2)).
//
// Thread safety: everything happens on the thread that runs the event_base;
// call the methods from it only. Callbacks run there too, and may issue
// commands or destroy this object.
#pragma once

#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "queue/redis.h"
#include "queue/resp.h"

struct bufferevent;
struct event;
struct event_base;

namespace ppml::queue {

class AsyncRedisConnection {
 public:
  using ReplyCallback = std::function<void(Result<RedisReply>)>;
  using StatusCallback = std::function<void(const Status&)>;

  AsyncRedisConnection(event_base* base, RedisEndpoint endpoint);
  AsyncRedisConnection(const AsyncRedisConnection&) = delete;
  AsyncRedisConnection& operator=(const AsyncRedisConnection&) = delete;
  // Closes; waiting callbacks are dropped without being called.
  ~AsyncRedisConnection();

  // Connects (TCP, TLS, handshake) and calls `done` once: OK when ready, else
  // the error, as RedisConnection::Connect words it. Commands issued before
  // it is ready wait and go out right after the handshake.
  void Connect(StatusCallback done);

  // Queues one command; `done` gets its reply (an error reply is a value) or
  // the failure that closed the connection. Without a connection (never
  // connected, or lost), `done` gets Unavailable at once.
  void Command(std::span<const std::string_view> args, ReplyCallback done, int block_ms = 0);
  void Command(std::initializer_list<std::string_view> args, ReplyCallback done, int block_ms = 0) {
    Command(std::span(args.begin(), args.size()), std::move(done), block_ms);
  }

  // Called when an established connection is lost (after the waiting callbacks).
  void SetLostCallback(StatusCallback lost) { lost_ = std::move(lost); }

  bool ready() const { return state_ == State::kReady; }
  // Commands sent or queued whose replies have not come yet.
  size_t waiting() const { return waiting_.size(); }

 private:
  enum class State { kClosed, kConnecting, kReady };
  struct Waiting {
    ReplyCallback done;
    int block_ms = 0;
  };
  struct BuffereventDeleter { void operator()(bufferevent* b) const; };
  struct EventDeleter { void operator()(event* e) const; };

  static void OnRead(bufferevent* bev, void* self);
  static void OnEvent(bufferevent* bev, short what, void* self);
  static void OnTimeout(int fd, short what, void* self);

  Status StartConnect();
  void SendHandshake();
  void HandleReplies();
  // Arms the timer for the reply now awaited (or the connect deadline).
  void ArmTimer();
  // Closes, then gives `status` to every waiting callback and to the lost or
  // connect callback. Nothing may touch members after it returns false (this
  // was destroyed by a callback).
  bool Fail(const Status& status);
  Status TransportError(short what) const;

  event_base* base_;
  RedisEndpoint endpoint_;
  State state_ = State::kClosed;
  std::unique_ptr<bufferevent, BuffereventDeleter> bev_;
  std::unique_ptr<event, EventDeleter> timer_;
  RespReader reader_;
  std::deque<Waiting> waiting_;
  CommandBatch unsent_;  // commands issued while connecting
  ConnectionHandshake handshake_;
  std::vector<RedisReply> handshake_replies_;
  StatusCallback connect_done_;
  StatusCallback lost_;
  // Expires with this object: after a callback, a weak copy tells whether
  // the callback destroyed it (then no member may be touched).
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace ppml::queue
