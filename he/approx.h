// Polynomial stand-ins for tanh and sigmoid: what a CKKS circuit evaluates
// instead of an activation, since HE only adds and multiplies.
//
// A Polynomial lives on an interval [lo, hi] and is stored in the power basis
// of the normalised variable u = (2x - (hi + lo)) / (hi - lo) ∈ [-1, 1]:
//   p(x) = Σ_k coeffs[k] · u^k
// (the spec JSON and the exported ONNX use exactly this form; Horner in u is
// well conditioned where the power basis in x is not: tanh on [-8, 8] at
// degree 17 has x^17 coefficients near 1e-12.) Outside [lo, hi] nothing is
// clamped: the polynomial simply diverges, as it would under encryption.
//
// Two fits:
//  - FitLeastSquares: the method's fit, the L2-optimal polynomial on the
//    interval with uniform weight (a Legendre projection computed with
//    Gauss–Legendre quadrature, exact for the continuous problem). On a
//    symmetric interval the odd symmetry is imposed exactly: tanh fits are
//    odd, sigmoid fits are 0.5 + odd.
//  - FitChebyshev: interpolation at the d+1 Chebyshev nodes of the first
//    kind, within a small factor (1 + the Lebesgue constant, < 4 up to
//    degree 63) of the minimax error; on [-8, 8] its max error is about the
//    least-squares fit's. Used for per-cell range fits.
//  - FitWeighted: least squares at given points with given weights (solved
//    by Householder QR in the Chebyshev basis, well conditioned up to degree
//    63). With the points and weights of a cell's observed pre-activation
//    histogram it minimises the expected squared error of that cell's inputs,
//    which is what the network's accuracy feels, rather than the worst case
//    over an interval most inputs never reach.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace ppml::he {

enum class Activation { kTanh, kSigmoid };
const char* ActivationName(Activation activation);  // "tanh", "sigmoid"
double ExactActivation(Activation activation, double x);

struct Polynomial {
  double lo = -8;
  double hi = 8;
  std::vector<double> coeffs;  // power basis in u, coeffs[k] multiplies u^k

  int degree() const { return static_cast<int>(coeffs.size()) - 1; }
  // u = scale * x + shift maps [lo, hi] onto [-1, 1].
  double scale() const { return 2.0 / (hi - lo); }
  double shift() const { return -(hi + lo) / (hi - lo); }
  double Eval(double x) const;
};

// The fit kinds the CLI names: "lsq" (the method, on a fixed interval),
// "range" (Chebyshev on each cell's observed range plus a margin) and "dist"
// (least squares weighted by each cell's observed distribution, on that range).
enum class FitKind { kLeastSquares, kRange, kDistribution };
Result<FitKind> ParseFitKind(const std::string& name);
const char* FitKindName(FitKind kind);

// InvalidArgument for degree < 1 or an empty interval.
Result<Polynomial> FitLeastSquares(Activation activation, int degree, double lo = -8, double hi = 8);
Result<Polynomial> FitChebyshev(Activation activation, int degree, double lo, double hi);
// `points` inside [lo, hi], `weights` non-negative, one per point, with at
// least degree + 1 points of positive weight: else InvalidArgument.
Result<Polynomial> FitWeighted(Activation activation, int degree, double lo, double hi,
                               const std::vector<double>& points, const std::vector<double>& weights);

struct FitError {
  double max_abs = 0;
  double mean_abs = 0;
};
// |p(x) - f(x)| on `samples` evenly spaced points of the polynomial's interval.
FitError MeasureFitError(Activation activation, const Polynomial& p, int samples = 20001);

}  // namespace ppml::he
