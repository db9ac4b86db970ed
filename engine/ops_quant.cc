// QuantizeLinear and DequantizeLinear as ops of their own (at graph edges and
// in imported QDQ models where they do not pair up; paired ones are collapsed
// at load, see passes.h). Scales and zero points may be per tensor or per
// axis, constant or computed at run time.
#include <cmath>

#include "engine/op_util.h"
#include "engine/ops.h"

namespace ppml::engine {
namespace {

double ElementAt(const ref::ConstView& v, int64_t i) { return ElementAsDouble(v.dtype, v.data, i); }

// Which scale and zero point element i of a tensor takes.
struct AxisLayout {
  int64_t channels = 1;  // 1: per tensor
  int64_t inner = 1;     // elements after the axis
  int64_t Channel(int64_t i) const { return (i / inner) % channels; }
};

// Per `axis` (in range) of `shape` when there is more than one scale, per tensor otherwise.
AxisLayout AxisLayoutOf(const Shape& shape, int64_t axis, int64_t scale_count) {
  AxisLayout l;
  if (scale_count == 1) return l;
  l.channels = shape[axis];
  for (size_t d = static_cast<size_t>(axis) + 1; d < shape.size(); ++d) l.inner *= shape[d];
  return l;
}

Result<AxisLayout> LayoutFor(const Node& n, const Shape& shape, const Shape& scale_shape) {
  if (ElementCount(scale_shape) == 1) return AxisLayout{};
  const int64_t rank = static_cast<int64_t>(shape.size());
  int64_t axis = n.Int("axis", 1);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return Status::InvalidArgument(n.Describe() + ": axis out of range");
  if (ElementCount(scale_shape) != shape[axis]) {
    return Status::InvalidArgument(n.Describe() + ": " + std::to_string(ElementCount(scale_shape)) +
                                   " scales for an axis of size " + std::to_string(shape[axis]));
  }
  return AxisLayoutOf(shape, axis, ElementCount(scale_shape));
}

Status BuildQuantize(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0), scale = b.Input(1), zp = b.Input(2);
  if (x == kNoValue || scale == kNoValue) return b.Error("needs x and y_scale");
  if (b.Value(x).dtype != DataType::kF32) return b.Unsupported("only float input");
  const DataType out_type = zp == kNoValue ? DataType::kU8 : b.Value(zp).dtype;
  if (out_type != DataType::kU8 && out_type != DataType::kS8) return b.Unsupported("only uint8/int8 output");
  PPML_ASSIGN_OR_RETURN(AxisLayout layout, LayoutFor(n, b.Value(x).shape, b.Value(scale).shape));
  const ValueId xs = b.Plain(x);
  const ValueId out = b.DefinePlainOutput(0, out_type, b.Value(x).shape);
  b.AddCustom([=](const RunContext& c) -> Status {
    const float* in = static_cast<const float*>(c.Data(xs));
    const ref::ConstView s = ConstViewOf(c, scale);
    const int64_t count = ElementCount(c.Value(xs).shape);
    const double lo = out_type == DataType::kU8 ? 0 : -128, hi = out_type == DataType::kU8 ? 255 : 127;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t ch = layout.Channel(i);
      const double zero = zp == kNoValue ? 0 : ElementAt(ConstViewOf(c, zp), ch);
      // ONNX: saturate(round_half_to_even(x / scale) + zero_point).
      const double q = std::clamp(std::nearbyint(in[i] / ElementAt(s, ch)) + zero, lo, hi);
      if (out_type == DataType::kU8) static_cast<uint8_t*>(c.Data(out))[i] = static_cast<uint8_t>(q);
      else static_cast<int8_t*>(c.Data(out))[i] = static_cast<int8_t>(q);
    }
    return Status::Ok();
  });
  return Status::Ok();
}

Status BuildDequantize(const Node& n, PlanBuilder& b) {
  const ValueId x = b.Input(0), scale = b.Input(1), zp = b.Input(2);
  if (x == kNoValue || scale == kNoValue) return b.Error("needs x and x_scale");
  const DataType in_type = b.Value(x).dtype;
  if (in_type != DataType::kU8 && in_type != DataType::kS8 && in_type != DataType::kS32) {
    return b.Unsupported("only uint8/int8/int32 input");
  }
  PPML_ASSIGN_OR_RETURN(AxisLayout layout, LayoutFor(n, b.Value(x).shape, b.Value(scale).shape));
  const ValueId xs = b.Plain(x);
  const ValueId out = b.DefinePlainOutput(0, DataType::kF32, b.Value(x).shape);
  b.AddCustom([=](const RunContext& c) -> Status {
    const ref::ConstView in = ConstViewOf(c, xs), s = ConstViewOf(c, scale);
    float* dst = static_cast<float*>(c.Data(out));
    const int64_t count = ElementCount(in.shape);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t ch = layout.Channel(i);
      const double zero = zp == kNoValue ? 0 : ElementAt(ConstViewOf(c, zp), ch);
      dst[i] = static_cast<float>((ElementAt(in, i) - zero) * ElementAt(s, ch));
    }
    return Status::Ok();
  });
  return Status::Ok();
}

}  // namespace

std::shared_ptr<const Tensor> DequantizeConstant(const Graph& graph, const QuantizedConstant& q,
                                                 const std::string& name) {
  const std::shared_ptr<const Tensor> values = graph.Constant(q.values);
  if (!values) throw StatusError(Status::Internal("constant '" + q.values + "' behind '" + name + "' is missing"));
  const AxisLayout layout = AxisLayoutOf(values->shape(), q.axis, static_cast<int64_t>(q.scales.size()));
  std::shared_ptr<Tensor> out =
      NewAccountedTensor(graph.env.budget, DataType::kF32, values->shape(), "constant '" + name + "'");
  float* dst = out->data<float>();
  for (int64_t i = 0; i < values->element_count(); ++i) {
    const int64_t ch = layout.Channel(i);
    dst[i] = static_cast<float>((values->ElementAsDouble(i) - q.zero_points[ch]) * static_cast<double>(q.scales[ch]));
  }
  return out;
}

std::vector<OpEntry> QuantOps() {
  return {{"QuantizeLinear", BuildQuantize}, {"DequantizeLinear", BuildDequantize}};
}

}  // namespace ppml::engine
