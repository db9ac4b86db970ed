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
// (an in-place sum, or a broadcasting binary add reading `binary_desc`),
// activations after. With an INT8 destination the accumulator is in units of
// `dst_scale` when every activation step can run in those units (ReLU, a
// clip or linear map with its constants rescaled); otherwise PostOpsFor sets
// `real_units`: the caller's output scales leave dst_scale out, the
// activations run on real values and one last step divides by dst_scale.
// oneDNN 2.6's brgemm kernels give every eltwise post-op of one algorithm
// the parameters of the first (a second linear map scales by the first's
// alpha), so no chain PostOpsFor builds repeats an algorithm; callers that
// append more steps check with RepeatsAnEltwise.
enum class ResidualPostOp { kNone, kSum, kBinaryAdd };
struct PostOpsSpec {
  ResidualPostOp residual = ResidualPostOp::kNone;
  float sum_scale = 1.f;
  dnnl::memory::data_type sum_type = dnnl::memory::data_type::undef;  // reinterpretation of dst
  dnnl::memory::desc binary_desc;
  float dst_scale = 1.f;
  bool real_units = false;  // set by PostOpsFor
  // What the output scales divide by.
  float accumulator_scale() const { return real_units ? 1.f : dst_scale; }
};
// *binary_index receives the index of the binary post-op (when there is one).
Result<dnnl::post_ops> PostOpsFor(const Node& node, PostOpsSpec& spec, int* binary_index);
// The eltwise steps of a node's fused activations, in order.
Result<std::vector<EltwiseStep>> StepsOf(const std::vector<FusedEltwise>& activations);
// Whether two steps, or two eltwise post-ops of `ops`, share an algorithm
// (see PostOpsSpec).
bool RepeatsAnAlgorithm(const std::vector<EltwiseStep>& steps);
bool RepeatsAnEltwise(const dnnl::post_ops& ops);

// The INT8 form of a linear op's weights: a per-output-channel (or per-tensor)
// symmetric s8 constant behind a DequantizeLinear, with the channel `axis`
// expected for the op; nullptr when the weights are not in that form.
const QuantizedConstant* Int8Weights(const PlanBuilder& b, const std::string& name, int64_t axis,
                                     int64_t channels);
// The quantization the model annotates `name` with, when symmetric and 8-bit.
std::optional<QuantParams> SymmetricQuant(const PlanBuilder& b, const std::string& name);
// Per-channel requantization scales: src_scale * weight_scale[c] / dst_scale.
std::vector<float> OutputScales(float src_scale, std::span<const float> weight_scales, float dst_scale);

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
// The same for the attributes of `node` (a node other than the one being built).
Result<Window> ResolveWindow(const PlanBuilder& b, const Node& node, const Shape& spatial,
                             const std::vector<int64_t>& kernel, bool ceil_mode);
// Whether every stride and dilation is 1.
bool IsUnitWindow(const Window& window);
// Whether every element of `values` is `x`.
bool AllEqual(const dnnl::memory::dims& values, int64_t x);

// Hands the node to the graph's LinearDelegate (engine.h) when there is one
// and it adopts `layer` (weights and bias must be set by the caller): the
// delegate then reads `x` plain and writes the node's output 0 plain.
// Returns whether it did.
Result<bool> TryDelegateLinear(PlanBuilder& b, const LinearLayer& layer, ValueId x);

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
