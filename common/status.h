// Status and Result<T>: errors as values across component boundaries.
//
// A Status is either OK or carries a code and a message that names what went
// wrong and where (file, key path, node name, request id). Result<T> holds a
// value or a non-OK Status. Both are plain values: copy and move them freely;
// const methods may be called from several threads at once.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace ppml {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,   // malformed input from a user or client
  kNotFound,          // a file, key, model or tensor that does not exist
  kUnsupported,       // valid input the implementation does not handle (an ONNX op, an attribute)
  kIoError,           // the operating system refused a read or write
  kDataLoss,          // truncated or corrupted data
  kFailedPrecondition,
  kResourceExhausted, // a budget or a queue is full
  kPermissionDenied,
  kUnavailable,       // a dependency (Redis, a worker) does not answer
  kDeadlineExceeded,
  kInternal,          // a bug: an invariant of ours does not hold
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status Unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: message", or "OK".
  std::string ToString() const;
  // The same status with "context: " put before the message (no-op on OK).
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : state_(std::move(status)) {  // NOLINT
    if (std::get<Status>(state_).ok()) state_ = Status::Internal("Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(state_); }
  // The error; OK when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(state_); }

  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> state_;
};

}  // namespace ppml

#define PPML_CONCAT_INNER(a, b) a##b
#define PPML_CONCAT(a, b) PPML_CONCAT_INNER(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define PPML_RETURN_IF_ERROR(expr)                  \
  do {                                              \
    ::ppml::Status ppml_status_ = (expr);           \
    if (!ppml_status_.ok()) return ppml_status_;    \
  } while (0)

// `lhs = value of expr`, or returns its status from the enclosing function.
#define PPML_ASSIGN_OR_RETURN(lhs, expr) \
  PPML_ASSIGN_OR_RETURN_IMPL(PPML_CONCAT(ppml_result_, __LINE__), lhs, expr)
#define PPML_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
