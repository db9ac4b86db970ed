// JsonLine: builds one JSON object on a single line, the machine-readable
// last stdout line of `ppml bench ... --json` and `ppml eval ... --json`.
//
//   JsonLine json;
//   json.Add("model", path).Add("batch", 16).Add("throughput_per_s", 1234.5);
//   std::cout << json.str() << "\n";   // {"model":"m.onnx","batch":16,"throughput_per_s":1234.5}
//
// Keys keep the order they were added in. Strings are escaped per RFC 8259;
// NaN and infinities, which JSON cannot express, become null.
//
// Thread safety: a JsonLine is a plain value; do not mutate one from two threads.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

namespace ppml {

class JsonLine {
 public:
  JsonLine& Add(std::string_view key, std::string_view value);
  JsonLine& Add(std::string_view key, const char* value) { return Add(key, std::string_view(value)); }
  JsonLine& Add(std::string_view key, bool value);
  JsonLine& Add(std::string_view key, double value);
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  JsonLine& Add(std::string_view key, T value) {
    return AddRaw(key, std::to_string(value));
  }
  JsonLine& AddNull(std::string_view key);
  // `json` must already be valid JSON (a nested object or array).
  JsonLine& AddRaw(std::string_view key, std::string_view json);

  // The object, e.g. {"a":1}; "{}" when nothing was added.
  std::string str() const { return body_.empty() ? "{}" : "{" + body_ + "}"; }

 private:
  std::string body_;
};

// `value` as a quoted JSON string literal.
std::string JsonQuote(std::string_view value);
// A finite double in the shortest form that reads back exactly; "null" otherwise.
std::string JsonNumber(double value);

}  // namespace ppml
