// A batch run as one slice per thread (EngineOptions::split_batch_max_weight_bytes)
// gives what the whole batch gives, and a graph that may mix samples runs whole.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tests/engine/onnx_builder.h"

namespace ppml {
namespace {

using test::AllClose;
using test::MakeTensor;
using test::OnnxBuilder;
using test::RandomFloats;
using test::ToVector;

constexpr int kThreads = 2;

engine::EngineOptions Options(bool split) {
  engine::EngineOptions options;
  options.threads = kThreads;
  if (!split) options.split_batch_max_weight_bytes = 0;
  return options;
}

// Conv, Relu, MaxPool, a flatten written as PyTorch's x.view(x.size(0), -1)
// (Shape, Gather, Unsqueeze, Concat, Reshape), Gemm, Softmax.
OnnxBuilder Classifier() {
  OnnxBuilder b(13);
  b.Input("x", {-1, 3, 8, 8});
  b.Initializer("w", {6, 3, 3, 3}, RandomFloats(6 * 3 * 3 * 3, 1));
  b.Initializer("fc", {5, 6 * 4 * 4}, RandomFloats(5 * 96, 2));
  b.Initializer("fc_b", {5}, RandomFloats(5, 3));
  b.ScalarInt64("zero", 0);
  b.InitializerInt64("axes0", {1}, {0});
  b.InitializerInt64("minus_one", {1}, {-1});
  b.Node("Conv", {"x", "w"}, {"c"}, "conv").Ints("pads", {1, 1, 1, 1});
  b.Node("Relu", {"c"}, {"r"}, "relu");
  b.Node("MaxPool", {"r"}, {"p"}, "pool").Ints("kernel_shape", {2, 2}).Ints("strides", {2, 2});
  b.Node("Shape", {"p"}, {"shape"}, "shape");
  b.Node("Gather", {"shape", "zero"}, {"n"}, "gather").Int("axis", 0);
  b.Node("Unsqueeze", {"n", "axes0"}, {"n1"}, "unsqueeze");
  b.Node("Concat", {"n1", "minus_one"}, {"target"}, "concat").Int("axis", 0);
  b.Node("Reshape", {"p", "target"}, {"flat"}, "flatten");
  b.Node("Gemm", {"flat", "fc", "fc_b"}, {"logits"}, "fc").Int("transB", 1);
  b.Node("Softmax", {"logits"}, {"y"}, "softmax").Int("axis", 1);
  b.Output("y");
  return b;
}

std::vector<Tensor> Images(int64_t n, uint64_t seed) {
  std::vector<Tensor> inputs;
  inputs.push_back(MakeTensor({n, 3, 8, 8}, RandomFloats(n * 3 * 8 * 8, seed)));
  return inputs;
}

// Runs `builder` split and whole on a batch of `n` and checks the lanes each used and that results agree.
void ExpectSameAsWhole(const OnnxBuilder& builder, const std::vector<Tensor>& inputs, int want_lanes) {
  auto split = builder.Load(Options(true));
  auto whole = builder.Load(Options(false));
  ASSERT_TRUE(split.ok()) << split.status().ToString();
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  auto got = (*split)->Run(inputs);
  auto want = (*whole)->Run(inputs);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  EXPECT_EQ((*split)->stats().batch_lanes, want_lanes);
  EXPECT_EQ((*whole)->stats().batch_lanes, 1);
  ASSERT_EQ(got->size(), want->size());
  for (size_t i = 0; i < got->size(); ++i) {
    EXPECT_TRUE(AllClose((*got)[i], (*want)[i].shape(), ToVector((*want)[i]), 1e-5f, 1e-5f)) << "output " << i;
  }
}

TEST(BatchSplit, SlicesGiveTheWholeBatchsResult) {
  for (int64_t n : {2, 5, 16}) {  // 5: slices of 3 and 2
    SCOPED_TRACE(::testing::Message() << "batch " << n);
    ExpectSameAsWhole(Classifier(), Images(n, 10 + n), kThreads);
  }
}

// The first half of the channels, the half computed from the shape (as
// exporters write torch.chunk): a shape's other dimensions do not depend on
// the batch, so the graph splits.
TEST(BatchSplit, ChannelCountFromTheShapeSplits) {
  OnnxBuilder b(13);
  b.Input("x", {-1, 4, 3});
  b.ScalarInt64("one", 1);
  b.InitializerInt64("axes0", {1}, {0});
  b.InitializerInt64("zero1", {1}, {0});
  b.InitializerInt64("two", {1}, {2});
  b.InitializerInt64("axis1", {1}, {1});
  b.Node("Shape", {"x"}, {"shape"}, "shape");
  b.Node("Gather", {"shape", "one"}, {"c"}, "gather").Int("axis", 0);
  b.Node("Unsqueeze", {"c", "axes0"}, {"c1"}, "unsqueeze");
  b.Node("Div", {"c1", "two"}, {"half"}, "half");
  b.Node("Slice", {"x", "zero1", "half", "axis1"}, {"y"}, "first_half");
  b.Output("y");
  std::vector<Tensor> inputs;
  inputs.push_back(MakeTensor({4, 4, 3}, RandomFloats(48, 11)));
  ExpectSameAsWhole(b, inputs, kThreads);
}

TEST(BatchSplit, OneSampleRunsWhole) { ExpectSameAsWhole(Classifier(), Images(1, 7), 1); }

TEST(BatchSplit, WeightsOverTheLimitRunWhole) {
  engine::EngineOptions options = Options(true);
  options.split_batch_max_weight_bytes = 1024;  // the classifier holds 2.4 KB of weights
  auto model = Classifier().Load(options);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_TRUE((*model)->Run(Images(4, 3)).ok());
  EXPECT_EQ((*model)->stats().batch_lanes, 1);
}

// Graphs whose result for a sample depends on the other samples: each must run whole.
TEST(BatchSplit, GraphsThatMixSamplesRunWhole) {
  struct Case {
    std::string name;
    std::function<void(OnnxBuilder&)> body;  // reads "x" [N, 4, 3], writes "y"
  };
  const std::vector<Case> cases = {
      {"softmax over the batch", [](OnnxBuilder& b) { b.Node("Softmax", {"x"}, {"y"}, "s").Int("axis", 0); }},
      {"transpose of the batch axis",
       [](OnnxBuilder& b) { b.Node("Transpose", {"x"}, {"y"}, "t").Ints("perm", {1, 0, 2}); }},
      {"sum over the batch",
       [](OnnxBuilder& b) {
         b.InitializerInt64("axes", {1}, {0});
         b.Node("ReduceSum", {"x", "axes"}, {"y"}, "r").Int("keepdims", 1);
       }},
      {"reshape mixing samples",
       [](OnnxBuilder& b) {
         b.InitializerInt64("to", {2}, {4, -1});
         b.Node("Reshape", {"x", "to"}, {"y"}, "r");
       }},
      {"batch size as data",
       [](OnnxBuilder& b) {
         b.ScalarInt64("zero", 0);
         b.Node("Shape", {"x"}, {"shape"}, "shape");
         b.Node("Gather", {"shape", "zero"}, {"n"}, "gather").Int("axis", 0);
         b.Node("Cast", {"n"}, {"nf"}, "cast").Int("to", onnx::TensorProto::FLOAT);
         b.Node("Mul", {"x", "nf"}, {"y"}, "scale");
       }},
      {"a constant with rows",
       [](OnnxBuilder& b) {
         b.Initializer("rows", {4, 4, 3}, RandomFloats(48, 5));
         b.Node("Add", {"x", "rows"}, {"y"}, "add");
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    OnnxBuilder b(13);
    b.Input("x", {-1, 4, 3});
    c.body(b);
    b.Output("y");
    std::vector<Tensor> inputs;
    inputs.push_back(MakeTensor({4, 4, 3}, RandomFloats(48, 9)));
    ExpectSameAsWhole(b, inputs, 1);
  }
}

// A model that fixes its batch size runs it whole.
TEST(BatchSplit, FixedBatchRunsWhole) {
  OnnxBuilder b(13);
  b.Input("x", {4, 3});
  b.Node("Relu", {"x"}, {"y"}, "relu");
  b.Output("y");
  std::vector<Tensor> inputs;
  inputs.push_back(MakeTensor({4, 3}, RandomFloats(12, 4)));
  ExpectSameAsWhole(b, inputs, 1);
}

// Inputs written in place (RunWith, as the enclave runs) give Run's result.
TEST(BatchSplit, InputsWrittenInPlaceGiveRunsResult) {
  auto model = Classifier().Load(Options(true));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::vector<Tensor> inputs = Images(6, 21);
  auto by_run = (*model)->Run(inputs);
  ASSERT_TRUE(by_run.ok()) << by_run.status().ToString();
  const std::vector<Shape> shapes = {inputs[0].shape()};
  auto by_write = (*model)->RunWith(shapes, [&](std::span<const std::span<std::byte>> places) {
    EXPECT_EQ(places[0].size(), inputs[0].byte_size());
    std::memcpy(places[0].data(), inputs[0].raw_data(), inputs[0].byte_size());
    return Status::Ok();
  });
  ASSERT_TRUE(by_write.ok()) << by_write.status().ToString();
  EXPECT_EQ((*model)->stats().batch_lanes, kThreads);
  EXPECT_TRUE(AllClose((*by_write)[0], (*by_run)[0].shape(), ToVector((*by_run)[0]), 0.f, 0.f));
}

// With room for one plan, setting up the second lane must not evict the first.
TEST(BatchSplit, LanesSurviveAOnePlanCache) {
  engine::EngineOptions options = Options(true);
  options.max_plans = 1;
  auto model = Classifier().Load(options);
  auto whole = Classifier().Load(Options(false));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  for (int64_t n : {4, 3, 4}) {
    SCOPED_TRACE(::testing::Message() << "batch " << n);
    auto got = (*model)->Run(Images(n, 30 + n));
    auto want = (*whole)->Run(Images(n, 30 + n));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    EXPECT_EQ((*model)->stats().batch_lanes, kThreads);
    EXPECT_TRUE(AllClose((*got)[0], (*want)[0].shape(), ToVector((*want)[0]), 1e-5f, 1e-5f));
  }
}

// A wrong shape is reported in the caller's terms, not a slice's.
TEST(BatchSplit, WrongShapeNamesTheCallersShape) {
  auto model = Classifier().Load(Options(true));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::vector<Tensor> inputs;
  inputs.push_back(MakeTensor({4, 2, 8, 8}, RandomFloats(4 * 2 * 64, 8)));
  auto out = (*model)->Run(inputs);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("[4,2,8,8]"), std::string::npos) << out.status().ToString();
}

}  // namespace
}  // namespace ppml
