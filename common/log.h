// Structured logging: one line per event on stderr, as key=value pairs.
//
//   ts=2024-05-01T12:00:00.123Z level=info event=worker_start model=fashion_cnn workers=2
//
// `event` is a fixed snake_case name a script can grep for; the fields carry
// the details. Values with spaces, quotes, '=' or control characters are
// double-quoted with backslash escapes, so every line splits unambiguously.
// Never log a payload, a key or any plaintext: a scan of all logs for request
// bytes must find nothing (DESIGN.md).
//
// The level filter comes from the environment variable PPML_LOG_LEVEL
// (debug, info, warn, error, off; default info), read on first use;
// SetLogLevel overrides it.
//
// Thread safety: every function may be called from any thread. Each line is
// formatted first and written with one write(2) under a lock, so lines from
// different threads never interleave.
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ppml {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

// "debug", "info", "warn" (or "warning"), "error", "off"; anything else is InvalidArgument.
Result<LogLevel> ParseLogLevel(std::string_view name);
const char* LogLevelName(LogLevel level);

// One key=value pair. Numbers and booleans are formatted here so call sites
// stay short: {"batch", 16}, {"ok", true}, {"error", status.ToString()}.
struct LogField {
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const char* v) : key(k), value(v ? v : "") {}
  LogField(std::string_view k, const std::string& v) : key(k), value(v) {}
  LogField(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  LogField(std::string_view k, T v) : key(k), value(std::to_string(v)) {}
  LogField(std::string_view k, double v);

  std::string_view key;
  std::string value;
};

void SetLogLevel(LogLevel level);
LogLevel CurrentLogLevel();
bool LogEnabled(LogLevel level);

// Writes one line if `level` passes the filter.
void Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});
inline void LogDebug(std::string_view event, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kDebug, event, fields);
}
inline void LogInfo(std::string_view event, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kInfo, event, fields);
}
inline void LogWarn(std::string_view event, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kWarn, event, fields);
}
inline void LogError(std::string_view event, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kError, event, fields);
}

// The line Log would write, without the trailing newline; `timestamp` is the
// ts= value. Exposed for tests and for tools that print the same format.
std::string FormatLogLine(std::string_view timestamp, LogLevel level, std::string_view event,
                          std::span<const LogField> fields);

// A value as it appears after '=': bare when safe, else quoted and escaped.
std::string QuoteLogValue(std::string_view value);

}  // namespace ppml
