#include "enclave_sim/package.h"

#include "common/file_io.h"

#include <onnx/onnx_pb.h>
#include <openssl/crypto.h>
#include <simdjson.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "common/hpke.h"
#include "common/json_line.h"

namespace ppml::enclave {
namespace {

static_assert(std::endian::native == std::endian::little,
              "chunks hold little-endian raw bytes (ONNX raw_data); typed fields are copied as they are in memory");

inline constexpr std::string_view kBindingLabel = "ppml-model-package-v1";
inline constexpr size_t kWrappedKeyLength = kModelKeyLength + crypto::kAesGcmTagLength;  // 48

ByteSpan AsBytes(std::string_view s) { return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

// Big-endian integers and length-prefixed strings: the byte strings that are
// authenticated (ChunkAad) or hashed (ManifestBinding), drawn in package.h.
class CanonicalWriter {
 public:
  CanonicalWriter& Uint(uint64_t value, int width) {
    for (int i = width - 1; i >= 0; --i) out_.push_back(static_cast<uint8_t>(value >> (8 * i)));
    return *this;
  }
  CanonicalWriter& Raw(ByteSpan bytes) {
    out_.insert(out_.end(), bytes.begin(), bytes.end());
    return *this;
  }
  CanonicalWriter& Str(std::string_view text, int length_width) {
    Uint(text.size(), length_width);
    return Raw(AsBytes(text));
  }
  Bytes Take() { return std::move(out_); }

 private:
  Bytes out_;
};

Bytes ChunkAad(const PackageChunk& chunk) {
  CanonicalWriter aad;
  aad.Raw(AsBytes(kChunkAadLabel)).Uint(chunk.index, 4).Str(chunk.layer, 2).Str(chunk.tensor, 2);
  return aad.Take();
}

// The HPKE aad of the key wrap: SHA-256 of every manifest field but the wrap.
Result<Bytes> ManifestBindingDigest(const PackageManifest& manifest) {
  CanonicalWriter binding;
  binding.Str(kBindingLabel, 4).Uint(manifest.version, 4).Str(manifest.model_name, 4);
  binding.Raw(manifest.source_sha256).Raw(manifest.enclave_public_key).Uint(manifest.chunks.size(), 4);
  // Bound only when set, so packages without the flag keep their binding;
  // removing it from a confidential package breaks the key unwrap.
  if (manifest.confidential) binding.Str("confidential", 4);
  for (const PackageChunk& chunk : manifest.chunks) {
    binding.Uint(chunk.index, 4).Uint(static_cast<uint8_t>(chunk.kind), 1);
    binding.Str(chunk.layer, 4).Str(chunk.tensor, 4).Str(chunk.dtype, 4).Uint(chunk.shape.size(), 4);
    for (int64_t dim : chunk.shape) binding.Uint(static_cast<uint64_t>(dim), 8);
    binding.Uint(chunk.offset, 8).Uint(chunk.length, 8).Raw(chunk.sha256);
  }
  return crypto::Sha256(binding.Take());
}

Sha256Digest ToDigest(ByteSpan bytes) {
  Sha256Digest digest{};
  std::copy_n(bytes.begin(), digest.size(), digest.begin());
  return digest;
}

// ---- Element types -------------------------------------------------------------

// Which typed TensorProto field ONNX stores an element type in when raw_data
// is absent.
enum class TypedField { kFloat, kDouble, kInt32, kInt64, kUint64 };

struct ElementType {
  int onnx;
  std::string_view name;  // the manifest's dtype
  size_t size;            // bytes per element
  TypedField field;
  int64_t min = 0, max = 0;  // value range in int32_data / uint64_data for narrow types
};

constexpr ElementType kElementTypes[] = {
    {onnx::TensorProto::FLOAT, "float32", 4, TypedField::kFloat},
    {onnx::TensorProto::UINT8, "uint8", 1, TypedField::kInt32, 0, 255},
    {onnx::TensorProto::INT8, "int8", 1, TypedField::kInt32, -128, 127},
    {onnx::TensorProto::UINT16, "uint16", 2, TypedField::kInt32, 0, 65535},
    {onnx::TensorProto::INT16, "int16", 2, TypedField::kInt32, -32768, 32767},
    {onnx::TensorProto::INT32, "int32", 4, TypedField::kInt32, INT32_MIN, INT32_MAX},
    {onnx::TensorProto::INT64, "int64", 8, TypedField::kInt64},
    {onnx::TensorProto::BOOL, "bool", 1, TypedField::kInt32, 0, 1},
    {onnx::TensorProto::FLOAT16, "float16", 2, TypedField::kInt32, 0, 65535},  // the bits, as uint16
    {onnx::TensorProto::DOUBLE, "float64", 8, TypedField::kDouble},
    {onnx::TensorProto::UINT32, "uint32", 4, TypedField::kUint64, 0, UINT32_MAX},
    {onnx::TensorProto::UINT64, "uint64", 8, TypedField::kUint64},
    {onnx::TensorProto::COMPLEX64, "complex64", 8, TypedField::kFloat},      // two floats each
    {onnx::TensorProto::COMPLEX128, "complex128", 16, TypedField::kDouble},  // two doubles each
    {onnx::TensorProto::BFLOAT16, "bfloat16", 2, TypedField::kInt32, 0, 65535},
};

const ElementType* ElementTypeByOnnx(int onnx_type) {
  for (const ElementType& type : kElementTypes) {
    if (type.onnx == onnx_type) return &type;
  }
  return nullptr;
}

const ElementType* ElementTypeByName(std::string_view name) {
  for (const ElementType& type : kElementTypes) {
    if (type.name == name) return &type;
  }
  return nullptr;
}

// Product of the dims, or nullopt when a dim is negative or it overflows.
std::optional<uint64_t> ElementCount(std::span<const int64_t> shape) {
  uint64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(count, static_cast<uint64_t>(dim), &count)) return std::nullopt;
  }
  return count;
}

// Stored chunk length for `count` elements of `size` bytes, or nullopt on overflow.
std::optional<uint64_t> TensorChunkLength(uint64_t count, size_t size) {
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(count, static_cast<uint64_t>(size), &bytes) ||
      __builtin_add_overflow(bytes, static_cast<uint64_t>(kChunkOverhead), &bytes)) {
    return std::nullopt;
  }
  return bytes;
}

// ---- Sealing: ONNX initializers to chunks ---------------------------------------

Status SizeMismatch(const std::string& what, std::string_view field, uint64_t found, uint64_t expected) {
  return Status::InvalidArgument(what + ": " + std::string(field) + " holds " + std::to_string(found) +
                                 " values, its dims need " + std::to_string(expected));
}

// float_data / double_data: copied as they are in memory (little-endian).
template <typename Repeated>
Result<Bytes> PackFloatingValues(const Repeated& values, uint64_t expected, const std::string& what,
                                 std::string_view field) {
  if (static_cast<uint64_t>(values.size()) != expected) return SizeMismatch(what, field, values.size(), expected);
  Bytes out(values.size() * sizeof(values.Get(0)));
  if (!out.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// int32_data / int64_data / uint64_data: each value's low `type.size` bytes,
// little-endian, after checking that it fits the element type.
template <typename Repeated>
Result<Bytes> PackIntegerValues(const Repeated& values, uint64_t expected, const ElementType& type,
                                const std::string& what, std::string_view field) {
  if (static_cast<uint64_t>(values.size()) != expected) return SizeMismatch(what, field, values.size(), expected);
  const bool ranged = type.min != 0 || type.max != 0;
  Bytes out;
  out.reserve(values.size() * type.size);
  for (int i = 0; i < values.size(); ++i) {
    const auto value = values.Get(i);
    if (ranged && (static_cast<__int128>(value) < type.min || static_cast<__int128>(value) > type.max)) {
      return Status::InvalidArgument(what + ": " + std::string(field) + "[" + std::to_string(i) +
                                     "] = " + std::to_string(value) + " does not fit " + std::string(type.name));
    }
    const auto bits = static_cast<uint64_t>(value);
    for (size_t b = 0; b < type.size; ++b) out.push_back(static_cast<uint8_t>(bits >> (8 * b)));
  }
  return out;
}

// The initializer's data as little-endian raw bytes, from raw_data or the
// typed field ONNX assigns to its element type.
Result<Bytes> InitializerRawBytes(const onnx::TensorProto& tensor, const ElementType& type, uint64_t count,
                                  const std::string& what) {
  const uint64_t expected_bytes = count * type.size;  // no overflow: TensorChunkLength checked it
  if (tensor.has_raw_data()) {
    if (tensor.raw_data().size() != expected_bytes) {
      return Status::InvalidArgument(what + ": raw_data has " + std::to_string(tensor.raw_data().size()) +
                                     " bytes, its dims need " + std::to_string(expected_bytes));
    }
    return Bytes(tensor.raw_data().begin(), tensor.raw_data().end());
  }
  switch (type.field) {
    case TypedField::kFloat:
      return PackFloatingValues(tensor.float_data(), expected_bytes / sizeof(float), what, "float_data");
    case TypedField::kDouble:
      return PackFloatingValues(tensor.double_data(), expected_bytes / sizeof(double), what, "double_data");
    case TypedField::kInt32:
      return PackIntegerValues(tensor.int32_data(), count, type, what, "int32_data");
    case TypedField::kInt64:
      return PackIntegerValues(tensor.int64_data(), count, type, what, "int64_data");
    case TypedField::kUint64:
      return PackIntegerValues(tensor.uint64_data(), count, type, what, "uint64_data");
  }
  return Status::Internal(what + ": unhandled typed field");
}

// Every name a node reads: its inputs and, recursively, its subgraphs' inputs
// (a subgraph may use an outer-scope initializer).
void CollectNodeInputs(const onnx::NodeProto& node, std::vector<std::string_view>& out) {
  for (const std::string& input : node.input()) out.push_back(input);
  for (const onnx::AttributeProto& attribute : node.attribute()) {
    if (attribute.has_g()) {
      for (const onnx::NodeProto& inner : attribute.g().node()) CollectNodeInputs(inner, out);
    }
    for (const onnx::GraphProto& graph : attribute.graphs()) {
      for (const onnx::NodeProto& inner : graph.node()) CollectNodeInputs(inner, out);
    }
  }
}

struct PlannedChunk {
  int initializer = 0;  // index into graph.initializer
  std::string layer;
};

// Initializers in the order of their first use in the graph, unused ones
// last, each with the layer that first uses it.
Result<std::vector<PlannedChunk>> PlanTensorChunks(const onnx::GraphProto& graph) {
  std::unordered_map<std::string_view, int> by_name;
  for (int i = 0; i < graph.initializer_size(); ++i) {
    const std::string& name = graph.initializer(i).name();
    if (name.empty()) return Status::InvalidArgument("initializer #" + std::to_string(i) + " has no name");
    if (name.size() > kMaxChunkNameLength) {
      return Status::InvalidArgument("initializer #" + std::to_string(i) + ": name longer than 65535 bytes");
    }
    if (!by_name.emplace(name, i).second) {
      return Status::InvalidArgument("initializer '" + name + "' appears more than once");
    }
  }
  std::vector<PlannedChunk> plan;
  std::vector<bool> placed(graph.initializer_size(), false);
  std::vector<std::string_view> inputs;
  for (int n = 0; n < graph.node_size(); ++n) {
    const onnx::NodeProto& node = graph.node(n);
    inputs.clear();
    CollectNodeInputs(node, inputs);
    for (std::string_view input : inputs) {
      auto it = by_name.find(input);
      if (it == by_name.end() || placed[it->second]) continue;
      placed[it->second] = true;
      plan.push_back({it->second, node.name().empty() ? node.op_type() + "_" + std::to_string(n) : node.name()});
      if (plan.back().layer.size() > kMaxChunkNameLength) {
        return Status::InvalidArgument("node #" + std::to_string(n) + ": name longer than 65535 bytes");
      }
    }
  }
  for (int i = 0; i < graph.initializer_size(); ++i) {
    if (!placed[i]) plan.push_back({i, std::string(kUnusedLayer)});
  }
  return plan;
}

// Leaves name, dims and data_type; the data now lives in chunk `index`.
void MoveDataToChunk(onnx::TensorProto& tensor, uint32_t index) {
  tensor.clear_raw_data();
  tensor.clear_float_data();
  tensor.clear_int32_data();
  tensor.clear_int64_data();
  tensor.clear_double_data();
  tensor.clear_uint64_data();
  tensor.clear_string_data();
  tensor.clear_external_data();
  tensor.set_data_location(onnx::TensorProto::EXTERNAL);
  onnx::StringStringEntryProto* location = tensor.add_external_data();
  location->set_key("location");
  location->set_value(std::string(kChunkLocationPrefix) + std::to_string(index));
}

// nonce || AES-256-GCM(model key, nonce, ChunkAad, plaintext) || tag
Result<Bytes> EncryptChunk(const SecretBytes& model_key, const PackageChunk& chunk, ByteSpan plaintext) {
  PPML_ASSIGN_OR_RETURN(Bytes stored, crypto::RandomBytes(crypto::kAesGcmNonceLength));
  PPML_ASSIGN_OR_RETURN(Bytes sealed, crypto::AesGcmSeal(model_key.span(), stored, ChunkAad(chunk), plaintext));
  stored.insert(stored.end(), sealed.begin(), sealed.end());
  return stored;
}

Result<Bytes> SealTensorChunk(onnx::TensorProto& tensor, PackageChunk& chunk, const SecretBytes& model_key) {
  const std::string what = "initializer '" + tensor.name() + "'";
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL || tensor.external_data_size() > 0) {
    return Status::Unsupported(what +
                               " keeps its data in an external file; load the model with its external "
                               "data and save it as one file first");
  }
  if (tensor.has_segment()) return Status::Unsupported(what + " is segmented");
  const ElementType* type = ElementTypeByOnnx(tensor.data_type());
  if (type == nullptr) {
    const std::string type_name =
        onnx::TensorProto::DataType_IsValid(tensor.data_type())
            ? onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(tensor.data_type()))
            : "type " + std::to_string(tensor.data_type());
    return Status::Unsupported(what + ": element type " + type_name + " has no raw byte form for a package");
  }
  chunk.tensor = tensor.name();
  chunk.dtype = std::string(type->name);
  chunk.shape.assign(tensor.dims().begin(), tensor.dims().end());
  std::optional<uint64_t> count = ElementCount(chunk.shape);
  if (!count || !TensorChunkLength(*count, type->size)) return Status::InvalidArgument(what + ": invalid dims");
  PPML_ASSIGN_OR_RETURN(Bytes raw, InitializerRawBytes(tensor, *type, *count, what));
  PPML_ASSIGN_OR_RETURN(Bytes stored, EncryptChunk(model_key, chunk, raw));
  MoveDataToChunk(tensor, chunk.index);
  return stored;
}

std::string ShapeJson(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

Status CheckModelName(std::string_view name) {
  if (name.empty() || name.size() > kMaxModelNameLength) {
    return Status::InvalidArgument("model name must be 1 to " + std::to_string(kMaxModelNameLength) + " bytes, got " +
                                   std::to_string(name.size()));
  }
  if (!simdjson::validate_utf8(name.data(), name.size())) {
    return Status::InvalidArgument("model name is not valid UTF-8");
  }
  return Status::Ok();
}

// ---- Opening: manifest fields ------------------------------------------------

// The fields of one manifest JSON object; every error is DataLoss starting
// with `where` and naming the field.
class ManifestFields {
 public:
  ManifestFields(simdjson::dom::object object, std::string where) : object_(object), where_(std::move(where)) {}

  Status Error(std::string_view field, const std::string& why) const {
    return Status::DataLoss(where_ + ": field \"" + std::string(field) + "\": " + why);
  }
  Result<simdjson::dom::element> Get(std::string_view field) const {
    simdjson::dom::element element;
    if (object_[field].get(element) != simdjson::SUCCESS) return Error(field, "missing");
    return element;
  }
  Result<std::string_view> String(std::string_view field, size_t max_length) const {
    PPML_ASSIGN_OR_RETURN(simdjson::dom::element element, Get(field));
    std::string_view text;
    if (element.get_string().get(text) != simdjson::SUCCESS) return Error(field, "not a string");
    if (text.size() > max_length) return Error(field, "longer than " + std::to_string(max_length) + " bytes");
    return text;
  }
  // An optional boolean: `fallback` when the field is absent.
  Result<bool> OptionalBool(std::string_view field, bool fallback) const {
    simdjson::dom::element element;
    if (object_[field].get(element) != simdjson::SUCCESS) return fallback;
    bool value = false;
    if (element.get_bool().get(value) != simdjson::SUCCESS) return Error(field, "not true or false");
    return value;
  }
  Result<uint64_t> Uint(std::string_view field) const {
    PPML_ASSIGN_OR_RETURN(simdjson::dom::element element, Get(field));
    uint64_t value = 0;
    if (element.get_uint64().get(value) != simdjson::SUCCESS) return Error(field, "not a non-negative integer");
    return value;
  }
  Result<Bytes> Hex(std::string_view field, size_t length) const {
    PPML_ASSIGN_OR_RETURN(std::string_view text, String(field, 2 * length));
    Result<Bytes> bytes = FromHex(text);
    if (!bytes.ok()) return Error(field, bytes.status().message());
    if (bytes->size() != length) {
      return Error(field, std::to_string(bytes->size()) + " bytes, expected " + std::to_string(length));
    }
    return bytes;
  }
  Result<simdjson::dom::object> Object(std::string_view field) const {
    PPML_ASSIGN_OR_RETURN(simdjson::dom::element element, Get(field));
    simdjson::dom::object object;
    if (element.get_object().get(object) != simdjson::SUCCESS) return Error(field, "not an object");
    return object;
  }
  Result<simdjson::dom::array> Array(std::string_view field) const {
    PPML_ASSIGN_OR_RETURN(simdjson::dom::element element, Get(field));
    simdjson::dom::array array;
    if (element.get_array().get(array) != simdjson::SUCCESS) return Error(field, "not an array");
    return array;
  }

 private:
  simdjson::dom::object object_;
  std::string where_;
};

Result<ChunkKind> ParseChunkKind(const ManifestFields& fields) {
  PPML_ASSIGN_OR_RETURN(std::string_view kind, fields.String("kind", 16));
  if (kind == "graph") return ChunkKind::kGraph;
  if (kind == "tensor") return ChunkKind::kTensor;
  return fields.Error("kind", "\"" + std::string(kind) + "\" is neither \"graph\" nor \"tensor\"");
}

Result<std::vector<int64_t>> ParseShape(const ManifestFields& fields) {
  PPML_ASSIGN_OR_RETURN(simdjson::dom::array array, fields.Array("shape"));
  std::vector<int64_t> shape;
  for (simdjson::dom::element element : array) {
    int64_t dim = 0;
    if (element.get_int64().get(dim) != simdjson::SUCCESS || dim < 0) {
      return fields.Error("shape", "a dimension is not a non-negative integer");
    }
    shape.push_back(dim);
  }
  return shape;
}

// What a chunk's kind requires of its names, dtype, shape and length.
Status CheckChunkContents(const ManifestFields& fields, const PackageChunk& chunk) {
  if (chunk.index == 0 && chunk.kind != ChunkKind::kGraph) return fields.Error("kind", "chunk 0 must be the graph");
  if (chunk.index != 0 && chunk.kind != ChunkKind::kTensor) {
    return fields.Error("kind", "only chunk 0 may be the graph");
  }
  if (chunk.length < kChunkOverhead) {
    return fields.Error("length", std::to_string(chunk.length) + " is shorter than nonce and tag (28)");
  }
  if (chunk.kind == ChunkKind::kGraph) {
    if (chunk.layer != kGraphLayer) return fields.Error("layer", "the graph chunk's layer must be \"(graph)\"");
    if (!chunk.tensor.empty()) return fields.Error("tensor", "the graph chunk names no tensor");
    if (chunk.dtype != kGraphDtype) return fields.Error("dtype", "the graph chunk's dtype must be \"onnx\"");
    if (!chunk.shape.empty()) return fields.Error("shape", "the graph chunk has no shape");
    return Status::Ok();
  }
  if (chunk.layer.empty()) return fields.Error("layer", "empty");
  if (chunk.tensor.empty()) return fields.Error("tensor", "empty");
  const ElementType* type = ElementTypeByName(chunk.dtype);
  if (type == nullptr) return fields.Error("dtype", "\"" + chunk.dtype + "\" is not a known element type");
  std::optional<uint64_t> count = ElementCount(chunk.shape);
  std::optional<uint64_t> expected = count ? TensorChunkLength(*count, type->size) : std::nullopt;
  if (!expected) return fields.Error("shape", "element count overflows");
  if (chunk.length != *expected) {
    return fields.Error("length", std::to_string(chunk.length) + " does not match dtype " + chunk.dtype +
                                      " and shape " + ShapeJson(chunk.shape) + " (expected " +
                                      std::to_string(*expected) + ")");
  }
  return Status::Ok();
}

// Chunk `position` of the manifest's array; `data_end` is where the previous
// chunk ended in the data area and becomes where this one ends.
Result<PackageChunk> ParseChunk(simdjson::dom::element element, size_t position, uint64_t data_area_size,
                                uint64_t& data_end) {
  const std::string where = "package manifest: chunks[" + std::to_string(position) + "]";
  simdjson::dom::object object;
  if (element.get_object().get(object) != simdjson::SUCCESS) return Status::DataLoss(where + ": not an object");
  PackageChunk chunk;
  {
    // Names first, so every later error names the chunk's layer and tensor.
    ManifestFields names(object, where);
    PPML_ASSIGN_OR_RETURN(std::string_view layer, names.String("layer", kMaxChunkNameLength));
    PPML_ASSIGN_OR_RETURN(std::string_view tensor, names.String("tensor", kMaxChunkNameLength));
    chunk.layer = layer;
    chunk.tensor = tensor;
  }
  ManifestFields fields(object, where + " (layer '" + chunk.layer + "', tensor '" + chunk.tensor + "')");
  PPML_ASSIGN_OR_RETURN(uint64_t index, fields.Uint("index"));
  if (index != position) {
    return fields.Error("index", std::to_string(index) + ", expected " + std::to_string(position) +
                                     " (chunk entries reordered, missing or duplicated)");
  }
  chunk.index = static_cast<uint32_t>(index);
  PPML_ASSIGN_OR_RETURN(chunk.kind, ParseChunkKind(fields));
  PPML_ASSIGN_OR_RETURN(std::string_view dtype, fields.String("dtype", 32));
  chunk.dtype = dtype;
  PPML_ASSIGN_OR_RETURN(chunk.shape, ParseShape(fields));
  PPML_ASSIGN_OR_RETURN(chunk.offset, fields.Uint("offset"));
  PPML_ASSIGN_OR_RETURN(chunk.length, fields.Uint("length"));
  PPML_ASSIGN_OR_RETURN(Bytes sha256, fields.Hex("sha256", crypto::kSha256Length));
  chunk.sha256 = ToDigest(sha256);
  PPML_RETURN_IF_ERROR(CheckChunkContents(fields, chunk));

  if (chunk.offset < data_end) {
    return fields.Error("offset", std::to_string(chunk.offset) + " overlaps the previous chunk (which ends at " +
                                      std::to_string(data_end) + ")");
  }
  if (chunk.offset > data_end) {
    return fields.Error("offset", std::to_string(chunk.offset) + " leaves a gap after the previous chunk (ends at " +
                                      std::to_string(data_end) + ")");
  }
  if (chunk.length > data_area_size - chunk.offset) {
    return fields.Error("length", "the chunk ends at " + std::to_string(chunk.offset + chunk.length) +
                                      ", past the end of the file's " + std::to_string(data_area_size) +
                                      " data bytes (truncated)");
  }
  data_end = chunk.offset + chunk.length;
  return chunk;
}

Result<PackageManifest> ParseManifest(ByteSpan manifest_bytes, uint64_t data_area_size) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(reinterpret_cast<const char*>(manifest_bytes.data()), manifest_bytes.size());
  simdjson::dom::element root;
  if (auto error = parser.parse(padded).get(root); error != simdjson::SUCCESS) {
    return Status::DataLoss(std::string("package manifest: not valid JSON: ") + simdjson::error_message(error));
  }
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) {
    return Status::DataLoss("package manifest: not a JSON object");
  }
  ManifestFields fields(object, "package manifest");
  PPML_ASSIGN_OR_RETURN(std::string_view format, fields.String("format", 64));
  if (format != kPackageFormat) return fields.Error("format", "\"" + std::string(format) + "\", not a model package");
  PPML_ASSIGN_OR_RETURN(uint64_t version, fields.Uint("version"));
  if (version != kPackageVersion) {
    return Status::Unsupported("package manifest: version " + std::to_string(version) + " is not supported (expected " +
                               std::to_string(kPackageVersion) + ")");
  }
  PackageManifest manifest;
  manifest.version = kPackageVersion;
  PPML_ASSIGN_OR_RETURN(std::string_view model_name, fields.String("model_name", kMaxModelNameLength));
  if (model_name.empty()) return fields.Error("model_name", "empty");
  manifest.model_name = model_name;
  PPML_ASSIGN_OR_RETURN(Bytes source_sha256, fields.Hex("source_sha256", crypto::kSha256Length));
  manifest.source_sha256 = ToDigest(source_sha256);
  PPML_ASSIGN_OR_RETURN(manifest.confidential, fields.OptionalBool("confidential", false));
  PPML_ASSIGN_OR_RETURN(manifest.enclave_public_key, fields.Hex("enclave_public_key", kEnclavePublicKeyLength));
  PPML_ASSIGN_OR_RETURN(simdjson::dom::object key_wrap_object, fields.Object("key_wrap"));
  ManifestFields key_wrap(key_wrap_object, "package manifest: key_wrap");
  PPML_ASSIGN_OR_RETURN(manifest.key_wrap_enc, key_wrap.Hex("enc", hpke::kEncLength));
  PPML_ASSIGN_OR_RETURN(manifest.key_wrap_ciphertext, key_wrap.Hex("ciphertext", kWrappedKeyLength));

  PPML_ASSIGN_OR_RETURN(simdjson::dom::array chunks, fields.Array("chunks"));
  uint64_t data_end = 0;
  std::unordered_set<std::string> tensors;
  for (simdjson::dom::element element : chunks) {
    PPML_ASSIGN_OR_RETURN(PackageChunk chunk, ParseChunk(element, manifest.chunks.size(), data_area_size, data_end));
    if (chunk.kind == ChunkKind::kTensor && !tensors.insert(chunk.tensor).second) {
      return Status::DataLoss(chunk.Describe() + ": tensor '" + chunk.tensor + "' is listed twice");
    }
    manifest.chunks.push_back(std::move(chunk));
  }
  if (manifest.chunks.empty()) return fields.Error("chunks", "empty (the graph chunk is required)");
  if (data_end != data_area_size) {
    return Status::DataLoss("package: " + std::to_string(data_area_size - data_end) +
                            " bytes after the last chunk that no manifest entry describes");
  }
  return manifest;
}

uint32_t ReadU32BigEndian(ByteSpan bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) | uint32_t{bytes[3]};
}

// The tensor chunk an initializer of the graph chunk points at, checked
// against the initializer's name, type and dims.
Result<size_t> ReferencedChunk(const onnx::TensorProto& tensor, const PackageView& view) {
  const std::string what = "package chunk 0 (graph): initializer '" + tensor.name() + "'";
  if (tensor.data_location() != onnx::TensorProto::EXTERNAL || tensor.external_data_size() != 1 ||
      tensor.external_data(0).key() != "location") {
    return Status::DataLoss(what + " does not point at a chunk");
  }
  const std::string& location = tensor.external_data(0).value();
  const PackageChunk* chunk = view.FindTensor(tensor.name());
  if (chunk == nullptr || location != std::string(kChunkLocationPrefix) + std::to_string(chunk->index)) {
    return Status::DataLoss(what + " points at \"" + location + "\", which is not the chunk holding it");
  }
  const ElementType* type = ElementTypeByOnnx(tensor.data_type());
  if (type == nullptr || type->name != chunk->dtype ||
      !std::equal(tensor.dims().begin(), tensor.dims().end(), chunk->shape.begin(), chunk->shape.end())) {
    return Status::DataLoss(chunk->Describe() + ": dtype or shape differs from the graph's initializer");
  }
  return chunk->index;
}

}  // namespace

// ---- Chunks and views ----------------------------------------------------------

std::string_view ChunkKindName(ChunkKind kind) { return kind == ChunkKind::kGraph ? "graph" : "tensor"; }

std::string PackageChunk::Describe() const {
  if (kind == ChunkKind::kGraph) return "package chunk " + std::to_string(index) + " (graph)";
  return "package chunk " + std::to_string(index) + " (layer '" + layer + "', tensor '" + tensor + "')";
}

ByteSpan PackageView::chunk_bytes(size_t index) const {
  const PackageChunk& chunk = manifest_.chunks.at(index);
  return data_area_.subspan(chunk.offset, chunk.length);
}

const PackageChunk* PackageView::FindTensor(std::string_view tensor) const {
  for (const PackageChunk& chunk : manifest_.chunks) {
    if (chunk.kind == ChunkKind::kTensor && chunk.tensor == tensor) return &chunk;
  }
  return nullptr;
}

std::string ManifestToJson(const PackageManifest& manifest) {
  std::string chunks = "[";
  for (const PackageChunk& chunk : manifest.chunks) {
    JsonLine entry;
    entry.Add("index", chunk.index)
        .Add("kind", ChunkKindName(chunk.kind))
        .Add("layer", chunk.layer)
        .Add("tensor", chunk.tensor)
        .Add("dtype", chunk.dtype)
        .AddRaw("shape", ShapeJson(chunk.shape))
        .Add("offset", chunk.offset)
        .Add("length", chunk.length)
        .Add("sha256", ToHex(chunk.sha256));
    if (chunks.size() > 1) chunks += ",";
    chunks += entry.str();
  }
  chunks += "]";
  JsonLine key_wrap;
  key_wrap.Add("enc", ToHex(manifest.key_wrap_enc)).Add("ciphertext", ToHex(manifest.key_wrap_ciphertext));
  JsonLine json;
  json.Add("format", kPackageFormat)
      .Add("version", manifest.version)
      .Add("model_name", manifest.model_name)
      .Add("source_sha256", ToHex(manifest.source_sha256));
  if (manifest.confidential) json.Add("confidential", true);
  json.Add("enclave_public_key", ToHex(manifest.enclave_public_key))
      .AddRaw("key_wrap", key_wrap.str())
      .AddRaw("chunks", chunks);
  return json.str();
}

// ---- Model owner -------------------------------------------------------------

Result<Bytes> SealModel(ByteSpan onnx_model, std::string_view model_name, ByteSpan enclave_public_key,
                        bool confidential) {
  PPML_RETURN_IF_ERROR(CheckModelName(model_name));
  if (enclave_public_key.size() != kEnclavePublicKeyLength) {
    return Status::InvalidArgument("enclave public key is " + std::to_string(enclave_public_key.size()) +
                                   " bytes, expected 32 (X25519)");
  }
  onnx::ModelProto model;
  if (onnx_model.size() > static_cast<size_t>(INT_MAX) ||
      !model.ParseFromArray(onnx_model.data(), static_cast<int>(onnx_model.size()))) {
    return Status::InvalidArgument("not a serialized ONNX model (protobuf parsing failed)");
  }

  PackageManifest manifest;
  manifest.model_name = model_name;
  manifest.confidential = confidential;
  PPML_ASSIGN_OR_RETURN(Bytes source_sha256, crypto::Sha256(onnx_model));
  manifest.source_sha256 = ToDigest(source_sha256);
  manifest.enclave_public_key.assign(enclave_public_key.begin(), enclave_public_key.end());
  SecretBytes model_key(kModelKeyLength);
  PPML_RETURN_IF_ERROR(crypto::FillRandom(model_key.mutable_span()));

  PPML_ASSIGN_OR_RETURN(std::vector<PlannedChunk> plan, PlanTensorChunks(model.graph()));
  manifest.chunks.resize(plan.size() + 1);
  std::vector<Bytes> stored(plan.size() + 1);
  for (size_t i = 0; i < plan.size(); ++i) {
    PackageChunk& chunk = manifest.chunks[i + 1];
    chunk.index = static_cast<uint32_t>(i + 1);
    chunk.kind = ChunkKind::kTensor;
    chunk.layer = std::move(plan[i].layer);
    onnx::TensorProto& tensor = *model.mutable_graph()->mutable_initializer(plan[i].initializer);
    PPML_ASSIGN_OR_RETURN(stored[i + 1], SealTensorChunk(tensor, chunk, model_key));
  }
  PackageChunk& graph = manifest.chunks[0];
  graph.kind = ChunkKind::kGraph;
  graph.layer = kGraphLayer;
  graph.dtype = kGraphDtype;
  std::string graph_bytes;
  if (!model.SerializeToString(&graph_bytes)) return Status::Internal("serializing the package's graph chunk");
  PPML_ASSIGN_OR_RETURN(stored[0], EncryptChunk(model_key, graph, AsBytes(graph_bytes)));

  uint64_t offset = 0;
  for (size_t i = 0; i < stored.size(); ++i) {
    manifest.chunks[i].offset = offset;
    manifest.chunks[i].length = stored[i].size();
    PPML_ASSIGN_OR_RETURN(Bytes digest, crypto::Sha256(stored[i]));
    manifest.chunks[i].sha256 = ToDigest(digest);
    offset += stored[i].size();
  }

  PPML_ASSIGN_OR_RETURN(Bytes binding, ManifestBindingDigest(manifest));
  PPML_ASSIGN_OR_RETURN(hpke::SenderSetup wrap, hpke::SetupBaseS(enclave_public_key, AsBytes(kModelKeyWrapInfo)));
  manifest.key_wrap_enc = std::move(wrap.enc);
  PPML_ASSIGN_OR_RETURN(manifest.key_wrap_ciphertext, wrap.context.Seal(binding, model_key.span()));

  const std::string json = ManifestToJson(manifest);
  if (json.size() > UINT32_MAX) return Status::InvalidArgument("the package manifest exceeds 4 GiB");
  CanonicalWriter file;
  file.Raw(AsBytes(kPackageMagic)).Uint(json.size(), 4).Raw(AsBytes(json));
  for (const Bytes& chunk : stored) file.Raw(chunk);
  Bytes package = file.Take();
  // Never hand out a package the enclave would refuse.
  Result<PackageView> check = OpenPackage(package);
  if (!check.ok()) return Status::Internal("the sealed package does not open: " + check.status().message());
  return package;
}

// ---- Enclave -----------------------------------------------------------------

Result<PackageView> OpenPackage(ByteSpan file) {
  if (file.size() < kPackageHeaderLength) {
    return Status::DataLoss("package is " + std::to_string(file.size()) + " bytes, shorter than its " +
                            std::to_string(kPackageHeaderLength) + "-byte header (truncated)");
  }
  const std::string_view magic(reinterpret_cast<const char*>(file.data()), kPackageMagic.size());
  if (magic.substr(0, 7) == kPackageMagic.substr(0, 7) && magic[7] != kPackageMagic[7]) {
    return Status::Unsupported("package format version " + std::to_string(static_cast<uint8_t>(magic[7])) +
                               " is not supported (expected 1)");
  }
  if (magic != kPackageMagic) return Status::DataLoss("not a ppml model package: the magic is not \"PPMLPKG\\x01\"");
  const uint64_t manifest_length = ReadU32BigEndian(file.subspan(kPackageMagic.size(), 4));
  if (manifest_length > file.size() - kPackageHeaderLength) {
    return Status::DataLoss("package manifest length " + std::to_string(manifest_length) +
                            " runs past the end of the file (" + std::to_string(file.size() - kPackageHeaderLength) +
                            " bytes follow the header)");
  }
  PackageView view;
  view.file_ = file;
  view.manifest_bytes_ = file.subspan(kPackageHeaderLength, manifest_length);
  view.data_area_ = file.subspan(kPackageHeaderLength + manifest_length);
  PPML_ASSIGN_OR_RETURN(view.manifest_, ParseManifest(view.manifest_bytes_, view.data_area_.size()));
  return view;
}

Result<Sha256Digest> ManifestHash(const PackageView& view) {
  PPML_ASSIGN_OR_RETURN(Bytes digest, crypto::Sha256(view.manifest_bytes()));
  return ToDigest(digest);
}

Result<SecretBytes> UnwrapModelKey(const PackageView& view, const crypto::X25519PrivateKey& enclave_private_key) {
  const PackageManifest& manifest = view.manifest();
  const Bytes& public_key = enclave_private_key.public_key();
  if (!crypto::ConstantTimeEquals(public_key, manifest.enclave_public_key)) {
    return Status::PermissionDenied("package is sealed to another enclave key (package: " +
                                    ToHex(manifest.enclave_public_key) + ", this enclave: " + ToHex(public_key) + ")");
  }
  PPML_ASSIGN_OR_RETURN(Bytes binding, ManifestBindingDigest(manifest));
  PPML_ASSIGN_OR_RETURN(hpke::ReceiverContext context,
                        hpke::SetupBaseR(manifest.key_wrap_enc, enclave_private_key, AsBytes(kModelKeyWrapInfo)));
  Result<Bytes> key = context.Open(binding, manifest.key_wrap_ciphertext);
  if (!key.ok()) {
    if (key.status().code() != StatusCode::kDataLoss) return key.status();
    return Status::DataLoss(
        "package model key does not unwrap: the manifest (chunk table, model name or source hash) was edited "
        "after sealing, or the key wrap was altered");
  }
  SecretBytes model_key(*key);
  OPENSSL_cleanse(key->data(), key->size());
  if (model_key.size() != kModelKeyLength) return Status::DataLoss("package model key has the wrong length");
  return model_key;
}

Status DecryptChunkInto(const PackageView& view, const SecretBytes& model_key, size_t index, std::span<uint8_t> out) {
  if (index >= view.chunk_count()) {
    return Status::InvalidArgument("package chunk " + std::to_string(index) + " does not exist (the package has " +
                                   std::to_string(view.chunk_count()) + ")");
  }
  if (model_key.size() != kModelKeyLength) return Status::InvalidArgument("model key is not 32 bytes");
  const PackageChunk& chunk = view.manifest().chunks[index];
  if (out.size() != chunk.plaintext_length()) {
    return Status::DataLoss(chunk.Describe() + ": holds " + std::to_string(chunk.plaintext_length()) +
                            " bytes, the model graph expects " + std::to_string(out.size()));
  }
  const ByteSpan stored = view.chunk_bytes(index);
  PPML_ASSIGN_OR_RETURN(Bytes digest, crypto::Sha256(stored));
  if (!crypto::ConstantTimeEquals(digest, chunk.sha256)) {
    return Status::DataLoss(chunk.Describe() +
                            ": modified: hash mismatch (the stored bytes are not those the "
                            "manifest lists)");
  }
  const Status opened = crypto::AesGcmOpenInto(model_key.span(), stored.first(crypto::kAesGcmNonceLength),
                                               ChunkAad(chunk), stored.subspan(crypto::kAesGcmNonceLength), out);
  if (!opened.ok()) {
    if (opened.code() != StatusCode::kDataLoss) return opened;
    return Status::DataLoss(chunk.Describe() + ": does not authenticate (reordered or swapped)");
  }
  return Status::Ok();
}

Result<Bytes> DecryptChunk(const PackageView& view, const SecretBytes& model_key, size_t index) {
  if (index >= view.chunk_count()) {
    return Status::InvalidArgument("package chunk " + std::to_string(index) + " does not exist (the package has " +
                                   std::to_string(view.chunk_count()) + ")");
  }
  const PackageChunk& chunk = view.manifest().chunks[index];
  SecretBytes plaintext(chunk.length < kChunkOverhead ? 0 : chunk.plaintext_length());
  PPML_RETURN_IF_ERROR(DecryptChunkInto(view, model_key, index, {plaintext.data(), plaintext.size()}));
  return plaintext.Reveal();
}

Result<Bytes> ReassembleModel(const PackageView& view, const SecretBytes& model_key) {
  PPML_ASSIGN_OR_RETURN(Bytes graph, DecryptChunk(view, model_key, 0));
  onnx::ModelProto model;
  if (graph.size() > static_cast<size_t>(INT_MAX) ||
      !model.ParseFromArray(graph.data(), static_cast<int>(graph.size()))) {
    return Status::DataLoss("package chunk 0 (graph): not a serialized ONNX model");
  }
  std::vector<bool> used(view.chunk_count(), false);
  for (onnx::TensorProto& tensor : *model.mutable_graph()->mutable_initializer()) {
    PPML_ASSIGN_OR_RETURN(size_t index, ReferencedChunk(tensor, view));
    if (used[index]) return Status::DataLoss(view.manifest().chunks[index].Describe() + ": used twice by the graph");
    used[index] = true;
    PPML_ASSIGN_OR_RETURN(Bytes raw, DecryptChunk(view, model_key, index));
    tensor.clear_external_data();
    tensor.clear_data_location();
    tensor.set_raw_data(raw.data(), raw.size());
  }
  for (size_t i = 1; i < used.size(); ++i) {
    if (!used[i])
      return Status::DataLoss(view.manifest().chunks[i].Describe() + ": no initializer of the graph uses it");
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) return Status::Internal("serializing the reassembled model");
  return Bytes(bytes.begin(), bytes.end());
}

Result<Bytes> ReadPackageFile(const std::string& path) {
  PPML_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return Bytes(bytes.begin(), bytes.end());
}

}  // namespace ppml::enclave
