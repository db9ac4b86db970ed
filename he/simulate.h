// Plaintext simulation of an approximated RNN: the unrolled cell run over a
// labelled image set with a chosen polynomial (or the exact function) for
// each step's activations, optionally with CKKS-like noise.
//
// Speed is what makes the searches possible: every step of every image is
// a small matrix-vector product (H = 32 floats, vectorised), images are
// split over std::threads, and the simulator remembers the hidden-state
// trajectories of its last few runs. A run whose first k steps use the same
// polynomials as a remembered one starts from that trajectory's state after
// step k - 1 instead of step 0, so lowering cell t re-runs steps t..T-1 only.
// (Polynomials are compared by address: the searches take them from one
// table, so equal addresses mean equal polynomials.)
//
// Noise (noise_bits > 0): every matrix-product output and every polynomial
// output v becomes v·(1 + ε) with ε of standard deviation 2^-noise_bits,
// the relative precision CKKS keeps at a given scale after its own noise;
// ε is a hash of (seed, image, step, unit), so runs are reproducible and
// independent of the thread count.
//
// Thread safety: a Simulator is not safe to use from several threads at once
// (it runs its own threads inside each call).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "he/approx.h"
#include "he/rnn.h"

namespace ppml::he {

// The activations of one step; nullptr means the exact function.
struct CellPolynomials {
  const Polynomial* tanh = nullptr;
  const Polynomial* sigmoid = nullptr;  // gru only
  bool operator==(const CellPolynomials&) const = default;
};

struct SimulationOptions {
  int threads = 2;
  int noise_bits = 0;  // 0: no noise
  uint64_t noise_seed = 1;
  int cached_trajectories = 4;  // each holds N × steps × hidden floats
};

// Observed pre-activations of one step (over images and units): the exact
// range, and a histogram on a fixed grid of kHistogramBins bins over
// [-kHistogramLimit, kHistogramLimit] (values beyond count in the end bins),
// the distribution `--fit dist` weights its least squares by.
struct PreactivationRange {
  static constexpr double kHistogramLimit = 64;
  static constexpr int kHistogramBins = 8192;
  static double BinCenter(int bin) { return -kHistogramLimit + (bin + 0.5) * (2 * kHistogramLimit / kHistogramBins); }

  float tanh_lo = 0, tanh_hi = 0;
  float sigmoid_lo = 0, sigmoid_hi = 0;  // gru: z and r together
  std::vector<double> tanh_histogram, sigmoid_histogram;  // kHistogramBins counts each
};

class Simulator {
 public:
  // `images` is f32 [N, ...] with steps × input_size values per image; the
  // model's input transform is applied here. InvalidArgument when the image
  // size or label count does not match.
  static Result<std::unique_ptr<Simulator>> Create(const RnnModel& model, const Tensor& images,
                                                   std::vector<int> labels, const SimulationOptions& options);
  ~Simulator();

  int count() const;
  const RnnModel& model() const;

  // Top-1 accuracy over all images; cells.size() must equal steps.
  double Accuracy(std::span<const CellPolynomials> cells);
  // Logits [count × classes] of images [first, first + count).
  std::vector<float> Logits(std::span<const CellPolynomials> cells, int first, int count);
  // Min/max and histogram of every step's activation inputs with exact activations.
  std::vector<PreactivationRange> ObserveRanges();

 private:
  struct State;
  explicit Simulator(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace ppml::he
