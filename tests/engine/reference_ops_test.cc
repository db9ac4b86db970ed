// Tests for the reference kernels (engine/reference_ops.h): small hand-computed
// cases per op, error cases, and exhaustive/randomized cross-checks of the
// strided walks (Transpose, Slice, broadcasting) against naive index loops.
#include "engine/reference_ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace ppml::engine::ref {
namespace {

constexpr int64_t kMax64 = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin64 = std::numeric_limits<int64_t>::min();
constexpr float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

template <typename T>
std::vector<T> ToVector(const Tensor& t) {
  auto v = t.values<T>();
  return {v.begin(), v.end()};
}

template <typename T>
Tensor Make(Shape shape, std::vector<T> values) {
  EXPECT_EQ(static_cast<int64_t>(values.size()), ElementCount(shape)) << "bad test fixture";
  return Tensor::FromVector<T>(std::move(shape), values);
}

// 0, 1, 2, ... as dtype T.
template <typename T>
Tensor Iota(Shape shape) {
  Tensor t(DataTypeOf<T>::value, std::move(shape));
  T* p = t.data<T>();
  for (int64_t i = 0; i < t.element_count(); ++i) p[i] = static_cast<T>(i);
  return t;
}

void ExpectInvalid(const Status& s, const std::string& fragment) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find(fragment), std::string::npos) << "message: " << s.message();
}

// ---------------------------------------------------------------------------
// Shapes and axes

TEST(RefNormalizeAxis, PositiveNegativeAndOutOfRange) {
  EXPECT_EQ(*NormalizeAxis(0, 3), 0);
  EXPECT_EQ(*NormalizeAxis(2, 3), 2);
  EXPECT_EQ(*NormalizeAxis(-1, 3), 2);
  EXPECT_EQ(*NormalizeAxis(-3, 3), 0);
  ExpectInvalid(NormalizeAxis(3, 3).status(), "axis 3 is out of range for rank 3");
  ExpectInvalid(NormalizeAxis(-4, 3).status(), "axis -4");
  ExpectInvalid(NormalizeAxis(0, 0).status(), "rank 0");
}

TEST(RefBroadcastShape, NumpyRules) {
  EXPECT_EQ(*BroadcastShape({2, 3, 4}, {4}), (Shape{2, 3, 4}));
  EXPECT_EQ(*BroadcastShape({2, 1}, {1, 3}), (Shape{2, 3}));
  EXPECT_EQ(*BroadcastShape({}, {3}), (Shape{3}));
  EXPECT_EQ(*BroadcastShape({}, {}), (Shape{}));
  EXPECT_EQ(*BroadcastShape({0}, {1}), (Shape{0}));
  EXPECT_EQ(*BroadcastShape({5, 1, 4}, {3, 1}), (Shape{5, 3, 4}));
  ExpectInvalid(BroadcastShape({2}, {3}).status(), "not broadcastable");
  ExpectInvalid(BroadcastShape({2, 3}, {3, 3}).status(), "[2,3]");
  ExpectInvalid(BroadcastShape({-1}, {3}).status(), "negative dimension");
}

TEST(RefViewOf, SharesTensorData) {
  Tensor t = Iota<int32_t>({2, 2});
  ConstView c = ViewOf(static_cast<const Tensor&>(t));
  MutView m = ViewOf(t);
  EXPECT_EQ(c.dtype, DataType::kS32);
  EXPECT_EQ(c.shape, (Shape{2, 2}));
  EXPECT_EQ(c.data, t.raw_data());
  EXPECT_EQ(m.data, t.raw_data());
}

// ---------------------------------------------------------------------------
// Binary

Tensor RunBinary(BinaryOp op, const Tensor& a, const Tensor& b, DataType out_type) {
  Result<Shape> shape = BroadcastShape(a.shape(), b.shape());
  EXPECT_TRUE(shape.ok()) << shape.status().ToString();
  Tensor out(out_type, *shape);
  Status s = Binary(op, ViewOf(a), ViewOf(b), ViewOf(out));
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(RefBinary, AddSameShape) {
  Tensor a = Make<float>({2, 2}, {1, 2, 3, 4});
  Tensor b = Make<float>({2, 2}, {10, 20, 30, 40});
  EXPECT_EQ(ToVector<float>(RunBinary(BinaryOp::kAdd, a, b, DataType::kF32)), (std::vector<float>{11, 22, 33, 44}));
}

TEST(RefBinary, BroadcastRowColumnAndScalar) {
  Tensor m = Make<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor row = Make<float>({3}, {10, 20, 30});
  EXPECT_EQ(ToVector<float>(RunBinary(BinaryOp::kAdd, m, row, DataType::kF32)),
            (std::vector<float>{11, 22, 33, 14, 25, 36}));
  // Row on the left: broadcast operand first.
  EXPECT_EQ(ToVector<float>(RunBinary(BinaryOp::kSub, row, m, DataType::kF32)),
            (std::vector<float>{9, 18, 27, 6, 15, 24}));
  Tensor col = Make<float>({2, 1}, {2, 3});
  Tensor r = Make<float>({1, 3}, {1, 10, 100});
  Tensor outer = RunBinary(BinaryOp::kMul, col, r, DataType::kF32);
  EXPECT_EQ(outer.shape(), (Shape{2, 3}));
  EXPECT_EQ(ToVector<float>(outer), (std::vector<float>{2, 20, 200, 3, 30, 300}));
  Tensor scalar = Make<float>({}, {2});
  EXPECT_EQ(ToVector<float>(RunBinary(BinaryOp::kDiv, m, scalar, DataType::kF32)),
            (std::vector<float>{0.5f, 1, 1.5f, 2, 2.5f, 3}));
}

TEST(RefBinary, BroadcastMiddleAxis) {
  // [2,1,2] * [3,1] -> [2,3,2]
  Tensor a = Make<int32_t>({2, 1, 2}, {1, 2, 3, 4});
  Tensor b = Make<int32_t>({3, 1}, {1, 10, 100});
  Tensor out = RunBinary(BinaryOp::kMul, a, b, DataType::kS32);
  EXPECT_EQ(out.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(ToVector<int32_t>(out), (std::vector<int32_t>{1, 2, 10, 20, 100, 200, 3, 4, 30, 40, 300, 400}));
}

TEST(RefBinary, IntegerDivisionTruncatesAndWraps) {
  Tensor a = Make<int32_t>({5}, {7, -7, 7, -7, std::numeric_limits<int32_t>::min()});
  Tensor b = Make<int32_t>({5}, {2, 2, -2, -2, -1});
  EXPECT_EQ(ToVector<int32_t>(RunBinary(BinaryOp::kDiv, a, b, DataType::kS32)),
            (std::vector<int32_t>{3, -3, -3, 3, std::numeric_limits<int32_t>::min()}));
}

TEST(RefBinary, IntegerDivisionByZeroIsInvalid) {
  Tensor a = Make<int64_t>({2}, {1, 2});
  Tensor b = Make<int64_t>({2}, {1, 0});
  Tensor out(DataType::kS64, {2});
  ExpectInvalid(Binary(BinaryOp::kDiv, ViewOf(a), ViewOf(b), ViewOf(out)), "Div: integer division by zero");
}

TEST(RefBinary, FloatDivisionByZeroIsIeee) {
  Tensor a = Make<float>({2}, {1, -1});
  Tensor b = Make<float>({1}, {0});
  EXPECT_EQ(ToVector<float>(RunBinary(BinaryOp::kDiv, a, b, DataType::kF32)), (std::vector<float>{kInf, -kInf}));
}

TEST(RefBinary, IntegerArithmeticWraps) {
  Tensor a = Make<uint8_t>({3}, {200, 0, 16});
  Tensor b = Make<uint8_t>({3}, {100, 1, 16});
  EXPECT_EQ(ToVector<uint8_t>(RunBinary(BinaryOp::kAdd, a, b, DataType::kU8)), (std::vector<uint8_t>{44, 1, 32}));
  EXPECT_EQ(ToVector<uint8_t>(RunBinary(BinaryOp::kSub, a, b, DataType::kU8)), (std::vector<uint8_t>{100, 255, 0}));
  EXPECT_EQ(ToVector<uint8_t>(RunBinary(BinaryOp::kMul, a, b, DataType::kU8)), (std::vector<uint8_t>{32, 0, 0}));
  Tensor big = Make<int32_t>({1}, {std::numeric_limits<int32_t>::max()});
  Tensor one = Make<int32_t>({1}, {1});
  EXPECT_EQ(ToVector<int32_t>(RunBinary(BinaryOp::kAdd, big, one, DataType::kS32)),
            (std::vector<int32_t>{std::numeric_limits<int32_t>::min()}));
  Tensor s8a = Make<int8_t>({2}, {-128, 100});
  Tensor s8b = Make<int8_t>({2}, {-1, 2});
  EXPECT_EQ(ToVector<int8_t>(RunBinary(BinaryOp::kDiv, s8a, s8b, DataType::kS8)), (std::vector<int8_t>{-128, 50}));
}

TEST(RefBinary, Pow) {
  Tensor fa = Make<float>({3}, {2, 9, 2});
  Tensor fb = Make<float>({3}, {3, 0.5f, -1});
  EXPECT_EQ(ToVector<float>(RunBinary(BinaryOp::kPow, fa, fb, DataType::kF32)), (std::vector<float>{8, 3, 0.5f}));
  Tensor ia = Make<int64_t>({7}, {2, 3, -2, 2, 1, -1, -1});
  Tensor ib = Make<int64_t>({7}, {10, 0, 3, -1, -5, -3, -4});
  EXPECT_EQ(ToVector<int64_t>(RunBinary(BinaryOp::kPow, ia, ib, DataType::kS64)),
            (std::vector<int64_t>{1024, 1, -8, 0, 1, -1, 1}));
  // Wraps like repeated multiplication: 3^5 = 243 = -13 in s8.
  Tensor sa = Make<int8_t>({1}, {3});
  Tensor sb = Make<int8_t>({1}, {5});
  EXPECT_EQ(ToVector<int8_t>(RunBinary(BinaryOp::kPow, sa, sb, DataType::kS8)), (std::vector<int8_t>{-13}));
  Tensor zero = Make<int32_t>({1}, {0});
  Tensor neg = Make<int32_t>({1}, {-2});
  Tensor out(DataType::kS32, {1});
  ExpectInvalid(Binary(BinaryOp::kPow, ViewOf(zero), ViewOf(neg), ViewOf(out)), "negative power");
}

TEST(RefBinary, MaxMinPropagateNaN) {
  Tensor a = Make<float>({3}, {1, kNaN, 5});
  Tensor b = Make<float>({3}, {2, 0, kNaN});
  std::vector<float> mx = ToVector<float>(RunBinary(BinaryOp::kMax, a, b, DataType::kF32));
  std::vector<float> mn = ToVector<float>(RunBinary(BinaryOp::kMin, a, b, DataType::kF32));
  EXPECT_EQ(mx[0], 2);
  EXPECT_TRUE(std::isnan(mx[1]));
  EXPECT_TRUE(std::isnan(mx[2]));
  EXPECT_EQ(mn[0], 1);
  EXPECT_TRUE(std::isnan(mn[1]));
  EXPECT_TRUE(std::isnan(mn[2]));
  Tensor ia = Make<int32_t>({3}, {-1, 5, 3});
  Tensor ib = Make<int32_t>({1}, {3});
  EXPECT_EQ(ToVector<int32_t>(RunBinary(BinaryOp::kMax, ia, ib, DataType::kS32)), (std::vector<int32_t>{3, 5, 3}));
  EXPECT_EQ(ToVector<int32_t>(RunBinary(BinaryOp::kMin, ia, ib, DataType::kS32)), (std::vector<int32_t>{-1, 3, 3}));
}

TEST(RefBinary, ComparisonsOutputU8) {
  Tensor a = Make<int64_t>({2, 2}, {1, 2, 3, 4});
  Tensor b = Make<int64_t>({2}, {2, 2});
  EXPECT_EQ(ToVector<uint8_t>(RunBinary(BinaryOp::kEqual, a, b, DataType::kU8)), (std::vector<uint8_t>{0, 1, 0, 0}));
  EXPECT_EQ(ToVector<uint8_t>(RunBinary(BinaryOp::kLess, a, b, DataType::kU8)), (std::vector<uint8_t>{1, 0, 0, 0}));
  EXPECT_EQ(ToVector<uint8_t>(RunBinary(BinaryOp::kGreater, a, b, DataType::kU8)), (std::vector<uint8_t>{0, 0, 1, 1}));
  Tensor f = Make<float>({2}, {kNaN, 1});
  EXPECT_EQ(ToVector<uint8_t>(RunBinary(BinaryOp::kEqual, f, f, DataType::kU8)), (std::vector<uint8_t>{0, 1}));
}

TEST(RefBinary, InPlaceIntoFirstInput) {
  Tensor a = Make<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = Make<float>({3}, {1, 1, 1});
  MutView out = ViewOf(a);
  ASSERT_TRUE(Binary(BinaryOp::kAdd, ViewOf(static_cast<const Tensor&>(a)), ViewOf(b), out).ok());
  EXPECT_EQ(ToVector<float>(a), (std::vector<float>{2, 3, 4, 5, 6, 7}));
}

TEST(RefBinary, EmptyOutput) {
  Tensor a(DataType::kF32, {0, 3});
  Tensor b = Make<float>({3}, {1, 2, 3});
  Tensor out(DataType::kF32, {0, 3});
  EXPECT_TRUE(Binary(BinaryOp::kAdd, ViewOf(a), ViewOf(b), ViewOf(out)).ok());
}

TEST(RefBinary, RandomBroadcastMatchesNaive) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int rank = 1 + static_cast<int>(rng() % 4);
    Shape out_shape, sa, sb;
    for (int d = 0; d < rank; ++d) out_shape.push_back(1 + rng() % 3);
    // Each operand: drop some leading dims, set some dims to 1.
    const int ra = rank - static_cast<int>(rng() % (rank + 1));
    const int rb = rank - static_cast<int>(rng() % (rank + 1));
    for (int d = rank - ra; d < rank; ++d) sa.push_back(rng() % 2 ? out_shape[d] : 1);
    for (int d = rank - rb; d < rank; ++d) sb.push_back(rng() % 2 ? out_shape[d] : 1);
    Tensor a = Iota<int32_t>(sa);
    Tensor b = Iota<int32_t>(sb);
    for (auto& v : b.values<int32_t>()) v = v * 100 + 7;
    Shape full = *BroadcastShape(sa, sb);
    Tensor out(DataType::kS32, full);
    ASSERT_TRUE(Binary(BinaryOp::kSub, ViewOf(a), ViewOf(b), ViewOf(out)).ok());
    // Naive: decompose each output index, fold into each operand.
    const int64_t n = out.element_count();
    const int r = static_cast<int>(full.size());
    for (int64_t i = 0; i < n; ++i) {
      int64_t rem = i, ia = 0, ib = 0, ma = 1, mb = 1;
      for (int d = r - 1; d >= 0; --d) {
        const int64_t idx = rem % full[d];
        rem /= full[d];
        const int da = d - (r - static_cast<int>(sa.size()));
        const int db = d - (r - static_cast<int>(sb.size()));
        if (da >= 0) {
          ia += (sa[da] == 1 ? 0 : idx) * ma;
          ma *= sa[da];
        }
        if (db >= 0) {
          ib += (sb[db] == 1 ? 0 : idx) * mb;
          mb *= sb[db];
        }
      }
      ASSERT_EQ(out.data<int32_t>()[i], a.data<int32_t>()[ia] - b.data<int32_t>()[ib])
          << "trial " << trial << " a " << ShapeToString(sa) << " b " << ShapeToString(sb) << " at " << i;
    }
  }
}

TEST(RefBinary, Errors) {
  Tensor f2 = Make<float>({2}, {1, 2});
  Tensor f3 = Make<float>({3}, {1, 2, 3});
  Tensor i2 = Make<int32_t>({2}, {1, 2});
  Tensor out_f2(DataType::kF32, {2});
  Tensor out_u8(DataType::kU8, {2});
  Tensor out_f3(DataType::kF32, {3});
  ExpectInvalid(Binary(BinaryOp::kAdd, ViewOf(f2), ViewOf(i2), ViewOf(out_f2)), "Add: input B dtype is s32, expected f32");
  ExpectInvalid(Binary(BinaryOp::kAdd, ViewOf(f2), ViewOf(f2), ViewOf(out_u8)), "output dtype is u8, expected f32");
  ExpectInvalid(Binary(BinaryOp::kLess, ViewOf(f2), ViewOf(f2), ViewOf(out_f2)), "Less: output dtype is f32, expected u8");
  ExpectInvalid(Binary(BinaryOp::kMul, ViewOf(f2), ViewOf(f3), ViewOf(out_f3)), "not broadcastable");
  ExpectInvalid(Binary(BinaryOp::kAdd, ViewOf(f2), ViewOf(f2), ViewOf(out_f3)),
                "output shape is [3], expected [2]");
  ConstView null_view{DataType::kF32, {2}, nullptr};
  ExpectInvalid(Binary(BinaryOp::kAdd, null_view, ViewOf(f2), ViewOf(out_f2)), "input A has no data");
  ConstView bad_type{static_cast<DataType>(42), {2}, f2.raw_data()};
  ExpectInvalid(Binary(BinaryOp::kAdd, bad_type, ViewOf(f2), ViewOf(out_f2)), "unknown dtype");
  ExpectInvalid(Binary(static_cast<BinaryOp>(99), ViewOf(f2), ViewOf(f2), ViewOf(out_f2)), "unknown op");
}

// ---------------------------------------------------------------------------
// Transpose

TEST(RefTranspose, TwoD) {
  Tensor in = Make<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  ASSERT_EQ(*TransposeOutputShape(in.shape(), {1, 0}), (Shape{3, 2}));
  Tensor out(DataType::kF32, {3, 2});
  ASSERT_TRUE(Transpose(ViewOf(in), {1, 0}, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<float>(out), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

TEST(RefTranspose, EmptyPermReversesAxes) {
  Tensor in = Iota<int64_t>({2, 3, 4});
  ASSERT_EQ(*TransposeOutputShape(in.shape(), {}), (Shape{4, 3, 2}));
  Tensor out(DataType::kS64, {4, 3, 2});
  ASSERT_TRUE(Transpose(ViewOf(in), {}, ViewOf(out)).ok());
  for (int64_t k = 0; k < 4; ++k)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t i = 0; i < 2; ++i) EXPECT_EQ(out.data<int64_t>()[(k * 3 + j) * 2 + i], (i * 3 + j) * 4 + k);
}

TEST(RefTranspose, KeepsInnerRunsAndOtherDtypes) {
  // (1,0,2): inner axis stays, runs of 4 are copied whole.
  Tensor in = Iota<uint8_t>({2, 3, 4});
  Tensor out(DataType::kU8, {3, 2, 4});
  ASSERT_TRUE(Transpose(ViewOf(in), {1, 0, 2}, ViewOf(out)).ok());
  for (int64_t j = 0; j < 3; ++j)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(out.data<uint8_t>()[(j * 2 + i) * 4 + k], (i * 3 + j) * 4 + k);
  // Identity perm and a scalar.
  Tensor same(DataType::kU8, {2, 3, 4});
  ASSERT_TRUE(Transpose(ViewOf(in), {0, 1, 2}, ViewOf(same)).ok());
  EXPECT_EQ(ToVector<uint8_t>(same), ToVector<uint8_t>(in));
  Tensor scalar = Make<int32_t>({}, {42});
  Tensor scalar_out(DataType::kS32, {});
  ASSERT_TRUE(Transpose(ViewOf(scalar), {}, ViewOf(scalar_out)).ok());
  EXPECT_EQ(ToVector<int32_t>(scalar_out), (std::vector<int32_t>{42}));
}

TEST(RefTranspose, RandomPermsMatchNaive) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 100; ++trial) {
    const size_t rank = 1 + rng() % 5;
    Shape shape;
    for (size_t d = 0; d < rank; ++d) shape.push_back(1 + rng() % 4);
    std::vector<int64_t> perm(rank);
    for (size_t d = 0; d < rank; ++d) perm[d] = static_cast<int64_t>(d);
    std::shuffle(perm.begin(), perm.end(), rng);
    Tensor in = Iota<int32_t>(shape);
    Shape out_shape = *TransposeOutputShape(shape, perm);
    Tensor out(DataType::kS32, out_shape);
    ASSERT_TRUE(Transpose(ViewOf(in), perm, ViewOf(out)).ok());
    std::vector<int64_t> in_strides(rank, 1);
    for (size_t d = rank - 1; d > 0; --d) in_strides[d - 1] = in_strides[d] * shape[d];
    for (int64_t i = 0; i < out.element_count(); ++i) {
      int64_t rem = i, src = 0;
      for (size_t d = rank; d-- > 0;) {
        src += (rem % out_shape[d]) * in_strides[perm[d]];
        rem /= out_shape[d];
      }
      ASSERT_EQ(out.data<int32_t>()[i], src) << "trial " << trial;
    }
  }
}

// Transposes that swap two inner axes, small and large enough for the tiled
// copy, with sizes that are not multiples of the tile.
template <typename T>
void CheckTransposeAgainstNaive(const Shape& shape, const std::vector<int64_t>& perm) {
  Tensor in = Iota<T>(shape);
  const Shape out_shape = *TransposeOutputShape(shape, perm);
  Tensor out(DataTypeOf<T>::value, out_shape);
  ASSERT_TRUE(Transpose(ViewOf(in), perm, ViewOf(out)).ok());
  const size_t rank = shape.size();
  std::vector<int64_t> in_strides(rank, 1);
  for (size_t d = rank - 1; d > 0; --d) in_strides[d - 1] = in_strides[d] * shape[d];
  for (int64_t i = 0; i < out.element_count(); ++i) {
    int64_t rem = i, src = 0;
    for (size_t d = rank; d-- > 0;) {
      src += (rem % out_shape[d]) * in_strides[perm[d]];
      rem /= out_shape[d];
    }
    ASSERT_EQ(out.data<T>()[i], static_cast<T>(src)) << ShapeToString(shape) << " at " << i;
  }
}

TEST(RefTranspose, TiledInnerSwapMatchesNaive) {
  CheckTransposeAgainstNaive<float>({40, 37}, {1, 0});
  CheckTransposeAgainstNaive<int64_t>({3, 33, 17}, {0, 2, 1});
  CheckTransposeAgainstNaive<uint8_t>({2, 16, 5, 20}, {0, 3, 1, 2});  // NCHW -> NHWC style
  CheckTransposeAgainstNaive<int32_t>({2, 18, 3, 19}, {3, 1, 2, 0});
  // Planes of 1 MiB and more are copied in tiles; 517 x 509 is not a multiple of the tile.
  CheckTransposeAgainstNaive<float>({517, 509}, {1, 0});
  CheckTransposeAgainstNaive<int64_t>({2, 3, 400, 330}, {0, 1, 3, 2});
}

TEST(RefTranspose, Errors) {
  Tensor in = Iota<float>({2, 3});
  Tensor out(DataType::kF32, {3, 2});
  ExpectInvalid(Transpose(ViewOf(in), {0, 0}, ViewOf(out)), "perm repeats axis 0");
  ExpectInvalid(Transpose(ViewOf(in), {0, 2}, ViewOf(out)), "perm[1] = 2 is out of range");
  ExpectInvalid(Transpose(ViewOf(in), {-1, 0}, ViewOf(out)), "out of range");
  ExpectInvalid(Transpose(ViewOf(in), {1, 0, 2}, ViewOf(out)), "perm has 3 entries for input of rank 2");
  ExpectInvalid(Transpose(ViewOf(in), {0, 1}, ViewOf(out)), "output shape is [3,2], expected [2,3]");
  Tensor wrong_type(DataType::kS32, {3, 2});
  ExpectInvalid(Transpose(ViewOf(in), {1, 0}, ViewOf(wrong_type)), "output dtype is s32, expected f32");
}

// ---------------------------------------------------------------------------
// Gather

TEST(RefGather, AxisZeroWithNegativeIndices) {
  Tensor data = Make<float>({3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor idx = Make<int64_t>({2, 2}, {0, -1, 1, 0});
  ASSERT_EQ(*GatherOutputShape(data.shape(), idx.shape(), 0), (Shape{2, 2, 2}));
  Tensor out(DataType::kF32, {2, 2, 2});
  ASSERT_TRUE(Gather(ViewOf(data), ViewOf(idx), 0, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<float>(out), (std::vector<float>{1, 2, 5, 6, 3, 4, 1, 2}));
}

TEST(RefGather, NegativeAxisInnerElements) {
  Tensor data = Make<int32_t>({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor idx = Make<int32_t>({2}, {2, -3});
  ASSERT_EQ(*GatherOutputShape(data.shape(), idx.shape(), -1), (Shape{2, 2}));
  Tensor out(DataType::kS32, {2, 2});
  ASSERT_TRUE(Gather(ViewOf(data), ViewOf(idx), -1, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<int32_t>(out), (std::vector<int32_t>{3, 1, 6, 4}));
}

TEST(RefGather, MiddleAxisAndScalarIndex) {
  Tensor data = Iota<uint8_t>({2, 3, 2});
  Tensor idx = Make<int64_t>({}, {1});
  ASSERT_EQ(*GatherOutputShape(data.shape(), idx.shape(), 1), (Shape{2, 2}));
  Tensor out(DataType::kU8, {2, 2});
  ASSERT_TRUE(Gather(ViewOf(data), ViewOf(idx), 1, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<uint8_t>(out), (std::vector<uint8_t>{2, 3, 8, 9}));
}

TEST(RefGather, Errors) {
  Tensor data = Iota<float>({2, 3});
  Tensor bad = Make<int64_t>({2}, {0, 2});
  Tensor out(DataType::kF32, {2, 3});
  ExpectInvalid(Gather(ViewOf(data), ViewOf(bad), 0, ViewOf(out)), "index 2 (at position 1) is out of range");
  Tensor neg = Make<int32_t>({1}, {-3});
  Tensor out1(DataType::kF32, {1, 3});
  ExpectInvalid(Gather(ViewOf(data), ViewOf(neg), 0, ViewOf(out1)), "index -3");
  Tensor fidx = Make<float>({1}, {0});
  ExpectInvalid(Gather(ViewOf(data), ViewOf(fidx), 0, ViewOf(out1)), "indices dtype is f32, expected s32 or s64");
  Tensor ok_idx = Make<int64_t>({1}, {0});
  ExpectInvalid(Gather(ViewOf(data), ViewOf(ok_idx), 2, ViewOf(out1)), "Gather: axis 2 is out of range");
  ExpectInvalid(Gather(ViewOf(data), ViewOf(ok_idx), 1, ViewOf(out1)), "output shape is [1,3], expected [2,1]");
  Tensor scalar = Make<float>({}, {1});
  ExpectInvalid(GatherOutputShape(scalar.shape(), {1}, 0).status(), "rank 0");
}

// ---------------------------------------------------------------------------
// Concat

TEST(RefConcat, AxisZeroAndNegativeAxis) {
  Tensor a = Make<int32_t>({1, 2}, {1, 2});
  Tensor b = Make<int32_t>({2, 2}, {3, 4, 5, 6});
  std::vector<ConstView> inputs{ViewOf(a), ViewOf(b)};
  std::vector<Shape> shapes{a.shape(), b.shape()};
  ASSERT_EQ(*ConcatOutputShape(shapes, 0), (Shape{3, 2}));
  Tensor out(DataType::kS32, {3, 2});
  ASSERT_TRUE(Concat(inputs, 0, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<int32_t>(out), (std::vector<int32_t>{1, 2, 3, 4, 5, 6}));

  Tensor c = Make<int32_t>({2, 1}, {7, 8});
  Tensor empty(DataType::kS32, {2, 0});
  std::vector<ConstView> row_inputs{ViewOf(b), ViewOf(empty), ViewOf(c)};
  Tensor out2(DataType::kS32, {2, 3});
  ASSERT_TRUE(Concat(row_inputs, -1, ViewOf(out2)).ok());
  EXPECT_EQ(ToVector<int32_t>(out2), (std::vector<int32_t>{3, 4, 7, 5, 6, 8}));
}

TEST(RefConcat, Errors) {
  Tensor a = Iota<float>({2, 2});
  Tensor b = Iota<float>({3, 3});
  Tensor c = Iota<float>({2});
  Tensor s = Iota<int32_t>({2, 2});
  Tensor out(DataType::kF32, {4, 2});
  std::vector<ConstView> mismatch{ViewOf(a), ViewOf(b)};
  ExpectInvalid(Concat(mismatch, 0, ViewOf(out)), "input 1 shape [3,3] differs from input 0 shape [2,2] outside axis 0");
  std::vector<ConstView> rank{ViewOf(a), ViewOf(c)};
  ExpectInvalid(Concat(rank, 0, ViewOf(out)), "input 1 has rank 1, expected 2");
  std::vector<ConstView> types{ViewOf(a), ViewOf(s)};
  ExpectInvalid(Concat(types, 0, ViewOf(out)), "input 1 dtype is s32, expected f32");
  ExpectInvalid(Concat({}, 0, ViewOf(out)), "no inputs");
  std::vector<ConstView> two{ViewOf(a), ViewOf(a)};
  ExpectInvalid(Concat(two, 1, ViewOf(out)), "output shape is [4,2], expected [2,4]");
  ExpectInvalid(Concat(two, 2, ViewOf(out)), "axis 2 is out of range");
}

// ---------------------------------------------------------------------------
// Pad

std::vector<float> Pad1D(std::vector<float> in, int64_t begin, int64_t end, PadMode mode, double value = 0) {
  Tensor t = Make<float>({static_cast<int64_t>(in.size())}, in);
  Result<Shape> shape = PadOutputShape(t.shape(), {begin, end});
  EXPECT_TRUE(shape.ok()) << shape.status().ToString();
  Tensor out(DataType::kF32, *shape);
  Status s = Pad(ViewOf(t), {begin, end}, mode, value, ViewOf(out));
  EXPECT_TRUE(s.ok()) << s.ToString();
  return ToVector<float>(out);
}

TEST(RefPad, ConstantEdgeReflect1D) {
  EXPECT_EQ(Pad1D({1, 2, 3, 4}, 2, 1, PadMode::kConstant, 9), (std::vector<float>{9, 9, 1, 2, 3, 4, 9}));
  EXPECT_EQ(Pad1D({1, 2, 3, 4}, 2, 2, PadMode::kEdge), (std::vector<float>{1, 1, 1, 2, 3, 4, 4, 4}));
  EXPECT_EQ(Pad1D({1, 2, 3, 4}, 2, 2, PadMode::kReflect), (std::vector<float>{3, 2, 1, 2, 3, 4, 3, 2}));
  EXPECT_EQ(Pad1D({1, 2, 3, 4}, 3, 3, PadMode::kReflect), (std::vector<float>{4, 3, 2, 1, 2, 3, 4, 3, 2, 1}));
}

TEST(RefPad, ReflectLongerThanAxisRepeatsAsNumpy) {
  // np.pad([1, 2, 3], 5, 'reflect')
  EXPECT_EQ(Pad1D({1, 2, 3}, 5, 5, PadMode::kReflect),
            (std::vector<float>{2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2}));
  EXPECT_EQ(Pad1D({7}, 2, 1, PadMode::kReflect), (std::vector<float>{7, 7, 7, 7}));
}

TEST(RefPad, NegativePadsCrop) {
  EXPECT_EQ(Pad1D({1, 2, 3, 4, 5}, -1, -2, PadMode::kConstant), (std::vector<float>{2, 3}));
  EXPECT_EQ(Pad1D({1, 2, 3, 4}, -1, 2, PadMode::kEdge), (std::vector<float>{2, 3, 4, 4, 4}));
  EXPECT_EQ(Pad1D({1, 2, 3, 4}, -1, 2, PadMode::kConstant, -1), (std::vector<float>{2, 3, 4, -1, -1}));
  // Reflect pads from the cropped data [3, 4].
  EXPECT_EQ(Pad1D({1, 2, 3, 4}, -2, 3, PadMode::kReflect), (std::vector<float>{3, 4, 3, 4, 3}));
  EXPECT_EQ(Pad1D({1, 2, 3, 4}, -4, 0, PadMode::kConstant), (std::vector<float>{}));
}

TEST(RefPad, TwoDimensionalModes) {
  Tensor in = Make<int32_t>({2, 3}, {1, 2, 3, 4, 5, 6});
  const std::vector<int64_t> pads{1, 1, 1, 0};  // one row before and after, one column before
  ASSERT_EQ(*PadOutputShape(in.shape(), pads), (Shape{4, 4}));
  Tensor out(DataType::kS32, {4, 4});
  ASSERT_TRUE(Pad(ViewOf(in), pads, PadMode::kConstant, 0, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<int32_t>(out), (std::vector<int32_t>{0, 0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 0, 0, 0, 0}));
  ASSERT_TRUE(Pad(ViewOf(in), pads, PadMode::kEdge, 0, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<int32_t>(out), (std::vector<int32_t>{1, 1, 2, 3, 1, 1, 2, 3, 4, 4, 5, 6, 4, 4, 5, 6}));
  ASSERT_TRUE(Pad(ViewOf(in), pads, PadMode::kReflect, 0, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<int32_t>(out), (std::vector<int32_t>{5, 4, 5, 6, 2, 1, 2, 3, 5, 4, 5, 6, 2, 1, 2, 3}));
}

TEST(RefPad, ConstantIsConvertedToDtype) {
  Tensor in = Make<uint8_t>({1}, {5});
  Tensor out(DataType::kU8, {3});
  ASSERT_TRUE(Pad(ViewOf(in), {1, 1}, PadMode::kConstant, 300.0, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<uint8_t>(out), (std::vector<uint8_t>{255, 5, 255}));
  Tensor in64 = Make<int64_t>({2}, {1, 2});
  Tensor out64(DataType::kS64, {3});
  ASSERT_TRUE(Pad(ViewOf(in64), {0, 1}, PadMode::kConstant, -7.9, ViewOf(out64)).ok());
  EXPECT_EQ(ToVector<int64_t>(out64), (std::vector<int64_t>{1, 2, -7}));
}

TEST(RefPad, ScalarInput) {
  Tensor in = Make<float>({}, {3});
  Tensor out(DataType::kF32, {});
  ASSERT_TRUE(Pad(ViewOf(in), {}, PadMode::kReflect, 0, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<float>(out), (std::vector<float>{3}));
}

TEST(RefPad, Errors) {
  Tensor in = Iota<float>({2, 2});
  Tensor out(DataType::kF32, {4, 4});
  ExpectInvalid(Pad(ViewOf(in), {1, 1}, PadMode::kConstant, 0, ViewOf(out)), "pads has 2 values for input of rank 2");
  ExpectInvalid(PadOutputShape({2}, {-3, 2}).status(), "crop more than axis 0 of size 2");
  ExpectInvalid(PadOutputShape({2}, {-3, 0}).status(), "crop more");
  ExpectInvalid(Pad(ViewOf(in), {1, 1, 1, 0}, PadMode::kConstant, 0, ViewOf(out)),
                "output shape is [4,4], expected [4,3]");
  Tensor empty(DataType::kF32, {0});
  Tensor out2(DataType::kF32, {2});
  ExpectInvalid(Pad(ViewOf(empty), {1, 1}, PadMode::kReflect, 0, ViewOf(out2)), "reflect padding of axis 0");
  ExpectInvalid(Pad(ViewOf(empty), {1, 1}, PadMode::kEdge, 0, ViewOf(out2)), "edge padding of axis 0");
  EXPECT_TRUE(Pad(ViewOf(empty), {1, 1}, PadMode::kConstant, 0, ViewOf(out2)).ok());
  ExpectInvalid(Pad(ViewOf(in), {0, 0, 0, 0}, static_cast<PadMode>(7), 0, ViewOf(in)), "unknown mode");
}

// ---------------------------------------------------------------------------
// Slice

TEST(RefSlice, BasicAndDefaultAxes) {
  Tensor in = Iota<float>({3, 4});
  Shape shape = *SliceOutputShape(in.shape(), {1, 0}, {3, 3}, {}, {});
  ASSERT_EQ(shape, (Shape{2, 3}));
  Tensor out(DataType::kF32, shape);
  ASSERT_TRUE(Slice(ViewOf(in), {1, 0}, {3, 3}, {}, {}, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<float>(out), (std::vector<float>{4, 5, 6, 8, 9, 10}));
}

TEST(RefSlice, NegativeAxesIndicesAndSentinels) {
  Tensor in = Iota<int64_t>({3, 4});
  // Last column from index 1 to the end, via a negative axis and INT64_MAX.
  Tensor out(DataType::kS64, {3, 3});
  ASSERT_TRUE(Slice(ViewOf(in), {-3}, {kMax64}, {-1}, {}, ViewOf(out)).ok());
  EXPECT_EQ(ToVector<int64_t>(out), (std::vector<int64_t>{1, 2, 3, 5, 6, 7, 9, 10, 11}));
  // Out-of-range starts/ends are clamped.
  Tensor out2(DataType::kS64, {2, 4});
  ASSERT_TRUE(Slice(ViewOf(in), {-100}, {-1}, {0}, {}, ViewOf(out2)).ok());
  EXPECT_EQ(ToVector<int64_t>(out2), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(RefSlice, StepsAndNegativeSteps) {
  Tensor in = Iota<int32_t>({6});
  auto run = [&](int64_t start, int64_t end, int64_t step) {
    Result<Shape> shape = SliceOutputShape(in.shape(), {start}, {end}, {0}, {step});
    EXPECT_TRUE(shape.ok()) << shape.status().ToString();
    Tensor out(DataType::kS32, *shape);
    Status s = Slice(ViewOf(in), {start}, {end}, {0}, {step}, ViewOf(out));
    EXPECT_TRUE(s.ok()) << s.ToString();
    return ToVector<int32_t>(out);
  };
  EXPECT_EQ(run(0, 6, 2), (std::vector<int32_t>{0, 2, 4}));
  EXPECT_EQ(run(1, kMax64, 4), (std::vector<int32_t>{1, 5}));
  EXPECT_EQ(run(-1, kMin64, -1), (std::vector<int32_t>{5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(run(100, 0, -2), (std::vector<int32_t>{5, 3, 1}));
  EXPECT_EQ(run(4, 1, -1), (std::vector<int32_t>{4, 3, 2}));
  EXPECT_EQ(run(1, 4, -1), (std::vector<int32_t>{}));
  EXPECT_EQ(run(3, 3, 1), (std::vector<int32_t>{}));
  EXPECT_EQ(run(5, kMin64, kMin64), (std::vector<int32_t>{5}));
  EXPECT_EQ(run(0, kMax64, kMax64), (std::vector<int32_t>{0}));
  // ONNX clamps a negative-step start into [0, dim-1]: one element, not numpy's none.
  EXPECT_EQ(run(-10, kMin64, -1), (std::vector<int32_t>{0}));
}

TEST(RefSlice, ReverseAllAxes) {
  Tensor in = Iota<int32_t>({2, 3, 2});
  Tensor out(DataType::kS32, {2, 3, 2});
  ASSERT_TRUE(Slice(ViewOf(in), {-1, -1, -1}, {kMin64, kMin64, kMin64}, {0, 1, 2}, {-1, -1, -1}, ViewOf(out)).ok());
  std::vector<int32_t> expected(12);
  for (int i = 0; i < 12; ++i) expected[i] = 11 - i;
  EXPECT_EQ(ToVector<int32_t>(out), expected);
}

TEST(RefSlice, ExhaustiveOneDimensionMatchesEnumeration) {
  // An independent statement of the ONNX rule: adjust negatives, clamp, then
  // walk from start toward end.
  const std::vector<int64_t> bounds{kMin64, -9, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 9, kMax64};
  const std::vector<int64_t> steps{kMin64, -3, -2, -1, 1, 2, 3, kMax64};
  for (int64_t dim = 0; dim <= 5; ++dim) {
    Tensor in = Iota<uint8_t>({dim});
    for (int64_t start : bounds) {
      for (int64_t end : bounds) {
        for (int64_t step : steps) {
          std::vector<uint8_t> expected;
          int64_t s = start < 0 ? start + dim : start;
          int64_t e = end < 0 ? end + dim : end;
          if (step > 0) {
            s = std::min(std::max<int64_t>(s, 0), dim);
            e = std::min(std::max<int64_t>(e, 0), dim);
            for (int64_t i = s; i < e; i += std::min<int64_t>(step, dim + 1)) expected.push_back(uint8_t(i));
          } else if (dim > 0) {
            s = std::min(std::max<int64_t>(s, 0), dim - 1);
            e = std::min(std::max<int64_t>(e, -1), dim - 1);
            const int64_t stride = step == kMin64 ? dim + 1 : std::min<int64_t>(-step, dim + 1);
            for (int64_t i = s; i > e; i -= stride) expected.push_back(uint8_t(i));
          }
          Result<Shape> shape = SliceOutputShape(in.shape(), {start}, {end}, {0}, {step});
          ASSERT_TRUE(shape.ok()) << shape.status().ToString();
          Tensor out(DataType::kU8, *shape);
          ASSERT_TRUE(Slice(ViewOf(in), {start}, {end}, {0}, {step}, ViewOf(out)).ok());
          ASSERT_EQ(ToVector<uint8_t>(out), expected)
              << "dim " << dim << " start " << start << " end " << end << " step " << step;
        }
      }
    }
  }
}

TEST(RefSlice, Errors) {
  Tensor in = Iota<float>({3, 4});
  Tensor out(DataType::kF32, {1, 4});
  ExpectInvalid(Slice(ViewOf(in), {0}, {1}, {0}, {0}, ViewOf(out)), "step for axis 0 is 0");
  ExpectInvalid(Slice(ViewOf(in), {0}, {1, 2}, {0}, {}, ViewOf(out)), "starts has 1 values but ends has 2");
  ExpectInvalid(Slice(ViewOf(in), {0, 0}, {1, 1}, {0, -2}, {}, ViewOf(out)), "axis -2 is repeated");
  ExpectInvalid(Slice(ViewOf(in), {0}, {1}, {2}, {}, ViewOf(out)), "Slice: axis 2 is out of range");
  ExpectInvalid(Slice(ViewOf(in), {0}, {1}, {0, 1}, {}, ViewOf(out)), "axes has 2 values, expected 1");
  ExpectInvalid(Slice(ViewOf(in), {0}, {1}, {0}, {1, 1}, ViewOf(out)), "steps has 2 values, expected 1");
  ExpectInvalid(Slice(ViewOf(in), {0, 0, 0}, {1, 1, 1}, {}, {}, ViewOf(out)), "3 starts for input of rank 2");
  ExpectInvalid(Slice(ViewOf(in), {0}, {2}, {0}, {}, ViewOf(out)), "output shape is [1,4], expected [2,4]");
}

// ---------------------------------------------------------------------------
// Cast

TEST(RefCast, FloatToIntegersTruncatesAndSaturates) {
  Tensor in = Make<float>({6}, {2.7f, -2.7f, 1e10f, -1e10f, kNaN, 0.5f});
  Tensor s32(DataType::kS32, {6});
  ASSERT_TRUE(Cast(ViewOf(in), ViewOf(s32)).ok());
  EXPECT_EQ(ToVector<int32_t>(s32), (std::vector<int32_t>{2, -2, std::numeric_limits<int32_t>::max(),
                                                           std::numeric_limits<int32_t>::min(), 0, 0}));
  Tensor u8(DataType::kU8, {6});
  ASSERT_TRUE(Cast(ViewOf(in), ViewOf(u8)).ok());
  EXPECT_EQ(ToVector<uint8_t>(u8), (std::vector<uint8_t>{2, 0, 255, 0, 0, 0}));
  Tensor s64(DataType::kS64, {6});
  ASSERT_TRUE(Cast(ViewOf(in), ViewOf(s64)).ok());
  EXPECT_EQ(ToVector<int64_t>(s64), (std::vector<int64_t>{2, -2, 10000000000, -10000000000, 0, 0}));
}

TEST(RefCast, IntegerConversions) {
  Tensor in = Make<int64_t>({4}, {300, -1, 127, -129});
  Tensor s8(DataType::kS8, {4});
  ASSERT_TRUE(Cast(ViewOf(in), ViewOf(s8)).ok());
  EXPECT_EQ(ToVector<int8_t>(s8), (std::vector<int8_t>{44, -1, 127, 127}));
  Tensor f(DataType::kF32, {4});
  ASSERT_TRUE(Cast(ViewOf(in), ViewOf(f)).ok());
  EXPECT_EQ(ToVector<float>(f), (std::vector<float>{300, -1, 127, -129}));
  Tensor u = Make<uint8_t>({2}, {255, 0});
  Tensor s32(DataType::kS32, {2});
  ASSERT_TRUE(Cast(ViewOf(u), ViewOf(s32)).ok());
  EXPECT_EQ(ToVector<int32_t>(s32), (std::vector<int32_t>{255, 0}));
  Tensor same(DataType::kU8, {2});
  ASSERT_TRUE(Cast(ViewOf(u), ViewOf(same)).ok());
  EXPECT_EQ(ToVector<uint8_t>(same), (std::vector<uint8_t>{255, 0}));
}

TEST(RefCast, Errors) {
  Tensor in = Iota<float>({2});
  Tensor out(DataType::kS32, {3});
  ExpectInvalid(Cast(ViewOf(in), ViewOf(out)), "Cast: output shape is [3], expected [2]");
}

// ---------------------------------------------------------------------------
// Expand

TEST(RefExpand, BroadcastsToOutputShape) {
  Tensor in = Make<int64_t>({3, 1}, {1, 2, 3});
  Tensor out(DataType::kS64, {2, 3, 2});
  ASSERT_TRUE(Expand(ViewOf(in), ViewOf(out)).ok());
  EXPECT_EQ(ToVector<int64_t>(out), (std::vector<int64_t>{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3}));
  Tensor row = Make<float>({3}, {1, 2, 3});
  Tensor rows(DataType::kF32, {2, 3});
  ASSERT_TRUE(Expand(ViewOf(row), ViewOf(rows)).ok());
  EXPECT_EQ(ToVector<float>(rows), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  Tensor scalar = Make<uint8_t>({}, {9});
  Tensor filled(DataType::kU8, {2, 2});
  ASSERT_TRUE(Expand(ViewOf(scalar), ViewOf(filled)).ok());
  EXPECT_EQ(ToVector<uint8_t>(filled), (std::vector<uint8_t>{9, 9, 9, 9}));
}

TEST(RefExpand, ColumnToLargeMatrix) {
  // Inner stride 0 under a contiguous axis: takes the tiled copy path.
  Tensor col = Iota<int32_t>({33, 1});
  Tensor out(DataType::kS32, {33, 20});
  ASSERT_TRUE(Expand(ViewOf(col), ViewOf(out)).ok());
  for (int64_t r = 0; r < 33; ++r)
    for (int64_t c = 0; c < 20; ++c) ASSERT_EQ(out.data<int32_t>()[r * 20 + c], r);
}

TEST(RefExpand, Errors) {
  Tensor in = Iota<float>({3});
  Tensor bad(DataType::kF32, {2, 2});
  ExpectInvalid(Expand(ViewOf(in), ViewOf(bad)), "not broadcastable");
  // shape [1] broadcasts with [3] to [3], so out must be [3].
  Tensor small(DataType::kF32, {1});
  ExpectInvalid(Expand(ViewOf(in), ViewOf(small)), "output shape is [1], expected [3]");
  Tensor wrong_type(DataType::kS32, {3});
  ExpectInvalid(Expand(ViewOf(in), ViewOf(wrong_type)), "output dtype is s32");
}

// ---------------------------------------------------------------------------
// Where

TEST(RefWhere, BroadcastsAllThree) {
  Tensor cond = Make<uint8_t>({2, 1}, {1, 0});
  Tensor x = Make<float>({1, 3}, {1, 2, 3});
  Tensor y = Make<float>({}, {-1});
  Tensor out(DataType::kF32, {2, 3});
  ASSERT_TRUE(Where(ViewOf(cond), ViewOf(x), ViewOf(y), ViewOf(out)).ok());
  EXPECT_EQ(ToVector<float>(out), (std::vector<float>{1, 2, 3, -1, -1, -1}));

  Tensor c2 = Make<uint8_t>({4}, {0, 1, 2, 0});
  Tensor x2 = Make<int64_t>({4}, {1, 2, 3, 4});
  Tensor y2 = Make<int64_t>({4}, {10, 20, 30, 40});
  Tensor out2(DataType::kS64, {4});
  ASSERT_TRUE(Where(ViewOf(c2), ViewOf(x2), ViewOf(y2), ViewOf(out2)).ok());
  EXPECT_EQ(ToVector<int64_t>(out2), (std::vector<int64_t>{10, 2, 3, 40}));
}

TEST(RefWhere, Errors) {
  Tensor fcond = Make<float>({2}, {1, 0});
  Tensor cond = Make<uint8_t>({2}, {1, 0});
  Tensor x = Iota<float>({2});
  Tensor y32 = Iota<int32_t>({2});
  Tensor y3 = Iota<float>({3});
  Tensor out(DataType::kF32, {2});
  ExpectInvalid(Where(ViewOf(fcond), ViewOf(x), ViewOf(x), ViewOf(out)), "condition dtype is f32, expected u8");
  ExpectInvalid(Where(ViewOf(cond), ViewOf(x), ViewOf(y32), ViewOf(out)), "Y dtype is s32, expected f32");
  ExpectInvalid(Where(ViewOf(cond), ViewOf(x), ViewOf(y3), ViewOf(out)), "not broadcastable");
  Tensor out3(DataType::kF32, {3});
  ExpectInvalid(Where(ViewOf(cond), ViewOf(x), ViewOf(x), ViewOf(out3)), "output shape is [3], expected [2]");
}

// ---------------------------------------------------------------------------
// Reduce

std::vector<float> RunReduce(ReduceOp op, const Tensor& in, const std::vector<int64_t>& axes, bool keepdims,
                             Shape expected_shape) {
  Result<Shape> shape = ReduceOutputShape(in.shape(), axes, keepdims);
  EXPECT_TRUE(shape.ok()) << shape.status().ToString();
  EXPECT_EQ(*shape, expected_shape);
  Tensor out(DataType::kF32, *shape);
  Status s = Reduce(op, ViewOf(in), axes, keepdims, ViewOf(out));
  EXPECT_TRUE(s.ok()) << s.ToString();
  return ToVector<float>(out);
}

TEST(RefReduce, OutputShapes) {
  EXPECT_EQ(*ReduceOutputShape({2, 3, 4}, {1}, true), (Shape{2, 1, 4}));
  EXPECT_EQ(*ReduceOutputShape({2, 3, 4}, {-1, 0}, false), (Shape{3}));
  EXPECT_EQ(*ReduceOutputShape({2, 3, 4}, {}, false), (Shape{}));
  EXPECT_EQ(*ReduceOutputShape({2, 3, 4}, {}, true), (Shape{1, 1, 1}));
  ExpectInvalid(ReduceOutputShape({2, 3}, {1, -1}, true).status(), "axis -1 is repeated");
  ExpectInvalid(ReduceOutputShape({2, 3}, {2}, true).status(), "axis 2 is out of range");
}

TEST(RefReduce, SumMeanAlongAxes) {
  Tensor in = Make<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  EXPECT_EQ(RunReduce(ReduceOp::kSum, in, {1}, true, {2, 1}), (std::vector<float>{6, 15}));
  EXPECT_EQ(RunReduce(ReduceOp::kSum, in, {0}, false, {3}), (std::vector<float>{5, 7, 9}));
  EXPECT_EQ(RunReduce(ReduceOp::kSum, in, {-2}, true, {1, 3}), (std::vector<float>{5, 7, 9}));
  EXPECT_EQ(RunReduce(ReduceOp::kSum, in, {}, false, {}), (std::vector<float>{21}));
  EXPECT_EQ(RunReduce(ReduceOp::kMean, in, {1}, false, {2}), (std::vector<float>{2, 5}));
  EXPECT_EQ(RunReduce(ReduceOp::kMean, in, {0, 1}, true, {1, 1}), (std::vector<float>{3.5f}));
}

TEST(RefReduce, MiddleAndOuterAxesOf3D) {
  Tensor in = Iota<float>({2, 3, 2});  // in[i,j,k] = 6i + 2j + k
  EXPECT_EQ(RunReduce(ReduceOp::kSum, in, {1}, false, {2, 2}), (std::vector<float>{6, 9, 24, 27}));
  EXPECT_EQ(RunReduce(ReduceOp::kMax, in, {0, 2}, true, {1, 3, 1}), (std::vector<float>{7, 9, 11}));
  EXPECT_EQ(RunReduce(ReduceOp::kMin, in, {0, 2}, false, {3}), (std::vector<float>{0, 2, 4}));
}

TEST(RefReduce, OtherOps) {
  Tensor in = Make<float>({2, 2}, {1, -2, 3, -4});
  EXPECT_EQ(RunReduce(ReduceOp::kProd, in, {1}, false, {2}), (std::vector<float>{-2, -12}));
  EXPECT_EQ(RunReduce(ReduceOp::kSumSquare, in, {1}, false, {2}), (std::vector<float>{5, 25}));
  EXPECT_EQ(RunReduce(ReduceOp::kL1, in, {0}, false, {2}), (std::vector<float>{4, 6}));
  EXPECT_EQ(RunReduce(ReduceOp::kL2, in, {1}, false, {2}), (std::vector<float>{std::sqrt(5.0f), 5}));
  EXPECT_EQ(RunReduce(ReduceOp::kMax, in, {}, false, {}), (std::vector<float>{3}));
  EXPECT_EQ(RunReduce(ReduceOp::kMin, in, {}, false, {}), (std::vector<float>{-4}));
}

TEST(RefReduce, LogSumExpIsStable) {
  Tensor in = Make<float>({2, 2}, {0, std::log(3.0f), 1000, 1000});
  std::vector<float> out = RunReduce(ReduceOp::kLogSumExp, in, {1}, false, {2});
  EXPECT_NEAR(out[0], std::log(4.0f), 1e-6);
  EXPECT_NEAR(out[1], 1000 + std::log(2.0f), 1e-3);
  Tensor neg = Make<float>({2}, {-kInf, -kInf});
  EXPECT_EQ(RunReduce(ReduceOp::kLogSumExp, neg, {}, false, {}), (std::vector<float>{-kInf}));
}

TEST(RefReduce, LongContiguousRuns) {
  // Rows long enough for the multi-accumulator path, with a tail.
  Tensor in = Iota<float>({2, 37});  // row 0: 0..36, row 1: 37..73
  EXPECT_EQ(RunReduce(ReduceOp::kSum, in, {1}, false, {2}), (std::vector<float>{666, 2035}));
  EXPECT_EQ(RunReduce(ReduceOp::kMean, in, {1}, false, {2}), (std::vector<float>{18, 55}));
  EXPECT_EQ(RunReduce(ReduceOp::kMax, in, {1}, false, {2}), (std::vector<float>{36, 73}));
  EXPECT_EQ(RunReduce(ReduceOp::kMin, in, {1}, false, {2}), (std::vector<float>{0, 37}));
  EXPECT_EQ(RunReduce(ReduceOp::kSumSquare, in, {1}, false, {2})[0], 16206);  // sum k^2, k < 37
  EXPECT_NEAR(RunReduce(ReduceOp::kL2, in, {1}, false, {2})[0], std::sqrt(16206.0f), 1e-3);
  Tensor signs(DataType::kF32, {20});
  for (int i = 0; i < 20; ++i) signs.data<float>()[i] = (i % 3 == 0) ? -2.0f : 1.0f;
  EXPECT_EQ(RunReduce(ReduceOp::kProd, signs, {}, false, {}), (std::vector<float>{-128}));  // 7 factors of -2
  EXPECT_EQ(RunReduce(ReduceOp::kL1, signs, {}, false, {}), (std::vector<float>{27}));
  Tensor lse(DataType::kF32, {20});  // twenty zeros: log(20)
  EXPECT_NEAR(RunReduce(ReduceOp::kLogSumExp, lse, {}, false, {})[0], std::log(20.0f), 1e-5);
  Tensor nan_inside = Iota<float>({20});
  nan_inside.data<float>()[3] = kNaN;
  EXPECT_TRUE(std::isnan(RunReduce(ReduceOp::kMax, nan_inside, {}, false, {})[0]));
  EXPECT_TRUE(std::isnan(RunReduce(ReduceOp::kMin, nan_inside, {}, false, {})[0]));
}

TEST(RefReduce, EmptyAxisGivesIdentities) {
  Tensor in(DataType::kF32, {2, 0});
  EXPECT_EQ(RunReduce(ReduceOp::kSum, in, {1}, false, {2}), (std::vector<float>{0, 0}));
  EXPECT_EQ(RunReduce(ReduceOp::kProd, in, {1}, false, {2}), (std::vector<float>{1, 1}));
  EXPECT_EQ(RunReduce(ReduceOp::kMax, in, {1}, false, {2}), (std::vector<float>{-kInf, -kInf}));
  EXPECT_EQ(RunReduce(ReduceOp::kMin, in, {1}, false, {2}), (std::vector<float>{kInf, kInf}));
  EXPECT_TRUE(std::isnan(RunReduce(ReduceOp::kMean, in, {1}, false, {2})[0]));
  EXPECT_EQ(RunReduce(ReduceOp::kSum, in, {0}, true, {1, 0}), (std::vector<float>{}));
}

TEST(RefReduce, MaxPropagatesNaN) {
  Tensor in = Make<float>({3}, {1, kNaN, 2});
  EXPECT_TRUE(std::isnan(RunReduce(ReduceOp::kMax, in, {}, false, {})[0]));
  EXPECT_TRUE(std::isnan(RunReduce(ReduceOp::kMin, in, {}, false, {})[0]));
}

TEST(RefReduce, Errors) {
  Tensor in = Iota<float>({2, 3});
  Tensor out(DataType::kF32, {2});
  ExpectInvalid(Reduce(ReduceOp::kSum, ViewOf(in), {1}, true, ViewOf(out)),
                "ReduceSum: output shape is [2], expected [2,1]");
  ExpectInvalid(Reduce(ReduceOp::kMean, ViewOf(in), {1, 1}, false, ViewOf(out)), "ReduceMean: axis 1 is repeated");
  ExpectInvalid(Reduce(ReduceOp::kMax, ViewOf(in), {-3}, false, ViewOf(out)), "ReduceMax: axis -3 is out of range");
  Tensor ints = Iota<int32_t>({2, 3});
  ExpectInvalid(Reduce(ReduceOp::kSum, ViewOf(ints), {1}, false, ViewOf(out)), "input dtype is s32, expected f32");
}

// ---------------------------------------------------------------------------
// Range

TEST(RefRange, Length) {
  EXPECT_EQ(*RangeLength(0, 5, 1), 5);
  EXPECT_EQ(*RangeLength(1, 0, -0.3), 4);
  EXPECT_EQ(*RangeLength(5, 0, 1), 0);
  EXPECT_EQ(*RangeLength(0, 10, 3), 4);
  ExpectInvalid(RangeLength(0, 5, 0).status(), "delta is 0");
  ExpectInvalid(RangeLength(0, std::nan(""), 1).status(), "finite");
  ExpectInvalid(RangeLength(0, 1e300, 1e-300).status(), "too large");
}

TEST(RefRange, FloatAndIntegerValues) {
  Tensor f(DataType::kF32, {4});
  ASSERT_TRUE(Range(0.5, 0.25, ViewOf(f)).ok());
  EXPECT_EQ(ToVector<float>(f), (std::vector<float>{0.5f, 0.75f, 1.0f, 1.25f}));
  Tensor i(DataType::kS64, {*RangeLength(10, 0, -3)});
  ASSERT_TRUE(Range(10, -3, ViewOf(i)).ok());
  EXPECT_EQ(ToVector<int64_t>(i), (std::vector<int64_t>{10, 7, 4, 1}));
  Tensor s(DataType::kS32, {3});
  ASSERT_TRUE(Range(-1, 1, ViewOf(s)).ok());
  EXPECT_EQ(ToVector<int32_t>(s), (std::vector<int32_t>{-1, 0, 1}));
  Tensor empty(DataType::kS32, {0});
  EXPECT_TRUE(Range(0, 1, ViewOf(empty)).ok());
}

TEST(RefRange, Errors) {
  Tensor s(DataType::kS32, {3});
  ExpectInvalid(Range(0.5, 1, ViewOf(s)), "start and delta must be integers for dtype s32");
  ExpectInvalid(Range(2147483646.0, 1, ViewOf(s)), "do not fit dtype s32");
  Tensor u(DataType::kU8, {2});
  ExpectInvalid(Range(0, -1, ViewOf(u)), "do not fit dtype u8");
  Tensor two_d(DataType::kF32, {2, 2});
  ExpectInvalid(Range(0, 1, ViewOf(two_d)), "is not of rank 1");
}

}  // namespace
}  // namespace ppml::engine::ref
