// Reference kernels on plain (row-major) tensors, for the ops and data types
// that have no oneDNN primitive (shape arithmetic, gathers, padding, ...), and
// for folding constant sub-graphs at plan time. Simple loops; `out` is always
// pre-sized by the caller from the matching *OutputShape function, and a call
// allocates only small bookkeeping (strides, index maps), never per element.
// Stateless and thread-safe.
//
// Every function checks its arguments (dtypes, ranks, axes, that `out` has
// exactly the expected shape) and returns InvalidArgument, naming the op,
// rather than reading or writing out of bounds. `out` must not overlap an
// input, except that Binary, Where and Cast (between dtypes of one size) may
// write in place into an input that has the output's shape.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace ppml::engine::ref {

// A read-only or writable view on plain tensor data owned elsewhere.
struct ConstView {
  DataType dtype = DataType::kF32;
  Shape shape;
  const void* data = nullptr;
};
struct MutView {
  DataType dtype = DataType::kF32;
  Shape shape;
  void* data = nullptr;
  // A writable view reads as well: ViewOf(tensor) on a non-const tensor can be
  // passed as an input.
  operator ConstView() const { return ConstView{dtype, shape, data}; }  // NOLINT: implicit by design
};
ConstView ViewOf(const Tensor& t);
MutView ViewOf(Tensor& t);

// ONNX multidirectional (numpy) broadcasting of two shapes.
Result<Shape> BroadcastShape(const Shape& a, const Shape& b);

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kMax, kMin, kPow, kEqual, kLess, kGreater, kMod, kFmod };
// Element-wise with broadcasting; a, b and out share one dtype (any of the five),
// except comparisons whose out is u8 (ONNX bool). Integer Add/Sub/Mul/Pow wrap
// around; integer Div truncates toward zero and division by zero (or 0 to a
// negative power) is InvalidArgument. f32 follows IEEE (x/0 = inf); f32 Max/Min
// propagate NaN. Pow: std::pow for f32, repeated multiplication for integers.
// Mod: the remainder with the divisor's sign (Python's %); Fmod with the
// dividend's (C's fmod); an integer remainder by zero is InvalidArgument.
Status Binary(BinaryOp op, const ConstView& a, const ConstView& b, const MutView& out);
constexpr bool IsComparison(BinaryOp op) {
  return op == BinaryOp::kEqual || op == BinaryOp::kLess || op == BinaryOp::kGreater;
}

// Axes may be negative (counted from the end); these normalize and check them.
Result<int64_t> NormalizeAxis(int64_t axis, int64_t rank);

Result<Shape> TransposeOutputShape(const Shape& in, const std::vector<int64_t>& perm);  // empty perm = reverse
Status Transpose(const ConstView& in, const std::vector<int64_t>& perm, const MutView& out);

// Gather along `axis`; indices s32 or s64, negative indices count from the end,
// out of range is InvalidArgument.
Result<Shape> GatherOutputShape(const Shape& data, const Shape& indices, int64_t axis);
Status Gather(const ConstView& data, const ConstView& indices, int64_t axis, const MutView& out);

Result<Shape> ConcatOutputShape(std::span<const Shape> inputs, int64_t axis);
Status Concat(std::span<const ConstView> inputs, int64_t axis, const MutView& out);

enum class PadMode { kConstant, kReflect, kEdge };
// pads = [x1_begin, x2_begin, ..., x1_end, x2_end, ...] as ONNX; negative pads crop,
// and reflect/edge then pad from the cropped data. Reflect repeats periodically
// when a pad is longer than the axis (as numpy). constant_value is converted
// to the dtype as Cast does.
Result<Shape> PadOutputShape(const Shape& in, const std::vector<int64_t>& pads);
Status Pad(const ConstView& in, const std::vector<int64_t>& pads, PadMode mode, double constant_value,
           const MutView& out);

// ONNX Slice (opset 10+ semantics): starts/ends clamped, steps may be negative.
struct SlicePlan {
  std::vector<int64_t> start;  // per input axis: first index read (valid when length > 0)
  std::vector<int64_t> step;   // per input axis
  Shape length;                // per input axis: the output dimension
  // Where it reads in the row-major input, in elements: per axis the stride
  // between elements taken (step times the axis's own), and the first one.
  std::vector<int64_t> strides;
  int64_t offset = 0;
};
Result<SlicePlan> PlanSlice(const Shape& in, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
                            const std::vector<int64_t>& axes, const std::vector<int64_t>& steps);
Result<Shape> SliceOutputShape(const Shape& in, const std::vector<int64_t>& starts,
                               const std::vector<int64_t>& ends, const std::vector<int64_t>& axes,
                               const std::vector<int64_t>& steps);
Status Slice(const ConstView& in, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
             const std::vector<int64_t>& axes, const std::vector<int64_t>& steps, const MutView& out);

// Numeric conversion between any two supported dtypes; out.shape == in.shape.
// f32 -> int truncates toward zero and saturates (NaN -> 0); int -> int wraps.
Status Cast(const ConstView& in, const MutView& out);
// Cast to ONNX bool: out (u8) = in != 0, NaN counting as true.
Status CastToBool(const ConstView& in, const MutView& out);

// ONNX Expand: broadcast `in` to out.shape, which must equal
// BroadcastShape(in.shape, shape) for the op's `shape` input.
Status Expand(const ConstView& in, const MutView& out);

// ONNX Where: out = cond ? x : y with broadcasting; cond is u8.
Status Where(const ConstView& cond, const ConstView& x, const ConstView& y, const MutView& out);

// Reductions over `axes` (empty = all) of f32 data, keepdims as ONNX. Axes may
// be negative; a repeated axis is InvalidArgument. Over an empty set: 0 for
// the sums, NaN for Mean, 1 for Prod, -inf for Max and LogSumExp, +inf for Min.
enum class ReduceOp { kSum, kMean, kMax, kMin, kProd, kSumSquare, kL1, kL2, kLogSumExp };
Result<Shape> ReduceOutputShape(const Shape& in, const std::vector<int64_t>& axes, bool keepdims);
Status Reduce(ReduceOp op, const ConstView& in, const std::vector<int64_t>& axes, bool keepdims,
              const MutView& out);

// ONNX LayerNormalization of f32 data over the dimensions from `axis` on:
// y = (x - mean) / sqrt(var + epsilon) * scale + bias. `scale` and `bias`
// (with no data: ones, and none) hold one value per normalized element; `mean`
// and `inv_std_dev` (may have no data: not wanted) one per row, in any shape
// of that element count.
Status LayerNorm(const ConstView& x, const ConstView& scale, const ConstView& bias, int64_t axis, float epsilon,
                 const MutView& y, const MutView& mean, const MutView& inv_std_dev);

// ONNX ScatterND (reduction none, add or mul): out = data with the slices
// `indices` ([..., k] s64, negative counted from the end) addresses replaced
// by (or combined with) `updates`. An index out of range is InvalidArgument.
enum class ScatterReduction { kNone, kAdd, kMul };
Status ScatterNd(const ConstView& data, const ConstView& indices, const ConstView& updates, ScatterReduction reduction,
                 const MutView& out);

// Integer/float range [start, limit) with delta, as ONNX Range:
// out[i] = start + i * delta, out of shape [RangeLength(start, limit, delta)].
// For integer dtypes start and delta must be integers and every value must fit.
Result<int64_t> RangeLength(double start, double limit, double delta);
Status Range(double start, double delta, const MutView& out);

}  // namespace ppml::engine::ref
