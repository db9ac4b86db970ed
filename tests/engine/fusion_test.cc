// Load-time fusion (BatchNorm folding, eltwise and residual post-ops): ResNet
// blocks and fusion corner cases, each checked against a naive reference and
// against the same model loaded with fusion off, plus the ModelStats counters.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tests/engine/onnx_builder.h"

namespace ppml::test {
namespace {

using engine::EngineOptions;
using engine::Model;
using engine::ModelStats;

// A model under construction together with its naive evaluation: every
// helper adds nodes to the graph and computes the same values on the side.
class Net {
 public:
  Net(const Shape& input_shape, uint64_t seed) : x_shape_(input_shape), seed_(seed) {
    Shape declared = input_shape;
    declared[0] = -1;  // symbolic batch
    b_.Input("x", declared);
  }

  // Values of named tensors for one input.
  struct Values {
    std::map<std::string, std::vector<float>> data;
    std::map<std::string, Shape> shape;
  };

  // Conv (weights and bias random) with square kernel, stride and pad.
  void Conv(const std::string& in, const std::string& out, int64_t out_channels, int64_t kernel, int64_t stride,
            int64_t pad, bool bias = true, int64_t group = 1) {
    const std::string name = out + "_conv";
    const int64_t in_channels = channels_.count(in) ? channels_[in] : x_shape_[1];
    const Shape ws = {out_channels, in_channels / group, kernel, kernel};
    const auto w = RandomFloats(ElementCount(ws), ++seed_, -0.5f, 0.5f);
    const auto bv = bias ? RandomFloats(out_channels, ++seed_) : std::vector<float>{};
    b_.Initializer(name + "_w", ws, w);
    std::vector<std::string> inputs = {in, name + "_w"};
    if (bias) {
      b_.Initializer(name + "_b", {out_channels}, bv);
      inputs.push_back(name + "_b");
    }
    b_.Node("Conv", inputs, {out}, name)
        .Ints("kernel_shape", {kernel, kernel})
        .Ints("strides", {stride, stride})
        .Ints("pads", {pad, pad, pad, pad})
        .Int("group", group);
    channels_[out] = out_channels;
    steps_.push_back([=](Values& v) {
      naive::Conv2DArgs a;
      a.group = group;
      a.stride_h = a.stride_w = stride;
      a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = pad;
      v.data[out] = naive::Conv2D(v.data.at(in), v.shape.at(in), w, ws, bv, a, &v.shape[out]);
    });
  }

  void BatchNorm(const std::string& in, const std::string& out) {
    const std::string name = out + "_bn";
    const int64_t c = channels_.at(in);
    const auto scale = RandomFloats(c, ++seed_, 0.5f, 1.5f), shift = RandomFloats(c, ++seed_),
               mean = RandomFloats(c, ++seed_), var = RandomFloats(c, ++seed_, 0.3f, 2.f);
    b_.Initializer(name + "_scale", {c}, scale);
    b_.Initializer(name + "_shift", {c}, shift);
    b_.Initializer(name + "_mean", {c}, mean);
    b_.Initializer(name + "_var", {c}, var);
    b_.Node("BatchNormalization", {in, name + "_scale", name + "_shift", name + "_mean", name + "_var"}, {out}, name)
        .Float("epsilon", 1e-5f);
    channels_[out] = c;
    steps_.push_back([=](Values& v) {
      v.data[out] = naive::BatchNorm(v.data.at(in), v.shape.at(in), scale, shift, mean, var, 1e-5f);
      v.shape[out] = v.shape.at(in);
    });
  }

  // An element-wise op of one input: `op` with `f` as its reference.
  void Unary(const std::string& op, const std::string& in, const std::string& out, std::function<float(float)> f,
             const std::function<void(NodeRef&)>& attrs = nullptr, std::vector<std::string> extra_inputs = {}) {
    std::vector<std::string> inputs = {in};
    inputs.insert(inputs.end(), extra_inputs.begin(), extra_inputs.end());
    NodeRef n = b_.Node(op, inputs, {out}, out + "_" + op);
    if (attrs) attrs(n);
    channels_[out] = channels_.count(in) ? channels_[in] : 0;
    steps_.push_back([=](Values& v) {
      std::vector<float> y = v.data.at(in);
      for (float& e : y) e = f(e);
      v.data[out] = std::move(y);
      v.shape[out] = v.shape.at(in);
    });
  }
  void Relu(const std::string& in, const std::string& out) {
    Unary("Relu", in, out, [](float e) { return e > 0 ? e : 0.f; });
  }

  // Same-shape Add.
  void Add(const std::string& a, const std::string& c, const std::string& out) {
    b_.Node("Add", {a, c}, {out}, out + "_add");
    channels_[out] = channels_.count(a) ? channels_[a] : channels_[c];
    steps_.push_back([=](Values& v) {
      EXPECT_EQ(v.shape.at(a), v.shape.at(c)) << "test bug: Add operands";
      v.data[out] = naive::Add(v.data.at(a), v.data.at(c));
      v.shape[out] = v.shape.at(a);
    });
  }

  void GlobalAveragePool(const std::string& in, const std::string& out) {
    b_.Node("GlobalAveragePool", {in}, {out}, out + "_gap");
    channels_[out] = channels_.at(in);
    steps_.push_back([=](Values& v) {
      const Shape& s = v.shape.at(in);
      const int64_t inner = s[2] * s[3];
      std::vector<float> y(static_cast<size_t>(s[0] * s[1]));
      for (size_t i = 0; i < y.size(); ++i) {
        double sum = 0;
        for (int64_t j = 0; j < inner; ++j) sum += v.data.at(in)[i * inner + j];
        y[i] = static_cast<float>(sum / inner);
      }
      v.data[out] = y;
      v.shape[out] = {s[0], s[1], 1, 1};
    });
  }

  void Output(const std::string& name) {
    b_.Output(name);
    outputs_.push_back(name);
  }

  OnnxBuilder& builder() { return b_; }

  Values Evaluate(const std::vector<float>& x, const Shape& xs) const {
    Values v;
    v.data["x"] = x;
    v.shape["x"] = xs;
    for (const auto& step : steps_) step(v);
    return v;
  }

  // Loads with `fuse`, runs at each batch size and checks every output.
  // Returns the stats.
  ModelStats Check(bool fuse, const std::vector<int64_t>& batches = {1, 3}, float tolerance = 2e-4f) {
    SCOPED_TRACE(fuse ? "fuse=true" : "fuse=false");
    EngineOptions options;
    options.fuse = fuse;
    auto model = b_.Load(options);
    EXPECT_TRUE(model.ok()) << model.status().ToString();
    if (!model.ok()) return {};
    for (int64_t batch : batches) {
      SCOPED_TRACE(::testing::Message() << "batch " << batch);
      Shape xs = x_shape_;
      xs[0] = batch;
      const auto x = RandomFloats(ElementCount(xs), 1000 + batch);
      const Values want = Evaluate(x, xs);
      std::vector<Tensor> inputs;
      inputs.push_back(MakeTensor(xs, x));
      auto out = (*model)->Run(inputs);
      EXPECT_TRUE(out.ok()) << out.status().ToString();
      if (!out.ok()) continue;
      EXPECT_EQ(out->size(), outputs_.size());
      for (size_t i = 0; i < outputs_.size() && i < out->size(); ++i) {
        SCOPED_TRACE("output " + outputs_[i]);
        EXPECT_TRUE(AllClose((*out)[i], want.shape.at(outputs_[i]), want.data.at(outputs_[i]), tolerance, tolerance));
      }
    }
    return (*model)->stats();
  }

  // Outputs with fusion on and off agree with each other (and the reference).
  void CheckFusedMatchesUnfused(const std::vector<int64_t>& batches = {1, 3}) {
    for (int64_t batch : batches) {
      SCOPED_TRACE(::testing::Message() << "batch " << batch);
      Shape xs = x_shape_;
      xs[0] = batch;
      const auto x = RandomFloats(ElementCount(xs), 2000 + batch);
      std::vector<std::vector<Tensor>> results;
      for (bool fuse : {true, false}) {
        EngineOptions options;
        options.fuse = fuse;
        auto model = b_.Load(options);
        ASSERT_TRUE(model.ok()) << model.status().ToString();
        std::vector<Tensor> inputs;
        inputs.push_back(MakeTensor(xs, x));
        auto out = (*model)->Run(inputs);
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        results.push_back(std::move(*out));
      }
      ASSERT_EQ(results[0].size(), results[1].size());
      for (size_t i = 0; i < results[0].size(); ++i) {
        SCOPED_TRACE("output " + outputs_[i]);
        EXPECT_TRUE(AllClose(results[0][i], results[1][i].shape(), ToVector(results[1][i]), 2e-4f, 2e-4f));
      }
    }
  }

 private:
  OnnxBuilder b_;
  Shape x_shape_;
  uint64_t seed_;
  std::map<std::string, int64_t> channels_;
  std::vector<std::function<void(Values&)>> steps_;
  std::vector<std::string> outputs_;
};

// stem: x -> Conv -> BN -> Relu = "s" (so the block input lives in the arena).
void AddStem(Net& net, int64_t channels) {
  net.Conv("x", "stem_c", channels, 3, 1, 1);
  net.BatchNorm("stem_c", "stem_bn");
  net.Relu("stem_bn", "s");
}

// The basic ResNet block on `in`: Conv-BN-Relu-Conv-BN, + in, Relu.
void AddBasicBlock(Net& net, const std::string& in, const std::string& out, int64_t channels) {
  net.Conv(in, out + "_c1", channels, 3, 1, 1, /*bias=*/false);
  net.BatchNorm(out + "_c1", out + "_bn1");
  net.Relu(out + "_bn1", out + "_r1");
  net.Conv(out + "_r1", out + "_c2", channels, 3, 1, 1, /*bias=*/false);
  net.BatchNorm(out + "_c2", out + "_bn2");
  net.Add(out + "_bn2", in, out + "_sum");
  net.Relu(out + "_sum", out);
}

TEST(FusionTest, BasicBlock) {
  Net net({1, 3, 8, 8}, 10);
  AddStem(net, 16);
  AddBasicBlock(net, "s", "y", 16);
  net.Output("y");
  const ModelStats fused = net.Check(true);
  EXPECT_EQ(fused.folded_batchnorms, 3);
  EXPECT_EQ(fused.fused_post_ops, 4);  // stem Relu, block Relu, Add, final Relu
  EXPECT_EQ(fused.nodes_in_file, 10);
  const ModelStats plain = net.Check(false);
  EXPECT_EQ(plain.folded_batchnorms, 0);
  EXPECT_EQ(plain.fused_post_ops, 0);
  EXPECT_LT(fused.kernels, plain.kernels);
  net.CheckFusedMatchesUnfused();
}

TEST(FusionTest, BasicBlockOnGraphInput) {
  // The residual is the graph input itself (never written in place).
  Net net({1, 16, 7, 7}, 20);
  AddBasicBlock(net, "x", "y", 16);
  net.Output("y");
  const ModelStats fused = net.Check(true);
  EXPECT_EQ(fused.folded_batchnorms, 2);
  EXPECT_EQ(fused.fused_post_ops, 3);
  const ModelStats plain = net.Check(false);
  EXPECT_EQ(plain.folded_batchnorms, 0);
  EXPECT_EQ(plain.fused_post_ops, 0);
}

TEST(FusionTest, TwoBlocksInSequence) {
  Net net({1, 3, 6, 6}, 30);
  AddStem(net, 8);
  AddBasicBlock(net, "s", "b1", 8);
  AddBasicBlock(net, "b1", "y", 8);
  net.Output("y");
  const ModelStats fused = net.Check(true, {1, 2});
  EXPECT_EQ(fused.folded_batchnorms, 5);
  EXPECT_EQ(fused.fused_post_ops, 7);
  net.Check(false, {1, 2});
}

// Downsampling block: main branch with stride 2 and more channels, shortcut
// Conv 1x1 stride 2 + BN on the block input. The shortcut is listed after the
// main branch, so the main branch's Add finds its other operand not yet
// computed and the shortcut conv takes the residual instead.
TEST(FusionTest, DownsampleBlock) {
  for (bool shortcut_first : {false, true}) {
    SCOPED_TRACE(shortcut_first ? "shortcut listed first" : "shortcut listed last");
    Net net({1, 3, 8, 8}, 40);
    AddStem(net, 16);
    if (shortcut_first) {
      net.Conv("s", "ds_c", 32, 1, 2, 0, false);
      net.BatchNorm("ds_c", "ds");
    }
    net.Conv("s", "m_c1", 32, 3, 2, 1, false);
    net.BatchNorm("m_c1", "m_bn1");
    net.Relu("m_bn1", "m_r1");
    net.Conv("m_r1", "m_c2", 32, 3, 1, 1, false);
    net.BatchNorm("m_c2", "m_bn2");
    if (!shortcut_first) {
      net.Conv("s", "ds_c", 32, 1, 2, 0, false);
      net.BatchNorm("ds_c", "ds");
    }
    net.Add("m_bn2", "ds", "sum");
    net.Relu("sum", "y");
    net.Output("y");
    const ModelStats fused = net.Check(true);
    EXPECT_EQ(fused.folded_batchnorms, 4);
    EXPECT_EQ(fused.fused_post_ops, 4);
    const ModelStats plain = net.Check(false);
    EXPECT_EQ(plain.folded_batchnorms, 0);
    EXPECT_EQ(plain.fused_post_ops, 0);
    net.CheckFusedMatchesUnfused();
  }
}

// The residual is read again after the fused conv: the sum must not
// accumulate into its bytes.
TEST(FusionTest, ResidualAlsoReadLater) {
  Net net({1, 3, 6, 6}, 50);
  AddStem(net, 16);
  AddBasicBlock(net, "s", "y", 16);
  net.Add("y", "s", "z");  // reads s after the block
  net.Output("z");
  net.Output("y");
  const ModelStats fused = net.Check(true);
  EXPECT_GT(fused.fused_post_ops, 0);
  net.Check(false);
}

TEST(FusionTest, ResidualAlsoReadLaterByPoolAndIsAnOutput) {
  Net net({1, 3, 6, 6}, 60);
  AddStem(net, 16);
  AddBasicBlock(net, "s", "y", 16);
  net.GlobalAveragePool("s", "s_pooled");
  net.Output("y");
  net.Output("s_pooled");
  net.Output("s");
  net.Check(true);
  net.Check(false);
}

// The residual is read by a node between the block's convs and the Add.
TEST(FusionTest, ResidualReadByAnotherBranchInside) {
  Net net({1, 3, 6, 6}, 70);
  AddStem(net, 16);
  net.Conv("s", "c1", 16, 3, 1, 1);
  net.Relu("c1", "r1");
  net.Unary("Sigmoid", "s", "gate", [](float e) { return 1.f / (1.f + std::exp(-e)); });
  net.Conv("r1", "c2", 16, 3, 1, 1);
  net.Add("c2", "s", "sum");
  net.Relu("sum", "y");
  net.Add("y", "gate", "z");
  net.Output("z");
  net.Check(true);
  net.Check(false);
}

// The conv's own input is also its residual: y = Relu(Conv(s) + s). The
// output must not be written over the conv's source while it is being read.
TEST(FusionTest, ResidualIsTheConvsOwnInput) {
  for (int64_t channels : {8, 16, 32}) {
    SCOPED_TRACE(::testing::Message() << channels << " channels");
    Net net({1, 3, 8, 8}, 80 + channels);
    AddStem(net, channels);
    net.Conv("s", "c", channels, 3, 1, 1);
    net.Add("c", "s", "sum");
    net.Relu("sum", "y");
    net.Output("y");
    const ModelStats fused = net.Check(true);
    EXPECT_EQ(fused.fused_post_ops, 3);
    net.Check(false);
  }
}

// The same with a 1x1 conv (a pointwise residual).
TEST(FusionTest, ResidualIsTheConvsOwnInputPointwise) {
  Net net({1, 3, 8, 8}, 90);
  AddStem(net, 16);
  net.Conv("s", "c", 16, 1, 1, 0);
  net.Add("s", "c", "y");  // residual first
  net.Output("y");
  net.Check(true);
  net.Check(false);
}

// A conv output that is a graph output and also feeds a Relu: no fusion.
TEST(FusionTest, ConvOutputIsGraphOutputAndFeedsRelu) {
  Net net({1, 3, 6, 6}, 100);
  net.Conv("x", "c", 16, 3, 1, 1);
  net.Relu("c", "r");
  net.Output("c");
  net.Output("r");
  const ModelStats fused = net.Check(true);
  EXPECT_EQ(fused.fused_post_ops, 0);
  net.Check(false);
}

TEST(FusionTest, ConvOutputIsGraphOutputAndFeedsBatchNorm) {
  Net net({1, 3, 6, 6}, 110);
  net.Conv("x", "c", 8, 3, 1, 1);
  net.BatchNorm("c", "bn");
  net.Relu("bn", "r");
  net.Output("c");
  net.Output("r");
  const ModelStats fused = net.Check(true);
  EXPECT_EQ(fused.folded_batchnorms, 0);
  net.Check(false);
}

TEST(FusionTest, ConvOutputReadByTwoNodes) {
  Net net({1, 3, 6, 6}, 120);
  net.Conv("x", "c", 16, 3, 1, 1);
  net.Relu("c", "r");
  net.Unary("Tanh", "c", "t", [](float e) { return std::tanh(e); });
  net.Add("r", "t", "y");
  net.Output("y");
  const ModelStats fused = net.Check(true);
  EXPECT_EQ(fused.fused_post_ops, 0);
  net.Check(false);
}

// Each activation the pass knows, fused into a conv.
TEST(FusionTest, ConvActivations) {
  struct Case {
    std::string op;
    std::function<float(float)> f;
    std::function<void(NodeRef&)> attrs;
    std::vector<std::string> extra_inputs;
  };
  const std::vector<Case> cases = {
      {"Relu", [](float e) { return e > 0 ? e : 0.f; }, nullptr, {}},
      {"LeakyRelu", [](float e) { return e > 0 ? e : 0.2f * e; }, [](NodeRef& n) { n.Float("alpha", 0.2f); }, {}},
      {"Sigmoid", [](float e) { return 1.f / (1.f + std::exp(-e)); }, nullptr, {}},
      {"Tanh", [](float e) { return std::tanh(e); }, nullptr, {}},
      {"HardSigmoid", [](float e) { return std::clamp(0.25f * e + 0.5f, 0.f, 1.f); },
       [](NodeRef& n) { n.Float("alpha", 0.25f); }, {}},
      {"HardSwish", [](float e) { return e * std::clamp(e / 6.f + 0.5f, 0.f, 1.f); }, nullptr, {}},
      {"Clip", [](float e) { return std::clamp(e, 0.f, 6.f); }, nullptr, {"zero", "six"}},
      {"Clip", [](float e) { return std::max(e, -0.25f); }, nullptr, {"minus_quarter"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.op);
    Net net({1, 3, 6, 6}, 130);
    net.builder().ScalarFloat("zero", 0.f);
    net.builder().ScalarFloat("six", 6.f);
    net.builder().ScalarFloat("minus_quarter", -0.25f);
    net.Conv("x", "c", 16, 3, 1, 1);
    net.Unary(c.op, "c", "y", c.f, c.attrs, c.extra_inputs);
    net.Output("y");
    const ModelStats fused = net.Check(true);
    EXPECT_EQ(fused.fused_post_ops, 1);
    net.Check(false);
  }
}

// MobileNetV2's inverted residual in FP32: a 1x1 expansion and a 3x3
// depthwise layer (stride 1 and 2, ReLU6 or HardSwish before, with and
// without a depthwise bias) run apart, as two primitives: oneDNN 2.6's fused
// FP32 kernel writes wrong values in the channels-last layout these take
// (INT8 pairs do run fused: Int8Ops.PointwiseThenDepthwiseRunAsOnePrimitive).
// The expanded tensor is 13 MB, large enough for oneDNN to offer fusion.
TEST(FusionTest, Fp32PointwiseThenDepthwiseRunApart) {
  const auto relu6 = [](float e) { return std::clamp(e, 0.f, 6.f); };
  const auto hard_swish = [](float e) { return e * std::clamp(e / 6.f + 0.5f, 0.f, 1.f); };
  for (int64_t stride : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << "stride " << stride);
    Net net({2, 16, 160, 160}, 700 + stride);
    net.builder().ScalarFloat("zero", 0.f);
    net.builder().ScalarFloat("six", 6.f);
    net.Conv("x", "e1", 64, 1, 1, 0);
    net.Unary("Clip", "e1", "e1r", relu6, nullptr, {"zero", "six"});
    net.Conv("e1r", "d1", 64, 3, stride, 1, /*bias=*/true, /*group=*/64);
    net.Unary("Clip", "d1", "y1", relu6, nullptr, {"zero", "six"});
    net.Output("y1");
    net.Conv("x", "e2", 64, 1, 1, 0);
    net.Unary("HardSwish", "e2", "e2h", hard_swish);
    net.Conv("e2h", "d2", 64, 3, 1, 1, /*bias=*/false, /*group=*/64);
    net.Relu("d2", "y2");
    net.Output("y2");
    const ModelStats fused = net.Check(true, {2}, 1e-3f);
    EXPECT_EQ(fused.fused_depthwise, 0);
    net.CheckFusedMatchesUnfused({2});
  }
}

// Relu before the residual add and another after: post-ops before and after the sum.
TEST(FusionTest, EltwiseBeforeAndAfterSum) {
  Net net({1, 3, 6, 6}, 140);
  AddStem(net, 16);
  net.Conv("s", "c", 16, 3, 1, 1);
  net.Unary("LeakyRelu", "c", "l", [](float e) { return e > 0 ? e : 0.1f * e; },
            [](NodeRef& n) { n.Float("alpha", 0.1f); });
  net.Add("l", "s", "sum");
  net.Unary("Tanh", "sum", "y", [](float e) { return std::tanh(e); });
  net.Output("y");
  const ModelStats fused = net.Check(true);
  EXPECT_EQ(fused.fused_post_ops, 4);  // stem Relu; LeakyRelu, Add, Tanh
  net.Check(false);
}

// Conv + Add of a run-time tensor that broadcasts ([1,C,1,1]): a binary
// post-op rather than an in-place sum.
TEST(FusionTest, ResidualThatBroadcasts) {
  const Shape xs = {2, 3, 6, 6}, ws = {16, 3, 3, 3};
  const auto x = RandomFloats(ElementCount(xs), 150);
  const auto w = RandomFloats(ElementCount(ws), 151);
  const auto s = RandomFloats(16, 152);
  OnnxBuilder b;
  b.Input("x", xs);
  b.Input("s", {1, 16, 1, 1});
  b.Initializer("w", ws, w);
  b.Node("Conv", {"x", "w"}, {"c"}, "conv").Ints("pads", {1, 1, 1, 1});
  b.Node("Add", {"c", "s"}, {"a"}, "add");
  b.Node("Relu", {"a"}, {"y"}, "relu");
  b.Output("y");
  naive::Conv2DArgs args;
  args.pad_top = args.pad_left = args.pad_bottom = args.pad_right = 1;
  Shape cs;
  auto want = naive::Conv2D(x, xs, w, ws, {}, args, &cs);
  for (size_t i = 0; i < want.size(); ++i) want[i] += s[(i / 36) % 16];
  want = naive::Relu(want);
  for (bool fuse : {true, false}) {
    SCOPED_TRACE(fuse ? "fuse=true" : "fuse=false");
    EngineOptions options;
    options.fuse = fuse;
    auto model = b.Load(options);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    std::vector<Tensor> inputs;
    inputs.push_back(MakeTensor(xs, x));
    inputs.push_back(MakeTensor({1, 16, 1, 1}, s));
    auto out = (*model)->Run(inputs);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_TRUE(AllClose((*out)[0], cs, want, 1e-4f, 1e-4f));
    EXPECT_EQ((*model)->stats().fused_post_ops, fuse ? 2 : 0);
  }
}

// Gemm and MatMul with a fused activation.
TEST(FusionTest, GemmAndMatMulActivations) {
  const int64_t M = 3, K = 8, N = 5;
  const auto a = RandomFloats(M * K, 160), w = RandomFloats(K * N, 161), bias = RandomFloats(N, 162);
  for (const std::string op : {"Gemm", "MatMul"}) {
    SCOPED_TRACE(op);
    OnnxBuilder b;
    b.Input("a", {M, K});
    b.Initializer("w", {K, N}, w);
    b.Initializer("bias", {N}, bias);
    if (op == "Gemm") {
      b.Node("Gemm", {"a", "w", "bias"}, {"m"}, "gemm");
    } else {
      b.Node("MatMul", {"a", "w"}, {"m"}, "matmul");
    }
    b.Node("Relu", {"m"}, {"y"}, "relu");
    b.Output("y");
    std::vector<float> want(M * N);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double acc = op == "Gemm" ? bias[j] : 0.0;
        for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(a[i * K + k]) * w[k * N + j];
        want[i * N + j] = acc > 0 ? static_cast<float>(acc) : 0.f;
      }
    for (bool fuse : {true, false}) {
      SCOPED_TRACE(fuse ? "fuse=true" : "fuse=false");
      EngineOptions options;
      options.fuse = fuse;
      auto model = b.Load(options);
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      std::vector<Tensor> inputs;
      inputs.push_back(MakeTensor({M, K}, a));
      auto out = (*model)->Run(inputs);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      EXPECT_TRUE(AllClose((*out)[0], {M, N}, want));
      EXPECT_EQ((*model)->stats().fused_post_ops, fuse ? 1 : 0);
    }
  }
}

// ---------------------------------------------------------------------------
// Transformer-style patterns: LayerNormalization and GELU as exporters
// decompose them before opsets 17 and 20, and a MatMul's bias.

// Loads `b` with fusion on and off, runs it on `x` and checks output 0
// against `want`; returns the fused model's stats.
ModelStats CheckBothWays(const OnnxBuilder& b, const Shape& xs, const std::vector<float>& x, const Shape& ys,
                         const std::vector<float>& want) {
  ModelStats fused;
  for (bool fuse : {true, false}) {
    SCOPED_TRACE(fuse ? "fuse=true" : "fuse=false");
    EngineOptions options;
    options.fuse = fuse;
    auto model = b.Load(options);
    EXPECT_TRUE(model.ok()) << model.status().ToString();
    if (!model.ok()) return {};
    std::vector<Tensor> inputs;
    inputs.push_back(MakeTensor(xs, x));
    auto out = (*model)->Run(inputs);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    if (!out.ok()) return {};
    EXPECT_TRUE(AllClose((*out)[0], ys, want, 2e-4f, 2e-4f));
    if (fuse) fused = (*model)->stats();
  }
  return fused;
}

float NaiveGelu(float v) { return static_cast<float>(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)))); }

struct LayerNormSpec {
  std::vector<int64_t> axes;
  std::string gamma, beta;  // initializer names, "" for none
  bool square_as_mul;       // Mul(d, d) in place of Pow(d, 2)
  float epsilon;
};

// x -> ReduceMean -> Sub -> Pow 2 -> ReduceMean -> Add eps -> Sqrt -> Div [-> Mul gamma] [-> Add beta] -> y,
// as torch.onnx writes LayerNorm at opset 13; `y` names the last value.
void AddDecomposedLayerNorm(OnnxBuilder& b, const std::string& x, const std::string& y, const LayerNormSpec& s) {
  b.ScalarFloat(y + "_two", 2.f);
  b.ScalarFloat(y + "_eps", s.epsilon);
  b.Node("ReduceMean", {x}, {y + "_mean"}).Ints("axes", s.axes);
  b.Node("Sub", {x, y + "_mean"}, {y + "_d"});
  if (s.square_as_mul) {
    b.Node("Mul", {y + "_d", y + "_d"}, {y + "_sq"});
  } else {
    b.Node("Pow", {y + "_d", y + "_two"}, {y + "_sq"});
  }
  b.Node("ReduceMean", {y + "_sq"}, {y + "_var"}).Ints("axes", s.axes);
  b.Node("Add", {y + "_var", y + "_eps"}, {y + "_ve"});
  b.Node("Sqrt", {y + "_ve"}, {y + "_std"});
  std::string last = y + "_norm";
  b.Node("Div", {y + "_d", y + "_std"}, {s.gamma.empty() && s.beta.empty() ? y : last});
  if (!s.gamma.empty()) {
    const std::string out = s.beta.empty() ? y : y + "_scaled";
    b.Node("Mul", {last, s.gamma}, {out});
    last = out;
  }
  if (!s.beta.empty()) b.Node("Add", {s.beta, last}, {y});
}

TEST(FusionTest, DecomposedLayerNormBecomesOneOp) {
  const Shape xs = {2, 3, 8};
  const auto x = RandomFloats(ElementCount(xs), 3000, -2.f, 4.f);
  const auto gamma = RandomFloats(8, 3001), beta = RandomFloats(8, 3002);
  {
    SCOPED_TRACE("last axis, scale and bias");
    OnnxBuilder b;
    b.Input("x", {-1, 3, 8});
    b.Initializer("gamma", {8}, gamma);
    b.Initializer("beta", {8}, beta);
    AddDecomposedLayerNorm(b, "x", "y", {{-1}, "gamma", "beta", false, 1e-6f});
    b.Output("y");
    const ModelStats stats = CheckBothWays(b, xs, x, xs, naive::LayerNorm(x, 8, gamma, beta, 1e-6f));
    EXPECT_EQ(stats.fused_layer_norms, 1);
    EXPECT_EQ(stats.kernels, 1);
  }
  {
    SCOPED_TRACE("no affine part, square as Mul");
    OnnxBuilder b;
    b.Input("x", {-1, 3, 8});
    AddDecomposedLayerNorm(b, "x", "y", {{-1}, "", "", true, 1e-5f});
    b.Output("y");
    const ModelStats stats = CheckBothWays(b, xs, x, xs, naive::LayerNorm(x, 8, {}, {}, 1e-5f));
    EXPECT_EQ(stats.fused_layer_norms, 1);
  }
  {
    SCOPED_TRACE("two trailing axes");
    const auto gamma2 = RandomFloats(24, 3003);
    OnnxBuilder b;
    b.Input("x", {-1, 3, 8});
    b.Initializer("gamma", {1, 3, 8}, gamma2);
    AddDecomposedLayerNorm(b, "x", "y", {{-1, -2}, "gamma", "", false, 1e-5f});
    b.Output("y");
    const ModelStats stats = CheckBothWays(b, xs, x, xs, naive::LayerNorm(x, 24, gamma2, {}, 1e-5f));
    EXPECT_EQ(stats.fused_layer_norms, 1);
  }
}

TEST(FusionTest, LayerNormLookalikesStayAsTheyAre) {
  const Shape xs = {2, 3, 8};
  const auto x = RandomFloats(ElementCount(xs), 3010, -2.f, 4.f);
  {
    SCOPED_TRACE("positive axes (the rank is unknown when the pass runs)");
    OnnxBuilder b;
    b.Input("x", {-1, 3, 8});
    AddDecomposedLayerNorm(b, "x", "y", {{2}, "", "", false, 1e-5f});
    b.Output("y");
    EXPECT_EQ(CheckBothWays(b, xs, x, xs, naive::LayerNorm(x, 8, {}, {}, 1e-5f)).fused_layer_norms, 0);
  }
  {
    SCOPED_TRACE("a middle axis");
    OnnxBuilder b;
    b.Input("x", {-1, 3, 8});
    AddDecomposedLayerNorm(b, "x", "y", {{-2}, "", "", false, 1e-5f});
    b.Output("y");
    auto model = b.Load();
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    EXPECT_EQ((*model)->stats().fused_layer_norms, 0);
  }
  {
    SCOPED_TRACE("the centred value is also an output");
    OnnxBuilder b;
    b.Input("x", {-1, 3, 8});
    AddDecomposedLayerNorm(b, "x", "y", {{-1}, "", "", false, 1e-5f});
    b.Output("y");
    b.Output("y_d");
    EXPECT_EQ(CheckBothWays(b, xs, x, xs, naive::LayerNorm(x, 8, {}, {}, 1e-5f)).fused_layer_norms, 0);
  }
  {
    SCOPED_TRACE("a scalar scale is kept as its own Mul");
    OnnxBuilder b;
    b.Input("x", {-1, 3, 8});
    b.ScalarFloat("half", 0.5f);
    AddDecomposedLayerNorm(b, "x", "y", {{-1}, "half", "", false, 1e-5f});
    b.Output("y");
    std::vector<float> want = naive::LayerNorm(x, 8, {}, {}, 1e-5f);
    for (float& v : want) v *= 0.5f;
    EXPECT_EQ(CheckBothWays(b, xs, x, xs, want).fused_layer_norms, 1);
  }
}

// GELU of x in one of the orders exporters write it; returns the output's name.
enum class GeluOrder { kTorch, kHalfFirst, kHalfOfErf, kMulBySqrtHalf };
std::string AddDecomposedGelu(OnnxBuilder& b, const std::string& x, const std::string& y, GeluOrder order) {
  b.ScalarFloat(y + "_sqrt2", std::sqrt(2.f));
  b.ScalarFloat(y + "_sqrt_half", std::sqrt(0.5f));
  b.ScalarFloat(y + "_one", 1.f);
  b.ScalarFloat(y + "_half", 0.5f);
  if (order == GeluOrder::kMulBySqrtHalf) {
    b.Node("Mul", {y + "_sqrt_half", x}, {y + "_s"});
  } else {
    b.Node("Div", {x, y + "_sqrt2"}, {y + "_s"});
  }
  b.Node("Erf", {y + "_s"}, {y + "_erf"});
  b.Node("Add", {y + "_one", y + "_erf"}, {y + "_p"});
  switch (order) {
    case GeluOrder::kTorch:
    case GeluOrder::kMulBySqrtHalf:
      b.Node("Mul", {x, y + "_p"}, {y + "_xp"});
      b.Node("Mul", {y + "_xp", y + "_half"}, {y});
      break;
    case GeluOrder::kHalfFirst:
      b.Node("Mul", {x, y + "_half"}, {y + "_hx"});
      b.Node("Mul", {y + "_hx", y + "_p"}, {y});
      break;
    case GeluOrder::kHalfOfErf:
      b.Node("Mul", {y + "_p", y + "_half"}, {y + "_hp"});
      b.Node("Mul", {x, y + "_hp"}, {y});
      break;
  }
  return y;
}

TEST(FusionTest, DecomposedGeluBecomesOneOpInEachOrder) {
  const Shape xs = {2, 7};
  const auto x = RandomFloats(ElementCount(xs), 3020, -4.f, 4.f);
  std::vector<float> want(x.size());
  std::transform(x.begin(), x.end(), want.begin(), NaiveGelu);
  for (GeluOrder order : {GeluOrder::kTorch, GeluOrder::kHalfFirst, GeluOrder::kHalfOfErf, GeluOrder::kMulBySqrtHalf}) {
    SCOPED_TRACE(::testing::Message() << "order " << static_cast<int>(order));
    OnnxBuilder b;
    b.Input("x", {-1, 7});
    AddDecomposedGelu(b, "x", "y", order);
    b.Output("y");
    const ModelStats stats = CheckBothWays(b, xs, x, xs, want);
    EXPECT_EQ(stats.fused_gelus, 1);
    EXPECT_EQ(stats.kernels, 1);
  }
}

TEST(FusionTest, GeluWhoseErfIsAlsoReadStaysAsItIs) {
  const Shape xs = {2, 7};
  const auto x = RandomFloats(ElementCount(xs), 3030, -4.f, 4.f);
  std::vector<float> want(x.size());
  std::transform(x.begin(), x.end(), want.begin(), NaiveGelu);
  OnnxBuilder b;
  b.Input("x", {-1, 7});
  AddDecomposedGelu(b, "x", "y", GeluOrder::kTorch);
  b.Output("y");
  b.Output("y_erf");
  EXPECT_EQ(CheckBothWays(b, xs, x, xs, want).fused_gelus, 0);
}

// MobileNetV3's x * HardSigmoid(x) and EfficientNet's x * Sigmoid(x) after a
// Conv: one HardSwish or Swish, fused into the Conv as a post-op.
TEST(FusionTest, GatedActivationsBecomeOneOpFusedIntoTheConv) {
  const Shape xs = {2, 3, 5, 5}, ws = {4, 3, 3, 3};
  const auto x = RandomFloats(ElementCount(xs), 3050, -3.f, 3.f);
  const auto w = RandomFloats(ElementCount(ws), 3051);
  Shape ys;
  const std::vector<float> conv = naive::Conv2D(x, xs, w, ws, {}, {.pad_top = 1, .pad_left = 1, .pad_bottom = 1,
                                                                   .pad_right = 1}, &ys);
  for (const std::string gate : {"HardSigmoid", "Sigmoid"}) {
    SCOPED_TRACE(gate);
    OnnxBuilder b;
    b.Input("x", {-1, 3, 5, 5});
    b.Initializer("w", ws, w);
    b.Node("Conv", {"x", "w"}, {"c"}).Ints("pads", {1, 1, 1, 1});
    auto g = b.Node(gate, {"c"}, {"g"});
    if (gate == "HardSigmoid") g.Float("alpha", 1.f / 6);
    b.Node("Mul", {"c", "g"}, {"y"});
    b.Output("y");
    std::vector<float> want = conv;
    for (float& v : want) {
      v *= gate == "HardSigmoid" ? std::clamp(v / 6 + 0.5f, 0.f, 1.f) : 1.f / (1.f + std::exp(-v));
    }
    const ModelStats stats = CheckBothWays(b, xs, x, ys, want);
    EXPECT_EQ(stats.fused_gated_activations, 1);
    EXPECT_EQ(stats.fused_post_ops, 1);
  }
}

// Other gates, a gate read twice, or a product with another value stay as written.
TEST(FusionTest, OtherGatesAndProductsStayAsWritten) {
  const Shape xs = {2, 6};
  const auto x = RandomFloats(ElementCount(xs), 3060, -4.f, 4.f);
  const auto hard_sigmoid = [](float v) { return std::clamp(0.2f * v + 0.5f, 0.f, 1.f); };
  {
    SCOPED_TRACE("HardSigmoid with alpha 0.2");
    OnnxBuilder b;
    b.Input("x", {-1, 6});
    b.Node("HardSigmoid", {"x"}, {"g"});
    b.Node("Mul", {"x", "g"}, {"y"});
    b.Output("y");
    std::vector<float> want = x;
    for (float& v : want) v *= hard_sigmoid(v);
    EXPECT_EQ(CheckBothWays(b, xs, x, xs, want).fused_gated_activations, 0);
  }
  {
    SCOPED_TRACE("gate also an output");
    OnnxBuilder b;
    b.Input("x", {-1, 6});
    b.Node("Sigmoid", {"x"}, {"g"});
    b.Node("Mul", {"g", "x"}, {"y"});
    b.Output("y").Output("g");
    std::vector<float> want = x;
    for (float& v : want) v /= 1.f + std::exp(-v);
    EXPECT_EQ(CheckBothWays(b, xs, x, xs, want).fused_gated_activations, 0);
  }
  {
    SCOPED_TRACE("gate times another value (squeeze-excitation)");
    OnnxBuilder b;
    b.Input("x", {-1, 6});
    b.Node("Relu", {"x"}, {"r"});
    b.Node("Sigmoid", {"x"}, {"g"});
    b.Node("Mul", {"g", "r"}, {"y"});
    b.Output("y");
    std::vector<float> want = x;
    for (float& v : want) v = std::max(v, 0.f) / (1.f + std::exp(-v));
    EXPECT_EQ(CheckBothWays(b, xs, x, xs, want).fused_gated_activations, 0);
  }
}

// A transformer MLP on [batch, tokens, features]: MatMul + bias, GELU, MatMul + bias.
TEST(FusionTest, BatchedMatMulTakesBiasAndGelu) {
  const int64_t tokens = 5, features = 8, hidden = 12;
  const Shape xs = {2, tokens, features};
  const auto x = RandomFloats(ElementCount(xs), 3040);
  const auto w1 = RandomFloats(features * hidden, 3041), b1 = RandomFloats(hidden, 3042);
  const auto w2 = RandomFloats(hidden * features, 3043), b2 = RandomFloats(features, 3044);
  OnnxBuilder b;
  b.Input("x", {-1, tokens, features});
  b.Initializer("w1", {features, hidden}, w1);
  b.Initializer("b1", {hidden}, b1);
  b.Initializer("w2", {hidden, features}, w2);
  b.Initializer("b2", {1, 1, features}, b2);
  b.Node("MatMul", {"x", "w1"}, {"h"});
  b.Node("Add", {"b1", "h"}, {"hb"});
  AddDecomposedGelu(b, "hb", "g", GeluOrder::kTorch);
  b.Node("MatMul", {"g", "w2"}, {"o"});
  b.Node("Add", {"o", "b2"}, {"y"});
  b.Output("y");
  const int64_t rows = 2 * tokens;
  std::vector<float> g(rows * hidden), want(rows * features);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < hidden; ++j) {
      double acc = b1[j];
      for (int64_t k = 0; k < features; ++k) acc += static_cast<double>(x[r * features + k]) * w1[k * hidden + j];
      g[r * hidden + j] = NaiveGelu(static_cast<float>(acc));
    }
    for (int64_t j = 0; j < features; ++j) {
      double acc = b2[j];
      for (int64_t k = 0; k < hidden; ++k) acc += static_cast<double>(g[r * hidden + k]) * w2[k * features + j];
      want[r * features + j] = static_cast<float>(acc);
    }
  }
  const ModelStats stats = CheckBothWays(b, xs, x, xs, want);
  EXPECT_EQ(stats.fused_gelus, 1);
  EXPECT_EQ(stats.fused_post_ops, 3);  // two biases and the GELU
  EXPECT_EQ(stats.kernels, 2);
}

// Gemm without C, then an Add of one bias per column: the bias becomes C
// (transB: the columns are B's rows). A bias that is a graph input stays an Add.
TEST(FusionTest, GemmTakesAFollowingBiasAsC) {
  const int64_t M = 3, K = 6, N = 4;
  const auto a = RandomFloats(M * K, 3050), w = RandomFloats(N * K, 3051), bias = RandomFloats(N, 3052);
  std::vector<float> want(M * N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = bias[j];
      for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(a[i * K + k]) * w[j * K + k];
      want[i * N + j] = static_cast<float>(acc);
    }
  for (bool constant_bias : {true, false}) {
    SCOPED_TRACE(constant_bias ? "constant bias" : "bias as a graph input");
    OnnxBuilder b;
    b.Input("a", {-1, K});
    b.Initializer("w", {N, K}, w);
    if (constant_bias) {
      b.Initializer("bias", {N}, bias);
    } else {
      b.Input("bias", {N});
    }
    b.Node("Gemm", {"a", "w"}, {"g"}).Int("transB", 1);
    b.Node("Add", {"g", "bias"}, {"y"});
    b.Output("y");
    auto model = b.Load();
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    std::vector<Tensor> inputs;
    inputs.push_back(MakeTensor({M, K}, a));
    if (!constant_bias) inputs.push_back(MakeTensor({N}, bias));
    auto out = (*model)->Run(inputs);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_TRUE(AllClose((*out)[0], {M, N}, want, 1e-4f, 1e-5f));
    EXPECT_EQ((*model)->stats().fused_post_ops, constant_bias ? 1 : 0);
  }
}

}  // namespace
}  // namespace ppml::test
