// The op registry: one builder per ONNX op type, turning a node into plan
// steps (see plan.h). Builders live in ops_*.cc grouped by kind. Internal.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/graph.h"

namespace ppml::engine {

class PlanBuilder;
using OpBuilder = Status (*)(const Node& node, PlanBuilder& builder);

// Each ops_*.cc registers its builders through one of these. A builder that
// is not `int8_aware` sees every quantized input dequantized to float.
struct OpEntry {
  const char* op_type;
  OpBuilder builder;
  bool int8_aware = false;
};

// nullptr when the op type is not supported.
const OpEntry* FindOp(const std::string& op_type);
std::vector<OpEntry> ConvOps();       // Conv, ConvTranspose
std::vector<OpEntry> ElementwiseOps();  // activations, binary arithmetic, BatchNormalization
// Of those, the activations and unary functions run as oneDNN eltwise
// (Erf and Not are apart), and the ops that combine their inputs element by
// element with NumPy broadcasting (arithmetic, comparisons, logic).
const std::vector<const char*>& UnaryElementwiseOps();
const std::vector<const char*>& BroadcastingElementwiseOps();
std::vector<OpEntry> LinearOps();     // Gemm, MatMul
std::vector<OpEntry> PoolingOps();    // pools, Softmax, Concat
std::vector<OpEntry> ShapeOps();      // Reshape & co, Transpose, Gather, Pad, Slice, Cast, ...
std::vector<OpEntry> QuantOps();      // QuantizeLinear, DequantizeLinear

// Whether a plan for `graph` at `batch` runs some FP32 convolution in
// Winograd: oneDNN has the kernel on this CPU (AVX-512), the graph allows it
// and has a layer of the shape the engine asks Winograd for.
bool PlansWinograd(const Graph& graph, int64_t batch);

// The float output of a DequantizeLinear of integer constant `q` (the same
// arithmetic as the op), accounted in the graph's budget as constant `name`.
// Throws StatusError.
std::shared_ptr<const Tensor> DequantizeConstant(const Graph& graph, const QuantizedConstant& q,
                                                 const std::string& name);

}  // namespace ppml::engine
