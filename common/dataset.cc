// IDX files (http://yann.lecun.com/exdb/mnist/), all integers big-endian:
//
//   images, idx3                          labels, idx1
//   0   u32 magic 0x00000803              0  u32 magic 0x00000801
//   4   u32 count                         4  u32 count
//   8   u32 rows                          8  count x u8 label
//   12  u32 cols
//   16  count x rows x cols u8 pixels, row-major
//
// magic = 0x0000, then type 0x08 (unsigned byte), then the number of dimensions.
#include "common/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace ppml {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;
constexpr const char* kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist";
constexpr int kFashionMnistClasses = 10;

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using UniqueGzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Sequential reads from a gzip (or plain) file, with errors naming the file.
class GzReader {
 public:
  static Result<GzReader> Open(const std::string& path) {
    errno = 0;
    UniqueGzFile file(gzopen(path.c_str(), "rb"));
    if (!file) {
      const int error = errno;
      if (error == ENOENT) {
        return Status::NotFound(path +
                                ": no such file (install the Debian package dataset-fashion-mnist, or set "
                                "PPML_FASHION_MNIST_DIR to a directory holding the Fashion-MNIST files)");
      }
      return Status::IoError(path + ": cannot open: " + (error ? std::strerror(error) : "zlib error"));
    }
    return GzReader(path, std::move(file));
  }

  // Reads exactly `size` bytes; fewer is DataLoss ("truncated while reading <what>").
  Status Read(void* out, size_t size, const char* what) {
    auto* cursor = static_cast<unsigned char*>(out);
    while (size > 0) {
      // gzread takes an unsigned int length; stay far below its limit.
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(size, 1u << 30));
      const int got = gzread(file_.get(), cursor, chunk);
      if (got < 0) {
        int code = 0;
        const char* message = gzerror(file_.get(), &code);
        return Status::DataLoss(path_ + ": corrupt gzip data while reading " + what + ": " + message);
      }
      if (got == 0) return Status::DataLoss(path_ + ": file is truncated (ended while reading " + what + ")");
      cursor += got;
      size -= static_cast<size_t>(got);
    }
    return Status::Ok();
  }

  Result<uint32_t> ReadBigEndian32(const char* what) {
    unsigned char bytes[4];
    PPML_RETURN_IF_ERROR(Read(bytes, sizeof(bytes), what));
    return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) | bytes[3];
  }

  const std::string& path() const { return path_; }

 private:
  GzReader(std::string path, UniqueGzFile file) : path_(std::move(path)), file_(std::move(file)) {}

  std::string path_;
  UniqueGzFile file_;
};

Status CheckMagic(const GzReader& reader, uint32_t magic, uint32_t expected) {
  if (magic == expected) return Status::Ok();
  char message[128];
  std::snprintf(message, sizeof(message), ": bad IDX magic 0x%08x (expected 0x%08x); not an IDX %s file", magic,
                expected, expected == kImagesMagic ? "image" : "label");
  return Status::DataLoss(reader.path() + message);
}

// Reads `count` labels in chunks, so a corrupt count in the header cannot make
// us allocate more than the file really holds.
Result<std::vector<uint8_t>> ReadLabels(GzReader& reader, size_t count) {
  std::vector<uint8_t> labels;
  constexpr size_t kChunk = 1 << 16;
  while (labels.size() < count) {
    const size_t start = labels.size();
    const size_t take = std::min(kChunk, count - start);
    labels.resize(start + take);
    PPML_RETURN_IF_ERROR(reader.Read(labels.data() + start, take, "labels"));
  }
  return labels;
}

}  // namespace

std::string FashionMnistDirectory() {
  const char* env = std::getenv("PPML_FASHION_MNIST_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(kDefaultFashionMnistDir);
}

Result<DatasetSpec> ParseDatasetSpec(std::string_view spec) {
  const auto usage = [&](const std::string& why) {
    return Status::InvalidArgument("dataset \"" + std::string(spec) + "\": " + why +
                                   " (expected fashion-mnist:test, fashion-mnist:train or fashion-mnist:test:N)");
  };
  DatasetSpec out;
  const size_t first = spec.find(':');
  if (first == std::string_view::npos) return usage("no split given");
  out.name = std::string(spec.substr(0, first));
  if (out.name != "fashion-mnist") return usage("unknown dataset \"" + out.name + "\"");
  const std::string_view rest = spec.substr(first + 1);
  const size_t second = rest.find(':');
  out.split = std::string(rest.substr(0, second));
  if (out.split != "test" && out.split != "train") return usage("unknown split \"" + out.split + "\"");
  if (second != std::string_view::npos) {
    const std::string_view count = rest.substr(second + 1);
    const auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), out.limit);
    if (ec != std::errc() || end != count.data() + count.size() || out.limit <= 0) {
      return usage("the count \"" + std::string(count) + "\" is not a positive integer");
    }
  }
  return out;
}

Result<LabeledImages> LoadIdxImages(const std::string& images_path, const std::string& labels_path,
                                    int64_t limit) {
  PPML_ASSIGN_OR_RETURN(GzReader labels_file, GzReader::Open(labels_path));
  PPML_ASSIGN_OR_RETURN(uint32_t labels_magic, labels_file.ReadBigEndian32("the magic number"));
  PPML_RETURN_IF_ERROR(CheckMagic(labels_file, labels_magic, kLabelsMagic));
  PPML_ASSIGN_OR_RETURN(uint32_t label_count, labels_file.ReadBigEndian32("the label count"));

  PPML_ASSIGN_OR_RETURN(GzReader images_file, GzReader::Open(images_path));
  PPML_ASSIGN_OR_RETURN(uint32_t images_magic, images_file.ReadBigEndian32("the magic number"));
  PPML_RETURN_IF_ERROR(CheckMagic(images_file, images_magic, kImagesMagic));
  PPML_ASSIGN_OR_RETURN(uint32_t image_count, images_file.ReadBigEndian32("the image count"));
  PPML_ASSIGN_OR_RETURN(uint32_t rows, images_file.ReadBigEndian32("the row count"));
  PPML_ASSIGN_OR_RETURN(uint32_t cols, images_file.ReadBigEndian32("the column count"));

  if (image_count != label_count) {
    return Status::DataLoss(images_path + " holds " + std::to_string(image_count) + " images but " + labels_path +
                            " holds " + std::to_string(label_count) + " labels");
  }
  if (rows == 0 || cols == 0 || rows > 4096 || cols > 4096) {
    return Status::DataLoss(images_path + ": implausible image size " + std::to_string(rows) + "x" +
                            std::to_string(cols));
  }
  if (limit > static_cast<int64_t>(image_count)) {
    return Status::InvalidArgument(images_path + ": asked for the first " + std::to_string(limit) +
                                   " images but the file holds " + std::to_string(image_count));
  }
  const size_t count = limit > 0 ? static_cast<size_t>(limit) : image_count;

  PPML_ASSIGN_OR_RETURN(std::vector<uint8_t> raw_labels, ReadLabels(labels_file, count));

  LabeledImages out;
  out.labels.assign(raw_labels.begin(), raw_labels.end());
  // The label file has shown `count` is real, so this allocation is bounded by the data.
  out.images = Tensor(DataType::kF32, {static_cast<int64_t>(count), 1, rows, cols});
  const size_t pixels_per_image = size_t{rows} * cols;
  std::vector<uint8_t> pixels(pixels_per_image);
  float* destination = out.images.data<float>();
  for (size_t i = 0; i < count; ++i) {
    PPML_RETURN_IF_ERROR(images_file.Read(pixels.data(), pixels.size(), "pixels"));
    for (uint8_t pixel : pixels) *destination++ = static_cast<float>(pixel) / 255.0f;
  }
  return out;
}

Result<LabeledImages> LoadDataset(const DatasetSpec& spec) {
  if (spec.name != "fashion-mnist") return Status::InvalidArgument("unknown dataset \"" + spec.name + "\"");
  // Debian ships the original file names: train-* and t10k-* (the test split).
  const std::string prefix = FashionMnistDirectory() + "/" + (spec.split == "train" ? "train" : "t10k");
  PPML_ASSIGN_OR_RETURN(LabeledImages data,
                        LoadIdxImages(prefix + "-images-idx3-ubyte.gz", prefix + "-labels-idx1-ubyte.gz",
                                      spec.limit));
  for (size_t i = 0; i < data.labels.size(); ++i) {
    if (data.labels[i] < 0 || data.labels[i] >= kFashionMnistClasses) {
      return Status::DataLoss(prefix + "-labels-idx1-ubyte.gz: label " + std::to_string(data.labels[i]) +
                              " at index " + std::to_string(i) + " is not a Fashion-MNIST class (0..9)");
    }
  }
  return data;
}

Result<Tensor> ImagesAs(Tensor images, DataType type) {
  if (type == DataType::kF32) return images;
  if (type != DataType::kU8) {
    return Status::InvalidArgument(std::string("images can be given as f32 or u8 values, not ") + DataTypeName(type));
  }
  Tensor pixels(DataType::kU8, images.shape());
  std::transform(images.data<float>(), images.data<float>() + images.element_count(), pixels.data<uint8_t>(),
                 [](float v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0f, 1.0f) * 255.0f)); });
  return pixels;
}

Result<LabeledImages> LoadDataset(std::string_view spec) {
  PPML_ASSIGN_OR_RETURN(DatasetSpec parsed, ParseDatasetSpec(spec));
  return LoadDataset(parsed);
}

}  // namespace ppml
