// The engine's graph IR: what the ONNX importer produces and the load-time
// passes (BatchNorm folding, post-op fusion) rewrite before planning.
// Internal to engine/. Not thread-safe; built once at load, read-only after.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "engine/engine.h"

namespace ppml::engine {

struct Attribute {
  std::variant<int64_t, float, std::string, std::vector<int64_t>, std::vector<float>, std::shared_ptr<Tensor>> value;
};

// Element-wise activation a fused op applies to its result (oneDNN post-op).
struct FusedEltwise {
  std::string op;  // ONNX op type: Relu, LeakyRelu, Clip, Sigmoid, Tanh, HardSwish...
  float alpha = 0.f;
  float beta = 0.f;
};

struct Node {
  std::string name;     // ONNX node name, or "<op>_<index>" when the file has none
  std::string op_type;
  std::vector<std::string> inputs;   // "" marks an omitted optional input
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attributes;
  int opset = 13;

  // Set by fusion passes: post-ops applied after the op, in order. A "sum"
  // (residual add) is recorded as the extra input `fused_sum_input`.
  std::vector<FusedEltwise> post_eltwise_before_sum;
  std::string fused_sum_input;
  std::vector<FusedEltwise> post_eltwise;
  // Names of the nodes fusion passes merged into this one, in graph order.
  std::vector<std::string> absorbed;

  bool HasAttr(const std::string& key) const { return attributes.count(key) > 0; }
  Result<int64_t> Int(const std::string& key) const;
  int64_t Int(const std::string& key, int64_t fallback) const;
  float Float(const std::string& key, float fallback) const;
  std::string String(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> Ints(const std::string& key, const std::vector<int64_t>& fallback = {}) const;
  std::vector<float> Floats(const std::string& key) const;
  const Tensor* TensorAttr(const std::string& key) const;
  // "node 'conv1' (Conv)" for error messages.
  std::string Describe() const;
  // The i-th input name, "" when absent.
  const std::string& Input(size_t i) const;
};

// Linear quantization: real = scale * (q - zero_point), q of type dtype.
struct QuantParams {
  float scale = 1.f;
  int32_t zero_point = 0;
  DataType dtype = DataType::kU8;
  bool operator==(const QuantParams&) const = default;
};

// An integer constant behind a DequantizeLinear (quantized weights or bias),
// per-axis or per-tensor (a single scale).
struct QuantizedConstant {
  std::string values;  // the integer constant's name in Graph
  DataType dtype = DataType::kS8;
  std::vector<float> scales;
  std::vector<int32_t> zero_points;
  int64_t axis = 0;
};

struct GraphValue {
  std::string name;
  DataType dtype = DataType::kF32;
  Shape shape;  // -1 for a symbolic dimension
};

// A constant whose bytes live in the WeightStore, not in memory: an
// initializer stored as external data, or a large constant moved there when
// the model offloads its weights.
struct OffloadedConstant {
  DataType dtype = DataType::kF32;
  Shape shape;
  std::string location;    // external data location, until the store holds it under `handle`
  std::optional<uint64_t> handle;
  size_t bytes() const { return static_cast<size_t>(ElementCount(shape)) * ElementSize(dtype); }
};

// Where a graph's constants live and whom they are accounted to.
struct ConstantEnv {
  MemoryBudget* budget = nullptr;
  WeightStore* store = nullptr;
  bool offload = false;          // keep constants of at least min_bytes in the store
  size_t offload_min_bytes = 64 * 1024;
};

struct Graph {
  std::string name;
  int opset = 13;
  std::vector<GraphValue> inputs;   // runtime inputs only (initializers excluded)
  std::vector<GraphValue> outputs;
  std::map<std::string, std::shared_ptr<Tensor>> constants;  // resident initializers and Constant nodes
  std::map<std::string, OffloadedConstant> offloaded;        // constants kept in env.store
  ConstantEnv env;
  LinearDelegate* linear_delegate = nullptr;  // EngineOptions::linear_delegate
  bool winograd = true;                       // EngineOptions::winograd
  bool fuse_depthwise = true;                 // EngineOptions::fuse_depthwise
  bool profile = false;                       // EngineOptions::profile
  std::vector<Node> nodes;  // topologically sorted

  // QDQ models (see passes.h, CollapseQdqPairs): float tensors the model says
  // to hold quantized (a QuantizeLinear -> DequantizeLinear pair collapsed),
  // and the integer constants behind DequantizeLinear outputs.
  std::map<std::string, QuantParams> activation_quant;
  std::map<std::string, QuantizedConstant> quantized_constants;

  bool IsConstant(const std::string& value) const { return constants.count(value) || offloaded.count(value); }
  // The constant's data, null when `value` is not a constant. An offloaded
  // constant is fetched from the store into accounted memory that lives as
  // long as the caller holds it; a fetch or budget failure throws StatusError.
  std::shared_ptr<const Tensor> Constant(const std::string& value) const;
  // Adds or replaces a constant; with offloading, a large one goes straight to
  // the store (throws StatusError when it or the budget fails).
  void SetConstant(const std::string& name, Tensor value);
  // Makes `alias` name the same constant as `name`.
  void AliasConstant(const std::string& alias, const std::string& name);
  void EraseConstant(const std::string& name);
  // Element type and shape without fetching; false when not a constant.
  bool ConstantInfo(const std::string& value, DataType* dtype, Shape* shape) const;
};

}  // namespace ppml::engine
