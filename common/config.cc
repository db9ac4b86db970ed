#include "common/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

namespace ppml {
namespace {

// One step of a key path: a map key, or an index into a sequence.
struct PathStep {
  std::string key;
  std::optional<size_t> index;
};

// "a.b[2].c" -> {a}, {b}, {[2]}, {c}. The paths come from our own code, so a
// malformed one is a bug (Internal), not a user error.
Result<std::vector<PathStep>> ParsePath(std::string_view path) {
  std::vector<PathStep> steps;
  size_t i = 0;
  const auto bad = [&] { return Status::Internal("malformed config key path \"" + std::string(path) + "\""); };
  while (i < path.size()) {
    const size_t key_end = path.find_first_of(".[", i);
    const std::string_view key = path.substr(i, key_end == std::string_view::npos ? path.size() - i : key_end - i);
    if (key.empty()) return bad();
    steps.push_back({std::string(key), std::nullopt});
    i += key.size();
    while (i < path.size() && path[i] == '[') {
      const size_t close = path.find(']', i);
      if (close == std::string_view::npos) return bad();
      size_t index = 0;
      const auto [end, ec] = std::from_chars(path.data() + i + 1, path.data() + close, index);
      if (ec != std::errc() || end != path.data() + close) return bad();
      steps.push_back({"", index});
      i = close + 1;
    }
    if (i < path.size()) {
      if (path[i] != '.') return bad();
      ++i;
      if (i == path.size()) return bad();
    }
  }
  if (steps.empty()) return bad();
  return steps;
}

std::string JoinPath(const std::vector<PathStep>& steps, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    if (steps[i].index) {
      // Appended piecewise: "[" + to_string(..) trips GCC 12's false -Wrestrict (bug 105329).
      out += '[';
      out += std::to_string(*steps[i].index);
      out += ']';
    } else {
      if (!out.empty()) out += ".";
      out += steps[i].key;
    }
  }
  return out;
}

std::string LineSuffix(const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return "";
  return " (line " + std::to_string(mark.line + 1) + ")";
}

std::string LineSuffix(const YAML::Node& node) { return LineSuffix(node.Mark()); }

// How a node looks in an error message: the scalar itself, quoted, or its kind.
std::string Describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "null";
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a sequence";
  std::string quoted = "\"";
  for (char c : node.Scalar()) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "\"";
}

// The value of `key` in a mapping, or an undefined node; *key_mark gets the
// key's position. We search by hand because yaml-cpp's non-const operator[]
// inserts missing keys.
YAML::Node MapChild(const YAML::Node& map, const std::string& key, YAML::Mark* key_mark) {
  for (const auto& entry : map) {  // not it->first: operator-> points into a temporary
    if (entry.first.IsScalar() && entry.first.Scalar() == key) {
      *key_mark = entry.first.Mark();
      return entry.second;
    }
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

// A node found by path, and where to point the user: the line of its key
// (an empty value has no useful position of its own), or of the sequence element.
struct Located {
  YAML::Node node{YAML::NodeType::Undefined};
  YAML::Mark mark = YAML::Mark::null_mark();
};

// Conversions from a scalar node. Each returns an empty string on success or
// the "expected ..." part of an error message.
std::string ConvertScalar(const YAML::Node& node, bool* out) {
  if (node.IsScalar()) {
    static const char* const kTrue[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char* const kFalse[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    const std::string& s = node.Scalar();
    for (const char* t : kTrue) {
      if (s == t) { *out = true; return ""; }
    }
    for (const char* f : kFalse) {
      if (s == f) { *out = false; return ""; }
    }
  }
  return "expected true or false, got " + Describe(node);
}

std::string ConvertScalar(const YAML::Node& node, int64_t* out) {
  if (node.IsScalar()) {
    std::string_view s = node.Scalar();
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec == std::errc::result_out_of_range) return "integer " + Describe(node) + " is out of range";
    if (ec == std::errc() && end == s.data() + s.size() && !s.empty()) {
      *out = value;
      return "";
    }
  }
  return "expected an integer, got " + Describe(node);
}

std::string ConvertScalar(const YAML::Node& node, int* out) {
  int64_t wide = 0;
  std::string error = ConvertScalar(node, &wide);
  if (!error.empty()) return error;
  if (wide < std::numeric_limits<int>::min() || wide > std::numeric_limits<int>::max()) {
    return "integer " + Describe(node) + " is out of range (at most " +
           std::to_string(std::numeric_limits<int>::max()) + ")";
  }
  *out = static_cast<int>(wide);
  return "";
}

std::string ConvertScalar(const YAML::Node& node, double* out) {
  if (node.IsScalar()) {
    std::string_view s = node.Scalar();
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    double value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    // from_chars accepts "inf" and "nan"; no setting of ours means either.
    if (ec == std::errc() && end == s.data() + s.size() && !s.empty() && std::isfinite(value)) {
      *out = value;
      return "";
    }
  }
  return "expected a number, got " + Describe(node);
}

std::string ConvertScalar(const YAML::Node& node, std::string* out) {
  if (!node.IsScalar()) return "expected a string, got " + Describe(node);
  *out = node.Scalar();
  return "";
}

template <typename T>
std::string ConvertSequence(const YAML::Node& node, std::vector<T>* out, const char* what) {
  if (!node.IsSequence()) return std::string("expected a sequence of ") + what + ", got " + Describe(node);
  std::vector<T> values;
  for (size_t i = 0; i < node.size(); ++i) {
    T value{};
    std::string error = ConvertScalar(node[i], &value);
    if (!error.empty()) return "element " + std::to_string(i) + ": " + error;
    values.push_back(std::move(value));
  }
  *out = std::move(values);
  return "";
}

std::string Convert(const YAML::Node& node, bool* out) { return ConvertScalar(node, out); }
std::string Convert(const YAML::Node& node, int* out) { return ConvertScalar(node, out); }
std::string Convert(const YAML::Node& node, int64_t* out) { return ConvertScalar(node, out); }
std::string Convert(const YAML::Node& node, double* out) { return ConvertScalar(node, out); }
std::string Convert(const YAML::Node& node, std::string* out) { return ConvertScalar(node, out); }
std::string Convert(const YAML::Node& node, std::vector<std::string>* out) {
  return ConvertSequence(node, out, "strings");
}
std::string Convert(const YAML::Node& node, std::vector<int64_t>* out) {
  return ConvertSequence(node, out, "integers");
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string FormatNumber(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

// Rejects what yaml-cpp accepts silently but a config must not contain:
// duplicate keys (the second would be ignored) and non-string keys.
Status CheckKeys(const YAML::Node& node, const std::string& path, const std::string& source) {
  if (node.IsMap()) {
    std::set<std::string> seen;
    // Range-for binds each dereferenced pair for the whole body (the
    // iterator's operator-> points into a temporary).
    for (const auto& entry : node) {
      if (!entry.first.IsScalar()) {
        return Status::InvalidArgument(source + ": " + (path.empty() ? "top level" : path) +
                                       ": keys must be plain strings" + LineSuffix(entry.first));
      }
      const std::string key = entry.first.Scalar();
      const std::string child = path.empty() ? key : path + "." + key;
      if (!seen.insert(key).second) {
        return Status::InvalidArgument(source + ": duplicate key " + child + LineSuffix(entry.first));
      }
      PPML_RETURN_IF_ERROR(CheckKeys(entry.second, child, source));
    }
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) {
      PPML_RETURN_IF_ERROR(CheckKeys(node[i], path + "[" + std::to_string(i) + "]", source));
    }
  }
  return Status::Ok();
}

}  // namespace

struct ConfigReader::Impl {
  std::string source;
  YAML::Node root;
  // Every path a caller asked for, present in the file or not: the known keys.
  std::set<std::string> asked;
  // Sequences of sections whose elements are read one by one.
  std::set<std::string> containers;

  Status Error(const std::string& path, const std::string& what, const YAML::Mark& mark) const {
    return Status::InvalidArgument(source + ": " + path + ": " + what + LineSuffix(mark));
  }

  // Walks `steps` from the root. found->node stays undefined when a step is
  // absent; a step through a scalar where a mapping or sequence is needed is an error.
  Status Find(const std::vector<PathStep>& steps, Located* found) const {
    YAML::Node current = root;
    YAML::Mark mark = YAML::Mark::null_mark();
    for (size_t i = 0; i < steps.size(); ++i) {
      if (!current.IsDefined() || current.IsNull()) {
        found->node.reset(YAML::Node(YAML::NodeType::Undefined));
        found->mark = YAML::Mark::null_mark();
        return Status::Ok();
      }
      YAML::Node next;
      if (steps[i].index) {
        if (!current.IsSequence()) {
          return Error(JoinPath(steps, i), "expected a sequence, got " + Describe(current), mark);
        }
        const YAML::Node& sequence = current;  // const: the non-const operator[] may insert
        if (*steps[i].index < sequence.size()) {
          next.reset(sequence[*steps[i].index]);
          mark = next.Mark();
        } else {
          next.reset(YAML::Node(YAML::NodeType::Undefined));
        }
      } else {
        if (!current.IsMap()) {
          const std::string parent = i == 0 ? "top level" : JoinPath(steps, i);
          return Error(parent, "expected a mapping, got " + Describe(current), mark);
        }
        next.reset(MapChild(current, steps[i].key, &mark));
      }
      current.reset(next);
    }
    found->node.reset(current);
    found->mark = mark;
    return Status::Ok();
  }

  template <typename T>
  Status Read(std::string_view path, T* out, bool required) {
    try {
      PPML_ASSIGN_OR_RETURN(std::vector<PathStep> steps, ParsePath(path));
      const std::string canonical = JoinPath(steps, steps.size());
      asked.insert(canonical);
      Located found;
      PPML_RETURN_IF_ERROR(Find(steps, &found));
      if (!found.node.IsDefined()) {
        if (!required) return Status::Ok();
        return Status::InvalidArgument(source + ": missing required key " + canonical);
      }
      if (found.node.IsNull()) {
        if (!required) return Status::Ok();
        return Error(canonical, "required key has no value", found.mark);
      }
      std::string error = Convert(found.node, out);
      if (!error.empty()) return Error(canonical, error, found.mark);
      return Status::Ok();
    } catch (const YAML::Exception& e) {
      return Status::Internal(source + ": " + std::string(path) + ": yaml-cpp: " + e.what());
    }
  }

  bool IsKnownContainer(const std::string& path) const {
    if (containers.count(path)) return true;
    for (const char* separator : {".", "["}) {
      const std::string prefix = path + separator;
      auto it = asked.lower_bound(prefix);
      if (it != asked.end() && it->compare(0, prefix.size(), prefix) == 0) return true;
    }
    return false;
  }

  // The asked-for key beside `path` closest in spelling, if close enough to be a typo.
  std::string Suggest(const std::string& path) const {
    const size_t cut = path.find_last_of('.');
    const std::string parent = cut == std::string::npos ? "" : path.substr(0, cut + 1);
    const std::string leaf = path.substr(parent.size());
    std::string best;
    size_t best_distance = std::max<size_t>(2, leaf.size() / 3) + 1;
    for (const std::set<std::string>* known : {&asked, &containers}) {
      for (const std::string& candidate : *known) {
        if (candidate.compare(0, parent.size(), parent) != 0) continue;
        std::string_view rest = std::string_view(candidate).substr(parent.size());
        rest = rest.substr(0, rest.find_first_of(".["));
        const size_t distance = EditDistance(leaf, rest);
        if (distance < best_distance) {
          best_distance = distance;
          best = parent + std::string(rest);
        }
      }
    }
    return best;
  }

  void CollectUnknown(const YAML::Node& node, const std::string& path, std::vector<std::string>* unknown) const {
    const auto visit = [&](const std::string& child_path, const YAML::Node& child, const YAML::Node& at) {
      if (asked.count(child_path)) return;
      if (IsKnownContainer(child_path)) {
        CollectUnknown(child, child_path, unknown);
        return;
      }
      std::string entry = "unknown key " + child_path;
      const std::string hint = Suggest(child_path);
      std::string details = LineSuffix(at);
      if (!hint.empty()) {
        details = details.empty() ? " (did you mean " + hint + "?)"
                                  : details.substr(0, details.size() - 1) + "; did you mean " + hint + "?)";
      }
      unknown->push_back(entry + details);
    };
    if (node.IsMap()) {
      for (const auto& entry : node) {
        const std::string key = entry.first.Scalar();
        visit(path.empty() ? key : path + "." + key, entry.second, entry.first);
      }
    } else if (node.IsSequence()) {
      for (size_t i = 0; i < node.size(); ++i) {
        visit(path + "[" + std::to_string(i) + "]", node[i], node[i]);
      }
    }
  }
};

ConfigReader::ConfigReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ConfigReader::ConfigReader(ConfigReader&&) noexcept = default;
ConfigReader& ConfigReader::operator=(ConfigReader&&) noexcept = default;
ConfigReader::~ConfigReader() = default;

Result<ConfigReader> ConfigReader::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    return Status::NotFound(path + ": cannot open config file: " + std::strerror(error));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::IoError(path + ": cannot read config file");
  return LoadString(text.str(), path);
}

Result<ConfigReader> ConfigReader::LoadString(std::string_view yaml, const std::string& source_name) {
  auto impl = std::make_unique<Impl>();
  impl->source = source_name;
  try {
    impl->root.reset(YAML::Load(std::string(yaml)));
  } catch (const YAML::ParserException& e) {
    return Status::InvalidArgument(source_name + ":" + std::to_string(e.mark.line + 1) + ":" +
                                   std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(source_name + ": cannot parse YAML: " + e.what());
  }
  try {
    const YAML::Node& root = impl->root;
    if (root.IsDefined() && !root.IsNull() && !root.IsMap()) {
      return Status::InvalidArgument(source_name + ": the top level must be a mapping of sections, got " +
                                     Describe(root));
    }
    PPML_RETURN_IF_ERROR(CheckKeys(root, "", source_name));
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(source_name + ": cannot parse YAML: " + e.what());
  }
  return ConfigReader(std::move(impl));
}

Status ConfigReader::Required(std::string_view path, bool* out) { return impl_->Read(path, out, true); }
Status ConfigReader::Required(std::string_view path, int* out) { return impl_->Read(path, out, true); }
Status ConfigReader::Required(std::string_view path, int64_t* out) { return impl_->Read(path, out, true); }
Status ConfigReader::Required(std::string_view path, double* out) { return impl_->Read(path, out, true); }
Status ConfigReader::Required(std::string_view path, std::string* out) { return impl_->Read(path, out, true); }
Status ConfigReader::Required(std::string_view path, std::vector<std::string>* out) {
  return impl_->Read(path, out, true);
}
Status ConfigReader::Required(std::string_view path, std::vector<int64_t>* out) {
  return impl_->Read(path, out, true);
}

Status ConfigReader::Optional(std::string_view path, bool* out) { return impl_->Read(path, out, false); }
Status ConfigReader::Optional(std::string_view path, int* out) { return impl_->Read(path, out, false); }
Status ConfigReader::Optional(std::string_view path, int64_t* out) { return impl_->Read(path, out, false); }
Status ConfigReader::Optional(std::string_view path, double* out) { return impl_->Read(path, out, false); }
Status ConfigReader::Optional(std::string_view path, std::string* out) { return impl_->Read(path, out, false); }
Status ConfigReader::Optional(std::string_view path, std::vector<std::string>* out) {
  return impl_->Read(path, out, false);
}
Status ConfigReader::Optional(std::string_view path, std::vector<int64_t>* out) {
  return impl_->Read(path, out, false);
}

namespace {
// `value` taken from the folder of `source` when relative.
std::string FromConfigFolder(const std::string& source, std::string value) {
  if (value.empty() || value.front() == '/') return value;
  const std::filesystem::path folder = std::filesystem::path(source).parent_path();
  return folder.empty() ? value : (folder / value).string();
}
}  // namespace

Status ConfigReader::RequiredPath(std::string_view path, std::string* out) {
  PPML_RETURN_IF_ERROR(Required(path, out));
  *out = FromConfigFolder(impl_->source, std::move(*out));
  return Status::Ok();
}

Status ConfigReader::OptionalPath(std::string_view path, std::string* out) {
  std::string value;
  PPML_RETURN_IF_ERROR(Optional(path, &value));
  if (!value.empty()) *out = FromConfigFolder(impl_->source, std::move(value));
  return Status::Ok();
}

bool ConfigReader::Has(std::string_view path) const {
  try {
    Result<std::vector<PathStep>> steps = ParsePath(path);
    if (!steps.ok()) return false;
    Located found;
    if (!impl_->Find(*steps, &found).ok()) return false;
    return found.node.IsDefined() && !found.node.IsNull();
  } catch (const YAML::Exception&) {
    return false;
  }
}

Result<size_t> ConfigReader::SequenceSize(std::string_view path) {
  try {
    PPML_ASSIGN_OR_RETURN(std::vector<PathStep> steps, ParsePath(path));
    const std::string canonical = JoinPath(steps, steps.size());
    impl_->containers.insert(canonical);
    Located found;
    PPML_RETURN_IF_ERROR(impl_->Find(steps, &found));
    if (!found.node.IsDefined() || found.node.IsNull()) return size_t{0};
    if (!found.node.IsSequence()) {
      return impl_->Error(canonical, "expected a sequence, got " + Describe(found.node), found.mark);
    }
    return found.node.size();
  } catch (const YAML::Exception& e) {
    return Status::Internal(impl_->source + ": " + std::string(path) + ": yaml-cpp: " + e.what());
  }
}

void ConfigReader::MarkRead(std::string_view path) {
  Result<std::vector<PathStep>> steps = ParsePath(path);
  impl_->asked.insert(steps.ok() ? JoinPath(*steps, steps->size()) : std::string(path));
}

Status ConfigReader::CheckNoUnknownKeys() const {
  std::vector<std::string> unknown;
  try {
    impl_->CollectUnknown(impl_->root, "", &unknown);
  } catch (const YAML::Exception& e) {
    return Status::Internal(impl_->source + ": yaml-cpp: " + e.what());
  }
  if (unknown.empty()) return Status::Ok();
  std::string message = impl_->source + ": ";
  for (size_t i = 0; i < unknown.size(); ++i) message += (i ? "; " : "") + unknown[i];
  return Status::InvalidArgument(message);
}

Status ConfigReader::Invalid(std::string_view path, std::string_view what) const {
  // Point at the key's line when the key is in the file; a check may also be
  // about a default that no line holds.
  YAML::Mark mark = YAML::Mark::null_mark();
  try {
    Result<std::vector<PathStep>> steps = ParsePath(path);
    Located found;
    if (steps.ok() && impl_->Find(*steps, &found).ok() && found.node.IsDefined()) mark = found.mark;
  } catch (const YAML::Exception&) {
    mark = YAML::Mark::null_mark();
  }
  return Status::InvalidArgument(impl_->source + ": " + std::string(path) + ": " + std::string(what) +
                                 LineSuffix(mark));
}

Status ConfigReader::CheckPositiveInteger(std::string_view path, int64_t value) const {
  if (value > 0) return Status::Ok();
  return Invalid(path, "must be a positive integer, got " + std::to_string(value));
}

Status ConfigReader::CheckPositiveReal(std::string_view path, double value) const {
  if (value > 0) return Status::Ok();
  return Invalid(path, "must be positive, got " + FormatNumber(value));
}

Status ConfigReader::CheckNonNegativeInteger(std::string_view path, int64_t value) const {
  if (value >= 0) return Status::Ok();
  return Invalid(path, "must not be negative, got " + std::to_string(value));
}

Status ConfigReader::CheckInRangeInteger(std::string_view path, int64_t value, int64_t min, int64_t max) const {
  if (value >= min && value <= max) return Status::Ok();
  return Invalid(path, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                           std::to_string(value));
}

Status ConfigReader::CheckInRangeReal(std::string_view path, double value, double min, double max) const {
  if (value >= min && value <= max) return Status::Ok();
  return Invalid(path, "must be between " + FormatNumber(min) + " and " + FormatNumber(max) + ", got " +
                           FormatNumber(value));
}

Status ConfigReader::CheckOneOf(std::string_view path, const std::string& value,
                                std::initializer_list<std::string_view> allowed) const {
  std::string choices;
  for (std::string_view choice : allowed) {
    if (value == choice) return Status::Ok();
    choices += (choices.empty() ? "" : ", ") + std::string(choice);
  }
  return Invalid(path, "must be one of " + choices + ", got \"" + value + "\"");
}

const std::string& ConfigReader::source_name() const { return impl_->source; }

}  // namespace ppml
