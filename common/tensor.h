// Tensor: a dense, row-major (C order) n-dimensional array with 64-byte
// aligned storage, owned by the tensor. Move-only: copies are explicit
// (Clone) because tensors are large and a silent copy is a silent slowdown.
// Not thread-safe for concurrent mutation; const access from many threads is fine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace ppml {

enum class DataType { kF32, kU8, kS8, kS32, kS64 };

size_t ElementSize(DataType type);
const char* DataTypeName(DataType type);  // "f32", "u8", ...

using Shape = std::vector<int64_t>;

int64_t ElementCount(const Shape& shape);  // 1 for a scalar (empty shape)

// Element i of `data` (elements of `type`) as a double, whatever the type:
// for scale and zero-point constants, printing and checks, not hot loops.
double ElementAsDouble(DataType type, const void* data, int64_t i);
std::string ShapeToString(const Shape& shape);  // "[16,3,224,224]"
Shape WithoutLeadingOnes(const Shape& shape);    // [1,1,3,1] -> [3,1]

// Maps C++ element types to DataType.
template <typename T> struct DataTypeOf;
template <> struct DataTypeOf<float> { static constexpr DataType value = DataType::kF32; };
template <> struct DataTypeOf<uint8_t> { static constexpr DataType value = DataType::kU8; };
template <> struct DataTypeOf<int8_t> { static constexpr DataType value = DataType::kS8; };
template <> struct DataTypeOf<int32_t> { static constexpr DataType value = DataType::kS32; };
template <> struct DataTypeOf<int64_t> { static constexpr DataType value = DataType::kS64; };

class Tensor {
 public:
  static constexpr size_t kAlignment = 64;

  Tensor() = default;  // an empty f32 tensor of shape [0]
  Tensor(DataType type, Shape shape);  // zero-filled

  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  template <typename T>
  static Tensor FromVector(Shape shape, const std::vector<T>& values);

  Tensor Clone() const;
  // Same bytes, another shape with the same element count.
  Result<Tensor> Reshaped(Shape shape) const;
  // Rows [first, first + count) along dimension 0 (rank >= 1, in range), as
  // a tensor of max(count, rows) rows whose rows past `count` are zero: the
  // padding of a short last batch for a model with a fixed batch.
  Tensor CopyRows(int64_t first, int64_t count, int64_t rows = 0) const;

  DataType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t dim(size_t i) const { return shape_[i]; }
  int64_t element_count() const { return element_count_; }
  size_t byte_size() const { return static_cast<size_t>(element_count_) * ElementSize(dtype_); }

  void* raw_data() { return storage_.get(); }
  const void* raw_data() const { return storage_.get(); }
  std::span<std::byte> bytes() { return {static_cast<std::byte*>(raw_data()), byte_size()}; }
  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(raw_data()), byte_size()}; }

  // Typed views; the element type must match dtype() (checked in debug builds).
  template <typename T> T* data();
  template <typename T> const T* data() const;
  double ElementAsDouble(int64_t i) const { return ppml::ElementAsDouble(dtype_, raw_data(), i); }

  template <typename T> std::span<T> values() { return {data<T>(), static_cast<size_t>(element_count_)}; }
  template <typename T> std::span<const T> values() const {
    return {data<T>(), static_cast<size_t>(element_count_)};
  }

 private:
  struct AlignedFree { void operator()(void* p) const; };

  DataType dtype_ = DataType::kF32;
  Shape shape_{0};
  int64_t element_count_ = 0;
  std::unique_ptr<void, AlignedFree> storage_;
};

template <typename T>
T* Tensor::data() {
#ifndef NDEBUG
  if (DataTypeOf<T>::value != dtype_) __builtin_trap();
#endif
  return static_cast<T*>(storage_.get());
}

template <typename T>
const T* Tensor::data() const {
#ifndef NDEBUG
  if (DataTypeOf<T>::value != dtype_) __builtin_trap();
#endif
  return static_cast<const T*>(storage_.get());
}

template <typename T>
Tensor Tensor::FromVector(Shape shape, const std::vector<T>& values) {
  Tensor t(DataTypeOf<T>::value, std::move(shape));
  std::copy(values.begin(), values.begin() + std::min<size_t>(values.size(), t.element_count()), t.data<T>());
  return t;
}

// Fills `tensor` with pseudo-random values from `rng` (mt19937's sequence is
// fixed by the standard, so the values are the same everywhere): f32
// uniform in [0, 1], u8 and s8 uniform over their whole range. Returns false,
// leaving the tensor as it is, for any other type.
bool FillUniform(Tensor& tensor, std::mt19937& rng);

}  // namespace ppml
