// engine::WithUint8Input: a model rewritten to take pixels gives what the
// original gives on the normalized floats, and every bad request is a clear error.
#include "engine/uint8_input.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "tests/engine/onnx_builder.h"

namespace ppml {
namespace {

using test::OnnxBuilder;

// A 3x3 convolution over 3 channels, then Relu: reads its input once.
OnnxBuilder ConvModel() {
  OnnxBuilder b(13);
  b.Input("x", {-1, 3, 5, 5});
  b.Initializer("w", {4, 3, 3, 3}, test::RandomFloats(108, 7));
  b.Initializer("bias", {4}, test::RandomFloats(4, 8));
  b.Node("Conv", {"x", "w", "bias"}, {"c"}).Ints("pads", {1, 1, 1, 1});
  b.Node("Relu", {"c"}, {"y"});
  b.Output("y");
  return b;
}

Result<std::unique_ptr<engine::Model>> LoadBytes(const std::string& bytes) {
  return engine::Model::LoadBytes(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), "u8.onnx");
}

Tensor Pixels(const Shape& shape, uint64_t seed) {
  Tensor t(DataType::kU8, shape);
  test::Rng rng(seed);
  for (uint8_t& v : t.values<uint8_t>()) v = static_cast<uint8_t>(rng.Next() >> 56);
  return t;
}

// (v / scale - mean[c]) / std[c] with c = dimension 1 (one value: all channels).
Tensor Normalized(const Tensor& pixels, const engine::Uint8InputOptions& o) {
  Tensor x(DataType::kF32, pixels.shape());
  const int64_t channels = pixels.rank() > 1 ? pixels.dim(1) : 1;
  const int64_t inner = pixels.element_count() / pixels.dim(0) / channels;
  for (int64_t i = 0; i < pixels.element_count(); ++i) {
    const size_t c = static_cast<size_t>(i / inner % channels);
    const float mean = o.mean[o.mean.size() == 1 ? 0 : c], std = o.std[o.std.size() == 1 ? 0 : c];
    x.data<float>()[i] = (pixels.data<uint8_t>()[i] / o.pixel_scale - mean) / std;
  }
  return x;
}

void ExpectRunsLikeTheFloatModel(const OnnxBuilder& original, const engine::Uint8InputOptions& options,
                                 const Shape& input_shape) {
  auto rewritten = engine::WithUint8Input(original.Serialize(), options);
  ASSERT_TRUE(rewritten.ok()) << rewritten.status().ToString();
  auto u8_model = LoadBytes(*rewritten);
  ASSERT_TRUE(u8_model.ok()) << u8_model.status().ToString();
  auto float_model = original.Load();
  ASSERT_TRUE(float_model.ok()) << float_model.status().ToString();

  // Same name and shape as before; the type is now u8.
  ASSERT_EQ((*u8_model)->inputs().size(), 1u);
  EXPECT_EQ((*u8_model)->inputs()[0].name, (*float_model)->inputs()[0].name);
  EXPECT_EQ((*u8_model)->inputs()[0].shape, (*float_model)->inputs()[0].shape);
  EXPECT_EQ((*u8_model)->inputs()[0].dtype, DataType::kU8);

  std::vector<Tensor> pixels, floats;
  pixels.push_back(Pixels(input_shape, 3));
  floats.push_back(Normalized(pixels[0], options));
  auto got = (*u8_model)->Run(pixels);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  auto want = (*float_model)->Run(floats);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  EXPECT_TRUE(test::AllClose((*got)[0], (*want)[0].shape(), test::ToVector((*want)[0]), 1e-5f, 1e-5f));
}

TEST(Uint8Input, PerChannelMeanAndStdGiveTheFloatModelsOutputs) {
  engine::Uint8InputOptions options;
  options.mean = {0.485f, 0.456f, 0.406f};
  options.std = {0.229f, 0.224f, 0.225f};
  ExpectRunsLikeTheFloatModel(ConvModel(), options, {2, 3, 5, 5});
}

TEST(Uint8Input, OneValueServesEveryChannelAndAnyRank) {
  OnnxBuilder b(13);
  b.Input("image", {-1, 6});
  b.Initializer("w", {6, 2}, test::RandomFloats(12, 4));
  b.Node("MatMul", {"image", "w"}, {"y"});
  b.Output("y");
  engine::Uint8InputOptions options;
  options.mean = {0.5f};
  options.std = {0.25f};
  options.pixel_scale = 100.0f;
  ExpectRunsLikeTheFloatModel(b, options, {3, 6});
  // The defaults, v / 255, for a model trained on [0, 1] pixels.
  ExpectRunsLikeTheFloatModel(b, {}, {3, 6});
}

TEST(Uint8Input, NewNamesAvoidTheModelsOwn) {
  // The model already uses the names the rewrite would pick first.
  OnnxBuilder b(13);
  b.Input("x", {-1, 3, 5, 5});
  b.Node("Relu", {"x"}, {"x_normalized"}, "x_Cast");
  b.Node("Neg", {"x_normalized"}, {"x_float"}, "x_Mul");
  b.Node("Add", {"x_float", "x"}, {"y"});
  b.Output("y");
  engine::Uint8InputOptions options;
  options.mean = {0.1f, 0.2f, 0.3f};
  ExpectRunsLikeTheFloatModel(b, options, {1, 3, 5, 5});
}

TEST(Uint8Input, AnOldIrVersionListsTheNewConstantsAmongTheInputs) {
  OnnxBuilder b = ConvModel();
  b.proto().set_ir_version(3);  // initializers are graph inputs too
  b.Input("w", {4, 3, 3, 3}).Input("bias", {4});
  engine::Uint8InputOptions options;
  options.mean = {0.2f, 0.3f, 0.4f};
  ExpectRunsLikeTheFloatModel(b, options, {2, 3, 5, 5});
  auto rewritten = engine::WithUint8Input(b.Serialize(), options);
  ASSERT_TRUE(rewritten.ok());
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(*rewritten));
  std::set<std::string> inputs;
  for (const auto& in : model.graph().input()) inputs.insert(in.name());
  EXPECT_EQ(inputs, (std::set<std::string>{"x", "w", "bias", "x_pixel_scale", "x_pixel_shift"}));
}

TEST(Uint8Input, RewritingTwiceIsAnErrorNamingTheInputsType) {
  auto once = engine::WithUint8Input(ConvModel().Serialize(), {});
  ASSERT_TRUE(once.ok()) << once.status().ToString();
  auto twice = engine::WithUint8Input(*once, {});
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(twice.status().message().find("input 'x' is UINT8"), std::string::npos) << twice.status().message();
}

TEST(Uint8Input, BadModelsAndOptionsAreClearErrors) {
  auto error = [](const std::string& model, engine::Uint8InputOptions options) {
    auto r = engine::WithUint8Input(model, options);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message();
  };
  const std::string conv = ConvModel().Serialize();
  EXPECT_NE(error("not a model", {}).find("not a valid ONNX model"), std::string::npos);

  engine::Uint8InputOptions two_channels;
  two_channels.mean = {0.5f, 0.5f};
  const std::string channels = error(conv, two_channels);
  EXPECT_NE(channels.find("2 channels, but input 'x' has 3 in dimension 1"), std::string::npos) << channels;

  engine::Uint8InputOptions zero_std;
  zero_std.std = {1.0f, 0.0f, 1.0f};
  EXPECT_NE(error(conv, zero_std).find("std 1,0,1: every value must be positive"), std::string::npos);
  engine::Uint8InputOptions negative_scale;
  negative_scale.pixel_scale = -1.0f;
  EXPECT_NE(error(conv, negative_scale).find("pixel scale -1"), std::string::npos);

  OnnxBuilder symbolic(13);
  symbolic.Input("x", {-1, -1, 4});
  symbolic.Node("Relu", {"x"}, {"y"});
  symbolic.Output("y");
  engine::Uint8InputOptions three;
  three.mean = {0.1f, 0.2f, 0.3f};
  EXPECT_NE(error(symbolic.Serialize(), three).find("no fixed dimension 1"), std::string::npos);

  OnnxBuilder two_inputs(13);
  two_inputs.Input("a", {-1, 4}).Input("b", {-1, 4});
  two_inputs.Node("Add", {"a", "b"}, {"y"});
  two_inputs.Output("y");
  EXPECT_NE(error(two_inputs.Serialize(), {}).find("2 graph inputs"), std::string::npos);

  OnnxBuilder passthrough(13);
  passthrough.Input("x", {-1, 4});
  passthrough.Node("Relu", {"x"}, {"y"});
  passthrough.Output("y").Output("x");
  EXPECT_NE(error(passthrough.Serialize(), {}).find("input 'x' is also a graph output"), std::string::npos);
}

}  // namespace
}  // namespace ppml
