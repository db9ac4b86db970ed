// INT8 execution of QDQ models: a quantized Conv (with fused ReLU and a
// residual sum) and a quantized Gemm, run by the engine's INT8 path, against
// the exact QDQ semantics computed here in floating point. The engine folds
// requantization into oneDNN output scales, so its result may differ from
// the reference by rounding only: at most one quantization step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "tests/engine/onnx_builder.h"

namespace ppml::engine {
namespace {

using test::LimitedBudget;
using test::OnnxBuilder;

void AddTensor(OnnxBuilder& b, const std::string& name, const Shape& shape, int type,
               const std::vector<int32_t>& values) {
  onnx::TensorProto* t = b.proto().mutable_graph()->add_initializer();
  t->set_name(name);
  t->set_data_type(type);
  for (int64_t d : shape) t->add_dims(d);
  for (int32_t v : values) t->add_int32_data(v);
}

// x -> QuantizeLinear -> DequantizeLinear, the QDQ pattern the engine keeps in INT8.
void AddQdq(OnnxBuilder& b, const std::string& x, const std::string& out, float scale, int type) {
  b.ScalarFloat(out + "_scale", scale);
  AddTensor(b, out + "_zp", {}, type, {0});
  b.Node("QuantizeLinear", {x, out + "_scale", out + "_zp"}, {out + "_q"});
  b.Node("DequantizeLinear", {out + "_q", out + "_scale", out + "_zp"}, {out});
}

// Symmetric per-channel weights (7-bit values, exact on any ISA) behind a DequantizeLinear.
std::vector<float> AddQuantizedWeights(OnnxBuilder& b, const std::string& name, const Shape& shape, int64_t axis,
                                       uint64_t seed) {
  const int64_t channels = shape[axis];
  int64_t inner = 1;
  for (size_t d = axis + 1; d < shape.size(); ++d) inner *= shape[d];
  std::vector<float> scales;
  for (int64_t c = 0; c < channels; ++c) scales.push_back(0.01f + 0.002f * static_cast<float>(c));
  test::Rng rng(seed);
  std::vector<int32_t> q(static_cast<size_t>(ElementCount(shape)));
  std::vector<float> dequantized(q.size());
  for (size_t i = 0; i < q.size(); ++i) {
    q[i] = static_cast<int32_t>(std::lround(rng.Uniform(-63.f, 63.f)));
    dequantized[i] = static_cast<float>(q[i]) * scales[(i / inner) % channels];
  }
  AddTensor(b, name + "_q", shape, onnx::TensorProto::INT8, q);
  b.Initializer(name + "_scale", {channels}, scales);
  AddTensor(b, name + "_zp", {channels}, onnx::TensorProto::INT8, std::vector<int32_t>(channels, 0));
  b.Node("DequantizeLinear", {name + "_q", name + "_scale", name + "_zp"}, {name}).Int("axis", axis);
  return dequantized;
}

// The engine's INT8 result against the QDQ model run as written: the
// literal one reaches at least `min_largest` (the test computes something)
// and they differ by less than `relative` of its largest value.
void ExpectCloseToLiteral(const std::vector<float>& got, const std::vector<float>& literal, float min_largest,
                          float relative) {
  ASSERT_EQ(got.size(), literal.size());
  float largest = 0, worst = 0;
  for (size_t i = 0; i < literal.size(); ++i) {
    largest = std::max(largest, std::fabs(literal[i]));
    worst = std::max(worst, std::fabs(got[i] - literal[i]));
  }
  ASSERT_GT(largest, min_largest);
  EXPECT_LT(worst, relative * largest);
}

// Loads with `options` and runs once: the first output as floats (empty
// after a reported failure); `stats` receives the model's counters.
std::vector<float> RunOnce(const OnnxBuilder& b, const std::vector<Tensor>& inputs, const EngineOptions& options,
                           ModelStats* stats = nullptr) {
  auto model = b.Load(options);
  if (!model.ok()) {
    ADD_FAILURE() << model.status().ToString();
    return {};
  }
  auto out = (*model)->Run(inputs);
  if (!out.ok()) {
    ADD_FAILURE() << out.status().ToString();
    return {};
  }
  if (stats) *stats = (*model)->stats();
  return test::ToVector((*out)[0]);
}

// What a QDQ pair does to a value.
float FakeQuantize(float x, float scale, bool is_unsigned) {
  const float q = std::nearbyint(x / scale);
  return std::clamp(q, is_unsigned ? 0.f : -128.f, is_unsigned ? 255.f : 127.f) * scale;
}

std::vector<float> FakeQuantize(std::vector<float> v, float scale, bool is_unsigned) {
  for (float& x : v) x = FakeQuantize(x, scale, is_unsigned);
  return v;
}

// `same`: how far apart two values still count as the same (float ops after the INT8 ones).
void ExpectWithinOneStep(const std::vector<float>& got, const std::vector<float>& want, float step,
                         float same = 0.f) {
  ASSERT_EQ(got.size(), want.size());
  size_t exact = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_LE(std::fabs(got[i] - want[i]), step * 1.001f) << "element " << i;
    exact += std::fabs(got[i] - want[i]) <= same;
  }
  // Rounding ties aside, the INT8 result is the QDQ result.
  EXPECT_GT(static_cast<double>(exact) / static_cast<double>(got.size()), 0.95);
}

TEST(Int8Ops, ConvReluWithResidualMatchesQdqSemantics) {
  const Shape xs = {2, 8, 10, 10}, ws = {8, 8, 3, 3};
  const float sx = 4.f / 255, sy = 6.f / 255;
  OnnxBuilder b;
  b.Input("x", xs).Output("out");
  AddQdq(b, "x", "xq", sx, onnx::TensorProto::UINT8);
  const std::vector<float> w = AddQuantizedWeights(b, "w", ws, 0, 7);
  const std::vector<float> bias = test::RandomFloats(8, 11, -0.5f, 0.5f);
  b.Initializer("bias", {8}, bias);
  b.Node("Conv", {"xq", "w", "bias"}, {"conv"}).Ints("pads", {1, 1, 1, 1});
  b.Node("Add", {"conv", "xq"}, {"sum"});
  b.Node("Relu", {"sum"}, {"relu"});
  AddQdq(b, "relu", "y", sy, onnx::TensorProto::UINT8);
  // A reader after the pair (not the graph output itself) lets the engine keep y in INT8.
  b.Node("Identity", {"y"}, {"out"});

  const std::vector<float> x = test::RandomFloats(ElementCount(xs), 3, 0.f, 4.f);
  auto model = b.Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_GT((*model)->stats().quantized_tensors, 0);
  std::vector<Tensor> inputs;
  inputs.push_back(test::MakeTensor(xs, x));
  auto out = (*model)->Run(inputs);
  ASSERT_TRUE(out.ok()) << out.status().ToString();

  const std::vector<float> xq = FakeQuantize(x, sx, true);
  Shape ys;
  std::vector<float> want = test::naive::Conv2D(xq, xs, w, ws, bias, {.pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1}, &ys);
  for (size_t i = 0; i < want.size(); ++i) want[i] = FakeQuantize(std::max(0.f, want[i] + xq[i]), sy, true);
  ExpectWithinOneStep(test::ToVector((*out)[0]), want, sy);
}

TEST(Int8Ops, GemmMatchesQdqSemantics) {
  const float sx = 2.f / 255, sy = 3.f / 127;
  OnnxBuilder b;
  b.Input("x", {4, 32}).Output("out");
  AddQdq(b, "x", "xq", sx, onnx::TensorProto::UINT8);
  const std::vector<float> w = AddQuantizedWeights(b, "w", {10, 32}, 0, 5);  // transB: [N,K], per row
  const std::vector<float> c = test::RandomFloats(10, 9, -0.3f, 0.3f);
  b.Initializer("c", {10}, c);
  b.Node("Gemm", {"xq", "w", "c"}, {"gemm"}).Int("transB", 1);
  AddQdq(b, "gemm", "y", sy, onnx::TensorProto::INT8);
  b.Node("Identity", {"y"}, {"out"});

  const std::vector<float> x = test::RandomFloats(4 * 32, 13, 0.f, 2.f);
  std::vector<Tensor> inputs;
  inputs.push_back(test::MakeTensor({4, 32}, x));
  auto out = test::LoadAndRun(b, inputs);
  ASSERT_TRUE(out.ok()) << out.status().ToString();

  const std::vector<float> xq = FakeQuantize(x, sx, true);
  std::vector<float> want(4 * 10);
  for (int m = 0; m < 4; ++m) {
    for (int n = 0; n < 10; ++n) {
      double acc = c[n];
      for (int k = 0; k < 32; ++k) acc += static_cast<double>(xq[m * 32 + k]) * w[n * 32 + k];
      want[m * 10 + n] = FakeQuantize(static_cast<float>(acc), sy, false);
    }
  }
  ExpectWithinOneStep(test::ToVector((*out)[0]), want, sy);
}

// The INT8 kernels read the integers behind a weight's DequantizeLinear: its
// float form (4x the bytes) is never made, so a budget that holds the
// integers twice (stored and reordered) but not the floats is enough.
TEST(Int8Ops, QuantizedWeightsAreNotKeptAsFloats) {
  const Shape ws = {256, 256, 3, 3};
  const size_t float_bytes = static_cast<size_t>(ElementCount(ws)) * sizeof(float);
  OnnxBuilder b;
  b.Input("x", {1, 256, 4, 4}).Output("out");
  AddQdq(b, "x", "xq", 2.f / 255, onnx::TensorProto::UINT8);
  AddQuantizedWeights(b, "w", ws, 0, 21);
  b.Node("Conv", {"xq", "w"}, {"conv"}).Ints("pads", {1, 1, 1, 1});
  AddQdq(b, "conv", "y", 0.05f, onnx::TensorProto::INT8);
  b.Node("Identity", {"y"}, {"out"});
  LimitedBudget budget(float_bytes * 3 / 4);
  EngineOptions options;
  options.memory_budget = &budget;
  auto model = b.Load(options);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::vector<Tensor> inputs;
  inputs.push_back(test::MakeTensor({1, 256, 4, 4}, test::RandomFloats(256 * 16, 5, 0.f, 2.f)));
  auto out = (*model)->Run(inputs);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_LT(budget.peak(), float_bytes);
}

// A tensor kept quantized and read as floats by two nodes far apart: its
// float form must live until the second reader, though other values are
// made and dequantized in between (ConvNeXt's residual Add read the
// wrong bytes before: the float copy's arena space was given away after the
// first reader).
TEST(Int8Ops, DequantizedTensorLivesUntilItsLastReader) {
  const Shape xs = {2, 4, 3, 5};
  const auto x = test::RandomFloats(ElementCount(xs), 31, -2.f, 2.f);
  const float st = 2.f / 127, sm = 1e-3f / 127;
  OnnxBuilder b;
  b.Input("x", xs);
  b.Node("Transpose", {"x"}, {"t"}).Ints("perm", {0, 2, 3, 1});
  AddQdq(b, "t", "tq", st, onnx::TensorProto::INT8);
  b.Node("Sigmoid", {"tq"}, {"s"});
  b.Node("Transpose", {"x"}, {"u"}).Ints("perm", {0, 2, 3, 1});
  b.ScalarFloat("small", 5e-4f);
  b.Node("Mul", {"u", "small"}, {"m"});
  AddQdq(b, "m", "mq", sm, onnx::TensorProto::INT8);
  b.Node("Add", {"mq", "tq"}, {"y"});
  b.Output("y").Output("s");
  auto model = b.Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::vector<Tensor> inputs;
  inputs.push_back(test::MakeTensor(xs, x));
  auto out = (*model)->Run(inputs);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  // y[n,h,w,c] = fq(x * 5e-4) + fq(x), with x read at [n,c,h,w].
  std::vector<float> want;
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t h = 0; h < 3; ++h)
      for (int64_t w = 0; w < 5; ++w)
        for (int64_t c = 0; c < 4; ++c) {
          const float v = x[((n * 4 + c) * 3 + h) * 5 + w];
          want.push_back(FakeQuantize(v * 5e-4f, sm, false) + FakeQuantize(v, st, false));
        }
  const std::vector<float> got = test::ToVector((*out)[0]);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], st * 1.001f + sm) << "element " << i;
  EXPECT_EQ((*model)->stats().quantized_tensors, 2);

  // literal_qdq runs the Q/DQ nodes themselves, in float: the same values, nothing kept in INT8.
  EngineOptions literal;
  literal.literal_qdq = true;
  auto reference = b.Load(literal);
  ASSERT_TRUE(reference.ok()) << reference.status().ToString();
  EXPECT_EQ((*reference)->stats().quantized_tensors, 0);
  auto expected = (*reference)->Run(inputs);
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();
  const std::vector<float> literal_values = test::ToVector((*expected)[0]);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(literal_values[i], want[i], 1e-6f) << "element " << i;
}

// EfficientNet's pattern: SiLU (Sigmoid, Mul) between INT8 convolutions.
// The Mul writes its output quantized for the conv after it, and the first
// conv, read only by the float SiLU, writes floats already on its output
// grid: no quantizing or dequantizing pass between them, same values as
// the literal QDQ model (and exactly the QDQ arithmetic: on AVX2 without
// VNNI the weights used to lose their last bit, see ops_conv.cc).
TEST(Int8Ops, ConversionsAroundFloatOpsFoldIntoTheirNeighbours) {
  const Shape xs = {2, 8, 6, 6}, ws = {8, 8, 1, 1};
  const float sx = 4.f / 127, sc = 3.f / 127, sm = 2.f / 127;
  OnnxBuilder b;
  b.Input("x", xs).Output("out");
  AddQdq(b, "x", "xq", sx, onnx::TensorProto::INT8);
  const std::vector<float> w1 = AddQuantizedWeights(b, "w1", ws, 0, 41);
  const std::vector<float> w2 = AddQuantizedWeights(b, "w2", ws, 0, 42);
  const std::vector<float> bias = test::RandomFloats(8, 44, -1.f, 1.f);
  b.Initializer("bias", {8}, bias);
  b.Node("Conv", {"xq", "w1", "bias"}, {"c"});
  AddQdq(b, "c", "cq", sc, onnx::TensorProto::INT8);
  b.Node("Sigmoid", {"cq"}, {"s"});
  b.Node("Mul", {"cq", "s"}, {"m"});
  AddQdq(b, "m", "mq", sm, onnx::TensorProto::INT8);
  b.Node("Conv", {"mq", "w2"}, {"out"});

  const std::vector<float> x = test::RandomFloats(ElementCount(xs), 43, -3.f, 3.f);
  std::vector<Tensor> inputs;
  inputs.push_back(test::MakeTensor(xs, x));
  Shape ys;
  std::vector<float> m = test::naive::Conv2D(FakeQuantize(x, sx, false), xs, w1, ws, bias, {}, &ys);
  for (float& v : m) {
    v = FakeQuantize(v, sc, false);
    v = FakeQuantize(v / (1.f + std::exp(-v)), sm, false);
  }
  const std::vector<float> want = test::naive::Conv2D(m, ys, w2, ws, {}, {}, &ys);
  std::vector<std::vector<float>> results;
  std::vector<int> kernels;
  for (bool literal : {false, true}) {
    EngineOptions options;
    options.literal_qdq = literal;
    auto model = b.Load(options);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto out = (*model)->Run(inputs);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    results.push_back(test::ToVector((*out)[0]));
    kernels.push_back((*model)->stats().kernels);
  }
  // The INT8 convolutions accumulate exactly: float rounding of the scales aside, the values agree.
  ASSERT_EQ(results[0].size(), want.size());
  ASSERT_EQ(results[1].size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(results[0][i], want[i], 1e-4f) << "element " << i;
    ASSERT_NEAR(results[1][i], want[i], 1e-4f) << "element " << i;
  }
  // Quantize x, put it in the conv's layout, conv (floats on the grid),
  // Sigmoid, Mul (writes s8), conv, output to plain: 7 (9 with the passes).
  EXPECT_EQ(kernels[0], 7);
}

// A QDQ pair between a conv and its Relu rounds and clips the conv's output
// first: the Relu is not fused across it (fused, the clipping was lost).
TEST(Int8Ops, ReluAfterAQuantizedConvOutputSeesItClipped) {
  const Shape xs = {1, 8, 4, 4}, ws = {8, 8, 1, 1};
  const float sx = 4.f / 127, sc = 0.5f / 127;  // the conv's range is far wider than 0.5
  OnnxBuilder b;
  b.Input("x", xs).Output("out");
  AddQdq(b, "x", "xq", sx, onnx::TensorProto::INT8);
  const std::vector<float> w = AddQuantizedWeights(b, "w", ws, 0, 51);
  b.Node("Conv", {"xq", "w"}, {"c"});
  AddQdq(b, "c", "cq", sc, onnx::TensorProto::INT8);
  b.Node("Relu", {"cq"}, {"out"});
  const std::vector<float> x = test::RandomFloats(ElementCount(xs), 52, -3.f, 3.f);
  std::vector<Tensor> inputs;
  inputs.push_back(test::MakeTensor(xs, x));
  auto out = test::LoadAndRun(b, inputs, {});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  Shape ys;
  std::vector<float> want = test::naive::Conv2D(FakeQuantize(x, sx, false), xs, w, ws, {}, {}, &ys);
  for (float& v : want) v = std::max(0.f, FakeQuantize(v, sc, false));
  EXPECT_EQ(*std::max_element(want.begin(), want.end()), 127 * sc);  // the clipping is exercised
  ExpectWithinOneStep(test::ToVector((*out)[0]), want, sc);
}

// A Clip or HardSigmoid fused into an INT8 conv runs on the accumulator in
// units of the output's scale (its bounds and offset moved into those units):
// the bounds bind inside the 8-bit range here, so a wrong unit shows.
// Whether the output is read as stored or only as floats.
TEST(Int8Ops, BoundedActivationsFusedIntoAQuantizedConvClipInOutputUnits) {
  const Shape xs = {2, 8, 5, 5}, ws = {16, 8, 3, 3};
  const float sx = 3.f / 127;
  const std::vector<float> x = test::RandomFloats(ElementCount(xs), 61, -3.f, 3.f);
  struct Case {
    std::string op;
    float scale;  // of the output: its 8-bit range is wider than the activation's
    std::function<float(float)> f;
  };
  const std::vector<Case> cases = {
      {"Clip", 0.5f / 127, [](float v) { return std::clamp(v, -0.2f, 0.3f); }},
      {"HardSigmoid", 1.5f / 127, [](float v) { return std::clamp(0.4f * v + 0.25f, 0.f, 1.f); }},
      {"", 0.5f / 127, [](float v) { return v; }}};
  std::vector<int> kernels;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.op.empty() ? "no activation" : c.op);
    OnnxBuilder b;
    b.Input("x", xs).Output("out");
    AddQdq(b, "x", "xq", sx, onnx::TensorProto::INT8);
    const std::vector<float> w = AddQuantizedWeights(b, "w", ws, 0, 62);
    b.Node("Conv", {"xq", "w"}, {"c"}).Ints("pads", {1, 1, 1, 1});
    std::string activated = "c";
    if (c.op == "Clip") {
      b.ScalarFloat("lo", -0.2f).ScalarFloat("hi", 0.3f);
      b.Node("Clip", {"c", "lo", "hi"}, {"a"});
      activated = "a";
    } else if (c.op == "HardSigmoid") {
      b.Node("HardSigmoid", {"c"}, {"a"}).Float("alpha", 0.4f).Float("beta", 0.25f);
      activated = "a";
    }
    // Read as stored (Identity), or only as floats (Sigmoid): then the conv
    // writes floats on the output's grid.
    for (const bool read_as_float : {false, true}) {
      SCOPED_TRACE(read_as_float ? "read as float" : "read as stored");
      OnnxBuilder model_b = b;
      AddQdq(model_b, activated, "aq", c.scale, onnx::TensorProto::INT8);
      model_b.Node(read_as_float ? "Sigmoid" : "Identity", {"aq"}, {"out"});
      std::vector<Tensor> inputs;
      inputs.push_back(test::MakeTensor(xs, x));
      auto model = model_b.Load({});
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      auto out = (*model)->Run(inputs);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      if (!read_as_float) kernels.push_back((*model)->stats().kernels);
      Shape ys;
      std::vector<float> want = test::naive::Conv2D(FakeQuantize(x, sx, false), xs, w, ws, {}, {.pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1}, &ys);
      for (float& v : want) {
        v = FakeQuantize(c.f(v), c.scale, false);
        if (read_as_float) v = 1.f / (1.f + std::exp(-v));
      }
      ExpectWithinOneStep(test::ToVector((*out)[0]), want, c.scale, read_as_float ? 1e-6f : 0.f);
    }
  }
  // The activations add no step of their own.
  EXPECT_EQ(kernels[0], kernels[2]);
  EXPECT_EQ(kernels[1], kernels[2]);
}

// A squeeze-excitation scaling: an INT8 feature map times a per-channel
// gate, written quantized for the next conv. oneDNN's binary reads both
// operands as stored (scaled in the kernel) and writes 8 bits: no
// dequantizing pass over the feature map.
TEST(Int8Ops, ProductOfQuantizedOperandsReadsThemAsStored) {
  const Shape xs = {2, 16, 6, 6}, gs = {2, 16, 1, 1}, ws = {8, 16, 1, 1};
  const float sx = 3.f / 127, sg = 1.f / 255, sy = 2.f / 127;
  OnnxBuilder b;
  b.Input("x", xs).Input("g", gs).Output("out");
  AddQdq(b, "x", "xq", sx, onnx::TensorProto::INT8);
  AddQdq(b, "g", "gq", sg, onnx::TensorProto::UINT8);
  b.Node("Mul", {"xq", "gq"}, {"y"});
  AddQdq(b, "y", "yq", sy, onnx::TensorProto::INT8);
  const std::vector<float> w = AddQuantizedWeights(b, "w", ws, 0, 71);
  b.Node("Conv", {"yq", "w"}, {"out"});
  const std::vector<float> x = test::RandomFloats(ElementCount(xs), 72, -3.f, 3.f);
  const std::vector<float> g = test::RandomFloats(ElementCount(gs), 73, 0.f, 1.f);
  std::vector<Tensor> inputs;
  inputs.push_back(test::MakeTensor(xs, x));
  inputs.push_back(test::MakeTensor(gs, g));
  auto model = b.Load({});
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto out = (*model)->Run(inputs);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  std::vector<float> y(x.size());
  const int64_t plane = xs[2] * xs[3];
  for (size_t i = 0; i < x.size(); ++i) {
    y[i] = FakeQuantize(FakeQuantize(x[i], sx, false) * FakeQuantize(g[i / plane], sg, true), sy, false);
  }
  Shape os;
  const std::vector<float> want = test::naive::Conv2D(y, xs, w, ws, {}, {}, &os);
  // The conv sums 16 products, each off by at most one step of y times its weight.
  const std::vector<float> got = test::ToVector((*out)[0]);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 16 * sy * 0.2f) << "element " << i;
  // Quantize x and g, the product (s8 in x's plain layout), s8 into the
  // conv's layout, the conv, its output to plain: no step dequantizes an
  // operand (before, two more did).
  EXPECT_EQ((*model)->stats().kernels, 6);
}

// An activation fused into an INT8 conv that writes 8 bits for another INT8
// conv: ReLU6 in the output's units, HardSwish and SiLU (x * gate(x)) on
// real values. oneDNN 2.6 gave a second linear post-op the first one's
// scale, which turned these outputs to zeros: the engine's chains never
// repeat an algorithm. Checked against the QDQ model run as written.
TEST(Int8Ops, ActivationsFusedIntoAnInt8ConvFeedingAnother) {
  const Shape xs = {2, 8, 6, 6}, w1s = {16, 8, 3, 3}, w2s = {8, 16, 1, 1};
  const std::vector<float> x = test::RandomFloats(ElementCount(xs), 81, -3.f, 3.f);
  for (const std::string act : {"Clip", "HardSwish", "SiLU"}) {
    SCOPED_TRACE(act);
    OnnxBuilder b;
    b.Input("x", xs).Output("out");
    AddQdq(b, "x", "xq", 3.f / 127, onnx::TensorProto::INT8);
    AddQuantizedWeights(b, "w1", w1s, 0, 82);
    b.Node("Conv", {"xq", "w1"}, {"c"}).Ints("pads", {1, 1, 1, 1});
    if (act == "Clip") {
      b.ScalarFloat("lo", 0.f).ScalarFloat("hi", 6.f);
      b.Node("Clip", {"c", "lo", "hi"}, {"a"});
    } else {
      auto gate = b.Node(act == "SiLU" ? "Sigmoid" : "HardSigmoid", {"c"}, {"g"});
      if (act == "HardSwish") gate.Float("alpha", 1.f / 6);
      b.Node("Mul", {"c", "g"}, {"a"});
    }
    AddQdq(b, "a", "aq", 6.f / 127, onnx::TensorProto::INT8);
    AddQuantizedWeights(b, "w2", w2s, 0, 83);
    b.Node("Conv", {"aq", "w2"}, {"out"});
    std::vector<Tensor> inputs;
    inputs.push_back(test::MakeTensor(xs, x));
    std::vector<std::vector<float>> results;
    for (bool literal : {false, true}) {
      EngineOptions options;
      options.literal_qdq = literal;
      results.push_back(RunOnce(b, inputs, options));
    }
    // Rounding ties of the 8-bit activation aside, the two agree.
    ExpectCloseToLiteral(results[0], results[1], 0.1f, 0.05f);
  }
}

// Attention as a QDQ model writes it: q and k taken from one quantized
// tensor (Gather, Transpose: moved as stored, scale kept), scores q k^T of
// two quantized tensors, a float Softmax, then attention x v. With s8 v and
// VNNI both products run in INT8 and no step dequantizes an operand;
// oneDNN's INT8 products take B as s8 only, so with u8 v the second runs in
// float, and without VNNI (16-bit pair sums that full-range operands
// overflow) both do. All agree with the QDQ model run as written.
TEST(Int8Ops, AttentionProductsOfTwoQuantizedTensors) {
  const Shape qks = {2, 2, 3, 5, 8}, vs = {2, 3, 5, 8};  // [q|k], batch 2, 3 heads, 5 tokens, 8 dims
  const std::vector<float> qk = test::RandomFloats(ElementCount(qks), 91, -2.f, 2.f);
  const std::vector<float> v = test::RandomFloats(ElementCount(vs), 92, 0.f, 2.f);
  for (const int v_type : {onnx::TensorProto::INT8, onnx::TensorProto::UINT8}) {
    SCOPED_TRACE(v_type == onnx::TensorProto::INT8 ? "s8 v" : "u8 v");
    OnnxBuilder b;
    b.Input("qk", qks).Input("v", vs).Output("out");
    AddQdq(b, "qk", "qkq", 2.f / 127, onnx::TensorProto::INT8);
    b.ScalarInt64("zero", 0).ScalarInt64("one", 1);
    b.Node("Gather", {"qkq", "zero"}, {"q"});
    b.Node("Gather", {"qkq", "one"}, {"k"});
    b.Node("Transpose", {"k"}, {"kt"}).Ints("perm", {0, 1, 3, 2});
    AddQdq(b, "kt", "ktq", 2.f / 127, onnx::TensorProto::INT8);
    b.Node("MatMul", {"q", "ktq"}, {"scores"});
    b.Node("Softmax", {"scores"}, {"attention"}).Int("axis", -1);
    AddQdq(b, "attention", "aq", 1.f / 255, onnx::TensorProto::UINT8);
    AddQdq(b, "v", "vq", v_type == onnx::TensorProto::INT8 ? 2.f / 127 : 2.f / 255, v_type);
    b.Node("MatMul", {"aq", "vq"}, {"out"});
    std::vector<std::vector<float>> results;
    for (bool literal : {false, true}) {
      EngineOptions options;
      options.literal_qdq = literal;
      options.profile = true;
      auto model = b.Load(options);
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      std::vector<Tensor> inputs;
      inputs.push_back(test::MakeTensor(qks, qk));
      inputs.push_back(test::MakeTensor(vs, v));
      auto out = (*model)->Run(inputs);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      results.push_back(test::ToVector((*out)[0]));
      if (literal) continue;
      int products = 0, product_reorders = 0;
      for (const StepTime& step : (*model)->Profile()) {
        EXPECT_EQ(step.runs, 1) << step.node;
        if (step.op != "MatMul") continue;
        (step.kernel.rfind("matmul", 0) == 0 ? products : product_reorders) += 1;
      }
      EXPECT_EQ(products, 2);
      if (v_type == onnx::TensorProto::INT8 && CpuHasVnni()) {
        EXPECT_EQ(product_reorders, 0) << "a product's operand was dequantized";
      } else {
        EXPECT_GT(product_reorders, 0);
      }
    }
    ExpectCloseToLiteral(results[0], results[1], 0.5f, 0.02f);
  }
}

// MobileNetV2's expand and depthwise layers as a QDQ model writes them run
// as one oneDNN primitive (the 1x1 layer's depthwise post-op): stride 1 and
// 2, ReLU6 or HardSwish on the expanded tensor, an 8-bit or a float
// depthwise output, with and without a depthwise bias. The result is the
// pair's run apart, up to a step of rounding, and that of the QDQ model
// run as written. oneDNN fuses only where the expanded tensor would not stay in
// L2 anyway (twice the cores' L2): 8 MB here.
TEST(Int8Ops, PointwiseThenDepthwiseRunAsOnePrimitive) {
  const Shape xs = {2, 16, 256, 256}, w1s = {64, 16, 1, 1}, w2s = {64, 1, 3, 3};
  const std::vector<float> x = test::RandomFloats(ElementCount(xs), 95, -3.f, 3.f);
  struct Case {
    int64_t stride;
    bool hard_swish, dw_bias, quantized_out;
  };
  for (const Case c : {Case{1, false, true, true}, Case{2, false, true, true}, Case{1, true, false, false}}) {
    SCOPED_TRACE(::testing::Message() << "stride " << c.stride << (c.hard_swish ? ", HardSwish" : ", ReLU6")
                                      << (c.quantized_out ? ", 8-bit output" : ", float output"));
    OnnxBuilder b;
    b.Input("x", xs).Output("out");
    AddQdq(b, "x", "xq", 3.f / 127, onnx::TensorProto::INT8);
    AddQuantizedWeights(b, "w1", w1s, 0, 96);
    b.Initializer("b1", {w1s[0]}, test::RandomFloats(w1s[0], 97));
    b.Node("Conv", {"xq", "w1", "b1"}, {"e"});
    if (c.hard_swish) {
      b.Node("HardSwish", {"e"}, {"a"});
      AddQdq(b, "a", "aq", 4.f / 127, onnx::TensorProto::INT8);
    } else {
      b.ScalarFloat("lo", 0.f).ScalarFloat("hi", 6.f);
      b.Node("Clip", {"e", "lo", "hi"}, {"a"});
      AddQdq(b, "a", "aq", 6.f / 255, onnx::TensorProto::UINT8);
    }
    AddQuantizedWeights(b, "w2", w2s, 0, 98);
    std::vector<std::string> dw_inputs = {"aq", "w2"};
    if (c.dw_bias) {
      b.Initializer("b2", {w2s[0]}, test::RandomFloats(w2s[0], 99));
      dw_inputs.push_back("b2");
    }
    b.Node("Conv", dw_inputs, {"d"})
        .Int("group", w2s[0])
        .Ints("kernel_shape", {3, 3})
        .Ints("pads", {1, 1, 1, 1})
        .Ints("strides", {c.stride, c.stride});
    const float out_step = 8.f / 255;
    b.Node("Relu", {"d"}, {c.quantized_out ? "r" : "out"});
    if (c.quantized_out) AddQdq(b, "r", "out", out_step, onnx::TensorProto::UINT8);

    std::vector<Tensor> inputs;
    inputs.push_back(test::MakeTensor(xs, x));
    std::vector<std::vector<float>> results;
    for (const auto& [fuse_depthwise, literal] : {std::pair{true, false}, {false, false}, {false, true}}) {
      EngineOptions options;
      options.fuse_depthwise = fuse_depthwise;
      options.literal_qdq = literal;
      ModelStats stats;
      results.push_back(RunOnce(b, inputs, options, &stats));
      EXPECT_EQ(stats.fused_depthwise, fuse_depthwise && !literal ? 1 : 0);
    }
    ASSERT_FALSE(results[1].empty());
    const float largest = *std::max_element(results[1].begin(), results[1].end());
    ExpectWithinOneStep(results[0], results[1], c.quantized_out ? out_step : largest * 1e-6f);
    ASSERT_GT(largest, 1.f);
    // Against the model run as written: a rounding tie of the expanded
    // tensor taken the other way moves an output further (a few per million).
    const float tolerance = c.quantized_out ? 1.5f * out_step : 0.01f * largest;
    size_t far = 0;
    for (size_t i = 0; i < results[2].size(); ++i) far += std::fabs(results[0][i] - results[2][i]) > tolerance;
    EXPECT_LT(far, results[2].size() / 10000);
  }
}

}  // namespace
}  // namespace ppml::engine
