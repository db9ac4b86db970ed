// Polynomial fits against independently computed errors, the depth formula,
// bootstrap placement and the costs file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "he/approx.h"
#include "he/depth.h"

namespace ppml::he {
namespace {

struct KnownFit {
  Activation activation;
  int degree;
  double max_error;   // computed with NumPy's Legendre projection (leggauss, 200 points)
  double mean_error;  // on 20001 points of [-8, 8]
};

TEST(FitLeastSquares, MatchesIndependentErrorsOnMinus8To8) {
  const KnownFit known[] = {
      {Activation::kTanh, 3, 0.43624, 0.18862},     {Activation::kTanh, 7, 0.21173, 0.078926},
      {Activation::kTanh, 17, 0.035634, 0.010970},  {Activation::kSigmoid, 3, 0.11433, 0.052450},
      {Activation::kSigmoid, 7, 0.032195, 0.011097}, {Activation::kSigmoid, 17, 0.0010161, 0.00024050},
  };
  for (const KnownFit& k : known) {
    Result<Polynomial> p = FitLeastSquares(k.activation, k.degree);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    const FitError e = MeasureFitError(k.activation, *p);
    EXPECT_NEAR(e.max_abs, k.max_error, 1e-3 * k.max_error) << ActivationName(k.activation) << " degree " << k.degree;
    EXPECT_NEAR(e.mean_abs, k.mean_error, 1e-3 * k.mean_error) << ActivationName(k.activation) << " degree " << k.degree;
  }
}

TEST(FitLeastSquares, KeepsTheSymmetryExactly) {
  Result<Polynomial> tanh17 = FitLeastSquares(Activation::kTanh, 17);
  Result<Polynomial> sigmoid7 = FitLeastSquares(Activation::kSigmoid, 7);
  ASSERT_TRUE(tanh17.ok() && sigmoid7.ok());
  ASSERT_EQ(tanh17->coeffs.size(), 18u);
  for (size_t k = 0; k < tanh17->coeffs.size(); k += 2) EXPECT_EQ(tanh17->coeffs[k], 0.0) << "u^" << k;
  EXPECT_EQ(sigmoid7->coeffs[0], 0.5);
  for (size_t k = 2; k < sigmoid7->coeffs.size(); k += 2) EXPECT_EQ(sigmoid7->coeffs[k], 0.0) << "u^" << k;
  EXPECT_NE(sigmoid7->coeffs[1], 0.0);
}

TEST(FitChebyshev, NarrowRangesNeedFarLowerDegrees) {
  // A cell whose pre-activations stay in [-2, 3]: a cubic there beats the
  // method's degree 7 on [-8, 8], and the error shrinks with the degree.
  Result<Polynomial> lsq7 = FitLeastSquares(Activation::kTanh, 7);
  ASSERT_TRUE(lsq7.ok());
  double previous = 1e9;
  for (int d : {3, 5, 7, 9}) {
    Result<Polynomial> cheb = FitChebyshev(Activation::kTanh, d, -2, 3);
    ASSERT_TRUE(cheb.ok());
    const double error = MeasureFitError(Activation::kTanh, *cheb).max_abs;
    EXPECT_LT(error, previous) << "degree " << d;
    previous = error;
    if (d == 3) EXPECT_LT(error, MeasureFitError(Activation::kTanh, *lsq7).max_abs);
  }
  // Interpolation at Chebyshev nodes: exact at a node, and near-minimax
  // (below the least-squares fit's max error on the same interval).
  Result<Polynomial> cheb = FitChebyshev(Activation::kSigmoid, 5, -3, 1);
  Result<Polynomial> lsq = FitLeastSquares(Activation::kSigmoid, 5, -3, 1);
  ASSERT_TRUE(cheb.ok() && lsq.ok());
  const double node_u = std::cos(M_PI * 0.5 / 6);
  const double node_x = (node_u - cheb->shift()) / cheb->scale();
  EXPECT_NEAR(cheb->Eval(node_x), ExactActivation(Activation::kSigmoid, node_x), 1e-12);
  EXPECT_LT(MeasureFitError(Activation::kSigmoid, *cheb).max_abs, MeasureFitError(Activation::kSigmoid, *lsq).max_abs);
}

TEST(Fit, RejectsBadArguments) {
  EXPECT_FALSE(FitLeastSquares(Activation::kTanh, 0).ok());
  EXPECT_FALSE(FitChebyshev(Activation::kTanh, 3, 1, 1).ok());
  Result<FitKind> kind = ParseFitKind("minimax");
  ASSERT_FALSE(kind.ok());
  EXPECT_NE(kind.status().message().find("lsq, range or dist"), std::string::npos);
  ASSERT_TRUE(ParseFitKind("dist").ok());
  EXPECT_EQ(*ParseFitKind("dist"), FitKind::kDistribution);
}

TEST(FitWeighted, EvenWeightsReproduceTheLeastSquaresFit) {
  // 4001 evenly weighted points on [-3, 2] approximate the uniform measure:
  // the discrete fit must match the continuous Legendre projection.
  std::vector<double> points, weights;
  for (int i = 0; i <= 4000; ++i) {
    points.push_back(-3 + 5.0 * i / 4000);
    weights.push_back(1.0);
  }
  for (Activation a : {Activation::kTanh, Activation::kSigmoid}) {
    Result<Polynomial> weighted = FitWeighted(a, 7, -3, 2, points, weights);
    Result<Polynomial> lsq = FitLeastSquares(a, 7, -3, 2);
    ASSERT_TRUE(weighted.ok() && lsq.ok()) << weighted.status().ToString();
    for (double x = -3; x <= 2; x += 0.25) EXPECT_NEAR(weighted->Eval(x), lsq->Eval(x), 2e-4) << x;
  }
}

TEST(FitWeighted, FollowsTheWeightsWhereTheyAre) {
  // Nearly all weight on [-1, 1] of a [-8, 8] interval: a cubic there is far
  // better than the uniform fit on [-8, 8], and worse in the tails.
  std::vector<double> points, weights;
  for (int i = 0; i <= 1600; ++i) {
    const double x = -8 + 16.0 * i / 1600;
    points.push_back(x);
    weights.push_back(std::abs(x) <= 1 ? 1.0 : 1e-4);
  }
  Result<Polynomial> weighted = FitWeighted(Activation::kTanh, 3, -8, 8, points, weights);
  Result<Polynomial> uniform = FitLeastSquares(Activation::kTanh, 3);
  ASSERT_TRUE(weighted.ok() && uniform.ok());
  double core_weighted = 0, core_uniform = 0;
  for (double x = -1; x <= 1; x += 0.01) {
    core_weighted = std::max(core_weighted, std::abs(weighted->Eval(x) - std::tanh(x)));
    core_uniform = std::max(core_uniform, std::abs(uniform->Eval(x) - std::tanh(x)));
  }
  EXPECT_LT(core_weighted, 0.2 * core_uniform);
  EXPECT_GT(MeasureFitError(Activation::kTanh, *weighted).max_abs, MeasureFitError(Activation::kTanh, *uniform).max_abs);
}

TEST(FitWeighted, RejectsBadPointsAndWeights) {
  const std::vector<double> three = {-1, 0, 1};
  Result<Polynomial> few = FitWeighted(Activation::kTanh, 3, -1, 1, three, {1, 1, 1});
  ASSERT_FALSE(few.ok());
  EXPECT_NE(few.status().message().find("at least 4 points"), std::string::npos) << few.status().message();
  EXPECT_FALSE(FitWeighted(Activation::kTanh, 1, -1, 1, three, {1, -1, 1}).ok());
  EXPECT_FALSE(FitWeighted(Activation::kTanh, 1, -1, 1, {-1, 0, 2}, {1, 1, 1}).ok());
  EXPECT_FALSE(FitWeighted(Activation::kTanh, 1, -1, 1, three, {1, 1}).ok());
}

TEST(Depth, LevelsPerDegree) {
  EXPECT_EQ(PolynomialDepth(1), 1);
  EXPECT_EQ(PolynomialDepth(3), 2);
  EXPECT_EQ(PolynomialDepth(7), 3);
  EXPECT_EQ(PolynomialDepth(8), 4);
  EXPECT_EQ(PolynomialDepth(15), 4);
  EXPECT_EQ(PolynomialDepth(17), 5);
  EXPECT_EQ(PolynomialDepth(31), 5);
}

TEST(Depth, TheMethodsAssignmentsOn28Steps) {
  // All 17: 28 × 5 = 140 activation levels; the method's best mixed
  // assignment (4 cells of degree 7, 24 of degree 17) has 132 (94%).
  std::vector<int> all17(28, 17), mixed(28, 17), all7(28, 7);
  for (int t : {0, 1, 26, 27}) mixed[static_cast<size_t>(t)] = 7;
  Result<DepthReport> a = ComputeDepth(CellKind::kRnn, all17, 9);
  Result<DepthReport> m = ComputeDepth(CellKind::kRnn, mixed, 9);
  Result<DepthReport> s = ComputeDepth(CellKind::kRnn, all7, 9);
  ASSERT_TRUE(a.ok() && m.ok() && s.ok());
  EXPECT_EQ(a->activation_depth, 140);
  EXPECT_EQ(m->activation_depth, 132);
  EXPECT_EQ(a->total_levels, 140 + 28 + 1);
  // 6 levels a step, budget 9: every step after the first needs a bootstrap.
  EXPECT_EQ(a->bootstraps, 27);
  // 4 levels a step: a bootstrap every second step from step 2 on.
  EXPECT_EQ(s->bootstraps, 13);
  EXPECT_LT(m->bootstraps, a->bootstraps);
}

TEST(Depth, WalksTheChainWithTheBudget) {
  // rnn {3,3}, budget 3: [mm 1][poly 2] | boot | [mm 1][poly 2] | boot | [fc 1].
  Result<DepthReport> r = ComputeDepth(CellKind::kRnn, {3, 3}, 3);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->bootstraps, 2);
  EXPECT_EQ(r->total_levels, 7);
  EXPECT_EQ(r->activation_depth, 4);
  // gru {17}, budget 9: mm 1, sigmoid 5, r 1 (7), tanh 5 -> boot, z 1, fc 1.
  Result<DepthReport> g = ComputeDepth(CellKind::kGru, {17}, 9);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->bootstraps, 1);
  EXPECT_EQ(g->activation_depth, 10);
  EXPECT_EQ(g->total_levels, 14);
  // An RNN step is placed whole (product + tanh), as the encrypted run refreshes
  // only between steps: {7, 17, 3} takes 4, then 6 -> boot, then 3 (9), fc -> boot.
  // Placing the product and the polynomial apart would have needed one bootstrap.
  Result<DepthReport> whole = ComputeDepth(CellKind::kRnn, {7, 17, 3}, 9);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->bootstraps, 2);
  // A degree-17 step needs 6 levels (product + 5): no placement in a budget of 4.
  Result<DepthReport> over = ComputeDepth(CellKind::kRnn, {3, 17}, 4);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("step 1"), std::string::npos) << over.status().message();
}

TEST(HeCosts, ReadsTheBenchFileAndNamesABadKey) {
  const std::string path = ::testing::TempDir() + "/he_costs.json";
  std::ofstream(path) << R"({"n": 32768, "encrypt_ms": 12.5, "plain_multiply_ms": 3, "multiply_relin_rescale_ms": 400,
                             "rotate_ms": 350, "add_ms": 0.5})";
  Result<HeCosts> costs = LoadHeCosts(path);
  ASSERT_TRUE(costs.ok()) << costs.status().ToString();
  EXPECT_EQ(costs->n, 32768);
  EXPECT_DOUBLE_EQ(costs->rotate_ms, 350);
  EXPECT_DOUBLE_EQ(costs->add_ms, 0.5);
  EXPECT_DOUBLE_EQ(costs->bootstrap_ms, HeCosts{}.bootstrap_ms);  // absent: the default
  std::ofstream(path) << R"({"rotate_ms": "fast"})";
  Result<HeCosts> bad = LoadHeCosts(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rotate_ms"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find(path), std::string::npos);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace ppml::he
