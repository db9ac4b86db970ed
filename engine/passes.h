// Load-time graph rewrites. Internal to engine/.
#pragma once

#include "common/status.h"
#include "engine/graph.h"

namespace ppml::engine {

struct PassStats {
  int folded_batchnorms = 0;
  int fused_post_ops = 0;
};

// Conv -> BatchNormalization (inference form, constant parameters) becomes one
// Conv with scaled weights and a new bias.
Status FoldBatchNorms(Graph& graph, PassStats* stats);

// Conv/Gemm/MatMul followed by an activation, and Conv followed by Add (a
// residual) and an activation, become one node with oneDNN post-ops. Only when
// the intermediate value has no other reader and is not a graph output.
Status FusePostOps(Graph& graph, PassStats* stats);

}  // namespace ppml::engine
