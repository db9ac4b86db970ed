// Load-time graph rewrites. Internal to engine/.
#pragma once

#include "common/status.h"
#include "engine/graph.h"

namespace ppml::engine {

struct PassStats {
  int folded_batchnorms = 0;
  int fused_post_ops = 0;
};

// Identity/Dropout of a constant becomes the constant itself (exporters
// alias deduplicated initializers that way, hiding them from other passes).
Status PropagateConstantIdentities(Graph& graph);

// Conv -> BatchNormalization (inference form, constant parameters) becomes one
// Conv with scaled weights and a new bias.
Status FoldBatchNorms(Graph& graph, PassStats* stats);

// Conv/Gemm/MatMul followed by an activation, and Conv followed by Add (a
// residual) and an activation, become one node with oneDNN post-ops. Only when
// the intermediate value has no other reader and is not a graph output.
Status FusePostOps(Graph& graph, PassStats* stats);

// QDQ models. QLinearConv, QLinearMatMul, ConvInteger and MatMulInteger are
// rewritten as DequantizeLinear -> Conv/MatMul -> QuantizeLinear. Then each
// QuantizeLinear whose every reader is a DequantizeLinear with the same
// (scalar) parameters is removed with them: the float tensor is annotated
// in Graph::activation_quant and the planner keeps it in that quantized form
// between int8-aware ops. The integer constants behind DequantizeLinear nodes
// are recorded in Graph::quantized_constants for the INT8 kernels.
Status DecomposeQLinearOps(Graph& graph);
Status CollapseQdqPairs(Graph& graph);

}  // namespace ppml::engine
