#include "common/tensor.h"

#include <gtest/gtest.h>

#include <cstring>

#include <cstdint>

namespace ppml {
namespace {

TEST(TensorTest, DefaultIsEmptyF32) {
  Tensor tensor;
  EXPECT_EQ(tensor.dtype(), DataType::kF32);
  EXPECT_EQ(tensor.shape(), Shape{0});
  EXPECT_EQ(tensor.element_count(), 0);
  EXPECT_EQ(tensor.byte_size(), 0u);
}

TEST(TensorTest, NewTensorIsZeroFilledAndAligned) {
  Tensor tensor(DataType::kS32, {3, 5});
  EXPECT_EQ(tensor.rank(), 2);
  EXPECT_EQ(tensor.dim(1), 5);
  EXPECT_EQ(tensor.element_count(), 15);
  EXPECT_EQ(tensor.byte_size(), 60u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(tensor.raw_data()) % Tensor::kAlignment, 0u);
  for (int32_t value : tensor.values<int32_t>()) EXPECT_EQ(value, 0);
}

TEST(TensorTest, ScalarHasOneElement) {
  Tensor scalar(DataType::kF32, {});
  EXPECT_EQ(scalar.rank(), 0);
  EXPECT_EQ(scalar.element_count(), 1);
  EXPECT_EQ(ShapeToString(scalar.shape()), "[]");
}

TEST(TensorTest, ElementSizesAndNames) {
  EXPECT_EQ(ElementSize(DataType::kF32), 4u);
  EXPECT_EQ(ElementSize(DataType::kU8), 1u);
  EXPECT_EQ(ElementSize(DataType::kS8), 1u);
  EXPECT_EQ(ElementSize(DataType::kS32), 4u);
  EXPECT_EQ(ElementSize(DataType::kS64), 8u);
  EXPECT_STREQ(DataTypeName(DataType::kF32), "f32");
  EXPECT_STREQ(DataTypeName(DataType::kS64), "s64");
}

TEST(TensorTest, ShapeHelpers) {
  EXPECT_EQ(ElementCount({16, 3, 224, 224}), 16 * 3 * 224 * 224);
  EXPECT_EQ(ElementCount({}), 1);
  EXPECT_EQ(ElementCount({4, 0}), 0);
  EXPECT_EQ(ShapeToString({16, 3, 224, 224}), "[16,3,224,224]");
}

TEST(TensorTest, FromVectorCopiesValues) {
  Tensor tensor = Tensor::FromVector<float>({2, 2}, {1.f, 2.f, 3.f, 4.f});
  EXPECT_EQ(tensor.dtype(), DataType::kF32);
  EXPECT_FLOAT_EQ(tensor.data<float>()[3], 4.f);
}

TEST(TensorTest, CloneIsDeep) {
  Tensor original = Tensor::FromVector<int64_t>({3}, {1, 2, 3});
  Tensor copy = original.Clone();
  copy.data<int64_t>()[0] = 99;
  EXPECT_EQ(original.data<int64_t>()[0], 1);
  EXPECT_EQ(copy.shape(), original.shape());
}

TEST(TensorTest, ReshapedKeepsBytes) {
  Tensor tensor = Tensor::FromVector<uint8_t>({2, 3}, {1, 2, 3, 4, 5, 6});
  Result<Tensor> flat = tensor.Reshaped({6});
  ASSERT_TRUE(flat.ok());
  EXPECT_EQ(flat->shape(), Shape{6});
  EXPECT_EQ(flat->data<uint8_t>()[5], 6);
}

TEST(TensorTest, ReshapedRejectsAnotherElementCount) {
  Tensor tensor(DataType::kF32, {2, 3});
  Result<Tensor> bad = tensor.Reshaped({7});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("[2,3]"), std::string::npos);
}

TEST(TensorTest, MoveLeavesTheDataWithTheNewOwner) {
  Tensor a = Tensor::FromVector<float>({2}, {1.f, 2.f});
  const void* data = a.raw_data();
  Tensor b = std::move(a);
  EXPECT_EQ(b.raw_data(), data);
  EXPECT_FLOAT_EQ(b.data<float>()[1], 2.f);
}

TEST(TensorTest, CopyRowsTakesARangeAndZeroPadsToRows) {
  const Tensor t = Tensor::FromVector<uint8_t>({4, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  const Tensor middle = t.CopyRows(1, 2);
  EXPECT_EQ(middle.dtype(), DataType::kU8);
  EXPECT_EQ(middle.shape(), (Shape{2, 2}));
  EXPECT_EQ(std::vector<uint8_t>(middle.values<uint8_t>().begin(), middle.values<uint8_t>().end()),
            (std::vector<uint8_t>{3, 4, 5, 6}));
  const Tensor padded = t.CopyRows(3, 1, 3);
  EXPECT_EQ(padded.shape(), (Shape{3, 2}));
  EXPECT_EQ(std::vector<uint8_t>(padded.values<uint8_t>().begin(), padded.values<uint8_t>().end()),
            (std::vector<uint8_t>{7, 8, 0, 0, 0, 0}));
}

TEST(TensorTest, FillUniformIsReproducibleAndRefusesWideIntegers) {
  std::mt19937 a(7), b(7);
  Tensor x(DataType::kF32, {64}), y(DataType::kF32, {64});
  ASSERT_TRUE(FillUniform(x, a));
  ASSERT_TRUE(FillUniform(y, b));
  EXPECT_EQ(0, std::memcmp(x.raw_data(), y.raw_data(), x.byte_size()));
  for (float v : x.values<float>()) {
    EXPECT_GE(v, 0.f);
    EXPECT_LE(v, 1.f);
  }
  Tensor ints(DataType::kS32, {4});
  EXPECT_FALSE(FillUniform(ints, a));
  for (int32_t v : ints.values<int32_t>()) EXPECT_EQ(v, 0);
}

}  // namespace
}  // namespace ppml
