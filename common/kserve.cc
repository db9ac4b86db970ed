#include "common/kserve.h"

#include <simdjson.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstring>
#include <limits>
#include <set>
#include <type_traits>

#include "common/json_line.h"

namespace ppml::kserve {

// Binary tensor data is little-endian on the wire and copied as is.
static_assert(std::endian::native == std::endian::little, "binary tensor data needs a little-endian host");

bool InferRequest::WantsBinary(std::string_view name) const {
  for (const RequestedOutput& output : outputs) {
    if (output.name == name) return output.binary;
  }
  return binary_output;
}

namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

// ---- Datatypes ------------------------------------------------------------------

struct DatatypeEntry {
  std::string_view name;
  DataType type;
};
constexpr DatatypeEntry kDatatypes[] = {
    {"FP32", DataType::kF32}, {"UINT8", DataType::kU8}, {"INT8", DataType::kS8},
    {"INT32", DataType::kS32}, {"INT64", DataType::kS64},
};
// Protocol datatypes we know but do not handle: Unsupported, not InvalidArgument.
constexpr std::string_view kUnsupportedDatatypes[] = {"BOOL", "UINT16", "UINT32", "UINT64", "INT16",
                                                      "FP16", "BF16",   "FP64",   "BYTES"};

}  // namespace

std::string_view DatatypeName(DataType type) {
  for (const DatatypeEntry& entry : kDatatypes) {
    if (entry.type == type) return entry.name;
  }
  return "?";
}

namespace {

// ---- Errors ---------------------------------------------------------------------

// Every message starts with where it happened: `inference request: input "x": shape`.
Status Invalid(std::string_view where, std::string_view why) {
  return Status::InvalidArgument(std::string(where) + ": " + std::string(why));
}

// ---- Reading JSON values --------------------------------------------------------

// The value of `key` in `o`, or nullopt when absent.
std::optional<element> Field(object o, std::string_view key) {
  element value;
  if (o[key].get(value) != simdjson::SUCCESS) return std::nullopt;
  return value;
}

// `e` as an object whose keys are all distinct: two readers that resolve a
// duplicate key differently (first wins, last wins) would see two requests.
Result<object> UniqueObject(element e, std::string_view where) {
  object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) return Invalid(where, "expected a JSON object");
  std::set<std::string_view> keys;
  for (auto field : o) {
    if (!keys.insert(field.key).second) return Invalid(where, "duplicate key " + JsonQuote(field.key));
  }
  return o;
}

Result<std::optional<std::string>> OptionalString(object o, std::string_view key, std::string_view where) {
  std::optional<element> value = Field(o, key);
  if (!value) return std::optional<std::string>();
  std::string_view text;
  if (value->get_string().get(text) != simdjson::SUCCESS) return Invalid(where, JsonQuote(key) + " is not a string");
  return std::optional<std::string>(std::string(text));
}

Result<std::optional<bool>> OptionalBool(object o, std::string_view key, std::string_view where) {
  std::optional<element> value = Field(o, key);
  if (!value) return std::optional<bool>();
  bool flag = false;
  if (value->get_bool().get(flag) != simdjson::SUCCESS) return Invalid(where, JsonQuote(key) + " is not a boolean");
  return std::optional<bool>(flag);
}

// The optional "parameters" object of `o`, its keys checked to be distinct.
Result<std::optional<object>> OptionalParameters(object o, std::string_view where) {
  std::optional<element> value = Field(o, "parameters");
  if (!value) return std::optional<object>();
  PPML_ASSIGN_OR_RETURN(object parameters, UniqueObject(*value, std::string(where) + ": parameters"));
  return std::optional<object>(parameters);
}

// Shared memory and classification are protocol extensions this codec does
// not implement; say so rather than silently returning plain tensors.
Status RejectUnsupportedParameters(object parameters, std::string_view where) {
  for (auto field : parameters) {
    if (field.key.starts_with("shared_memory_region") || field.key == "classification") {
      return Status::Unsupported(std::string(where) + ": parameters." + std::string(field.key) +
                                 " is not supported");
    }
  }
  return Status::Ok();
}

// A body split at the Inference-Header-Content-Length: the JSON, then the
// binary section (empty when there is no header).
struct BodyParts {
  std::span<const uint8_t> json;
  std::span<const uint8_t> binary;
  std::optional<size_t> binary_length;  // binary.size(), absent without the header
};

Result<BodyLayout> LayOut(size_t body_size, std::optional<size_t> json_length, std::string_view where) {
  if (!json_length) return BodyLayout{body_size, std::nullopt};
  if (*json_length > body_size) {
    return Invalid(where, std::string(kHeaderLengthHeader) + " is " + std::to_string(*json_length) +
                              " but the body has only " + std::to_string(body_size) + " bytes");
  }
  return BodyLayout{*json_length, body_size - *json_length};
}

Result<BodyParts> SplitBody(std::span<const uint8_t> body, std::optional<size_t> json_length, std::string_view where) {
  PPML_ASSIGN_OR_RETURN(BodyLayout layout, LayOut(body.size(), json_length, where));
  return BodyParts{body.first(layout.json_length), body.subspan(layout.json_length), layout.binary_length};
}

// The parsed JSON of a body: a top-level object whose keys are all distinct.
struct ParsedJson {
  simdjson::dom::parser parser;  // owns the document `root` points into
  object root;
};

Status ParseJsonObject(std::span<const uint8_t> json, std::string_view where, ParsedJson& parsed) {
  // simdjson reads in SIMD blocks past the end: it needs its own padded copy.
  simdjson::padded_string padded(reinterpret_cast<const char*>(json.data()), json.size());
  element root;
  if (auto error = parsed.parser.parse(padded).get(root); error != simdjson::SUCCESS) {
    return Invalid(where, std::string("not valid JSON: ") + simdjson::error_message(error));
  }
  PPML_ASSIGN_OR_RETURN(parsed.root, UniqueObject(root, where));
  return Status::Ok();
}

// ---- Tensors --------------------------------------------------------------------

// A tensor being read from its JSON: filled from "data" at once; a binary
// one is filled (FillTensors) once every tensor's size is known and checked.
struct PendingTensor {
  std::string name;
  std::string where;  // `inference request: input "x"`
  DataType type = DataType::kF32;
  Shape shape;
  int64_t count = 0;
  std::optional<size_t> binary_size;  // parameters.binary_data_size
  Tensor tensor;                      // filled from "data" when binary_size is empty
};

Result<DataType> ParseDatatype(object o, std::string_view where) {
  std::optional<element> value = Field(o, "datatype");
  if (!value) return Invalid(where, "missing \"datatype\"");
  std::string_view name;
  if (value->get_string().get(name) != simdjson::SUCCESS) return Invalid(where, "datatype: not a string");
  for (const DatatypeEntry& entry : kDatatypes) {
    if (entry.name == name) return entry.type;
  }
  if (std::find(std::begin(kUnsupportedDatatypes), std::end(kUnsupportedDatatypes), name) !=
      std::end(kUnsupportedDatatypes)) {
    return Status::Unsupported(std::string(where) + ": datatype " + std::string(name) +
                               " is not supported (FP32, UINT8, INT8, INT32, INT64 are)");
  }
  return Invalid(where, "datatype: unknown datatype " + JsonQuote(name));
}

// Reads "shape" and checks, before anything is allocated, that the tensor
// fits what is left of the body's kMaxTensorBytes.
Status ParseShape(object o, PendingTensor& t, size_t& budget) {
  std::optional<element> value = Field(o, "shape");
  if (!value) return Invalid(t.where, "missing \"shape\"");
  array dims;
  if (value->get_array().get(dims) != simdjson::SUCCESS) return Invalid(t.where, "shape: not an array");
  if (dims.size() > kMaxRank) {
    return Invalid(t.where, "shape: rank " + std::to_string(dims.size()) + " exceeds " + std::to_string(kMaxRank));
  }
  bool has_zero = false;
  for (element dim : dims) {
    int64_t d = 0;
    if (dim.get_int64().get(d) != simdjson::SUCCESS) return Invalid(t.where, "shape: dimensions must be integers");
    if (d < 0) return Invalid(t.where, "shape: dimension " + std::to_string(d) + " is negative");
    has_zero |= d == 0;
    t.shape.push_back(d);
  }
  // Multiply with the budget as the bound, so no product can overflow.
  const size_t max_elements = budget / ElementSize(t.type);
  size_t count = 1;
  for (int64_t d : t.shape) {
    if (has_zero) break;
    if (static_cast<uint64_t>(d) > max_elements / count) {
      return Invalid(t.where, "shape " + ShapeToString(t.shape) + " of " + std::string(DatatypeName(t.type)) +
                                  " is too large: the tensors of one body may hold " +
                                  std::to_string(kMaxTensorBytes >> 20) + " MiB in all");
    }
    count *= static_cast<size_t>(d);
  }
  t.count = has_zero ? 0 : static_cast<int64_t>(count);
  budget -= static_cast<size_t>(t.count) * ElementSize(t.type);
  return Status::Ok();
}

// Checks that "data" is laid out as the shape says before the tensor is
// allocated: flat with exactly `count` elements, or nested to the rank with
// every level as long as its dimension. Returns whether it is nested.
Result<bool> CheckLayout(array data, const PendingTensor& t) {
  const auto nested_level = [&](auto& self, array level, size_t depth) -> Status {
    if (level.size() != static_cast<size_t>(t.shape[depth])) {
      return Invalid(t.where, "data: nested level " + std::to_string(depth) + " has " + std::to_string(level.size()) +
                                  " elements, shape " + ShapeToString(t.shape) + " says " +
                                  std::to_string(t.shape[depth]));
    }
    if (depth + 1 == t.shape.size()) return Status::Ok();  // numbers; checked when they are read
    for (element e : level) {
      array inner;
      if (e.get_array().get(inner) != simdjson::SUCCESS) {
        return Invalid(t.where, "data: nested less deeply than shape " + ShapeToString(t.shape));
      }
      PPML_RETURN_IF_ERROR(self(self, inner, depth + 1));
    }
    return Status::Ok();
  };
  const bool nested = data.size() > 0 && (*data.begin()).is_array();
  if (!nested || t.shape.size() <= 1) {
    if (data.size() != static_cast<size_t>(t.count)) {
      return Invalid(t.where, "data: " + std::to_string(data.size()) + " elements, shape " + ShapeToString(t.shape) +
                                  " needs " + std::to_string(t.count));
    }
    return false;
  }
  PPML_RETURN_IF_ERROR(nested_level(nested_level, data, 0));
  return true;
}

// Why a JSON value that is not a number cannot be an element.
std::string NotANumber(element e) {
  return e.is_array() ? "an array where a number belongs (nested deeper than the shape)" : "not a number";
}

// One JSON number as an FP32 element, or why it cannot be one. Integers
// convert straight to float: through double they could round twice.
std::optional<std::string> ToElement(element e, float& out) {
  switch (e.type()) {
    case element_type::INT64: out = static_cast<float>(e.get_int64().value_unsafe()); return std::nullopt;
    case element_type::UINT64: out = static_cast<float>(e.get_uint64().value_unsafe()); return std::nullopt;
    case element_type::DOUBLE: {
      // Decimal -> double -> float rounds twice; AppendFloat writes floats
      // so that this gives them back exactly.
      const double v = e.get_double().value_unsafe();
      const float f = static_cast<float>(v);
      if (!std::isfinite(f)) return JsonNumber(v) + " is out of range for FP32";
      out = f;
      return std::nullopt;
    }
    default: return NotANumber(e);
  }
}

// One JSON integer literal as an element of integer type T, or why it cannot be one.
template <std::integral T>
std::optional<std::string> ToElement(element e, T& out) {
  const auto out_of_range = [](const std::string& v) {
    return v + " is out of range for " + std::string(DatatypeName(DataTypeOf<T>::value));
  };
  switch (e.type()) {
    case element_type::INT64: {
      const int64_t v = e.get_int64().value_unsafe();
      if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) return out_of_range(std::to_string(v));
      out = static_cast<T>(v);
      return std::nullopt;
    }
    case element_type::UINT64:  // only integers above INT64_MAX come as UINT64
      return out_of_range(std::to_string(e.get_uint64().value_unsafe()));
    case element_type::DOUBLE:
      return JsonNumber(e.get_double().value_unsafe()) + " is not an integer literal (" +
             std::string(DatatypeName(DataTypeOf<T>::value)) + ")";
    default: return NotANumber(e);
  }
}

// Writes the numbers of `data` (laid out as CheckLayout found) into out[0, count).
template <typename T>
Status FillFromJson(array data, bool nested, const PendingTensor& t, T* out) {
  int64_t index = 0;
  const auto read_numbers = [&](array numbers) -> Status {
    for (element e : numbers) {
      if (std::optional<std::string> why = ToElement(e, out[index])) {
        return Invalid(t.where, "data element " + std::to_string(index) + ": " + *why);
      }
      ++index;
    }
    return Status::Ok();
  };
  const auto walk = [&](auto& self, array level, size_t depth) -> Status {
    if (depth + 1 >= t.shape.size()) return read_numbers(level);
    for (element e : level) {
      array inner;
      if (e.get_array().get(inner) != simdjson::SUCCESS) return Status::Internal("data layout changed");
      PPML_RETURN_IF_ERROR(self(self, inner, depth + 1));
    }
    return Status::Ok();
  };
  return nested ? walk(walk, data, 0) : read_numbers(data);
}

Status ReadJsonData(element value, PendingTensor& t) {
  array data;
  if (value.get_array().get(data) != simdjson::SUCCESS) return Invalid(t.where, "data: not an array");
  PPML_ASSIGN_OR_RETURN(bool nested, CheckLayout(data, t));
  t.tensor = Tensor(t.type, t.shape);
  switch (t.type) {
    case DataType::kF32: return FillFromJson(data, nested, t, t.tensor.data<float>());
    case DataType::kU8: return FillFromJson(data, nested, t, t.tensor.data<uint8_t>());
    case DataType::kS8: return FillFromJson(data, nested, t, t.tensor.data<int8_t>());
    case DataType::kS32: return FillFromJson(data, nested, t, t.tensor.data<int32_t>());
    case DataType::kS64: return FillFromJson(data, nested, t, t.tensor.data<int64_t>());
  }
  return Status::Internal("unknown DataType");
}

// Reads one tensor object ({"name","shape","datatype","parameters","data"}),
// the i-th of the "inputs" (`kind` "input") or "outputs" (`kind` "output").
Result<PendingTensor> ParseTensor(element value, std::string_view body_where, std::string_view kind, size_t i,
                                  size_t& budget) {
  PendingTensor t;
  t.where = std::string(body_where) + ": " + std::string(kind) + "s[" + std::to_string(i) + "]";
  PPML_ASSIGN_OR_RETURN(object o, UniqueObject(value, t.where));
  std::string_view name;
  if (std::optional<element> e = Field(o, "name"); !e) {
    return Invalid(t.where, "missing \"name\"");
  } else if (e->get_string().get(name) != simdjson::SUCCESS || name.empty()) {
    return Invalid(t.where, "name: not a non-empty string");
  }
  t.name = std::string(name);
  t.where = std::string(body_where) + ": " + std::string(kind) + " " + JsonQuote(name);
  PPML_ASSIGN_OR_RETURN(t.type, ParseDatatype(o, t.where));
  PPML_RETURN_IF_ERROR(ParseShape(o, t, budget));

  PPML_ASSIGN_OR_RETURN(std::optional<object> parameters, OptionalParameters(o, t.where));
  if (parameters) {
    PPML_RETURN_IF_ERROR(RejectUnsupportedParameters(*parameters, t.where));
    if (std::optional<element> size = Field(*parameters, "binary_data_size")) {
      int64_t n = 0;
      if (size->get_int64().get(n) != simdjson::SUCCESS || n < 0) {
        return Invalid(t.where, "parameters.binary_data_size: not a non-negative integer");
      }
      const size_t expected = static_cast<size_t>(t.count) * ElementSize(t.type);
      if (static_cast<uint64_t>(n) != expected) {
        return Invalid(t.where, "parameters.binary_data_size is " + std::to_string(n) + " but shape " +
                                    ShapeToString(t.shape) + " of " + std::string(DatatypeName(t.type)) + " needs " +
                                    std::to_string(expected) + " bytes");
      }
      t.binary_size = expected;
    }
  }
  std::optional<element> data = Field(o, "data");
  if (t.binary_size) {
    if (data) return Invalid(t.where, "has both \"data\" and parameters.binary_data_size");
    return t;
  }
  if (!data) return Invalid(t.where, "missing \"data\" (and no parameters.binary_data_size)");
  PPML_RETURN_IF_ERROR(ReadJsonData(*data, t));
  return t;
}

// The tensors of the array `key` as their JSON describes them (JSON data
// already read, binary data not yet), and the bytes their binary data takes.
// `binary_length` is the binary section's size, absent without the
// Inference-Header-Content-Length header; it must equal those bytes.
// Request inputs and response outputs alike: an InputHeader describes either.
struct TensorHeaders {
  std::vector<InputHeader> tensors;
  size_t binary_size = 0;
};

Result<TensorHeaders> ParseTensorHeaders(object root, std::string_view key, std::string_view kind,
                                         std::optional<size_t> binary_length, bool allow_empty,
                                         std::string_view where) {
  std::optional<element> value = Field(root, key);
  if (!value) return Invalid(where, "missing " + JsonQuote(key));
  array items;
  if (value->get_array().get(items) != simdjson::SUCCESS) return Invalid(where, std::string(key) + ": not an array");
  if (items.size() == 0 && !allow_empty) return Invalid(where, std::string(key) + ": empty");

  TensorHeaders headers;
  headers.tensors.reserve(items.size());
  std::set<std::string, std::less<>> names;
  size_t budget = kMaxTensorBytes;
  for (element item : items) {
    PPML_ASSIGN_OR_RETURN(PendingTensor t, ParseTensor(item, where, kind, headers.tensors.size(), budget));
    if (!names.insert(t.name).second) return Invalid(t.where, "duplicate " + std::string(kind) + " name");
    if (t.binary_size) {
      if (!binary_length) {
        return Invalid(t.where, "parameters.binary_data_size needs the " + std::string(kHeaderLengthHeader) +
                                    " header");
      }
      headers.binary_size += *t.binary_size;  // no overflow: bounded by kMaxTensorBytes
    }
    headers.tensors.push_back(
        {std::move(t.name), t.type, std::move(t.shape), t.binary_size, std::move(t.tensor)});
  }
  const size_t binary = binary_length.value_or(0);
  if (binary != headers.binary_size) {
    return Invalid(where, "binary data after the JSON is " + std::to_string(binary) +
                              " bytes, the binary_data_size parameters add up to " +
                              std::to_string(headers.binary_size));
  }
  return headers;
}

// The tensors of `headers`: JSON data moved, binary data copied from
// `binary`, which holds exactly their bytes, back to back.
Result<std::vector<NamedTensor>> FillTensors(std::vector<InputHeader> headers, std::span<const uint8_t> binary) {
  std::vector<NamedTensor> tensors;
  tensors.reserve(headers.size());
  size_t offset = 0;
  for (InputHeader& h : headers) {
    if (h.binary_size) {
      if (*h.binary_size > binary.size() - offset) return Status::Internal("binary section shorter than its tensors");
      h.data = Tensor(h.dtype, h.shape);
      if (*h.binary_size) std::memcpy(h.data.raw_data(), binary.data() + offset, *h.binary_size);
      offset += *h.binary_size;
    }
    tensors.push_back({std::move(h.name), std::move(h.data)});
  }
  if (offset != binary.size()) return Status::Internal("binary section longer than its tensors");
  return tensors;
}

// ---- Writing JSON ---------------------------------------------------------------

template <typename T>
void AppendNumber(std::string& json, T value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);  // shortest exact form
  json.append(buffer, result.ptr);
}

// The shortest decimal of a float reads back as that float when parsed as a
// float, but the JSON parser rounds to a double first, then we round to
// float. For one float pair (+-7.038531e-26, found by checking every finite float)
// that double rounding lands one ulp off; those get the double's shortest
// form, which the double parse reproduces exactly.
void AppendFloat(std::string& json, float value) {
  if (value == 0 && std::signbit(value)) {
    json += "-0.0";  // "-0" would read back as the integer 0 and lose the sign
    return;
  }
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  double reread = 0;
  std::from_chars(buffer, result.ptr, reread);
  if (static_cast<float>(reread) == value) {
    json.append(buffer, result.ptr);
  } else {
    AppendNumber(json, static_cast<double>(value));
  }
}

template <typename T>
Status AppendValues(std::string& json, const NamedTensor& t, std::string_view kind) {
  std::span<const T> values = t.tensor.values<T>();
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) json += ',';
    if constexpr (std::is_floating_point_v<T>) {
      if (!std::isfinite(values[i])) {
        return Status::InvalidArgument(std::string(kind) + " " + JsonQuote(t.name) + ": element " + std::to_string(i) +
                                       " is " + std::to_string(values[i]) +
                                       ", which JSON cannot hold; ask for it as binary data");
      }
      AppendFloat(json, values[i]);
    } else {
      AppendNumber(json, static_cast<int64_t>(values[i]));  // int8/uint8 as numbers, not chars
    }
  }
  return Status::Ok();
}

// {"name":..,"datatype":..,"shape":[..],"data":[..]}, or with binary data
// "parameters":{"binary_data_size":N} in place of "data" and the bytes
// appended to `binary`.
Status AppendTensor(std::string& json, std::vector<uint8_t>& binary, const NamedTensor& t, bool as_binary,
                    std::string_view kind) {
  json += "{\"name\":" + JsonQuote(t.name) + ",\"datatype\":\"" + std::string(DatatypeName(t.tensor.dtype())) +
          "\",\"shape\":[";
  for (size_t i = 0; i < t.tensor.shape().size(); ++i) {
    if (i) json += ',';
    AppendNumber(json, t.tensor.shape()[i]);
  }
  json += ']';
  if (as_binary) {
    const std::span<const std::byte> bytes = t.tensor.bytes();
    json += ",\"parameters\":{\"binary_data_size\":" + std::to_string(bytes.size()) + "}}";
    const auto* first = reinterpret_cast<const uint8_t*>(bytes.data());
    binary.insert(binary.end(), first, first + bytes.size());
    return Status::Ok();
  }
  json += ",\"data\":[";
  switch (t.tensor.dtype()) {
    case DataType::kF32: PPML_RETURN_IF_ERROR(AppendValues<float>(json, t, kind)); break;
    case DataType::kU8: PPML_RETURN_IF_ERROR(AppendValues<uint8_t>(json, t, kind)); break;
    case DataType::kS8: PPML_RETURN_IF_ERROR(AppendValues<int8_t>(json, t, kind)); break;
    case DataType::kS32: PPML_RETURN_IF_ERROR(AppendValues<int32_t>(json, t, kind)); break;
    case DataType::kS64: PPML_RETURN_IF_ERROR(AppendValues<int64_t>(json, t, kind)); break;
  }
  json += "]}";
  return Status::Ok();
}

// JSON then binary data; the header length is set when any tensor is binary.
EncodedBody Assemble(const std::string& json, const std::vector<uint8_t>& binary, bool any_binary) {
  EncodedBody encoded;
  encoded.body.reserve(json.size() + binary.size());
  encoded.body.assign(json.begin(), json.end());
  encoded.body.insert(encoded.body.end(), binary.begin(), binary.end());
  if (any_binary) encoded.json_length = json.size();
  return encoded;
}

constexpr std::string_view kRequestWhere = "inference request";
constexpr std::string_view kResponseWhere = "inference response";

}  // namespace

// ---- Requests -------------------------------------------------------------------

Result<InferRequestHeader> ParseInferRequestHeader(std::span<const uint8_t> json,
                                                   std::optional<size_t> binary_length) {
  const std::string_view where = kRequestWhere;
  ParsedJson parsed;
  PPML_RETURN_IF_ERROR(ParseJsonObject(json, where, parsed));
  InferRequestHeader header;
  InferRequest& request = header.request;
  PPML_ASSIGN_OR_RETURN(std::optional<std::string> id, OptionalString(parsed.root, "id", where));
  request.id = id.value_or("");
  PPML_ASSIGN_OR_RETURN(std::optional<object> parameters, OptionalParameters(parsed.root, where));
  if (parameters) {
    PPML_RETURN_IF_ERROR(RejectUnsupportedParameters(*parameters, where));
    PPML_ASSIGN_OR_RETURN(std::optional<bool> binary_output,
                          OptionalBool(*parameters, "binary_data_output", std::string(where) + ": parameters"));
    request.binary_output = binary_output.value_or(false);
  }
  PPML_ASSIGN_OR_RETURN(TensorHeaders inputs, ParseTensorHeaders(parsed.root, "inputs", "input", binary_length,
                                                                 /*allow_empty=*/false, where));
  header.inputs = std::move(inputs.tensors);
  header.binary_size = inputs.binary_size;

  std::optional<element> outputs = Field(parsed.root, "outputs");
  if (!outputs) return header;
  array items;
  if (outputs->get_array().get(items) != simdjson::SUCCESS) return Invalid(where, "outputs: not an array");
  std::set<std::string, std::less<>> names;
  for (element item : items) {
    const std::string item_where = std::string(where) + ": outputs[" + std::to_string(request.outputs.size()) + "]";
    PPML_ASSIGN_OR_RETURN(object o, UniqueObject(item, item_where));
    PPML_ASSIGN_OR_RETURN(std::optional<std::string> name, OptionalString(o, "name", item_where));
    if (!name || name->empty()) return Invalid(item_where, "missing or empty \"name\"");
    const std::string output_where = std::string(where) + ": output " + JsonQuote(*name);
    if (!names.insert(*name).second) return Invalid(output_where, "requested twice");
    RequestedOutput output{*name, request.binary_output};
    PPML_ASSIGN_OR_RETURN(std::optional<object> output_parameters, OptionalParameters(o, output_where));
    if (output_parameters) {
      PPML_RETURN_IF_ERROR(RejectUnsupportedParameters(*output_parameters, output_where));
      PPML_ASSIGN_OR_RETURN(std::optional<bool> binary,
                            OptionalBool(*output_parameters, "binary_data", output_where + ": parameters"));
      output.binary = binary.value_or(request.binary_output);
    }
    request.outputs.push_back(std::move(output));
  }
  return header;
}

Result<BodyLayout> LayOutRequestBody(size_t body_size, std::optional<size_t> json_length) {
  return LayOut(body_size, json_length, kRequestWhere);
}

Result<InferRequest> ParseInferRequest(std::span<const uint8_t> body, std::optional<size_t> json_length) {
  PPML_ASSIGN_OR_RETURN(BodyParts parts, SplitBody(body, json_length, kRequestWhere));
  PPML_ASSIGN_OR_RETURN(InferRequestHeader header, ParseInferRequestHeader(parts.json, parts.binary_length));
  InferRequest request = std::move(header.request);
  PPML_ASSIGN_OR_RETURN(request.inputs, FillTensors(std::move(header.inputs), parts.binary));
  return request;
}

Result<EncodedBody> EncodeInferRequest(const InferRequest& request, bool binary_inputs) {
  std::string json = "{";
  if (!request.id.empty()) json += "\"id\":" + JsonQuote(request.id) + ",";
  if (request.binary_output) json += "\"parameters\":{\"binary_data_output\":true},";
  json += "\"inputs\":[";
  std::vector<uint8_t> binary;
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    if (i) json += ',';
    PPML_RETURN_IF_ERROR(AppendTensor(json, binary, request.inputs[i], binary_inputs, "input"));
  }
  json += ']';
  if (!request.outputs.empty()) {
    json += ",\"outputs\":[";
    for (size_t i = 0; i < request.outputs.size(); ++i) {
      const RequestedOutput& output = request.outputs[i];
      if (i) json += ',';
      json += "{\"name\":" + JsonQuote(output.name);
      // Only a choice that differs from binary_data_output needs saying.
      if (output.binary != request.binary_output) {
        json += std::string(",\"parameters\":{\"binary_data\":") + (output.binary ? "true" : "false") + "}";
      }
      json += '}';
    }
    json += ']';
  }
  json += '}';
  return Assemble(json, binary, binary_inputs && !request.inputs.empty());
}

// ---- Responses ------------------------------------------------------------------

Result<EncodedBody> EncodeInferResponse(const InferResponse& response, const InferRequest& request) {
  std::string json = "{\"model_name\":" + JsonQuote(response.model_name);
  if (!response.model_version.empty()) json += ",\"model_version\":" + JsonQuote(response.model_version);
  if (!response.id.empty()) json += ",\"id\":" + JsonQuote(response.id);
  json += ",\"outputs\":[";
  std::vector<uint8_t> binary;
  bool any_binary = false;
  for (size_t i = 0; i < response.outputs.size(); ++i) {
    if (i) json += ',';
    const bool as_binary = request.WantsBinary(response.outputs[i].name);
    any_binary |= as_binary;
    PPML_RETURN_IF_ERROR(AppendTensor(json, binary, response.outputs[i], as_binary, "output"));
  }
  json += "]}";
  return Assemble(json, binary, any_binary);
}

Result<InferResponse> ParseInferResponse(std::span<const uint8_t> body, std::optional<size_t> json_length) {
  const std::string_view where = kResponseWhere;
  PPML_ASSIGN_OR_RETURN(BodyParts parts, SplitBody(body, json_length, where));
  ParsedJson parsed;
  PPML_RETURN_IF_ERROR(ParseJsonObject(parts.json, where, parsed));
  PPML_ASSIGN_OR_RETURN(std::optional<std::string> error, OptionalString(parsed.root, "error", where));
  if (error) return Invalid(where, "server answered an error: " + *error);

  InferResponse response;
  PPML_ASSIGN_OR_RETURN(std::optional<std::string> model_name, OptionalString(parsed.root, "model_name", where));
  if (!model_name) return Invalid(where, "missing \"model_name\"");
  response.model_name = std::move(*model_name);
  PPML_ASSIGN_OR_RETURN(std::optional<std::string> version, OptionalString(parsed.root, "model_version", where));
  response.model_version = version.value_or("");
  PPML_ASSIGN_OR_RETURN(std::optional<std::string> id, OptionalString(parsed.root, "id", where));
  response.id = id.value_or("");
  PPML_ASSIGN_OR_RETURN(TensorHeaders outputs, ParseTensorHeaders(parsed.root, "outputs", "output",
                                                                  parts.binary_length, /*allow_empty=*/true, where));
  PPML_ASSIGN_OR_RETURN(response.outputs, FillTensors(std::move(outputs.tensors), parts.binary));
  return response;
}

std::string EncodeModelMetadata(const ModelMetadata& metadata) {
  auto tensors = [](const std::vector<TensorMetadata>& list) {
    std::string json = "[";
    for (size_t i = 0; i < list.size(); ++i) {
      if (i > 0) json += ",";
      json += "{\"name\":" + JsonQuote(list[i].name) + ",\"datatype\":" +
              JsonQuote(DatatypeName(list[i].dtype)) + ",\"shape\":[";
      for (size_t d = 0; d < list[i].shape.size(); ++d) {
        if (d > 0) json += ",";
        json += std::to_string(list[i].shape[d]);
      }
      json += "]}";
    }
    return json + "]";
  };
  return "{\"name\":" + JsonQuote(metadata.name) + ",\"versions\":[],\"platform\":" + JsonQuote(metadata.platform) +
         ",\"inputs\":" + tensors(metadata.inputs) + ",\"outputs\":" + tensors(metadata.outputs) + "}";
}

std::string ErrorJson(std::string_view message) { return JsonLine().Add("error", message).str(); }

}  // namespace ppml::kserve
