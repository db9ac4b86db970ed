#include "client/image.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#ifdef PPML_HAVE_PNG
#include <png.h>
#endif

namespace ppml::client {

#ifndef PPML_HAVE_PNG

bool PngSupported() { return false; }

Result<Tensor> PngToTensor(const std::string& path, const kserve::TensorMetadata&) {
  return Status::Unsupported(path + ": this ppml was built without PNG support; install libpng-dev (Debian) and "
                                    "rebuild, or give the input as .npy or KServe v2 .json");
}

#else

namespace {

enum class Layout { kNchw, kNhwc, kNhw, kFlat };

struct Plan {
  Layout layout = Layout::kNchw;
  int64_t channels = 1;
  int64_t height = -1;  // -1: the image's
  int64_t width = -1;
  int64_t flat = -1;    // kFlat: H*W (-1: any)
};

bool IsChannelCount(int64_t c) { return c == 1 || c == 3 || c == 4; }

Result<Plan> PlanFor(const std::string& path, const kserve::TensorMetadata& input) {
  const Shape& s = input.shape;
  const std::string where = path + ": model input \"" + input.name + "\" has shape " + ShapeToString(s);
  if (!s.empty() && s[0] != -1 && s[0] != 1) {
    return Status::InvalidArgument(where + ": its batch dimension is not 1 or symbolic, one image cannot fill it");
  }
  Plan plan;
  if (s.size() == 4 && IsChannelCount(s[1])) {
    plan = {Layout::kNchw, s[1], s[2], s[3], -1};
  } else if (s.size() == 4 && IsChannelCount(s[3])) {
    plan = {Layout::kNhwc, s[3], s[1], s[2], -1};
  } else if (s.size() == 3) {
    plan = {Layout::kNhw, 1, s[1], s[2], -1};
  } else if (s.size() == 2) {
    plan = {Layout::kFlat, 1, -1, -1, s[1]};
  } else {
    return Status::InvalidArgument(where + ": not an image layout ([N,C,H,W] or [N,H,W,C] with C 1, 3 or 4, "
                                           "[N,H,W] or [N,H*W]); give the input as .npy instead");
  }
  return plan;
}

struct PngImageDeleter {
  void operator()(png_image* image) const { png_image_free(image); }
};

}  // namespace

bool PngSupported() { return true; }

Result<Tensor> PngToTensor(const std::string& path, const kserve::TensorMetadata& input) {
  if (input.dtype != DataType::kF32 && input.dtype != DataType::kU8) {
    return Status::Unsupported(path + ": model input \"" + input.name + "\" takes " + DataTypeName(input.dtype) +
                               "; images feed FP32 (pixel / 255) or UINT8 inputs only");
  }
  PPML_ASSIGN_OR_RETURN(Plan plan, PlanFor(path, input));

  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_file(&image, path.c_str()) == 0) {
    std::string message = image.message;
    png_image_free(&image);
    return Status::InvalidArgument(path + ": not a readable PNG file: " + message);
  }
  std::unique_ptr<png_image, PngImageDeleter> guard(&image);
  image.format = plan.channels == 1 ? PNG_FORMAT_GRAY : plan.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
  const int64_t height = image.height, width = image.width;
  if ((plan.height != -1 && plan.height != height) || (plan.width != -1 && plan.width != width) ||
      (plan.flat != -1 && plan.flat != height * width)) {
    return Status::InvalidArgument(path + ": the image is " + std::to_string(width) + "x" + std::to_string(height) +
                                   " (WxH), model input \"" + input.name + "\" takes shape " +
                                   ShapeToString(input.shape) + "; resize the image first");
  }
  if (height * width > (int64_t{1} << 26)) {
    return Status::InvalidArgument(path + ": the image is too large (" + std::to_string(width) + "x" +
                                   std::to_string(height) + ")");
  }
  std::vector<uint8_t> pixels(PNG_IMAGE_SIZE(image));
  if (png_image_finish_read(&image, nullptr, pixels.data(), 0, nullptr) == 0) {
    return Status::DataLoss(path + ": PNG decoding failed: " + std::string(image.message));
  }

  const int64_t c = plan.channels;
  Shape shape;
  switch (plan.layout) {
    case Layout::kNchw: shape = {1, c, height, width}; break;
    case Layout::kNhwc: shape = {1, height, width, c}; break;
    case Layout::kNhw: shape = {1, height, width}; break;
    case Layout::kFlat: shape = {1, height * width}; break;
  }
  Tensor tensor(input.dtype, shape);
  // pixels are interleaved HWC; index of the value for (channel, y, x).
  auto destination = [&](int64_t ch, int64_t y, int64_t x) -> int64_t {
    if (plan.layout == Layout::kNchw) return (ch * height + y) * width + x;
    return (y * width + x) * c + ch;  // NHWC, and grey layouts with c = 1
  };
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      for (int64_t ch = 0; ch < c; ++ch) {
        const uint8_t value = pixels[static_cast<size_t>((y * width + x) * c + ch)];
        const int64_t at = destination(ch, y, x);
        if (input.dtype == DataType::kF32) {
          tensor.data<float>()[at] = static_cast<float>(value) / 255.0f;
        } else {
          tensor.data<uint8_t>()[at] = value;
        }
      }
    }
  }
  return tensor;
}

#endif

}  // namespace ppml::client
