#include "he/depth.h"

#include <simdjson.h>

#include <cmath>

#include "common/file_io.h"

namespace ppml::he {

int PolynomialDepth(int degree) {
  int levels = 0;
  while ((1 << levels) < degree + 1) ++levels;
  return levels;
}

namespace {

// One level-consuming operation of the unrolled circuit.
struct LeveledOp {
  int levels;
  const char* what;
};

// The chain of operations of one step (see the header).
std::vector<LeveledOp> StepOps(CellKind cell, int degree) {
  const int d = PolynomialDepth(degree);
  // The RNN step is one unit: the encrypted run refreshes the hidden state
  // between steps, never the pre-activation between product and tanh.
  if (cell == CellKind::kRnn) return {{1 + d, "step (product and tanh)"}};
  return {{1, "matmul"}, {d, "sigmoid polynomial"}, {1, "r product"}, {d, "tanh polynomial"}, {1, "z product"}};
}

}  // namespace

Result<DepthReport> ComputeDepth(CellKind cell, const std::vector<int>& degrees, int budget) {
  if (budget < 1) return Status::InvalidArgument("--budget " + std::to_string(budget) + " must be at least 1");
  DepthReport report;
  int used = 0;  // levels consumed since the last bootstrap (or encryption)
  auto place = [&](const LeveledOp& op, int step) -> Status {
    if (op.levels > budget) {
      return Status::InvalidArgument("step " + std::to_string(step) + ": the " + op.what + " needs " +
                                     std::to_string(op.levels) + " levels, more than the budget of " +
                                     std::to_string(budget) + " between bootstraps");
    }
    if (used + op.levels > budget) {
      ++report.bootstraps;
      used = 0;
    }
    used += op.levels;
    report.total_levels += op.levels;
    return Status::Ok();
  };
  for (size_t t = 0; t < degrees.size(); ++t) {
    if (degrees[t] < 1) return Status::InvalidArgument("step " + std::to_string(t) + ": degree " + std::to_string(degrees[t]));
    for (const LeveledOp& op : StepOps(cell, degrees[t])) PPML_RETURN_IF_ERROR(place(op, static_cast<int>(t)));
    report.activation_depth += (cell == CellKind::kRnn ? 1 : 2) * PolynomialDepth(degrees[t]);
  }
  PPML_RETURN_IF_ERROR(place({1, "classifier matmul"}, static_cast<int>(degrees.size())));
  return report;
}

Result<HeCosts> LoadHeCosts(const std::string& path) {
  PPML_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  simdjson::dom::parser parser;
  simdjson::padded_string json(text);
  simdjson::dom::object root;
  if (auto error = parser.parse(json).get(root); error != simdjson::SUCCESS) {
    return Status::InvalidArgument(path + ": not a JSON object (" + simdjson::error_message(error) + ")");
  }
  HeCosts costs;
  costs.source = path;
  struct Field {
    const char* key;
    double* value;
  };
  const Field fields[] = {{"encrypt_ms", &costs.encrypt_ms},
                          {"plain_multiply_ms", &costs.plain_multiply_ms},
                          {"multiply_relin_rescale_ms", &costs.multiply_relin_rescale_ms},
                          {"rotate_ms", &costs.rotate_ms},
                          {"add_ms", &costs.add_ms},
                          {"bootstrap_ms", &costs.bootstrap_ms}};
  for (const Field& field : fields) {
    simdjson::dom::element value;
    if (root.at_key(field.key).get(value) != simdjson::SUCCESS) continue;  // keeps the default
    double number = 0;
    if (value.get_double().get(number) != simdjson::SUCCESS || !(number >= 0) || !std::isfinite(number)) {
      return Status::InvalidArgument(path + ": key \"" + field.key + "\" must be a non-negative number of milliseconds");
    }
    *field.value = number;
  }
  simdjson::dom::element n;
  if (root.at_key("n").get(n) == simdjson::SUCCESS) {
    int64_t ring = 0;
    if (n.get_int64().get(ring) != simdjson::SUCCESS || ring <= 0) {
      return Status::InvalidArgument(path + ": key \"n\" must be a positive integer (the ring dimension)");
    }
    costs.n = static_cast<int>(ring);
  }
  return costs;
}

namespace {

// Paterson–Stockmeyer with k = ceil(sqrt(d+1)) baby steps and
// m = ceil((d+1)/k) giant blocks: (k-1) products for u^2..u^k, (m-1) to
// combine the blocks (cubic: 2, degree 7: 4, degree 17: 7).
long long PolynomialCiphertextMultiplies(int degree) {
  const int k = static_cast<int>(std::ceil(std::sqrt(degree + 1.0)));
  const int m = (degree + 1 + k - 1) / k;
  return (k - 1) + (m - 1);
}

// Diagonal method with baby-step giant-step rotations for a rows × cols
// plaintext matrix times an encrypted vector (cols diagonals).
void AddMatrixProduct(int cols, HeOpCounts& ops) {
  const int baby = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(cols))));
  const int giant = (cols + baby - 1) / baby;
  ops.rotations += (baby - 1) + (giant - 1);
  ops.plain_multiplies += cols;
  ops.additions += cols;
}

}  // namespace

HeOpCounts EstimateHeOps(const RnnModel& model, const std::vector<int>& degrees, int bootstraps, const HeCosts& costs) {
  HeOpCounts ops;
  const int gates = model.cell == CellKind::kRnn ? 1 : 3;
  for (int degree : degrees) {
    // Gates are stacked in one ciphertext: one product with the input, one with the state.
    AddMatrixProduct(model.input_size, ops);
    AddMatrixProduct(model.hidden_size, ops);
    const int polynomials = model.cell == CellKind::kRnn ? 1 : 2;  // gru: [z|r] packed, n
    ops.ciphertext_multiplies += polynomials * PolynomialCiphertextMultiplies(degree);
    ops.plain_multiplies += static_cast<long long>(polynomials) * degree;
    ops.additions += static_cast<long long>(polynomials) * degree + gates;
    if (model.cell == CellKind::kGru) {
      ops.ciphertext_multiplies += 2;  // r ⊙ (Un h + bn_h), z ⊙ (h - n)
      ops.rotations += 2;              // align the packed gates
      ops.additions += 3;
    }
  }
  AddMatrixProduct(model.hidden_size, ops);  // classifier
  ops.bootstraps = bootstraps;
  ops.estimated_ms_without_bootstrap =
      ops.rotations * costs.rotate_ms + ops.plain_multiplies * costs.plain_multiply_ms +
      ops.ciphertext_multiplies * costs.multiply_relin_rescale_ms + ops.additions * costs.add_ms +
      static_cast<double>(model.steps) * costs.encrypt_ms;  // the client encrypts one row per step
  ops.estimated_ms = ops.estimated_ms_without_bootstrap + bootstraps * costs.bootstrap_ms;
  return ops;
}

}  // namespace ppml::he
