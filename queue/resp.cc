#include "queue/resp.h"

#include <hiredis/hiredis.h>

#include <new>
#include <utility>

namespace ppml::queue {

// ---- Replies -----------------------------------------------------------------

RedisReplyView::Type RedisReplyView::type() const {
  if (reply_ == nullptr) return Type::kNone;
  switch (reply_->type) {
    case REDIS_REPLY_STRING: return Type::kString;
    case REDIS_REPLY_ARRAY: return Type::kArray;
    case REDIS_REPLY_INTEGER: return Type::kInteger;
    case REDIS_REPLY_NIL: return Type::kNil;
    case REDIS_REPLY_STATUS: return Type::kStatus;
    case REDIS_REPLY_ERROR: return Type::kError;
    default: return Type::kNone;
  }
}

std::string_view RedisReplyView::str() const {
  Type t = type();
  if (t != Type::kString && t != Type::kStatus && t != Type::kError) return {};
  return std::string_view(reply_->str, reply_->len);
}

int64_t RedisReplyView::integer() const { return is_integer() ? reply_->integer : 0; }

size_t RedisReplyView::size() const { return is_array() ? reply_->elements : 0; }

RedisReplyView RedisReplyView::operator[](size_t i) const {
  if (i >= size()) return RedisReplyView();
  return RedisReplyView(reply_->element[i]);
}

std::string RedisReplyView::Describe() const {
  switch (type()) {
    case Type::kNone: return "no reply";
    case Type::kString: return "string(" + std::to_string(str().size()) + " bytes)";
    case Type::kArray: return "array(" + std::to_string(size()) + ")";
    case Type::kInteger: return "integer";
    case Type::kNil: return "nil";
    case Type::kStatus: return "status(" + std::string(str()) + ")";
    case Type::kError: return "error(" + std::string(str()) + ")";
  }
  return "unknown";
}

RedisReply::RedisReply(RedisReply&& other) noexcept : RedisReplyView(std::exchange(other.reply_, nullptr)) {}

RedisReply& RedisReply::operator=(RedisReply&& other) noexcept {
  if (this != &other) {
    if (reply_ != nullptr) freeReplyObject(const_cast<redisReply*>(reply_));
    reply_ = std::exchange(other.reply_, nullptr);
  }
  return *this;
}

// Only a RedisReply owns reply_, and it was handed over non-const by the reader.
RedisReply::~RedisReply() {
  if (reply_ != nullptr) freeReplyObject(const_cast<redisReply*>(reply_));
}

Status RedisErrorStatus(const RedisReplyView& reply, std::string_view what) {
  if (!reply.is_error()) return Status::Ok();
  std::string_view message = reply.error();
  std::string_view prefix = message.substr(0, message.find(' '));
  StatusCode code = StatusCode::kFailedPrecondition;
  if (prefix == "NOAUTH" || prefix == "WRONGPASS" || prefix == "NOPERM") {
    code = StatusCode::kPermissionDenied;
  } else if (prefix == "LOADING" || prefix == "BUSY" || prefix == "MASTERDOWN" || prefix == "TRYAGAIN" ||
             prefix == "READONLY" || prefix == "CLUSTERDOWN") {
    code = StatusCode::kUnavailable;
  } else if (prefix == "OOM") {
    code = StatusCode::kResourceExhausted;
  } else if (prefix == "NOGROUP") {
    code = StatusCode::kNotFound;
  }
  return Status(code, std::string(what) + ": " + std::string(message));
}

// ---- Commands ----------------------------------------------------------------

void CommandBatch::Add(std::span<const std::string_view> args) {
  if (args.empty()) {
    if (status_.ok()) {
      status_ = Status::InvalidArgument("redis command " + std::to_string(count_ + 1) + " of a batch has no arguments");
    }
    return;
  }
  argv_.clear();
  argv_lengths_.clear();
  for (std::string_view arg : args) {
    argv_.push_back(arg.data());
    argv_lengths_.push_back(arg.size());
  }
  char* command = nullptr;
  int length = redisFormatCommandArgv(&command, static_cast<int>(args.size()), argv_.data(), argv_lengths_.data());
  if (length < 0) throw std::bad_alloc();  // hiredis fails only when malloc does
  bytes_.append(command, static_cast<size_t>(length));
  redisFreeCommand(command);
  ++count_;
}

void CommandBatch::Clear() {
  bytes_.clear();
  count_ = 0;
  status_ = Status::Ok();
}

// ---- Reader ------------------------------------------------------------------

void RespReader::ReaderDeleter::operator()(redisReader* r) const { redisReaderFree(r); }

RespReader::RespReader() : reader_(redisReaderCreate()) {
  if (!reader_) throw std::bad_alloc();
}
RespReader::RespReader(RespReader&&) noexcept = default;
RespReader& RespReader::operator=(RespReader&&) noexcept = default;
RespReader::~RespReader() = default;

Status RespReader::Feed(std::string_view bytes) {
  if (redisReaderFeed(reader_.get(), bytes.data(), bytes.size()) != REDIS_OK) {
    return Status::DataLoss(std::string("redis protocol error: ") + reader_->errstr);
  }
  return Status::Ok();
}

Result<std::optional<RedisReply>> RespReader::Next() {
  void* reply = nullptr;
  if (redisReaderGetReply(reader_.get(), &reply) != REDIS_OK) {
    return Status::DataLoss(std::string("redis protocol error: ") + reader_->errstr);
  }
  if (reply == nullptr) return std::optional<RedisReply>();
  return std::optional<RedisReply>(RedisReply(static_cast<redisReply*>(reply)));
}

}  // namespace ppml::queue
