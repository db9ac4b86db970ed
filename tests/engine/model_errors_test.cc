// Load and Run errors: each is a Status with the right code and a message
// that names the thing at fault (the file, node, op, attribute or input),
// never a crash. A model stays usable after a rejected Run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tests/engine/onnx_builder.h"

namespace ppml::test {
namespace {

using engine::Model;

std::span<const std::byte> AsBytes(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// A small valid model: Conv (with initializers) -> Relu -> GlobalAveragePool.
OnnxBuilder SmallModel(const std::vector<int64_t>& input_shape = {1, 3, 4, 4}) {
  OnnxBuilder b(13, "small");
  b.Input("x", input_shape);
  b.Initializer("w", {4, 3, 3, 3}, RandomFloats(108, 1));
  b.Initializer("b", {4}, RandomFloats(4, 2));
  b.Node("Conv", {"x", "w", "b"}, {"c"}, "conv1").Ints("pads", {1, 1, 1, 1});
  b.Node("Relu", {"c"}, {"r"}, "relu1");
  b.Node("GlobalAveragePool", {"r"}, {"y"}, "gap");
  b.Output("y");
  return b;
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("ppml_model_errors_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

#define EXPECT_STATUS(result, status_code, ...)                                        \
  do {                                                                                 \
    const auto& r_ = (result);                                                         \
    ASSERT_FALSE(r_.ok()) << "expected an error";                                      \
    EXPECT_EQ(r_.status().code(), status_code) << r_.status().ToString();              \
    for (const char* part : {__VA_ARGS__}) {                                           \
      EXPECT_NE(r_.status().message().find(part), std::string::npos)                   \
          << "message does not mention '" << part << "': " << r_.status().message();   \
    }                                                                                  \
  } while (0)

TEST(ModelErrorsTest, SmallModelLoads) {
  // The baseline the other cases break.
  auto model = SmallModel().Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::vector<Tensor> in;
  in.push_back(MakeTensor({1, 3, 4, 4}, RandomFloats(48, 3)));
  auto out = (*model)->Run(in);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ((*out)[0].shape(), (Shape{1, 4, 1, 1}));
}

TEST(ModelErrorsTest, EmptyBytes) {
  auto r = Model::LoadBytes({}, "empty.onnx");
  EXPECT_STATUS(r, StatusCode::kDataLoss, "empty.onnx", "empty");
}

TEST(ModelErrorsTest, GarbageBytes) {
  auto r = Model::LoadBytes(AsBytes("this is certainly not an ONNX model"), "garbage.onnx");
  EXPECT_STATUS(r, StatusCode::kDataLoss, "garbage.onnx");
  const std::string binary = {'\xff', '\xff', '\xff', '\xff', '\x0f', '\x00', '\x01'};
  auto r2 = Model::LoadBytes(AsBytes(binary), "binary.onnx");
  EXPECT_STATUS(r2, StatusCode::kDataLoss, "binary.onnx");
}

TEST(ModelErrorsTest, ValidProtobufThatIsNotAModel) {
  // A serialized TensorProto parses as a ModelProto with unknown fields and no graph.
  onnx::TensorProto t;
  t.set_name("weights");
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.add_dims(2);
  t.add_float_data(1.f);
  t.add_float_data(2.f);
  auto r = Model::LoadBytes(AsBytes(t.SerializeAsString()), "tensor.pb");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tensor.pb"), std::string::npos) << r.status().ToString();
}

TEST(ModelErrorsTest, EveryTruncationIsDataLoss) {
  const std::string bytes = SmallModel().Serialize();
  ASSERT_GT(bytes.size(), 100u);
  for (size_t len = 1; len < bytes.size(); ++len) {
    auto r = Model::LoadBytes(AsBytes(bytes.substr(0, len)), "cut.onnx");
    ASSERT_FALSE(r.ok()) << "a model cut to " << len << " of " << bytes.size() << " bytes loaded";
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << "at " << len << ": " << r.status().ToString();
    EXPECT_NE(r.status().message().find("cut.onnx"), std::string::npos) << r.status().ToString();
  }
}

TEST(ModelErrorsTest, TruncatedFile) {
  const std::string bytes = SmallModel().Serialize();
  const std::string path = TempPath("truncated.onnx");
  {
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  auto r = Model::LoadFile(path);
  std::filesystem::remove(path);
  EXPECT_STATUS(r, StatusCode::kDataLoss, path.c_str());
}

TEST(ModelErrorsTest, FileRoundTrip) {
  const std::string bytes = SmallModel().Serialize();
  const std::string path = TempPath("ok.onnx");
  {
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  auto r = Model::LoadFile(path);
  std::filesystem::remove(path);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST(ModelErrorsTest, MissingFile) {
  const std::string path = "/nonexistent/dir/model-that-is-not-there.onnx";
  auto r = Model::LoadFile(path);
  EXPECT_STATUS(r, StatusCode::kNotFound, path.c_str());
}

TEST(ModelErrorsTest, UnsupportedOpNamesNodeAndOp) {
  for (const char* op : {"FooBar", "NonMaxSuppression"}) {
    SCOPED_TRACE(op);
    OnnxBuilder b(13);
    b.Input("x", {1, 3, 4, 4});
    b.Node("Relu", {"x"}, {"r"}, "relu1");
    b.Node(op, {"r"}, {"y"}, "the_odd_one");
    b.Output("y");
    auto r = b.Load({}, "odd.onnx");
    EXPECT_STATUS(r, StatusCode::kUnsupported, "the_odd_one", op, "odd.onnx");
  }
}

TEST(ModelErrorsTest, UnsupportedOpInUnnamedNode) {
  OnnxBuilder b(13);
  b.Input("x", {2, 2});
  b.Node("FooBar", {"x"}, {"y"});
  b.Output("y");
  auto r = b.Load();
  EXPECT_STATUS(r, StatusCode::kUnsupported, "FooBar");
}

TEST(ModelErrorsTest, CustomDomain) {
  OnnxBuilder b(13);
  b.Input("x", {2, 2});
  b.Node("Relu", {"x"}, {"y"}, "custom_relu").proto()->set_domain("com.example");
  b.Output("y");
  auto r = b.Load();
  EXPECT_STATUS(r, StatusCode::kUnsupported, "custom_relu", "com.example");
}

TEST(ModelErrorsTest, UnsupportedOpset) {
  OnnxBuilder b(99);
  b.Input("x", {2, 2});
  b.Node("Relu", {"x"}, {"y"}, "relu");
  b.Output("y");
  auto r = b.Load();
  EXPECT_STATUS(r, StatusCode::kUnsupported, "opset", "99");
}

TEST(ModelErrorsTest, PadModeWrap) {
  OnnxBuilder b(13);
  b.Input("x", {1, 2, 3, 3});
  b.InitializerInt64("pads", {8}, {0, 0, 1, 1, 0, 0, 1, 1});
  b.Node("Pad", {"x", "pads"}, {"y"}, "wrap_pad").String("mode", "wrap");
  b.Output("y");
  auto r = b.Load();
  EXPECT_STATUS(r, StatusCode::kUnsupported, "wrap_pad", "wrap");
}

TEST(ModelErrorsTest, MaxPoolStorageOrder) {
  OnnxBuilder b(13);
  b.Input("x", {1, 2, 4, 4});
  b.Node("MaxPool", {"x"}, {"y"}, "pool_col_major").Ints("kernel_shape", {2, 2}).Int("storage_order", 1);
  b.Output("y");
  auto r = b.Load();
  EXPECT_STATUS(r, StatusCode::kUnsupported, "pool_col_major", "storage_order");
}

TEST(ModelErrorsTest, MaxPoolIndicesOutput) {
  OnnxBuilder b(13);
  b.Input("x", {1, 2, 4, 4});
  b.Node("MaxPool", {"x"}, {"y", "idx"}, "pool_with_indices").Ints("kernel_shape", {2, 2});
  b.Output("y");
  b.Output("idx", OnnxBuilder::kInt64);
  auto r = b.Load();
  EXPECT_STATUS(r, StatusCode::kUnsupported, "pool_with_indices", "Indices");
}

TEST(ModelErrorsTest, ConvAutoPadUnknown) {
  OnnxBuilder b(13);
  b.Input("x", {1, 3, 4, 4});
  b.Initializer("w", {2, 3, 3, 3}, RandomFloats(54, 5));
  b.Node("Conv", {"x", "w"}, {"y"}, "conv_bad_pad").String("auto_pad", "SAME_SIDEWAYS");
  b.Output("y");
  auto r = b.Load();
  EXPECT_STATUS(r, StatusCode::kUnsupported, "conv_bad_pad", "SAME_SIDEWAYS");
}

TEST(ModelErrorsTest, ReshapeWithRunTimeShape) {
  OnnxBuilder b(13);
  b.Input("x", {2, 6});
  b.Input("shape", {2}, OnnxBuilder::kInt64);
  b.Node("Reshape", {"x", "shape"}, {"y"}, "dynamic_reshape");
  b.Output("y");
  auto r = b.Load();
  EXPECT_STATUS(r, StatusCode::kUnsupported, "dynamic_reshape", "shape");
}

TEST(ModelErrorsTest, UndefinedNodeInput) {
  OnnxBuilder b(13);
  b.Input("x", {2, 2});
  b.Node("Add", {"x", "nowhere"}, {"y"}, "add");
  b.Output("y");
  auto r = b.Load();
  EXPECT_STATUS(r, StatusCode::kInvalidArgument, "add", "nowhere");
}

TEST(ModelErrorsTest, WrongConvChannels) {
  OnnxBuilder b(13);
  b.Input("x", {1, 5, 4, 4});
  b.Initializer("w", {2, 3, 3, 3}, RandomFloats(54, 6));
  b.Node("Conv", {"x", "w"}, {"y"}, "conv_mismatch");
  b.Output("y");
  auto r = b.Load();
  EXPECT_STATUS(r, StatusCode::kInvalidArgument, "conv_mismatch");
}

TEST(ModelErrorsTest, WrongInputShapeAtRun) {
  auto model = SmallModel().Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  {
    std::vector<Tensor> in;
    in.push_back(MakeTensor({1, 3, 5, 4}, RandomFloats(60, 7)));
    auto r = (*model)->Run(in);
    EXPECT_STATUS(r, StatusCode::kInvalidArgument, "'x'", "[1,3,5,4]", "[1,3,4,4]");
  }
  {
    std::vector<Tensor> in;
    in.push_back(MakeTensor({3, 4, 4}, RandomFloats(48, 8)));
    auto r = (*model)->Run(in);
    EXPECT_STATUS(r, StatusCode::kInvalidArgument, "'x'", "[3,4,4]", "[1,3,4,4]");
  }
  // Still usable.
  std::vector<Tensor> in;
  in.push_back(MakeTensor({1, 3, 4, 4}, RandomFloats(48, 9)));
  auto out = (*model)->Run(in);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
}

TEST(ModelErrorsTest, WrongInputShapeWithSymbolicBatch) {
  auto model = SmallModel({-1, 3, 4, 4}).Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->inputs()[0].shape, (Shape{-1, 3, 4, 4}));
  std::vector<Tensor> in;
  in.push_back(MakeTensor({2, 4, 4, 4}, RandomFloats(128, 10)));
  auto r = (*model)->Run(in);
  EXPECT_STATUS(r, StatusCode::kInvalidArgument, "'x'", "[2,4,4,4]", "[-1,3,4,4]");
  std::vector<Tensor> ok_in;
  ok_in.push_back(MakeTensor({2, 3, 4, 4}, RandomFloats(96, 11)));
  auto out = (*model)->Run(ok_in);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ((*out)[0].shape(), (Shape{2, 4, 1, 1}));
}

TEST(ModelErrorsTest, WrongInputDtype) {
  auto model = SmallModel().Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::vector<Tensor> in;
  in.push_back(Tensor(DataType::kS64, {1, 3, 4, 4}));
  auto r = (*model)->Run(in);
  EXPECT_STATUS(r, StatusCode::kInvalidArgument, "'x'", "f32", "s64");
}

TEST(ModelErrorsTest, WrongInputCount) {
  auto model = SmallModel().Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  {
    std::vector<Tensor> none;
    auto r = (*model)->Run(none);
    EXPECT_STATUS(r, StatusCode::kInvalidArgument, "1", "0");
  }
  {
    std::vector<Tensor> two;
    two.push_back(MakeTensor({1, 3, 4, 4}, RandomFloats(48, 12)));
    two.push_back(MakeTensor({1, 3, 4, 4}, RandomFloats(48, 13)));
    auto r = (*model)->Run(two);
    EXPECT_STATUS(r, StatusCode::kInvalidArgument, "1", "2");
  }
}

}  // namespace
}  // namespace ppml::test
