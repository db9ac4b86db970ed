#include "queue/async_redis.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <utility>

#include "queue/transport.h"

namespace ppml::queue {
namespace {

std::string Name(const RedisEndpoint& endpoint) { return "redis " + endpoint.Address(); }

timeval Milliseconds(int64_t ms) {
  return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}

}  // namespace

void AsyncRedisConnection::BuffereventDeleter::operator()(bufferevent* b) const { bufferevent_free(b); }
void AsyncRedisConnection::EventDeleter::operator()(event* e) const { event_free(e); }

AsyncRedisConnection::AsyncRedisConnection(event_base* base, RedisEndpoint endpoint)
    : base_(base), endpoint_(std::move(endpoint)), timer_(evtimer_new(base, &OnTimeout, this)) {}

AsyncRedisConnection::~AsyncRedisConnection() = default;

void AsyncRedisConnection::Connect(StatusCallback done) {
  if (state_ != State::kClosed) {
    done(Status::FailedPrecondition(Name(endpoint_) + ": Connect while " +
                                    (state_ == State::kReady ? "connected" : "connecting")));
    return;
  }
  connect_done_ = std::move(done);
  Status started = StartConnect();
  if (!started.ok()) Fail(started);
}

Status AsyncRedisConnection::StartConnect() {
  const std::string name = Name(endpoint_);
  reader_ = RespReader();
  handshake_ = ConnectionHandshake::For(endpoint_);
  handshake_replies_.clear();
  state_ = State::kConnecting;
  // Deferred callbacks: libevent never calls us back from inside our own calls.
  const int options = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
  if (endpoint_.tls) {
    Result<SslCtxPtr> ctx = TlsClientContext(endpoint_.tls_options);
    if (!ctx.ok()) return ctx.status().WithContext(name);
    SslPtr ssl(SSL_new(ctx->get()));
    if (!ssl) return Status::Internal(name + ": SSL_new failed");
    const std::string& server_name =
        endpoint_.tls_options.server_name.empty() ? endpoint_.host : endpoint_.tls_options.server_name;
    Status configured = ConfigureTlsClient(ssl.get(), server_name);
    if (!configured.ok()) return configured.WithContext(name);
    // With BEV_OPT_CLOSE_ON_FREE the bufferevent owns the SSL from here on.
    bev_.reset(bufferevent_openssl_socket_new(base_, -1, ssl.release(), BUFFEREVENT_SSL_CONNECTING, options));
  } else {
    bev_.reset(bufferevent_socket_new(base_, -1, options));
  }
  if (!bev_) return Status::Internal(name + ": bufferevent_new failed");
  bufferevent_setcb(bev_.get(), &OnRead, nullptr, &OnEvent, this);
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  if (endpoint_.connect_timeout_ms > 0) {
    timeval timeout = Milliseconds(endpoint_.connect_timeout_ms);
    evtimer_add(timer_.get(), &timeout);
  }
  // No evdns base: the name is resolved at once, as by the blocking client.
  if (bufferevent_socket_connect_hostname(bev_.get(), nullptr, AF_UNSPEC, endpoint_.host.c_str(), endpoint_.port) !=
      0) {
    return TransportError(BEV_EVENT_ERROR);
  }
  return Status::Ok();
}

// The handshake, then whatever was issued meanwhile, in one write.
void AsyncRedisConnection::SendHandshake() {
  int fd = bufferevent_getfd(bev_.get());
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  bufferevent_write(bev_.get(), handshake_.commands.bytes().data(), handshake_.commands.bytes().size());
  bufferevent_write(bev_.get(), unsent_.bytes().data(), unsent_.bytes().size());
  unsent_.Clear();
}

void AsyncRedisConnection::Command(std::span<const std::string_view> args, ReplyCallback done, int block_ms) {
  if (state_ == State::kClosed) {
    done(Status::Unavailable(Name(endpoint_) + ": not connected"));
    return;
  }
  if (args.empty()) {  // Redis would not answer: the replies would fall out of step
    done(Status::InvalidArgument(Name(endpoint_) + ": a command needs at least one argument"));
    return;
  }
  waiting_.push_back(Waiting{std::move(done), block_ms});
  if (state_ == State::kConnecting) {
    unsent_.Add(args);  // goes out right after the handshake
    return;
  }
  // libevent gathers what is written during one loop turn into one send:
  // commands issued together are pipelined without asking.
  CommandBatch command;
  command.Add(args);
  bufferevent_write(bev_.get(), command.bytes().data(), command.bytes().size());
  if (waiting_.size() == 1) ArmTimer();
}

void AsyncRedisConnection::ArmTimer() {
  if (state_ != State::kReady) return;  // the connect deadline stays armed
  if (waiting_.empty() || endpoint_.io_timeout_ms <= 0) {
    evtimer_del(timer_.get());
    return;
  }
  timeval timeout = Milliseconds(int64_t{endpoint_.io_timeout_ms} + std::max(waiting_.front().block_ms, 0));
  evtimer_add(timer_.get(), &timeout);
}

void AsyncRedisConnection::OnRead(bufferevent* bev, void* self) {
  auto* connection = static_cast<AsyncRedisConnection*>(self);
  // Hand every chunk of the input buffer to the reader without copying it out first.
  evbuffer* input = bufferevent_get_input(bev);
  int chunks = evbuffer_peek(input, -1, nullptr, nullptr, 0);
  std::vector<evbuffer_iovec> vectors(static_cast<size_t>(std::max(chunks, 0)));
  evbuffer_peek(input, -1, nullptr, vectors.data(), chunks);
  for (const evbuffer_iovec& v : vectors) {
    Status fed = connection->reader_.Feed(std::string_view(static_cast<const char*>(v.iov_base), v.iov_len));
    if (!fed.ok()) {
      connection->Fail(fed.WithContext(Name(connection->endpoint_)));
      return;
    }
  }
  evbuffer_drain(input, evbuffer_get_length(input));
  connection->HandleReplies();
}

void AsyncRedisConnection::HandleReplies() {
  std::weak_ptr<char> alive = alive_;
  for (;;) {
    Result<std::optional<RedisReply>> next = reader_.Next();
    if (!next.ok()) {
      Fail(next.status().WithContext(Name(endpoint_)));
      return;
    }
    if (!next->has_value()) return;
    RedisReply reply = std::move(**next);

    if (state_ == State::kConnecting) {
      handshake_replies_.push_back(std::move(reply));
      if (handshake_replies_.size() < handshake_.steps.size()) continue;
      Status status = handshake_.Check(endpoint_, handshake_replies_);
      handshake_replies_.clear();
      if (!status.ok()) {
        Fail(status);
        return;
      }
      state_ = State::kReady;
      ArmTimer();
      StatusCallback done = std::exchange(connect_done_, nullptr);
      if (done) done(Status::Ok());
      if (alive.expired()) return;
      continue;
    }

    if (waiting_.empty()) {
      Fail(Status::Internal(Name(endpoint_) + ": a reply came that no command asked for"));
      return;
    }
    Waiting front = std::move(waiting_.front());
    waiting_.pop_front();
    ArmTimer();
    front.done(std::move(reply));
    if (alive.expired()) return;  // the callback destroyed this connection
  }
}

void AsyncRedisConnection::OnEvent(bufferevent*, short what, void* self) {
  auto* connection = static_cast<AsyncRedisConnection*>(self);
  if (what & BEV_EVENT_CONNECTED) {
    connection->SendHandshake();
    return;
  }
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) connection->Fail(connection->TransportError(what));
}

void AsyncRedisConnection::OnTimeout(int, short, void* self) {
  auto* connection = static_cast<AsyncRedisConnection*>(self);
  const std::string name = Name(connection->endpoint_);
  if (connection->state_ == State::kConnecting) {
    connection->Fail(Status::DeadlineExceeded(name + ": connect timed out (connect_timeout_ms=" +
                                              std::to_string(connection->endpoint_.connect_timeout_ms) + ")"));
  } else {
    connection->Fail(Status::DeadlineExceeded(name + ": read timed out (io_timeout_ms=" +
                                              std::to_string(connection->endpoint_.io_timeout_ms) + ")"));
  }
}

Status AsyncRedisConnection::TransportError(short what) const {
  const std::string name = Name(endpoint_);
  if (int dns = bufferevent_socket_get_dns_error(bev_.get()); dns != 0) {
    return Status::Unavailable(name + ": cannot resolve host: " + evutil_gai_strerror(dns));
  }
  if (endpoint_.tls) {
    unsigned long error = bufferevent_get_openssl_error(bev_.get());
    // libevent queues SSL_get_error codes (library 0) for I/O errors too:
    // those are no OpenSSL reason, the socket error below says more.
    if (ERR_GET_LIB(error) == 0) error = 0;
    SSL* ssl = bufferevent_openssl_get_ssl(bev_.get());
    bool verify_failed = ssl != nullptr && SSL_get_verify_result(ssl) != X509_V_OK;
    if (ssl != nullptr && (error != 0 || verify_failed)) {
      return TlsFailure(name, state_ == State::kConnecting ? "handshake" : "read", ssl, error);
    }
  }
  std::string message = name + (state_ == State::kConnecting ? ": connect failed: " : ": ") +
                        ((what & BEV_EVENT_EOF) ? "connection closed by the server"
                                                : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
  // Under TLS 1.3 a rejected client certificate is an alert after the
  // handshake, which libevent reports as a reset or EOF on our first write.
  if (endpoint_.tls && state_ == State::kConnecting) {
    message += " (a TLS server that requires a client certificate hangs up so when it gets none it trusts)";
  }
  return Status::Unavailable(message);
}

bool AsyncRedisConnection::Fail(const Status& status) {
  std::weak_ptr<char> alive = alive_;
  bool was_ready = state_ == State::kReady;
  state_ = State::kClosed;
  bev_.reset();
  evtimer_del(timer_.get());
  unsent_.Clear();
  std::deque<Waiting> waiting = std::exchange(waiting_, {});
  StatusCallback connect_done = std::exchange(connect_done_, nullptr);
  // Callbacks last: any of them may destroy this object.
  if (connect_done) connect_done(status);
  for (Waiting& w : waiting) {
    if (alive.expired()) return false;
    w.done(status);
  }
  if (alive.expired()) return false;
  if (was_ready && lost_) lost_(status);
  return !alive.expired();
}

}  // namespace ppml::queue
