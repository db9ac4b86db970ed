// Scalar quantization arithmetic shared by the weight, bias and activation
// rewrites, with ONNX's rounding: round half to even, then saturate.
#include <algorithm>
#include <cmath>
#include <limits>

#include "int8/quantize.h"

namespace ppml::int8 {
namespace {

// std::nearbyint rounds half to even in the default rounding mode, which
// every thread starts in and nothing in this project changes.
double RoundHalfEven(double v) { return std::nearbyint(v); }

int64_t ProductOfDims(const Shape& shape, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= shape[i];
  return p;
}

}  // namespace

int32_t QuantizeValue(float x, float scale, int32_t zero_point, DataType type) {
  double lo, hi;
  switch (type) {
    case DataType::kU8: lo = 0; hi = 255; break;
    case DataType::kS8: lo = -128; hi = 127; break;
    case DataType::kS32:
      lo = std::numeric_limits<int32_t>::min();
      hi = std::numeric_limits<int32_t>::max();
      break;
    default: return 0;
  }
  if (std::isnan(x) || scale == 0) return static_cast<int32_t>(std::clamp<double>(zero_point, lo, hi));
  const double q = RoundHalfEven(static_cast<double>(x) / scale) + zero_point;
  return static_cast<int32_t>(std::clamp(q, lo, hi));
}

float DequantizeValue(int32_t q, float scale, int32_t zero_point) {
  return static_cast<float>(static_cast<int64_t>(q) - zero_point) * scale;
}

ActivationQuantization ActivationParams(float threshold, bool non_negative) {
  ActivationQuantization p;
  p.type = non_negative ? DataType::kU8 : DataType::kS8;
  p.zero_point = 0;
  const float levels = non_negative ? 255.f : 127.f;
  p.scale = std::isfinite(threshold) && threshold > 0 ? threshold / levels : 1.f;
  return p;
}

std::vector<float> PerChannelScales(std::span<const float> weights, const Shape& shape, int axis, int qmax) {
  if (axis < 0 || static_cast<size_t>(axis) >= shape.size()) return {};
  const int64_t channels = shape[static_cast<size_t>(axis)];
  const int64_t outer = ProductOfDims(shape, 0, static_cast<size_t>(axis));
  const int64_t inner = ProductOfDims(shape, static_cast<size_t>(axis) + 1, shape.size());
  std::vector<float> max_abs(static_cast<size_t>(channels), 0.f);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < channels; ++c) {
      const float* slice = weights.data() + (o * channels + c) * inner;
      float& m = max_abs[static_cast<size_t>(c)];
      for (int64_t i = 0; i < inner; ++i) m = std::max(m, std::fabs(slice[i]));
    }
  }
  std::vector<float> scales(max_abs.size());
  for (size_t c = 0; c < scales.size(); ++c) scales[c] = max_abs[c] > 0 ? max_abs[c] / static_cast<float>(qmax) : 1.f;
  return scales;
}

std::vector<int8_t> QuantizePerChannel(std::span<const float> weights, const Shape& shape, int axis,
                                       std::span<const float> scales, int qmax) {
  const int64_t channels = shape[static_cast<size_t>(axis)];
  const int64_t outer = ProductOfDims(shape, 0, static_cast<size_t>(axis));
  const int64_t inner = ProductOfDims(shape, static_cast<size_t>(axis) + 1, shape.size());
  std::vector<int8_t> q(weights.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t base = (o * channels + c) * inner;
      const double s = scales[static_cast<size_t>(c)];
      const double limit = qmax;
      for (int64_t i = 0; i < inner; ++i) {
        const double v = RoundHalfEven(weights[static_cast<size_t>(base + i)] / s);
        q[static_cast<size_t>(base + i)] = static_cast<int8_t>(std::clamp(v, -limit, limit));
      }
    }
  }
  return q;
}

}  // namespace ppml::int8
