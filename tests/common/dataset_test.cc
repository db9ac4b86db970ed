#include "common/dataset.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

namespace ppml {
namespace {

namespace fs = std::filesystem;

// Points PPML_FASHION_MNIST_DIR somewhere for one test and restores it after.
class ScopedDatasetDir {
 public:
  explicit ScopedDatasetDir(const std::string& dir) {
    if (const char* old = std::getenv("PPML_FASHION_MNIST_DIR")) saved_ = old;
    setenv("PPML_FASHION_MNIST_DIR", dir.c_str(), 1);
  }
  ~ScopedDatasetDir() {
    if (saved_.empty()) {
      unsetenv("PPML_FASHION_MNIST_DIR");
    } else {
      setenv("PPML_FASHION_MNIST_DIR", saved_.c_str(), 1);
    }
  }

 private:
  std::string saved_;
};

std::string BigEndian32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

void WriteGz(const fs::path& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

// A directory with a small fake test split: `count` 2x2 images.
fs::path MakeFakeDataset(const std::string& name, uint32_t image_magic, uint32_t count, size_t pixel_bytes,
                         uint32_t label_count, uint8_t label = 3) {
  const fs::path dir = fs::path(testing::TempDir()) / name;
  fs::create_directories(dir);
  std::string images = BigEndian32(image_magic) + BigEndian32(count) + BigEndian32(2) + BigEndian32(2);
  for (size_t i = 0; i < pixel_bytes; ++i) images += static_cast<char>(i % 2 ? 255 : 0);
  WriteGz(dir / "t10k-images-idx3-ubyte.gz", images);
  WriteGz(dir / "t10k-labels-idx1-ubyte.gz",
          BigEndian32(0x801) + BigEndian32(label_count) + std::string(label_count, static_cast<char>(label)));
  return dir;
}

TEST(DatasetSpecTest, Parses) {
  Result<DatasetSpec> test = ParseDatasetSpec("fashion-mnist:test");
  ASSERT_TRUE(test.ok());
  EXPECT_EQ(test->name, "fashion-mnist");
  EXPECT_EQ(test->split, "test");
  EXPECT_EQ(test->limit, 0);
  Result<DatasetSpec> first = ParseDatasetSpec("fashion-mnist:train:500");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->split, "train");
  EXPECT_EQ(first->limit, 500);
}

TEST(DatasetSpecTest, RejectsBadSpecs) {
  for (const char* spec : {"", "fashion-mnist", "mnist:test", "fashion-mnist:validation", "fashion-mnist:test:0",
                           "fashion-mnist:test:-5", "fashion-mnist:test:10x", "fashion-mnist:test:"}) {
    Result<DatasetSpec> parsed = ParseDatasetSpec(spec);
    ASSERT_FALSE(parsed.ok()) << spec;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << spec;
    EXPECT_NE(parsed.status().message().find("expected fashion-mnist:test"), std::string::npos);
  }
}

TEST(FashionMnistTest, DirectoryDefaultAndOverride) {
  unsetenv("PPML_FASHION_MNIST_DIR");
  EXPECT_EQ(FashionMnistDirectory(), "/usr/share/datasets/fashion-mnist");
  ScopedDatasetDir scoped("/somewhere/else");
  EXPECT_EQ(FashionMnistDirectory(), "/somewhere/else");
}

// The real Debian files (package dataset-fashion-mnist).
TEST(FashionMnistTest, LoadsTheWholeTestSplit) {
  Result<LabeledImages> data = LoadDataset("fashion-mnist:test");
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(data->images.dtype(), DataType::kF32);
  EXPECT_EQ(data->images.shape(), (Shape{10000, 1, 28, 28}));
  ASSERT_EQ(data->labels.size(), 10000u);
  EXPECT_EQ(*std::min_element(data->labels.begin(), data->labels.end()), 0);
  EXPECT_EQ(*std::max_element(data->labels.begin(), data->labels.end()), 9);
  // Fashion-MNIST's test split is balanced: 1000 images per class.
  for (int c = 0; c < 10; ++c) EXPECT_EQ(std::count(data->labels.begin(), data->labels.end(), c), 1000) << c;
  const auto pixels = data->images.values<float>();
  EXPECT_EQ(*std::min_element(pixels.begin(), pixels.end()), 0.0f);
  EXPECT_EQ(*std::max_element(pixels.begin(), pixels.end()), 1.0f);
  // The first test image is an ankle boot (class 9).
  EXPECT_EQ(data->labels[0], 9);
}

TEST(FashionMnistTest, LimitTakesTheFirstImages) {
  Result<LabeledImages> all = LoadDataset("fashion-mnist:test");
  Result<LabeledImages> first = LoadDataset("fashion-mnist:test:100");
  ASSERT_TRUE(all.ok() && first.ok());
  EXPECT_EQ(first->images.shape(), (Shape{100, 1, 28, 28}));
  EXPECT_EQ(first->labels, std::vector<int>(all->labels.begin(), all->labels.begin() + 100));
  EXPECT_TRUE(std::equal(first->images.values<float>().begin(), first->images.values<float>().end(),
                         all->images.values<float>().begin()));
}

TEST(FashionMnistTest, TrainSplit) {
  Result<LabeledImages> data = LoadDataset("fashion-mnist:train:10");
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(data->images.shape(), (Shape{10, 1, 28, 28}));
  Result<LabeledImages> too_many = LoadDataset("fashion-mnist:train:60001");
  EXPECT_EQ(too_many.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(too_many.status().message().find("holds 60000"), std::string::npos) << too_many.status().message();
}

TEST(FashionMnistTest, MissingFilesSayWhatToInstall) {
  ScopedDatasetDir scoped("/nonexistent/fashion");
  Result<LabeledImages> data = LoadDataset("fashion-mnist:test");
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(data.status().message().rfind("/nonexistent/fashion/t10k-", 0), 0u) << data.status().message();
  EXPECT_NE(data.status().message().find("dataset-fashion-mnist"), std::string::npos);
}

TEST(FashionMnistTest, ReadsAFakeDataset) {
  const fs::path dir = MakeFakeDataset("ppml_fake_ok", 0x803, 3, 12, 3);
  ScopedDatasetDir scoped(dir.string());
  Result<LabeledImages> data = LoadDataset("fashion-mnist:test");
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(data->images.shape(), (Shape{3, 1, 2, 2}));
  EXPECT_EQ(data->images.data<float>()[0], 0.0f);
  EXPECT_EQ(data->images.data<float>()[1], 1.0f);
  EXPECT_EQ(data->labels, (std::vector<int>{3, 3, 3}));
}

TEST(FashionMnistTest, ImagesAsPixelBytesOrFloats) {
  const Tensor images = Tensor::FromVector<float>({1, 1, 1, 4}, {0.0f, 1.0f / 255, 128.0f / 255, 1.0f});
  auto pixels = ImagesAs(images.Clone(), DataType::kU8);
  ASSERT_TRUE(pixels.ok()) << pixels.status().ToString();
  EXPECT_EQ(pixels->shape(), images.shape());
  EXPECT_EQ(std::vector<uint8_t>(pixels->values<uint8_t>().begin(), pixels->values<uint8_t>().end()),
            (std::vector<uint8_t>{0, 1, 128, 255}));
  auto floats = ImagesAs(images.Clone(), DataType::kF32);
  ASSERT_TRUE(floats.ok());
  EXPECT_EQ(floats->values<float>()[2], 128.0f / 255);
  auto ints = ImagesAs(images.Clone(), DataType::kS32);
  ASSERT_FALSE(ints.ok());
  EXPECT_NE(ints.status().message().find("f32 or u8"), std::string::npos);
}

TEST(FashionMnistTest, BadMagic) {
  const fs::path dir = MakeFakeDataset("ppml_fake_magic", 0x801, 3, 12, 3);
  ScopedDatasetDir scoped(dir.string());
  Result<LabeledImages> data = LoadDataset("fashion-mnist:test");
  EXPECT_EQ(data.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(data.status().message(), (dir / "t10k-images-idx3-ubyte.gz").string() +
                                         ": bad IDX magic 0x00000801 (expected 0x00000803); not an IDX image file");
}

TEST(FashionMnistTest, TruncatedImages) {
  const fs::path dir = MakeFakeDataset("ppml_fake_truncated", 0x803, 3, 10, 3);
  ScopedDatasetDir scoped(dir.string());
  Result<LabeledImages> data = LoadDataset("fashion-mnist:test");
  EXPECT_EQ(data.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(data.status().message(),
            (dir / "t10k-images-idx3-ubyte.gz").string() + ": file is truncated (ended while reading pixels)");
}

TEST(FashionMnistTest, TruncatedLabels) {
  const fs::path dir = MakeFakeDataset("ppml_fake_labels", 0x803, 3, 12, 3);
  WriteGz(dir / "t10k-labels-idx1-ubyte.gz", BigEndian32(0x801) + BigEndian32(3) + "\x01");
  ScopedDatasetDir scoped(dir.string());
  Result<LabeledImages> data = LoadDataset("fashion-mnist:test");
  EXPECT_EQ(data.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(data.status().message().find("t10k-labels-idx1-ubyte.gz: file is truncated"), std::string::npos)
      << data.status().message();
}

TEST(FashionMnistTest, CountMismatchAndBadLabels) {
  {
    const fs::path dir = MakeFakeDataset("ppml_fake_count", 0x803, 3, 12, 2);
    ScopedDatasetDir scoped(dir.string());
    Result<LabeledImages> data = LoadDataset("fashion-mnist:test");
    EXPECT_EQ(data.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(data.status().message().find("holds 3 images but"), std::string::npos) << data.status().message();
  }
  {
    const fs::path dir = MakeFakeDataset("ppml_fake_label", 0x803, 3, 12, 3, 12);
    ScopedDatasetDir scoped(dir.string());
    Result<LabeledImages> data = LoadDataset("fashion-mnist:test");
    EXPECT_EQ(data.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(data.status().message().find("label 12 at index 0"), std::string::npos) << data.status().message();
  }
}

TEST(FashionMnistTest, CorruptGzip) {
  const fs::path dir = MakeFakeDataset("ppml_fake_corrupt", 0x803, 3, 12, 3);
  // A gzip header followed by garbage: zlib notices while inflating.
  std::FILE* file = std::fopen((dir / "t10k-images-idx3-ubyte.gz").c_str(), "wb");
  ASSERT_NE(file, nullptr);
  const unsigned char garbage[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  std::fwrite(garbage, 1, sizeof(garbage), file);
  std::fclose(file);
  ScopedDatasetDir scoped(dir.string());
  Result<LabeledImages> data = LoadDataset("fashion-mnist:test");
  EXPECT_EQ(data.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(data.status().message().find("t10k-images-idx3-ubyte.gz"), std::string::npos) << data.status().message();
}

}  // namespace
}  // namespace ppml
