// Load-time graph rewrites. Internal to engine/.
#pragma once

#include "common/status.h"
#include "engine/graph.h"

namespace ppml::engine {

struct PassStats {
  int folded_batchnorms = 0;
  int fused_post_ops = 0;
  int fused_layer_norms = 0;
  int fused_gelus = 0;
  int fused_gated_activations = 0;
};

// Identity/Dropout of a constant becomes the constant itself (exporters
// alias deduplicated initializers that way, hiding them from other passes).
Status PropagateConstantIdentities(Graph& graph);

// Nodes computed from constants alone (the DequantizeLinear of a QDQ
// model's weights, which exporters place just before their reader) move to
// the front, keeping their order: every layer's weights are then defined
// when the planner reaches the layer before it (see TryBuildWithDepthwise).
Status HoistConstantNodes(Graph& graph);

// Conv -> BatchNormalization (inference form, constant parameters) becomes one
// Conv with scaled weights and a new bias.
Status FoldBatchNorms(Graph& graph, PassStats* stats);

// Layer normalization as exporters decompose it before opset 17
// (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div [, Mul scale] [, Add
// bias] over trailing axes) becomes one LayerNormalization (oneDNN), a
// missing scale meaning ones.
Status FuseLayerNorms(Graph& graph, PassStats* stats);

// GELU as exporters decompose it before opset 20 (x * 0.5 * (1 + Erf(x /
// sqrt 2)), in the orders torch and others write) becomes one Gelu, which
// FusePostOps can then fold into the layer before it.
Status FuseGelus(Graph& graph, PassStats* stats);

// x * HardSigmoid(x) with HardSwish's constants (alpha 1/6, beta 1/2)
// becomes one HardSwish, x * Sigmoid(x) one Swish (SiLU), as exporters
// write MobileNetV3's and EfficientNet's activations; FusePostOps can then
// fold them into the layer before, which has x's other reader no more.
Status FuseGatedActivations(Graph& graph, PassStats* stats);

// Conv/Gemm/MatMul followed by an activation, and Conv followed by Add (a
// residual) and an activation, become one node with oneDNN post-ops; a
// MatMul or Gemm with constant weights also takes a following Add of one
// constant per column as its bias (for MatMul a third input). Only when
// the intermediate value has no other reader and is not a graph output.
// Without `residual_sums` the residual Adds stay apart (FusedOutputs).
Status FusePostOps(Graph& graph, PassStats* stats, bool residual_sums = true);

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
