#include "he/search.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>

#include "he/depth.h"

namespace ppml::he {

namespace {

Status CheckDegrees(std::vector<int>& degrees) {
  if (degrees.empty()) return Status::InvalidArgument("--degrees: no degree given");
  std::sort(degrees.begin(), degrees.end());
  degrees.erase(std::unique(degrees.begin(), degrees.end()), degrees.end());
  for (int d : degrees) {
    if (d < 1 || d > 63) return Status::InvalidArgument("--degrees: degree " + std::to_string(d) + " is not in 1..63");
  }
  return Status::Ok();
}

}  // namespace

Result<PolynomialTable> PolynomialTable::LeastSquares(const RnnModel& model, std::vector<int> degrees, double lo,
                                                      double hi) {
  PPML_RETURN_IF_ERROR(CheckDegrees(degrees));
  PolynomialTable table;
  table.degrees_ = degrees;
  table.cells_ = model.steps;
  table.gru_ = model.cell == CellKind::kGru;
  std::vector<std::unique_ptr<Polynomial>> tanh_fits, sigmoid_fits;
  table.tanh_.resize(static_cast<size_t>(model.steps));
  table.sigmoid_.resize(static_cast<size_t>(model.steps));
  for (int d : degrees) {
    PPML_ASSIGN_OR_RETURN(Polynomial t, FitLeastSquares(Activation::kTanh, d, lo, hi));
    PPML_ASSIGN_OR_RETURN(Polynomial s, FitLeastSquares(Activation::kSigmoid, d, lo, hi));
    for (int c = 0; c < model.steps; ++c) {
      // One copy per cell keeps lookups uniform; they are a few hundred bytes.
      table.tanh_[static_cast<size_t>(c)].push_back(std::make_unique<Polynomial>(t));
      if (table.gru_) table.sigmoid_[static_cast<size_t>(c)].push_back(std::make_unique<Polynomial>(s));
    }
  }
  return table;
}

Result<PolynomialTable> PolynomialTable::PerCell(const RnnModel& model, std::vector<int> degrees,
                                                 const std::vector<PreactivationRange>& ranges, double margin,
                                                 const CellFit& fit) {
  PPML_RETURN_IF_ERROR(CheckDegrees(degrees));
  if (ranges.size() != static_cast<size_t>(model.steps)) {
    return Status::Internal(std::to_string(ranges.size()) + " observed ranges for " + std::to_string(model.steps) + " steps");
  }
  if (!(margin >= 0)) return Status::InvalidArgument("--margin must be non-negative");
  PolynomialTable table;
  table.degrees_ = degrees;
  table.cells_ = model.steps;
  table.gru_ = model.cell == CellKind::kGru;
  table.tanh_.resize(static_cast<size_t>(model.steps));
  table.sigmoid_.resize(static_cast<size_t>(model.steps));
  auto fit_all = [&](Activation activation, double lo, double hi, const std::vector<double>& histogram,
                     std::vector<std::unique_ptr<Polynomial>>& out) -> Status {
    const double width = std::max(hi - lo, 1e-3);  // a constant input still gets a usable interval
    lo -= margin * width;
    hi += margin * width;
    for (int d : degrees) {
      PPML_ASSIGN_OR_RETURN(Polynomial p, fit(activation, d, lo, hi, histogram));
      out.push_back(std::make_unique<Polynomial>(std::move(p)));
    }
    return Status::Ok();
  };
  for (int c = 0; c < model.steps; ++c) {
    const PreactivationRange& r = ranges[static_cast<size_t>(c)];
    PPML_RETURN_IF_ERROR(fit_all(Activation::kTanh, r.tanh_lo, r.tanh_hi, r.tanh_histogram, table.tanh_[static_cast<size_t>(c)]));
    if (table.gru_) {
      PPML_RETURN_IF_ERROR(fit_all(Activation::kSigmoid, r.sigmoid_lo, r.sigmoid_hi, r.sigmoid_histogram,
                                   table.sigmoid_[static_cast<size_t>(c)]));
    }
  }
  return table;
}

Result<PolynomialTable> PolynomialTable::PerCellRange(const RnnModel& model, std::vector<int> degrees,
                                                      const std::vector<PreactivationRange>& ranges, double margin) {
  return PerCell(model, std::move(degrees), ranges, margin,
                 [](Activation activation, int degree, double lo, double hi, const std::vector<double>&) {
                   return FitChebyshev(activation, degree, lo, hi);
                 });
}

Result<PolynomialTable> PolynomialTable::PerCellDistribution(const RnnModel& model, std::vector<int> degrees,
                                                             const std::vector<PreactivationRange>& ranges,
                                                             double margin, double uniform_share) {
  if (!(uniform_share > 0 && uniform_share <= 1)) {
    return Status::InvalidArgument("--uniform-share " + std::to_string(uniform_share) + " must be in (0, 1]");
  }
  return PerCell(model, std::move(degrees), ranges, margin,
                 [uniform_share](Activation activation, int degree, double lo, double hi,
                                 const std::vector<double>& histogram) -> Result<Polynomial> {
                   // The histogram's bins inside [lo, hi], plus evenly spaced points where
                   // bins are coarser than the interval needs (a narrow range).
                   std::vector<double> points, observed;
                   for (size_t b = 0; b < histogram.size(); ++b) {
                     const double x = PreactivationRange::BinCenter(static_cast<int>(b));
                     if (x < lo || x > hi) continue;
                     points.push_back(x);
                     observed.push_back(histogram[b]);
                   }
                   constexpr int kMinimumPoints = 512;
                   for (int i = 0; i < kMinimumPoints; ++i) {
                     points.push_back(lo + (hi - lo) * (i + 0.5) / kMinimumPoints);
                     observed.push_back(0);
                   }
                   double total = 0;
                   for (double count : observed) total += count;
                   std::vector<double> weights(points.size());
                   for (size_t i = 0; i < points.size(); ++i) {
                     weights[i] = (total > 0 ? (1 - uniform_share) * observed[i] / total : 0) +
                                  uniform_share / static_cast<double>(points.size());
                   }
                   return FitWeighted(activation, degree, lo, hi, points, weights);
                 });
}

CellPolynomials PolynomialTable::Get(int cell, int degree_index) const {
  CellPolynomials p;
  p.tanh = tanh_[static_cast<size_t>(cell)][static_cast<size_t>(degree_index)].get();
  if (gru_) p.sigmoid = sigmoid_[static_cast<size_t>(cell)][static_cast<size_t>(degree_index)].get();
  return p;
}

std::vector<CellPolynomials> PolynomialTable::Cells(const std::vector<int>& assignment) const {
  std::vector<CellPolynomials> cells;
  for (size_t c = 0; c < assignment.size(); ++c) cells.push_back(Get(static_cast<int>(c), assignment[c]));
  return cells;
}

std::vector<int> PolynomialTable::DegreesOf(const std::vector<int>& assignment) const {
  std::vector<int> out;
  for (int k : assignment) out.push_back(degrees_[static_cast<size_t>(k)]);
  return out;
}

Result<SearchMethod> ParseSearchMethod(const std::string& name) {
  if (name == "dfs") return SearchMethod::kDfs;
  if (name == "sensitivity") return SearchMethod::kSensitivity;
  if (name == "exhaustive") return SearchMethod::kExhaustive;
  return Status::InvalidArgument("--method '" + name + "': expected dfs, sensitivity or exhaustive");
}

const char* SearchMethodName(SearchMethod method) {
  switch (method) {
    case SearchMethod::kDfs: return "dfs";
    case SearchMethod::kSensitivity: return "sensitivity";
    case SearchMethod::kExhaustive: return "exhaustive";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;

// Simulates assignments once each, remembers every result, tracks the best.
class Evaluator {
 public:
  Evaluator(Simulator& simulator, const PolynomialTable& table, const SearchOptions& options)
      : simulator_(simulator), table_(table), options_(options), start_(Clock::now()) {}

  double Evaluate(const std::vector<int>& assignment) {
    auto it = memo_.find(assignment);
    if (it != memo_.end()) return it->second;
    const std::vector<CellPolynomials> cells = table_.Cells(assignment);
    const double accuracy = simulator_.Accuracy(cells);
    memo_.emplace(assignment, accuracy);
    VisitedAssignment visit{table_.DegreesOf(assignment), accuracy, ActivationDepth(assignment)};
    if (accuracy >= options_.target_accuracy && IsBetter(visit)) {
      best_ = visit;
      has_best_ = true;
    }
    visited_.push_back(std::move(visit));
    return accuracy;
  }

  int ActivationDepth(const std::vector<int>& assignment) const {
    const int per_cell = simulator_.model().cell == CellKind::kRnn ? 1 : 2;
    int depth = 0;
    for (int k : assignment) depth += per_cell * PolynomialDepth(table_.degrees()[static_cast<size_t>(k)]);
    return depth;
  }

  bool OutOfBudget() const {
    return static_cast<int>(visited_.size()) >= options_.max_evaluations ||
           std::chrono::duration<double>(Clock::now() - start_).count() >= options_.max_seconds;
  }

  SearchResult Finish(const std::vector<int>& fallback) {
    SearchResult result;
    if (has_best_) {
      result.degrees = best_.degrees;
      result.accuracy = best_.accuracy;
      result.met_target = true;
    } else {
      result.degrees = table_.DegreesOf(fallback);
      result.accuracy = Evaluate(fallback);
    }
    result.evaluations = static_cast<int>(visited_.size());
    result.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    result.visited = std::move(visited_);
    return result;
  }

 private:
  // Less depth first; at equal depth, higher accuracy.
  bool IsBetter(const VisitedAssignment& v) const {
    if (!has_best_) return true;
    if (v.activation_depth != best_.activation_depth) return v.activation_depth < best_.activation_depth;
    return v.accuracy > best_.accuracy;
  }

  Simulator& simulator_;
  const PolynomialTable& table_;
  const SearchOptions& options_;
  Clock::time_point start_;
  std::map<std::vector<int>, double> memo_;
  std::vector<VisitedAssignment> visited_;
  VisitedAssignment best_;
  bool has_best_ = false;
};

SearchResult Dfs(Evaluator& evaluator, const std::vector<int>& top, const SearchOptions& options) {
  // Explicit recursion on cells in non-decreasing order: each assignment has one path.
  std::function<void(std::vector<int>&, double, int)> visit = [&](std::vector<int>& state, double accuracy, int first) {
    for (int cell = first; cell < static_cast<int>(state.size()); ++cell) {
      if (state[static_cast<size_t>(cell)] == 0) continue;
      if (evaluator.OutOfBudget()) return;
      --state[static_cast<size_t>(cell)];
      const double child = evaluator.Evaluate(state);
      if (child >= accuracy - options.tolerance) visit(state, child, cell);
      ++state[static_cast<size_t>(cell)];
    }
  };
  std::vector<int> state = top;
  const double accuracy = evaluator.Evaluate(state);
  visit(state, accuracy, 0);
  return evaluator.Finish(top);
}

SearchResult SensitivityGreedy(Evaluator& evaluator, const std::vector<int>& top,
                               const SearchOptions& options) {
  const double top_accuracy = evaluator.Evaluate(top);
  struct Move {
    int cell;
    int degree_index;
    double loss;    // accuracy lost when only this cell is lowered
    int saved;      // activation levels saved
  };
  std::vector<Move> moves;
  const int cells = static_cast<int>(top.size());
  const int highest = top.empty() ? 0 : top[0];
  for (int cell = 0; cell < cells; ++cell) {
    for (int k = 0; k < highest; ++k) {
      std::vector<int> probe = top;
      probe[static_cast<size_t>(cell)] = k;
      const double accuracy = evaluator.Evaluate(probe);
      const int saved = evaluator.ActivationDepth(top) - evaluator.ActivationDepth(probe);
      if (saved > 0) moves.push_back({cell, k, top_accuracy - accuracy, saved});
    }
  }
  // Cheapest accuracy per level first; a tiny floor so free moves still rank by levels saved.
  std::stable_sort(moves.begin(), moves.end(), [](const Move& a, const Move& b) {
    const double ca = (std::max(a.loss, 0.0) + 1e-6) / a.saved;
    const double cb = (std::max(b.loss, 0.0) + 1e-6) / b.saved;
    return ca < cb;
  });
  // Two passes: a move rejected early may fit once other cells have moved
  // (cells interact); the second pass costs only the moves still open.
  std::vector<int> current = top;
  for (int pass = 0; pass < 2; ++pass) {
    bool changed = false;
    for (const Move& move : moves) {
      if (move.degree_index >= current[static_cast<size_t>(move.cell)]) continue;  // already lower
      if (top_accuracy - move.loss < options.target_accuracy) continue;              // fails alone
      std::vector<int> candidate = current;
      candidate[static_cast<size_t>(move.cell)] = move.degree_index;
      if (evaluator.Evaluate(candidate) >= options.target_accuracy) {
        current = std::move(candidate);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return evaluator.Finish(top);
}

SearchResult Exhaustive(Evaluator& evaluator, const std::vector<int>& top) {
  std::vector<int> state(top.size(), 0);
  while (true) {
    evaluator.Evaluate(state);
    size_t c = 0;
    while (c < state.size() && state[c] == top[c]) state[c++] = 0;
    if (c == state.size()) break;
    ++state[c];
  }
  return evaluator.Finish(top);
}

}  // namespace

Result<SearchResult> RunSearch(SearchMethod method, Simulator& simulator, const PolynomialTable& table,
                               const SearchOptions& options) {
  if (table.cells() != simulator.model().steps) {
    return Status::Internal("polynomial table for " + std::to_string(table.cells()) + " cells, model has " +
                            std::to_string(simulator.model().steps) + " steps");
  }
  const std::vector<int> top(static_cast<size_t>(table.cells()), static_cast<int>(table.degrees().size()) - 1);
  if (method == SearchMethod::kExhaustive) {
    double states = 1;
    for (int c = 0; c < table.cells(); ++c) states *= static_cast<double>(table.degrees().size());
    if (states > 1e5) {
      return Status::InvalidArgument("--method exhaustive: " + std::to_string(static_cast<long long>(states)) +
                                     " assignments is too many (at most 100000)");
    }
  }
  Evaluator evaluator(simulator, table, options);
  switch (method) {
    case SearchMethod::kDfs: return Dfs(evaluator, top, options);
    case SearchMethod::kSensitivity: return SensitivityGreedy(evaluator, top, options);
    case SearchMethod::kExhaustive: return Exhaustive(evaluator, top);
  }
  return Status::Internal("unknown search method");
}

}  // namespace ppml::he
