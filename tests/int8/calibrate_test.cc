// Calibration: the three methods on known distributions run through the
// engine, calibration-set specs (random, .npy folders, the dataset) and the
// errors for a set whose shape does not match the model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/dataset.h"
#include "common/npy.h"
#include "engine/uint8_input.h"
#include "int8/quantize.h"
#include "tests/engine/onnx_builder.h"
#include "tests/int8/int8_test_util.h"

namespace ppml::test {
namespace {

using int8::CalibrationMethod;
using int8::CalibrationSet;

// x [N, 1000] -> Relu -> r;  x -> Flatten -> f  (both observed, x from the input)
std::string ProbeModel() {
  OnnxBuilder b(13);
  b.Input("x", {-1, 1000});
  b.Node("Relu", {"x"}, {"r"}, "relu");
  b.Node("Flatten", {"x"}, {"f"}, "flatten");
  b.Output("r");
  b.Output("f");
  return b.Serialize();
}

CalibrationSet SetOf(const std::vector<float>& values, int64_t rows) {
  CalibrationSet set;
  set.spec = "test";
  set.samples = Tensor::FromVector<float>({rows, static_cast<int64_t>(values.size()) / rows}, values);
  return set;
}

float MaxAbs(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

TEST(Calibrate, MinMaxIsTheLargestMagnitude) {
  const std::vector<float> x = UniformSamples(200 * 1000, 11, -3.f, 2.f);
  int progress_calls = 0;
  int8::CalibrateOptions options = QuietCalibration(64);
  options.progress = [&](const int8::CalibrationProgress& p) {
    ++progress_calls;
    EXPECT_EQ(p.batches, 4);
    EXPECT_EQ(p.samples_total, 200);
  };
  auto cal = int8::Calibrate(ProbeModel(), SetOf(x, 200), CalibrationMethod::kMinMax, options);
  ASSERT_TRUE(cal.ok()) << cal.status().ToString();
  EXPECT_EQ(progress_calls, 4);
  EXPECT_EQ(cal->samples, 200);
  const float lo = *std::min_element(x.begin(), x.end());
  const float hi = *std::max_element(x.begin(), x.end());
  for (const char* t : {"x", "f"}) {
    const int8::TensorStats* s = cal->Find(t);
    ASSERT_NE(s, nullptr) << t;
    EXPECT_EQ(s->min, lo) << t;
    EXPECT_EQ(s->max, hi) << t;
    EXPECT_EQ(s->threshold, MaxAbs(x)) << t;
    EXPECT_EQ(s->histogram.count(), 200000) << t;
  }
  const int8::TensorStats* r = cal->Find("r");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->min, 0.f);
  EXPECT_EQ(r->max, hi);
  EXPECT_EQ(r->threshold, hi);
}

TEST(Calibrate, PercentileClipsAHeavyTail) {
  // Gaussian bulk with rare large outliers (a heavy tail).
  std::vector<float> x = GaussianSamples(200 * 1000, 12, 1.f);
  for (size_t i = 0; i < x.size(); i += 20011) x[i] = 40.f + static_cast<float>(i % 7);
  auto cal = int8::Calibrate(ProbeModel(), SetOf(x, 200), CalibrationMethod::kPercentile, QuietCalibration());
  ASSERT_TRUE(cal.ok()) << cal.status().ToString();
  const int8::TensorStats* s = cal->Find("x");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(std::max(std::fabs(s->min), std::fabs(s->max)), MaxAbs(x));
  EXPECT_LT(s->threshold, 0.2f * MaxAbs(x));
  EXPECT_GT(s->threshold, 3.f);  // the 99.99th percentile of |N(0,1)| is about 3.9
  EXPECT_LT(s->threshold, 5.f);
}

TEST(Calibrate, EntropyStaysWithinTheData) {
  const std::vector<float> g = GaussianSamples(200 * 1000, 13, 1.f);
  auto cal = int8::Calibrate(ProbeModel(), SetOf(g, 200), CalibrationMethod::kEntropy, QuietCalibration());
  ASSERT_TRUE(cal.ok()) << cal.status().ToString();
  const float t = cal->Find("x")->threshold;
  EXPECT_GT(t, 2.f);
  EXPECT_LT(t, MaxAbs(g));
  // The relu output is half zeros and half |N(0,1)|: also clipped inside its max.
  const float tr = cal->Find("r")->threshold;
  EXPECT_GT(tr, 1.5f);
  EXPECT_LE(tr, cal->Find("r")->max);
  // Recomputing for another method needs no rerun and agrees with a fresh run.
  const int8::Calibration minmax = cal->WithMethod(CalibrationMethod::kMinMax);
  EXPECT_EQ(minmax.Find("x")->threshold, MaxAbs(g));
  EXPECT_EQ(minmax.method, CalibrationMethod::kMinMax);
}

TEST(Calibrate, MethodNames) {
  EXPECT_EQ(*int8::ParseCalibrationMethod("minmax"), CalibrationMethod::kMinMax);
  EXPECT_EQ(*int8::ParseCalibrationMethod("percentile"), CalibrationMethod::kPercentile);
  EXPECT_EQ(*int8::ParseCalibrationMethod("entropy"), CalibrationMethod::kEntropy);
  auto bad = int8::ParseCalibrationMethod("kl");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'kl'"), std::string::npos);
  EXPECT_STREQ(int8::CalibrationMethodName(CalibrationMethod::kEntropy), "entropy");
}

TEST(Calibrate, SampleShapeMismatchIsInvalidArgument) {
  CalibrationSet set;
  set.spec = "wrong";
  set.samples = Tensor(DataType::kF32, {4, 10});
  auto cal = int8::Calibrate(ProbeModel(), set, CalibrationMethod::kMinMax, QuietCalibration());
  ASSERT_FALSE(cal.ok());
  EXPECT_EQ(cal.status().code(), StatusCode::kInvalidArgument) << cal.status().ToString();
  EXPECT_NE(cal.status().message().find("wrong"), std::string::npos) << cal.status().message();
}

TEST(Calibrate, FixedBatchModelPadsTheLastBatchWithoutCountingIt) {
  OnnxBuilder b(13);
  b.Input("x", {4, 3});
  b.Node("Relu", {"x"}, {"y"}, "relu");
  b.Output("y");
  // 6 samples with a fixed batch of 4: the padded rows of the second run are ignored.
  std::vector<float> v = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18};
  auto cal = int8::Calibrate(b.Serialize(), SetOf(v, 6), CalibrationMethod::kMinMax, QuietCalibration(100));
  ASSERT_TRUE(cal.ok()) << cal.status().ToString();
  EXPECT_EQ(cal->Find("y")->min, 1.f);  // zero padding would make it 0
  EXPECT_EQ(cal->Find("y")->histogram.count(), 18);
}

// ------------------------------------------------------ calibration sets

TEST(CalibrationSet, RandomIsDeterministicUniformOfTheModelShape) {
  auto a = int8::LoadCalibrationSet("random:5", {-1, 3, 4, 4});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->samples.shape(), (Shape{5, 3, 4, 4}));
  auto b = int8::LoadCalibrationSet("random:5", {-1, 3, 4, 4});
  ASSERT_TRUE(b.ok());
  const auto va = a->samples.values<float>();
  const auto vb = b->samples.values<float>();
  EXPECT_TRUE(std::equal(va.begin(), va.end(), vb.begin()));
  for (float v : va) {
    EXPECT_GE(v, 0.f);
    EXPECT_LT(v, 1.f);
  }
  EXPECT_FALSE(int8::LoadCalibrationSet("random:0", {-1, 3}).ok());
  EXPECT_FALSE(int8::LoadCalibrationSet("random:x", {-1, 3}).ok());
  auto symbolic = int8::LoadCalibrationSet("random:2", {-1, 3, -1});
  ASSERT_FALSE(symbolic.ok());
  EXPECT_EQ(symbolic.status().code(), StatusCode::kInvalidArgument);
}

TEST(CalibrationSet, RandomPixelsAndQuantizedValuesCoverTheirRange) {
  for (DataType type : {DataType::kU8, DataType::kS8}) {
    SCOPED_TRACE(DataTypeName(type));
    auto set = int8::LoadCalibrationSet("random:8", {-1, 3, 4, 4}, type);
    ASSERT_TRUE(set.ok()) << set.status().ToString();
    ASSERT_EQ(set->samples.dtype(), type);
    double lo = 255, hi = -128;
    for (int64_t i = 0; i < set->samples.element_count(); ++i) {
      lo = std::min(lo, set->samples.ElementAsDouble(i));
      hi = std::max(hi, set->samples.ElementAsDouble(i));
    }
    EXPECT_LE(lo, type == DataType::kU8 ? 5 : -123);
    EXPECT_GE(hi, type == DataType::kU8 ? 250 : 122);
  }
  auto ints = int8::LoadCalibrationSet("random:8", {-1, 3}, DataType::kS32);
  ASSERT_FALSE(ints.ok());
  EXPECT_NE(ints.status().message().find("random samples are f32, u8 or s8"), std::string::npos);
}

// A model given a uint8 input calibrates on pixels: the normalized floats
// it computes are observed, the pixels themselves are not a float activation.
TEST(CalibrationSet, AUint8InputModelIsCalibratedOnItsNormalizedPixels) {
  OnnxBuilder b(13);
  b.Input("x", {-1, 2, 4, 4});
  b.Initializer("w", {3, 2, 1, 1}, {1, 0, 0, 1, 1, 1});
  b.Node("Conv", {"x", "w"}, {"y"});
  b.Output("y");
  engine::Uint8InputOptions options;
  options.mean = {0.5f, 0.25f};
  options.std = {0.5f, 0.25f};
  auto u8 = engine::WithUint8Input(b.Serialize(), options);
  ASSERT_TRUE(u8.ok()) << u8.status().ToString();
  auto input = int8::ModelInputOf(*u8);
  ASSERT_TRUE(input.ok()) << input.status().ToString();
  auto set = int8::LoadCalibrationSet("random:32", input->shape, input->dtype);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  auto cal = int8::Calibrate(*u8, *set, CalibrationMethod::kMinMax, QuietCalibration());
  ASSERT_TRUE(cal.ok()) << cal.status().ToString();
  EXPECT_EQ(cal->Find("x"), nullptr);
  const int8::TensorStats* normalized = cal->Find("x_normalized");
  ASSERT_NE(normalized, nullptr);
  // Channel 0 spans (0..255 / 255 - 0.5) / 0.5 = -1..1, channel 1 -1..3.
  EXPECT_NEAR(normalized->min, -1.0, 0.05);
  EXPECT_NEAR(normalized->max, 3.0, 0.05);
  // Floats for a u8 input are refused naming both types.
  auto floats = int8::LoadCalibrationSet("random:2", input->shape);
  ASSERT_TRUE(floats.ok());
  auto refused = int8::Calibrate(*u8, *floats, CalibrationMethod::kMinMax, QuietCalibration());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("takes u8"), std::string::npos) << refused.status().message();
}

class NpyFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ppml_int8_npy_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const Tensor& t) {
    ASSERT_TRUE(WriteNpyFile((dir_ / name).string(), t).ok());
  }
  std::filesystem::path dir_;
};

TEST_F(NpyFolder, SingleSamplesAndBatchesAreConcatenatedInNameOrder) {
  Write("a.npy", Tensor::FromVector<float>({2, 2}, {1, 2, 3, 4}));                          // one sample
  Write("b.npy", Tensor::FromVector<float>({2, 2, 2}, {5, 6, 7, 8, 9, 10, 11, 12}));       // a batch of 2
  Write("c.txt.npy.bak", Tensor::FromVector<float>({2, 2}, {0, 0, 0, 0}));                  // not .npy
  auto set = int8::LoadCalibrationSet(dir_.string(), {-1, 2, 2});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->samples.shape(), (Shape{3, 2, 2}));
  EXPECT_EQ(set->samples.values<float>()[4], 5.f);
  EXPECT_EQ(set->samples.values<float>()[11], 12.f);
}

TEST_F(NpyFolder, ShapeMismatchNamesSpecAndBothShapes) {
  Write("a.npy", Tensor::FromVector<float>({1, 5, 5}, std::vector<float>(25, 0.5f)));
  auto set = int8::LoadCalibrationSet(dir_.string(), {-1, 1, 4, 4});
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), StatusCode::kInvalidArgument);
  const std::string msg = set.status().message();
  EXPECT_NE(msg.find(dir_.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("[1,5,5]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[1,4,4]"), std::string::npos) << msg;
}

TEST_F(NpyFolder, NonFloatAndEmptyFoldersAreErrors) {
  auto empty = int8::LoadCalibrationSet(dir_.string(), {-1, 2});
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no .npy"), std::string::npos);
  Write("a.npy", Tensor::FromVector<uint8_t>({2}, {1, 2}));
  auto ints = int8::LoadCalibrationSet(dir_.string(), {-1, 2});
  ASSERT_FALSE(ints.ok());
  EXPECT_NE(ints.status().message().find("float32"), std::string::npos) << ints.status().message();
}

TEST_F(NpyFolder, PixelFilesForAUint8Input) {
  Write("a.npy", Tensor::FromVector<uint8_t>({2, 2}, {0, 7, 200, 255}));
  auto set = int8::LoadCalibrationSet(dir_.string(), {-1, 2, 2}, DataType::kU8);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->samples.dtype(), DataType::kU8);
  EXPECT_EQ(set->samples.values<uint8_t>()[2], 200);
  Write("b.npy", Tensor::FromVector<float>({2, 2}, {0, 0.5f, 1, 1}));
  auto mixed = int8::LoadCalibrationSet(dir_.string(), {-1, 2, 2}, DataType::kU8);
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.status().message().find("takes u8 (x.astype(np.uint8))"), std::string::npos)
      << mixed.status().message();
}

TEST(CalibrationSet, UnknownSpecIsInvalidArgument) {
  auto set = int8::LoadCalibrationSet("imagenet:val:10", {-1, 3, 224, 224});
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(set.status().message().find("imagenet:val:10"), std::string::npos);
}

// ./test.sh installs dataset-fashion-mnist: its absence is a failure, not a skip.
bool HaveFashionMnist() {
  return std::filesystem::exists(FashionMnistDirectory() + "/train-images-idx3-ubyte.gz");
}

TEST(CalibrationSet, FashionMnistShapeMismatchNamesSpecAndBothShapes) {
  ASSERT_TRUE(HaveFashionMnist()) << "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)";
  auto set = int8::LoadCalibrationSet("fashion-mnist:train:10", {-1, 3, 32, 32});
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), StatusCode::kInvalidArgument);
  const std::string msg = set.status().message();
  EXPECT_NE(msg.find("fashion-mnist:train:10"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[1,28,28]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3,32,32]"), std::string::npos) << msg;
}

TEST(CalibrationSet, FashionMnistPixelsForAUint8Input) {
  ASSERT_TRUE(HaveFashionMnist()) << "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)";
  auto floats = int8::LoadCalibrationSet("fashion-mnist:train:3", {-1, 1, 28, 28});
  auto pixels = int8::LoadCalibrationSet("fashion-mnist:train:3", {-1, 1, 28, 28}, DataType::kU8);
  ASSERT_TRUE(floats.ok() && pixels.ok());
  ASSERT_EQ(pixels->samples.dtype(), DataType::kU8);
  int nonzero = 0;
  for (int64_t i = 0; i < floats->samples.element_count(); ++i) {
    EXPECT_EQ(pixels->samples.values<uint8_t>()[i], std::lround(floats->samples.values<float>()[i] * 255)) << i;
    nonzero += pixels->samples.values<uint8_t>()[i] != 0;
  }
  EXPECT_GT(nonzero, 100);
}

TEST(CalibrationSet, FashionMnistImagesAndFlattenedInputs) {
  ASSERT_TRUE(HaveFashionMnist()) << "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)";
  auto set = int8::LoadCalibrationSet("fashion-mnist:train:20", {-1, 1, 28, 28});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->samples.shape(), (Shape{20, 1, 28, 28}));
  auto flat = int8::LoadCalibrationSet("fashion-mnist:train:20", {-1, 784});
  ASSERT_TRUE(flat.ok()) << flat.status().ToString();
  EXPECT_EQ(flat->samples.shape(), (Shape{20, 784}));
}

}  // namespace
}  // namespace ppml::test
