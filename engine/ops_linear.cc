// Gemm and MatMul on oneDNN matmul, with fused activations.
#include <numeric>

#include "engine/op_util.h"
#include "engine/ops.h"

namespace ppml::engine {
namespace {

using dnnl::memory;

memory::desc StridedDesc(const memory::dims& dims, const memory::dims& strides, DataType type = DataType::kF32) {
  return memory::desc(dims, DnnlType(type), strides);
}

// The INT8 form of a matrix product: A held quantized (symmetric), B
// constant s8 per output column behind a DequantizeLinear, or a run-time s8
// tensor held quantized (an attention product).
struct Int8Matmul {
  QuantParams src;
  const QuantizedConstant* weights = nullptr;  // null: B is a run-time tensor
  std::vector<float> weight_scales;
  std::optional<QuantParams> dst;
};

// What the product writes: its quantized output's type, or floats.
DataType DstType(const std::optional<Int8Matmul>& int8) { return int8 && int8->dst ? int8->dst->dtype : DataType::kF32; }

std::optional<Int8Matmul> PlanInt8(const PlanBuilder& b, ValueId a_raw, const std::string& weights, int64_t axis,
                                   int64_t columns) {
  const auto& quant = b.Value(a_raw).quant;
  if (!quant || quant->zero_point != 0) return std::nullopt;
  const QuantizedConstant* w = Int8Weights(b, weights, axis, columns);
  if (!w) return std::nullopt;
  return Int8Matmul{*quant, w, w->scales, SymmetricQuant(b, b.node().outputs[0])};
}

// oneDNN's INT8 products take B as s8 only. Without VNNI they sum pairs of
// u8 x s8 products in 16 bits, which full-range 8-bit operands overflow
// (constant weights are made 7-bit for those CPUs; run-time ones cannot be).
std::optional<Int8Matmul> PlanInt8RunTimeB(const PlanBuilder& b, ValueId a_raw, ValueId w_raw) {
  if (!CpuHasVnni()) return std::nullopt;
  const auto& a = b.Value(a_raw).quant;
  const auto& w = b.Value(w_raw).quant;
  if (!a || a->zero_point != 0 || !w || w->zero_point != 0 || w->dtype != DataType::kS8) return std::nullopt;
  return Int8Matmul{*a, nullptr, {w->scale}, SymmetricQuant(b, b.node().outputs[0])};
}

// Output scales, fused activations and the destination type of a matrix product.
Status ConfigureProduct(const Node& n, const std::optional<Int8Matmul>& int8, float alpha, dnnl::post_ops& ops,
                        dnnl::primitive_attr& attr) {
  PostOpsSpec spec;
  spec.dst_scale = int8 && int8->dst ? int8->dst->scale : 1.f;
  PPML_ASSIGN_OR_RETURN(dnnl::post_ops fused, PostOpsFor(n, spec, nullptr));
  for (int i = 0; i < fused.len(); ++i) {
    dnnl::algorithm alg;
    float s, al, be;
    fused.get_params_eltwise(i, s, alg, al, be);
    ops.append_eltwise(s, alg, al, be);
  }
  if (RepeatsAnEltwise(ops)) return Status::Unsupported(n.Describe() + ": beta and a fused activation both scale");
  attr.set_post_ops(ops);
  if (int8) {
    std::vector<float> scales = OutputScales(alpha * int8->src.scale, int8->weight_scales, spec.accumulator_scale());
    attr.set_output_scales(scales.size() > 1 ? 1 << 1 : 0, scales);
  } else if (alpha != 1.f) {
    attr.set_output_scales(0, {alpha});
  }
  return Status::Ok();
}

// A dense layer for the LinearDelegate: y = a W^T + bias with W [n, k]
// (`w` is [k, n], or [n, k] when `w_is_nk`), bias broadcast along rows.
Result<bool> TryDelegateDense(PlanBuilder& b, ValueId a, ValueId w, bool w_is_nk, const Tensor* bias,
                              const Shape& out_shape) {
  if (!b.graph().linear_delegate) return false;
  const Tensor* wt = b.Constant(w);
  const int64_t k = b.Value(a).shape[1], nn = out_shape[1];
  Tensor nk(DataType::kF32, {nn, k});
  for (int64_t i = 0; i < nn; ++i) {
    for (int64_t j = 0; j < k; ++j) nk.data<float>()[i * k + j] = wt->data<float>()[w_is_nk ? i * k + j : j * nn + i];
  }
  const Node& n = b.node();
  LinearLayer layer{.node = n.name, .input = n.Input(0), .dense = true, .input_shape = b.Value(a).shape,
                    .output_shape = out_shape, .weights = &nk, .bias = bias};
  return TryDelegateLinear(b, layer, a);
}

// A constant bias (broadcast to [rows, nn] from `shape`, a [1|rows, 1|nn]
// matrix) as oneDNN adds it: it scales (A·B + bias) by the output scales, so
// the bias is given in units of those.
memory BiasMemory(PlanBuilder& b, const Tensor& c, const Shape& shape, float alpha, float beta,
                  const std::optional<Int8Matmul>& int8, int64_t nn) {
  std::vector<float> unit(nn, alpha);
  if (int8) {
    const std::vector<float> s = OutputScales(alpha * int8->src.scale, int8->weight_scales, 1.f);
    for (int64_t j = 0; j < nn; ++j) unit[j] = s[s.size() > 1 ? j : 0];
  }
  Tensor scaled(DataType::kF32, shape);
  for (int64_t i = 0; i < c.element_count(); ++i) {
    const int64_t column = shape[1] == 1 ? 0 : i % shape[1];
    scaled.data<float>()[i] = beta * c.data<float>()[i] / unit[column];
  }
  return b.OwnedConstantMemory(std::move(scaled), PlainDesc(DataType::kF32, shape));
}

Status BuildGemm(const Node& n, PlanBuilder& b) {
  // Int8-aware: only A may stay quantized; B and C are read as floats.
  const ValueId a_raw = b.RawInput(0), w = b.Float(b.RawInput(1));
  const ValueId c = b.RawInput(2) == kNoValue ? kNoValue : b.Float(b.RawInput(2));
  if (a_raw == kNoValue || w == kNoValue) return b.Error("needs inputs A and B");
  const PlanValue& av = b.Value(a_raw);
  const PlanValue& wv = b.Value(w);
  if ((av.dtype != DataType::kF32 && !av.quant) || wv.dtype != DataType::kF32) return b.Unsupported("only float tensors");
  if (av.shape.size() != 2 || wv.shape.size() != 2) return b.Error("A and B must be matrices");
  const bool trans_a = n.Int("transA", 0) != 0, trans_b = n.Int("transB", 0) != 0;
  const float alpha = n.Float("alpha", 1.f), beta = n.Float("beta", 1.f);
  const int64_t m = trans_a ? av.shape[1] : av.shape[0];
  const int64_t k = trans_a ? av.shape[0] : av.shape[1];
  const int64_t k2 = trans_b ? wv.shape[1] : wv.shape[0];
  const int64_t nn = trans_b ? wv.shape[0] : wv.shape[1];
  if (k != k2) return b.Error("inner dimensions differ: A " + ShapeToString(av.shape) + ", B " + ShapeToString(wv.shape));
  const Shape out_shape = {m, nn};
  std::optional<Int8Matmul> int8;
  if (!trans_a && (c == kNoValue || b.IsConstant(c))) int8 = PlanInt8(b, a_raw, n.Input(1), trans_b ? 0 : 1, nn);
  const bool bias_is_row = c == kNoValue || ElementCount(b.Value(c).shape) == nn;
  if (!int8 && !trans_a && b.IsConstant(w) && alpha == 1.f && bias_is_row && (c == kNoValue || beta == 1.f) &&
      (c == kNoValue || b.IsConstant(c))) {
    std::optional<Tensor> bias;
    if (c != kNoValue) {
      PPML_ASSIGN_OR_RETURN(bias, b.Constant(c)->Reshaped({nn}));
    }
    PPML_ASSIGN_OR_RETURN(bool delegated, TryDelegateDense(b, b.Float(a_raw), w, trans_b, bias ? &*bias : nullptr,
                                                           out_shape));
    if (delegated) return Status::Ok();
  }
  const ValueId a = int8 ? a_raw : b.Float(a_raw);
  const DataType a_type = b.Value(a).dtype, w_type = int8 ? DataType::kS8 : DataType::kF32;
  const DataType dst_type = DstType(int8);

  const ValueId a_plain = b.Plain(a);
  const memory::desc a_desc = trans_a ? StridedDesc({m, k}, {1, m}, a_type) : StridedDesc({m, k}, {k, 1}, a_type);
  const memory::desc w_source = trans_b ? StridedDesc({k, nn}, {1, k}, w_type) : StridedDesc({k, nn}, {nn, 1}, w_type);
  const bool constant_w = b.IsConstant(w);
  const memory::desc w_desc = constant_w ? memory::desc({k, nn}, DnnlType(w_type), memory::format_tag::any) : w_source;
  const memory::desc dst_desc = PlainDesc(dst_type, out_shape);

  // C: a constant becomes the bias (scaled by beta; for INT8 in accumulator
  // units); a run-time C is a binary post-op, computed as
  // beta * ((alpha/beta)·AB + C) so that beta applies to C alone.
  ValueId c_view = kNoValue;
  memory bias;
  std::optional<memory::desc> bias_desc;
  float scale = alpha;
  if (c != kNoValue && beta != 0.f) {
    Shape c_shape = b.Value(c).shape;
    if (c_shape.size() > 2) return b.Error("C has rank > 2");
    c_shape.insert(c_shape.begin(), 2 - c_shape.size(), 1);
    if ((c_shape[0] != 1 && c_shape[0] != m) || (c_shape[1] != 1 && c_shape[1] != nn)) {
      return b.Error("C " + ShapeToString(b.Value(c).shape) + " does not broadcast to " + ShapeToString(out_shape));
    }
    if (const Tensor* ct = b.Constant(c)) {
      if (ct->dtype() != DataType::kF32) return b.Unsupported("only float C");
      if (alpha == 0.f) return b.Unsupported("alpha 0 with a constant C");
      bias_desc = PlainDesc(DataType::kF32, c_shape);
      bias = BiasMemory(b, *ct, c_shape, alpha, beta, int8, nn);
    } else {
      c_view = b.AliasValue(b.Plain(c), c_shape);
      scale = alpha / beta;
    }
  }
  dnnl::post_ops ops;
  int binary_index = -1;
  if (c_view != kNoValue) {
    binary_index = ops.len();
    ops.append_binary(dnnl::algorithm::binary_add, b.Value(c_view).desc);
    if (beta != 1.f) ops.append_eltwise(1.f, dnnl::algorithm::eltwise_linear, beta, 0.f);
  }
  dnnl::primitive_attr attr = b.Attr();
  PPML_RETURN_IF_ERROR(ConfigureProduct(n, int8, scale, ops, attr));
  auto desc = bias_desc ? dnnl::matmul::desc(a_desc, w_desc, *bias_desc, dst_desc)
                        : dnnl::matmul::desc(a_desc, w_desc, dst_desc);
  dnnl::matmul::primitive_desc pd(desc, attr, b.engine());

  // Transposed operands are strided views of their plain bytes.
  std::vector<std::pair<int, ValueId>> args = {{DNNL_ARG_SRC, b.AliasValue(a_plain, {m, k}, a_desc)}};
  std::unordered_map<int, memory> fixed;
  if (int8) {
    fixed[DNNL_ARG_WEIGHTS] = b.ConstantMemory(int8->weights->values, w_source, pd.weights_desc());
  } else if (constant_w) {
    fixed[DNNL_ARG_WEIGHTS] = b.ConstantMemory(w, w_source, pd.weights_desc());
  } else {
    args.push_back({DNNL_ARG_WEIGHTS, b.AliasValue(b.Plain(w), {k, nn}, w_source)});
  }
  if (bias) fixed[DNNL_ARG_BIAS] = bias;
  const ValueId out = b.DefinePlainOutput(0, dst_type, out_shape);
  if (int8 && int8->dst) b.SetQuant(out, *int8->dst);
  args.push_back({DNNL_ARG_DST, out});
  if (c_view != kNoValue) args.push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(binary_index) | DNNL_ARG_SRC_1, c_view});
  b.AddPrimitive(dnnl::matmul(pd), pd, std::move(args), std::move(fixed));
  b.CountMacs(m * k * nn);
  return Status::Ok();
}

// A third input, a constant with one value per output column, is the bias
// FusePostOps folds in from a following Add.
Status BuildMatMul(const Node& n, PlanBuilder& b) {
  const ValueId a_raw = b.RawInput(0), w_raw = b.RawInput(1);
  if (a_raw == kNoValue || w_raw == kNoValue) return b.Error("needs two inputs");
  Shape as = b.Value(a_raw).shape, ws = b.Value(w_raw).shape;
  if (as.empty() || ws.empty()) return b.Error("MatMul inputs must have rank >= 1");
  std::optional<Int8Matmul> int8;
  if (ws.size() == 2) int8 = PlanInt8(b, a_raw, n.Input(1), 1, ws[1]);
  if (!int8 && !b.IsConstant(w_raw)) int8 = PlanInt8RunTimeB(b, a_raw, w_raw);
  if (!int8 && as.size() == 2 && ws.size() == 2 && as[1] == ws[0] && b.IsConstant(w_raw)) {
    const ValueId a = b.Float(a_raw);
    if (b.Value(a).dtype != DataType::kF32) return b.Unsupported("only float");
    PPML_ASSIGN_OR_RETURN(bool delegated, TryDelegateDense(b, a, b.Float(w_raw), false, nullptr, {as[0], ws[1]}));
    if (delegated) return Status::Ok();
  }
  const bool a_vector = as.size() == 1, w_vector = ws.size() == 1;
  if (a_vector) as.insert(as.begin(), 1);
  if (w_vector) ws.push_back(1);
  const size_t rank = std::max(as.size(), ws.size());
  as.insert(as.begin(), rank - as.size(), 1);
  ws.insert(ws.begin(), rank - ws.size(), 1);
  if (as[rank - 1] != ws[rank - 2]) {
    return b.Error("inner dimensions differ: " + ShapeToString(b.Value(a_raw).shape) + " x " +
                   ShapeToString(b.Value(w_raw).shape));
  }
  Shape full(rank);
  for (size_t i = 0; i + 2 < rank; ++i) {
    if (as[i] != ws[i] && as[i] != 1 && ws[i] != 1) return b.Error("batch dimensions do not broadcast");
    full[i] = std::max(as[i], ws[i]);
  }
  full[rank - 2] = as[rank - 2];
  full[rank - 1] = ws[rank - 1];
  Shape out_shape = full;
  if (w_vector) out_shape.erase(out_shape.end() - 1);
  if (a_vector) out_shape.erase(out_shape.end() - (w_vector ? 1 : 2));
  // Constant weights shared by every row of a batched A: one 2-D product, so
  // that the weights are reordered once into oneDNN's layout.
  const bool constant_w = b.IsConstant(w_raw);
  if (rank > 2 && !w_vector && b.Value(w_raw).shape.size() == 2 && constant_w) {
    as = {std::accumulate(full.begin(), full.end() - 1, int64_t{1}, std::multiplies<>()), as[rank - 1]};
    ws = {ws[rank - 2], ws[rank - 1]};
    full = {as[0], ws[1]};
  }
  const size_t product_rank = full.size();
  const ValueId c = n.inputs.size() > 2 ? b.Input(2) : kNoValue;
  const Tensor* bias = b.Constant(c);
  if (c != kNoValue &&
      (!bias || bias->dtype() != DataType::kF32 || product_rank != 2 || bias->element_count() != full[1])) {
    return b.Error("the fused bias must be a constant with one value per column of a 2-D product");
  }

  const auto product_pd = [&]() -> Result<dnnl::matmul::primitive_desc> {
    dnnl::post_ops ops;
    dnnl::primitive_attr attr = b.Attr();
    PPML_RETURN_IF_ERROR(ConfigureProduct(n, int8, 1.f, ops, attr));
    const DataType a_type = int8 ? b.Value(a_raw).dtype : DataType::kF32;
    const DataType w_type = int8 ? DataType::kS8 : DataType::kF32;
    const DataType dst_type = DstType(int8);
    const memory::desc w_desc = constant_w ? AnyDesc(w_type, ws) : PlainDesc(w_type, ws);
    const memory::desc bias_desc = PlainDesc(DataType::kF32, {1, full[product_rank - 1]});
    auto desc = bias ? dnnl::matmul::desc(PlainDesc(a_type, as), w_desc, bias_desc, PlainDesc(dst_type, full))
                     : dnnl::matmul::desc(PlainDesc(a_type, as), w_desc, PlainDesc(dst_type, full));
    return dnnl::matmul::primitive_desc(desc, attr, b.engine());
  };
  std::optional<Result<dnnl::matmul::primitive_desc>> pd;
  if (int8 && !int8->weights) {
    try {
      pd = product_pd();
    } catch (const dnnl::error&) {
      int8.reset();  // no INT8 kernel for this run-time product: in float
    }
  }
  if (!pd) pd = product_pd();
  if (!pd->ok()) return pd->status();
  const ValueId a = int8 ? a_raw : b.Float(a_raw);
  const ValueId w = int8 && !int8->weights ? w_raw : b.Float(w_raw);
  if (!int8 && (b.Value(a).dtype != DataType::kF32 || b.Value(w).dtype != DataType::kF32)) {
    return b.Unsupported("only float");
  }
  const DataType dst_type = DstType(int8);
  const ValueId out = b.DefinePlainOutput(0, dst_type, out_shape);
  if (int8 && int8->dst) b.SetQuant(out, *int8->dst);
  std::vector<std::pair<int, ValueId>> args = {{DNNL_ARG_SRC, b.AliasValue(b.Plain(a), as)},
                                               {DNNL_ARG_DST, b.AliasValue(out, full)}};
  std::unordered_map<int, memory> fixed;
  if (int8 && int8->weights) {
    fixed[DNNL_ARG_WEIGHTS] =
        b.ConstantMemory(int8->weights->values, PlainDesc(DataType::kS8, ws), (*pd)->weights_desc());
  } else if (constant_w) {
    fixed[DNNL_ARG_WEIGHTS] = b.ConstantMemory(w, PlainDesc(DataType::kF32, ws), (*pd)->weights_desc());
  } else {
    args.push_back({DNNL_ARG_WEIGHTS, b.AliasValue(b.Plain(w), ws)});
  }
  if (bias) fixed[DNNL_ARG_BIAS] = BiasMemory(b, *bias, {1, full[1]}, 1.f, 1.f, int8, full[1]);
  b.AddPrimitive(dnnl::matmul(**pd), **pd, std::move(args), std::move(fixed));
  b.CountMacs(ElementCount(full) * as[product_rank - 1]);
  return Status::Ok();
}

}  // namespace

std::vector<OpEntry> LinearOps() { return {{"Gemm", BuildGemm, true}, {"MatMul", BuildMatMul, true}}; }

}  // namespace ppml::engine
