// Labelled image datasets for evaluation, named by a spec string:
//
//   fashion-mnist:test       the 10,000 test images
//   fashion-mnist:train      the 60,000 training images
//   fashion-mnist:test:500   the first 500 test images
//
// Fashion-MNIST comes from the Debian package dataset-fashion-mnist, which
// installs the original gzipped IDX files in /usr/share/datasets/fashion-mnist;
// the environment variable PPML_FASHION_MNIST_DIR points elsewhere.
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace ppml {

struct DatasetSpec {
  std::string name;    // "fashion-mnist"
  std::string split;   // "test" or "train"
  int64_t limit = 0;   // the first `limit` items; 0 for all of them
};

// InvalidArgument for an unknown dataset or split, or a limit that is not a positive integer.
Result<DatasetSpec> ParseDatasetSpec(std::string_view spec);

struct LabeledImages {
  // f32 [N, 1, rows, cols] (rows = cols = 28 for Fashion-MNIST), pixel / 255
  // so every value is in [0, 1].
  Tensor images;
  std::vector<int> labels;  // N class indices, 0..9
};

// Loads what the spec names. A missing file is NotFound saying which package
// to install; a bad magic number or short file is DataLoss naming the file.
// A limit beyond the split's size is InvalidArgument.
Result<LabeledImages> LoadDataset(std::string_view spec);
Result<LabeledImages> LoadDataset(const DatasetSpec& spec);

// The images as a model input of `type`: f32 as loaded, or u8 holding the
// original pixel bytes (pixel = value * 255, exact), for models that take
// pixels (engine/uint8_input.h). Any other type is InvalidArgument.
Result<Tensor> ImagesAs(Tensor images, DataType type);

// The directory holding the Fashion-MNIST files: $PPML_FASHION_MNIST_DIR or
// /usr/share/datasets/fashion-mnist.
std::string FashionMnistDirectory();

// Reads one IDX image file and its label file (gzipped or not).
Result<LabeledImages> LoadIdxImages(const std::string& images_path, const std::string& labels_path,
                                    int64_t limit);

}  // namespace ppml
