// Searches for a per-cell assignment of polynomial degrees: as little
// multiplicative depth as possible while the simulated accuracy stays at or
// above a target.
//
//  - DFS (the method reproduced): start with every cell at the highest
//    degree; a child lowers one cell by one degree (cells in non-decreasing
//    order, so every assignment has one path); a child is explored when its
//    accuracy is within `tolerance` of its parent's (relative to the previous
//    state, as the method says), until the evaluation or time cap. The
//    answer is the visited assignment of least activation depth whose
//    accuracy meets the target.
//  - Sensitivity-greedy (ours): measure each cell's sensitivity, the
//    accuracy lost when only that cell is lowered to each lower degree (all
//    others at the highest), then apply the moves in order of accuracy lost
//    per level saved, each one verified by a full evaluation and kept only
//    while the accuracy meets the target; a second pass retries the moves
//    still open (cells interact). About 2-3·cells·(degrees-1) evaluations,
//    whatever the model.
//  - Exhaustive: every assignment (|degrees|^cells): for tiny models and tests.
//
// Thread safety: a search drives one Simulator; not for concurrent use.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "he/approx.h"
#include "he/rnn.h"
#include "he/simulate.h"

namespace ppml::he {

// Polynomials for every (cell, degree): one fit shared by all cells (lsq on a
// fixed interval) or one per cell fitted on its observed range.
class PolynomialTable {
 public:
  // lsq: FitLeastSquares on [lo, hi] (the method: [-8, 8]) for every cell.
  static Result<PolynomialTable> LeastSquares(const RnnModel& model, std::vector<int> degrees, double lo = -8,
                                              double hi = 8);
  // range: FitChebyshev on each cell's observed range widened by
  // margin × its width on both sides (the clamp margin: pre-activations of
  // the approximated model drift beyond the exact model's).
  static Result<PolynomialTable> PerCellRange(const RnnModel& model, std::vector<int> degrees,
                                              const std::vector<PreactivationRange>& ranges, double margin);
  // dist: FitWeighted on the same widened ranges, each point weighted by
  // (1 - uniform_share) × its share of the cell's observed histogram plus
  // uniform_share spread evenly over the interval, so the tails, rare but
  // reached, still bound the error.
  static Result<PolynomialTable> PerCellDistribution(const RnnModel& model, std::vector<int> degrees,
                                                     const std::vector<PreactivationRange>& ranges, double margin,
                                                     double uniform_share);

  const std::vector<int>& degrees() const { return degrees_; }  // ascending
  int cells() const { return cells_; }
  CellPolynomials Get(int cell, int degree_index) const;
  // What each cell evaluates under `assignment` (degree indices).
  std::vector<CellPolynomials> Cells(const std::vector<int>& assignment) const;
  std::vector<int> DegreesOf(const std::vector<int>& assignment) const;

 private:
  // Fits one activation of degree d on [lo, hi] given the cell's histogram.
  using CellFit = std::function<Result<Polynomial>(Activation, int degree, double lo, double hi,
                                                   const std::vector<double>& histogram)>;
  static Result<PolynomialTable> PerCell(const RnnModel& model, std::vector<int> degrees,
                                         const std::vector<PreactivationRange>& ranges, double margin,
                                         const CellFit& fit);

  std::vector<int> degrees_;
  int cells_ = 0;
  bool gru_ = false;
  // [cell][degree index]; unique_ptr keeps addresses stable (the simulator compares them).
  std::vector<std::vector<std::unique_ptr<Polynomial>>> tanh_, sigmoid_;
};

enum class SearchMethod { kDfs, kSensitivity, kExhaustive };
Result<SearchMethod> ParseSearchMethod(const std::string& name);  // dfs | sensitivity | exhaustive
const char* SearchMethodName(SearchMethod method);

struct SearchOptions {
  double target_accuracy = 0;   // the answer must reach this
  double tolerance = 0.02;      // DFS: a child within this of its parent is explored
  int max_evaluations = 2048;   // DFS cap (the method explored about 2^11 states)
  double max_seconds = 280;     // DFS cap in wall time
  int budget = 9;               // levels between bootstraps (for the depth of visited states)
};

struct VisitedAssignment {
  std::vector<int> degrees;  // per cell
  double accuracy = 0;
  int activation_depth = 0;
};

struct SearchResult {
  std::vector<int> degrees;  // per cell: the answer (all highest when nothing better met the target)
  double accuracy = 0;
  bool met_target = false;
  int evaluations = 0;       // distinct assignments simulated
  double seconds = 0;
  std::vector<VisitedAssignment> visited;  // in evaluation order
};

Result<SearchResult> RunSearch(SearchMethod method, Simulator& simulator, const PolynomialTable& table,
                               const SearchOptions& options);

}  // namespace ppml::he
