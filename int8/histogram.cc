#include "int8/histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ppml::int8 {

void AbsHistogram::Add(std::span<const float> values) {
  float batch_max = 0;
  size_t finite = 0;
  for (float v : values) {
    if (!std::isfinite(v)) continue;
    batch_max = std::max(batch_max, std::fabs(v));
    ++finite;
  }
  count_ += static_cast<double>(finite);
  abs_max_ = std::max(abs_max_, batch_max);
  if (range_ == 0) {
    if (batch_max == 0) {
      pending_zeros_ += static_cast<double>(finite);
      return;
    }
    range_ = batch_max;
    bins_[0] += pending_zeros_;
    pending_zeros_ = 0;
  } else if (batch_max > range_) {
    GrowRange(batch_max);
  }
  const double per_unit = kBins / range_;
  for (float v : values) {
    if (!std::isfinite(v)) continue;
    const auto bin = static_cast<int64_t>(std::fabs(v) * per_unit);
    bins_[static_cast<size_t>(std::min<int64_t>(bin, kBins - 1))] += 1;
  }
}

// Doubles the range until it covers `needed`, merging 2^k neighbouring bins
// into one: every old bin lies wholly inside one new bin.
void AbsHistogram::GrowRange(float needed) {
  int64_t factor = 1;
  while (range_ * static_cast<double>(factor) < needed) factor *= 2;
  std::vector<double> merged(kBins, 0.0);
  for (int64_t i = 0; i < kBins; ++i) {
    merged[static_cast<size_t>(std::min<int64_t>(i / factor, kBins - 1))] += bins_[static_cast<size_t>(i)];
  }
  bins_ = std::move(merged);
  range_ *= static_cast<double>(factor);
}

float AbsHistogram::Percentile(double percent) const {
  if (count_ <= 0) return 0;
  if (range_ == 0) return 0;  // every value was zero
  const double target = std::clamp(percent, 0.0, 100.0) / 100.0 * count_;
  double cumulative = 0;
  for (int i = 0; i < kBins; ++i) {
    cumulative += bins_[static_cast<size_t>(i)];
    if (cumulative >= target) {
      return std::min(static_cast<float>((i + 1) * bin_width()), abs_max_);
    }
  }
  return abs_max_;
}

namespace {

// MXNet's _smooth_distribution: give every empty bin a small mass `eps`,
// taken evenly from the non-empty ones, so that KL(p||q) stays finite.
// False when the distribution has no mass at all.
bool SmoothDistribution(std::vector<double>& d) {
  constexpr double kEps = 1e-4;
  size_t zeros = 0;
  for (double v : d) zeros += v == 0;
  const size_t nonzeros = d.size() - zeros;
  if (nonzeros == 0) return false;
  const double take = kEps * static_cast<double>(zeros) / static_cast<double>(nonzeros);
  for (double& v : d) v = v == 0 ? kEps : v - take;
  return true;
}

// KL(p||q) of the two distributions after normalizing each to sum 1.
double KlDivergence(const std::vector<double>& p, const std::vector<double>& q) {
  double p_sum = 0, q_sum = 0;
  for (size_t k = 0; k < p.size(); ++k) {
    p_sum += p[k];
    q_sum += q[k];
  }
  double kl = 0;
  for (size_t k = 0; k < p.size(); ++k) {
    const double pn = p[k] / p_sum;
    const double qn = q[k] / q_sum;
    if (pn <= 0) continue;
    if (qn <= 0) return std::numeric_limits<double>::infinity();
    kl += pn * std::log(pn / qn);
  }
  return kl;
}

}  // namespace

float AbsHistogram::EntropyThreshold(int quantized_bins) const {
  if (count_ <= 0 || range_ == 0) return 0;
  const size_t levels = static_cast<size_t>(std::clamp(quantized_bins, 2, kBins));
  const size_t n = bins_.size();
  // The zeros of a Relu output would dominate both distributions and pull
  // the threshold far in; as NVIDIA's pytorch-quantization does, let bin 0
  // weigh as much as its neighbour.
  std::vector<double> h = bins_;
  h[0] = h[1];
  // Candidates beyond the last occupied bin only coarsen the quantization.
  size_t last = n - 1;
  while (last > 0 && h[last] == 0) --last;
  const size_t last_candidate = std::max(levels, last + 1);
  std::vector<double> above(n + 1, 0.0);  // above[i] = sum of h[i..n)
  for (size_t i = n; i-- > 0;) above[i] = above[i + 1] + h[i];

  double best_kl = std::numeric_limits<double>::infinity();
  size_t best = last_candidate;
  std::vector<double> p, q;
  for (size_t i = levels; i <= last_candidate; ++i) {
    // Reference: the first i bins, outliers folded into the last one.
    p.assign(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(i));
    p[i - 1] += above[i];
    // Candidate: the first i bins merged into `levels` levels, each level's
    // count spread evenly over the bins that were non-empty.
    q.assign(i, 0.0);
    const size_t merged = i / levels;
    for (size_t j = 0; j < levels; ++j) {
      const size_t start = j * merged;
      const size_t stop = j == levels - 1 ? i : start + merged;
      double total = 0;
      int nonzero = 0;
      for (size_t k = start; k < stop; ++k) {
        total += h[k];
        nonzero += h[k] != 0;
      }
      for (size_t k = start; k < stop && nonzero > 0; ++k) {
        if (h[k] != 0) q[k] = total / nonzero;
      }
    }
    if (!SmoothDistribution(p) || !SmoothDistribution(q)) continue;
    const double kl = KlDivergence(p, q);
    if (kl < best_kl) {
      best_kl = kl;
      best = i;
    }
  }
  return std::min(static_cast<float>(static_cast<double>(best) * bin_width()), abs_max_);
}

}  // namespace ppml::int8
