// The ONNX graph as calibration and quantization see it. Internal to int8/
// (and its tests): it exposes protobuf types.
//
// PrepareModel gives Calibrate and QuantizeToQdq the same graph, so tensor
// names agree between the statistics and the rewrite:
//   1. default-domain opset raised to 13 when lower (ONNX version converter),
//      IR version to at least 7;
//   2. unnamed nodes named "<op>_<index in the file>" (the engine's own
//      naming), so summaries and fp32_nodes can refer to every node;
//   3. Constant nodes turned into initializers of the same name;
//   4. nodes sorted topologically (stable);
//   5. BatchNormalization folded into the Conv before it when the Conv's
//      output feeds only the BN and all parameters are initializers:
//      W'[c] = W[c] * g[c], b'[c] = (b[c] - mean[c]) * g[c] + beta[c] with
//      g[c] = scale[c] / sqrt(var[c] + epsilon); the Conv keeps its name and
//      writes the BN's output tensor;
//   6. initializers no node reads any more removed.
//
// GraphIndex answers, per tensor name: which node produces it, which read
// it, whether it is constant (an initializer or computed from initializers
// only), its element type where it can be told from the ops, whether it is a
// float activation, and whether it is non-negative by construction (Relu,
// Clip with min >= 0, pools/reshapes/Concat/Add of such).
//
// Thread safety: plain values, no shared state.
#pragma once

#include <onnx/onnx_pb.h>

#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace ppml::int8 {

struct PreparedModel {
  onnx::ModelProto model;
  // (BatchNormalization node, Conv node it was folded into), in graph order.
  std::vector<std::pair<std::string, std::string>> folded_batchnorms;
};

Result<PreparedModel> PrepareModel(std::string_view onnx_bytes);

// Drops initializers that no node reads and no graph output names (and their
// entries among the graph inputs, as IR < 4 models list them there).
void RemoveUnusedInitializers(onnx::GraphProto* graph);

// Ops that only move or select data: their output may share the input's
// quantization parameters exactly (data input 0, output 0).
bool IsDataMovementOp(const std::string& op);
// Ops whose activation inputs and outputs calibration observes.
bool IsObservedOp(const std::string& op);

class GraphIndex {
 public:
  explicit GraphIndex(const onnx::GraphProto& graph);

  // -1 for graph inputs, initializers and unknown names.
  int Producer(const std::string& tensor) const;
  const std::vector<int>& Consumers(const std::string& tensor) const;
  const onnx::TensorProto* Initializer(const std::string& tensor) const;
  bool IsConstant(const std::string& tensor) const { return constant_.count(tensor) > 0; }
  bool IsGraphInput(const std::string& tensor) const { return graph_inputs_.count(tensor) > 0; }
  bool IsGraphOutput(const std::string& tensor) const { return graph_outputs_.count(tensor) > 0; }
  // An ONNX TensorProto::DataType value; 0 (UNDEFINED) when it cannot be told.
  int ElemType(const std::string& tensor) const;
  // Not constant and of element type FLOAT.
  bool IsFloatActivation(const std::string& tensor) const;
  bool IsNonNegative(const std::string& tensor) const { return non_negative_.count(tensor) > 0; }

  // The float activations calibration records, in graph order.
  std::vector<std::string> ObservedTensors() const;

 private:
  const onnx::GraphProto& graph_;
  std::map<std::string, int> producer_;
  std::map<std::string, std::vector<int>> consumers_;
  std::map<std::string, const onnx::TensorProto*> initializers_;
  std::set<std::string> constant_, graph_inputs_, graph_outputs_, non_negative_;
  std::map<std::string, int> elem_type_;
};

// ----------------------------------------------- TensorProto helpers

// The values of a FLOAT initializer (raw_data or float_data). Other types,
// external data and size mismatches are errors naming the tensor.
Result<std::vector<float>> FloatValues(const onnx::TensorProto& tensor);
Shape DimsOf(const onnx::TensorProto& tensor);
// Sets data_type, dims and little-endian raw_data (clearing typed fields).
void SetFloatData(onnx::TensorProto* tensor, const Shape& dims, std::span<const float> values);
onnx::TensorProto MakeFloatTensor(const std::string& name, const Shape& dims, std::span<const float> values);
onnx::TensorProto MakeInt8Tensor(const std::string& name, const Shape& dims, std::span<const int8_t> values);
onnx::TensorProto MakeUint8Tensor(const std::string& name, const Shape& dims, std::span<const uint8_t> values);
onnx::TensorProto MakeInt32Tensor(const std::string& name, const Shape& dims, std::span<const int32_t> values);

// Attribute lookups with defaults.
int64_t IntAttr(const onnx::NodeProto& node, const std::string& name, int64_t fallback);
float FloatAttr(const onnx::NodeProto& node, const std::string& name, float fallback);

// The default-domain opset of a model; -1 when it imports none.
int64_t DefaultOpset(const onnx::ModelProto& model);

}  // namespace ppml::int8
