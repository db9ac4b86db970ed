// AbsHistogram: exact re-binning as the range grows, and the percentile and
// entropy thresholds on distributions whose answers are known.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "int8/histogram.h"
#include "tests/int8/int8_test_util.h"

namespace ppml::int8 {
namespace {

TEST(AbsHistogram, RebinningKeepsEveryCount) {
  AbsHistogram h;
  h.Add(std::vector<float>{0.f, 0.f});  // zeros before any range is known
  EXPECT_EQ(h.range(), 0);
  h.Add(std::vector<float>{0.5f, -1.f, 0.25f});
  EXPECT_DOUBLE_EQ(h.range(), 1.0);
  h.Add(std::vector<float>{3.5f, NAN, INFINITY});  // non-finite values are ignored
  EXPECT_DOUBLE_EQ(h.range(), 4.0);                 // doubled twice
  EXPECT_DOUBLE_EQ(h.count(), 6);
  EXPECT_FLOAT_EQ(h.abs_max(), 3.5f);
  const auto& bins = h.bins();
  EXPECT_DOUBLE_EQ(std::accumulate(bins.begin(), bins.end(), 0.0), 6);
  const double w = h.bin_width();
  EXPECT_EQ(bins[0], 2);                                   // the zeros
  EXPECT_EQ(bins[static_cast<size_t>(0.25 / w)], 1);       // 0.25
  EXPECT_EQ(bins[static_cast<size_t>(0.5 / w)], 1);        // 0.5
  // |-1| equalled the first range, so it sat in the last bin (the top edge
  // is closed); merging keeps it in the bin that ends at 1.0.
  EXPECT_EQ(bins[static_cast<size_t>(1.0 / w) - 1], 1);
  EXPECT_EQ(bins[static_cast<size_t>(3.5 / w)], 1);        // 3.5
}

TEST(AbsHistogram, PercentileOfUniformData) {
  AbsHistogram h;
  const std::vector<float> x = test::UniformSamples(200000, 1, -2.f, 2.f);
  h.Add(x);
  EXPECT_NEAR(h.Percentile(50), 1.0f, 0.01f);
  EXPECT_NEAR(h.Percentile(90), 1.8f, 0.01f);
  EXPECT_LE(h.Percentile(100), h.abs_max());
  EXPECT_FLOAT_EQ(h.Percentile(100), h.abs_max());
}

TEST(AbsHistogram, PercentileClipsHeavyTails) {
  // Gaussian bulk plus a few huge outliers: the 99.99th percentile ignores them.
  std::vector<float> x = test::GaussianSamples(100000, 2, 1.f);
  for (int i = 0; i < 5; ++i) x.push_back(100.f + i);
  AbsHistogram h;
  h.Add(x);
  EXPECT_FLOAT_EQ(h.abs_max(), 104.f);
  const float p = h.Percentile(99.99);
  EXPECT_LT(p, 10.f);
  EXPECT_GT(p, 3.f);
}

TEST(AbsHistogram, EntropyThresholdIsWithinTheData) {
  // Uniform data has no tail to clip: the threshold stays near the maximum.
  AbsHistogram u;
  u.Add(test::UniformSamples(200000, 3, -1.f, 1.f));
  const float tu = u.EntropyThreshold();
  EXPECT_GT(tu, 0.8f);
  EXPECT_LE(tu, u.abs_max());

  // A Gaussian is clipped well inside its extreme values, but beyond 2 sigma.
  AbsHistogram g;
  g.Add(test::GaussianSamples(200000, 4, 1.f));
  const float tg = g.EntropyThreshold();
  EXPECT_GT(tg, 2.f);
  EXPECT_LT(tg, g.abs_max());

  // A far outlier does not drag it along. (The search starts at 128 of the
  // 2048 bins, so with the range stretched to 1000 the threshold cannot go
  // below 1000 * 128 / 2048 = 62.5: TensorRT's method shares that limit.)
  std::vector<float> x = test::GaussianSamples(200000, 5, 1.f);
  x.push_back(1000.f);
  AbsHistogram o;
  o.Add(x);
  EXPECT_LT(o.EntropyThreshold(), 0.2f * o.abs_max());
}

TEST(AbsHistogram, EmptyAndAllZero) {
  AbsHistogram h;
  EXPECT_EQ(h.Percentile(99.99), 0.f);
  EXPECT_EQ(h.EntropyThreshold(), 0.f);
  h.Add(std::vector<float>(100, 0.f));
  EXPECT_EQ(h.Percentile(99.99), 0.f);
  EXPECT_EQ(h.EntropyThreshold(), 0.f);
}

}  // namespace
}  // namespace ppml::int8
