// AbsHistogram: the distribution of |x| over every value a tensor took during
// calibration, and the clipping thresholds the histogram calibration methods
// derive from it (percentile, and TensorRT's KL-divergence "entropy" search).
//
// Layout: kBins equal bins over [0, range). The range starts at the largest
// |x| of the first non-zero batch and doubles whenever a later value exceeds
// it; a doubling merges neighbouring bins pairwise, so re-binning is exact
// (no count is ever split between bins) and one pass over the data suffices.
//
//   bin i counts values with  i * range/kBins <= |x| < (i+1) * range/kBins
//   (|x| == range lands in the last bin)
//
// Non-finite values (NaN, inf) are ignored: a calibration set that produces
// them says nothing useful about a clipping range.
//
// Thread safety: a plain value; no shared state. Const methods may run
// concurrently, Add may not run concurrently with anything on the same object.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ppml::int8 {

class AbsHistogram {
 public:
  static constexpr int kBins = 2048;

  AbsHistogram() : bins_(kBins, 0.0) {}

  // Adds every finite value of `values`.
  void Add(std::span<const float> values);

  double count() const { return count_; }
  float abs_max() const { return abs_max_; }
  // Upper edge of the last bin; 0 until a non-zero value was seen.
  double range() const { return range_; }
  double bin_width() const { return range_ / kBins; }
  const std::vector<double>& bins() const { return bins_; }

  // The |x| bound below which `percent` (0 < percent <= 100) of the values
  // lie: the upper edge of the bin where the cumulative count reaches it,
  // capped at abs_max(). 0 for an empty histogram.
  float Percentile(double percent) const;

  // TensorRT's entropy calibration: for each candidate threshold (bin edge
  // from `quantized_bins` bins up to all kBins), clip the distribution there
  // (outliers folded into the last kept bin), quantize the kept bins into
  // `quantized_bins` levels and expand them back, and measure the
  // KL-divergence between the clipped reference and its quantized version.
  // Returns the threshold with the smallest divergence (capped at abs_max()).
  // Bin 0 is counted as if it held as many values as bin 1, so the zeros of
  // a Relu output do not dominate the search (NVIDIA pytorch-quantization's
  // remedy for the same problem).
  float EntropyThreshold(int quantized_bins = 128) const;

 private:
  void GrowRange(float needed);

  std::vector<double> bins_;
  double range_ = 0;
  double count_ = 0;
  double pending_zeros_ = 0;  // zeros seen while range_ is still 0
  float abs_max_ = 0;
};

}  // namespace ppml::int8
