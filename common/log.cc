#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace ppml {
namespace {

// Writes the whole buffer to stderr, resuming after partial writes and signals.
void WriteToStderr(std::string_view text) {
  while (!text.empty()) {
    const ssize_t written = ::write(STDERR_FILENO, text.data(), text.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return;  // stderr is gone; there is nowhere left to report that
    }
    text.remove_prefix(static_cast<size_t>(written));
  }
}

LogLevel LevelFromEnvironment() {
  const char* env = std::getenv("PPML_LOG_LEVEL");
  if (env == nullptr || *env == '\0') return LogLevel::kInfo;
  Result<LogLevel> level = ParseLogLevel(env);
  if (level.ok()) return *level;
  // Say so once rather than silently logging at a level nobody asked for.
  WriteToStderr("level=warn event=log_level_invalid PPML_LOG_LEVEL=" + QuoteLogValue(env) + " using=info\n");
  return LogLevel::kInfo;
}

std::atomic<int>& LevelStorage() {
  static std::atomic<int> level{static_cast<int>(LevelFromEnvironment())};
  return level;
}

std::string UtcTimestampNow() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[40];
  const size_t length = std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(buffer + length, sizeof(buffer) - length, ".%03dZ", static_cast<int>(millis));
  return buffer;
}

bool NeedsQuotes(std::string_view value) {
  if (value.empty()) return true;
  for (unsigned char c : value) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

Result<LogLevel> ParseLogLevel(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn" || name == "warning") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  if (name == "off") return LogLevel::kOff;
  return Status::InvalidArgument("unknown log level \"" + std::string(name) +
                                 "\" (expected debug, info, warn, error or off)");
}

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kOff: return "off";
  }
  return "?";
}

LogField::LogField(std::string_view k, double v) : key(k) {
  if (std::isnan(v)) {
    value = "nan";
    return;
  }
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), v);
  value.assign(buffer, ec == std::errc() ? end : buffer);
}

void SetLogLevel(LogLevel level) { LevelStorage().store(static_cast<int>(level), std::memory_order_relaxed); }

LogLevel CurrentLogLevel() { return static_cast<LogLevel>(LevelStorage().load(std::memory_order_relaxed)); }

bool LogEnabled(LogLevel level) {
  return level != LogLevel::kOff && static_cast<int>(level) >= LevelStorage().load(std::memory_order_relaxed);
}

std::string QuoteLogValue(std::string_view value) {
  if (!NeedsQuotes(value)) return std::string(value);
  std::string quoted = "\"";
  for (unsigned char c : value) {
    switch (c) {
      case '"': quoted += "\\\""; break;
      case '\\': quoted += "\\\\"; break;
      case '\n': quoted += "\\n"; break;
      case '\r': quoted += "\\r"; break;
      case '\t': quoted += "\\t"; break;
      default:
        if (c < ' ' || c == 0x7f) {
          char escape[8];
          std::snprintf(escape, sizeof(escape), "\\x%02x", c);
          quoted += escape;
        } else {
          quoted += static_cast<char>(c);
        }
    }
  }
  return quoted + "\"";
}

std::string FormatLogLine(std::string_view timestamp, LogLevel level, std::string_view event,
                          std::span<const LogField> fields) {
  std::string line = "ts=" + QuoteLogValue(timestamp);
  line += " level=";
  line += LogLevelName(level);
  line += " event=" + QuoteLogValue(event);
  for (const LogField& field : fields) {
    line += ' ';
    line += field.key;
    line += '=';
    line += QuoteLogValue(field.value);
  }
  return line;
}

void Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  std::string line = FormatLogLine(UtcTimestampNow(), level, event, std::span(fields.begin(), fields.size()));
  line += '\n';
  // One write per line; the lock keeps long lines (beyond PIPE_BUF, where the
  // kernel stops promising atomic writes) whole as well.
  static std::mutex write_mutex;
  std::lock_guard<std::mutex> lock(write_mutex);
  WriteToStderr(line);
}

}  // namespace ppml
