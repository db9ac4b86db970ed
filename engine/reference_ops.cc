// Reference kernels: plain loops over row-major data. See reference_ops.h.
//
// Most kernels share one iteration scheme, the *loop nest*: the output shape
// walked in row-major order, each operand described by a stride per output
// dimension (in elements; 0 where an operand is broadcast, negative for a
// reversed slice). Before walking, adjacent dimensions that are contiguous for
// every operand are merged and size-1 dimensions dropped, so
//
//   [2,3,4] + [2,3,4]   becomes one run of 24,
//   [2,3,4] + [4]       becomes 6 runs of 4 (b's stride 1, a's stride 1),
//   transpose [2,3,4] by (1,0,2) becomes 3x2 runs of 4 contiguous elements,
//
// and the kernel sees only the innermost run: (offsets, count, strides). The
// walk allocates one small index vector per call, nothing per element.
#include "engine/reference_ops.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

namespace ppml::engine::ref {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// ---------------------------------------------------------------------------
// Validation helpers. Every message starts with the op name.

Status Invalid(const char* op, const std::string& message) {
  return Status::InvalidArgument(std::string(op) + ": " + message);
}

bool KnownDataType(DataType t) { return ElementSize(t) != 0; }

std::string DataTypeString(DataType t) {
  return KnownDataType(t) ? DataTypeName(t) : "dtype#" + std::to_string(static_cast<int>(t));
}

// The element count of `shape`, or an error for a negative dimension or a
// count that does not fit in int64.
Result<int64_t> CheckedElementCount(const char* op, const char* what, const Shape& shape) {
  bool has_zero = false;
  for (int64_t d : shape) {
    if (d < 0) return Invalid(op, std::string(what) + " shape " + ShapeToString(shape) + " has a negative dimension");
    if (d == 0) has_zero = true;
  }
  if (has_zero) return int64_t{0};
  int64_t n = 1;
  for (int64_t d : shape) {
    if (n > kInt64Max / d) return Invalid(op, std::string(what) + " shape " + ShapeToString(shape) + " is too large");
    n *= d;
  }
  return n;
}

// Checks a view: known dtype, valid shape, data present when non-empty, and
// a byte size that fits in size_t arithmetic. Returns the element count.
template <typename View>
Result<int64_t> CheckView(const char* op, const char* what, const View& v) {
  if (!KnownDataType(v.dtype)) return Invalid(op, std::string(what) + " has an unknown dtype " + DataTypeString(v.dtype));
  PPML_ASSIGN_OR_RETURN(int64_t n, CheckedElementCount(op, what, v.shape));
  if (n > kInt64Max / 8) return Invalid(op, std::string(what) + " shape " + ShapeToString(v.shape) + " is too large");
  if (n > 0 && v.data == nullptr) return Invalid(op, std::string(what) + " has no data");
  return n;
}

Status CheckDtype(const char* op, const char* what, DataType got, DataType want) {
  if (got == want) return Status::Ok();
  return Invalid(op, std::string(what) + " dtype is " + DataTypeString(got) + ", expected " + DataTypeString(want));
}

Status CheckOutShape(const char* op, const Shape& got, const Shape& want) {
  if (got == want) return Status::Ok();
  return Invalid(op, "output shape is " + ShapeToString(got) + ", expected " + ShapeToString(want));
}

// Normalizes every axis in `axes` against `rank` and rejects duplicates.
Result<std::vector<int64_t>> NormalizeAxes(const char* op, const std::vector<int64_t>& axes, int64_t rank) {
  std::vector<int64_t> out;
  out.reserve(axes.size());
  std::vector<bool> seen(static_cast<size_t>(std::max<int64_t>(rank, 0)), false);
  for (int64_t axis : axes) {
    Result<int64_t> a = NormalizeAxis(axis, rank);
    if (!a.ok()) return a.status().WithContext(op);
    if (seen[*a]) return Invalid(op, "axis " + std::to_string(axis) + " is repeated");
    seen[*a] = true;
    out.push_back(*a);
  }
  return out;
}

std::vector<int64_t> ContiguousStrides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) strides[i - 1] = strides[i] * shape[i];
  return strides;
}

// Strides (in elements) of `in` read as if broadcast to `out`: in's dims are
// aligned to the right of out's, and a dimension of 1 gets stride 0.
// Requires in to be broadcastable to out.
std::vector<int64_t> BroadcastStrides(const Shape& in, const Shape& out) {
  std::vector<int64_t> strides(out.size(), 0);
  const std::vector<int64_t> own = ContiguousStrides(in);
  const size_t shift = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) strides[shift + i] = in[i] == 1 ? 0 : own[i];
  return strides;
}

// ---------------------------------------------------------------------------
// The loop nest (see the top of the file).

template <size_t N>
using Offsets = std::array<int64_t, N>;

template <size_t N>
struct LoopNest {
  std::vector<int64_t> dims;           // outermost first; never empty
  std::vector<Offsets<N>> strides;     // per dimension, per operand, in elements
};

template <size_t N>
LoopNest<N> MakeLoopNest(const Shape& dims, const std::array<const std::vector<int64_t>*, N>& strides) {
  LoopNest<N> nest;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 1) continue;
    Offsets<N> s;
    for (size_t k = 0; k < N; ++k) s[k] = (*strides[k])[i];
    if (!nest.dims.empty()) {
      // The outer dimension folds into this one when, for every operand, one
      // step of it equals dims[i] steps of this one.
      bool mergeable = true;
      for (size_t k = 0; k < N; ++k) mergeable = mergeable && nest.strides.back()[k] == s[k] * dims[i];
      if (mergeable) {
        nest.dims.back() *= dims[i];
        nest.strides.back() = s;
        continue;
      }
    }
    nest.dims.push_back(dims[i]);
    nest.strides.push_back(s);
  }
  if (nest.dims.empty()) {
    nest.dims.push_back(1);
    nest.strides.push_back(Offsets<N>{});
  }
  return nest;
}

// The nest without its `drop` innermost dimensions (for kernels that walk
// those themselves).
template <size_t N>
LoopNest<N> OuterLoopNest(const LoopNest<N>& nest, size_t drop) {
  LoopNest<N> outer;
  const size_t keep = nest.dims.size() > drop ? nest.dims.size() - drop : 0;
  outer.dims.assign(nest.dims.begin(), nest.dims.begin() + static_cast<std::ptrdiff_t>(keep));
  outer.strides.assign(nest.strides.begin(), nest.strides.begin() + static_cast<std::ptrdiff_t>(keep));
  if (outer.dims.empty()) {
    outer.dims.push_back(1);
    outer.strides.push_back(Offsets<N>{});
  }
  return outer;
}

// Calls kernel(offsets, count, inner_strides) once per innermost run. Every
// dimension of the nest must be non-zero (callers return early on empty output).
template <size_t N, typename Kernel>
void RunLoopNest(const LoopNest<N>& nest, Offsets<N> offsets, Kernel&& kernel) {
  const size_t outer_rank = nest.dims.size() - 1;
  const int64_t inner = nest.dims.back();
  const Offsets<N> inner_strides = nest.strides.back();
  int64_t outer_count = 1;
  for (size_t d = 0; d < outer_rank; ++d) outer_count *= nest.dims[d];
  std::vector<int64_t> index(outer_rank, 0);
  for (int64_t row = 0; row < outer_count; ++row) {
    kernel(offsets, inner, inner_strides);
    for (size_t d = outer_rank; d-- > 0;) {
      if (++index[d] < nest.dims[d]) {
        for (size_t k = 0; k < N; ++k) offsets[k] += nest.strides[d][k];
        break;
      }
      index[d] = 0;
      for (size_t k = 0; k < N; ++k) offsets[k] -= nest.strides[d][k] * (nest.dims[d] - 1);
    }
  }
}

// ---------------------------------------------------------------------------
// Type dispatch.

template <typename Fn>
decltype(auto) VisitDataType(DataType t, Fn&& fn) {
  switch (t) {
    case DataType::kU8: return fn(uint8_t{});
    case DataType::kS8: return fn(int8_t{});
    case DataType::kS32: return fn(int32_t{});
    case DataType::kS64: return fn(int64_t{});
    case DataType::kF32: break;
  }
  return fn(float{});  // callers have checked the dtype is known
}

template <size_t E>
using ElementSizeTag = std::integral_constant<size_t, E>;

// Data movement needs only the element size: 1, 4 or 8 bytes.
template <typename Fn>
void VisitElementSize(size_t size, Fn&& fn) {
  switch (size) {
    case 1: fn(ElementSizeTag<1>{}); return;
    case 8: fn(ElementSizeTag<8>{}); return;
    default: fn(ElementSizeTag<4>{}); return;
  }
}

// Side of the square tiles in which StridedCopy transposes two inner axes.
constexpr int64_t kTransposeTile = 16;
// Planes below this size are copied untiled (they stay in cache anyway).
constexpr int64_t kTiledPlaneBytes = int64_t{1} << 20;

// Copies `n` elements of E bytes, reading with a stride of `src_stride`
// elements (0 repeats one element, 1 is a plain memcpy) into contiguous dst.
template <size_t E>
inline void CopyRun(std::byte* dst, const std::byte* src, int64_t n, int64_t src_stride) {
  if (src_stride == 1) {
    std::memcpy(dst, src, static_cast<size_t>(n) * E);
  } else {
    for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * E, src + i * src_stride * static_cast<int64_t>(E), E);
  }
}

// Fills the contiguous `out` by walking `in` with one stride per output
// dimension (`in_strides`, in elements, starting at element `in_base`).
// Transpose permutes strides, Slice scales them by the steps, Expand zeroes
// the broadcast ones.
void StridedCopy(const ConstView& in, const std::vector<int64_t>& in_strides, int64_t in_base, const MutView& out) {
  const std::vector<int64_t> out_strides = ContiguousStrides(out.shape);
  const LoopNest<2> nest = MakeLoopNest<2>(out.shape, {&in_strides, &out_strides});
  const auto* src = static_cast<const std::byte*>(in.data);
  auto* dst = static_cast<std::byte*>(out.data);
  const size_t rank = nest.dims.size();
  // A swap of the two innermost axes (input stride 1 one level out, strided
  // reads inside) over a plane larger than the caches: copy in square tiles so
  // that reads and writes both stay within a few cache lines. Smaller planes
  // are faster untiled (measured: 64x128 and 64x3136 f32 planes lose 10-25%
  // tiled, a 512x512 plane gains 35%).
  const bool tiled = rank >= 2 && nest.strides[rank - 1][0] != 1 && nest.strides[rank - 2][0] == 1 &&
                     nest.strides[rank - 1][1] == 1 && nest.dims[rank - 1] >= kTransposeTile &&
                     nest.dims[rank - 2] >= kTransposeTile &&
                     nest.dims[rank - 1] * nest.dims[rank - 2] * static_cast<int64_t>(ElementSize(out.dtype)) >=
                         kTiledPlaneBytes;
  VisitElementSize(ElementSize(out.dtype), [&](auto tag) {
    constexpr size_t E = decltype(tag)::value;
    constexpr int64_t kE = static_cast<int64_t>(E);
    if (!tiled) {
      RunLoopNest(nest, Offsets<2>{in_base, 0}, [&](const Offsets<2>& off, int64_t n, const Offsets<2>& s) {
        CopyRun<E>(dst + off[1] * kE, src + off[0] * kE, n, s[0]);
      });
      return;
    }
    const int64_t rows = nest.dims[rank - 2];
    const int64_t cols = nest.dims[rank - 1];
    const int64_t in_col_stride = nest.strides[rank - 1][0] * kE;  // input rows are contiguous
    const int64_t out_row_stride = nest.strides[rank - 2][1] * kE;  // output columns are contiguous
    RunLoopNest(OuterLoopNest(nest, 2), Offsets<2>{in_base, 0}, [&](const Offsets<2>& off, int64_t n,
                                                                     const Offsets<2>& s) {
      for (int64_t k = 0; k < n; ++k) {
        const std::byte* in_plane = src + (off[0] + k * s[0]) * kE;
        std::byte* out_plane = dst + (off[1] + k * s[1]) * kE;
        for (int64_t r0 = 0; r0 < rows; r0 += kTransposeTile) {
          const int64_t r1 = std::min(rows, r0 + kTransposeTile);
          for (int64_t c0 = 0; c0 < cols; c0 += kTransposeTile) {
            const int64_t c1 = std::min(cols, c0 + kTransposeTile);
            for (int64_t r = r0; r < r1; ++r) {
              for (int64_t c = c0; c < c1; ++c) {
                std::memcpy(out_plane + r * out_row_stride + c * kE, in_plane + r * kE + c * in_col_stride, E);
              }
            }
          }
        }
      }
    });
  });
}

// ---------------------------------------------------------------------------
// Value conversion (Cast, Pad's constant, Range).

// static_cast, except float -> integer, which truncates toward zero and then
// saturates to the target range (NaN becomes 0): a plain cast is undefined
// behaviour there. Integer -> integer wraps modulo 2^bits, as C++20 defines.
template <typename To, typename From>
inline To ConvertValue(From v) {
  if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    const double d = static_cast<double>(v);
    if (std::isnan(d)) return To{0};
    if (d <= static_cast<double>(std::numeric_limits<To>::min())) return std::numeric_limits<To>::min();
    if (d >= static_cast<double>(std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
    return static_cast<To>(d);
  } else {
    return static_cast<To>(v);
  }
}

// ---------------------------------------------------------------------------
// Binary element-wise arithmetic.

const char* BinaryOpName(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd: return "Add";
    case BinaryOp::kSub: return "Sub";
    case BinaryOp::kMul: return "Mul";
    case BinaryOp::kDiv: return "Div";
    case BinaryOp::kMax: return "Max";
    case BinaryOp::kMin: return "Min";
    case BinaryOp::kPow: return "Pow";
    case BinaryOp::kEqual: return "Equal";
    case BinaryOp::kLess: return "Less";
    case BinaryOp::kGreater: return "Greater";
    case BinaryOp::kMod:
    case BinaryOp::kFmod: return "Mod";
  }
  return "Binary";
}

// Integer base^exponent by squaring, wrapping like repeated multiplication.
// A negative exponent gives 1/base^|e| truncated: 0 except for bases 1 and -1;
// base 0 is a division by zero and sets *error.
template <typename T>
T IntegerPow(T base, T exponent, bool* error) {
  using U = std::make_unsigned_t<T>;
  if constexpr (std::is_signed_v<T>) {
    if (exponent < 0) {
      if (base == 1) return T{1};
      if (base == -1) return (exponent & 1) ? T{-1} : T{1};
      if (base == 0) *error = true;
      return T{0};
    }
  }
  U result = 1;
  U b = static_cast<U>(base);
  U e = static_cast<U>(exponent);
  while (e != 0) {
    if (e & 1u) result = static_cast<U>(result * b);
    b = static_cast<U>(b * b);
    e = static_cast<U>(e >> 1);
  }
  return static_cast<T>(result);
}

// One element of `op`. Integer add/sub/mul wrap (computed unsigned, so no
// undefined behaviour); integer division truncates, x / 0 sets *error and
// INT_MIN / -1 wraps to INT_MIN. Float Max/Min propagate NaN as numpy does.
template <BinaryOp kOp, typename T>
inline std::conditional_t<IsComparison(kOp), uint8_t, T> ApplyBinary(T a, T b, bool* error) {
  constexpr bool kFloat = std::is_floating_point_v<T>;
  if constexpr (kOp == BinaryOp::kEqual) {
    return static_cast<uint8_t>(a == b);
  } else if constexpr (kOp == BinaryOp::kLess) {
    return static_cast<uint8_t>(a < b);
  } else if constexpr (kOp == BinaryOp::kGreater) {
    return static_cast<uint8_t>(a > b);
  } else if constexpr (kOp == BinaryOp::kMod || kOp == BinaryOp::kFmod) {
    T r;
    if constexpr (kFloat) {
      r = std::fmod(a, b);
    } else {
      if (b == 0) {
        *error = true;
        return T{0};
      }
      if constexpr (std::is_signed_v<T>) {
        if (b == -1) return T{0};  // INT_MIN % -1 overflows
      }
      r = static_cast<T>(a % b);
    }
    if constexpr (kOp == BinaryOp::kMod && std::is_signed_v<T>) {
      if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
    } else if constexpr (kOp == BinaryOp::kMod && kFloat) {
      if (r != 0 && ((r < 0) != (b < 0))) r += b;
    }
    return r;
  } else if constexpr (kOp == BinaryOp::kMax || kOp == BinaryOp::kMin) {
    if constexpr (kFloat) {
      if (std::isnan(a) || std::isnan(b)) return a + b;
    }
    if constexpr (kOp == BinaryOp::kMax) return a < b ? b : a;
    else return b < a ? b : a;
  } else if constexpr (kFloat) {
    if constexpr (kOp == BinaryOp::kAdd) return a + b;
    if constexpr (kOp == BinaryOp::kSub) return a - b;
    if constexpr (kOp == BinaryOp::kMul) return a * b;
    if constexpr (kOp == BinaryOp::kDiv) return a / b;
    if constexpr (kOp == BinaryOp::kPow) return std::pow(a, b);
  } else {
    using U = std::make_unsigned_t<T>;
    if constexpr (kOp == BinaryOp::kAdd) return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
    if constexpr (kOp == BinaryOp::kSub) return static_cast<T>(static_cast<U>(static_cast<U>(a) - static_cast<U>(b)));
    if constexpr (kOp == BinaryOp::kMul) return static_cast<T>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
    if constexpr (kOp == BinaryOp::kDiv) {
      if (b == 0) {
        *error = true;
        return T{0};
      }
      if constexpr (std::is_signed_v<T>) {
        if (b == -1) return static_cast<T>(static_cast<U>(U{0} - static_cast<U>(a)));
      }
      return static_cast<T>(a / b);
    }
    if constexpr (kOp == BinaryOp::kPow) return IntegerPow(a, b, error);
  }
}

// Returns false when an element hit a domain error (integer x / 0, 0 ^ -n).
template <BinaryOp kOp, typename T>
bool RunBinary(const LoopNest<3>& nest, const T* a, const T* b, void* out_data) {
  using R = std::conditional_t<IsComparison(kOp), uint8_t, T>;
  R* out = static_cast<R*>(out_data);
  bool error = false;
  RunLoopNest(nest, Offsets<3>{0, 0, 0}, [&](const Offsets<3>& off, int64_t n, const Offsets<3>& s) {
    const T* pa = a + off[0];
    const T* pb = b + off[1];
    R* po = out + off[2];
    // The common layouts get their own loops so that the compiler vectorizes them.
    if (s[0] == 1 && s[1] == 1) {
      for (int64_t i = 0; i < n; ++i) po[i] = ApplyBinary<kOp>(pa[i], pb[i], &error);
    } else if (s[0] == 1 && s[1] == 0) {
      const T vb = *pb;
      for (int64_t i = 0; i < n; ++i) po[i] = ApplyBinary<kOp>(pa[i], vb, &error);
    } else if (s[0] == 0 && s[1] == 1) {
      const T va = *pa;
      for (int64_t i = 0; i < n; ++i) po[i] = ApplyBinary<kOp>(va, pb[i], &error);
    } else {
      for (int64_t i = 0; i < n; ++i) po[i * s[2]] = ApplyBinary<kOp>(pa[i * s[0]], pb[i * s[1]], &error);
    }
  });
  return !error;
}

template <typename T>
bool DispatchBinary(BinaryOp op, const LoopNest<3>& nest, const T* a, const T* b, void* out) {
  switch (op) {
    case BinaryOp::kAdd: return RunBinary<BinaryOp::kAdd>(nest, a, b, out);
    case BinaryOp::kSub: return RunBinary<BinaryOp::kSub>(nest, a, b, out);
    case BinaryOp::kMul: return RunBinary<BinaryOp::kMul>(nest, a, b, out);
    case BinaryOp::kDiv: return RunBinary<BinaryOp::kDiv>(nest, a, b, out);
    case BinaryOp::kMax: return RunBinary<BinaryOp::kMax>(nest, a, b, out);
    case BinaryOp::kMin: return RunBinary<BinaryOp::kMin>(nest, a, b, out);
    case BinaryOp::kPow: return RunBinary<BinaryOp::kPow>(nest, a, b, out);
    case BinaryOp::kEqual: return RunBinary<BinaryOp::kEqual>(nest, a, b, out);
    case BinaryOp::kLess: return RunBinary<BinaryOp::kLess>(nest, a, b, out);
    case BinaryOp::kGreater: return RunBinary<BinaryOp::kGreater>(nest, a, b, out);
    case BinaryOp::kMod: return RunBinary<BinaryOp::kMod>(nest, a, b, out);
    case BinaryOp::kFmod: return RunBinary<BinaryOp::kFmod>(nest, a, b, out);
  }
  return true;
}

bool KnownBinaryOp(BinaryOp op) { return static_cast<int>(op) >= 0 && static_cast<int>(op) <= static_cast<int>(BinaryOp::kFmod); }

// ---------------------------------------------------------------------------
// Slice planning (ONNX clamping rules).

// Elements of [start, end) taken with a positive `step`: ceil((end - start) / step),
// written so that nothing overflows for any step.
int64_t StepCount(int64_t start, int64_t end, uint64_t step) {
  if (end <= start) return 0;
  const uint64_t span = static_cast<uint64_t>(end - start);
  return static_cast<int64_t>(1 + (span - 1) / step);
}


// ---------------------------------------------------------------------------
// Pad planning.

// For each output index along one axis, the input index it reads, or -1 for
// the constant. Negative pads crop first; reflect and edge then pad the
// cropped range. Reflect repeats periodically when a pad exceeds the axis
// (as numpy does), and a single element reflects to itself.
std::vector<int64_t> PadIndexMap(int64_t dim, int64_t pad_begin, int64_t pad_end, PadMode mode) {
  const int64_t lo = std::max<int64_t>(0, -pad_begin);
  const int64_t kept = dim - lo - std::max<int64_t>(0, -pad_end);
  const int64_t lead = std::max<int64_t>(0, pad_begin);
  const int64_t out_dim = dim + pad_begin + pad_end;
  std::vector<int64_t> map(static_cast<size_t>(out_dim));
  for (int64_t o = 0; o < out_dim; ++o) {
    const int64_t j = o - lead;  // index into the cropped range
    int64_t src = -1;
    if (j >= 0 && j < kept) {
      src = lo + j;
    } else if (mode == PadMode::kEdge) {
      src = lo + std::clamp<int64_t>(j, 0, kept - 1);
    } else if (mode == PadMode::kReflect) {
      if (kept == 1) {
        src = lo;
      } else {
        const int64_t period = 2 * (kept - 1);
        int64_t k = j % period;
        if (k < 0) k += period;
        src = lo + (k < kept ? k : period - k);
      }
    }
    map[static_cast<size_t>(o)] = src;
  }
  return map;
}

const char* PadModeName(PadMode mode) {
  switch (mode) {
    case PadMode::kConstant: return "constant";
    case PadMode::kReflect: return "reflect";
    case PadMode::kEdge: return "edge";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// Reductions.

const char* ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "ReduceSum";
    case ReduceOp::kMean: return "ReduceMean";
    case ReduceOp::kMax: return "ReduceMax";
    case ReduceOp::kMin: return "ReduceMin";
    case ReduceOp::kProd: return "ReduceProd";
    case ReduceOp::kSumSquare: return "ReduceSumSquare";
    case ReduceOp::kL1: return "ReduceL1";
    case ReduceOp::kL2: return "ReduceL2";
    case ReduceOp::kLogSumExp: return "ReduceLogSumExp";
  }
  return "Reduce";
}

// Accumulation of one input element into a running value. LogSumExp's first
// pass is a Max; its second pass is done separately.
template <ReduceOp kOp>
inline float Accumulate(float acc, float x) {
  if constexpr (kOp == ReduceOp::kSum || kOp == ReduceOp::kMean) return acc + x;
  if constexpr (kOp == ReduceOp::kProd) return acc * x;
  if constexpr (kOp == ReduceOp::kSumSquare || kOp == ReduceOp::kL2) return acc + x * x;
  if constexpr (kOp == ReduceOp::kL1) return acc + std::fabs(x);
  if constexpr (kOp == ReduceOp::kMax || kOp == ReduceOp::kLogSumExp) return (std::isnan(x) || x > acc) ? x : acc;
  if constexpr (kOp == ReduceOp::kMin) return (std::isnan(x) || x < acc) ? x : acc;
}

// Merges two partial results of one reduction (sums of squares add, they
// are not squared again).
template <ReduceOp kOp>
inline float Combine(float acc, float partial) {
  if constexpr (kOp == ReduceOp::kProd) return acc * partial;
  if constexpr (kOp == ReduceOp::kMax || kOp == ReduceOp::kMin || kOp == ReduceOp::kLogSumExp) {
    return Accumulate<kOp>(acc, partial);
  }
  return acc + partial;
}

// The value of a reduction over nothing (ONNX: 0 for sums, 1 for Prod,
// -inf for Max and LogSumExp, +inf for Min).
float ReduceIdentity(ReduceOp op) {
  switch (op) {
    case ReduceOp::kProd: return 1.0f;
    case ReduceOp::kMax:
    case ReduceOp::kLogSumExp: return -std::numeric_limits<float>::infinity();
    case ReduceOp::kMin: return std::numeric_limits<float>::infinity();
    default: return 0.0f;
  }
}

// Folds every input element into out[offset]; out strides are 0 on reduced axes.
template <ReduceOp kOp>
void AccumulateInto(const LoopNest<2>& nest, const float* in, float* out) {
  constexpr int64_t kLanes = 8;
  const float identity = ReduceIdentity(kOp);
  RunLoopNest(nest, Offsets<2>{0, 0}, [&](const Offsets<2>& off, int64_t n, const Offsets<2>& s) {
    const float* x = in + off[0];
    float* o = out + off[1];
    if (s[1] == 0 && s[0] == 1 && n >= 2 * kLanes) {
      // Independent partial results break the dependency chain of one
      // accumulator (and let the compiler vectorize); merged at the end.
      std::array<float, kLanes> lanes;
      lanes.fill(identity);
      int64_t i = 0;
      for (; i + kLanes <= n; i += kLanes) {
        for (int64_t j = 0; j < kLanes; ++j) lanes[j] = Accumulate<kOp>(lanes[j], x[i + j]);
      }
      float acc = *o;
      for (; i < n; ++i) acc = Accumulate<kOp>(acc, x[i]);
      for (int64_t j = 0; j < kLanes; ++j) acc = Combine<kOp>(acc, lanes[j]);
      *o = acc;
    } else if (s[1] == 0) {
      float acc = *o;
      for (int64_t i = 0; i < n; ++i) acc = Accumulate<kOp>(acc, x[i * s[0]]);
      *o = acc;
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * s[1]] = Accumulate<kOp>(o[i * s[1]], x[i * s[0]]);
    }
  });
}

void DispatchAccumulate(ReduceOp op, const LoopNest<2>& nest, const float* in, float* out) {
  switch (op) {
    case ReduceOp::kSum: return AccumulateInto<ReduceOp::kSum>(nest, in, out);
    case ReduceOp::kMean: return AccumulateInto<ReduceOp::kMean>(nest, in, out);
    case ReduceOp::kMax: return AccumulateInto<ReduceOp::kMax>(nest, in, out);
    case ReduceOp::kMin: return AccumulateInto<ReduceOp::kMin>(nest, in, out);
    case ReduceOp::kProd: return AccumulateInto<ReduceOp::kProd>(nest, in, out);
    case ReduceOp::kSumSquare: return AccumulateInto<ReduceOp::kSumSquare>(nest, in, out);
    case ReduceOp::kL1: return AccumulateInto<ReduceOp::kL1>(nest, in, out);
    case ReduceOp::kL2: return AccumulateInto<ReduceOp::kL2>(nest, in, out);
    case ReduceOp::kLogSumExp: return AccumulateInto<ReduceOp::kLogSumExp>(nest, in, out);
  }
}

// Which input axes a reduction folds: the normalized `axes`, or all of them
// when `axes` is empty.
Result<std::vector<bool>> ReducedAxes(const char* op, const Shape& in, const std::vector<int64_t>& axes) {
  PPML_RETURN_IF_ERROR(CheckedElementCount(op, "input", in).status());
  PPML_ASSIGN_OR_RETURN(const std::vector<int64_t> normalized,
                        NormalizeAxes(op, axes, static_cast<int64_t>(in.size())));
  std::vector<bool> reduced(in.size(), normalized.empty());
  for (int64_t a : normalized) reduced[a] = true;
  return reduced;
}

bool KnownReduceOp(ReduceOp op) {
  return static_cast<int>(op) >= 0 && static_cast<int>(op) <= static_cast<int>(ReduceOp::kLogSumExp);
}

}  // namespace

Result<SlicePlan> PlanSlice(const Shape& in, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
                            const std::vector<int64_t>& axes_in, const std::vector<int64_t>& steps) {
  constexpr const char* kOp = "Slice";
  PPML_RETURN_IF_ERROR(CheckedElementCount(kOp, "input", in).status());
  const int64_t rank = static_cast<int64_t>(in.size());
  const size_t n = starts.size();
  if (ends.size() != n) {
    return Invalid(kOp, "starts has " + std::to_string(n) + " values but ends has " + std::to_string(ends.size()));
  }
  if (!axes_in.empty() && axes_in.size() != n) {
    return Invalid(kOp, "axes has " + std::to_string(axes_in.size()) + " values, expected " + std::to_string(n));
  }
  if (!steps.empty() && steps.size() != n) {
    return Invalid(kOp, "steps has " + std::to_string(steps.size()) + " values, expected " + std::to_string(n));
  }
  std::vector<int64_t> axes = axes_in;
  if (axes.empty()) {
    if (static_cast<int64_t>(n) > rank) {
      return Invalid(kOp, std::to_string(n) + " starts for input of rank " + std::to_string(rank));
    }
    for (size_t i = 0; i < n; ++i) axes.push_back(static_cast<int64_t>(i));
  }
  PPML_ASSIGN_OR_RETURN(axes, NormalizeAxes(kOp, axes, rank));

  SlicePlan plan;
  plan.start.assign(in.size(), 0);
  plan.step.assign(in.size(), 1);
  plan.length = in;
  for (size_t i = 0; i < n; ++i) {
    const size_t axis = static_cast<size_t>(axes[i]);
    const int64_t dim = in[axis];
    const int64_t step = steps.empty() ? 1 : steps[i];
    if (step == 0) return Invalid(kOp, "step for axis " + std::to_string(axes[i]) + " is 0");
    // Negative indices count from the end (dim >= 0, so no overflow), then
    // clamp: [0, dim] going forward, [-1, dim - 1] going backward.
    int64_t start = starts[i] < 0 ? starts[i] + dim : starts[i];
    int64_t end = ends[i] < 0 ? ends[i] + dim : ends[i];
    int64_t length = 0;
    if (step > 0) {
      start = std::clamp<int64_t>(start, 0, dim);
      end = std::clamp<int64_t>(end, 0, dim);
      length = StepCount(start, end, static_cast<uint64_t>(step));
    } else if (dim > 0) {
      start = std::clamp<int64_t>(start, 0, dim - 1);
      end = std::clamp<int64_t>(end, -1, dim - 1);
      // -step without overflow, also for INT64_MIN.
      const uint64_t magnitude = uint64_t{0} - static_cast<uint64_t>(step);
      length = StepCount(end, start, magnitude);
    }
    plan.start[axis] = start;
    plan.step[axis] = step;
    plan.length[axis] = length;
  }
  const std::vector<int64_t> own = ContiguousStrides(in);
  plan.strides.resize(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    plan.strides[i] = own[i] * plan.step[i];
    plan.offset += plan.start[i] * own[i];
  }
  return plan;
}

// ===========================================================================
// Public functions.

ConstView ViewOf(const Tensor& t) { return ConstView{t.dtype(), t.shape(), t.raw_data()}; }
MutView ViewOf(Tensor& t) { return MutView{t.dtype(), t.shape(), t.raw_data()}; }

Result<int64_t> NormalizeAxis(int64_t axis, int64_t rank) {
  if (rank <= 0) {
    return Status::InvalidArgument("axis " + std::to_string(axis) + " given for a tensor of rank " +
                                   std::to_string(rank) + ", which has no axes");
  }
  if (axis < -rank || axis >= rank) {
    return Status::InvalidArgument("axis " + std::to_string(axis) + " is out of range for rank " +
                                   std::to_string(rank) + " (valid: " + std::to_string(-rank) + " to " +
                                   std::to_string(rank - 1) + ")");
  }
  return axis < 0 ? axis + rank : axis;
}

Result<Shape> BroadcastShape(const Shape& a, const Shape& b) {
  constexpr const char* kOp = "Broadcast";
  PPML_RETURN_IF_ERROR(CheckedElementCount(kOp, "first", a).status());
  PPML_RETURN_IF_ERROR(CheckedElementCount(kOp, "second", b).status());
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    // Align to the right; missing leading dimensions are 1.
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) {
      return Invalid(kOp, "shapes " + ShapeToString(a) + " and " + ShapeToString(b) +
                              " are not broadcastable (dimension " + std::to_string(i) + ": " + std::to_string(da) +
                              " vs " + std::to_string(db) + ")");
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Status Binary(BinaryOp op, const ConstView& a, const ConstView& b, const MutView& out) {
  if (!KnownBinaryOp(op)) return Status::InvalidArgument("Binary: unknown op " + std::to_string(static_cast<int>(op)));
  const char* name = BinaryOpName(op);
  PPML_RETURN_IF_ERROR(CheckView(name, "input A", a).status());
  PPML_RETURN_IF_ERROR(CheckView(name, "input B", b).status());
  PPML_ASSIGN_OR_RETURN(const int64_t out_count, CheckView(name, "output", out));
  PPML_RETURN_IF_ERROR(CheckDtype(name, "input B", b.dtype, a.dtype));
  PPML_RETURN_IF_ERROR(CheckDtype(name, "output", out.dtype, IsComparison(op) ? DataType::kU8 : a.dtype));
  Result<Shape> shape = BroadcastShape(a.shape, b.shape);
  if (!shape.ok()) return shape.status().WithContext(name);
  PPML_RETURN_IF_ERROR(CheckOutShape(name, out.shape, *shape));
  if (out_count == 0) return Status::Ok();

  const std::vector<int64_t> sa = BroadcastStrides(a.shape, out.shape);
  const std::vector<int64_t> sb = BroadcastStrides(b.shape, out.shape);
  const std::vector<int64_t> so = ContiguousStrides(out.shape);
  const LoopNest<3> nest = MakeLoopNest<3>(out.shape, {&sa, &sb, &so});
  const bool ok = VisitDataType(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    return DispatchBinary<T>(op, nest, static_cast<const T*>(a.data), static_cast<const T*>(b.data), out.data);
  });
  if (!ok) {
    return Invalid(name, op == BinaryOp::kPow ? "integer 0 raised to a negative power"
                         : op == BinaryOp::kDiv ? "integer division by zero"
                                                : "integer remainder by zero");
  }
  return Status::Ok();
}

Result<Shape> TransposeOutputShape(const Shape& in, const std::vector<int64_t>& perm) {
  constexpr const char* kOp = "Transpose";
  PPML_RETURN_IF_ERROR(CheckedElementCount(kOp, "input", in).status());
  const size_t rank = in.size();
  if (perm.empty()) return Shape(in.rbegin(), in.rend());
  if (perm.size() != rank) {
    return Invalid(kOp, "perm has " + std::to_string(perm.size()) + " entries for input of rank " +
                            std::to_string(rank));
  }
  std::vector<bool> seen(rank, false);
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t p = perm[i];
    if (p < 0 || p >= static_cast<int64_t>(rank)) {
      return Invalid(kOp, "perm[" + std::to_string(i) + "] = " + std::to_string(p) + " is out of range for rank " +
                              std::to_string(rank));
    }
    if (seen[p]) return Invalid(kOp, "perm repeats axis " + std::to_string(p));
    seen[p] = true;
    out[i] = in[p];
  }
  return out;
}

Status Transpose(const ConstView& in, const std::vector<int64_t>& perm, const MutView& out) {
  constexpr const char* kOp = "Transpose";
  PPML_RETURN_IF_ERROR(CheckView(kOp, "input", in).status());
  PPML_ASSIGN_OR_RETURN(const int64_t out_count, CheckView(kOp, "output", out));
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "output", out.dtype, in.dtype));
  PPML_ASSIGN_OR_RETURN(const Shape shape, TransposeOutputShape(in.shape, perm));
  PPML_RETURN_IF_ERROR(CheckOutShape(kOp, out.shape, shape));
  if (out_count == 0) return Status::Ok();

  // Output dimension i walks input axis perm[i].
  const size_t rank = in.shape.size();
  const std::vector<int64_t> own = ContiguousStrides(in.shape);
  std::vector<int64_t> in_strides(rank);
  for (size_t i = 0; i < rank; ++i) in_strides[i] = own[perm.empty() ? rank - 1 - i : static_cast<size_t>(perm[i])];
  StridedCopy(in, in_strides, 0, out);
  return Status::Ok();
}

Result<Shape> GatherOutputShape(const Shape& data, const Shape& indices, int64_t axis) {
  constexpr const char* kOp = "Gather";
  PPML_RETURN_IF_ERROR(CheckedElementCount(kOp, "data", data).status());
  PPML_RETURN_IF_ERROR(CheckedElementCount(kOp, "indices", indices).status());
  Result<int64_t> a = NormalizeAxis(axis, static_cast<int64_t>(data.size()));
  if (!a.ok()) return a.status().WithContext(kOp);
  // data[:axis] + indices + data[axis+1:]
  Shape out(data.begin(), data.begin() + *a);
  out.insert(out.end(), indices.begin(), indices.end());
  out.insert(out.end(), data.begin() + *a + 1, data.end());
  PPML_RETURN_IF_ERROR(CheckedElementCount(kOp, "output", out).status());
  return out;
}

namespace {

// Checks every index against [-dim, dim) before anything is written.
template <typename I>
Status CheckGatherIndices(const I* indices, int64_t count, int64_t dim) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t v = static_cast<int64_t>(indices[i]);
    if (v < -dim || v >= dim) {
      return Invalid("Gather", "index " + std::to_string(v) + " (at position " + std::to_string(i) +
                                   ") is out of range for an axis of size " + std::to_string(dim));
    }
  }
  return Status::Ok();
}

// out[o, j, :] = data[o, indices[j], :] where each row `:` is `inner` elements.
template <typename I>
void GatherRows(const std::byte* data, const I* indices, int64_t index_count, int64_t outer, int64_t dim,
                int64_t inner, size_t element_size, std::byte* out) {
  const int64_t row_bytes = inner * static_cast<int64_t>(element_size);
  VisitElementSize(element_size, [&](auto tag) {
    constexpr size_t E = decltype(tag)::value;
    for (int64_t o = 0; o < outer; ++o) {
      const std::byte* block = data + o * dim * row_bytes;
      for (int64_t j = 0; j < index_count; ++j) {
        int64_t k = static_cast<int64_t>(indices[j]);
        if (k < 0) k += dim;
        // A single element is a fixed-size copy; a row is one memcpy.
        if (inner == 1) {
          std::memcpy(out, block + k * static_cast<int64_t>(E), E);
        } else {
          std::memcpy(out, block + k * row_bytes, static_cast<size_t>(row_bytes));
        }
        out += row_bytes;
      }
    }
  });
}

}  // namespace

Status Gather(const ConstView& data, const ConstView& indices, int64_t axis, const MutView& out) {
  constexpr const char* kOp = "Gather";
  PPML_RETURN_IF_ERROR(CheckView(kOp, "data", data).status());
  PPML_ASSIGN_OR_RETURN(const int64_t index_count, CheckView(kOp, "indices", indices));
  PPML_ASSIGN_OR_RETURN(const int64_t out_count, CheckView(kOp, "output", out));
  if (indices.dtype != DataType::kS32 && indices.dtype != DataType::kS64) {
    return Invalid(kOp, "indices dtype is " + DataTypeString(indices.dtype) + ", expected s32 or s64");
  }
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "output", out.dtype, data.dtype));
  PPML_ASSIGN_OR_RETURN(const Shape shape, GatherOutputShape(data.shape, indices.shape, axis));
  PPML_RETURN_IF_ERROR(CheckOutShape(kOp, out.shape, shape));

  const size_t a = static_cast<size_t>(*NormalizeAxis(axis, static_cast<int64_t>(data.shape.size())));
  const int64_t dim = data.shape[a];
  int64_t outer = 1;
  int64_t inner = 1;
  for (size_t i = 0; i < a; ++i) outer *= data.shape[i];
  for (size_t i = a + 1; i < data.shape.size(); ++i) inner *= data.shape[i];
  if (indices.dtype == DataType::kS32) {
    PPML_RETURN_IF_ERROR(CheckGatherIndices(static_cast<const int32_t*>(indices.data), index_count, dim));
  } else {
    PPML_RETURN_IF_ERROR(CheckGatherIndices(static_cast<const int64_t*>(indices.data), index_count, dim));
  }
  if (out_count == 0) return Status::Ok();

  const auto* src = static_cast<const std::byte*>(data.data);
  auto* dst = static_cast<std::byte*>(out.data);
  const size_t esize = ElementSize(data.dtype);
  if (indices.dtype == DataType::kS32) {
    GatherRows(src, static_cast<const int32_t*>(indices.data), index_count, outer, dim, inner, esize, dst);
  } else {
    GatherRows(src, static_cast<const int64_t*>(indices.data), index_count, outer, dim, inner, esize, dst);
  }
  return Status::Ok();
}

Result<Shape> ConcatOutputShape(std::span<const Shape> inputs, int64_t axis) {
  constexpr const char* kOp = "Concat";
  if (inputs.empty()) return Invalid(kOp, "no inputs");
  const Shape& first = inputs[0];
  const int64_t rank = static_cast<int64_t>(first.size());
  Result<int64_t> a = NormalizeAxis(axis, rank);
  if (!a.ok()) return a.status().WithContext(kOp);
  Shape out = first;
  out[*a] = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Shape& s = inputs[i];
    const std::string what = "input " + std::to_string(i);
    PPML_RETURN_IF_ERROR(CheckedElementCount(kOp, what.c_str(), s).status());
    if (static_cast<int64_t>(s.size()) != rank) {
      return Invalid(kOp, what + " has rank " + std::to_string(s.size()) + ", expected " + std::to_string(rank));
    }
    for (int64_t d = 0; d < rank; ++d) {
      if (d != *a && s[d] != first[d]) {
        return Invalid(kOp, what + " shape " + ShapeToString(s) + " differs from input 0 shape " +
                                ShapeToString(first) + " outside axis " + std::to_string(*a));
      }
    }
    if (s[*a] > kInt64Max - out[*a]) return Invalid(kOp, "output is too large");
    out[*a] += s[*a];
  }
  PPML_RETURN_IF_ERROR(CheckedElementCount(kOp, "output", out).status());
  return out;
}

Status Concat(std::span<const ConstView> inputs, int64_t axis, const MutView& out) {
  constexpr const char* kOp = "Concat";
  if (inputs.empty()) return Invalid(kOp, "no inputs");
  std::vector<Shape> shapes;
  shapes.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string what = "input " + std::to_string(i);
    PPML_RETURN_IF_ERROR(CheckView(kOp, what.c_str(), inputs[i]).status());
    PPML_RETURN_IF_ERROR(CheckDtype(kOp, what.c_str(), inputs[i].dtype, out.dtype));
    shapes.push_back(inputs[i].shape);
  }
  PPML_ASSIGN_OR_RETURN(const int64_t out_count, CheckView(kOp, "output", out));
  PPML_ASSIGN_OR_RETURN(const Shape shape, ConcatOutputShape(shapes, axis));
  PPML_RETURN_IF_ERROR(CheckOutShape(kOp, out.shape, shape));
  if (out_count == 0) return Status::Ok();

  // Row-major: for each outer index, each input contributes one block of
  // dims[axis:] elements, in input order.
  const size_t a = static_cast<size_t>(*NormalizeAxis(axis, static_cast<int64_t>(shape.size())));
  int64_t outer = 1;
  int64_t inner = 1;
  for (size_t i = 0; i < a; ++i) outer *= shape[i];
  for (size_t i = a + 1; i < shape.size(); ++i) inner *= shape[i];
  const int64_t esize = static_cast<int64_t>(ElementSize(out.dtype));
  auto* dst = static_cast<std::byte*>(out.data);
  for (int64_t o = 0; o < outer; ++o) {
    for (const ConstView& in : inputs) {
      const int64_t block = in.shape[a] * inner * esize;
      if (block == 0) continue;
      std::memcpy(dst, static_cast<const std::byte*>(in.data) + o * block, static_cast<size_t>(block));
      dst += block;
    }
  }
  return Status::Ok();
}

Result<Shape> PadOutputShape(const Shape& in, const std::vector<int64_t>& pads) {
  constexpr const char* kOp = "Pad";
  PPML_RETURN_IF_ERROR(CheckedElementCount(kOp, "input", in).status());
  const size_t rank = in.size();
  if (pads.size() != 2 * rank) {
    return Invalid(kOp, "pads has " + std::to_string(pads.size()) + " values for input of rank " +
                            std::to_string(rank) + ", expected " + std::to_string(2 * rank));
  }
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t begin = pads[i];
    const int64_t end = pads[rank + i];
    // Keep the sums far from overflow; no real pad is near 2^62.
    constexpr int64_t kLimit = int64_t{1} << 62;
    if (begin <= -kLimit || begin >= kLimit || end <= -kLimit || end >= kLimit) {
      return Invalid(kOp, "pads for axis " + std::to_string(i) + " are out of range");
    }
    const int64_t kept = in[i] - std::max<int64_t>(0, -begin) - std::max<int64_t>(0, -end);
    if (kept < 0) {
      return Invalid(kOp, "negative pads " + std::to_string(begin) + ", " + std::to_string(end) + " crop more than axis " +
                              std::to_string(i) + " of size " + std::to_string(in[i]));
    }
    out[i] = in[i] + begin + end;
  }
  PPML_RETURN_IF_ERROR(CheckedElementCount(kOp, "output", out).status());
  return out;
}

Status Pad(const ConstView& in, const std::vector<int64_t>& pads, PadMode mode, double constant_value,
           const MutView& out) {
  constexpr const char* kOp = "Pad";
  if (mode != PadMode::kConstant && mode != PadMode::kReflect && mode != PadMode::kEdge) {
    return Invalid(kOp, "unknown mode " + std::to_string(static_cast<int>(mode)));
  }
  PPML_RETURN_IF_ERROR(CheckView(kOp, "input", in).status());
  PPML_ASSIGN_OR_RETURN(const int64_t out_count, CheckView(kOp, "output", out));
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "output", out.dtype, in.dtype));
  PPML_ASSIGN_OR_RETURN(const Shape shape, PadOutputShape(in.shape, pads));
  PPML_RETURN_IF_ERROR(CheckOutShape(kOp, out.shape, shape));
  const size_t rank = in.shape.size();
  if (mode != PadMode::kConstant) {
    for (size_t i = 0; i < rank; ++i) {
      const int64_t kept = in.shape[i] - std::max<int64_t>(0, -pads[i]) - std::max<int64_t>(0, -pads[rank + i]);
      if (kept == 0 && (pads[i] > 0 || pads[rank + i] > 0)) {
        return Invalid(kOp, std::string(PadModeName(mode)) + " padding of axis " + std::to_string(i) +
                                " has no elements to read from");
      }
    }
  }
  if (out_count == 0) return Status::Ok();

  // The constant as one element of the output dtype.
  std::array<std::byte, 8> constant{};
  VisitDataType(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T v = ConvertValue<T>(constant_value);
    std::memcpy(constant.data(), &v, sizeof(T));
  });

  if (rank == 0) {
    std::memcpy(out.data, in.data, ElementSize(in.dtype));
    return Status::Ok();
  }
  std::vector<std::vector<int64_t>> maps(rank);
  for (size_t i = 0; i < rank; ++i) maps[i] = PadIndexMap(in.shape[i], pads[i], pads[rank + i], mode);
  const std::vector<int64_t> in_strides = ContiguousStrides(in.shape);

  // Walk the output row by row (all axes but the last). A row reads one
  // input row, or is all constant when an outer index maps to the constant.
  const std::vector<int64_t>& last = maps[rank - 1];
  const int64_t row_len = out.shape[rank - 1];
  const int64_t lead = std::max<int64_t>(0, pads[rank - 1]);
  const int64_t kept = row_len - lead - std::max<int64_t>(0, pads[2 * rank - 1]);
  const int64_t row_count = out_count / row_len;
  VisitElementSize(ElementSize(out.dtype), [&](auto tag) {
    constexpr size_t E = decltype(tag)::value;
    constexpr int64_t kE = static_cast<int64_t>(E);
    const auto* src = static_cast<const std::byte*>(in.data);
    auto* dst = static_cast<std::byte*>(out.data);
    std::vector<int64_t> index(rank - 1, 0);
    for (int64_t row = 0; row < row_count; ++row, dst += row_len * kE) {
      int64_t src_row = 0;
      bool constant_row = false;
      for (size_t d = 0; d + 1 < rank; ++d) {
        const int64_t s = maps[d][static_cast<size_t>(index[d])];
        if (s < 0) constant_row = true;
        src_row += s * in_strides[d];
      }
      if (constant_row) {
        for (int64_t j = 0; j < row_len; ++j) std::memcpy(dst + j * kE, constant.data(), E);
      } else {
        const std::byte* in_row = src + src_row * kE;
        // The unpadded middle is contiguous in the input; the edges go through the map.
        for (int64_t j = 0; j < lead; ++j) {
          std::memcpy(dst + j * kE, last[j] < 0 ? constant.data() : in_row + last[j] * kE, E);
        }
        if (kept > 0) std::memcpy(dst + lead * kE, in_row + last[lead] * kE, static_cast<size_t>(kept * kE));
        for (int64_t j = lead + kept; j < row_len; ++j) {
          std::memcpy(dst + j * kE, last[j] < 0 ? constant.data() : in_row + last[j] * kE, E);
        }
      }
      for (size_t d = rank - 1; d-- > 0;) {
        if (++index[d] < out.shape[d]) break;
        index[d] = 0;
      }
    }
  });
  return Status::Ok();
}

Result<Shape> SliceOutputShape(const Shape& in, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
                               const std::vector<int64_t>& axes, const std::vector<int64_t>& steps) {
  PPML_ASSIGN_OR_RETURN(SlicePlan plan, PlanSlice(in, starts, ends, axes, steps));
  return std::move(plan.length);
}

Status Slice(const ConstView& in, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
             const std::vector<int64_t>& axes, const std::vector<int64_t>& steps, const MutView& out) {
  constexpr const char* kOp = "Slice";
  PPML_RETURN_IF_ERROR(CheckView(kOp, "input", in).status());
  PPML_ASSIGN_OR_RETURN(const int64_t out_count, CheckView(kOp, "output", out));
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "output", out.dtype, in.dtype));
  PPML_ASSIGN_OR_RETURN(const SlicePlan plan, PlanSlice(in.shape, starts, ends, axes, steps));
  PPML_RETURN_IF_ERROR(CheckOutShape(kOp, out.shape, plan.length));
  if (out_count == 0) return Status::Ok();

  StridedCopy(in, plan.strides, plan.offset, out);
  return Status::Ok();
}

Status Cast(const ConstView& in, const MutView& out) {
  constexpr const char* kOp = "Cast";
  PPML_ASSIGN_OR_RETURN(const int64_t count, CheckView(kOp, "input", in));
  PPML_RETURN_IF_ERROR(CheckView(kOp, "output", out).status());
  PPML_RETURN_IF_ERROR(CheckOutShape(kOp, out.shape, in.shape));
  if (count == 0) return Status::Ok();
  VisitDataType(in.dtype, [&](auto from_tag) {
    using From = decltype(from_tag);
    VisitDataType(out.dtype, [&](auto to_tag) {
      using To = decltype(to_tag);
      const From* src = static_cast<const From*>(in.data);
      To* dst = static_cast<To*>(out.data);
      for (int64_t i = 0; i < count; ++i) dst[i] = ConvertValue<To>(src[i]);
    });
  });
  return Status::Ok();
}

Status CastToBool(const ConstView& in, const MutView& out) {
  constexpr const char* kOp = "Cast";
  PPML_ASSIGN_OR_RETURN(const int64_t count, CheckView(kOp, "input", in));
  PPML_RETURN_IF_ERROR(CheckView(kOp, "output", out).status());
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "output", out.dtype, DataType::kU8));
  PPML_RETURN_IF_ERROR(CheckOutShape(kOp, out.shape, in.shape));
  VisitDataType(in.dtype, [&](auto tag) {
    using From = decltype(tag);
    const From* src = static_cast<const From*>(in.data);
    auto* dst = static_cast<uint8_t*>(out.data);
    for (int64_t i = 0; i < count; ++i) dst[i] = !(src[i] == From{0});
  });
  return Status::Ok();
}

Status Expand(const ConstView& in, const MutView& out) {
  constexpr const char* kOp = "Expand";
  PPML_RETURN_IF_ERROR(CheckView(kOp, "input", in).status());
  PPML_ASSIGN_OR_RETURN(const int64_t out_count, CheckView(kOp, "output", out));
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "output", out.dtype, in.dtype));
  Result<Shape> shape = BroadcastShape(in.shape, out.shape);
  if (!shape.ok()) return shape.status().WithContext(kOp);
  PPML_RETURN_IF_ERROR(CheckOutShape(kOp, out.shape, *shape));
  if (out_count == 0) return Status::Ok();
  StridedCopy(in, BroadcastStrides(in.shape, out.shape), 0, out);
  return Status::Ok();
}

Status Where(const ConstView& cond, const ConstView& x, const ConstView& y, const MutView& out) {
  constexpr const char* kOp = "Where";
  PPML_RETURN_IF_ERROR(CheckView(kOp, "condition", cond).status());
  PPML_RETURN_IF_ERROR(CheckView(kOp, "X", x).status());
  PPML_RETURN_IF_ERROR(CheckView(kOp, "Y", y).status());
  PPML_ASSIGN_OR_RETURN(const int64_t out_count, CheckView(kOp, "output", out));
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "condition", cond.dtype, DataType::kU8));
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "Y", y.dtype, x.dtype));
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "output", out.dtype, x.dtype));
  Result<Shape> cx = BroadcastShape(cond.shape, x.shape);
  if (!cx.ok()) return cx.status().WithContext(kOp);
  Result<Shape> shape = BroadcastShape(*cx, y.shape);
  if (!shape.ok()) return shape.status().WithContext(kOp);
  PPML_RETURN_IF_ERROR(CheckOutShape(kOp, out.shape, *shape));
  if (out_count == 0) return Status::Ok();

  const std::vector<int64_t> sc = BroadcastStrides(cond.shape, out.shape);
  const std::vector<int64_t> sx = BroadcastStrides(x.shape, out.shape);
  const std::vector<int64_t> sy = BroadcastStrides(y.shape, out.shape);
  const std::vector<int64_t> so = ContiguousStrides(out.shape);
  const LoopNest<4> nest = MakeLoopNest<4>(out.shape, {&sc, &sx, &sy, &so});
  const auto* c = static_cast<const uint8_t*>(cond.data);
  const auto* px = static_cast<const std::byte*>(x.data);
  const auto* py = static_cast<const std::byte*>(y.data);
  auto* po = static_cast<std::byte*>(out.data);
  VisitElementSize(ElementSize(out.dtype), [&](auto tag) {
    constexpr size_t E = decltype(tag)::value;
    constexpr int64_t kE = static_cast<int64_t>(E);
    RunLoopNest(nest, Offsets<4>{0, 0, 0, 0}, [&](const Offsets<4>& off, int64_t n, const Offsets<4>& s) {
      const uint8_t* rc = c + off[0];
      const std::byte* rx = px + off[1] * kE;
      const std::byte* ry = py + off[2] * kE;
      std::byte* ro = po + off[3] * kE;
      for (int64_t i = 0; i < n; ++i) {
        const std::byte* from = rc[i * s[0]] ? rx + i * s[1] * kE : ry + i * s[2] * kE;
        std::memcpy(ro + i * s[3] * kE, from, E);
      }
    });
  });
  return Status::Ok();
}

Result<Shape> ReduceOutputShape(const Shape& in, const std::vector<int64_t>& axes, bool keepdims) {
  PPML_ASSIGN_OR_RETURN(const std::vector<bool> reduced, ReducedAxes("Reduce", in, axes));
  Shape out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!reduced[i]) {
      out.push_back(in[i]);
    } else if (keepdims) {
      out.push_back(1);
    }
  }
  return out;
}

Status Reduce(ReduceOp op, const ConstView& in, const std::vector<int64_t>& axes, bool keepdims,
              const MutView& out) {
  if (!KnownReduceOp(op)) return Status::InvalidArgument("Reduce: unknown op " + std::to_string(static_cast<int>(op)));
  const char* name = ReduceOpName(op);
  PPML_ASSIGN_OR_RETURN(const int64_t in_count, CheckView(name, "input", in));
  PPML_ASSIGN_OR_RETURN(const int64_t out_count, CheckView(name, "output", out));
  PPML_RETURN_IF_ERROR(CheckDtype(name, "input", in.dtype, DataType::kF32));
  PPML_RETURN_IF_ERROR(CheckDtype(name, "output", out.dtype, DataType::kF32));
  PPML_ASSIGN_OR_RETURN(const std::vector<bool> reduced, ReducedAxes(name, in.shape, axes));
  // The output with keepdims has the input's rank: 1 on reduced axes.
  const size_t rank = in.shape.size();
  Shape kept_shape = in.shape;
  Shape expected;
  int64_t reduced_count = 1;
  for (size_t i = 0; i < rank; ++i) {
    if (reduced[i]) {
      kept_shape[i] = 1;
      reduced_count *= in.shape[i];
    }
    if (!reduced[i] || keepdims) expected.push_back(kept_shape[i]);
  }
  PPML_RETURN_IF_ERROR(CheckOutShape(name, out.shape, expected));
  if (out_count == 0) return Status::Ok();

  // Output strides laid over the input's axes, 0 on reduced axes, so that
  // every input element lands in its output slot.
  std::vector<int64_t> out_strides = ContiguousStrides(kept_shape);
  for (size_t i = 0; i < rank; ++i) {
    if (reduced[i]) out_strides[i] = 0;
  }
  const std::vector<int64_t> in_strides = ContiguousStrides(in.shape);
  const LoopNest<2> nest = MakeLoopNest<2>(in.shape, {&in_strides, &out_strides});
  const float* x = static_cast<const float*>(in.data);
  float* y = static_cast<float*>(out.data);
  std::fill(y, y + out_count, ReduceIdentity(op));
  if (in_count > 0) DispatchAccumulate(op, nest, x, y);

  switch (op) {
    case ReduceOp::kMean:
      for (int64_t i = 0; i < out_count; ++i) y[i] /= static_cast<float>(reduced_count);
      break;
    case ReduceOp::kL2:
      for (int64_t i = 0; i < out_count; ++i) y[i] = std::sqrt(y[i]);
      break;
    case ReduceOp::kLogSumExp: {
      // y holds the maxima; sum exp(x - max) beside it, then max + log(sum).
      std::vector<float> sums(static_cast<size_t>(out_count), 0.0f);
      if (in_count > 0) {
        RunLoopNest(nest, Offsets<2>{0, 0}, [&](const Offsets<2>& off, int64_t n, const Offsets<2>& s) {
          for (int64_t i = 0; i < n; ++i) {
            const int64_t o = off[1] + i * s[1];
            sums[static_cast<size_t>(o)] += std::exp(x[off[0] + i * s[0]] - y[o]);
          }
        });
      }
      for (int64_t i = 0; i < out_count; ++i) {
        if (std::isfinite(y[i])) y[i] += std::log(sums[static_cast<size_t>(i)]);
      }
      break;
    }
    default:
      break;
  }
  return Status::Ok();
}

Result<int64_t> RangeLength(double start, double limit, double delta) {
  constexpr const char* kOp = "Range";
  if (!std::isfinite(start) || !std::isfinite(limit) || !std::isfinite(delta)) {
    return Invalid(kOp, "start, limit and delta must be finite");
  }
  if (delta == 0) return Invalid(kOp, "delta is 0");
  const double n = std::ceil((limit - start) / delta);
  if (!(n < static_cast<double>(int64_t{1} << 62))) {
    return Invalid(kOp, "length " + std::to_string(n) + " is too large");
  }
  return n <= 0 ? int64_t{0} : static_cast<int64_t>(n);
}

Status Range(double start, double delta, const MutView& out) {
  constexpr const char* kOp = "Range";
  PPML_ASSIGN_OR_RETURN(const int64_t count, CheckView(kOp, "output", out));
  if (out.shape.size() != 1) {
    return Invalid(kOp, "output shape " + ShapeToString(out.shape) + " is not of rank 1");
  }
  if (!std::isfinite(start) || !std::isfinite(delta)) return Invalid(kOp, "start and delta must be finite");
  if (out.dtype == DataType::kF32) {
    // ONNX: output[i] = start + i * delta, computed in double, rounded once.
    float* y = static_cast<float*>(out.data);
    for (int64_t i = 0; i < count; ++i) y[i] = static_cast<float>(start + static_cast<double>(i) * delta);
    return Status::Ok();
  }
  // Integers: exact arithmetic, and every value must fit the dtype (the
  // sequence is monotonic, so checking the last value is enough).
  constexpr double kTwo63 = 9223372036854775808.0;
  auto integral = [&](double v) { return std::trunc(v) == v && v >= -kTwo63 && v < kTwo63; };
  if (!integral(start) || !integral(delta)) {
    return Invalid(kOp, "start and delta must be integers for dtype " + DataTypeString(out.dtype));
  }
  const int64_t s = static_cast<int64_t>(start);
  const int64_t d = static_cast<int64_t>(delta);
  return VisitDataType(out.dtype, [&](auto tag) -> Status {
    using T = decltype(tag);
    if constexpr (std::is_integral_v<T>) {
      if (count == 0) return Status::Ok();
      int64_t last = 0;
      if (__builtin_mul_overflow(count - 1, d, &last) || __builtin_add_overflow(last, s, &last) ||
          s < std::numeric_limits<T>::min() || s > std::numeric_limits<T>::max() ||
          last < std::numeric_limits<T>::min() || last > std::numeric_limits<T>::max()) {
        return Invalid(kOp, std::to_string(count) + " values from " + std::to_string(s) + " by " + std::to_string(d) +
                                " do not fit dtype " + DataTypeString(out.dtype));
      }
      T* y = static_cast<T*>(out.data);
      for (int64_t i = 0; i < count; ++i) y[i] = static_cast<T>(s + i * d);
    }
    return Status::Ok();
  });
}

Status LayerNorm(const ConstView& x, const ConstView& scale, const ConstView& bias, int64_t axis, float epsilon,
                 const MutView& y, const MutView& mean, const MutView& inv_std_dev) {
  constexpr const char* kOp = "LayerNormalization";
  PPML_ASSIGN_OR_RETURN(const int64_t count, CheckView(kOp, "X", x));
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "X", x.dtype, DataType::kF32));
  PPML_ASSIGN_OR_RETURN(const int64_t first, NormalizeAxis(axis, static_cast<int64_t>(x.shape.size())));
  const int64_t inner = ElementCount(Shape(x.shape.begin() + first, x.shape.end()));
  const int64_t rows = inner == 0 ? 0 : count / inner;
  const auto check_per = [&](const char* what, DataType dtype, const Shape& shape, int64_t want) -> Status {
    PPML_RETURN_IF_ERROR(CheckDtype(kOp, what, dtype, DataType::kF32));
    if (ElementCount(shape) == want) return Status::Ok();
    return Invalid(kOp, std::string(what) + " has " + std::to_string(ElementCount(shape)) + " elements, expected " +
                            std::to_string(want));
  };
  if (scale.data) PPML_RETURN_IF_ERROR(check_per("Scale", scale.dtype, scale.shape, inner));
  if (bias.data) PPML_RETURN_IF_ERROR(check_per("B", bias.dtype, bias.shape, inner));
  PPML_RETURN_IF_ERROR(CheckOutShape(kOp, y.shape, x.shape));
  if (mean.data) PPML_RETURN_IF_ERROR(check_per("Mean", mean.dtype, mean.shape, rows));
  if (inv_std_dev.data) PPML_RETURN_IF_ERROR(check_per("InvStdDev", inv_std_dev.dtype, inv_std_dev.shape, rows));
  const auto* in = static_cast<const float*>(x.data);
  const auto* gamma = static_cast<const float*>(scale.data);
  const auto* beta = static_cast<const float*>(bias.data);
  auto* out = static_cast<float*>(y.data);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = in + r * inner;
    double sum = 0;
    for (int64_t i = 0; i < inner; ++i) sum += row[i];
    const double mu = sum / static_cast<double>(inner);
    double squares = 0;
    for (int64_t i = 0; i < inner; ++i) squares += (row[i] - mu) * (row[i] - mu);
    const double inv = 1.0 / std::sqrt(squares / static_cast<double>(inner) + epsilon);
    for (int64_t i = 0; i < inner; ++i) {
      out[r * inner + i] = static_cast<float>((row[i] - mu) * inv * (gamma ? gamma[i] : 1.0) + (beta ? beta[i] : 0.0));
    }
    if (mean.data) static_cast<float*>(mean.data)[r] = static_cast<float>(mu);
    if (inv_std_dev.data) static_cast<float*>(inv_std_dev.data)[r] = static_cast<float>(inv);
  }
  return Status::Ok();
}

Status ScatterNd(const ConstView& data, const ConstView& indices, const ConstView& updates, ScatterReduction reduction,
                 const MutView& out) {
  constexpr const char* kOp = "ScatterND";
  PPML_RETURN_IF_ERROR(CheckView(kOp, "data", data).status());
  PPML_RETURN_IF_ERROR(CheckView(kOp, "indices", indices).status());
  PPML_RETURN_IF_ERROR(CheckView(kOp, "updates", updates).status());
  PPML_RETURN_IF_ERROR(CheckView(kOp, "output", out).status());
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "indices", indices.dtype, DataType::kS64));
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "updates", updates.dtype, data.dtype));
  PPML_RETURN_IF_ERROR(CheckDtype(kOp, "output", out.dtype, data.dtype));
  PPML_RETURN_IF_ERROR(CheckOutShape(kOp, out.shape, data.shape));
  if (indices.shape.empty()) return Invalid(kOp, "indices must have rank >= 1");
  const size_t k = static_cast<size_t>(indices.shape.back());
  if (k < 1 || k > data.shape.size()) {
    return Invalid(kOp, "indices' last dimension " + std::to_string(k) + " is not in [1, data rank " +
                            std::to_string(data.shape.size()) + "]");
  }
  // updates = indices.shape[:-1] + data.shape[k:]
  Shape want(indices.shape.begin(), indices.shape.end() - 1);
  want.insert(want.end(), data.shape.begin() + static_cast<std::ptrdiff_t>(k), data.shape.end());
  if (updates.shape != want) {
    return Invalid(kOp, "updates shape " + ShapeToString(updates.shape) + ", expected " + ShapeToString(want));
  }
  const size_t element = ElementSize(data.dtype);
  const int64_t slice = ElementCount(Shape(data.shape.begin() + static_cast<std::ptrdiff_t>(k), data.shape.end()));
  const int64_t count = ElementCount(data.shape);
  if (out.data != data.data) std::memcpy(out.data, data.data, static_cast<size_t>(count) * element);
  const std::vector<int64_t> strides = ContiguousStrides(data.shape);
  const auto* index = static_cast<const int64_t*>(indices.data);
  const int64_t slices = ElementCount(indices.shape) / static_cast<int64_t>(k);
  for (int64_t s = 0; s < slices; ++s) {
    int64_t offset = 0;
    for (size_t d = 0; d < k; ++d) {
      int64_t i = index[s * static_cast<int64_t>(k) + static_cast<int64_t>(d)];
      if (i < 0) i += data.shape[d];
      if (i < 0 || i >= data.shape[d]) {
        return Invalid(kOp, "index " + std::to_string(index[s * static_cast<int64_t>(k) + static_cast<int64_t>(d)]) +
                                " is out of range for dimension " + std::to_string(d) + " of size " +
                                std::to_string(data.shape[d]));
      }
      offset += i * strides[d];
    }
    const bool ok = VisitDataType(data.dtype, [&](auto tag) {
      using T = decltype(tag);
      T* dst = static_cast<T*>(out.data) + offset;
      const T* src = static_cast<const T*>(updates.data) + s * slice;
      for (int64_t j = 0; j < slice; ++j) {
        switch (reduction) {
          case ScatterReduction::kNone: dst[j] = src[j]; break;
          case ScatterReduction::kAdd: dst[j] = static_cast<T>(dst[j] + src[j]); break;
          case ScatterReduction::kMul: dst[j] = static_cast<T>(dst[j] * src[j]); break;
        }
      }
      return true;
    });
    if (!ok) return Invalid(kOp, "unsupported data type");
  }
  return Status::Ok();
}

}  // namespace ppml::engine::ref
