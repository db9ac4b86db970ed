#include "engine/onnx_tensor.h"

#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace ppml::engine {
namespace {

static_assert(std::endian::native == std::endian::little, "ONNX raw_data is little-endian; we copy it as is");

// Copies int32_data into a narrower integer type, refusing values that do not
// fit (a corrupt file, not something to wrap around silently).
template <typename T>
Status CopyNarrowed(const onnx::TensorProto& proto, Tensor& tensor, int64_t min, int64_t max,
                    const std::string& context) {
  T* out = tensor.data<T>();
  for (int i = 0; i < proto.int32_data_size(); ++i) {
    const int32_t value = proto.int32_data(i);
    if (value < min || value > max) {
      return Status::DataLoss(context + ": int32_data[" + std::to_string(i) + "] = " + std::to_string(value) +
                              " does not fit " + OnnxTypeName(proto.data_type()));
    }
    out[i] = static_cast<T>(value);
  }
  return Status::Ok();
}

Status SizeMismatch(const std::string& context, const char* field, int64_t expected, int64_t found,
                    const Shape& shape) {
  return Status::DataLoss(context + ": " + field + " holds " + std::to_string(found) + " values, dims " +
                          ShapeToString(shape) + " need " + std::to_string(expected));
}

}  // namespace

std::string OnnxTypeName(int onnx_type) {
  if (onnx::TensorProto::DataType_IsValid(onnx_type)) {
    return onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(onnx_type));
  }
  return "type " + std::to_string(onnx_type);
}

Result<DataType> DataTypeFromOnnx(int onnx_type, const std::string& context) {
  switch (onnx_type) {
    case onnx::TensorProto::FLOAT: return DataType::kF32;
    case onnx::TensorProto::UINT8: return DataType::kU8;
    case onnx::TensorProto::INT8: return DataType::kS8;
    case onnx::TensorProto::INT32: return DataType::kS32;
    case onnx::TensorProto::INT64: return DataType::kS64;
    case onnx::TensorProto::BOOL: return DataType::kU8;
    default:
      return Status::Unsupported(context + ": element type " + OnnxTypeName(onnx_type) +
                                 " is not supported (float, uint8, int8, int32, int64 and bool are)");
  }
}

int OnnxTypeFromDataType(DataType type) {
  switch (type) {
    case DataType::kF32: return onnx::TensorProto::FLOAT;
    case DataType::kU8: return onnx::TensorProto::UINT8;
    case DataType::kS8: return onnx::TensorProto::INT8;
    case DataType::kS32: return onnx::TensorProto::INT32;
    case DataType::kS64: return onnx::TensorProto::INT64;
  }
  return onnx::TensorProto::UNDEFINED;
}

Result<Tensor> TensorFromProto(const onnx::TensorProto& proto, const std::string& context) {
  if (proto.data_location() == onnx::TensorProto::EXTERNAL || proto.external_data_size() > 0) {
    return Status::Unsupported(context + ": external data is not supported (store the tensor inside the model)");
  }
  if (proto.has_segment()) return Status::Unsupported(context + ": segmented tensors are not supported");
  PPML_ASSIGN_OR_RETURN(DataType dtype, DataTypeFromOnnx(proto.data_type(), context));

  Shape shape(proto.dims().begin(), proto.dims().end());
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(count, dim, &count)) {
      return Status::DataLoss(context + ": invalid dims " + ShapeToString(shape));
    }
  }

  // Check the data size before allocating: corrupt dims must not become a huge allocation.
  const size_t element_size = ElementSize(dtype);
  const int type = proto.data_type();
  if (proto.has_raw_data()) {
    const int64_t values = static_cast<int64_t>(proto.raw_data().size() / element_size);
    if (proto.raw_data().size() % element_size != 0 || values != count) {
      return Status::DataLoss(context + ": raw_data has " + std::to_string(proto.raw_data().size()) +
                              " bytes, dims " + ShapeToString(shape) + " of " + OnnxTypeName(type) + " need " +
                              std::to_string(count * static_cast<int64_t>(element_size)));
    }
    Tensor tensor(dtype, std::move(shape));
    if (count > 0) std::memcpy(tensor.raw_data(), proto.raw_data().data(), proto.raw_data().size());
    if (type == onnx::TensorProto::BOOL) {
      for (uint8_t& value : tensor.values<uint8_t>()) value = value != 0;
    }
    return tensor;
  }

  switch (type) {
    case onnx::TensorProto::FLOAT: {
      if (proto.float_data_size() != count) {
        return SizeMismatch(context, "float_data", count, proto.float_data_size(), shape);
      }
      Tensor tensor(dtype, std::move(shape));
      std::copy(proto.float_data().begin(), proto.float_data().end(), tensor.data<float>());
      return tensor;
    }
    case onnx::TensorProto::INT64: {
      if (proto.int64_data_size() != count) {
        return SizeMismatch(context, "int64_data", count, proto.int64_data_size(), shape);
      }
      Tensor tensor(dtype, std::move(shape));
      std::copy(proto.int64_data().begin(), proto.int64_data().end(), tensor.data<int64_t>());
      return tensor;
    }
    default: {
      // ONNX stores INT32, and the narrower UINT8, INT8 and BOOL, in int32_data.
      if (proto.int32_data_size() != count) {
        return SizeMismatch(context, "int32_data", count, proto.int32_data_size(), shape);
      }
      Tensor tensor(dtype, std::move(shape));
      Status status;
      if (type == onnx::TensorProto::INT32) {
        std::copy(proto.int32_data().begin(), proto.int32_data().end(), tensor.data<int32_t>());
      } else if (type == onnx::TensorProto::INT8) {
        status = CopyNarrowed<int8_t>(proto, tensor, -128, 127, context);
      } else if (type == onnx::TensorProto::BOOL) {
        status = CopyNarrowed<uint8_t>(proto, tensor, 0, 1, context);
      } else {
        status = CopyNarrowed<uint8_t>(proto, tensor, 0, 255, context);
      }
      if (!status.ok()) return status;
      return tensor;
    }
  }
}

Result<onnx::ModelProto> ParseOnnxModel(std::string_view bytes) {
  onnx::ModelProto model;
  if (bytes.empty() || !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Status::DataLoss("not a valid ONNX model (protobuf parsing failed)");
  }
  return model;
}

std::vector<onnx::ValueInfoProto*> RuntimeInputs(onnx::GraphProto& graph) {
  std::set<std::string> initializers;
  for (const auto& t : graph.initializer()) initializers.insert(t.name());
  std::vector<onnx::ValueInfoProto*> inputs;
  for (auto& in : *graph.mutable_input()) {
    if (!initializers.count(in.name())) inputs.push_back(&in);
  }
  return inputs;
}

FreshNames::FreshNames(const onnx::GraphProto& graph) {
  for (const auto& t : graph.initializer()) taken_.insert(t.name());
  for (const auto& v : graph.input()) taken_.insert(v.name());
  for (const auto& v : graph.output()) taken_.insert(v.name());
  for (const auto& v : graph.value_info()) taken_.insert(v.name());
  for (const auto& n : graph.node()) {
    taken_.insert(n.name());
    taken_.insert(n.input().begin(), n.input().end());
    taken_.insert(n.output().begin(), n.output().end());
  }
}

std::string FreshNames::Take(const std::string& base) {
  std::string name = base;
  for (int i = 1; taken_.count(name); ++i) name = base + "_" + std::to_string(i);
  taken_.insert(name);
  return name;
}

onnx::NodeProto MakeOnnxNode(const std::string& op, const std::string& name, const std::vector<std::string>& inputs,
                             const std::string& output) {
  onnx::NodeProto node;
  node.set_op_type(op);
  node.set_name(name);
  for (const std::string& in : inputs) node.add_input(in);
  node.add_output(output);
  return node;
}

void SetIntAttribute(onnx::NodeProto& node, const std::string& name, int64_t value) {
  onnx::AttributeProto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

Result<Tensor> ReadTensorProtoFile(const std::string& path, std::string* name) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    if (error == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IoError(path + ": cannot open: " + std::strerror(error));
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return Status::IoError(path + ": read failed");
  onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes.str())) {
    return Status::DataLoss(path + ": not a serialized ONNX TensorProto (protobuf parsing failed)");
  }
  if (name != nullptr) *name = proto.name();
  return TensorFromProto(proto, proto.name().empty() ? path : path + " (tensor '" + proto.name() + "')");
}

onnx::TensorProto TensorToProto(const Tensor& tensor, const std::string& name) {
  onnx::TensorProto proto;
  proto.set_name(name);
  proto.set_data_type(OnnxTypeFromDataType(tensor.dtype()));
  for (int64_t dim : tensor.shape()) proto.add_dims(dim);
  proto.set_raw_data(tensor.raw_data(), tensor.byte_size());
  return proto;
}

}  // namespace ppml::engine
