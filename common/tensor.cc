#include "common/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace ppml {

size_t ElementSize(DataType type) {
  switch (type) {
    case DataType::kF32: return 4;
    case DataType::kU8: return 1;
    case DataType::kS8: return 1;
    case DataType::kS32: return 4;
    case DataType::kS64: return 8;
  }
  return 0;
}

const char* DataTypeName(DataType type) {
  switch (type) {
    case DataType::kF32: return "f32";
    case DataType::kU8: return "u8";
    case DataType::kS8: return "s8";
    case DataType::kS32: return "s32";
    case DataType::kS64: return "s64";
  }
  return "?";
}

int64_t ElementCount(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

double ElementAsDouble(DataType type, const void* data, int64_t i) {
  switch (type) {
    case DataType::kF32: return static_cast<const float*>(data)[i];
    case DataType::kU8: return static_cast<const uint8_t*>(data)[i];
    case DataType::kS8: return static_cast<const int8_t*>(data)[i];
    case DataType::kS32: return static_cast<const int32_t*>(data)[i];
    case DataType::kS64: return static_cast<double>(static_cast<const int64_t*>(data)[i]);
  }
  return 0;
}

std::string ShapeToString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Shape WithoutLeadingOnes(const Shape& shape) {
  return Shape(std::find_if(shape.begin(), shape.end(), [](int64_t d) { return d != 1; }), shape.end());
}

void Tensor::AlignedFree::operator()(void* p) const { std::free(p); }

Tensor::Tensor(DataType type, Shape shape)
    : dtype_(type), shape_(std::move(shape)), element_count_(ElementCount(shape_)) {
  const size_t bytes = byte_size();
  // aligned_alloc needs a size that is a multiple of the alignment.
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  storage_.reset(std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded));
  if (!storage_) throw std::bad_alloc();
  std::memset(storage_.get(), 0, rounded == 0 ? kAlignment : rounded);
}

Tensor Tensor::Clone() const {
  Tensor copy(dtype_, shape_);
  if (byte_size()) std::memcpy(copy.raw_data(), raw_data(), byte_size());
  return copy;
}

Result<Tensor> Tensor::Reshaped(Shape shape) const {
  if (ElementCount(shape) != element_count_) {
    return Status::InvalidArgument("cannot reshape " + ShapeToString(shape_) + " to " + ShapeToString(shape));
  }
  Tensor copy = Clone();
  copy.shape_ = std::move(shape);
  return copy;
}

Tensor Tensor::CopyRows(int64_t first, int64_t count, int64_t rows) const {
  Shape shape = shape_;
  shape[0] = std::max(count, rows);
  Tensor out(dtype_, std::move(shape));
  const size_t row_bytes = shape_[0] > 0 ? byte_size() / static_cast<size_t>(shape_[0]) : 0;
  std::memcpy(out.raw_data(), bytes().data() + static_cast<size_t>(first) * row_bytes,
              static_cast<size_t>(count) * row_bytes);
  return out;
}

bool FillUniform(Tensor& tensor, std::mt19937& rng) {
  switch (tensor.dtype()) {
    case DataType::kF32:
      for (float& v : tensor.values<float>()) v = static_cast<float>(rng() * (1.0 / 4294967296.0));
      return true;
    case DataType::kU8:
    case DataType::kS8:
      // Every byte pattern is a valid pixel (u8) or quantized value (s8).
      for (std::byte& v : tensor.bytes()) v = static_cast<std::byte>(rng() >> 24);
      return true;
    default:
      return false;
  }
}

}  // namespace ppml
