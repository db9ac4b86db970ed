#include "common/json_line.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace ppml {

std::string JsonQuote(std::string_view value) {
  std::string out = "\"";
  for (unsigned char c : value) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char escape[8];
          std::snprintf(escape, sizeof(escape), "\\u%04x", c);
          out += escape;
        } else {
          out += static_cast<char>(c);  // UTF-8 passes through unchanged
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(double value) {
  if (!std::isfinite(value)) return "null";
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  if (ec != std::errc()) return "null";
  return std::string(buffer, end);
}

JsonLine& JsonLine::AddRaw(std::string_view key, std::string_view json) {
  if (!body_.empty()) body_ += ',';
  body_ += JsonQuote(key);
  body_ += ':';
  body_ += json;
  return *this;
}

JsonLine& JsonLine::Add(std::string_view key, std::string_view value) { return AddRaw(key, JsonQuote(value)); }
JsonLine& JsonLine::Add(std::string_view key, bool value) { return AddRaw(key, value ? "true" : "false"); }
JsonLine& JsonLine::Add(std::string_view key, double value) { return AddRaw(key, JsonNumber(value)); }
JsonLine& JsonLine::AddNull(std::string_view key) { return AddRaw(key, "null"); }

}  // namespace ppml
