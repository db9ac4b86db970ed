#include "he/approx.h"

#include <cmath>
#include <numbers>

namespace ppml::he {

const char* ActivationName(Activation activation) { return activation == Activation::kTanh ? "tanh" : "sigmoid"; }

double ExactActivation(Activation activation, double x) {
  return activation == Activation::kTanh ? std::tanh(x) : 1.0 / (1.0 + std::exp(-x));
}

double Polynomial::Eval(double x) const {
  const double u = scale() * x + shift();
  double acc = 0;
  for (int k = degree(); k >= 0; --k) acc = acc * u + coeffs[static_cast<size_t>(k)];
  return acc;
}

Result<FitKind> ParseFitKind(const std::string& name) {
  if (name == "lsq") return FitKind::kLeastSquares;
  if (name == "range") return FitKind::kRange;
  if (name == "dist") return FitKind::kDistribution;
  return Status::InvalidArgument("--fit '" + name + "': expected lsq, range or dist");
}

const char* FitKindName(FitKind kind) {
  switch (kind) {
    case FitKind::kLeastSquares: return "lsq";
    case FitKind::kRange: return "range";
    case FitKind::kDistribution: return "dist";
  }
  return "?";
}

namespace {

Status CheckFitArguments(int degree, double lo, double hi) {
  if (degree < 1 || degree > 63) return Status::InvalidArgument("degree " + std::to_string(degree) + " is not in 1..63");
  if (!(hi > lo)) {
    return Status::InvalidArgument("fit interval [" + std::to_string(lo) + ", " + std::to_string(hi) + "] is empty");
  }
  return Status::Ok();
}

// Power-basis coefficients of Σ c_k B_k(u) for a basis with the three-term
// recurrence B_{k+1} = (a_k u) B_k - b_k B_{k-1}, B_0 = 1, B_1 = u
// (Legendre and Chebyshev both fit it).
template <typename Recurrence>
std::vector<double> SeriesToPowerBasis(const std::vector<double>& series, Recurrence next) {
  const size_t n = series.size();
  std::vector<double> power(n, 0.0);
  std::vector<double> prev(n, 0.0), cur(n, 0.0);
  prev[0] = 1;  // B_0
  if (n > 0) power[0] += series[0];
  if (n > 1) {
    cur[1] = 1;  // B_1 = u
    power[1] += series[1];
  }
  for (size_t k = 1; k + 1 < n; ++k) {
    auto [a, b] = next(k);
    std::vector<double> nxt(n, 0.0);
    for (size_t j = 0; j + 1 < n; ++j) nxt[j + 1] += a * cur[j];
    for (size_t j = 0; j < n; ++j) nxt[j] -= b * prev[j];
    for (size_t j = 0; j < n; ++j) power[j] += series[k + 1] * nxt[j];
    prev = std::move(cur);
    cur = std::move(nxt);
  }
  return power;
}

// Nodes and weights of the n-point Gauss–Legendre rule on [-1, 1] (Newton on P_n).
void GaussLegendre(int n, std::vector<double>& nodes, std::vector<double>& weights) {
  nodes.assign(static_cast<size_t>(n), 0);
  weights.assign(static_cast<size_t>(n), 0);
  for (int i = 0; i < n; ++i) {
    double x = std::cos(std::numbers::pi * (i + 0.75) / (n + 0.5));
    double dp = 0;
    for (int iter = 0; iter < 100; ++iter) {
      double p0 = 1, p1 = x;
      for (int k = 2; k <= n; ++k) {
        const double p2 = ((2.0 * k - 1) * x * p1 - (k - 1.0) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      dp = n * (x * p1 - p0) / (x * x - 1);
      const double dx = p1 / dp;
      x -= dx;
      if (std::abs(dx) < 1e-15) break;
    }
    nodes[static_cast<size_t>(i)] = x;
    weights[static_cast<size_t>(i)] = 2 / ((1 - x * x) * dp * dp);
  }
}

// The symmetric part a least-squares fit on a symmetric interval keeps:
// odd for tanh, 0.5 + odd for sigmoid (quadrature noise would leave ~1e-17
// even terms; the HE side relies on exact zeros to skip them).
void ImposeSymmetry(Activation activation, Polynomial& p) {
  if (std::abs(p.hi + p.lo) > 1e-12 * (p.hi - p.lo)) return;
  for (size_t k = 0; k < p.coeffs.size(); k += 2) p.coeffs[k] = 0;
  if (activation == Activation::kSigmoid) p.coeffs[0] = 0.5;
}

}  // namespace

Result<Polynomial> FitLeastSquares(Activation activation, int degree, double lo, double hi) {
  PPML_RETURN_IF_ERROR(CheckFitArguments(degree, lo, hi));
  Polynomial p{lo, hi, {}};
  // Legendre coefficients c_k = (2k+1)/2 ∫ f(x(u)) P_k(u) du, by quadrature
  // with far more points than the degree (the integrand is smooth).
  std::vector<double> nodes, weights;
  GaussLegendre(std::max(64, 4 * degree), nodes, weights);
  std::vector<double> legendre(static_cast<size_t>(degree) + 1, 0.0);
  for (size_t q = 0; q < nodes.size(); ++q) {
    const double u = nodes[q];
    const double fx = ExactActivation(activation, (u - p.shift()) / p.scale());
    double p0 = 1, p1 = u;
    for (int k = 0; k <= degree; ++k) {
      double pk = k == 0 ? 1 : p1;
      if (k >= 2) {
        pk = ((2.0 * k - 1) * u * p1 - (k - 1.0) * p0) / k;
        p0 = p1;
        p1 = pk;
      }
      legendre[static_cast<size_t>(k)] += weights[q] * fx * pk * (2.0 * k + 1) / 2;
    }
  }
  // (k+1) P_{k+1} = (2k+1) u P_k - k P_{k-1}
  p.coeffs = SeriesToPowerBasis(legendre, [](size_t k) {
    const double kd = static_cast<double>(k);
    return std::pair<double, double>{(2 * kd + 1) / (kd + 1), kd / (kd + 1)};
  });
  ImposeSymmetry(activation, p);
  return p;
}

Result<Polynomial> FitChebyshev(Activation activation, int degree, double lo, double hi) {
  PPML_RETURN_IF_ERROR(CheckFitArguments(degree, lo, hi));
  Polynomial p{lo, hi, {}};
  const int n = degree + 1;
  std::vector<double> chebyshev(static_cast<size_t>(n), 0.0);
  for (int j = 0; j < n; ++j) {
    const double theta = std::numbers::pi * (j + 0.5) / n;
    const double fx = ExactActivation(activation, (std::cos(theta) - p.shift()) / p.scale());
    for (int k = 0; k < n; ++k) chebyshev[static_cast<size_t>(k)] += fx * std::cos(k * theta) * 2.0 / n;
  }
  chebyshev[0] /= 2;
  // T_{k+1} = 2u T_k - T_{k-1}
  p.coeffs = SeriesToPowerBasis(chebyshev, [](size_t) { return std::pair<double, double>{2.0, 1.0}; });
  return p;
}

Result<Polynomial> FitWeighted(Activation activation, int degree, double lo, double hi,
                               const std::vector<double>& points, const std::vector<double>& weights) {
  PPML_RETURN_IF_ERROR(CheckFitArguments(degree, lo, hi));
  if (points.size() != weights.size()) {
    return Status::InvalidArgument(std::to_string(points.size()) + " points and " + std::to_string(weights.size()) +
                                   " weights");
  }
  Polynomial p{lo, hi, {}};
  const size_t n = static_cast<size_t>(degree) + 1;
  // Rows sqrt(w_i)·[T_0(u_i) .. T_d(u_i)] | sqrt(w_i)·f(x_i), zero weights dropped.
  std::vector<std::vector<double>> rows;
  for (size_t i = 0; i < points.size(); ++i) {
    if (!(weights[i] >= 0) || !std::isfinite(points[i]) || points[i] < lo || points[i] > hi) {
      return Status::InvalidArgument("weighted fit: point " + std::to_string(points[i]) + " with weight " +
                                     std::to_string(weights[i]) + " is outside [lo, hi] or negative");
    }
    if (weights[i] == 0) continue;
    const double root = std::sqrt(weights[i]);
    const double u = p.scale() * points[i] + p.shift();
    std::vector<double> row(n + 1);
    double t0 = 1, t1 = u;
    for (size_t k = 0; k < n; ++k) {
      const double tk = k == 0 ? 1 : (k == 1 ? u : 2 * u * t1 - t0);
      if (k >= 2) {
        t0 = t1;
        t1 = tk;
      }
      row[k] = root * tk;
    }
    row[n] = root * ExactActivation(activation, points[i]);
    rows.push_back(std::move(row));
  }
  if (rows.size() < n) {
    return Status::InvalidArgument("weighted fit of degree " + std::to_string(degree) + " needs at least " +
                                   std::to_string(n) + " points of positive weight, got " + std::to_string(rows.size()));
  }
  // Householder QR on the augmented matrix, then back substitution.
  const size_t m = rows.size();
  for (size_t k = 0; k < n; ++k) {
    double norm = 0;
    for (size_t i = k; i < m; ++i) norm += rows[i][k] * rows[i][k];
    norm = std::sqrt(norm);
    if (norm == 0) return Status::InvalidArgument("weighted fit: the points do not determine a degree-" + std::to_string(degree) + " polynomial");
    const double alpha = rows[k][k] > 0 ? -norm : norm;
    std::vector<double> v(m - k);
    for (size_t i = k; i < m; ++i) v[i - k] = rows[i][k];
    v[0] -= alpha;
    double vv = 0;
    for (double x : v) vv += x * x;
    for (size_t j = k; j <= n; ++j) {
      double dot = 0;
      for (size_t i = k; i < m; ++i) dot += v[i - k] * rows[i][j];
      const double f = 2 * dot / vv;
      for (size_t i = k; i < m; ++i) rows[i][j] -= f * v[i - k];
    }
  }
  std::vector<double> chebyshev(n);
  for (size_t k = n; k-- > 0;) {
    double acc = rows[k][n];
    for (size_t j = k + 1; j < n; ++j) acc -= rows[k][j] * chebyshev[j];
    chebyshev[k] = acc / rows[k][k];
  }
  p.coeffs = SeriesToPowerBasis(chebyshev, [](size_t) { return std::pair<double, double>{2.0, 1.0}; });
  return p;
}

FitError MeasureFitError(Activation activation, const Polynomial& p, int samples) {
  FitError error;
  samples = std::max(samples, 2);
  for (int i = 0; i < samples; ++i) {
    const double x = p.lo + (p.hi - p.lo) * i / (samples - 1);
    const double e = std::abs(p.Eval(x) - ExactActivation(activation, x));
    error.max_abs = std::max(error.max_abs, e);
    error.mean_abs += e;
  }
  error.mean_abs /= samples;
  return error;
}

}  // namespace ppml::he
