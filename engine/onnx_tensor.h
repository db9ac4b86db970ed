// Conversions between ONNX TensorProto and ppml::Tensor: model initializers,
// Constant values, and the input_K.pb / output_K.pb files of ONNX's backend
// test data; parsing a model and finding its run-time inputs. Internal to
// engine/, int8/ and the tools (it exposes protobuf types).
//
// Element types: FLOAT -> f32, UINT8 -> u8, INT8 -> s8, INT32 -> s32,
// INT64 -> s64, and BOOL -> u8 (0 or 1). Values come from raw_data or from
// the typed field ONNX assigns to the type (float_data, int32_data for the
// small integer types and bool, int64_data). Any other element type,
// external data or segments is Unsupported naming the tensor and its type; a
// data size that does not match the dims is DataLoss.
//
// Thread safety: free functions without shared state.
#pragma once

#include <onnx/onnx_pb.h>

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace ppml::engine {

// `context` names the tensor in messages, e.g. "model.onnx: initializer 'fc.weight'".
Result<Tensor> TensorFromProto(const onnx::TensorProto& proto, const std::string& context);

// Reads a file holding one serialized TensorProto. When `name` is given it
// receives the proto's name field (often empty in test data).
Result<Tensor> ReadTensorProtoFile(const std::string& path, std::string* name = nullptr);

// The inverse of TensorFromProto: dims, data_type and little-endian raw_data.
// u8 tensors become UINT8 (the BOOL distinction is not kept in a Tensor).
onnx::TensorProto TensorToProto(const Tensor& tensor, const std::string& name);

// Parses a serialized ModelProto; DataLoss when the bytes are not one.
Result<onnx::ModelProto> ParseOnnxModel(std::string_view bytes);
// The graph's inputs that are not initializers (models of IR version < 4
// list their initializers among the inputs too), in graph order.
std::vector<onnx::ValueInfoProto*> RuntimeInputs(onnx::GraphProto& graph);

// Names a rewrite adds to an ONNX graph without clashing with the graph's
// own (tensors and nodes) or with those it added before.
class FreshNames {
 public:
  explicit FreshNames(const onnx::GraphProto& graph);
  // `base` when free, else the first free of base_1, base_2, ...; taken from then on.
  std::string Take(const std::string& base);

 private:
  std::set<std::string> taken_;
};

// A node of type `op` with one output.
onnx::NodeProto MakeOnnxNode(const std::string& op, const std::string& name, const std::vector<std::string>& inputs,
                             const std::string& output);
void SetIntAttribute(onnx::NodeProto& node, const std::string& name, int64_t value);

// The ppml type for an ONNX element type (TensorProto::DataType value).
Result<DataType> DataTypeFromOnnx(int onnx_type, const std::string& context);
int OnnxTypeFromDataType(DataType type);
// "FLOAT", "FLOAT16", ...; "type <n>" for values the enum does not name.
std::string OnnxTypeName(int onnx_type);

}  // namespace ppml::engine
