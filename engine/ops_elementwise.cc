// Element-wise ops: activations (oneDNN eltwise; Erf a plain loop), arithmetic,
// comparisons and logic with ONNX broadcasting (oneDNN binary, reference
// kernels for what it cannot do),
// standalone BatchNormalization, and the no-ops Identity and Dropout.
#include <cmath>

#include "engine/op_util.h"
#include "engine/ops.h"
#include "engine/reference_ops.h"

namespace ppml::engine {
namespace {

using dnnl::memory;

// The activation a node computes, with its ONNX attributes and defaults.
Result<FusedEltwise> ActivationOf(const Node& n, PlanBuilder& b) {
  FusedEltwise a{n.op_type, 0.f, 0.f};
  if (n.op_type == "LeakyRelu") a.alpha = n.Float("alpha", 0.01f);
  if (n.op_type == "Swish") a.alpha = n.Float("alpha", 1.f);
  if (n.op_type == "Elu") a.alpha = n.Float("alpha", 1.f);
  if (n.op_type == "Selu") {
    a.alpha = n.Float("alpha", 1.67326319217681884765625f);
    a.beta = n.Float("gamma", 1.05070102214813232421875f);
  }
  if (n.op_type == "Gelu") {
    const std::string approximate = n.String("approximate", "none");
    if (approximate != "none" && approximate != "tanh") return b.Error("approximate must be none or tanh");
    a.alpha = approximate == "tanh" ? 1.f : 0.f;
  }
  if (n.op_type == "HardSigmoid") {
    a.alpha = n.Float("alpha", 0.2f);
    a.beta = n.Float("beta", 0.5f);
  }
  if (n.op_type == "Clip") {
    a.alpha = -INFINITY;
    a.beta = INFINITY;
    if (n.opset < 11) {
      a.alpha = n.Float("min", a.alpha);
      a.beta = n.Float("max", a.beta);
    } else {
      for (size_t i = 1; i < 3; ++i) {
        const ValueId id = b.Input(i);
        if (id == kNoValue) continue;
        const Tensor* t = b.Constant(id);
        if (!t) return b.Unsupported("Clip bounds must be constants");
        if (t->dtype() != DataType::kF32 || t->element_count() != 1) return b.Error("Clip bounds must be float scalars");
        (i == 1 ? a.alpha : a.beta) = t->data<float>()[0];
      }
    }
  }
  return a;
}

Status BuildUnary(const Node& n, PlanBuilder& b) {
  ValueId x = b.RawInput(0);
  if (x == kNoValue) return b.Error("missing input");
  // Relu of a symmetric quantized tensor stays quantized: for u8 it is the identity.
  const auto& quant = b.Value(x).quant;
  if (n.op_type == "Relu" && quant && quant->zero_point == 0) {
    if (quant->dtype == DataType::kU8) {
      b.DefineAliasOutput(0, x, b.Value(x).shape);
      return Status::Ok();
    }
    dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_relu, b.Value(x).desc,
                                  0.f, 0.f);
    dnnl::eltwise_forward::primitive_desc pd(d, b.Attr(), b.engine());
    const ValueId out = b.DefineOutput(0, b.Value(x).dtype, b.Value(x).shape, b.Value(x).desc, x);
    b.SetQuant(out, *quant);
    b.AddPrimitive(dnnl::eltwise_forward(pd), pd, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, out}});
    return Status::Ok();
  }
  x = b.Float(x);
  if (b.Value(x).dtype != DataType::kF32) return b.Unsupported("only float tensors");
  PPML_ASSIGN_OR_RETURN(FusedEltwise activation, ActivationOf(n, b));
  PPML_ASSIGN_OR_RETURN(auto steps, EltwiseStepsFor(activation));
  const memory::desc desc = b.Value(x).desc;
  if (desc.get_size() == 0) {  // an empty tensor
    b.DefinePlainOutput(0, DataType::kF32, b.Value(x).shape);
    return Status::Ok();
  }
  const ValueId out = b.DefineOutput(0, DataType::kF32, b.Value(x).shape, desc, x);
  ValueId src = x;
  for (const EltwiseStep& s : steps) {
    dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_inference, s.algorithm, desc, s.alpha, s.beta);
    dnnl::eltwise_forward::primitive_desc pd(d, b.Attr(), b.engine());
    b.AddPrimitive(dnnl::eltwise_forward(pd), pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}});
    src = out;
  }
  return Status::Ok();
}

Result<ref::BinaryOp> ReferenceBinaryOp(const std::string& op) {
  if (op == "Add" || op == "Sum") return ref::BinaryOp::kAdd;
  if (op == "Sub") return ref::BinaryOp::kSub;
  if (op == "Mul") return ref::BinaryOp::kMul;
  if (op == "Div") return ref::BinaryOp::kDiv;
  if (op == "Max") return ref::BinaryOp::kMax;
  if (op == "Min") return ref::BinaryOp::kMin;
  if (op == "Pow") return ref::BinaryOp::kPow;
  if (op == "Mean") return ref::BinaryOp::kAdd;
  if (op == "Equal") return ref::BinaryOp::kEqual;
  if (op == "Less") return ref::BinaryOp::kLess;
  if (op == "Greater") return ref::BinaryOp::kGreater;
  if (op == "And") return ref::BinaryOp::kMin;  // on bools (u8 0/1)
  if (op == "Or") return ref::BinaryOp::kMax;
  return Status::Unsupported("binary op " + op);
}

bool DnnlBinary(const std::string& op, dnnl::algorithm* alg, bool* commutative) {
  static const std::map<std::string, std::pair<dnnl::algorithm, bool>> kOps = {
      {"Add", {dnnl::algorithm::binary_add, true}}, {"Sum", {dnnl::algorithm::binary_add, true}},
      {"Sub", {dnnl::algorithm::binary_sub, false}}, {"Mul", {dnnl::algorithm::binary_mul, true}},
      {"Div", {dnnl::algorithm::binary_div, false}}, {"Max", {dnnl::algorithm::binary_max, true}},
      {"Min", {dnnl::algorithm::binary_min, true}}};
  auto it = kOps.find(op);
  if (it == kOps.end()) return false;
  *alg = it->second.first;
  *commutative = it->second.second;
  return true;
}

// A value of float meaning as oneDNN's binary reads it: a quantized one with
// no zero point as it is stored (scaled by the kernel), others as floats.
ValueId AsBinaryOperand(PlanBuilder& b, ValueId id) {
  const PlanValue& v = b.Value(id);
  return v.quant && v.quant->zero_point == 0 && !b.IsConstant(id) ? id : b.Float(id);
}

// Two float operands (held as floats or quantized) on oneDNN binary: dst
// takes src0's shape and layout, so src0 must be the full-shaped operand;
// src1 may broadcast.
bool TryDnnlBinary(const Node& n, PlanBuilder& b, ValueId a, ValueId c, const Shape& out_shape) {
  dnnl::algorithm alg;
  bool commutative;
  if (!DnnlBinary(n.op_type, &alg, &commutative)) return false;
  const auto holds_floats = [&](ValueId id) { return b.Value(id).dtype == DataType::kF32 || b.Value(id).quant; };
  if (!holds_floats(a) || !holds_floats(c)) return false;
  if (ElementCount(out_shape) == 0) return false;
  if (b.Value(a).shape != out_shape) {
    if (!commutative || b.Value(c).shape != out_shape) return false;
    std::swap(a, c);
  }
  a = AsBinaryOperand(b, a);
  c = AsBinaryOperand(b, c);
  const DataType a_type = b.Value(a).dtype, c_type = b.Value(c).dtype;
  Shape padded = b.Value(c).shape;
  padded.insert(padded.begin(), out_shape.size() - padded.size(), 1);
  const bool broadcast = b.Value(c).shape != out_shape;
  // src1 in dst's layout; when it broadcasts, plain, except that a run-time
  // operand broadcast against a blocked one (an SE block's [N,C,1,1] scales)
  // goes to oneDNN's reference kernel when plain, about 100x slower: it gets
  // the layout oneDNN picks for it, dst's blocking.
  const auto src1_desc = [&](const memory::desc& dst) {
    if (!broadcast) return WithDataType(dst, c_type);
    const auto tag = ChannelBlockedTag(dst, out_shape);
    if (!tag || b.IsConstant(c)) return PlainDesc(c_type, padded);
    return memory::desc(memory::dims(padded.begin(), padded.end()), DnnlType(c_type), *tag);
  };
  // An output kept quantized for INT8 readers only is written quantized: the
  // binary scales, rounds and saturates, sparing the quantizing pass.
  std::optional<QuantParams> quantize_to = SymmetricQuant(b, n.outputs[0]);
  if (quantize_to && !b.ReadOnlyAsStored(n.outputs[0])) quantize_to.reset();
  dnnl::primitive_attr attr = b.Attr();
  if (quantize_to) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_linear, 1.f / quantize_to->scale, 0.f);
    attr.set_post_ops(ops);
  }
  if (b.Value(a).quant) attr.set_scales(DNNL_ARG_SRC_0, 0, {b.Value(a).quant->scale});
  if (b.Value(c).quant) attr.set_scales(DNNL_ARG_SRC_1, 0, {b.Value(c).quant->scale});
  // `dst`: the float output's layout, which src0 takes too.
  const auto binary_pd = [&](const memory::desc& dst) {
    const memory::desc out_desc = quantize_to ? WithDataType(dst, quantize_to->dtype) : dst;
    return dnnl::binary::primitive_desc(
        dnnl::binary::desc(alg, WithDataType(dst, a_type), src1_desc(dst), out_desc), attr, b.engine());
  };
  memory::desc dst =
      b.IsConstant(a) ? PlainDesc(DataType::kF32, out_shape) : WithDataType(b.Value(a).desc, DataType::kF32);
  dnnl::binary::primitive_desc pd = binary_pd(dst);
  // oneDNN's binary kernels take the blocking of the ISA's vector width only:
  // 8-channel blocks (a grouped convolution's choice) on AVX-512 go to the
  // reference kernel, 60x slower (RegNet's SE scaling: 254 of 280 ms per
  // batch). Channels-last has kernels everywhere and is what 1x1 convolutions
  // read next.
  if (IsReferenceImpl(pd)) {
    const memory::desc channels_last = ChannelsLastDesc(DataType::kF32, out_shape);
    if (!channels_last.is_zero() && channels_last != dst) {
      dnnl::binary::primitive_desc retry = binary_pd(channels_last);
      if (!IsReferenceImpl(retry)) {
        dst = channels_last;
        pd = std::move(retry);
      }
    }
  }
  // Broadcasts that none of oneDNN's kernels take (Swin's attention mask
  // [1,H,1,49,49] over [N,H,W,49,49]) go to the engine's own loop, which runs
  // contiguous stretches: 1.8x the whole of Swin-T against oneDNN's reference.
  if (IsReferenceImpl(pd)) return false;
  const ValueId src0 = b.InLayout(a, WithDataType(dst, a_type));
  const ValueId src1 =
      broadcast ? b.InLayout(b.AliasValue(b.Plain(c), padded), src1_desc(dst)) : b.InLayout(c, src1_desc(dst));
  const memory::desc out_desc = pd.dst_desc();
  // In place of src0 when it holds floats too.
  const ValueId out = quantize_to ? b.DefineOutput(0, quantize_to->dtype, out_shape, out_desc)
                                  : b.DefineOutput(0, DataType::kF32, out_shape, dst,
                                                   a_type == DataType::kF32 ? src0 : kNoValue);
  if (quantize_to) b.SetQuant(out, *quantize_to);
  std::unordered_map<int, memory> fixed;
  std::vector<std::pair<int, ValueId>> args = {{DNNL_ARG_SRC_0, src0}, {DNNL_ARG_DST, out}};
  if (b.IsConstant(src1)) {
    fixed[DNNL_ARG_SRC_1] = b.ConstantMemory(src1, b.Value(src1).desc);
  } else {
    args.push_back({DNNL_ARG_SRC_1, src1});
  }
  b.AddPrimitive(dnnl::binary(pd), pd, std::move(args), std::move(fixed));
  return true;
}

// Binary and variadic (Sum, Mean, Max, Min) arithmetic. Quantized operands
// are read as stored where oneDNN's binary takes them (an SE block's scaling
// of an INT8 feature map), as floats elsewhere.
Status BuildArithmetic(const Node& n, PlanBuilder& b) {
  std::vector<ValueId> operands;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    if (b.RawInput(i) != kNoValue) operands.push_back(b.RawInput(i));
  }
  if (operands.empty()) return b.Error("needs at least one input");
  const bool variadic = n.op_type == "Sum" || n.op_type == "Mean" || n.op_type == "Max" || n.op_type == "Min";
  if (!variadic && operands.size() != 2) return b.Error("needs two inputs");
  const auto meaning = [&](ValueId id) { return b.Value(id).quant ? DataType::kF32 : b.Value(id).dtype; };
  const DataType dtype = meaning(operands[0]);
  Shape out_shape = b.Value(operands[0]).shape;
  for (ValueId id : operands) {
    if (meaning(id) != dtype) {
      // Pow alone may mix types (a float base with an integer exponent).
      return n.op_type == "Pow" ? b.Unsupported("mixed input data types") : b.Error("inputs have different data types");
    }
    auto shape = ref::BroadcastShape(out_shape, b.Value(id).shape);
    if (!shape.ok()) return b.Error(shape.status().message());
    out_shape = *shape;
  }
  if (operands.size() == 2 && n.op_type != "Mean" && TryDnnlBinary(n, b, operands[0], operands[1], out_shape)) {
    return Status::Ok();
  }
  for (ValueId& id : operands) id = b.Float(id);
  ref::BinaryOp op;
  if (n.op_type == "Mod") {
    op = n.Int("fmod", 0) != 0 ? ref::BinaryOp::kFmod : ref::BinaryOp::kMod;
  } else {
    PPML_ASSIGN_OR_RETURN(op, ReferenceBinaryOp(n.op_type));
  }
  if ((n.op_type == "And" || n.op_type == "Or") && dtype != DataType::kU8) return b.Error("inputs must be bool");
  for (ValueId& id : operands) id = b.Plain(id);
  const ValueId out = b.DefinePlainOutput(0, ref::IsComparison(op) ? DataType::kU8 : dtype, out_shape);
  const bool mean = n.op_type == "Mean";
  b.AddCustom([operands, out, op, mean, dtype](const RunContext& c) -> Status {
    const ref::MutView dst = MutViewOf(c, out);
    if (operands.size() == 2) {  // also comparisons, whose bools cannot hold an operand
      PPML_RETURN_IF_ERROR(ref::Binary(op, ConstViewOf(c, operands[0]), ConstViewOf(c, operands[1]), dst));
    } else {
      PPML_RETURN_IF_ERROR(ref::Expand(ConstViewOf(c, operands[0]), dst));
      const ref::ConstView acc{dst.dtype, dst.shape, dst.data};
      for (size_t i = 1; i < operands.size(); ++i) {
        PPML_RETURN_IF_ERROR(ref::Binary(op, acc, ConstViewOf(c, operands[i]), dst));
      }
    }
    if (mean && dtype == DataType::kF32) {
      const float inv = 1.f / static_cast<float>(operands.size());
      float* p = static_cast<float*>(dst.data);
      for (int64_t i = 0, e = ElementCount(dst.shape); i < e; ++i) p[i] *= inv;
    }
    return Status::Ok();
  });
  return Status::Ok();
}

Status BuildBatchNorm(const Node& n, PlanBuilder& b) {
  if (n.Int("training_mode", 0) != 0 || n.outputs.size() > 1) return b.Unsupported("training mode");
  const ValueId x = b.Input(0);
  if (x == kNoValue || n.inputs.size() < 5) return b.Error("needs X, scale, B, mean and var");
  const PlanValue& xv = b.Value(x);
  if (xv.dtype != DataType::kF32 || xv.shape.size() < 2) return b.Unsupported("only float tensors of rank >= 2");
  const int64_t channels = xv.shape[1];
  for (size_t i = 1; i < 5; ++i) {
    if (b.Value(b.Input(i)).shape != Shape{channels}) return b.Error("parameter " + std::to_string(i) + " must be [C]");
  }
  const memory::desc channel_desc({channels}, memory::data_type::f32, memory::format_tag::a);
  const auto flags = dnnl::normalization_flags::use_global_stats | dnnl::normalization_flags::use_scale |
                     dnnl::normalization_flags::use_shift;
  dnnl::batch_normalization_forward::desc d(dnnl::prop_kind::forward_inference, xv.desc, n.Float("epsilon", 1e-5f),
                                            flags);
  dnnl::batch_normalization_forward::primitive_desc pd(d, b.Attr(), b.engine());
  const ValueId out = b.DefineOutput(0, DataType::kF32, xv.shape, xv.desc, x);
  std::vector<std::pair<int, ValueId>> args = {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, out}};
  std::unordered_map<int, memory> fixed;
  const int kArgs[] = {DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
  for (size_t i = 1; i < 5; ++i) {
    const ValueId p = b.Input(i);
    if (b.IsConstant(p)) {
      fixed[kArgs[i - 1]] = b.ConstantMemory(p, channel_desc);
    } else {
      args.push_back({kArgs[i - 1], b.InLayout(p, channel_desc)});
    }
  }
  b.AddPrimitive(dnnl::batch_normalization_forward(pd), pd, std::move(args), std::move(fixed));
  return Status::Ok();
}

Status BuildIdentity(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  if (n.op_type == "Dropout" && b.Input(2) != kNoValue) {
    const Tensor* training = b.Constant(b.Input(2));
    // Training mode with a ratio of 0 drops nothing (exports of F.dropout(x, p=0.0) look like that).
    const Tensor* ratio = b.Input(1) == kNoValue ? nullptr : b.Constant(b.Input(1));
    const bool drops_nothing = ratio && ratio->element_count() == 1 && ratio->ElementAsDouble(0) == 0.0;
    if (!drops_nothing && (!training || training->element_count() != 1 || training->bytes()[0] != std::byte{0})) {
      return b.Unsupported("Dropout in training mode");
    }
  }
  b.DefineAliasOutput(0, x, b.Value(x).shape);
  if (n.outputs.size() > 1 && !n.outputs[1].empty()) {  // Dropout's mask: all kept
    Tensor mask(DataType::kU8, b.Value(x).shape);
    std::fill(mask.bytes().begin(), mask.bytes().end(), std::byte{1});
    b.DefineConstantOutput(1, std::move(mask));
  }
  return Status::Ok();
}

// A unary op oneDNN lacks, as a loop over plain values of type T.
template <typename T, typename Fn>
Status BuildPlainUnary(PlanBuilder& b, DataType dtype, const char* wrong_type, Fn fn) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  if (b.Value(x).dtype != dtype) return b.Unsupported(wrong_type);
  const ValueId src = b.Plain(x);
  const ValueId out = b.DefinePlainOutput(0, dtype, b.Value(x).shape, src);
  b.AddCustom([=](const RunContext& c) {
    const auto* from = static_cast<const T*>(c.Data(src));
    auto* to = static_cast<T*>(c.Data(out));
    for (int64_t i = 0, count = ElementCount(c.Value(out).shape); i < count; ++i) to[i] = fn(from[i]);
    return Status::Ok();
  });
  return Status::Ok();
}

Status BuildNot(const Node&, PlanBuilder& b) {
  return BuildPlainUnary<uint8_t>(b, DataType::kU8, "input must be bool", [](uint8_t v) -> uint8_t { return v == 0; });
}

// oneDNN has no erf of its own (only inside GELU, which FuseGelus forms).
Status BuildErf(const Node&, PlanBuilder& b) {
  return BuildPlainUnary<float>(b, DataType::kF32, "only float tensors", [](float v) { return std::erf(v); });
}

}  // namespace

const std::vector<const char*>& UnaryElementwiseOps() {
  static const std::vector<const char*> ops = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid",
                                               "HardSwish", "Elu", "Selu", "Exp", "Log", "Abs", "Sqrt", "Neg",
                                               "Reciprocal", "Softplus", "Mish", "Gelu", "Swish"};
  return ops;
}

const std::vector<const char*>& BroadcastingElementwiseOps() {
  static const std::vector<const char*> ops = {"Add", "Sub", "Mul", "Div",   "Pow",  "Sum",     "Mean", "Max",
                                               "Min", "Mod", "Equal", "Less", "Greater", "And", "Or"};
  return ops;
}

std::vector<OpEntry> ElementwiseOps() {
  std::vector<OpEntry> ops;
  for (const char* op : UnaryElementwiseOps()) {
    // Only Relu keeps a quantized input quantized; the others read floats.
    ops.push_back({op, BuildUnary, /*int8_aware=*/std::string(op) == "Relu"});
  }
  ops.push_back({"Erf", BuildErf});
  for (const char* op : BroadcastingElementwiseOps()) ops.push_back({op, BuildArithmetic, /*int8_aware=*/true});
  ops.push_back({"Not", BuildNot});
  ops.push_back({"BatchNormalization", BuildBatchNorm});
  ops.push_back({"Identity", BuildIdentity, /*int8_aware=*/true});
  ops.push_back({"Dropout", BuildIdentity, /*int8_aware=*/true});
  return ops;
}

}  // namespace ppml::engine
