// The QDQ graph QuantizeToQdq writes for small models built in the test:
// which tensors get QuantizeLinear/DequantizeLinear pairs and with which
// type and scale, how weights and biases are stored, which nodes stay FP32
// and why, BatchNormalization folding, opset conversion, shared scales
// through MaxPool/Flatten/Concat, and that the ONNX checker accepts the
// result.
#include <gtest/gtest.h>
#include <onnx/checker.h>

#include <cmath>
#include <exception>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "common/dataset.h"
#include "engine/engine.h"
#include "int8/model_graph.h"
#include "int8/quantize.h"
#include "tests/engine/onnx_builder.h"
#include "tests/int8/int8_test_util.h"

namespace ppml::test {
namespace {

using int8::Calibration;
using int8::QuantizeOptions;
using int8::QuantizeSummary;

// conv1 (3->8) -> relu1 -> pool1 -> conv2 (8->16, no bias) -> bn2 -> relu2
//   -> flat -> fc1 (Gemm transB=1) -> relu3 -> fc2 (Gemm transB=0) -> softmax
OnnxBuilder SmallCnn() {
  OnnxBuilder b(13);
  b.Input("x", {-1, 3, 8, 8});
  b.Initializer("w1", {8, 3, 3, 3}, RandomFloats(8 * 27, 1, -0.5f, 0.5f));
  b.Initializer("b1", {8}, RandomFloats(8, 2, -0.1f, 0.1f));
  b.Node("Conv", {"x", "w1", "b1"}, {"c1"}, "conv1").Ints("pads", {1, 1, 1, 1});
  b.Node("Relu", {"c1"}, {"r1"}, "relu1");
  b.Node("MaxPool", {"r1"}, {"p1"}, "pool1").Ints("kernel_shape", {2, 2}).Ints("strides", {2, 2});
  b.Initializer("w2", {16, 8, 3, 3}, RandomFloats(16 * 72, 3, -0.3f, 0.3f));
  b.Node("Conv", {"p1", "w2"}, {"c2raw"}, "conv2").Ints("pads", {1, 1, 1, 1});
  b.Initializer("bn_scale", {16}, RandomFloats(16, 4, 0.5f, 1.5f));
  b.Initializer("bn_bias", {16}, RandomFloats(16, 5, -0.2f, 0.2f));
  b.Initializer("bn_mean", {16}, RandomFloats(16, 6, -0.1f, 0.1f));
  b.Initializer("bn_var", {16}, RandomFloats(16, 7, 0.5f, 2.0f));
  b.Node("BatchNormalization", {"c2raw", "bn_scale", "bn_bias", "bn_mean", "bn_var"}, {"c2"}, "bn2");
  b.Node("Relu", {"c2"}, {"r2"}, "relu2");
  b.Node("MaxPool", {"r2"}, {"p2"}, "pool2").Ints("kernel_shape", {2, 2}).Ints("strides", {2, 2});
  b.Node("Flatten", {"p2"}, {"flat"}, "flatten");
  b.Initializer("fc1_w", {32, 64}, RandomFloats(32 * 64, 8, -0.2f, 0.2f));
  b.Initializer("fc1_b", {32}, RandomFloats(32, 9, -0.1f, 0.1f));
  b.Node("Gemm", {"flat", "fc1_w", "fc1_b"}, {"h"}, "fc1").Int("transB", 1);
  b.Node("Relu", {"h"}, {"r3"}, "relu3");
  b.Initializer("fc2_w", {32, 10}, RandomFloats(320, 10, -0.3f, 0.3f));
  b.Initializer("fc2_b", {10}, RandomFloats(10, 11, -0.1f, 0.1f));
  b.Node("Gemm", {"r3", "fc2_w", "fc2_b"}, {"logits"}, "fc2");
  b.Node("Softmax", {"logits"}, {"y"}, "softmax").Int("axis", 1);
  b.Output("y", {-1, 10});
  return b;
}

Calibration CalibrateOn(const std::string& model, const std::string& spec) {
  auto input = int8::ModelInputOf(model);
  EXPECT_TRUE(input.ok()) << input.status().ToString();
  auto set = int8::LoadCalibrationSet(spec, input->shape, input->dtype);
  EXPECT_TRUE(set.ok()) << set.status().ToString();
  auto cal = int8::Calibrate(model, *set, int8::CalibrationMethod::kMinMax, QuietCalibration());
  EXPECT_TRUE(cal.ok()) << cal.status().ToString();
  return cal.ok() ? std::move(cal).value() : Calibration{};
}

void ExpectCheckerAccepts(const ModelView& m) {
  try {
    onnx::checker::check_model(m.proto());
  } catch (const std::exception& e) {
    ADD_FAILURE() << "onnx checker: " << e.what();
  }
}

// The DequantizeLinear output that replaced `tensor` for its readers, after
// checking the Q -> DQ pair around it; "" on failure.
std::string ExpectQdqPair(const ModelView& m, const std::string& tensor, int zero_point_type, float scale) {
  const onnx::NodeProto* q = m.Node(tensor + "_QuantizeLinear");
  const onnx::NodeProto* dq = m.Node(tensor + "_DequantizeLinear");
  if (!q || !dq) {
    ADD_FAILURE() << "no Q/DQ pair for '" << tensor << "'";
    return "";
  }
  EXPECT_EQ(q->op_type(), "QuantizeLinear");
  EXPECT_EQ(dq->op_type(), "DequantizeLinear");
  EXPECT_EQ(q->input(0), tensor);
  EXPECT_EQ(q->input(1), tensor + "_scale");
  EXPECT_EQ(q->input(2), tensor + "_zero_point");
  EXPECT_EQ(q->output(0), tensor + "_QuantizeLinear_Output");
  EXPECT_EQ(dq->input(0), q->output(0));
  EXPECT_EQ(dq->input(1), q->input(1));
  EXPECT_EQ(dq->input(2), q->input(2));
  EXPECT_EQ(dq->output(0), tensor + "_DequantizeLinear_Output");
  const onnx::TensorProto* s = m.Initializer(tensor + "_scale");
  const onnx::TensorProto* z = m.Initializer(tensor + "_zero_point");
  if (!s || !z) {
    ADD_FAILURE() << "no scale or zero point for '" << tensor << "'";
    return "";
  }
  EXPECT_EQ(s->dims_size(), 0) << "per-tensor scale is a scalar";
  EXPECT_EQ(z->dims_size(), 0);
  EXPECT_EQ(s->data_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(z->data_type(), zero_point_type) << tensor;
  EXPECT_FLOAT_EQ(m.Values<float>(tensor + "_scale").at(0), scale) << tensor;
  if (zero_point_type == onnx::TensorProto::UINT8) {
    EXPECT_EQ(m.Values<uint8_t>(tensor + "_zero_point").at(0), 0);
  } else {
    EXPECT_EQ(m.Values<int8_t>(tensor + "_zero_point").at(0), 0);
  }
  // Only the Q node reads the float tensor; everyone else reads the DQ output.
  for (const onnx::NodeProto* r : m.Readers(tensor)) EXPECT_EQ(r, q) << tensor << " is also read by " << r->name();
  return dq->output(0);
}

float Threshold(const Calibration& cal, const std::string& t) {
  const int8::TensorStats* s = cal.Find(t);
  EXPECT_NE(s, nullptr) << "no statistics for " << t;
  return s ? s->threshold : 0;
}

// Preparation (BN folding, naming, sorting) must not change what the model computes.
TEST(QdqGraph, PreparedModelComputesWhatTheOriginalDoes) {
  const std::string fp32 = SmallCnn().Serialize();
  auto prepared = int8::PrepareModel(fp32);
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  ASSERT_EQ(prepared->folded_batchnorms.size(), 1u);
  EXPECT_EQ(prepared->folded_batchnorms[0], std::make_pair(std::string("bn2"), std::string("conv2")));
  std::string bytes;
  ASSERT_TRUE(prepared->model.SerializeToString(&bytes));
  auto as_span = [](const std::string& s) { return std::as_bytes(std::span<const char>(s.data(), s.size())); };
  engine::EngineOptions unfused;
  unfused.fuse = false;  // the engine's own BN folding must not hide a mistake in ours
  auto original = engine::Model::LoadBytes(as_span(fp32), "original", unfused);
  auto folded = engine::Model::LoadBytes(as_span(bytes), "prepared", unfused);
  ASSERT_TRUE(original.ok() && folded.ok());
  auto set = int8::LoadCalibrationSet("random:16", {-1, 3, 8, 8});
  ASSERT_TRUE(set.ok());
  const Tensor& x = set->samples;
  auto want = (*original)->Run(std::span<const Tensor>(&x, 1));
  auto got = (*folded)->Run(std::span<const Tensor>(&x, 1));
  ASSERT_TRUE(want.ok() && got.ok());
  EXPECT_TRUE(AllClose((*got)[0], (*want)[0].shape(), ToVector((*want)[0]), 1e-4f, 1e-6f));
}

TEST(QdqGraph, SmallCnnLayout) {
  const std::string fp32 = SmallCnn().Serialize();
  const Calibration cal = CalibrateOn(fp32, "random:16");
  QuantizeSummary summary;
  QuantizeOptions options;  // conv1 FP32 as asked: the layout of both kinds of layer
  options.keep_first_conv_fp32 = true;
  auto qdq = int8::QuantizeToQdq(fp32, cal, options, &summary);
  ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();
  ModelView m(*qdq);
  ASSERT_TRUE(m.ok());
  EXPECT_GE(m.Opset(), 13);
  ExpectCheckerAccepts(m);

  // BatchNormalization folded into conv2, which now writes c2.
  EXPECT_EQ(m.Count("BatchNormalization"), 0);
  ASSERT_NE(m.Node("conv2"), nullptr);
  EXPECT_EQ(m.Node("conv2")->output(0), "c2");

  // conv1 stays FP32 (3 input channels): raw float weights, raw input.
  const onnx::NodeProto* conv1 = m.Node("conv1");
  ASSERT_NE(conv1, nullptr);
  EXPECT_EQ(conv1->input(0), "x");
  EXPECT_EQ(conv1->input(1), "w1");
  EXPECT_EQ(m.Initializer("w1")->data_type(), onnx::TensorProto::FLOAT);

  // conv2 reads pool1's output as u8 (a max pool of a Relu).
  const float p1_scale = Threshold(cal, "p1") / 255;
  const std::string p1_dq = ExpectQdqPair(m, "p1", onnx::TensorProto::UINT8, p1_scale);
  const onnx::NodeProto* conv2 = m.Node("conv2");
  EXPECT_EQ(conv2->input(0), p1_dq);

  // conv2's weights: int8 per output channel, read through DequantizeLinear(axis 0).
  const onnx::NodeProto* w2_dq = m.Producer(conv2->input(1));
  ASSERT_NE(w2_dq, nullptr);
  EXPECT_EQ(w2_dq->op_type(), "DequantizeLinear");
  EXPECT_EQ(IntAttribute(*w2_dq, "axis", -1), 0);
  const onnx::TensorProto* w2q = m.Initializer(w2_dq->input(0));
  ASSERT_NE(w2q, nullptr);
  EXPECT_EQ(w2q->data_type(), onnx::TensorProto::INT8);
  EXPECT_EQ(w2q->dims_size(), 4);
  EXPECT_EQ(w2q->dims(0), 16);
  const std::vector<float> w2_scales = m.Values<float>(w2_dq->input(1));
  ASSERT_EQ(w2_scales.size(), 16u);
  EXPECT_EQ(m.Initializer(w2_dq->input(1))->dims(0), 16);
  const std::vector<int8_t> w2_zp = m.Values<int8_t>(w2_dq->input(2));
  EXPECT_EQ(m.Initializer(w2_dq->input(2))->data_type(), onnx::TensorProto::INT8);
  EXPECT_EQ(w2_zp, std::vector<int8_t>(16, 0));
  const std::vector<int8_t> w2_values = m.Values<int8_t>(w2_dq->input(0));
  for (int c = 0; c < 16; ++c) {
    int max_abs = 0;
    for (int k = 0; k < 72; ++k) max_abs = std::max(max_abs, std::abs(static_cast<int>(w2_values[c * 72 + k])));
    EXPECT_EQ(max_abs, 127) << "channel " << c << " uses the full symmetric range";
  }

  // conv2's bias (from the folded BN): int32 = round(b / (s_x * s_w[c])), read through DQ(axis 0).
  ASSERT_EQ(conv2->input_size(), 3);
  const onnx::NodeProto* b2_dq = m.Producer(conv2->input(2));
  ASSERT_NE(b2_dq, nullptr);
  EXPECT_EQ(b2_dq->op_type(), "DequantizeLinear");
  EXPECT_EQ(IntAttribute(*b2_dq, "axis", -1), 0);
  EXPECT_EQ(m.Initializer(b2_dq->input(0))->data_type(), onnx::TensorProto::INT32);
  EXPECT_EQ(m.Initializer(b2_dq->input(2))->data_type(), onnx::TensorProto::INT32);
  const std::vector<float> b2_scales = m.Values<float>(b2_dq->input(1));
  ASSERT_EQ(b2_scales.size(), 16u);
  for (int c = 0; c < 16; ++c) EXPECT_FLOAT_EQ(b2_scales[c], p1_scale * w2_scales[c]);
  EXPECT_EQ(m.Values<int32_t>(b2_dq->input(2)), std::vector<int32_t>(16, 0));

  // conv2 -> relu2 stays float between them; the Q/DQ pair follows the Relu.
  EXPECT_EQ(m.Node("relu2")->input(0), "c2");
  EXPECT_EQ(m.Node("c2_QuantizeLinear"), nullptr);
  const float r2_t = std::max(Threshold(cal, "r2"), std::max(Threshold(cal, "p2"), Threshold(cal, "flat")));
  const std::string r2_dq = ExpectQdqPair(m, "r2", onnx::TensorProto::UINT8, r2_t / 255);
  EXPECT_EQ(m.Node("pool2")->input(0), r2_dq);
  // pool2 and flatten pass INT8 through with the same scale.
  const std::string p2_dq = ExpectQdqPair(m, "p2", onnx::TensorProto::UINT8, r2_t / 255);
  EXPECT_EQ(m.Node("flatten")->input(0), p2_dq);
  const std::string flat_dq = ExpectQdqPair(m, "flat", onnx::TensorProto::UINT8, r2_t / 255);

  // fc1: INT8 Gemm, transB=1 -> per-channel axis 0, output after relu3.
  const onnx::NodeProto* fc1 = m.Node("fc1");
  EXPECT_EQ(fc1->input(0), flat_dq);
  const onnx::NodeProto* fc1_w = m.Producer(fc1->input(1));
  ASSERT_NE(fc1_w, nullptr);
  EXPECT_EQ(fc1_w->op_type(), "DequantizeLinear");
  EXPECT_EQ(IntAttribute(*fc1_w, "axis", -1), 0);
  EXPECT_EQ(m.Values<float>(fc1_w->input(1)).size(), 32u);
  EXPECT_EQ(m.Producer(fc1->input(2))->op_type(), "DequantizeLinear");
  // fc2 is the last layer: FP32, float weights. It is r3's only reader, so
  // r3 is not rounded to 8 bits only to be read back as float: fc1 writes it
  // in float.
  EXPECT_EQ(m.Node("r3_QuantizeLinear"), nullptr);
  const onnx::NodeProto* fc2 = m.Node("fc2");
  EXPECT_EQ(fc2->input(0), "r3");
  EXPECT_EQ(fc2->input(1), "fc2_w");
  EXPECT_EQ(fc2->input(2), "fc2_b");
  EXPECT_EQ(m.Node("softmax")->input(0), "logits");
  EXPECT_EQ(m.graph().output(0).name(), "y");

  // The original float weights of quantized layers are gone.
  EXPECT_EQ(m.Initializer("w2"), nullptr);
  EXPECT_EQ(m.Initializer("fc1_w"), nullptr);
  EXPECT_EQ(m.Count("QuantizeLinear"), 4);  // p1, r2, p2, flat

  // The summary explains every decision.
  EXPECT_EQ(summary.folded_batchnorms, 1);
  EXPECT_EQ(summary.quantized_weights, 2);
  EXPECT_EQ(summary.quantized_tensors, 4);
  std::map<std::string, int8::NodeQuantization> rows;
  for (const auto& r : summary.nodes) rows[r.name] = r;
  EXPECT_EQ(rows["conv1"].precision, "fp32");
  EXPECT_NE(rows["conv1"].reason.find("3 channel"), std::string::npos) << rows["conv1"].reason;
  EXPECT_EQ(rows["conv2"].precision, "int8");
  EXPECT_EQ(rows["conv2"].input_type, "u8");
  EXPECT_FLOAT_EQ(rows["conv2"].input_threshold, Threshold(cal, "p1"));
  EXPECT_EQ(rows["bn2"].precision, "folded");
  EXPECT_EQ(rows["relu2"].precision, "int8");
  EXPECT_EQ(rows["fc1"].precision, "int8");
  EXPECT_EQ(rows["fc2"].precision, "fp32");
  EXPECT_NE(rows["fc2"].reason.find("last layer"), std::string::npos);
  EXPECT_EQ(rows["softmax"].precision, "fp32");
  const std::string table = summary.ToTable();
  EXPECT_NE(table.find("conv2"), std::string::npos);
  EXPECT_NE(table.find("folded"), std::string::npos);
}

TEST(QdqGraph, MixedPrecisionOptions) {
  const std::string fp32 = SmallCnn().Serialize();
  const Calibration cal = CalibrateOn(fp32, "random:8");
  QuantizeOptions all;  // the first conv is INT8 by default
  all.keep_last_fp32 = false;
  QuantizeSummary summary;
  auto qdq = int8::QuantizeToQdq(fp32, cal, all, &summary);
  ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();
  ModelView m(*qdq);
  ExpectCheckerAccepts(m);
  // The graph input is quantized s8 (nothing makes it non-negative by construction).
  const std::string x_dq = ExpectQdqPair(m, "x", onnx::TensorProto::INT8, Threshold(cal, "x") / 127);
  EXPECT_EQ(m.Node("conv1")->input(0), x_dq);
  // fc2 is INT8 too; its output feeds only a float Softmax, so it stays float.
  EXPECT_EQ(m.Producer(m.Node("fc2")->input(1))->op_type(), "DequantizeLinear");
  EXPECT_EQ(IntAttribute(*m.Producer(m.Node("fc2")->input(1)), "axis", -1), 1);  // transB=0: [K,N], axis 1
  EXPECT_EQ(m.Node("logits_QuantizeLinear"), nullptr);
  EXPECT_EQ(m.Node("softmax")->input(0), "logits");

  QuantizeOptions some;
  some.fp32_nodes = {"fc1"};
  auto qdq2 = int8::QuantizeToQdq(fp32, cal, some, &summary);
  ASSERT_TRUE(qdq2.ok());
  ModelView m2(*qdq2);
  EXPECT_EQ(m2.Node("fc1")->input(1), "fc1_w");
  for (const auto& r : summary.nodes) {
    if (r.name == "fc1") {
      EXPECT_EQ(r.reason, "listed in fp32_nodes");
    }
  }
}

TEST(QdqGraph, ReduceRangeWritesSevenBitWeights) {
  const std::string fp32 = SmallCnn().Serialize();
  const Calibration cal = CalibrateOn(fp32, "random:8");
  QuantizeOptions options;
  options.reduce_range = true;
  auto qdq = int8::QuantizeToQdq(fp32, cal, options);
  ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();
  ModelView m(*qdq);
  const onnx::NodeProto* w_dq = m.Producer(m.Node("conv2")->input(1));
  ASSERT_NE(w_dq, nullptr);
  const std::vector<int8_t> q = m.Values<int8_t>(w_dq->input(0));
  ASSERT_EQ(q.size(), 16u * 72);
  for (int c = 0; c < 16; ++c) {
    int max_abs = 0;
    for (int k = 0; k < 72; ++k) max_abs = std::max(max_abs, std::abs(static_cast<int>(q[c * 72 + k])));
    EXPECT_EQ(max_abs, 63) << "channel " << c;
  }
}

// Two branches concatenated, a residual Add followed by Relu, and a global
// average pool: Concat inputs and output share one scale; the Add's inputs
// and output are quantized; the pool gets its own scale.
TEST(QdqGraph, ConcatAddAndPool) {
  OnnxBuilder b(13);
  b.Input("x", {-1, 8, 6, 6});
  b.Initializer("wa", {8, 8, 1, 1}, RandomFloats(64, 21, -0.5f, 0.5f));
  b.Node("Conv", {"x", "wa"}, {"ca"}, "conv_a");
  b.Node("Relu", {"ca"}, {"a"}, "relu_a");
  b.Initializer("wb", {8, 8, 1, 1}, RandomFloats(64, 22, -0.5f, 0.5f));
  b.Node("Conv", {"x", "wb"}, {"bb"}, "conv_b");
  b.Node("Concat", {"a", "bb"}, {"cat"}, "concat").Int("axis", 1);
  b.Initializer("wc", {8, 16, 1, 1}, RandomFloats(128, 23, -0.5f, 0.5f));
  b.Node("Conv", {"cat", "wc"}, {"cc"}, "conv_c");
  b.Node("Add", {"cc", "a"}, {"sum"}, "add");
  b.Node("Relu", {"sum"}, {"r"}, "relu_sum");
  b.Node("GlobalAveragePool", {"r"}, {"gap"}, "gap");
  b.Node("Flatten", {"gap"}, {"f"}, "flatten");
  b.Initializer("fw", {10, 8}, RandomFloats(80, 24, -0.5f, 0.5f));
  b.Node("Gemm", {"f", "fw"}, {"y"}, "fc").Int("transB", 1);
  b.Output("y", {-1, 10});
  const std::string fp32 = b.Serialize();
  const Calibration cal = CalibrateOn(fp32, "random:8");
  QuantizeSummary summary;
  QuantizeOptions options;  // an INT8 fc reads f, so INT8 flows through the pool and Flatten
  options.keep_last_fp32 = false;
  auto qdq = int8::QuantizeToQdq(fp32, cal, options, &summary);
  ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();
  ModelView m(*qdq);
  ExpectCheckerAccepts(m);

  const float cat_t = std::max({Threshold(cal, "a"), Threshold(cal, "bb"), Threshold(cal, "cat")});
  // bb is not non-negative, so the whole group is s8.
  ExpectQdqPair(m, "a", onnx::TensorProto::INT8, cat_t / 127);
  ExpectQdqPair(m, "bb", onnx::TensorProto::INT8, cat_t / 127);
  ExpectQdqPair(m, "cat", onnx::TensorProto::INT8, cat_t / 127);
  const std::string cc_dq = ExpectQdqPair(m, "cc", onnx::TensorProto::INT8, Threshold(cal, "cc") / 127);
  const onnx::NodeProto* add = m.Node("add");
  EXPECT_EQ(add->input(0), cc_dq);
  EXPECT_EQ(add->input(1), "a_DequantizeLinear_Output");
  EXPECT_EQ(m.Node("relu_sum")->input(0), "sum");
  ExpectQdqPair(m, "r", onnx::TensorProto::UINT8, Threshold(cal, "r") / 255);
  // The pool's output has its own scale; flatten shares it.
  const float gap_t = std::max(Threshold(cal, "gap"), Threshold(cal, "f"));
  ExpectQdqPair(m, "gap", onnx::TensorProto::UINT8, gap_t / 255);
  ExpectQdqPair(m, "f", onnx::TensorProto::UINT8, gap_t / 255);
  EXPECT_EQ(m.Producer(m.Node("fc")->input(1))->op_type(), "DequantizeLinear");
  for (const auto& r : summary.nodes) {
    if (r.name == "concat" || r.name == "add" || r.name == "gap" || r.name == "conv_a" || r.name == "fc") {
      EXPECT_EQ(r.precision, "int8") << r.name << ": " << r.reason;
    }
  }
}

// An opset-10 model comes out at opset 13; Clip(min=0) makes a u8 tensor.
// Calibration thresholds are given by hand: no engine run needed.
TEST(QdqGraph, OpsetConversionAndClip) {
  OnnxBuilder b(10);
  b.Input("x", {1, 8, 4, 4});
  b.Initializer("w1", {8, 8, 3, 3}, RandomFloats(576, 31, -0.5f, 0.5f));
  b.Node("Conv", {"x", "w1"}, {"c1"}, "conv1").Ints("pads", {1, 1, 1, 1});
  b.Node("Clip", {"c1"}, {"k1"}, "clip1").Float("min", 0.f).Float("max", 6.f);
  b.Initializer("w2", {4, 8, 1, 1}, RandomFloats(32, 32, -0.5f, 0.5f));
  b.Node("Conv", {"k1", "w2"}, {"y"}, "conv2");
  b.Output("y", {1, 4, 4, 4});
  Calibration cal;
  cal.tensors["x"].threshold = 2.f;
  cal.tensors["c1"].threshold = 7.f;
  cal.tensors["k1"].threshold = 6.f;
  cal.tensors["y"].threshold = 3.f;
  QuantizeSummary summary;
  auto qdq = int8::QuantizeToQdq(b.Serialize(), cal, {}, &summary);
  ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();
  ModelView m(*qdq);
  EXPECT_EQ(m.Opset(), 13);
  EXPECT_GE(m.proto().ir_version(), 7);
  ExpectCheckerAccepts(m);
  const onnx::NodeProto* clip = m.Node("clip1");
  ASSERT_NE(clip, nullptr);
  EXPECT_EQ(clip->input_size(), 3);  // min/max became inputs at opset 11
  ExpectQdqPair(m, "x", onnx::TensorProto::INT8, 2.f / 127);
  const std::string k1_dq = ExpectQdqPair(m, "k1", onnx::TensorProto::UINT8, 6.f / 255);
  EXPECT_EQ(m.Node("conv2")->input(0), k1_dq);
  // y is a graph output nobody reads: it stays FP32.
  EXPECT_EQ(m.Node("y_QuantizeLinear"), nullptr);
  EXPECT_EQ(m.graph().output(0).name(), "y");
}

// Activations the engine folds into a Conv put the Conv's Q/DQ pair after
// them: a Sigmoid (its only reader, u8 as it is never negative) and
// x * HardSigmoid(x) as MobileNetV3 exports HardSwish (both of x's readers).
// A HardSigmoid of other constants is no HardSwish: the pair stays on x.
TEST(QdqGraph, FusedActivationsAndGatesTakeTheConvOutputPair) {
  for (const float alpha : {1.f / 6, 0.2f}) {
    SCOPED_TRACE(alpha);
    OnnxBuilder b(13);
    b.Input("x", {1, 8, 4, 4});
    b.Initializer("w1", {8, 8, 3, 3}, RandomFloats(576, 33, -0.5f, 0.5f));
    b.Node("Conv", {"x", "w1"}, {"c1"}, "conv1").Ints("pads", {1, 1, 1, 1});
    b.Node("HardSigmoid", {"c1"}, {"g1"}, "gate1").Float("alpha", alpha);
    b.Node("Mul", {"c1", "g1"}, {"hs1"}, "mul1");
    b.Initializer("w2", {8, 8, 1, 1}, RandomFloats(64, 34, -0.5f, 0.5f));
    b.Node("Conv", {"hs1", "w2"}, {"c2"}, "conv2");
    b.Node("Sigmoid", {"c2"}, {"s2"}, "sigmoid2");
    b.Initializer("w3", {4, 8, 1, 1}, RandomFloats(32, 35, -0.5f, 0.5f));
    b.Node("Conv", {"s2", "w3"}, {"y"}, "conv3");
    b.Output("y", {1, 4, 4, 4});
    Calibration cal;
    for (const char* t : {"x", "c1", "g1", "hs1", "c2", "s2", "y"}) cal.tensors[t].threshold = 2.f;
    QuantizeSummary summary;
    auto qdq = int8::QuantizeToQdq(b.Serialize(), cal, {}, &summary);
    ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();
    ModelView m(*qdq);
    ExpectCheckerAccepts(m);
    EXPECT_EQ(m.Node("c2_QuantizeLinear"), nullptr);
    EXPECT_EQ(m.Node("conv3")->input(0), ExpectQdqPair(m, "s2", onnx::TensorProto::UINT8, 2.f / 255));
    EXPECT_EQ(m.Node("conv2")->input(0), ExpectQdqPair(m, "hs1", onnx::TensorProto::INT8, 2.f / 127));
    if (alpha == 0.2f) {
      const std::string c1_dq = ExpectQdqPair(m, "c1", onnx::TensorProto::INT8, 2.f / 127);
      EXPECT_EQ(m.Node("gate1")->input(0), c1_dq);
      continue;
    }
    EXPECT_EQ(m.Node("c1_QuantizeLinear"), nullptr);
    EXPECT_EQ(m.Node("gate1")->input(0), "c1");
    bool described = false;
    for (const auto& row : summary.nodes) {
      if (row.name == "conv1") described = row.reason.find("output after its HardSigmoid Mul") != std::string::npos;
    }
    EXPECT_TRUE(described);
  }
}

// A transformer's dense layer as torch exports it: MatMul, a bias Add and
// GELU written out (x * 0.5 * (1 + Erf(x / sqrt 2))). The engine folds all
// of them into the MatMul (engine::FusedOutputs), so the output pair goes
// after the GELU. The second layer's output feeds only a float Softmax: it
// is not rounded to 8 bits only to be read back as float.
TEST(QdqGraph, DenseLayerTakesItsBiasAndGeluAndAFloatReaderGetsFloat) {
  OnnxBuilder b(13);
  b.Input("x", {-1, 4, 16});
  b.Initializer("w1", {16, 32}, RandomFloats(512, 51, -0.5f, 0.5f));
  b.Initializer("b1", {32}, RandomFloats(32, 52, -0.5f, 0.5f));
  b.Node("MatMul", {"x", "w1"}, {"h"}, "mm1");
  b.Node("Add", {"b1", "h"}, {"hb"}, "bias1");
  b.ScalarFloat("sqrt2", std::sqrt(2.f)).ScalarFloat("one", 1.f).ScalarFloat("half", 0.5f);
  b.Node("Div", {"hb", "sqrt2"}, {"d"}, "div");
  b.Node("Erf", {"d"}, {"e"}, "erf");
  b.Node("Add", {"e", "one"}, {"e1"}, "plus_one");
  b.Node("Mul", {"hb", "e1"}, {"m"}, "times_x");
  b.Node("Mul", {"m", "half"}, {"g"}, "half");
  b.Initializer("w2", {32, 8}, RandomFloats(256, 53, -0.5f, 0.5f));
  b.Node("MatMul", {"g", "w2"}, {"y"}, "mm2");
  b.Node("Softmax", {"y"}, {"p"}, "softmax").Int("axis", -1);
  b.Output("p", {-1, 4, 8});
  const std::string fp32 = b.Serialize();
  const Calibration cal = CalibrateOn(fp32, "random:8");
  QuantizeOptions options;
  options.keep_last_fp32 = false;
  options.reduce_range = !engine::CpuHasVnni();  // as `ppml model quantize` does: exact sums without VNNI
  QuantizeSummary summary;
  auto qdq = int8::QuantizeToQdq(fp32, cal, options, &summary);
  ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();
  ModelView m(*qdq);
  ExpectCheckerAccepts(m);
  for (const char* t : {"h", "hb", "m", "y"}) EXPECT_EQ(m.Node(std::string(t) + "_QuantizeLinear"), nullptr) << t;
  EXPECT_EQ(m.Node("mm2")->input(0), ExpectQdqPair(m, "g", onnx::TensorProto::INT8, Threshold(cal, "g") / 127));
  EXPECT_EQ(m.Node("softmax")->input(0), "y");
  std::map<std::string, int8::NodeQuantization> rows;
  for (const auto& r : summary.nodes) rows[r.name] = r;
  EXPECT_EQ(rows["mm1"].precision, "int8");
  EXPECT_NE(rows["mm1"].reason.find("output after its Add Div Erf Add Mul Mul"), std::string::npos)
      << rows["mm1"].reason;
  EXPECT_EQ(rows["erf"].precision, "int8") << rows["erf"].reason;
  EXPECT_EQ(rows["mm2"].precision, "int8");

  // The engine runs it as two INT8 products, the first with its bias and
  // GELU fused, and agrees with the QDQ model run as written.
  auto as_span = [](const std::string& s) { return std::as_bytes(std::span<const char>(s.data(), s.size())); };
  std::vector<std::vector<float>> results;
  for (bool literal : {false, true}) {
    engine::EngineOptions engine_options;
    engine_options.literal_qdq = literal;
    auto model = engine::Model::LoadBytes(as_span(*qdq), "dense.int8.onnx", engine_options);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    if (!literal) {
      EXPECT_EQ((*model)->stats().fused_gelus, 1);
      EXPECT_EQ((*model)->stats().fused_post_ops, 2);  // mm1's bias and GELU
    }
    auto set = int8::LoadCalibrationSet("random:3", {-1, 4, 16});
    ASSERT_TRUE(set.ok());
    auto out = (*model)->Run(std::span<const Tensor>(&set->samples, 1));
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    const auto v = (*out)[0].values<float>();
    results.emplace_back(v.begin(), v.end());
  }
  double worst = 0;
  for (size_t i = 0; i < results[0].size(); ++i) worst = std::max(worst, std::fabs(double(results[0][i]) - results[1][i]));
  EXPECT_LT(worst, 0.02) << "softmax outputs of the engine's INT8 and the literal QDQ run differ by up to " << worst;
}

TEST(QdqGraph, MatMulWeightsPerColumn) {
  OnnxBuilder b(13);
  b.Input("x", {-1, 16});
  b.Initializer("w", {16, 12}, RandomFloats(192, 41, -1.f, 1.f));
  b.Node("MatMul", {"x", "w"}, {"h"}, "mm");
  b.Node("Relu", {"h"}, {"r"}, "relu");
  b.Initializer("w2", {12, 4}, RandomFloats(48, 42, -1.f, 1.f));
  b.Node("MatMul", {"r", "w2"}, {"y"}, "mm_last");
  b.Output("y", {-1, 4});
  Calibration cal;
  cal.tensors["x"].threshold = 1.f;
  cal.tensors["h"].threshold = 3.f;
  cal.tensors["r"].threshold = 3.f;
  QuantizeOptions options;  // mm_last INT8 too: it reads r in 8 bits
  options.keep_last_fp32 = false;
  auto qdq = int8::QuantizeToQdq(b.Serialize(), cal, options);
  ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();
  ModelView m(*qdq);
  ExpectCheckerAccepts(m);
  const onnx::NodeProto* w_dq = m.Producer(m.Node("mm")->input(1));
  ASSERT_NE(w_dq, nullptr);
  EXPECT_EQ(IntAttribute(*w_dq, "axis", -1), 1);
  EXPECT_EQ(m.Values<float>(w_dq->input(1)).size(), 12u);
  ExpectQdqPair(m, "r", onnx::TensorProto::UINT8, 3.f / 255);
  EXPECT_EQ(m.Producer(m.Node("mm_last")->input(1))->op_type(), "DequantizeLinear");
}

TEST(QdqGraph, RefusesAnAlreadyQuantizedModel) {
  OnnxBuilder b(13);
  b.Input("x", {1, 4});
  b.ScalarFloat("s", 0.1f);
  b.Node("QuantizeLinear", {"x", "s"}, {"q"}, "q");
  b.Node("DequantizeLinear", {"q", "s"}, {"y"}, "dq");
  b.Output("y");
  auto qdq = int8::QuantizeToQdq(b.Serialize(), Calibration{});
  ASSERT_FALSE(qdq.ok());
  EXPECT_EQ(qdq.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(qdq.status().message().find("already quantized"), std::string::npos);
  // The tools run such a model in INT8 as it is instead of quantizing it again.
  EXPECT_TRUE(int8::IsQuantizedModel(b.Serialize()).value());
}

TEST(QdqGraph, AQuantizedOutputIsRecognizedAndItsFp32OriginalIsNot) {
  const std::string fp32 = SmallCnn().Serialize();
  EXPECT_FALSE(int8::IsQuantizedModel(fp32).value());
  auto qdq = int8::QuantizeToQdq(fp32, CalibrateOn(fp32, "random:8"));
  ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();
  EXPECT_TRUE(int8::IsQuantizedModel(*qdq).value());
  EXPECT_EQ(int8::IsQuantizedModel("not a model").status().code(), StatusCode::kDataLoss);
}

TEST(QdqGraph, RefusesACalibrationOfAnotherModel) {
  Calibration other;
  other.tensors["not_in_this_model"].threshold = 1.f;
  auto qdq = int8::QuantizeToQdq(SmallCnn().Serialize(), other);
  ASSERT_FALSE(qdq.ok());
  EXPECT_EQ(qdq.status().code(), StatusCode::kFailedPrecondition);
}

TEST(QdqGraph, QuantizeModelRunsThePipeline) {
  auto q = int8::QuantizeModel(SmallCnn().Serialize(), "random:8", int8::CalibrationMethod::kPercentile, {},
                               QuietCalibration());
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->calibration.samples, 8);
  EXPECT_EQ(q->summary.method, int8::CalibrationMethod::kPercentile);
  EXPECT_GT(q->summary.int8_nodes, 0);
  EXPECT_TRUE(ModelView(q->onnx_bytes).ok());
  // A calibration set of another shape (28x28 images for a 3-channel model)
  // is an error. ./test.sh installs dataset-fashion-mnist: its absence is a
  // failure, not a skip.
  ASSERT_TRUE(std::filesystem::exists(FashionMnistDirectory() + "/train-images-idx3-ubyte.gz"))
      << "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)";
  auto bad = int8::QuantizeModel(SmallCnn().Serialize(), "fashion-mnist:train:4", int8::CalibrationMethod::kMinMax,
                                 {}, QuietCalibration());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status().ToString();
}

// The QDQ model computes what the FP32 model does, up to quantization error.
TEST(QdqGraph, EngineRunsQdqModelCloseToFp32) {
  const std::string fp32 = SmallCnn().Serialize();
  const Calibration cal = CalibrateOn(fp32, "random:32");
  auto qdq = int8::QuantizeToQdq(fp32, cal);
  ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();
  auto as_span = [](const std::string& s) { return std::as_bytes(std::span<const char>(s.data(), s.size())); };
  auto int8_model = engine::Model::LoadBytes(as_span(*qdq), "small_cnn.int8.onnx");
  ASSERT_TRUE(int8_model.ok()) << int8_model.status().ToString();
  auto fp32_model = engine::Model::LoadBytes(as_span(fp32), "small_cnn.onnx");
  ASSERT_TRUE(fp32_model.ok());
  // Calibration used random:32 (uniform [0,1)); test on other samples of it.
  auto set = int8::LoadCalibrationSet("random:64", {-1, 3, 8, 8});
  ASSERT_TRUE(set.ok());
  const Tensor& x = set->samples;
  auto want = (*fp32_model)->Run(std::span<const Tensor>(&x, 1));
  auto got = (*int8_model)->Run(std::span<const Tensor>(&x, 1));
  ASSERT_TRUE(want.ok() && got.ok()) << got.status().ToString();
  const auto w = (*want)[0].values<float>();
  const auto g = (*got)[0].values<float>();
  ASSERT_EQ(w.size(), g.size());
  double worst = 0;
  for (size_t i = 0; i < w.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(w[i]) - g[i]));
  EXPECT_LT(worst, 0.05) << "softmax outputs of INT8 and FP32 differ by up to " << worst;
}

}  // namespace
}  // namespace ppml::test
