#include "engine/onnx_tensor.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace ppml::engine {
namespace {

onnx::TensorProto MakeProto(int type, std::initializer_list<int64_t> dims) {
  onnx::TensorProto proto;
  proto.set_name("t");
  proto.set_data_type(type);
  for (int64_t d : dims) proto.add_dims(d);
  return proto;
}

TEST(OnnxTensorTest, FloatData) {
  onnx::TensorProto proto = MakeProto(onnx::TensorProto::FLOAT, {2, 2});
  for (float v : {1.f, 2.f, 3.f, 4.5f}) proto.add_float_data(v);
  Result<Tensor> tensor = TensorFromProto(proto, "ctx");
  ASSERT_TRUE(tensor.ok()) << tensor.status().ToString();
  EXPECT_EQ(tensor->dtype(), DataType::kF32);
  EXPECT_EQ(tensor->shape(), (Shape{2, 2}));
  EXPECT_FLOAT_EQ(tensor->data<float>()[3], 4.5f);
}

TEST(OnnxTensorTest, RawData) {
  onnx::TensorProto proto = MakeProto(onnx::TensorProto::INT64, {3});
  const int64_t values[] = {-1, 0, int64_t{1} << 40};
  proto.set_raw_data(values, sizeof(values));
  Result<Tensor> tensor = TensorFromProto(proto, "ctx");
  ASSERT_TRUE(tensor.ok()) << tensor.status().ToString();
  EXPECT_EQ(tensor->dtype(), DataType::kS64);
  EXPECT_EQ(tensor->data<int64_t>()[2], int64_t{1} << 40);
}

TEST(OnnxTensorTest, SmallIntegersAndBoolFromInt32Data) {
  onnx::TensorProto s8 = MakeProto(onnx::TensorProto::INT8, {3});
  for (int v : {-128, 0, 127}) s8.add_int32_data(v);
  Result<Tensor> a = TensorFromProto(s8, "ctx");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->dtype(), DataType::kS8);
  EXPECT_EQ(a->data<int8_t>()[0], -128);

  onnx::TensorProto u8 = MakeProto(onnx::TensorProto::UINT8, {2});
  for (int v : {0, 255}) u8.add_int32_data(v);
  Result<Tensor> b = TensorFromProto(u8, "ctx");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->data<uint8_t>()[1], 255);

  onnx::TensorProto boolean = MakeProto(onnx::TensorProto::BOOL, {2});
  boolean.add_int32_data(1);
  boolean.add_int32_data(0);
  Result<Tensor> c = TensorFromProto(boolean, "ctx");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->dtype(), DataType::kU8);
  EXPECT_EQ(c->data<uint8_t>()[0], 1);

  onnx::TensorProto s32 = MakeProto(onnx::TensorProto::INT32, {1});
  s32.add_int32_data(-70000);
  Result<Tensor> d = TensorFromProto(s32, "ctx");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->data<int32_t>()[0], -70000);
}

TEST(OnnxTensorTest, OutOfRangeNarrowValueIsDataLoss) {
  onnx::TensorProto proto = MakeProto(onnx::TensorProto::INT8, {1});
  proto.add_int32_data(300);
  Result<Tensor> tensor = TensorFromProto(proto, "m.onnx: initializer 'q'");
  EXPECT_EQ(tensor.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(tensor.status().message(), "m.onnx: initializer 'q': int32_data[0] = 300 does not fit INT8");
}

TEST(OnnxTensorTest, RawBoolIsNormalized) {
  onnx::TensorProto proto = MakeProto(onnx::TensorProto::BOOL, {2});
  proto.set_raw_data(std::string("\x00\x07", 2));
  Result<Tensor> tensor = TensorFromProto(proto, "ctx");
  ASSERT_TRUE(tensor.ok());
  EXPECT_EQ(tensor->data<uint8_t>()[1], 1);
}

TEST(OnnxTensorTest, ScalarAndEmpty) {
  onnx::TensorProto scalar = MakeProto(onnx::TensorProto::FLOAT, {});
  scalar.add_float_data(2.5f);
  Result<Tensor> a = TensorFromProto(scalar, "ctx");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->rank(), 0);
  EXPECT_FLOAT_EQ(a->data<float>()[0], 2.5f);

  Result<Tensor> empty = TensorFromProto(MakeProto(onnx::TensorProto::FLOAT, {0, 3}), "ctx");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->element_count(), 0);
  EXPECT_EQ(empty->shape(), (Shape{0, 3}));
}

TEST(OnnxTensorTest, UnsupportedTypesNameTensorAndType) {
  for (int type : {onnx::TensorProto::DOUBLE, onnx::TensorProto::FLOAT16, onnx::TensorProto::STRING,
                   onnx::TensorProto::UINT16, onnx::TensorProto::BFLOAT16, onnx::TensorProto::UNDEFINED}) {
    Result<Tensor> tensor = TensorFromProto(MakeProto(type, {1}), "m.onnx: initializer 'w'");
    ASSERT_FALSE(tensor.ok());
    EXPECT_EQ(tensor.status().code(), StatusCode::kUnsupported);
    EXPECT_EQ(tensor.status().message().rfind("m.onnx: initializer 'w': element type " + OnnxTypeName(type), 0), 0u)
        << tensor.status().message();
  }
  EXPECT_EQ(OnnxTypeName(onnx::TensorProto::FLOAT16), "FLOAT16");
  EXPECT_EQ(OnnxTypeName(999), "type 999");
}

TEST(OnnxTensorTest, ExternalDataIsUnsupported) {
  onnx::TensorProto proto = MakeProto(onnx::TensorProto::FLOAT, {4});
  proto.set_data_location(onnx::TensorProto::EXTERNAL);
  auto* entry = proto.add_external_data();
  entry->set_key("location");
  entry->set_value("weights.bin");
  Result<Tensor> tensor = TensorFromProto(proto, "m.onnx: initializer 'w'");
  EXPECT_EQ(tensor.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(tensor.status().message().find("external data"), std::string::npos);
}

TEST(OnnxTensorTest, SizeMismatchesAreDataLoss) {
  onnx::TensorProto raw = MakeProto(onnx::TensorProto::FLOAT, {2, 3});
  raw.set_raw_data(std::string(20, '\0'));
  Result<Tensor> a = TensorFromProto(raw, "ctx");
  EXPECT_EQ(a.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(a.status().message(), "ctx: raw_data has 20 bytes, dims [2,3] of FLOAT need 24");

  onnx::TensorProto typed = MakeProto(onnx::TensorProto::INT64, {4});
  typed.add_int64_data(1);
  Result<Tensor> b = TensorFromProto(typed, "ctx");
  EXPECT_EQ(b.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(b.status().message(), "ctx: int64_data holds 1 values, dims [4] need 4");

  Result<Tensor> missing = TensorFromProto(MakeProto(onnx::TensorProto::FLOAT, {5}), "ctx");
  EXPECT_EQ(missing.status().code(), StatusCode::kDataLoss);

  Result<Tensor> negative = TensorFromProto(MakeProto(onnx::TensorProto::FLOAT, {-1}), "ctx");
  EXPECT_EQ(negative.status().code(), StatusCode::kDataLoss);

  onnx::TensorProto huge = MakeProto(onnx::TensorProto::FLOAT, {int64_t{1} << 40, int64_t{1} << 40});
  EXPECT_EQ(TensorFromProto(huge, "ctx").status().code(), StatusCode::kDataLoss);
}

TEST(OnnxTensorTest, RoundTripThroughProto) {
  Tensor original = Tensor::FromVector<int32_t>({2, 2}, {1, -2, 3, -4});
  onnx::TensorProto proto = TensorToProto(original, "w");
  EXPECT_EQ(proto.name(), "w");
  EXPECT_EQ(proto.data_type(), onnx::TensorProto::INT32);
  EXPECT_EQ(proto.dims_size(), 2);
  Result<Tensor> back = TensorFromProto(proto, "ctx");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->shape(), original.shape());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(back->data<int32_t>()[i], original.data<int32_t>()[i]);

  Tensor floats = Tensor::FromVector<float>({3}, {0.5f, -1.f, 1e20f});
  Result<Tensor> float_back = TensorFromProto(TensorToProto(floats, "f"), "ctx");
  ASSERT_TRUE(float_back.ok());
  EXPECT_FLOAT_EQ(float_back->data<float>()[2], 1e20f);
}

TEST(OnnxTensorTest, TypeMapping) {
  EXPECT_EQ(OnnxTypeFromDataType(DataType::kF32), onnx::TensorProto::FLOAT);
  EXPECT_EQ(OnnxTypeFromDataType(DataType::kS8), onnx::TensorProto::INT8);
  EXPECT_EQ(*DataTypeFromOnnx(onnx::TensorProto::BOOL, "x"), DataType::kU8);
  EXPECT_EQ(*DataTypeFromOnnx(onnx::TensorProto::INT32, "x"), DataType::kS32);
}

// A file from ONNX's backend test data, as Debian's libonnx-testdata installs it.
TEST(OnnxTensorTest, ReadsBackendTestData) {
  std::string name;
  Result<Tensor> tensor =
      ReadTensorProtoFile("/usr/share/libonnx-testdata/data/node/test_relu/test_data_set_0/input_0.pb", &name);
  ASSERT_TRUE(tensor.ok()) << tensor.status().ToString();
  EXPECT_EQ(name, "x");
  EXPECT_EQ(tensor->dtype(), DataType::kF32);
  EXPECT_EQ(tensor->shape(), (Shape{3, 4, 5}));
}

TEST(OnnxTensorTest, FileErrors) {
  Result<Tensor> missing = ReadTensorProtoFile("/nonexistent/input_0.pb");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "/nonexistent/input_0.pb: no such file");

  const std::string path = (std::filesystem::path(testing::TempDir()) / "ppml_garbage.pb").string();
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
  }
  Result<Tensor> garbage = ReadTensorProtoFile(path);
  EXPECT_EQ(garbage.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(garbage.status().message(), path + ": not a serialized ONNX TensorProto (protobuf parsing failed)");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace ppml::engine
