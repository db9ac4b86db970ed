// Multiplicative depth, bootstraps and estimated CKKS time of an unrolled
// RNN whose activations are polynomials of given degrees, one per cell.
//
// Levels (see docs/HE.md):
//  - a degree-d polynomial: ceil(log2(d + 1)) levels. Evaluated with
//    baby-step giant-step / Paterson–Stockmeyer: the baby steps u, u^2, ...,
//    u^k (k ≈ sqrt(d)) by repeated squaring and products take ceil(log2 k)
//    levels, the giant steps u^k, u^2k, u^4k ... and the tree that combines
//    the baby polynomials take the rest, ceil(log2(d + 1)) in all, which is
//    also the lower bound for any evaluation of a degree-d polynomial; the
//    scalar coefficients are folded into the baby polynomials (plaintext
//    constants, no extra level under CKKS' scale management).
//  - one level per plaintext-ciphertext matrix product (W x_t + U h_{t-1}:
//    the diagonal method multiplies by encoded plaintext diagonals once);
//  - GRU: one level for r ⊙ (U_n h + b_n) and one for z ⊙ (h - n).
// Per step, in order: rnn  = [matmul + tanh, 1 + D]
//                     gru  = [matmul 1][sigmoid D][r-product 1][tanh D][z-product 1]
// then the classifier matmul (1) after the last step. Bootstraps are placed
// by walking that chain with a level budget B between bootstraps (FGb: 9):
// before an operation that would exceed B levels, bootstrap (lazy
// placement, optimal for a chain of atomic operations). An operation deeper
// than B alone cannot be placed: an error. The RNN step is atomic because
// that is where the encrypted run (he/seal/encrypted_rnn.mjs) refreshes: the
// hidden state between steps, not the pre-activation between the product
// and the polynomial; the GRU's gate pre-activations are refreshed mid-cell
// there too, so its operations are placed one by one.
//
// "Activation depth" sums only the polynomial levels (28 × 5 = 140 for an
// all-17 SimpleRNN): the quantity the method compares; "total levels" adds the
// products.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "he/rnn.h"

namespace ppml::he {

// ceil(log2(degree + 1)); 0 for degree 0.
int PolynomialDepth(int degree);

struct DepthReport {
  int activation_depth = 0;  // Σ over cells of polynomial levels (gru: sigmoid + tanh)
  int total_levels = 0;      // activation depth plus the products' levels
  int bootstraps = 0;        // for the budget given
};

// `degrees` has one entry per step. InvalidArgument when the count is wrong or
// one operation needs more levels than `budget`.
Result<DepthReport> ComputeDepth(CellKind cell, const std::vector<int>& degrees, int budget);

// Per-operation CKKS costs in milliseconds, as `ppml he bench` writes them:
//   {"n": 32768, "encrypt_ms": .., "plain_multiply_ms": .., "multiply_relin_rescale_ms": ..,
//    "rotate_ms": .., "add_ms": .., "bootstrap_ms": ..}
// bootstrap_ms is optional (SEAL has no bootstrapping; the default is an
// assumption stated in docs/HE.md).
struct HeCosts {
  int n = 32768;
  double encrypt_ms = 15;
  double plain_multiply_ms = 8;
  double multiply_relin_rescale_ms = 420;  // measured with node-seal at N = 2^15
  double rotate_ms = 370;                  // likewise
  double add_ms = 2;
  double bootstrap_ms = 20000;             // assumption, see docs/HE.md
  std::string source = "defaults";         // the file they came from
};
// Reads a costs JSON file; a missing key keeps its default, a key of the wrong
// type or a negative cost is InvalidArgument naming the file and key.
Result<HeCosts> LoadHeCosts(const std::string& path);

// Operation counts of one encrypted inference and their estimated time.
struct HeOpCounts {
  long long rotations = 0;
  long long plain_multiplies = 0;
  long long ciphertext_multiplies = 0;  // multiply + relinearize + rescale
  long long additions = 0;
  int bootstraps = 0;
  double estimated_ms = 0;
  double estimated_ms_without_bootstrap = 0;
};

// Counts per step: each matrix product with the diagonal method and
// baby-step giant-step rotations (rows × cols diagonals: cols plaintext
// multiplies, about 2·sqrt(cols) rotations); each polynomial of degree d with
// Paterson–Stockmeyer: about sqrt(2d) + log2(d) ciphertext multiplies and d
// scalar multiplies and additions; GRU element-wise products one ciphertext
// multiply each.
HeOpCounts EstimateHeOps(const RnnModel& model, const std::vector<int>& degrees, int bootstraps, const HeCosts& costs);

}  // namespace ppml::he
