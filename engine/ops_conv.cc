// Conv and ConvTranspose on oneDNN, with fused bias, activations and residual sum.
#include <algorithm>

#include "engine/op_util.h"
#include "engine/ops.h"

namespace ppml::engine {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

// Weights dims as oneDNN wants them: grouped weights get a leading group axis.
memory::dims WeightDims(const Shape& w, int64_t group, bool transposed) {
  memory::dims dims(w.begin(), w.end());
  if (group == 1) return dims;
  // Conv: [O, I/g, k..] -> [g, O/g, I/g, k..]. ConvTranspose: [I, O/g, k..] -> [g, O/g, I/g, k..].
  memory::dims grouped = {group};
  if (transposed) {
    grouped.push_back(w[1]);
    grouped.push_back(w[0] / group);
  } else {
    grouped.push_back(w[0] / group);
    grouped.push_back(w[1]);
  }
  grouped.insert(grouped.end(), w.begin() + 2, w.end());
  return grouped;
}

// Plain layout of ONNX weights seen through `dims` (ConvTranspose stores I before O).
memory::desc SourceWeightDesc(const memory::dims& dims, int64_t group, bool transposed) {
  if (!transposed) return PlainDesc(DataType::kF32, Shape(dims.begin(), dims.end()));
  // ONNX ConvTranspose weights are [I, O/g, k..] = [g, I/g, O/g, k..] in memory;
  // oneDNN wants logical [g, O/g, I/g, k..] (or [O, I, k..] without groups).
  const size_t spatial = dims.size() - (group == 1 ? 2 : 3);
  int64_t k = 1;
  for (size_t i = dims.size() - spatial; i < dims.size(); ++i) k *= dims[i];
  memory::dims strides(dims.size(), 1);
  for (int i = static_cast<int>(dims.size()) - 2; i >= static_cast<int>(dims.size() - spatial); --i) {
    strides[i] = strides[i + 1] * dims[i + 1];
  }
  const size_t o = group == 1 ? 0 : 1;  // position of the O axis
  const int64_t o_count = dims[o], i_count = dims[o + 1];
  strides[o] = k;                        // O/g is the inner of the two
  strides[o + 1] = k * o_count;          // I/g
  if (group > 1) strides[0] = k * o_count * i_count;
  return memory::desc(dims, memory::data_type::f32, strides);
}

struct ConvParts {
  ValueId x, w, bias;
  int64_t group;
  Shape w_shape;
};

// `x` is the input as the caller wants it (quantized for INT8, float otherwise).
Result<ConvParts> ReadConvInputs(const Node& n, PlanBuilder& b, ValueId x_value) {
  ConvParts p{x_value, b.Input(1), b.Input(2), n.Int("group", 1), {}};
  if (p.x == kNoValue || p.w == kNoValue) return b.Error("needs inputs X and W");
  const PlanValue& x = b.Value(p.x);
  const PlanValue& w = b.Value(p.w);
  if (w.dtype != DataType::kF32 || (x.dtype != DataType::kF32 && !x.quant)) return b.Unsupported("only float tensors");
  if (x.shape.size() < 3 || x.shape.size() > 5) return b.Unsupported("only 1-D, 2-D and 3-D convolutions");
  if (w.shape.size() != x.shape.size()) return b.Error("W rank " + std::to_string(w.shape.size()) + " != X rank");
  if (p.group < 1) return b.Error("group must be positive");
  if (!b.IsConstant(p.w) && p.group != 1) return b.Unsupported("grouped convolution with run-time weights");
  p.w_shape = w.shape;
  return p;
}

memory WeightMemoryOrArg(PlanBuilder& b, const ConvParts& p, const memory::desc& source, const memory::desc& wanted,
                         std::vector<std::pair<int, ValueId>>& args) {
  if (b.IsConstant(p.w)) return b.ConstantMemory(p.w, source, wanted);
  args.push_back({DNNL_ARG_WEIGHTS, b.InLayout(p.w, wanted)});
  return memory();
}

// Binds bias (constant or run time) into args.
void BindBias(PlanBuilder& b, ValueId bias, const memory::desc& wanted, std::vector<std::pair<int, ValueId>>& args,
              std::unordered_map<int, memory>& fixed) {
  if (bias == kNoValue) return;
  if (b.IsConstant(bias)) {
    fixed[DNNL_ARG_BIAS] = b.ConstantMemory(bias, wanted);
  } else {
    args.push_back({DNNL_ARG_BIAS, b.InLayout(bias, wanted)});
  }
}

// Where Winograd pays, when oneDNN has a kernel for it: FP32 3x3 layers with
// constant weights, stride and dilation 1, no groups, a batch of 2 or more
// (at 1 it loses on large images) and at least 16 input channels: its
// transforms cost per channel what the product saves per pair of channels,
// so first layers lose (AVX-512, batch 16-32, ms per batch, Winograd against
// direct: 1 channel 0.56 against 0.13, VGG16's 3 channels 31.5 against 13.1;
// 32 channels 1.51 against 1.71).
constexpr int64_t kWinogradMinInputChannels = 16;
constexpr int64_t kWinogradChannelBlock = 16;  // oneDNN's Winograd layout: nChw16c
bool IsWinogradShape(int64_t group, const Shape& w_shape, bool unit_strides_and_dilations, int64_t batch) {
  return group == 1 && w_shape.size() == 4 && w_shape[1] >= kWinogradMinInputChannels && w_shape[2] == 3 &&
         w_shape[3] == 3 && unit_strides_and_dilations && batch >= 2;
}

bool WantsWinograd(const PlanBuilder& b, bool int8, const ConvParts& p, const Window& win, int64_t batch) {
  return b.graph().winograd && !int8 && b.IsConstant(p.w) &&
         IsWinogradShape(p.group, p.w_shape, IsUnitWindow(win), batch);
}

// Beside Winograd layers (16-channel blocks only), the other FP32 layers
// take 16-channel blocks too, rather than channels-last, which oneDNN's
// brgemm kernels pick and which costs a reorder before and after each
// Winograd layer (ResNet-50 +9%, DenseNet-121 +19%; grouped ones would
// go to reference code).
bool TakesChannelBlocks(const PlanBuilder& b, bool int8, int64_t group, const Shape& in, const Shape& out) {
  return b.ChannelBlockedConvs() && !int8 && group == 1 && in.size() == 4 && in[1] % kWinogradChannelBlock == 0 &&
         out[1] % kWinogradChannelBlock == 0;
}

dnnl::convolution_forward::desc ConvDesc(dnnl::algorithm algorithm, const memory::desc& src,
                                         const memory::desc& weights, const memory::desc* bias,
                                         const memory::desc& dst, const Window& win) {
  constexpr auto kInference = dnnl::prop_kind::forward_inference;
  return bias ? dnnl::convolution_forward::desc(kInference, algorithm, src, weights, *bias, dst, win.strides,
                                                win.dilations_minus_one, win.pad_begin, win.pad_end)
              : dnnl::convolution_forward::desc(kInference, algorithm, src, weights, dst, win.strides,
                                                win.dilations_minus_one, win.pad_begin, win.pad_end);
}

memory::desc LayerDesc(DataType type, const Shape& shape, bool blocked) {
  return blocked ? memory::desc(ToDims(shape), DnnlType(type), tag::aBcd16b) : AnyDesc(type, shape);
}

// oneDNN 2.6 has FP32 Winograd on AVX-512 only: asked once, on a small layer.
bool OneDnnHasWinograd() {
  static const bool has = [] {
    const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    const memory::desc src({2, 16, 8, 8}, memory::data_type::f32, tag::any);
    const memory::desc weights({16, 16, 3, 3}, memory::data_type::f32, tag::any);
    const dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference,
                                               dnnl::algorithm::convolution_winograd, src, weights, src, {1, 1},
                                               {1, 1}, {1, 1});
    return static_cast<bool>(dnnl::convolution_forward::primitive_desc(desc, dnnl::primitive_attr(), engine, true));
  }();
  return has;
}

// How a convolution runs in INT8: the model holds its input quantized
// (symmetric), its weights are s8 per output channel, and, when the output is
// annotated too, the primitive writes the quantized output directly.
struct Int8Conv {
  const QuantizedConstant* weights = nullptr;
  QuantParams src;
  std::optional<QuantParams> dst;
};

std::optional<Int8Conv> PlanInt8(const Node& n, PlanBuilder& b, ValueId x_raw) {
  const PlanValue& x = b.Value(x_raw);
  if (!x.quant || x.quant->zero_point != 0 || (b.RawInput(2) != kNoValue && !b.IsConstant(b.RawInput(2)))) {
    return std::nullopt;
  }
  if (b.RawInput(1) == kNoValue) return std::nullopt;
  const Shape& w_shape = b.Value(b.RawInput(1)).shape;
  if (w_shape.empty()) return std::nullopt;
  const QuantizedConstant* w = Int8Weights(b, n.Input(1), 0, w_shape[0]);
  if (!w) return std::nullopt;
  return Int8Conv{w, *x.quant, SymmetricQuant(b, n.outputs[0])};
}

// The largest magnitude among a constant's s8 values.
float MaxAbsInt8(const PlanBuilder& b, const std::string& name) {
  const std::shared_ptr<const Tensor> t = b.graph().Constant(name);
  int largest = 0;
  for (int8_t v : t->values<int8_t>()) largest = std::max(largest, std::abs(static_cast<int>(v)));
  return static_cast<float>(largest);
}

// Without VNNI, oneDNN keeps s8 x s8 products from saturating by halving
// the weights as it reorders them (scale_adjust) and doubling the result:
// odd weights lost their last bit (2% off on a single layer). Weights that
// fit doubled are given doubled, and the output scales halved, so that the
// products are exact. The factor for the s8 constant `values` in layout
// `wanted`: 1 where the layout halves nothing or doubled weights overflow.
float WeightSourceScale(const PlanBuilder& b, const memory::desc& wanted, const std::string& values) {
  const auto& extra = wanted.data.extra;
  if ((extra.flags & dnnl_memory_extra_flag_scale_adjust) && extra.scale_adjust > 0.f && extra.scale_adjust < 1.f &&
      MaxAbsInt8(b, values) / extra.scale_adjust <= 127.f) {
    return 1.f / extra.scale_adjust;
  }
  return 1.f;
}

// Requantization scales for weights given `weight_source_scale` times their value.
std::vector<float> Int8OutputScales(float src_scale, const QuantizedConstant& weights, float accumulator_scale,
                                    float weight_source_scale) {
  std::vector<float> scales = OutputScales(src_scale, weights.scales, accumulator_scale);
  for (float& s : scales) s /= weight_source_scale;
  return scales;
}
int ScalesMask(const std::vector<float>& scales) { return scales.size() > 1 ? 1 << 1 : 0; }

// An INT8 bias is added to the s32 accumulator: in units of src_scale *
// weight_scale[c] (of the output scales, so it grows as much as doubled
// weights shrink them).
Tensor Int8Bias(const Tensor& bias, float src_scale, const QuantizedConstant& weights, float weight_source_scale) {
  const std::vector<float> unit = OutputScales(src_scale, weights.scales, 1.f);
  Tensor scaled = bias.Clone();
  for (int64_t c = 0; c < scaled.element_count(); ++c) {
    scaled.data<float>()[c] *= weight_source_scale / unit[unit.size() > 1 ? c : 0];
  }
  return scaled;
}

// PostOpsFor's chains without a residual hold eltwise steps only.
// (dnnl::post_ops is a shared handle: a copy appends to the original.)
void AppendEltwises(dnnl::post_ops& to, const dnnl::post_ops& from) {
  for (int i = 0; i < from.len(); ++i) {
    float scale, alpha, beta;
    dnnl::algorithm algorithm;
    from.get_params_eltwise(i, scale, algorithm, alpha, beta);
    to.append_eltwise(scale, algorithm, alpha, beta);
  }
}

// MobileNet's expand and depthwise layers in INT8: a 1x1 convolution whose
// output only a 3x3 depthwise convolution reads runs both in one oneDNN
// primitive (its depthwise post-op), so the expanded tensor, the block's
// largest, stays in cache instead of going to memory and back. oneDNN
// itself declines where that tensor would fit in L2 anyway, and then
// they run apart. FP32 pairs always run apart: oneDNN 2.6's fused FP32
// kernels write wrong values in channels-last layouts (the ones the other
// FP32 layers take; checked on AVX-512 and AVX2), and in channel blocks
// they cost reorders against their neighbours (MobileNetV2 388 against 415
// img/s unfused). Returns whether it built the pair.
Result<bool> TryBuildWithDepthwise(const Node& n, PlanBuilder& b, const ConvParts& p,
                                   const std::optional<Int8Conv>& int8, const Shape& mid_shape, const Window& win) {
  if (!b.graph().fuse_depthwise || !int8 || !int8->dst || !n.fused_sum_input.empty() || p.group != 1 ||
      mid_shape.size() != 4 || b.IsConstant(p.x) || p.w_shape[2] != 1 || p.w_shape[3] != 1 || !IsUnitWindow(win) ||
      !AllEqual(win.pad_begin, 0) || !AllEqual(win.pad_end, 0)) {
    return false;
  }
  const Node* dw = b.OnlyReader(n.outputs[0]);
  if (!dw || dw->op_type != "Conv" || dw->Input(0) != n.outputs[0] || !dw->fused_sum_input.empty()) return false;
  const int64_t channels = mid_shape[1];
  const ValueId dw_w = b.Lookup(dw->Input(1));
  const ValueId dw_bias = dw->Input(2).empty() ? kNoValue : b.Lookup(dw->Input(2));
  const QuantizedConstant* dw_weights = Int8Weights(b, dw->Input(1), 0, channels);
  if (!dw_weights || dw_w == kNoValue || b.Value(dw_w).shape != Shape{channels, 1, 3, 3} ||
      dw->Int("group", 1) != channels || (!dw->Input(2).empty() && !b.IsConstant(dw_bias))) {
    return false;
  }
  const Result<Window> dw_win = ResolveWindow(b, *dw, {mid_shape[2], mid_shape[3]}, {3, 3}, false);
  if (!dw_win.ok() || !AllEqual(dw_win->dilations_minus_one, 0) || dw_win->pad_begin != memory::dims{1, 1} ||
      dw_win->strides[0] != dw_win->strides[1] || dw_win->strides[0] > 2) {
    return false;
  }
  const Int8Conv dw_int8{dw_weights, *int8->dst, SymmetricQuant(b, dw->outputs[0])};
  const Shape out_shape = {mid_shape[0], channels, dw_win->out[0], dw_win->out[1]};

  PostOpsSpec spec, dw_spec;
  spec.dst_scale = int8->dst->scale;
  dw_spec.dst_scale = dw_int8.dst ? dw_int8.dst->scale : 1.f;
  PPML_ASSIGN_OR_RETURN(const dnnl::post_ops ops, PostOpsFor(n, spec, nullptr));
  PPML_ASSIGN_OR_RETURN(const dnnl::post_ops dw_ops, PostOpsFor(*dw, dw_spec, nullptr));
  const DataType dst_type = dw_int8.dst ? dw_int8.dst->dtype : DataType::kF32;
  const memory::dims w_dims = WeightDims(p.w_shape, 1, false);
  const memory::dims dw_dims = WeightDims(b.Value(dw_w).shape, channels, false);
  const memory::desc w_any(w_dims, memory::data_type::s8, tag::any);
  const memory::desc bias_desc({channels}, memory::data_type::f32, tag::a);
  const memory::desc src_any = AnyDesc(int8->src.dtype, b.Value(p.x).shape);
  const memory::desc mid_any = AnyDesc(int8->dst->dtype, mid_shape);
  const auto desc = ConvDesc(dnnl::algorithm::convolution_direct, src_any, w_any,
                             p.bias != kNoValue ? &bias_desc : nullptr, mid_any, win);
  const auto make_pd = [&](float source_scale, float dw_source_scale) {
    dnnl::primitive_attr attr = b.Attr();
    const std::vector<float> scales =
        Int8OutputScales(int8->src.scale, *int8->weights, spec.accumulator_scale(), source_scale);
    attr.set_output_scales(ScalesMask(scales), scales);
    const std::vector<float> dw_scales =
        Int8OutputScales(dw_int8.src.scale, *dw_weights, dw_spec.accumulator_scale(), dw_source_scale);
    dnnl::post_ops chain;
    AppendEltwises(chain, ops);
    chain.append_dw(memory::data_type::s8, memory::data_type::f32, DnnlType(dst_type), 3, dw_win->strides[0], 1,
                    ScalesMask(dw_scales), dw_scales);
    AppendEltwises(chain, dw_ops);
    attr.set_post_ops(chain);
    return dnnl::convolution_forward::primitive_desc(desc, attr, b.engine(), true);
  };
  const int dw_weights_arg = DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS;
  const int dw_bias_arg = DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS;
  auto pd = make_pd(1.f, 1.f);
  // oneDNN's fallback for a pair it has no fused kernel for runs its two
  // kernels one after the other: nothing gained, and flagged as reference.
  if (!pd || IsReferenceImpl(pd)) return false;
  const float source_scale = WeightSourceScale(b, pd.weights_desc(), int8->weights->values);
  const float dw_source_scale =
      WeightSourceScale(b, pd.query_md(dnnl::query::exec_arg_md, dw_weights_arg), dw_weights->values);
  if (source_scale != 1.f || dw_source_scale != 1.f) pd = make_pd(source_scale, dw_source_scale);
  if (!pd || IsReferenceImpl(pd)) return false;
  // oneDNN works out the depthwise output's size from its stride and
  // leading padding; the trailing padding is then implied.
  if (pd.dst_desc().dims() != ToDims(out_shape)) return false;

  std::unordered_map<int, memory> fixed;
  fixed[DNNL_ARG_WEIGHTS] = b.ConstantMemory(int8->weights->values,
                                             WithDataType(SourceWeightDesc(w_dims, 1, false), DataType::kS8),
                                             pd.weights_desc(), source_scale);
  fixed[dw_weights_arg] = b.ConstantMemory(dw_weights->values,
                                           WithDataType(SourceWeightDesc(dw_dims, channels, false), DataType::kS8),
                                           pd.query_md(dnnl::query::exec_arg_md, dw_weights_arg), dw_source_scale);
  if (p.bias != kNoValue) {
    fixed[DNNL_ARG_BIAS] = b.OwnedConstantMemory(
        Int8Bias(*b.Constant(p.bias), int8->src.scale, *int8->weights, source_scale), pd.bias_desc());
  }
  Tensor dw_bias_values(DataType::kF32, {channels});  // zeros when the model has none
  if (dw_bias != kNoValue) dw_bias_values = b.Constant(dw_bias)->Clone();
  fixed[dw_bias_arg] =
      b.OwnedConstantMemory(Int8Bias(dw_bias_values, dw_int8.src.scale, *dw_weights, dw_source_scale),
                            pd.query_md(dnnl::query::exec_arg_md, dw_bias_arg));
  const ValueId src = b.InLayout(p.x, pd.src_desc());
  const ValueId out = b.DefineOutputOfFusedReader(*dw, dst_type, out_shape, pd.dst_desc());
  if (dw_int8.dst) b.SetQuant(out, *dw_int8.dst);
  b.AddPrimitive(dnnl::convolution_forward(pd), pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}}, std::move(fixed));
  b.CountMacs(ElementCount(mid_shape) * p.w_shape[1] + ElementCount(out_shape) * 9);
  b.CountFusedDepthwise();
  return true;
}

Status BuildConv(const Node& n, PlanBuilder& b) {
  std::optional<Int8Conv> int8 = PlanInt8(n, b, b.RawInput(0));
  PPML_ASSIGN_OR_RETURN(ConvParts p, ReadConvInputs(n, b, int8 ? b.RawInput(0) : b.Float(b.RawInput(0))));
  const Shape& xs = b.Value(p.x).shape;
  const int64_t channels = xs[1];
  if (channels % p.group != 0 || p.w_shape[0] % p.group != 0 || p.w_shape[1] * p.group != channels) {
    return b.Error("X has " + std::to_string(channels) + " channels but W is " + ShapeToString(p.w_shape) +
                   " with group " + std::to_string(p.group));
  }
  const std::vector<int64_t> kernel(p.w_shape.begin() + 2, p.w_shape.end());
  if (n.HasAttr("kernel_shape") && n.Ints("kernel_shape") != kernel) return b.Error("kernel_shape does not match W");
  PPML_ASSIGN_OR_RETURN(Window win, ResolveWindow(b, Shape(xs.begin() + 2, xs.end()), kernel, false));
  Shape out_shape = {xs[0], p.w_shape[0]};
  out_shape.insert(out_shape.end(), win.out.begin(), win.out.end());
  // Only with a delegate: reading an offloaded weight here would fetch it a second time.
  if (b.graph().linear_delegate && !int8 && xs.size() == 4 && b.IsConstant(p.w) &&
      (p.bias == kNoValue || b.IsConstant(p.bias))) {
    LinearLayer layer{.node = n.name, .input = n.Input(0), .input_shape = xs, .output_shape = out_shape,
                      .stride_h = win.strides[0], .stride_w = win.strides[1],
                      .dilation_h = win.dilations_minus_one[0] + 1, .dilation_w = win.dilations_minus_one[1] + 1,
                      .pad_top = win.pad_begin[0], .pad_left = win.pad_begin[1], .pad_bottom = win.pad_end[0],
                      .pad_right = win.pad_end[1], .groups = p.group, .weights = b.Constant(p.w),
                      .bias = p.bias == kNoValue ? nullptr : b.Constant(p.bias)};
    PPML_ASSIGN_OR_RETURN(bool delegated, TryDelegateLinear(b, layer, p.x));
    if (delegated) return Status::Ok();
  }

  PPML_ASSIGN_OR_RETURN(const bool with_depthwise, TryBuildWithDepthwise(n, b, p, int8, out_shape, win));
  if (with_depthwise) return Status::Ok();

  // The residual of a fused Add: a sum into the output when shapes match (for
  // INT8 only when it is held symmetric 8-bit too; otherwise the output goes
  // float and is requantized after), a broadcasting binary add otherwise.
  PostOpsSpec spec;
  ValueId residual = kNoValue;
  if (!n.fused_sum_input.empty()) {
    residual = b.Lookup(n.fused_sum_input);
    if (residual == kNoValue) return b.Error("residual input '" + n.fused_sum_input + "' is undefined");
    const PlanValue& r = b.Value(residual);
    const bool quantized_sum = int8 && int8->dst && r.quant && r.quant->zero_point == 0 && r.shape == out_shape;
    if (quantized_sum) {
      spec.sum_scale = r.quant->scale / int8->dst->scale;
      spec.sum_type = DnnlType(r.dtype);
    } else {
      if (int8) int8->dst.reset();
      residual = b.Float(residual);
    }
    spec.residual = b.Value(residual).shape == out_shape ? ResidualPostOp::kSum : ResidualPostOp::kBinaryAdd;
  }
  if (spec.residual == ResidualPostOp::kBinaryAdd) {
    Shape padded = b.Value(residual).shape;
    if (padded.size() > out_shape.size()) return b.Error("the residual has a higher rank than the output");
    padded.insert(padded.begin(), out_shape.size() - padded.size(), 1);
    residual = b.AliasValue(b.Plain(residual), padded);
    spec.binary_desc = b.Value(residual).desc;
  }
  const DataType src_type = int8 ? int8->src.dtype : DataType::kF32;
  spec.dst_scale = int8 && int8->dst ? int8->dst->scale : 1.f;
  int binary_index = -1;
  PPML_ASSIGN_OR_RETURN(dnnl::post_ops ops, PostOpsFor(n, spec, &binary_index));
  // An INT8 output that only float ops read is written as floats already on
  // its grid (rounded and clipped in post-ops, then scaled), which spares the
  // dequantizing pass over it.
  std::optional<QuantParams> on_grid;
  if (int8 && int8->dst && spec.residual == ResidualPostOp::kNone && b.ReadOnlyAsFloat(n.outputs[0])) {
    const bool is_unsigned = int8->dst->dtype == DataType::kU8;
    dnnl::post_ops gridded;  // a copy of a post_ops shares its steps: appending to one appends to both
    AppendEltwises(gridded, ops);
    gridded.append_eltwise(1.f, dnnl::algorithm::eltwise_round, 0.f, 0.f);
    gridded.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, is_unsigned ? 0.f : -128.f, is_unsigned ? 255.f : 127.f);
    gridded.append_eltwise(1.f, dnnl::algorithm::eltwise_linear, int8->dst->scale, 0.f);
    // Beside a fused clip or linear map, the output is written quantized and dequantized after.
    if (!RepeatsAnEltwise(gridded)) {
      on_grid = int8->dst;
      ops = gridded;
    }
  }
  const DataType dst_type = on_grid ? DataType::kF32 : int8 && int8->dst ? int8->dst->dtype : DataType::kF32;
  dnnl::primitive_attr attr = b.Attr();
  attr.set_post_ops(ops);
  if (int8) {
    const std::vector<float> scales = Int8OutputScales(int8->src.scale, *int8->weights, spec.accumulator_scale(), 1.f);
    attr.set_output_scales(ScalesMask(scales), scales);
  }

  const memory::dims w_dims = WeightDims(p.w_shape, p.group, false);
  const DataType w_type = int8 ? DataType::kS8 : DataType::kF32;
  const bool blocked = TakesChannelBlocks(b, int8.has_value(), p.group, xs, out_shape);
  const memory::desc src_any = LayerDesc(src_type, xs, blocked);
  const memory::desc w_any(w_dims, DnnlType(w_type), tag::any);
  const memory::desc dst_any = LayerDesc(dst_type, out_shape, blocked);
  const memory::desc bias_desc({p.w_shape[0]}, memory::data_type::f32, tag::a);
  const auto conv_desc = [&](dnnl::algorithm algorithm) {
    return ConvDesc(algorithm, src_any, w_any, p.bias != kNoValue ? &bias_desc : nullptr, dst_any, win);
  };
  // FP32 3x3 stride-1 layers run Winograd where oneDNN has it (AVX-512):
  // 2.2x the direct kernel there for ResNet's shapes from a batch of 2 on,
  // with errors of float rounding. oneDNN's convolution_auto never picks it
  // (its direct kernel accepts first); elsewhere this falls back to direct.
  auto desc = conv_desc(dnnl::algorithm::convolution_direct);
  dnnl::convolution_forward::primitive_desc pd;
  if (WantsWinograd(b, int8.has_value(), p, win, xs[0])) {
    auto winograd_desc = conv_desc(dnnl::algorithm::convolution_winograd);
    pd = dnnl::convolution_forward::primitive_desc(winograd_desc, attr, b.engine(), true);
    if (pd) {
      desc = winograd_desc;
      b.CountWinograd();
    }
  }
  if (!pd) pd = dnnl::convolution_forward::primitive_desc(desc, attr, b.engine());
  float weight_source_scale = 1.f;
  if (int8) {
    weight_source_scale = WeightSourceScale(b, pd.weights_desc(), int8->weights->values);
    if (weight_source_scale != 1.f) {
      const std::vector<float> scales =
          Int8OutputScales(int8->src.scale, *int8->weights, spec.accumulator_scale(), weight_source_scale);
      attr.set_output_scales(ScalesMask(scales), scales);
      pd = dnnl::convolution_forward::primitive_desc(desc, attr, b.engine());
    }
  }

  const ValueId src = b.InLayout(p.x, pd.src_desc());
  std::vector<std::pair<int, ValueId>> args = {{DNNL_ARG_SRC, src}};
  std::unordered_map<int, memory> fixed;
  if (int8) {
    const memory::desc source = WithDataType(SourceWeightDesc(w_dims, p.group, false), DataType::kS8);
    fixed[DNNL_ARG_WEIGHTS] = b.ConstantMemory(int8->weights->values, source, pd.weights_desc(), weight_source_scale);
    if (p.bias != kNoValue) {
      fixed[DNNL_ARG_BIAS] = b.OwnedConstantMemory(
          Int8Bias(*b.Constant(p.bias), int8->src.scale, *int8->weights, weight_source_scale), pd.bias_desc());
    }
  } else {
    memory w_mem = WeightMemoryOrArg(b, p, SourceWeightDesc(w_dims, p.group, false), pd.weights_desc(), args);
    if (w_mem) fixed[DNNL_ARG_WEIGHTS] = w_mem;
    BindBias(b, p.bias, pd.bias_desc(), args, fixed);
  }

  ValueId out;
  if (spec.residual == ResidualPostOp::kSum) {
    // The output starts as the residual: it takes over the residual's bytes
    // when the residual dies here, else it gets a copy.
    const memory::desc sum_layout = WithDataType(pd.dst_desc(), b.Value(residual).dtype);
    const ValueId sum_src = b.InLayout(residual, sum_layout);
    // A convolution cannot write over the bytes it reads (y = Conv(s) + s).
    const int sum_buffer = b.Value(sum_src).buffer;
    const bool reads_sum_bytes = sum_buffer >= 0 && sum_buffer == b.Value(src).buffer;
    bool in_place = false;
    out = b.DefineOutput(0, dst_type, out_shape, pd.dst_desc(), reads_sum_bytes ? kNoValue : sum_src, &in_place);
    if (!in_place) b.AddCopy(sum_src, b.AliasValue(out, out_shape, sum_layout));
  } else {
    out = b.DefineOutput(0, dst_type, out_shape, pd.dst_desc());
  }
  if (on_grid) {
    b.SetOnGrid(out, *on_grid);
  } else if (int8 && int8->dst) {
    b.SetQuant(out, *int8->dst);
  }
  args.push_back({DNNL_ARG_DST, out});
  if (spec.residual == ResidualPostOp::kBinaryAdd) {
    args.push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(binary_index) | DNNL_ARG_SRC_1, residual});
  }
  b.AddPrimitive(dnnl::convolution_forward(pd), pd, std::move(args), std::move(fixed));
  b.CountMacs(ElementCount(out_shape) * ElementCount(p.w_shape) / p.w_shape[0]);
  return Status::Ok();
}

Status BuildConvTranspose(const Node& n, PlanBuilder& b) {
  PPML_ASSIGN_OR_RETURN(ConvParts p, ReadConvInputs(n, b, b.Input(0)));
  const Shape& xs = b.Value(p.x).shape;
  const size_t r = xs.size() - 2;
  if (p.w_shape[0] != xs[1]) return b.Error("W's first dimension must equal X's channels");
  const int64_t out_channels = p.w_shape[1] * p.group;
  const std::vector<int64_t> kernel(p.w_shape.begin() + 2, p.w_shape.end());
  const auto strides = n.Ints("strides", std::vector<int64_t>(r, 1));
  const auto dilations = n.Ints("dilations", std::vector<int64_t>(r, 1));
  auto pads = n.Ints("pads", std::vector<int64_t>(2 * r, 0));
  const auto output_padding = n.Ints("output_padding", std::vector<int64_t>(r, 0));
  const auto output_shape_attr = n.Ints("output_shape");
  const std::string auto_pad = n.String("auto_pad", "NOTSET");
  if (strides.size() != r || dilations.size() != r || pads.size() != 2 * r || output_padding.size() != r) {
    return b.Error("strides, dilations, pads or output_padding have the wrong length");
  }
  Shape out_shape = {xs[0], out_channels};
  for (size_t i = 0; i < r; ++i) {
    const int64_t extent = (kernel[i] - 1) * dilations[i] + 1;
    const int64_t full = strides[i] * (xs[i + 2] - 1) + output_padding[i] + extent;
    int64_t out;
    if (!output_shape_attr.empty()) {
      out = output_shape_attr[output_shape_attr.size() - r + i];
      const int64_t total = full - out;
      const bool upper = auto_pad != "SAME_LOWER";
      pads[i] = upper ? total / 2 : total - total / 2;
      pads[i + r] = total - pads[i];
    } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out = xs[i + 2] * strides[i];
      const int64_t total = full - out;
      pads[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pads[i + r] = total - pads[i];
    } else {
      if (auto_pad == "VALID") pads[i] = pads[i + r] = 0;
      out = full - pads[i] - pads[i + r];
    }
    if (out < 1) return b.Error("the output would be empty");
    out_shape.push_back(out);
  }
  memory::dims md_strides(strides.begin(), strides.end()), md_dil, pad_l, pad_r;
  for (size_t i = 0; i < r; ++i) {
    md_dil.push_back(dilations[i] - 1);
    pad_l.push_back(pads[i]);
    // output_padding adds to the end of the output, as if the end were padded less.
    pad_r.push_back(pads[i + r] - output_padding[i]);
  }
  PostOpsSpec spec;
  PPML_ASSIGN_OR_RETURN(dnnl::post_ops ops, PostOpsFor(n, spec, nullptr));
  dnnl::primitive_attr attr = b.Attr();
  attr.set_post_ops(ops);
  const memory::dims w_dims = [&] {
    memory::dims d = {out_channels / p.group, xs[1] / p.group};
    d.insert(d.end(), kernel.begin(), kernel.end());
    if (p.group > 1) d.insert(d.begin(), p.group);
    return d;
  }();
  const memory::desc w_any(w_dims, memory::data_type::f32, tag::any);
  const memory::desc bias_desc({out_channels}, memory::data_type::f32, tag::a);
  const memory::desc src_any = AnyDesc(DataType::kF32, xs), dst_any = AnyDesc(DataType::kF32, out_shape);
  auto desc = p.bias != kNoValue
                  ? dnnl::deconvolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                      dnnl::algorithm::deconvolution_direct, src_any, w_any,
                                                      bias_desc, dst_any, md_strides, md_dil, pad_l, pad_r)
                  : dnnl::deconvolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                      dnnl::algorithm::deconvolution_direct, src_any, w_any, dst_any,
                                                      md_strides, md_dil, pad_l, pad_r);
  dnnl::deconvolution_forward::primitive_desc pd(desc, attr, b.engine());
  std::vector<std::pair<int, ValueId>> args = {{DNNL_ARG_SRC, b.InLayout(p.x, pd.src_desc())}};
  std::unordered_map<int, memory> fixed;
  if (!b.IsConstant(p.w)) return b.Unsupported("ConvTranspose with run-time weights");
  fixed[DNNL_ARG_WEIGHTS] = b.ConstantMemory(p.w, SourceWeightDesc(w_dims, p.group, true), pd.weights_desc());
  BindBias(b, p.bias, pd.bias_desc(), args, fixed);
  args.push_back({DNNL_ARG_DST, b.DefineOutput(0, DataType::kF32, out_shape, pd.dst_desc())});
  b.AddPrimitive(dnnl::deconvolution_forward(pd), pd, std::move(args), std::move(fixed));
  b.CountMacs(ElementCount(xs) * ElementCount(p.w_shape) / p.w_shape[0]);
  return Status::Ok();
}

}  // namespace

bool PlansWinograd(const Graph& graph, int64_t batch) {
  if (!graph.winograd || !OneDnnHasWinograd()) return false;
  const auto all_ones = [](const std::vector<int64_t>& v) {
    return std::all_of(v.begin(), v.end(), [](int64_t x) { return x == 1; });
  };
  for (const Node& n : graph.nodes) {
    if (n.op_type != "Conv" || n.inputs.size() < 2 || graph.quantized_constants.count(n.inputs[1])) continue;
    DataType w_type;
    Shape w_shape;
    if (!graph.ConstantInfo(n.inputs[1], &w_type, &w_shape) || w_type != DataType::kF32) continue;
    const bool unit = all_ones(n.Ints("strides")) && all_ones(n.Ints("dilations"));
    if (IsWinogradShape(n.Int("group", 1), w_shape, unit, batch)) return true;
  }
  return false;
}

std::vector<OpEntry> ConvOps() {
  return {{"Conv", BuildConv, /*int8_aware=*/true}, {"ConvTranspose", BuildConvTranspose}};
}

}  // namespace ppml::engine
