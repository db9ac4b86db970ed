// Pooling, Softmax/LogSoftmax, LayerNormalization and Concat on oneDNN.
#include <numeric>

#include "engine/op_util.h"
#include "engine/ops.h"
#include "engine/reference_ops.h"

namespace ppml::engine {
namespace {

using dnnl::memory;

Status BuildPool(const Node& n, PlanBuilder& b) {
  ValueId x = b.RawInput(0);
  if (x == kNoValue) return b.Error("missing input");
  // Pooling keeps a quantized tensor quantized (same scale); averaging needs a zero point of 0.
  const bool is_max = n.op_type == "MaxPool" || n.op_type == "GlobalMaxPool";
  if (b.Value(x).quant && !is_max && b.Value(x).quant->zero_point != 0) x = b.Float(x);
  const PlanValue& xv = b.Value(x);
  if (xv.dtype != DataType::kF32 && !xv.quant) return b.Unsupported("only float tensors");
  if (xv.shape.size() < 3 || xv.shape.size() > 5) return b.Unsupported("only 1-D, 2-D and 3-D pooling");
  if (n.outputs.size() > 1 && !n.outputs[1].empty()) return b.Unsupported("the Indices output of MaxPool");
  if (n.Int("storage_order", 0) != 0) return b.Unsupported("storage_order 1");
  const Shape spatial(xv.shape.begin() + 2, xv.shape.end());
  const bool global = n.op_type.rfind("Global", 0) == 0;
  const bool max = n.op_type == "MaxPool" || n.op_type == "GlobalMaxPool";
  Window win;
  if (global) {
    for (int64_t d : spatial) {
      win.kernel.push_back(d);
      win.strides.push_back(1);
      win.dilations_minus_one.push_back(0);
      win.pad_begin.push_back(0);
      win.pad_end.push_back(0);
      win.out.push_back(1);
    }
  } else {
    if (!n.HasAttr("kernel_shape")) return b.Error("missing attribute kernel_shape");
    if (!max && n.HasAttr("dilations")) {
      for (int64_t d : n.Ints("dilations")) {
        if (d != 1) return b.Unsupported("dilated AveragePool");
      }
    }
    PPML_ASSIGN_OR_RETURN(win, ResolveWindow(b, spatial, n.Ints("kernel_shape"), n.Int("ceil_mode", 0) != 0));
  }
  const auto algorithm = max ? dnnl::algorithm::pooling_max
                         : n.Int("count_include_pad", 0) ? dnnl::algorithm::pooling_avg_include_padding
                                                         : dnnl::algorithm::pooling_avg_exclude_padding;
  Shape out_shape = {xv.shape[0], xv.shape[1]};
  out_shape.insert(out_shape.end(), win.out.begin(), win.out.end());
  dnnl::pooling_v2_forward::desc d(dnnl::prop_kind::forward_inference, algorithm, xv.desc,
                                   AnyDesc(xv.dtype, out_shape), win.strides, win.kernel,
                                   win.dilations_minus_one, win.pad_begin, win.pad_end);
  dnnl::pooling_v2_forward::primitive_desc pd(d, b.Attr(), b.engine());
  const ValueId src = b.InLayout(x, pd.src_desc());
  const ValueId out = b.DefineOutput(0, xv.dtype, out_shape, pd.dst_desc());
  if (xv.quant) b.SetQuant(out, *xv.quant);
  b.AddPrimitive(dnnl::pooling_v2_forward(pd), pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}});
  return Status::Ok();
}

Status BuildSoftmax(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  const PlanValue& xv = b.Value(x);
  if (xv.dtype != DataType::kF32) return b.Unsupported("only float tensors");
  const int64_t rank = static_cast<int64_t>(xv.shape.size());
  if (rank == 0) return b.Error("Softmax needs rank >= 1");
  const bool legacy = n.opset < 13;  // softmax over the input flattened to 2-D at `axis`
  PPML_ASSIGN_OR_RETURN(int64_t axis, ref::NormalizeAxis(n.Int("axis", legacy ? 1 : -1), rank));
  Shape view_shape = xv.shape;
  int softmax_axis = static_cast<int>(axis);
  if (legacy) {
    const int64_t outer = std::accumulate(xv.shape.begin(), xv.shape.begin() + axis, int64_t{1}, std::multiplies<>());
    view_shape = {outer, ElementCount(xv.shape) / std::max<int64_t>(outer, 1)};
    softmax_axis = 1;
  }
  if (ElementCount(xv.shape) == 0) {
    b.DefinePlainOutput(0, DataType::kF32, xv.shape);
    return Status::Ok();
  }
  const ValueId src = legacy ? b.AliasValue(b.Plain(x), view_shape) : x;
  const memory::desc desc = b.Value(src).desc;
  const auto algorithm = n.op_type == "LogSoftmax" ? dnnl::algorithm::softmax_log : dnnl::algorithm::softmax_accurate;
  dnnl::softmax_v2_forward::desc d(dnnl::prop_kind::forward_inference, algorithm, desc, desc, softmax_axis);
  dnnl::softmax_v2_forward::primitive_desc pd(d, b.Attr(), b.engine());
  ValueId out;
  ValueId dst;
  if (legacy) {
    out = b.DefinePlainOutput(0, DataType::kF32, xv.shape);
    dst = b.AliasValue(out, view_shape);
  } else {
    out = dst = b.DefineOutput(0, DataType::kF32, xv.shape, desc, src);
  }
  b.AddPrimitive(dnnl::softmax_v2_forward(pd), pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
  return Status::Ok();
}

// oneDNN normalizes a [rows, inner] view with one scale and shift per column;
// the reference kernel serves the rarely wanted Mean and InvStdDev outputs.
// No Scale (only FuseLayerNorms makes such a node) means ones.
Status BuildLayerNorm(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0), scale = b.Input(1), bias = b.Input(2);
  if (x == kNoValue) return b.Error("missing input X");
  const PlanValue& xv = b.Value(x);
  if (xv.dtype != DataType::kF32) return b.Unsupported("only float tensors");
  const int64_t rank = static_cast<int64_t>(xv.shape.size());
  if (rank == 0) return b.Error("X must have rank >= 1");
  auto axis = ref::NormalizeAxis(n.Int("axis", -1), rank);
  if (!axis.ok()) return b.Error(axis.status().message());
  const Shape normalized(xv.shape.begin() + *axis, xv.shape.end());
  for (ValueId parameter : {scale, bias}) {
    if (parameter == kNoValue) continue;
    const PlanValue& pv = b.Value(parameter);
    if (pv.dtype != DataType::kF32) return b.Unsupported("only float Scale and B");
    if (WithoutLeadingOnes(pv.shape) != WithoutLeadingOnes(normalized)) {
      return b.Error(std::string(parameter == scale ? "Scale" : "B") + " shape " + ShapeToString(pv.shape) +
                     " is not the normalized shape " + ShapeToString(normalized));
    }
  }
  const float epsilon = n.Float("epsilon", 1e-5f);
  const auto wanted = [&](size_t i) { return i < n.outputs.size() && !n.outputs[i].empty(); };
  const int64_t inner = ElementCount(normalized);
  const int64_t rows = inner == 0 ? 0 : ElementCount(xv.shape) / inner;
  if (wanted(1) || wanted(2) || rows == 0) {
    Shape stats_shape(xv.shape.begin(), xv.shape.begin() + *axis);
    stats_shape.resize(static_cast<size_t>(rank), 1);
    const auto plain = [&](ValueId id) { return id == kNoValue ? kNoValue : b.Plain(id); };
    const ValueId src = b.Plain(x), gamma = plain(scale), beta = plain(bias);
    const ValueId y = b.DefinePlainOutput(0, DataType::kF32, xv.shape);
    const ValueId mean = wanted(1) ? b.DefinePlainOutput(1, DataType::kF32, stats_shape) : kNoValue;
    const ValueId inv_std_dev = wanted(2) ? b.DefinePlainOutput(2, DataType::kF32, stats_shape) : kNoValue;
    const int64_t first = *axis;
    b.AddCustom([=](const RunContext& c) {
      const auto view = [&](ValueId id) { return id == kNoValue ? ref::MutView{} : MutViewOf(c, id); };
      return ref::LayerNorm(ConstViewOf(c, src), view(gamma), view(beta), first, epsilon,
                            MutViewOf(c, y), view(mean), view(inv_std_dev));
    });
    return Status::Ok();
  }
  const memory::desc rows_desc = PlainDesc(DataType::kF32, {rows, inner});
  const memory::desc per_column = PlainDesc(DataType::kF32, {inner});
  auto flags = dnnl::normalization_flags::none;
  if (scale != kNoValue) flags |= dnnl::normalization_flags::use_scale;
  if (bias != kNoValue) flags |= dnnl::normalization_flags::use_shift;
  dnnl::layer_normalization_forward::desc d(dnnl::prop_kind::forward_inference, rows_desc, epsilon, flags);
  dnnl::layer_normalization_forward::primitive_desc pd(d, b.Attr(), b.engine());
  const ValueId src = b.AliasValue(b.Plain(x), {rows, inner});
  const ValueId out = b.DefinePlainOutput(0, DataType::kF32, xv.shape);
  std::vector<std::pair<int, ValueId>> args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, b.AliasValue(out, {rows, inner})}};
  std::unordered_map<int, memory> fixed;
  for (auto [arg, parameter] : {std::pair{DNNL_ARG_SCALE, scale}, std::pair{DNNL_ARG_SHIFT, bias}}) {
    if (parameter == kNoValue) continue;
    if (b.IsConstant(parameter)) {
      fixed[arg] = b.ConstantMemory(parameter, per_column, per_column);
    } else {
      args.push_back({arg, b.AliasValue(b.Plain(parameter), {inner})});
    }
  }
  b.AddPrimitive(dnnl::layer_normalization_forward(pd), pd, std::move(args), std::move(fixed));
  return Status::Ok();
}

Status BuildConcat(const Node& n, PlanBuilder& b) {
  std::vector<ValueId> inputs;
  std::vector<Shape> shapes;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    const ValueId id = b.RawInput(i);
    if (id == kNoValue) continue;
    inputs.push_back(id);
    shapes.push_back(b.Value(id).shape);
  }
  if (inputs.empty()) return b.Error("needs at least one input");
  // Quantized inputs concatenate as they are when they share one quantization.
  const auto quant = b.Value(inputs[0]).quant;
  bool same_quant = true;
  for (ValueId id : inputs) same_quant = same_quant && b.Value(id).quant == quant;
  if (!same_quant) {
    for (ValueId& id : inputs) id = b.Float(id);
  }
  const DataType dtype = b.Value(inputs[0]).dtype;
  for (ValueId id : inputs) {
    if (b.Value(id).dtype != dtype) return b.Error("inputs have different data types");
  }
  PPML_ASSIGN_OR_RETURN(int64_t axis, ref::NormalizeAxis(n.Int("axis", 1), static_cast<int64_t>(shapes[0].size())));
  auto out_shape = ref::ConcatOutputShape(shapes, axis);
  if (!out_shape.ok()) return b.Error(out_shape.status().message());
  bool any_empty = false;
  for (const Shape& s : shapes) any_empty = any_empty || ElementCount(s) == 0;
  if (HasDnnlType(dtype) && !any_empty && (dtype == DataType::kF32 || quant)) {
    std::vector<memory::desc> descs;
    for (ValueId id : inputs) descs.push_back(b.Value(id).desc);
    dnnl::concat::primitive_desc pd(AnyDesc(dtype, *out_shape), static_cast<int>(axis), descs, b.engine(), b.Attr());
    std::vector<std::pair<int, ValueId>> args;
    for (size_t i = 0; i < inputs.size(); ++i) args.push_back({DNNL_ARG_MULTIPLE_SRC + static_cast<int>(i), inputs[i]});
    const ValueId out = b.DefineOutput(0, dtype, *out_shape, pd.dst_desc());
    if (quant) b.SetQuant(out, *quant);
    args.push_back({DNNL_ARG_DST, out});
    b.AddPrimitive(dnnl::concat(pd), pd, std::move(args));
    return Status::Ok();
  }
  for (ValueId& id : inputs) id = b.Plain(id);
  const ValueId out = b.DefinePlainOutput(0, dtype, *out_shape);
  if (quant) b.SetQuant(out, *quant);
  b.AddCustom([inputs, out, axis](const RunContext& c) -> Status {
    std::vector<ref::ConstView> views;
    for (ValueId id : inputs) views.push_back(ConstViewOf(c, id));
    return ref::Concat(views, axis, MutViewOf(c, out));
  });
  return Status::Ok();
}

}  // namespace

std::vector<OpEntry> PoolingOps() {
  return {{"MaxPool", BuildPool, true},       {"AveragePool", BuildPool, true},
          {"GlobalAveragePool", BuildPool, true}, {"GlobalMaxPool", BuildPool, true},
          {"Softmax", BuildSoftmax},            {"LogSoftmax", BuildSoftmax},
          {"LayerNormalization", BuildLayerNorm},
          {"Concat", BuildConcat, true}};
}

}  // namespace ppml::engine
