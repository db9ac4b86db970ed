#include "queue/redis.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "common/log.h"
#include "queue/transport.h"

namespace ppml::queue {
namespace {

// Large enough that a batch of replies or a result of a few hundred KiB
// takes few reads; hiredis keeps what is left of a chunk for the next reply.
constexpr size_t kReadChunk = 64 * 1024;

std::string Name(const RedisEndpoint& endpoint) { return "redis " + endpoint.Address(); }

// A timeout's message with the setting that bounded it, so the reader knows what to raise.
Status NoteTimeout(Status status, const char* setting, int ms) {
  if (status.code() != StatusCode::kDeadlineExceeded) return status;
  return Status(status.code(), status.message() + " (" + setting + "=" + std::to_string(ms) + ")");
}

}  // namespace

RedisConnection::RedisConnection(RedisEndpoint endpoint, std::unique_ptr<Transport> transport)
    : endpoint_(std::move(endpoint)), transport_(std::move(transport)), read_buffer_(kReadChunk) {}
RedisConnection::RedisConnection(RedisConnection&&) noexcept = default;
RedisConnection& RedisConnection::operator=(RedisConnection&&) noexcept = default;
RedisConnection::~RedisConnection() = default;

Result<RedisConnection> RedisConnection::Connect(const RedisEndpoint& endpoint) {
  Deadline deadline = DeadlineAfter(endpoint.connect_timeout_ms);
  Result<std::unique_ptr<Transport>> transport = OpenTransport(endpoint, deadline);
  if (!transport.ok()) return NoteTimeout(transport.status(), "connect_timeout_ms", endpoint.connect_timeout_ms);
  RedisConnection connection(endpoint, std::move(transport).value());
  Status handshake = connection.Handshake(deadline);
  if (!handshake.ok()) return NoteTimeout(handshake, "connect_timeout_ms", endpoint.connect_timeout_ms);
  return connection;
}

// ---- Handshake ----------------------------------------------------------------

ConnectionHandshake ConnectionHandshake::For(const RedisEndpoint& endpoint) {
  ConnectionHandshake handshake;
  if (!endpoint.user.empty()) {
    handshake.Add("AUTH", {"AUTH", endpoint.user, endpoint.password});
  } else if (!endpoint.password.empty()) {
    handshake.Add("AUTH", {"AUTH", endpoint.password});
  }
  if (endpoint.db) handshake.Add("SELECT", {"SELECT", std::to_string(*endpoint.db)});
  if (!endpoint.client_name.empty()) {
    handshake.Add("CLIENT SETNAME", {"CLIENT", "SETNAME", endpoint.client_name});
  }
  handshake.Add("PING", {"PING"});
  return handshake;
}

void ConnectionHandshake::Add(const char* step, std::initializer_list<std::string_view> args) {
  commands.Add(args);
  steps.push_back(step);
}

Status ConnectionHandshake::Check(const RedisEndpoint& endpoint, std::span<const RedisReply> replies) const {
  for (size_t i = 0; i < replies.size() && i < steps.size(); ++i) {
    PPML_RETURN_IF_ERROR(RedisErrorStatus(replies[i], Name(endpoint) + ": " + steps[i]));
  }
  return Status::Ok();
}

// ---- RedisConnection -------------------------------------------------------------

Status RedisConnection::Handshake(Deadline deadline) {
  ConnectionHandshake handshake = ConnectionHandshake::For(endpoint_);
  PPML_ASSIGN_OR_RETURN(std::vector<RedisReply> replies, SendAndRead(handshake.commands, &deadline, 0));
  return handshake.Check(endpoint_, replies);
}

Deadline RedisConnection::IoDeadline(int block_ms) const {
  if (endpoint_.io_timeout_ms <= 0) return Deadline::max();
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(endpoint_.io_timeout_ms) +
         std::chrono::milliseconds(std::max(block_ms, 0));
}

Status RedisConnection::Broken(Status status) {
  transport_.reset();
  reader_ = RespReader();
  outgoing_.Clear();
  pending_replies_ = 0;
  return status;
}

Status RedisConnection::CheckHealthy() const {
  if (transport_) return Status::Ok();
  return Status::Unavailable(Name(endpoint_) + ": connection closed after an earlier failure");
}

void RedisConnection::Append(std::span<const std::string_view> args) {
  size_t before = outgoing_.size();
  outgoing_.Add(args);
  pending_replies_ += outgoing_.size() - before;
}

void RedisConnection::Append(std::initializer_list<std::string_view> args) {
  Append(std::span(args.begin(), args.size()));
}

Status RedisConnection::Flush() {
  return NoteTimeout(FlushUntil(IoDeadline(0)), "io_timeout_ms", endpoint_.io_timeout_ms);
}

Status RedisConnection::FlushUntil(Deadline deadline) {
  PPML_RETURN_IF_ERROR(CheckHealthy());
  if (!outgoing_.status().ok()) {
    // Nothing was sent: drop the buffered commands, the connection stays in step.
    Status status = outgoing_.status();
    pending_replies_ -= outgoing_.size();
    outgoing_.Clear();
    return status;
  }
  if (outgoing_.empty()) return Status::Ok();
  Status written = transport_->Write(outgoing_.bytes(), deadline);
  outgoing_.Clear();
  if (!written.ok()) return Broken(written);
  return Status::Ok();
}

Result<RedisReply> RedisConnection::ReadReply(int block_ms) {
  Result<RedisReply> reply = ReadReplyUntil(IoDeadline(block_ms));
  if (!reply.ok()) return NoteTimeout(reply.status(), "io_timeout_ms", endpoint_.io_timeout_ms);
  return reply;
}

Result<RedisReply> RedisConnection::ReadReplyUntil(Deadline deadline) {
  PPML_RETURN_IF_ERROR(CheckHealthy());
  if (pending_replies_ == 0) return Status::FailedPrecondition(Name(endpoint_) + ": no reply is expected");
  PPML_RETURN_IF_ERROR(FlushUntil(deadline));  // commands appended but not flushed yet
  for (;;) {
    Result<std::optional<RedisReply>> next = reader_.Next();
    if (!next.ok()) return Broken(next.status().WithContext(Name(endpoint_)));
    if (next->has_value()) {
      --pending_replies_;
      return std::move(**next);
    }
    Result<size_t> got = transport_->Read(read_buffer_, deadline);
    if (!got.ok()) return Broken(got.status());
    if (*got == 0) return Broken(Status::Unavailable(Name(endpoint_) + ": connection closed by the server"));
    Status fed = reader_.Feed(std::string_view(read_buffer_.data(), *got));
    if (!fed.ok()) return Broken(fed.WithContext(Name(endpoint_)));
  }
}

Result<RedisReply> RedisConnection::Command(std::span<const std::string_view> args, int block_ms) {
  PPML_RETURN_IF_ERROR(CheckHealthy());
  if (pending_replies_ != 0) {
    return Status::FailedPrecondition(Name(endpoint_) + ": Command while " + std::to_string(pending_replies_) +
                                      " pipelined replies are unread");
  }
  Append(args);
  PPML_RETURN_IF_ERROR(Flush());
  return ReadReply(block_ms);
}

Result<RedisReply> RedisConnection::Command(std::initializer_list<std::string_view> args, int block_ms) {
  return Command(std::span(args.begin(), args.size()), block_ms);
}

Result<std::vector<RedisReply>> RedisConnection::Execute(const CommandBatch& batch, int block_ms) {
  Result<std::vector<RedisReply>> replies = SendAndRead(batch, nullptr, block_ms);
  if (!replies.ok()) return NoteTimeout(replies.status(), "io_timeout_ms", endpoint_.io_timeout_ms);
  return replies;
}

Result<std::vector<RedisReply>> RedisConnection::SendAndRead(const CommandBatch& batch, const Deadline* deadline,
                                                             int block_ms) {
  PPML_RETURN_IF_ERROR(CheckHealthy());
  PPML_RETURN_IF_ERROR(batch.status());
  if (pending_replies_ != 0) {
    return Status::FailedPrecondition(Name(endpoint_) + ": a batch while " + std::to_string(pending_replies_) +
                                      " pipelined replies are unread");
  }
  // Written straight from the batch: no copy into outgoing_.
  Status written = transport_->Write(batch.bytes(), deadline ? *deadline : IoDeadline(0));
  if (!written.ok()) return Broken(written);
  pending_replies_ = batch.size();
  std::vector<RedisReply> replies;
  replies.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    PPML_ASSIGN_OR_RETURN(RedisReply reply, ReadReplyUntil(deadline ? *deadline : IoDeadline(block_ms)));
    replies.push_back(std::move(reply));
  }
  return replies;
}

// ---- RedisClient ---------------------------------------------------------------

RedisClient::RedisClient(RedisEndpoint endpoint, ReconnectPolicy policy)
    : endpoint_(std::move(endpoint)), policy_(policy), jitter_(std::random_device{}()) {}

Status RedisClient::Connect() {
  RetryBudget budget;
  return EnsureConnected(&budget, "");
}

void RedisClient::Disconnect() { connection_.reset(); }

int RedisClient::BackoffDelayMs(int attempts_made) {
  int64_t delay = std::max(policy_.initial_delay_ms, 0);
  for (int i = 1; i < attempts_made && delay < policy_.max_delay_ms; ++i) delay *= 2;
  delay = std::min<int64_t>(delay, std::max(policy_.max_delay_ms, 0));
  if (delay < 2) return static_cast<int>(delay);
  std::uniform_int_distribution<int64_t> half(0, delay / 2);
  return static_cast<int>(delay - half(jitter_));
}

Status RedisClient::EnsureConnected(RetryBudget* budget, const std::string& cause) {
  if (connected()) return Status::Ok();
  connection_.reset();
  Status last;
  for (;;) {
    if (budget->attempts > 0) {
      if (policy_.max_attempts > 0 && budget->attempts >= policy_.max_attempts) break;
      int delay_ms = BackoffDelayMs(budget->attempts);
      auto elapsed = RetryBudget::Clock::now() - budget->start + std::chrono::milliseconds(delay_ms);
      if (policy_.give_up_after_ms > 0 && elapsed > std::chrono::milliseconds(policy_.give_up_after_ms)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    }
    ++budget->attempts;
    Result<RedisConnection> connection = RedisConnection::Connect(endpoint_);
    if (connection.ok()) {
      connection_.emplace(std::move(connection).value());
      if (ever_connected_) {
        ++reconnects_;
        LogInfo("redis_reconnected",
                {{"endpoint", endpoint_.Address()}, {"attempts", budget->attempts}, {"cause", cause}});
      } else {
        LogInfo("redis_connected", {{"endpoint", endpoint_.Address()}, {"tls", endpoint_.tls}});
      }
      ever_connected_ = true;
      return Status::Ok();
    }
    last = connection.status();
    LogDebug("redis_connect_failed",
             {{"endpoint", endpoint_.Address()}, {"attempt", budget->attempts}, {"error", last.message()}});
    // Wrong password, rejected certificate, bad settings: waiting will not help.
    if (last.code() != StatusCode::kUnavailable && last.code() != StatusCode::kDeadlineExceeded) break;
  }
  LogError("redis_unavailable", {{"endpoint", endpoint_.Address()},
                                 {"attempts", budget->attempts},
                                 {"error", last.message()}});
  return last;
}

Result<std::vector<RedisReply>> RedisClient::Execute(const CommandBatch& batch, int block_ms) {
  PPML_RETURN_IF_ERROR(batch.status());
  RetryBudget budget;
  std::string cause;
  for (;;) {
    PPML_RETURN_IF_ERROR(EnsureConnected(&budget, cause));
    Result<std::vector<RedisReply>> replies = connection_->Execute(batch, block_ms);
    // Only a lost link is worth a new connection; the batch goes again (at least once).
    if (replies.ok() || connection_->healthy() || replies.status().code() != StatusCode::kUnavailable) {
      return replies;
    }
    cause = replies.status().message();
  }
}

Result<RedisReply> RedisClient::Command(std::span<const std::string_view> args, int block_ms) {
  CommandBatch batch;
  batch.Add(args);
  PPML_ASSIGN_OR_RETURN(std::vector<RedisReply> replies, Execute(batch, block_ms));
  return std::move(replies.front());
}

Result<RedisReply> RedisClient::Command(std::initializer_list<std::string_view> args, int block_ms) {
  return Command(std::span(args.begin(), args.size()), block_ms);
}

}  // namespace ppml::queue
