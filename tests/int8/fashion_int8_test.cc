// End to end on the Fashion-MNIST CNN: calibrate on 1000 training images,
// write a QDQ model per calibration method, run it through the engine on the
// 10,000 test images, and require INT8 top-1 within 0.5 points of FP32.
//
// Skipped with a message when models/fashion_cnn.onnx (models/make-fashion-cnn.sh)
// or the dataset is missing, and while the engine cannot load QDQ models yet.
// PPML_FASHION_CNN overrides the model path.
#include <gtest/gtest.h>
#include <onnx/checker.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

#include "common/dataset.h"
#include "engine/engine.h"
#include "engine/uint8_input.h"
#include "int8/quantize.h"
#include "tests/int8/int8_test_util.h"

#ifndef PPML_SOURCE_DIR
#define PPML_SOURCE_DIR "."
#endif

namespace ppml::test {
namespace {

constexpr double kMaxAccuracyDrop = 0.005;  // 0.5 points

std::string FashionCnnPath() {
  if (const char* env = std::getenv("PPML_FASHION_CNN")) return env;
  return std::string(PPML_SOURCE_DIR) + "/models/fashion_cnn.onnx";
}

std::span<const std::byte> AsBytes(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// Top-1 accuracy of `model` on the images (as its input's type), in batches of 500.
Result<double> Accuracy(engine::Model& model, const LabeledImages& data) {
  const engine::TensorInfo& input = model.inputs()[0];
  const Shape& in = input.shape;
  const int64_t n = data.images.dim(0);
  const int64_t per_image = data.images.element_count() / n;
  const int64_t batch = in[0] > 0 ? in[0] : 500;
  Shape shape(in.begin() + 1, in.end());
  if (ElementCount(shape) != per_image) shape = {per_image};
  shape.insert(shape.begin(), n);
  PPML_ASSIGN_OR_RETURN(Tensor images, ImagesAs(data.images.Clone(), input.dtype));
  PPML_ASSIGN_OR_RETURN(Tensor all, images.Reshaped(shape));
  int64_t correct = 0;
  for (int64_t first = 0; first < n; first += batch) {
    const int64_t items = std::min(batch, n - first);
    const Tensor x = all.CopyRows(first, items, in[0] > 0 ? batch : items);
    PPML_ASSIGN_OR_RETURN(std::vector<Tensor> out, model.Run(std::span<const Tensor>(&x, 1)));
    const Tensor& scores = out[0];
    const int64_t classes = scores.element_count() / scores.dim(0);
    for (int64_t i = 0; i < items; ++i) {
      const float* row = scores.data<float>() + i * classes;
      const int64_t label = std::max_element(row, row + classes) - row;
      correct += label == data.labels[static_cast<size_t>(first + i)];
    }
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

TEST(FashionCnnInt8, AccuracyWithinHalfAPointOfFp32) {
  const std::string path = FashionCnnPath();
  // Both are installed by ./test.sh (the model is committed).
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing: run models/make-fashion-cnn.sh to train it";
  ASSERT_TRUE(std::filesystem::exists(FashionMnistDirectory() + "/t10k-images-idx3-ubyte.gz"))
      << "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)";
  auto fp32_bytes = int8::ReadModelBytes(path);
  ASSERT_TRUE(fp32_bytes.ok()) << fp32_bytes.status().ToString();
  auto input = int8::ModelInputOf(*fp32_bytes);
  ASSERT_TRUE(input.ok()) << input.status().ToString();
  auto set = int8::LoadCalibrationSet("fashion-mnist:train:1000", input->shape, input->dtype);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  auto calibration = int8::Calibrate(*fp32_bytes, *set, int8::CalibrationMethod::kMinMax, QuietCalibration());
  ASSERT_TRUE(calibration.ok()) << calibration.status().ToString();

  auto test_set = LoadDataset("fashion-mnist:test");
  ASSERT_TRUE(test_set.ok()) << test_set.status().ToString();
  auto fp32_model = engine::Model::LoadBytes(AsBytes(*fp32_bytes), path);
  ASSERT_TRUE(fp32_model.ok()) << fp32_model.status().ToString();
  auto fp32_accuracy = Accuracy(**fp32_model, *test_set);
  ASSERT_TRUE(fp32_accuracy.ok()) << fp32_accuracy.status().ToString();
  std::cout << "fp32 accuracy " << *fp32_accuracy << std::endl;

  for (auto method : {int8::CalibrationMethod::kMinMax, int8::CalibrationMethod::kPercentile,
                      int8::CalibrationMethod::kEntropy}) {
    SCOPED_TRACE(int8::CalibrationMethodName(method));
    int8::QuantizeSummary summary;
    auto qdq = int8::QuantizeToQdq(*fp32_bytes, calibration->WithMethod(method), {}, &summary);
    ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();
    EXPECT_GT(summary.int8_nodes, 0) << summary.ToTable();
    ModelView view(*qdq);
    ASSERT_TRUE(view.ok());
    EXPECT_NO_THROW(onnx::checker::check_model(view.proto()));
    EXPECT_GT(view.Count("QuantizeLinear"), 0);

    auto int8_model = engine::Model::LoadBytes(AsBytes(*qdq), "fashion_cnn.int8.onnx");
    ASSERT_TRUE(int8_model.ok()) << int8_model.status().ToString();
    auto accuracy = Accuracy(**int8_model, *test_set);
    ASSERT_TRUE(accuracy.ok()) << accuracy.status().ToString();
    std::cout << int8::CalibrationMethodName(method) << " int8 accuracy " << *accuracy << " (fp32 "
              << *fp32_accuracy << ")" << std::endl;
    EXPECT_GE(*accuracy, *fp32_accuracy - kMaxAccuracyDrop) << summary.ToTable();
  }
}

// A model given a uint8 input (engine/uint8_input.h) calibrates on the
// dataset's pixel bytes and keeps FP32's accuracy in FP32 and INT8.
TEST(FashionCnnInt8, AUint8InputModelCalibratesOnPixelsAndKeepsItsAccuracy) {
  const std::string path = FashionCnnPath();
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing: run models/make-fashion-cnn.sh to train it";
  auto fp32_bytes = int8::ReadModelBytes(path);
  ASSERT_TRUE(fp32_bytes.ok()) << fp32_bytes.status().ToString();
  auto u8_bytes = engine::WithUint8Input(*fp32_bytes, {});
  ASSERT_TRUE(u8_bytes.ok()) << u8_bytes.status().ToString();
  auto input = int8::ModelInputOf(*u8_bytes);
  ASSERT_TRUE(input.ok()) << input.status().ToString();
  EXPECT_EQ(input->dtype, DataType::kU8);
  auto set = int8::LoadCalibrationSet("fashion-mnist:train:1000", input->shape, input->dtype);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->samples.dtype(), DataType::kU8);
  auto calibration = int8::Calibrate(*u8_bytes, *set, int8::CalibrationMethod::kEntropy, QuietCalibration());
  ASSERT_TRUE(calibration.ok()) << calibration.status().ToString();
  int8::QuantizeSummary summary;
  auto qdq = int8::QuantizeToQdq(*u8_bytes, *calibration, {}, &summary);
  ASSERT_TRUE(qdq.ok()) << qdq.status().ToString();

  auto test_set = LoadDataset("fashion-mnist:test");
  ASSERT_TRUE(test_set.ok()) << test_set.status().ToString();
  std::vector<double> accuracies;
  for (const std::string* bytes : {&*fp32_bytes, &*u8_bytes, &*qdq}) {
    auto model = engine::Model::LoadBytes(AsBytes(*bytes), path);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto accuracy = Accuracy(**model, *test_set);
    ASSERT_TRUE(accuracy.ok()) << accuracy.status().ToString();
    accuracies.push_back(*accuracy);
  }
  std::cout << "fp32 " << accuracies[0] << ", uint8 input fp32 " << accuracies[1] << ", uint8 input int8 "
            << accuracies[2] << std::endl;
  EXPECT_NEAR(accuracies[1], accuracies[0], 0.0005);  // the same model up to float rounding
  EXPECT_GE(accuracies[2], accuracies[0] - kMaxAccuracyDrop);
}

}  // namespace
}  // namespace ppml::test
