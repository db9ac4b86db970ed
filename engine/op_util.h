// Helpers shared by the op builders (ops_*.cc). Internal to engine/.
#pragma once

#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "common/status.h"
#include "engine/graph.h"
#include "engine/plan.h"
#include "engine/reference_ops.h"

namespace ppml::engine {

// One oneDNN eltwise operation: dst = f(src; alpha, beta).
struct EltwiseStep {
  dnnl::algorithm algorithm;
  float alpha = 0.f;
  float beta = 0.f;
};

// The oneDNN eltwise chain computing an ONNX activation (HardSigmoid needs two).
Result<std::vector<EltwiseStep>> EltwiseStepsFor(const FusedEltwise& activation);

// Post-ops of a fused node: activations before the residual, the residual
// (as an in-place sum, or a broadcasting binary add reading `binary_desc`,
// whose post-op index goes to *binary_index), activations after.
enum class ResidualPostOp { kNone, kSum, kBinaryAdd };
Result<dnnl::post_ops> PostOpsFor(const Node& node, ResidualPostOp residual, const dnnl::memory::desc& binary_desc,
                                  int* binary_index);

// Spatial output size and padding of a windowed op (Conv, pooling) along one axis.
struct WindowAxis {
  int64_t out = 0;
  int64_t pad_begin = 0;
  int64_t pad_end = 0;
};
// auto_pad: NOTSET (explicit pads), SAME_UPPER, SAME_LOWER, VALID. `ceil_mode` for pooling.
Result<WindowAxis> ComputeWindow(int64_t in, int64_t kernel, int64_t stride, int64_t dilation, int64_t pad_begin,
                                 int64_t pad_end, const std::string& auto_pad, bool ceil_mode);

// Window attributes (kernel from `kernel`, strides, dilations, pads, auto_pad)
// resolved for an input of spatial shape `spatial`.
struct Window {
  dnnl::memory::dims kernel, strides, dilations_minus_one, pad_begin, pad_end;
  Shape out;
};
Result<Window> ResolveWindow(const PlanBuilder& b, const Shape& spatial, const std::vector<int64_t>& kernel,
                             bool ceil_mode);

// Views on a plain value while a plan runs, for reference kernels.
inline ref::ConstView ConstViewOf(const RunContext& c, ValueId id) {
  const PlanValue& v = c.Value(id);
  return {v.dtype, v.shape, c.Data(id)};
}
inline ref::MutView MutViewOf(const RunContext& c, ValueId id) {
  const PlanValue& v = c.Value(id);
  return {v.dtype, v.shape, c.Data(id)};
}

}  // namespace ppml::engine
