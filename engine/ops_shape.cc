// Shape and data-movement ops: views where the bytes do not move (Reshape &
// co), oneDNN reorders for float Transpose, reference kernels for the rest.
// With constant inputs these fold away at plan time (see plan.h).
#include <algorithm>
#include <cstring>
#include <numeric>

#include "engine/onnx_tensor.h"
#include "engine/op_util.h"
#include "engine/ops.h"

namespace ppml::engine {
namespace {

using dnnl::memory;

// Axes from the attribute (older opsets) or from input `input_index`.
Result<std::vector<int64_t>> AxesOf(const Node& n, PlanBuilder& b, int input_since_opset, size_t input_index,
                                    bool* present) {
  *present = true;
  if (n.opset < input_since_opset) {
    *present = n.HasAttr("axes");
    return n.Ints("axes");
  }
  if (b.Input(input_index) == kNoValue) {
    *present = false;
    return std::vector<int64_t>{};
  }
  return b.ConstantInts(input_index);
}

Status ViewAs(PlanBuilder& b, ValueId x, const Shape& shape) {
  b.DefineAliasOutput(0, shape == b.Value(x).shape ? x : b.Plain(x), shape);
  return Status::Ok();
}

// Ops that only move values keep a quantized input quantized, with its parameters.
void KeepQuant(PlanBuilder& b, ValueId in, ValueId out) {
  if (b.Value(in).quant) b.SetQuant(out, *b.Value(in).quant);
}

Status BuildReshape(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  PPML_ASSIGN_OR_RETURN(std::vector<int64_t> wanted, b.ConstantInts(1));
  const Shape& in = b.Value(x).shape;
  const bool allow_zero = n.Int("allowzero", 0) != 0;
  Shape out;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < wanted.size(); ++i) {
    int64_t d = wanted[i];
    if (d == 0 && !allow_zero) {
      if (i >= in.size()) return b.Error("shape has 0 at position " + std::to_string(i) + " beyond the input rank");
      d = in[i];
    }
    if (d == -1) {
      if (infer >= 0) return b.Error("shape has more than one -1");
      infer = static_cast<int>(i);
      out.push_back(1);
      continue;
    }
    if (d < 0) return b.Error("shape has a negative dimension");
    known *= d;
    out.push_back(d);
  }
  const int64_t total = ElementCount(in);
  if (infer >= 0) {
    if (known == 0 || total % known != 0) return b.Error("cannot infer -1 for " + ShapeToString(in));
    out[infer] = total / known;
  }
  if (ElementCount(out) != total) {
    return b.Error("cannot reshape " + ShapeToString(in) + " to " + ShapeToString(out));
  }
  return ViewAs(b, x, out);
}

Status BuildFlatten(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  const Shape& in = b.Value(x).shape;
  const int64_t rank = static_cast<int64_t>(in.size());
  int64_t axis = n.Int("axis", 1);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis > rank) return b.Error("axis out of range");
  const int64_t outer = std::accumulate(in.begin(), in.begin() + axis, int64_t{1}, std::multiplies<>());
  const int64_t inner = std::accumulate(in.begin() + axis, in.end(), int64_t{1}, std::multiplies<>());
  return ViewAs(b, x, {outer, inner});
}

Status BuildSqueeze(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  const Shape& in = b.Value(x).shape;
  bool present;
  PPML_ASSIGN_OR_RETURN(auto axes, AxesOf(n, b, 13, 1, &present));
  std::vector<bool> drop(in.size(), false);
  if (!present) {
    for (size_t i = 0; i < in.size(); ++i) drop[i] = in[i] == 1;
  }
  for (int64_t a : axes) {
    PPML_ASSIGN_OR_RETURN(int64_t axis, ref::NormalizeAxis(a, static_cast<int64_t>(in.size())));
    if (in[axis] != 1) return b.Error("cannot squeeze axis " + std::to_string(a) + " of size " + std::to_string(in[axis]));
    drop[axis] = true;
  }
  Shape out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!drop[i]) out.push_back(in[i]);
  }
  return ViewAs(b, x, out);
}

Status BuildUnsqueeze(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  const Shape& in = b.Value(x).shape;
  bool present;
  PPML_ASSIGN_OR_RETURN(auto axes, AxesOf(n, b, 13, 1, &present));
  if (!present) return b.Error("missing axes");
  const int64_t rank = static_cast<int64_t>(in.size() + axes.size());
  std::vector<bool> inserted(rank, false);
  for (int64_t a : axes) {
    PPML_ASSIGN_OR_RETURN(int64_t axis, ref::NormalizeAxis(a, rank));
    if (inserted[axis]) return b.Error("axis " + std::to_string(a) + " repeats");
    inserted[axis] = true;
  }
  Shape out;
  size_t next = 0;
  for (int64_t i = 0; i < rank; ++i) out.push_back(inserted[i] ? 1 : in[next++]);
  return ViewAs(b, x, out);
}

Status BuildTranspose(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  const PlanValue& xv = b.Value(x);
  const auto perm = n.Ints("perm");
  auto out_shape = ref::TransposeOutputShape(xv.shape, perm);
  if (!out_shape.ok()) return b.Error(out_shape.status().message());
  std::vector<int64_t> full_perm = perm;
  if (full_perm.empty()) {
    for (int64_t i = static_cast<int64_t>(xv.shape.size()) - 1; i >= 0; --i) full_perm.push_back(i);
  }
  if (HasDnnlType(xv.dtype) && ElementCount(xv.shape) > 0 && !xv.shape.empty()) {
    // A reorder from the input's plain bytes viewed with permuted axes.
    std::vector<int> to_output(full_perm.size());
    for (size_t i = 0; i < full_perm.size(); ++i) to_output[full_perm[i]] = static_cast<int>(i);
    const ValueId src = b.Plain(x);
    const memory::desc permuted = b.Value(src).desc.permute_axes(to_output);
    const ValueId view = b.AliasValue(src, *out_shape, permuted);
    const ValueId out = b.DefinePlainOutput(0, xv.dtype, *out_shape);
    KeepQuant(b, x, out);
    b.AddCopy(view, out);
    return Status::Ok();
  }
  const ValueId src = b.Plain(x);
  const ValueId out = b.DefinePlainOutput(0, xv.dtype, *out_shape);
  KeepQuant(b, x, out);
  b.AddCustom([src, out, full_perm](const RunContext& c) {
    return ref::Transpose(ConstViewOf(c, src), full_perm, MutViewOf(c, out));
  });
  return Status::Ok();
}

Status BuildShape(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  const Shape& in = b.Value(x).shape;
  const int64_t rank = static_cast<int64_t>(in.size());
  int64_t start = n.Int("start", 0), end = n.Int("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, start, rank);
  std::vector<int64_t> dims(in.begin() + start, in.begin() + end);
  b.DefineConstantOutput(0, Tensor::FromVector<int64_t>({static_cast<int64_t>(dims.size())}, dims));
  return Status::Ok();
}

Status BuildSize(const Node& n, PlanBuilder& b) {
  if (b.Input(0) == kNoValue) return b.Error("missing input");
  b.DefineConstantOutput(0, Tensor::FromVector<int64_t>({}, {ElementCount(b.Value(b.Input(0)).shape)}));
  return Status::Ok();
}

Status BuildGather(const Node& n, PlanBuilder& b) {
  const ValueId data = b.Input(0), indices = b.Input(1);
  if (data == kNoValue || indices == kNoValue) return b.Error("needs data and indices");
  PPML_ASSIGN_OR_RETURN(int64_t axis,
                        ref::NormalizeAxis(n.Int("axis", 0), static_cast<int64_t>(b.Value(data).shape.size())));
  auto shape = ref::GatherOutputShape(b.Value(data).shape, b.Value(indices).shape, axis);
  if (!shape.ok()) return b.Error(shape.status().message());
  const ValueId d = b.Plain(data), i = b.Plain(indices);
  const ValueId out = b.DefinePlainOutput(0, b.Value(data).dtype, *shape);
  KeepQuant(b, data, out);
  b.AddCustom([d, i, out, axis](const RunContext& c) {
    return ref::Gather(ConstViewOf(c, d), ConstViewOf(c, i), axis, MutViewOf(c, out));
  });
  return Status::Ok();
}

Status BuildPad(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  const std::string mode_name = n.String("mode", "constant");
  ref::PadMode mode;
  if (mode_name == "constant") mode = ref::PadMode::kConstant;
  else if (mode_name == "reflect") mode = ref::PadMode::kReflect;
  else if (mode_name == "edge") mode = ref::PadMode::kEdge;
  else return b.Unsupported("pad mode '" + mode_name + "'");
  std::vector<int64_t> pads;
  double value = 0;
  if (n.opset < 11) {
    pads = n.Ints("pads");
    value = n.Float("value", 0.f);
  } else {
    PPML_ASSIGN_OR_RETURN(pads, b.ConstantInts(1));
    if (b.Input(2) != kNoValue) {
      const Tensor* v = b.Constant(b.Input(2));
      if (!v) return b.Unsupported("a run-time constant_value");
      if (v->element_count() != 1) return b.Error("constant_value must be a scalar");
      value = v->ElementAsDouble(0);
    }
    if (b.Input(3) != kNoValue) return b.Unsupported("the axes input of Pad");
  }
  auto shape = ref::PadOutputShape(b.Value(x).shape, pads);
  if (!shape.ok()) return b.Error(shape.status().message());
  // No padding at all (torch exports one before each of DenseNet's
  // AveragePools): the input as it is, in its layout, with no copy.
  if (std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p == 0; })) {
    b.DefineAliasOutput(0, x, b.Value(x).shape);
    return Status::Ok();
  }
  const ValueId src = b.Plain(x);
  const ValueId out = b.DefinePlainOutput(0, b.Value(x).dtype, *shape);
  b.AddCustom([src, out, pads, mode, value](const RunContext& c) {
    return ref::Pad(ConstViewOf(c, src), pads, mode, value, MutViewOf(c, out));
  });
  return Status::Ok();
}

Status BuildSlice(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  std::vector<int64_t> starts, ends, axes, steps;
  if (n.opset < 10) {
    starts = n.Ints("starts");
    ends = n.Ints("ends");
    axes = n.Ints("axes");
  } else {
    PPML_ASSIGN_OR_RETURN(starts, b.ConstantInts(1));
    PPML_ASSIGN_OR_RETURN(ends, b.ConstantInts(2));
    if (b.Input(3) != kNoValue) {
      PPML_ASSIGN_OR_RETURN(axes, b.ConstantInts(3));
    }
    if (b.Input(4) != kNoValue) {
      PPML_ASSIGN_OR_RETURN(steps, b.ConstantInts(4));
    }
  }
  if (axes.empty()) {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  auto plan = ref::PlanSlice(b.Value(x).shape, starts, ends, axes, steps);
  if (!plan.ok()) return b.Error(plan.status().message());
  const Shape& shape = plan->length;
  const ValueId src = b.Plain(x);
  const ValueId out = b.DefinePlainOutput(0, b.Value(x).dtype, shape);
  KeepQuant(b, x, out);
  const bool forward = std::all_of(plan->step.begin(), plan->step.end(), [](int64_t s) { return s > 0; });
  if (HasDnnlType(b.Value(x).dtype) && forward && ElementCount(shape) > 0 && !b.IsConstant(x)) {
    // A reorder (oneDNN's, on all threads) from the input's plain bytes
    // viewed with the slice's offset and strides.
    memory::desc view(memory::dims(shape.begin(), shape.end()), DnnlType(b.Value(x).dtype),
                      memory::dims(plan->strides.begin(), plan->strides.end()));
    view.data.offset0 = plan->offset;
    b.AddCopy(b.AliasValue(src, shape, view), out);
    return Status::Ok();
  }
  b.AddCustom([=](const RunContext& c) {
    return ref::Slice(ConstViewOf(c, src), starts, ends, axes, steps, MutViewOf(c, out));
  });
  return Status::Ok();
}

Status BuildCast(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  auto to = DataTypeFromOnnx(static_cast<int>(n.Int("to", 0)), "Cast's 'to'");
  if (!to.ok()) return b.Unsupported(to.status().message());
  const bool to_bool = n.Int("to", 0) == onnx::TensorProto::BOOL;
  const ValueId src = b.Plain(x);
  const ValueId out = b.DefinePlainOutput(0, *to, b.Value(x).shape);
  b.AddCustom([src, out, to_bool](const RunContext& c) {
    return to_bool ? ref::CastToBool(ConstViewOf(c, src), MutViewOf(c, out))
                   : ref::Cast(ConstViewOf(c, src), MutViewOf(c, out));
  });
  return Status::Ok();
}

Status BuildConstantOfShape(const Node& n, PlanBuilder& b) {
  PPML_ASSIGN_OR_RETURN(std::vector<int64_t> shape, b.ConstantInts(0));
  const Tensor* value = n.TensorAttr("value");
  Tensor out(value ? value->dtype() : DataType::kF32, Shape(shape.begin(), shape.end()));
  if (value) {
    if (value->element_count() != 1) return b.Error("value must hold one element");
    const size_t size = ElementSize(value->dtype());
    for (int64_t i = 0; i < out.element_count(); ++i) {
      std::memcpy(static_cast<char*>(out.raw_data()) + i * size, value->raw_data(), size);
    }
  }
  b.DefineConstantOutput(0, std::move(out));
  return Status::Ok();
}

Status BuildExpand(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  PPML_ASSIGN_OR_RETURN(std::vector<int64_t> shape, b.ConstantInts(1));
  auto out_shape = ref::BroadcastShape(b.Value(x).shape, Shape(shape.begin(), shape.end()));
  if (!out_shape.ok()) return b.Error(out_shape.status().message());
  const ValueId src = b.Plain(x);
  const ValueId out = b.DefinePlainOutput(0, b.Value(x).dtype, *out_shape);
  b.AddCustom([src, out](const RunContext& c) { return ref::Expand(ConstViewOf(c, src), MutViewOf(c, out)); });
  return Status::Ok();
}

Status BuildWhere(const Node& n, PlanBuilder& b) {
  const ValueId cond = b.Input(0), x = b.Input(1), y = b.Input(2);
  if (cond == kNoValue || x == kNoValue || y == kNoValue) return b.Error("needs condition, X and Y");
  auto s1 = ref::BroadcastShape(b.Value(cond).shape, b.Value(x).shape);
  if (!s1.ok()) return b.Error(s1.status().message());
  auto s2 = ref::BroadcastShape(*s1, b.Value(y).shape);
  if (!s2.ok()) return b.Error(s2.status().message());
  const ValueId c0 = b.Plain(cond), x0 = b.Plain(x), y0 = b.Plain(y);
  const ValueId out = b.DefinePlainOutput(0, b.Value(x).dtype, *s2);
  b.AddCustom([=](const RunContext& c) {
    return ref::Where(ConstViewOf(c, c0), ConstViewOf(c, x0), ConstViewOf(c, y0), MutViewOf(c, out));
  });
  return Status::Ok();
}

Result<double> ScalarOf(PlanBuilder& b, size_t index) {
  const Tensor* t = b.Constant(b.Input(index));
  if (!t || t->element_count() != 1) return b.Unsupported("Range inputs must be constant scalars");
  return t->ElementAsDouble(0);
}

Status BuildRange(const Node& n, PlanBuilder& b) {
  PPML_ASSIGN_OR_RETURN(double start, ScalarOf(b, 0));
  PPML_ASSIGN_OR_RETURN(double limit, ScalarOf(b, 1));
  PPML_ASSIGN_OR_RETURN(double delta, ScalarOf(b, 2));
  auto length = ref::RangeLength(start, limit, delta);
  if (!length.ok()) return b.Error(length.status().message());
  Tensor out(b.Value(b.Input(0)).dtype, {*length});
  PPML_RETURN_IF_ERROR(ref::Range(start, delta, ref::ViewOf(out)));
  b.DefineConstantOutput(0, std::move(out));
  return Status::Ok();
}

Status BuildReduce(const Node& n, PlanBuilder& b) {
  static const std::map<std::string, ref::ReduceOp> kOps = {
      {"ReduceSum", ref::ReduceOp::kSum},         {"ReduceMean", ref::ReduceOp::kMean},
      {"ReduceMax", ref::ReduceOp::kMax},         {"ReduceMin", ref::ReduceOp::kMin},
      {"ReduceProd", ref::ReduceOp::kProd},       {"ReduceSumSquare", ref::ReduceOp::kSumSquare},
      {"ReduceL1", ref::ReduceOp::kL1},           {"ReduceL2", ref::ReduceOp::kL2},
      {"ReduceLogSumExp", ref::ReduceOp::kLogSumExp}};
  const ValueId x = b.Input(0);
  if (x == kNoValue) return b.Error("missing input");
  if (b.Value(x).dtype != DataType::kF32) return b.Unsupported("only float tensors");
  bool present;
  // ReduceSum takes axes as an input from opset 13, the others from opset 18.
  PPML_ASSIGN_OR_RETURN(auto axes, AxesOf(n, b, n.op_type == "ReduceSum" ? 13 : 18, 1, &present));
  const bool keepdims = n.Int("keepdims", 1) != 0;
  if (!present && n.Int("noop_with_empty_axes", 0) != 0) return ViewAs(b, x, b.Value(x).shape);
  auto shape = ref::ReduceOutputShape(b.Value(x).shape, axes, keepdims);
  if (!shape.ok()) return b.Error(shape.status().message());
  const ValueId src = b.Plain(x);
  const ValueId out = b.DefinePlainOutput(0, DataType::kF32, *shape);
  const ref::ReduceOp op = kOps.at(n.op_type);
  b.AddCustom([=](const RunContext& c) {
    return ref::Reduce(op, ConstViewOf(c, src), axes, keepdims, MutViewOf(c, out));
  });
  return Status::Ok();
}

Status BuildScatterNd(const Node& n, PlanBuilder& b) {
  const ValueId data = b.Input(0), indices = b.Input(1), updates = b.Input(2);
  if (data == kNoValue || indices == kNoValue || updates == kNoValue) return b.Error("needs data, indices and updates");
  const std::string reduction_name = n.String("reduction", "none");
  ref::ScatterReduction reduction;
  if (reduction_name == "none") {
    reduction = ref::ScatterReduction::kNone;
  } else if (reduction_name == "add") {
    reduction = ref::ScatterReduction::kAdd;
  } else if (reduction_name == "mul") {
    reduction = ref::ScatterReduction::kMul;
  } else {
    return b.Unsupported("reduction " + reduction_name);
  }
  const ValueId d = b.Plain(data), i = b.Plain(indices), u = b.Plain(updates);
  const ValueId out = b.DefinePlainOutput(0, b.Value(data).dtype, b.Value(data).shape);
  b.AddCustom([=](const RunContext& c) {
    return ref::ScatterNd(ConstViewOf(c, d), ConstViewOf(c, i), ConstViewOf(c, u), reduction, MutViewOf(c, out));
  });
  return Status::Ok();
}

}  // namespace

std::vector<OpEntry> ShapeOps() {
  std::vector<OpEntry> ops = {
      // Views keep a quantized tensor quantized.
      {"Reshape", BuildReshape, true}, {"Flatten", BuildFlatten, true}, {"Squeeze", BuildSqueeze, true},
      // So do ops that only move values (KeepQuant).
      {"Unsqueeze", BuildUnsqueeze, true}, {"Transpose", BuildTranspose, true}, {"Shape", BuildShape, true},
      {"Size", BuildSize},         {"Gather", BuildGather, true},       {"Pad", BuildPad},
      {"Slice", BuildSlice, true},       {"Cast", BuildCast},           {"ConstantOfShape", BuildConstantOfShape},
      {"Expand", BuildExpand},     {"Where", BuildWhere},         {"Range", BuildRange},
      {"ScatterND", BuildScatterNd}};
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
                         "ReduceL1", "ReduceL2", "ReduceLogSumExp"}) {
    ops.push_back({op, BuildReduce});
  }
  return ops;
}

}  // namespace ppml::engine
