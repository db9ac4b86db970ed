// Gemm and MatMul on oneDNN matmul, with fused activations.
#include "engine/op_util.h"
#include "engine/ops.h"

namespace ppml::engine {
namespace {

using dnnl::memory;

memory::desc StridedDesc(const memory::dims& dims, const memory::dims& strides) {
  return memory::desc(dims, memory::data_type::f32, strides);
}

Status BuildGemm(const Node& n, PlanBuilder& b) {
  const ValueId a = b.Input(0), w = b.Input(1), c = b.Input(2);
  if (a == kNoValue || w == kNoValue) return b.Error("needs inputs A and B");
  const PlanValue& av = b.Value(a);
  const PlanValue& wv = b.Value(w);
  if (av.dtype != DataType::kF32 || wv.dtype != DataType::kF32) return b.Unsupported("only float tensors");
  if (av.shape.size() != 2 || wv.shape.size() != 2) return b.Error("A and B must be matrices");
  const bool trans_a = n.Int("transA", 0) != 0, trans_b = n.Int("transB", 0) != 0;
  const float alpha = n.Float("alpha", 1.f), beta = n.Float("beta", 1.f);
  const int64_t m = trans_a ? av.shape[1] : av.shape[0];
  const int64_t k = trans_a ? av.shape[0] : av.shape[1];
  const int64_t k2 = trans_b ? wv.shape[1] : wv.shape[0];
  const int64_t nn = trans_b ? wv.shape[0] : wv.shape[1];
  if (k != k2) return b.Error("inner dimensions differ: A " + ShapeToString(av.shape) + ", B " + ShapeToString(wv.shape));
  const Shape out_shape = {m, nn};

  const ValueId a_plain = b.Plain(a);
  const memory::desc a_desc = trans_a ? StridedDesc({m, k}, {1, m}) : StridedDesc({m, k}, {k, 1});
  const memory::desc w_source = trans_b ? StridedDesc({k, nn}, {1, k}) : StridedDesc({k, nn}, {nn, 1});
  const bool constant_w = b.IsConstant(w);
  const memory::desc w_desc = constant_w ? memory::desc({k, nn}, memory::data_type::f32, memory::format_tag::any)
                                         : w_source;
  const memory::desc dst_desc = PlainDesc(DataType::kF32, out_shape);

  // C: a constant becomes the bias (scaled by beta); a run-time C is a binary
  // post-op, computed as beta * ((alpha/beta)·AB + C) so that beta applies to C alone.
  ValueId c_view = kNoValue;
  memory bias;
  std::optional<memory::desc> bias_desc;
  float scale = alpha;
  Shape c_shape;
  if (c != kNoValue && beta != 0.f) {
    c_shape = b.Value(c).shape;
    if (c_shape.size() > 2) return b.Error("C has rank > 2");
    c_shape.insert(c_shape.begin(), 2 - c_shape.size(), 1);
    if ((c_shape[0] != 1 && c_shape[0] != m) || (c_shape[1] != 1 && c_shape[1] != nn)) {
      return b.Error("C " + ShapeToString(b.Value(c).shape) + " does not broadcast to " + ShapeToString(out_shape));
    }
    if (const Tensor* ct = b.Constant(c)) {
      if (ct->dtype() != DataType::kF32) return b.Unsupported("only float C");
      Tensor scaled(DataType::kF32, c_shape);
      for (int64_t i = 0; i < ct->element_count(); ++i) scaled.data<float>()[i] = beta * ct->data<float>()[i];
      bias_desc = PlainDesc(DataType::kF32, c_shape);
      bias = b.OwnedConstantMemory(std::move(scaled), *bias_desc);
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
  PPML_ASSIGN_OR_RETURN(dnnl::post_ops fused, PostOpsFor(n, ResidualPostOp::kNone, memory::desc(), nullptr));
  for (int i = 0; i < fused.len(); ++i) {
    dnnl::algorithm alg;
    float s, al, be;
    fused.get_params_eltwise(i, s, alg, al, be);
    ops.append_eltwise(s, alg, al, be);
  }
  dnnl::primitive_attr attr = b.Attr();
  if (scale != 1.f) attr.set_output_scales(0, {scale});
  attr.set_post_ops(ops);
  auto desc = bias_desc ? dnnl::matmul::desc(a_desc, w_desc, *bias_desc, dst_desc)
                        : dnnl::matmul::desc(a_desc, w_desc, dst_desc);
  dnnl::matmul::primitive_desc pd(desc, attr, b.engine());

  // Transposed operands are strided views of their plain bytes.
  std::vector<std::pair<int, ValueId>> args = {{DNNL_ARG_SRC, b.AliasValue(a_plain, {m, k}, a_desc)}};
  std::unordered_map<int, memory> fixed;
  if (constant_w) {
    fixed[DNNL_ARG_WEIGHTS] = b.ConstantMemory(w, w_source, pd.weights_desc());
  } else {
    args.push_back({DNNL_ARG_WEIGHTS, b.AliasValue(b.Plain(w), {k, nn}, w_source)});
  }
  if (bias) fixed[DNNL_ARG_BIAS] = bias;
  args.push_back({DNNL_ARG_DST, b.DefinePlainOutput(0, DataType::kF32, out_shape)});
  if (c_view != kNoValue) args.push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(binary_index) | DNNL_ARG_SRC_1, c_view});
  b.AddPrimitive(dnnl::matmul(pd), pd, std::move(args), std::move(fixed));
  b.CountMacs(m * k * nn);
  return Status::Ok();
}

Status BuildMatMul(const Node& n, PlanBuilder& b) {
  const ValueId a = b.Input(0), w = b.Input(1);
  if (a == kNoValue || w == kNoValue) return b.Error("needs two inputs");
  if (b.Value(a).dtype != DataType::kF32 || b.Value(w).dtype != DataType::kF32) return b.Unsupported("only float");
  Shape as = b.Value(a).shape, ws = b.Value(w).shape;
  if (as.empty() || ws.empty()) return b.Error("MatMul inputs must have rank >= 1");
  const bool a_vector = as.size() == 1, w_vector = ws.size() == 1;
  if (a_vector) as.insert(as.begin(), 1);
  if (w_vector) ws.push_back(1);
  const size_t rank = std::max(as.size(), ws.size());
  as.insert(as.begin(), rank - as.size(), 1);
  ws.insert(ws.begin(), rank - ws.size(), 1);
  if (as[rank - 1] != ws[rank - 2]) {
    return b.Error("inner dimensions differ: " + ShapeToString(b.Value(a).shape) + " x " +
                   ShapeToString(b.Value(w).shape));
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

  PPML_ASSIGN_OR_RETURN(dnnl::post_ops ops, PostOpsFor(n, ResidualPostOp::kNone, memory::desc(), nullptr));
  dnnl::primitive_attr attr = b.Attr();
  attr.set_post_ops(ops);
  const bool constant_w = b.IsConstant(w) && rank == 2;
  const memory::desc w_plain = PlainDesc(DataType::kF32, ws);
  const memory::desc w_desc = constant_w ? AnyDesc(DataType::kF32, ws) : w_plain;
  dnnl::matmul::desc desc(PlainDesc(DataType::kF32, as), w_desc, PlainDesc(DataType::kF32, full));
  dnnl::matmul::primitive_desc pd(desc, attr, b.engine());
  const ValueId out = b.DefinePlainOutput(0, DataType::kF32, out_shape);
  std::vector<std::pair<int, ValueId>> args = {{DNNL_ARG_SRC, b.AliasValue(b.Plain(a), as)},
                                               {DNNL_ARG_DST, b.AliasValue(out, full)}};
  std::unordered_map<int, memory> fixed;
  if (b.IsConstant(w)) {
    fixed[DNNL_ARG_WEIGHTS] = b.ConstantMemory(w, w_plain, pd.weights_desc());
  } else {
    args.push_back({DNNL_ARG_WEIGHTS, b.AliasValue(b.Plain(w), ws)});
  }
  b.AddPrimitive(dnnl::matmul(pd), pd, std::move(args), std::move(fixed));
  b.CountMacs(ElementCount(full) * as[rank - 1]);
  return Status::Ok();
}

}  // namespace

std::vector<OpEntry> LinearOps() { return {{"Gemm", BuildGemm}, {"MatMul", BuildMatMul}}; }

}  // namespace ppml::engine
