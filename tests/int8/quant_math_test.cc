// Quantization arithmetic: QuantizeValue/DequantizeValue round trips and
// saturation, activation parameters, and per-channel weight scales checked
// against hand-computed references.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "int8/quantize.h"

namespace ppml::int8 {
namespace {

TEST(QuantizeValue, RoundTripErrorIsAtMostHalfAScale) {
  struct Case {
    float scale;
    int32_t zero_point;
    DataType type;
    float lo, hi;  // the representable range
  };
  const Case cases[] = {
      {6.f / 255, 0, DataType::kU8, 0.f, 6.f},
      {0.02f, 128, DataType::kU8, -2.56f, 2.54f},
      {3.f / 127, 0, DataType::kS8, -3.f, 3.f},
      {0.5f, -10, DataType::kS8, -59.f, 68.f},
  };
  for (const Case& c : cases) {
    for (int i = 0; i <= 1000; ++i) {
      const float x = c.lo + (c.hi - c.lo) * static_cast<float>(i) / 1000.f;
      const int32_t q = QuantizeValue(x, c.scale, c.zero_point, c.type);
      const float back = DequantizeValue(q, c.scale, c.zero_point);
      EXPECT_LE(std::fabs(back - x), c.scale / 2 * 1.0001f)
          << "x=" << x << " scale=" << c.scale << " zp=" << c.zero_point << " q=" << q;
    }
  }
}

TEST(QuantizeValue, SaturatesToTheTypeRange) {
  EXPECT_EQ(QuantizeValue(1000.f, 1.f, 0, DataType::kU8), 255);
  EXPECT_EQ(QuantizeValue(-5.f, 1.f, 0, DataType::kU8), 0);
  EXPECT_EQ(QuantizeValue(1000.f, 1.f, 0, DataType::kS8), 127);
  EXPECT_EQ(QuantizeValue(-1000.f, 1.f, 0, DataType::kS8), -128);
  EXPECT_EQ(QuantizeValue(1e12f, 1.f, 0, DataType::kS32), 2147483647);
  EXPECT_EQ(QuantizeValue(-1e12f, 1.f, 0, DataType::kS32), -2147483647 - 1);
  EXPECT_EQ(QuantizeValue(10.f, 1.f, 250, DataType::kU8), 255);
}

TEST(QuantizeValue, RoundsHalfToEvenAsOnnxDoes) {
  EXPECT_EQ(QuantizeValue(0.5f, 1.f, 0, DataType::kS8), 0);
  EXPECT_EQ(QuantizeValue(1.5f, 1.f, 0, DataType::kS8), 2);
  EXPECT_EQ(QuantizeValue(2.5f, 1.f, 0, DataType::kS8), 2);
  EXPECT_EQ(QuantizeValue(-2.5f, 1.f, 0, DataType::kS8), -2);
  EXPECT_EQ(QuantizeValue(2.5f, 1.f, 1, DataType::kU8), 3);  // round first, then add the zero point
}

TEST(ActivationParams, UnsignedAfterReluSignedOtherwise) {
  const ActivationQuantization u = ActivationParams(5.1f, /*non_negative=*/true);
  EXPECT_EQ(u.type, DataType::kU8);
  EXPECT_EQ(u.zero_point, 0);
  EXPECT_FLOAT_EQ(u.scale, 5.1f / 255);
  const ActivationQuantization s = ActivationParams(2.54f, /*non_negative=*/false);
  EXPECT_EQ(s.type, DataType::kS8);
  EXPECT_EQ(s.zero_point, 0);
  EXPECT_FLOAT_EQ(s.scale, 2.54f / 127);
  EXPECT_FLOAT_EQ(ActivationParams(0.f, true).scale, 1.f);  // an all-zero tensor
  EXPECT_FLOAT_EQ(ActivationParams(NAN, false).scale, 1.f);
}

TEST(PerChannelScales, ConvWeightsAlongAxisZero) {
  // W [O=2, I=2, kh=1, kw=2]
  const std::vector<float> w = {0.5f, -1.27f, 0.1f, 0.2f,   // channel 0: max |w| = 1.27
                                -0.254f, 0.f, 0.13f, 0.1f};   // channel 1: max |w| = 0.254
  const Shape shape = {2, 2, 1, 2};
  const std::vector<float> scales = PerChannelScales(w, shape, 0);
  ASSERT_EQ(scales.size(), 2u);
  EXPECT_FLOAT_EQ(scales[0], 1.27f / 127);
  EXPECT_FLOAT_EQ(scales[1], 0.254f / 127);
  const std::vector<int8_t> q = QuantizePerChannel(w, shape, 0, scales);
  // w / scale: 0.5/0.01 = 50, 0.13/0.002 = 65, 0.1/0.002 = 50.
  const std::vector<int8_t> want = {50, -127, 10, 20, -127, 0, 65, 50};
  EXPECT_EQ(q, want);
}

TEST(PerChannelScales, MatMulWeightsAlongAxisOne) {
  // B [K=3, N=2]: channel n is column n.
  const std::vector<float> b = {1.f, -0.5f,
                                -2.54f, 0.25f,
                                0.f, 0.127f};
  const Shape shape = {3, 2};
  const std::vector<float> scales = PerChannelScales(b, shape, 1);
  ASSERT_EQ(scales.size(), 2u);
  EXPECT_FLOAT_EQ(scales[0], 2.54f / 127);
  EXPECT_FLOAT_EQ(scales[1], 0.5f / 127);
  const std::vector<int8_t> q = QuantizePerChannel(b, shape, 1, scales);
  const std::vector<int8_t> want = {50, -127, -127, 64, 0, 32};
  EXPECT_EQ(q, want);
}

TEST(PerChannelScales, ReducedRangeUsesSevenBits) {
  const std::vector<float> w = {0.63f, -0.315f, 1.26f, 0.5f};  // [2,2], axis 0
  const std::vector<float> scales = PerChannelScales(w, {2, 2}, 0, 63);
  EXPECT_FLOAT_EQ(scales[0], 0.63f / 63);
  EXPECT_FLOAT_EQ(scales[1], 1.26f / 63);
  const std::vector<int8_t> q = QuantizePerChannel(w, {2, 2}, 0, scales, 63);
  EXPECT_EQ(q, (std::vector<int8_t>{63, -32, 63, 25}));  // -31.5 rounds to even -32
}

TEST(PerChannelScales, AllZeroChannelGetsScaleOne) {
  const std::vector<float> w = {0, 0, 0, 3.81f};
  const std::vector<float> scales = PerChannelScales(w, {2, 2}, 0);
  EXPECT_FLOAT_EQ(scales[0], 1.f);
  EXPECT_FLOAT_EQ(scales[1], 3.81f / 127);
}

TEST(PerChannelScales, RoundTripErrorWithinHalfAScalePerChannel) {
  std::vector<float> w(4 * 3 * 3 * 3);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(static_cast<float>(i) * 0.37f) * (1 + i % 4);
  const Shape shape = {4, 3, 3, 3};
  const std::vector<float> scales = PerChannelScales(w, shape, 0);
  const std::vector<int8_t> q = QuantizePerChannel(w, shape, 0, scales);
  for (size_t i = 0; i < w.size(); ++i) {
    const float s = scales[i / 27];
    EXPECT_LE(std::fabs(q[i] * s - w[i]), s / 2 * 1.0001f) << i;
  }
}

}  // namespace
}  // namespace ppml::int8
