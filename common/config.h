// ConfigReader: typed, path-checked reading of one YAML config file.
//
// Each config section is a plain struct with its defaults at the fields and a
// Load function that asks the reader for its keys by dotted path:
//
//   Status LoadBatching(ConfigReader& config, BatchingConfig* out) {
//     PPML_RETURN_IF_ERROR(config.Optional("worker.batching.max_batch_size", &out->max_batch_size));
//     PPML_RETURN_IF_ERROR(config.CheckPositive("worker.batching.max_batch_size", out->max_batch_size));
//     ...
//   }
//   ... after every section has been read:
//   PPML_RETURN_IF_ERROR(config.CheckNoUnknownKeys());
//
// The reader remembers every path it was asked for, so CheckNoUnknownKeys can
// report a misspelt key instead of silently running with a default. Every
// error is InvalidArgument (NotFound for a missing file) and reads
//   configs/x.yaml: worker.batching.max_batch_size: expected an integer, got "abc" (line 7)
// Paths are map keys joined by '.', with [i] for a sequence element:
// "models[0].name". yaml-cpp exceptions never leave this component.
//
// Thread safety: none. A reader records what was read; use it from one
// thread, typically once at start-up, and keep only the structs it filled.
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/status.h"

namespace ppml {

class ConfigReader {
 public:
  // Parses the file. Missing file: NotFound; YAML syntax errors and duplicate
  // keys: InvalidArgument with line and column.
  static Result<ConfigReader> LoadFile(const std::string& path);
  // Parses YAML text; `source_name` stands for the file name in messages.
  static Result<ConfigReader> LoadString(std::string_view yaml, const std::string& source_name);

  ConfigReader(ConfigReader&&) noexcept;
  ConfigReader& operator=(ConfigReader&&) noexcept;
  ~ConfigReader();

  // Reads a key that must be present and not null.
  Status Required(std::string_view path, bool* out);
  Status Required(std::string_view path, int* out);
  Status Required(std::string_view path, int64_t* out);
  Status Required(std::string_view path, double* out);
  Status Required(std::string_view path, std::string* out);
  Status Required(std::string_view path, std::vector<std::string>* out);
  Status Required(std::string_view path, std::vector<int64_t>* out);

  // Reads a key when present; an absent or null key leaves *out (the default) as is.
  Status Optional(std::string_view path, bool* out);
  Status Optional(std::string_view path, int* out);
  Status Optional(std::string_view path, int64_t* out);
  Status Optional(std::string_view path, double* out);
  Status Optional(std::string_view path, std::string* out);
  Status Optional(std::string_view path, std::vector<std::string>* out);
  Status Optional(std::string_view path, std::vector<int64_t>* out);

  // A file path: like the string forms, but a relative path is taken from
  // the config file's folder (so a config works from any working directory).
  Status RequiredPath(std::string_view path, std::string* out);
  Status OptionalPath(std::string_view path, std::string* out);

  // Whether the key is present (and not null). Does not count as reading it.
  bool Has(std::string_view path) const;

  // Number of elements of a sequence of sections ("models"), 0 when absent;
  // read each element's keys as "models[i].name".
  Result<size_t> SequenceSize(std::string_view path);

  // Marks a whole subtree as read, for a section that is parsed elsewhere or
  // deliberately ignored.
  void MarkRead(std::string_view path);

  // InvalidArgument listing every key in the file that no call above asked
  // for, with the closest known key as a hint when one is near.
  Status CheckNoUnknownKeys() const;

  // Range checks on values already read, with messages naming file, key and
  // line. Integers and floating-point values each get their own wording.
  template <typename T>
    requires std::integral<T> || std::floating_point<T>
  Status CheckPositive(std::string_view path, T value) const {
    if constexpr (std::integral<T>) {
      return CheckPositiveInteger(path, static_cast<int64_t>(value));
    } else {
      return CheckPositiveReal(path, static_cast<double>(value));
    }
  }
  template <std::integral T>
  Status CheckNonNegative(std::string_view path, T value) const {
    return CheckNonNegativeInteger(path, static_cast<int64_t>(value));
  }
  // min <= value <= max.
  template <typename T>
    requires std::integral<T> || std::floating_point<T>
  Status CheckInRange(std::string_view path, T value, std::type_identity_t<T> min,
                      std::type_identity_t<T> max) const {
    if constexpr (std::integral<T>) {
      return CheckInRangeInteger(path, static_cast<int64_t>(value), static_cast<int64_t>(min),
                                 static_cast<int64_t>(max));
    } else {
      return CheckInRangeReal(path, static_cast<double>(value), static_cast<double>(min), static_cast<double>(max));
    }
  }
  Status CheckOneOf(std::string_view path, const std::string& value,
                    std::initializer_list<std::string_view> allowed) const;

  // "file: path: what", as InvalidArgument, for checks the helpers above do not cover.
  Status Invalid(std::string_view path, std::string_view what) const;

  const std::string& source_name() const;

 private:
  struct Impl;
  explicit ConfigReader(std::unique_ptr<Impl> impl);

  Status CheckPositiveInteger(std::string_view path, int64_t value) const;
  Status CheckPositiveReal(std::string_view path, double value) const;
  Status CheckNonNegativeInteger(std::string_view path, int64_t value) const;
  Status CheckInRangeInteger(std::string_view path, int64_t value, int64_t min, int64_t max) const;
  Status CheckInRangeReal(std::string_view path, double value, double min, double max) const;

  std::unique_ptr<Impl> impl_;
};

}  // namespace ppml
