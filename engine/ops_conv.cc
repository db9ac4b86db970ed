// Conv and ConvTranspose on oneDNN, with fused bias, activations and residual sum.
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
  if (!transposed) {
    memory::dims strides(dims.size(), 1);
    for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * dims[i + 1];
    return memory::desc(dims, memory::data_type::f32, strides);
  }
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

Result<ConvParts> ReadConvInputs(const Node& n, PlanBuilder& b) {
  ConvParts p{b.Input(0), b.Input(1), b.Input(2), n.Int("group", 1), {}};
  if (p.x == kNoValue || p.w == kNoValue) return b.Error("needs inputs X and W");
  const PlanValue& x = b.Value(p.x);
  const PlanValue& w = b.Value(p.w);
  if (x.dtype != DataType::kF32 || w.dtype != DataType::kF32) return b.Unsupported("only float tensors");
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

// The residual of a fused Conv + Add. Same shape as the output: a sum
// post-op accumulating into the output, which starts as the residual (taking
// over its bytes when it dies here). Otherwise a broadcasting binary post-op.
struct Residual {
  ValueId value = kNoValue;
  bool as_sum = false;
};

Result<Residual> FindResidual(const Node& n, PlanBuilder& b, const Shape& out_shape) {
  Residual r;
  if (n.fused_sum_input.empty()) return r;
  r.value = b.Lookup(n.fused_sum_input);
  if (r.value == kNoValue) return b.Error("residual input '" + n.fused_sum_input + "' is undefined");
  if (b.Value(r.value).dtype != DataType::kF32) return b.Unsupported("a non-float residual");
  r.as_sum = b.Value(r.value).shape == out_shape;
  return r;
}

Status BuildConv(const Node& n, PlanBuilder& b) {
  PPML_ASSIGN_OR_RETURN(ConvParts p, ReadConvInputs(n, b));
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

  PPML_ASSIGN_OR_RETURN(Residual residual, FindResidual(n, b, out_shape));
  std::vector<std::pair<int, ValueId>> args;
  std::unordered_map<int, memory> fixed;
  dnnl::primitive_attr attr = b.Attr();
  ValueId binary_src = kNoValue;
  int binary_index = -1;
  if (residual.value != kNoValue && !residual.as_sum) {
    Shape padded = b.Value(residual.value).shape;
    if (padded.size() > out_shape.size()) return b.Error("the residual has a higher rank than the output");
    padded.insert(padded.begin(), out_shape.size() - padded.size(), 1);
    binary_src = b.AliasValue(b.Plain(residual.value), padded);
  }
  PPML_ASSIGN_OR_RETURN(dnnl::post_ops ops,
                        PostOpsFor(n, residual.as_sum ? ResidualPostOp::kSum
                                      : binary_src != kNoValue ? ResidualPostOp::kBinaryAdd
                                                               : ResidualPostOp::kNone,
                                   binary_src != kNoValue ? b.Value(binary_src).desc : memory::desc(), &binary_index));
  attr.set_post_ops(ops);

  const memory::dims w_dims = WeightDims(p.w_shape, p.group, false);
  const memory::desc src_any = AnyDesc(DataType::kF32, xs);
  const memory::desc w_any(w_dims, memory::data_type::f32, tag::any);
  const memory::desc dst_any = AnyDesc(DataType::kF32, out_shape);
  const memory::desc bias_desc({p.w_shape[0]}, memory::data_type::f32, tag::a);
  auto desc = p.bias != kNoValue
                  ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                    dnnl::algorithm::convolution_direct, src_any, w_any, bias_desc,
                                                    dst_any, win.strides, win.dilations_minus_one, win.pad_begin,
                                                    win.pad_end)
                  : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                    dnnl::algorithm::convolution_direct, src_any, w_any, dst_any,
                                                    win.strides, win.dilations_minus_one, win.pad_begin, win.pad_end);
  dnnl::convolution_forward::primitive_desc pd(desc, attr, b.engine());

  args.push_back({DNNL_ARG_SRC, b.InLayout(p.x, pd.src_desc())});
  memory w_mem = WeightMemoryOrArg(b, p, SourceWeightDesc(w_dims, p.group, false), pd.weights_desc(), args);
  if (w_mem) fixed[DNNL_ARG_WEIGHTS] = w_mem;
  BindBias(b, p.bias, pd.bias_desc(), args, fixed);

  ValueId out;
  if (residual.as_sum) {
    const ValueId sum_in_layout = b.InLayout(residual.value, pd.dst_desc());
    bool in_place = false;
    out = b.DefineOutput(0, DataType::kF32, out_shape, pd.dst_desc(), sum_in_layout, &in_place);
    if (!in_place) b.AddCopy(sum_in_layout, out);
  } else {
    out = b.DefineOutput(0, DataType::kF32, out_shape, pd.dst_desc());
  }
  args.push_back({DNNL_ARG_DST, out});
  if (binary_src != kNoValue) args.push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(binary_index) | DNNL_ARG_SRC_1, binary_src});
  b.AddPrimitive(dnnl::convolution_forward(pd), pd, std::move(args), std::move(fixed));
  b.CountMacs(ElementCount(out_shape) * ElementCount(p.w_shape) / p.w_shape[0]);
  return Status::Ok();
}

Status BuildConvTranspose(const Node& n, PlanBuilder& b) {
  PPML_ASSIGN_OR_RETURN(ConvParts p, ReadConvInputs(n, b));
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
  PPML_ASSIGN_OR_RETURN(dnnl::post_ops ops, PostOpsFor(n, ResidualPostOp::kNone, memory::desc(), nullptr));
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

std::vector<OpEntry> ConvOps() { return {{"Conv", BuildConv}, {"ConvTranspose", BuildConvTranspose}}; }

}  // namespace ppml::engine
