#include "he/simulate.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

namespace ppml::he {
namespace {

// A polynomial (or the exact function) as the inner loops evaluate it: float
// Horner in u, the same operations, in the same order, as the exported ONNX
// graph (a zero coefficient adds nothing there and +0.0f changes nothing here).
struct PreparedActivation {
  bool exact = true;
  Activation activation = Activation::kTanh;
  float scale = 1, shift = 0;
  std::vector<float> coeffs;
};

PreparedActivation Prepare(const Polynomial* p, Activation activation) {
  PreparedActivation prepared;
  prepared.activation = activation;
  if (p == nullptr) return prepared;
  prepared.exact = false;
  prepared.scale = static_cast<float>(p->scale());
  prepared.shift = static_cast<float>(p->shift());
  prepared.coeffs.assign(p->coeffs.begin(), p->coeffs.end());
  return prepared;
}

void Apply(const PreparedActivation& a, float* v, int n) {
  if (a.exact) {
    if (a.activation == Activation::kTanh) {
      for (int j = 0; j < n; ++j) v[j] = std::tanh(v[j]);
    } else {
      for (int j = 0; j < n; ++j) v[j] = 1.0f / (1.0f + std::exp(-v[j]));
    }
    return;
  }
  // Horner with the coefficient loop outside, so the unit loop vectorises.
  const int degree = static_cast<int>(a.coeffs.size()) - 1;
  const float* c = a.coeffs.data();
  constexpr int kChunk = 64;
  float u[kChunk], acc[kChunk];
  for (int first = 0; first < n; first += kChunk) {
    const int m = std::min(kChunk, n - first);
    float* x = v + first;
    for (int j = 0; j < m; ++j) {
      u[j] = x[j] * a.scale + a.shift;
      acc[j] = c[degree] * u[j];
    }
    for (int k = degree - 1; k >= 0; --k) {
      const float ck = c[k];
      if (k > 0) {
        for (int j = 0; j < m; ++j) acc[j] = (acc[j] + ck) * u[j];
      } else {
        for (int j = 0; j < m; ++j) acc[j] = acc[j] + ck;
      }
    }
    for (int j = 0; j < m; ++j) x[j] = acc[j];
  }
}

// splitmix64: a counter-based hash, so noise depends only on its coordinates.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Relative noise on v[0..n): v·(1 + σ·g), g ≈ N(0,1) from four uniforms (Irwin–Hall).
void AddNoise(float* v, int n, float sigma, uint64_t seed, uint64_t image, uint64_t step, uint64_t site) {
  uint64_t base = Mix(seed ^ Mix(image * 0x100000001b3ull ^ Mix(step * 131 + site)));
  for (int j = 0; j < n; ++j) {
    uint64_t r = Mix(base + static_cast<uint64_t>(j));
    float sum = 0;
    for (int q = 0; q < 4; ++q) sum += static_cast<float>((r >> (16 * q)) & 0xffff) / 65535.0f;
    v[j] *= 1.0f + sigma * (sum - 2.0f) * 1.7320508f;
  }
}

// y[0..n) += x[0..m) · Wt, Wt row-major [m][n] (the transposed weight).
inline void AccumulateProduct(const float* x, int m, const float* wt, int n, float* y) {
  for (int i = 0; i < m; ++i) {
    const float xi = x[i];
    const float* row = wt + static_cast<size_t>(i) * n;
    for (int j = 0; j < n; ++j) y[j] += xi * row[j];
  }
}

// Wt[i][j] = W[j][i] for the given gate blocks stacked along j.
std::vector<float> StackTransposed(std::initializer_list<const Matrix*> blocks) {
  const int cols = (*blocks.begin())->cols;
  int rows = 0;
  for (const Matrix* m : blocks) rows += m->rows;
  std::vector<float> wt(static_cast<size_t>(cols) * rows);
  int offset = 0;
  for (const Matrix* m : blocks) {
    for (int r = 0; r < m->rows; ++r) {
      for (int c = 0; c < cols; ++c) wt[static_cast<size_t>(c) * rows + offset + r] = m->at(r, c);
    }
    offset += m->rows;
  }
  return wt;
}

// One remembered run: which activations each step used and the state after it.
struct Trajectory {
  std::vector<CellPolynomials> key;
  std::vector<float> states;  // [steps][images][hidden]
  uint64_t last_used = 0;
};

}  // namespace

struct Simulator::State {
  RnnModel model;
  SimulationOptions options;
  int n = 0, steps = 0, inputs = 0, hidden = 0, classes = 0, gates = 1;
  std::vector<float> pixels;  // [n][steps][inputs], input transform applied
  std::vector<int> labels;
  std::vector<float> wt, ut;  // [inputs][gates*hidden], [hidden][gates*hidden]
  std::vector<float> bias_x;  // gates*hidden: added to the input product
  std::vector<float> bias_h;  // gru: bn_h added to U_n h before r multiplies it
  std::vector<Trajectory> cache;
  uint64_t clock = 0;

  // What one call needs in the inner loop.
  struct Run {
    std::vector<PreparedActivation> tanh, sigmoid;  // per step
    int start_step = 0;
    const float* start_states = nullptr;  // [images][hidden] after start_step - 1; null: zeros
    float* save_states = nullptr;         // [steps][images][hidden] or null
    float sigma = 0;
  };

  // Runs image `i` from run.start_step; writes the final hidden state to h.
  void RunImage(const Run& run, int i, float* h, float* scratch, PreactivationRange* ranges) const {
    if (run.start_states != nullptr) {
      std::memcpy(h, run.start_states + static_cast<size_t>(i) * hidden, sizeof(float) * hidden);
    } else {
      std::fill(h, h + hidden, 0.0f);
    }
    const int width = gates * hidden;
    float* a = scratch;           // input product + biases
    float* c = scratch + width;   // recurrent product
    for (int t = run.start_step; t < steps; ++t) {
      const float* x = pixels.data() + (static_cast<size_t>(i) * steps + t) * inputs;
      std::memcpy(a, bias_x.data(), sizeof(float) * width);
      AccumulateProduct(x, inputs, wt.data(), width, a);
      std::fill(c, c + width, 0.0f);
      AccumulateProduct(h, hidden, ut.data(), width, c);
      if (gates == 1) {
        for (int j = 0; j < hidden; ++j) a[j] += c[j];
        if (run.sigma > 0) AddNoise(a, hidden, run.sigma, options.noise_seed, i, t, 0);
        if (ranges != nullptr) Observe(a, hidden, ranges[t].tanh_lo, ranges[t].tanh_hi, ranges[t].tanh_histogram);
        Apply(run.tanh[t], a, hidden);
        if (run.sigma > 0) AddNoise(a, hidden, run.sigma, options.noise_seed, i, t, 1);
        std::memcpy(h, a, sizeof(float) * hidden);
      } else {
        float* zr = a;  // [z | r]
        for (int j = 0; j < 2 * hidden; ++j) zr[j] += c[j];
        if (run.sigma > 0) AddNoise(zr, 2 * hidden, run.sigma, options.noise_seed, i, t, 0);
        if (ranges != nullptr) Observe(zr, 2 * hidden, ranges[t].sigmoid_lo, ranges[t].sigmoid_hi, ranges[t].sigmoid_histogram);
        Apply(run.sigmoid[t], zr, 2 * hidden);
        if (run.sigma > 0) AddNoise(zr, 2 * hidden, run.sigma, options.noise_seed, i, t, 1);
        const float* z = zr;
        const float* r = zr + hidden;
        float* n_pre = a + 2 * hidden;
        const float* un_h = c + 2 * hidden;
        for (int j = 0; j < hidden; ++j) n_pre[j] += r[j] * (un_h[j] + bias_h[j]);
        if (run.sigma > 0) AddNoise(n_pre, hidden, run.sigma, options.noise_seed, i, t, 2);
        if (ranges != nullptr) Observe(n_pre, hidden, ranges[t].tanh_lo, ranges[t].tanh_hi, ranges[t].tanh_histogram);
        Apply(run.tanh[t], n_pre, hidden);
        if (run.sigma > 0) AddNoise(n_pre, hidden, run.sigma, options.noise_seed, i, t, 3);
        for (int j = 0; j < hidden; ++j) h[j] = (1.0f - z[j]) * n_pre[j] + z[j] * h[j];
      }
      if (run.save_states != nullptr) {
        std::memcpy(run.save_states + (static_cast<size_t>(t) * n + i) * hidden, h, sizeof(float) * hidden);
      }
    }
  }

  static void Observe(const float* v, int count, float& lo, float& hi, std::vector<double>& histogram) {
    constexpr double kBinsPerUnit = PreactivationRange::kHistogramBins / (2 * PreactivationRange::kHistogramLimit);
    for (int j = 0; j < count; ++j) {
      lo = std::min(lo, v[j]);
      hi = std::max(hi, v[j]);
      const double bin = std::floor((v[j] + PreactivationRange::kHistogramLimit) * kBinsPerUnit);
      histogram[static_cast<size_t>(std::clamp(bin, 0.0, PreactivationRange::kHistogramBins - 1.0))] += 1;
    }
  }

  void ComputeLogits(const float* h, float* logits) const {
    for (int k = 0; k < classes; ++k) {
      float acc = model.fc_b[static_cast<size_t>(k)];
      for (int j = 0; j < hidden; ++j) acc += model.fc_w.at(k, j) * h[j];
      logits[k] = acc;
    }
  }

  Run PrepareRun(std::span<const CellPolynomials> cells) const {
    Run run;
    for (const CellPolynomials& cell : cells) {
      run.tanh.push_back(Prepare(cell.tanh, Activation::kTanh));
      run.sigmoid.push_back(Prepare(cell.sigmoid, Activation::kSigmoid));
    }
    run.sigma = options.noise_bits > 0 ? std::ldexp(1.0f, -options.noise_bits) : 0.0f;
    return run;
  }

  // Calls work(first, last, thread_index) on contiguous slices of [0, count).
  template <typename Work>
  void Parallel(int count, Work work) const {
    const int threads = std::max(1, std::min(options.threads, count));
    std::vector<std::thread> pool;
    for (int w = 1; w < threads; ++w) {
      pool.emplace_back(work, static_cast<int>(static_cast<int64_t>(count) * w / threads),
                        static_cast<int>(static_cast<int64_t>(count) * (w + 1) / threads), w);
    }
    work(0, static_cast<int>(count / threads), 0);
    for (auto& thread : pool) thread.join();
  }
};

Simulator::Simulator(std::unique_ptr<State> state) : state_(std::move(state)) {}
Simulator::~Simulator() = default;
int Simulator::count() const { return state_->n; }
const RnnModel& Simulator::model() const { return state_->model; }

Result<std::unique_ptr<Simulator>> Simulator::Create(const RnnModel& model, const Tensor& images,
                                                     std::vector<int> labels, const SimulationOptions& options) {
  auto s = std::make_unique<State>();
  s->model = model;
  s->options = options;
  s->n = images.rank() > 0 ? static_cast<int>(images.dim(0)) : 0;
  s->steps = model.steps;
  s->inputs = model.input_size;
  s->hidden = model.hidden_size;
  s->classes = model.classes;
  s->gates = model.cell == CellKind::kRnn ? 1 : 3;
  const int64_t per_image = static_cast<int64_t>(model.steps) * model.input_size;
  if (images.dtype() != DataType::kF32 || s->n == 0 || images.element_count() != s->n * per_image) {
    return Status::InvalidArgument(model.name + ": images " + ShapeToString(images.shape()) + " do not hold " +
                                   std::to_string(model.steps) + " steps of " + std::to_string(model.input_size) +
                                   " values each");
  }
  if (labels.size() != static_cast<size_t>(s->n)) {
    return Status::InvalidArgument(std::to_string(labels.size()) + " labels for " + std::to_string(s->n) + " images");
  }
  s->pixels.resize(static_cast<size_t>(images.element_count()));
  const float* src = images.data<float>();
  for (size_t k = 0; k < s->pixels.size(); ++k) s->pixels[k] = model.input_scale * src[k] + model.input_shift;
  s->labels = std::move(labels);
  if (model.cell == CellKind::kRnn) {
    s->wt = StackTransposed({&model.w});
    s->ut = StackTransposed({&model.u});
    s->bias_x = model.b;
  } else {
    s->wt = StackTransposed({&model.wz, &model.wr, &model.wn});
    s->ut = StackTransposed({&model.uz, &model.ur, &model.un});
    s->bias_x = model.bz;
    s->bias_x.insert(s->bias_x.end(), model.br.begin(), model.br.end());
    s->bias_x.insert(s->bias_x.end(), model.bn_x.begin(), model.bn_x.end());
    s->bias_h = model.bn_h;
  }
  s->cache.resize(static_cast<size_t>(std::max(0, options.cached_trajectories)));
  return std::unique_ptr<Simulator>(new Simulator(std::move(s)));
}

double Simulator::Accuracy(std::span<const CellPolynomials> cells) {
  State& s = *state_;
  State::Run run = s.PrepareRun(cells);

  // The remembered trajectory sharing the longest prefix of steps.
  Trajectory* source = nullptr;
  int prefix = 0;
  for (Trajectory& entry : s.cache) {
    if (entry.key.size() != cells.size()) continue;
    int p = 0;
    while (p < static_cast<int>(cells.size()) && entry.key[static_cast<size_t>(p)] == cells[static_cast<size_t>(p)]) ++p;
    if (p > prefix || (source == nullptr && p == prefix && p > 0)) {
      source = &entry;
      prefix = p;
    }
  }
  // Where this run is remembered: the least recently used slot other than the source.
  Trajectory* target = nullptr;
  for (Trajectory& entry : s.cache) {
    if (&entry == source && s.cache.size() > 1) continue;
    if (target == nullptr || entry.last_used < target->last_used) target = &entry;
  }
  const size_t step_block = static_cast<size_t>(s.n) * s.hidden;
  if (target != nullptr) {
    target->states.resize(step_block * s.steps);
    if (source != nullptr && source != target && prefix > 0) {
      std::memcpy(target->states.data(), source->states.data(), sizeof(float) * step_block * prefix);
    }
    if (source == nullptr || (source != target && prefix == 0)) prefix = 0;
    target->key.assign(cells.begin(), cells.end());
    target->last_used = ++s.clock;
    run.save_states = target->states.data();
  }
  if (source != nullptr) source->last_used = s.clock;
  run.start_step = prefix;
  run.start_states = prefix > 0 ? (target != nullptr ? target->states.data() : source->states.data()) +
                                      step_block * static_cast<size_t>(prefix - 1)
                                : nullptr;

  std::vector<int> correct(static_cast<size_t>(std::max(1, s.options.threads)), 0);
  s.Parallel(s.n, [&](int first, int last, int w) {
    std::vector<float> h(static_cast<size_t>(s.hidden)), scratch(static_cast<size_t>(2 * s.gates * s.hidden));
    std::vector<float> logits(static_cast<size_t>(s.classes));
    int hits = 0;
    for (int i = first; i < last; ++i) {
      s.RunImage(run, i, h.data(), scratch.data(), nullptr);
      s.ComputeLogits(h.data(), logits.data());
      hits += static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin()) ==
              s.labels[static_cast<size_t>(i)];
    }
    correct[static_cast<size_t>(w)] = hits;
  });
  int total = 0;
  for (int c : correct) total += c;
  return static_cast<double>(total) / s.n;
}

std::vector<float> Simulator::Logits(std::span<const CellPolynomials> cells, int first, int count) {
  const State& s = *state_;
  State::Run run = s.PrepareRun(cells);
  first = std::clamp(first, 0, s.n);
  count = std::clamp(count, 0, s.n - first);
  std::vector<float> out(static_cast<size_t>(count) * s.classes);
  s.Parallel(count, [&](int lo, int hi, int) {
    std::vector<float> h(static_cast<size_t>(s.hidden)), scratch(static_cast<size_t>(2 * s.gates * s.hidden));
    for (int k = lo; k < hi; ++k) {
      s.RunImage(run, first + k, h.data(), scratch.data(), nullptr);
      s.ComputeLogits(h.data(), out.data() + static_cast<size_t>(k) * s.classes);
    }
  });
  return out;
}

std::vector<PreactivationRange> Simulator::ObserveRanges() {
  const State& s = *state_;
  std::vector<CellPolynomials> exact(static_cast<size_t>(s.steps));
  State::Run run = s.PrepareRun(exact);
  run.sigma = 0;
  const float inf = std::numeric_limits<float>::infinity();
  PreactivationRange empty{inf, -inf, inf, -inf, {}, {}};
  empty.tanh_histogram.assign(PreactivationRange::kHistogramBins, 0.0);
  empty.sigmoid_histogram.assign(PreactivationRange::kHistogramBins, 0.0);
  const int threads = std::max(1, s.options.threads);
  std::vector<std::vector<PreactivationRange>> per_thread(static_cast<size_t>(threads),
                                                          std::vector<PreactivationRange>(static_cast<size_t>(s.steps), empty));
  s.Parallel(s.n, [&](int first, int last, int w) {
    std::vector<float> h(static_cast<size_t>(s.hidden)), scratch(static_cast<size_t>(2 * s.gates * s.hidden));
    for (int i = first; i < last; ++i) s.RunImage(run, i, h.data(), scratch.data(), per_thread[static_cast<size_t>(w)].data());
  });
  std::vector<PreactivationRange> ranges(static_cast<size_t>(s.steps), empty);
  for (const auto& part : per_thread) {
    for (size_t t = 0; t < ranges.size(); ++t) {
      ranges[t].tanh_lo = std::min(ranges[t].tanh_lo, part[t].tanh_lo);
      ranges[t].tanh_hi = std::max(ranges[t].tanh_hi, part[t].tanh_hi);
      ranges[t].sigmoid_lo = std::min(ranges[t].sigmoid_lo, part[t].sigmoid_lo);
      ranges[t].sigmoid_hi = std::max(ranges[t].sigmoid_hi, part[t].sigmoid_hi);
      for (int b = 0; b < PreactivationRange::kHistogramBins; ++b) {
        ranges[t].tanh_histogram[static_cast<size_t>(b)] += part[t].tanh_histogram[static_cast<size_t>(b)];
        ranges[t].sigmoid_histogram[static_cast<size_t>(b)] += part[t].sigmoid_histogram[static_cast<size_t>(b)];
      }
    }
  }
  return ranges;
}

}  // namespace ppml::he
