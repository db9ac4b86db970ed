#include "engine/op_util.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>

namespace ppml::engine {

using dnnl::algorithm;

Result<std::vector<EltwiseStep>> EltwiseStepsFor(const FusedEltwise& a) {
  const std::string& op = a.op;
  if (op == "Relu") return std::vector<EltwiseStep>{{algorithm::eltwise_relu, 0.f, 0.f}};
  if (op == "LeakyRelu") return std::vector<EltwiseStep>{{algorithm::eltwise_relu, a.alpha, 0.f}};
  if (op == "Sigmoid") return std::vector<EltwiseStep>{{algorithm::eltwise_logistic, 0.f, 0.f}};
  if (op == "Tanh") return std::vector<EltwiseStep>{{algorithm::eltwise_tanh, 0.f, 0.f}};
  if (op == "HardSwish") return std::vector<EltwiseStep>{{algorithm::eltwise_hardswish, 0.f, 0.f}};
  if (op == "HardSigmoid") {
    return std::vector<EltwiseStep>{{algorithm::eltwise_linear, a.alpha, a.beta}, {algorithm::eltwise_clip, 0.f, 1.f}};
  }
  if (op == "Clip") return std::vector<EltwiseStep>{{algorithm::eltwise_clip, a.alpha, a.beta}};
  if (op == "Elu") return std::vector<EltwiseStep>{{algorithm::eltwise_elu, a.alpha, 0.f}};
  if (op == "Selu") {
    return std::vector<EltwiseStep>{{algorithm::eltwise_elu, a.alpha, 0.f}, {algorithm::eltwise_linear, a.beta, 0.f}};
  }
  if (op == "Exp") return std::vector<EltwiseStep>{{algorithm::eltwise_exp, 0.f, 0.f}};
  if (op == "Log") return std::vector<EltwiseStep>{{algorithm::eltwise_log, 0.f, 0.f}};
  if (op == "Abs") return std::vector<EltwiseStep>{{algorithm::eltwise_abs, 0.f, 0.f}};
  if (op == "Sqrt") return std::vector<EltwiseStep>{{algorithm::eltwise_sqrt, 0.f, 0.f}};
  if (op == "Neg") return std::vector<EltwiseStep>{{algorithm::eltwise_linear, -1.f, 0.f}};
  if (op == "Reciprocal") return std::vector<EltwiseStep>{{algorithm::eltwise_pow, 1.f, -1.f}};
  if (op == "Softplus") return std::vector<EltwiseStep>{{algorithm::eltwise_soft_relu, 0.f, 0.f}};
  if (op == "Swish") return std::vector<EltwiseStep>{{algorithm::eltwise_swish, a.alpha, 0.f}};
  if (op == "Mish") return std::vector<EltwiseStep>{{algorithm::eltwise_mish, 0.f, 0.f}};
  if (op == "Identity") return std::vector<EltwiseStep>{{algorithm::eltwise_linear, 1.f, 0.f}};
  // alpha 1: the tanh approximation (ONNX approximate="tanh").
  if (op == "Gelu") {
    return std::vector<EltwiseStep>{{a.alpha == 1.f ? algorithm::eltwise_gelu_tanh : algorithm::eltwise_gelu_erf, 0.f, 0.f}};
  }
  return Status::Unsupported("activation " + op + " has no oneDNN eltwise equivalent");
}

namespace {

// The step that computes f(s·x)/s, for an accumulator in units of the
// destination scale s, when one step can: ReLU (and leaky ReLU) as it is,
// a clip or a linear map with its constants moved into those units.
std::optional<EltwiseStep> InDestinationUnits(const EltwiseStep& s, float dst_scale) {
  if (dst_scale == 1.f || s.algorithm == algorithm::eltwise_relu) return s;
  if (s.algorithm == algorithm::eltwise_clip || s.algorithm == algorithm::eltwise_clip_v2) {
    return EltwiseStep{s.algorithm, s.alpha / dst_scale, s.beta / dst_scale};
  }
  if (s.algorithm == algorithm::eltwise_linear) return EltwiseStep{s.algorithm, s.alpha, s.beta / dst_scale};
  return std::nullopt;
}

bool Uses(const std::vector<EltwiseStep>& steps, algorithm alg) {
  return std::any_of(steps.begin(), steps.end(), [alg](const EltwiseStep& s) { return s.algorithm == alg; });
}

}  // namespace

Result<std::vector<EltwiseStep>> StepsOf(const std::vector<FusedEltwise>& activations) {
  std::vector<EltwiseStep> steps;
  for (const auto& e : activations) {
    PPML_ASSIGN_OR_RETURN(auto more, EltwiseStepsFor(e));
    steps.insert(steps.end(), more.begin(), more.end());
  }
  return steps;
}

bool RepeatsAnAlgorithm(const std::vector<EltwiseStep>& steps) {
  std::set<algorithm> seen;
  for (const EltwiseStep& s : steps) {
    if (!seen.insert(s.algorithm).second) return true;
  }
  return false;
}

bool RepeatsAnEltwise(const dnnl::post_ops& ops) {
  std::vector<EltwiseStep> steps;
  for (int i = 0; i < ops.len(); ++i) {
    if (ops.kind(i) != dnnl::primitive::kind::eltwise) continue;
    float scale;
    EltwiseStep s;
    ops.get_params_eltwise(i, scale, s.algorithm, s.alpha, s.beta);
    steps.push_back(s);
  }
  return RepeatsAnAlgorithm(steps);
}

Result<dnnl::post_ops> PostOpsFor(const Node& node, PostOpsSpec& spec, int* binary_index) {
  PPML_ASSIGN_OR_RETURN(std::vector<EltwiseStep> before, StepsOf(node.post_eltwise_before_sum));
  PPML_ASSIGN_OR_RETURN(std::vector<EltwiseStep> after, StepsOf(node.post_eltwise));
  std::vector<EltwiseStep> scaled_before, scaled_after;
  spec.real_units = false;
  for (auto [steps, scaled] : {std::pair{&before, &scaled_before}, std::pair{&after, &scaled_after}}) {
    for (const EltwiseStep& s : *steps) {
      auto in_units = InDestinationUnits(s, spec.dst_scale);
      if (!in_units) spec.real_units = true;
      else scaled->push_back(*in_units);
    }
  }
  if (!spec.real_units) {
    before = std::move(scaled_before);
    after = std::move(scaled_after);
  }
  dnnl::post_ops ops;
  for (const EltwiseStep& s : before) ops.append_eltwise(1.f, s.algorithm, s.alpha, s.beta);
  if (spec.residual == ResidualPostOp::kSum) {
    ops.append_sum(spec.real_units ? spec.sum_scale * spec.dst_scale : spec.sum_scale, spec.sum_type);
  }
  if (spec.residual == ResidualPostOp::kBinaryAdd) {
    *binary_index = ops.len();
    ops.append_binary(algorithm::binary_add, spec.binary_desc);
  }
  for (const EltwiseStep& s : after) ops.append_eltwise(1.f, s.algorithm, s.alpha, s.beta);
  if (spec.real_units) {
    // alpha * x^1 is a product as exact as a linear map's, under another
    // algorithm than the activations' own linear steps.
    const bool has_linear = Uses(before, algorithm::eltwise_linear) || Uses(after, algorithm::eltwise_linear);
    ops.append_eltwise(1.f, has_linear ? algorithm::eltwise_pow : algorithm::eltwise_linear, 1.f / spec.dst_scale,
                       has_linear ? 1.f : 0.f);
  }
  if (RepeatsAnEltwise(ops)) {
    return Status::Unsupported(node.Describe() + ": its fused activations repeat a oneDNN eltwise algorithm");
  }
  return ops;
}

const QuantizedConstant* Int8Weights(const PlanBuilder& b, const std::string& name, int64_t axis,
                                     int64_t channels) {
  auto it = b.graph().quantized_constants.find(name);
  if (it == b.graph().quantized_constants.end()) return nullptr;
  const QuantizedConstant& q = it->second;
  if (q.dtype != DataType::kS8) return nullptr;
  if (q.scales.size() != 1 && (q.axis != axis || static_cast<int64_t>(q.scales.size()) != channels)) return nullptr;
  for (int32_t zp : q.zero_points) {
    if (zp != 0) return nullptr;
  }
  return &q;
}

std::optional<QuantParams> SymmetricQuant(const PlanBuilder& b, const std::string& name) {
  auto it = b.graph().activation_quant.find(name);
  if (it == b.graph().activation_quant.end() || it->second.zero_point != 0) return std::nullopt;
  return it->second;
}

std::vector<float> OutputScales(float src_scale, std::span<const float> weight_scales, float dst_scale) {
  std::vector<float> scales;
  for (float s : weight_scales) scales.push_back(src_scale * s / dst_scale);
  return scales;
}

Result<WindowAxis> ComputeWindow(int64_t in, int64_t kernel, int64_t stride, int64_t dilation, int64_t pad_begin,
                                 int64_t pad_end, const std::string& auto_pad, bool ceil_mode) {
  if (kernel < 1 || stride < 1 || dilation < 1) {
    return Status::InvalidArgument("kernel, strides and dilations must be positive");
  }
  const int64_t extent = (kernel - 1) * dilation + 1;
  WindowAxis w;
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    w.out = (in + stride - 1) / stride;
    const int64_t total = std::max<int64_t>(0, (w.out - 1) * stride + extent - in);
    const int64_t small = total / 2;
    w.pad_begin = auto_pad == "SAME_UPPER" ? small : total - small;
    w.pad_end = total - w.pad_begin;
    return w;
  }
  if (auto_pad == "VALID") {
    pad_begin = pad_end = 0;
  } else if (auto_pad != "NOTSET" && !auto_pad.empty()) {
    return Status::Unsupported("auto_pad '" + auto_pad + "'");
  }
  const int64_t span = in + pad_begin + pad_end - extent;
  if (span < 0) return Status::InvalidArgument("the window is larger than the padded input");
  w.out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  // ceil_mode: the last window must start inside the input or the begin padding.
  if (ceil_mode && (w.out - 1) * stride >= in + pad_begin) --w.out;
  w.pad_begin = pad_begin;
  // oneDNN derives the output size from the padding (rounding down), so in
  // ceil mode extend the end padding to cover the last window.
  w.pad_end = ceil_mode ? std::max(pad_end, (w.out - 1) * stride + extent - in - pad_begin) : pad_end;
  return w;
}

Result<Window> ResolveWindow(const PlanBuilder& b, const Shape& spatial, const std::vector<int64_t>& kernel,
                             bool ceil_mode) {
  return ResolveWindow(b, b.node(), spatial, kernel, ceil_mode);
}

bool AllEqual(const dnnl::memory::dims& values, int64_t x) {
  return std::all_of(values.begin(), values.end(), [x](int64_t e) { return e == x; });
}

bool IsUnitWindow(const Window& window) {
  return AllEqual(window.strides, 1) && AllEqual(window.dilations_minus_one, 0);
}

Result<Window> ResolveWindow(const PlanBuilder& b, const Node& n, const Shape& spatial,
                             const std::vector<int64_t>& kernel, bool ceil_mode) {
  const size_t r = spatial.size();
  if (kernel.size() != r) return b.Error("kernel rank does not match the input's spatial rank");
  const auto strides = n.Ints("strides", std::vector<int64_t>(r, 1));
  const auto dilations = n.Ints("dilations", std::vector<int64_t>(r, 1));
  const auto pads = n.Ints("pads", std::vector<int64_t>(2 * r, 0));
  if (strides.size() != r || dilations.size() != r || pads.size() != 2 * r) {
    return b.Error("strides, dilations or pads have the wrong length for a " + std::to_string(r) + "-D window");
  }
  const std::string auto_pad = n.String("auto_pad", "NOTSET");
  Window w;
  for (size_t i = 0; i < r; ++i) {
    auto axis = ComputeWindow(spatial[i], kernel[i], strides[i], dilations[i], pads[i], pads[i + r], auto_pad,
                              ceil_mode);
    if (!axis.ok()) return Status(axis.status().code(), n.Describe() + ": " + axis.status().message());
    w.kernel.push_back(kernel[i]);
    w.strides.push_back(strides[i]);
    w.dilations_minus_one.push_back(dilations[i] - 1);
    w.pad_begin.push_back(axis->pad_begin);
    w.pad_end.push_back(axis->pad_end);
    w.out.push_back(axis->out);
  }
  return w;
}

Result<bool> TryDelegateLinear(PlanBuilder& b, const LinearLayer& layer, ValueId x) {
  LinearDelegate* delegate = b.graph().linear_delegate;
  const Node& n = b.node();
  if (!delegate || !n.post_eltwise_before_sum.empty() || !n.post_eltwise.empty() || !n.fused_sum_input.empty()) {
    return false;
  }
  PPML_ASSIGN_OR_RETURN(int id, delegate->Adopt(layer));
  if (id < 0) return false;
  const ValueId in = b.Plain(x);
  const ValueId out = b.DefinePlainOutput(0, DataType::kF32, layer.output_shape);
  b.AddCustom([delegate, id, in, out](const RunContext& c) -> Status {
    const PlanValue& iv = c.Value(in);
    const PlanValue& ov = c.Value(out);
    return delegate->Run(id, std::span<const float>(static_cast<const float*>(c.Data(in)), ElementCount(iv.shape)),
                         iv.shape, std::span<float>(static_cast<float*>(c.Data(out)), ElementCount(ov.shape)),
                         ov.shape);
  });
  const Shape& w = layer.weights->shape();
  b.CountMacs(ElementCount(layer.output_shape) * ElementCount(w) / w[0]);
  return true;
}

}  // namespace ppml::engine
