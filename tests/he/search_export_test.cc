// The RNN reader's errors, the searches on a tiny RNN against brute force,
// the exported ONNX against the simulation, and the committed models
// against the accuracy PyTorch measured.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "common/dataset.h"
#include "common/tensor.h"
#include "engine/engine.h"
#include "he/depth.h"
#include "he/export.h"
#include "he/rnn.h"
#include "he/search.h"
#include "he/simulate.h"
#include "tests/he/tiny_rnn.h"

namespace ppml::he {
namespace {

using testing::TinyRecurrentModel;
using testing::TinyShape;

std::span<const std::byte> Bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

TEST(RnnModel, ReadsRnnAndGruWeights) {
  const TinyShape shape;
  Result<RnnModel> rnn = ParseRnnModel(Bytes(TinyRecurrentModel("RNN", shape, 1, 1.0f)), "tiny_rnn.onnx");
  ASSERT_TRUE(rnn.ok()) << rnn.status().ToString();
  EXPECT_EQ(rnn->cell, CellKind::kRnn);
  EXPECT_EQ(rnn->steps, 4);
  EXPECT_EQ(rnn->input_size, 3);
  EXPECT_EQ(rnn->hidden_size, 4);
  EXPECT_EQ(rnn->classes, 3);
  Result<RnnModel> gru = ParseRnnModel(Bytes(TinyRecurrentModel("GRU", shape, 1, 1.0f)), "tiny_gru.onnx");
  ASSERT_TRUE(gru.ok()) << gru.status().ToString();
  EXPECT_EQ(gru->cell, CellKind::kGru);
  EXPECT_EQ(gru->wn.rows, 4);
  EXPECT_EQ(gru->bn_h.size(), 4u);
}

TEST(RnnModel, ClearErrorsForModelsItCannotApproximate) {
  const TinyShape shape;
  Result<RnnModel> lstm = ParseRnnModel(Bytes(TinyRecurrentModel("LSTM", shape, 1, 1.0f)), "lstm.onnx");
  ASSERT_FALSE(lstm.ok());
  EXPECT_NE(lstm.status().message().find("LSTM"), std::string::npos) << lstm.status().message();
  EXPECT_NE(lstm.status().message().find("lstm.onnx"), std::string::npos);

  Result<RnnModel> relu = ParseRnnModel(Bytes(TinyRecurrentModel("RNN", shape, 1, 1.0f, {"Relu"})), "relu_rnn.onnx");
  ASSERT_FALSE(relu.ok());
  EXPECT_EQ(relu.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(relu.status().message().find("activations = [Relu]"), std::string::npos) << relu.status().message();

  // The Fashion CNN has no recurrent cell at all.
  std::ifstream cnn(std::string(PPML_SOURCE_DIR) + "/models/fashion_cnn.onnx", std::ios::binary);
  std::stringstream cnn_bytes;
  cnn_bytes << cnn.rdbuf();
  Result<RnnModel> no_cell = ParseRnnModel(Bytes(cnn_bytes.str()), "fashion_cnn.onnx");
  ASSERT_FALSE(no_cell.ok());
  EXPECT_NE(no_cell.status().message().find("fashion_cnn.onnx"), std::string::npos);
  EXPECT_TRUE(no_cell.status().message().find("no RNN or GRU") != std::string::npos ||
              no_cell.status().message().find("outside the RNN classifier pattern") != std::string::npos)
      << no_cell.status().message();

  Result<RnnModel> garbage = ParseRnnModel(Bytes("not onnx at all"), "garbage.onnx");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find("garbage.onnx"), std::string::npos);
}

// Random inputs labelled by the exact model itself: the baseline is 100%
// and every lost point is the approximation's doing.
struct TinyProblem {
  RnnModel model;
  Tensor images;
  std::vector<int> labels;
};

TinyProblem MakeTinyProblem(const std::string& op, unsigned seed, float scale, int count, TinyShape shape = {}) {
  TinyProblem p;
  Result<RnnModel> model = ParseRnnModel(Bytes(TinyRecurrentModel(op, shape, seed, scale)), "tiny");
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  p.model = *model;
  p.images = Tensor(DataType::kF32, {count, 1, p.model.steps, p.model.input_size});
  std::mt19937 rng(seed + 1);
  std::uniform_real_distribution<float> uniform(0, 1);
  for (float& v : p.images.values<float>()) v = uniform(rng);
  std::vector<int> placeholder(static_cast<size_t>(count), 0);
  auto simulator = Simulator::Create(p.model, p.images, placeholder, SimulationOptions{});
  EXPECT_TRUE(simulator.ok());
  const std::vector<CellPolynomials> exact(static_cast<size_t>(p.model.steps));
  const std::vector<float> logits = (*simulator)->Logits(exact, 0, count);
  for (int i = 0; i < count; ++i) {
    auto row = logits.begin() + i * p.model.classes;
    p.labels.push_back(static_cast<int>(std::max_element(row, row + p.model.classes) - row));
  }
  return p;
}

// Brute force over all 3^4 assignments of a tiny RNN (4 steps, 8 hidden,
// 10 classes), then each search on the same simulator.
struct TinySearchCase {
  Result<SearchResult> brute = Status::Internal("not run");
  int best_depth = 1 << 30;  // least depth meeting the target
  std::vector<std::pair<SearchMethod, Result<SearchResult>>> found;
};

std::vector<int> DegreeIndices(const std::vector<int>& degrees) {
  std::vector<int> index;
  for (int d : degrees) index.push_back(d == 3 ? 0 : (d == 7 ? 1 : 2));
  return index;
}

void RunTinySearches(unsigned seed, double tolerance, TinySearchCase& c) {
  TinyProblem p = MakeTinyProblem("RNN", seed, 1.0f, 600, TinyShape{4, 3, 8, 10});
  auto simulator = Simulator::Create(p.model, p.images, p.labels, SimulationOptions{});
  ASSERT_TRUE(simulator.ok());
  Result<PolynomialTable> table = PolynomialTable::LeastSquares(p.model, {3, 7, 17});
  ASSERT_TRUE(table.ok());
  SearchOptions options;
  options.target_accuracy = 1.0 - tolerance;  // the labels are the exact model's own predictions
  options.tolerance = tolerance;
  c.brute = RunSearch(SearchMethod::kExhaustive, **simulator, *table, options);
  ASSERT_TRUE(c.brute.ok());
  ASSERT_EQ(c.brute->evaluations, 81);  // 3^4
  for (const VisitedAssignment& v : c.brute->visited) {
    if (v.accuracy >= options.target_accuracy) c.best_depth = std::min(c.best_depth, v.activation_depth);
  }
  for (SearchMethod method : {SearchMethod::kSensitivity, SearchMethod::kDfs}) {
    Result<SearchResult> r = RunSearch(method, **simulator, *table, options);
    ASSERT_TRUE(r.ok());
    // Whatever a search reports is what the simulation gives for its degrees.
    EXPECT_DOUBLE_EQ((*simulator)->Accuracy(table->Cells(DegreeIndices(r->degrees))), r->accuracy);
    if (r->met_target) EXPECT_GE(r->accuracy, options.target_accuracy);
    c.found.emplace_back(method, std::move(r));
  }
}

int ActivationDepthOf(const std::vector<int>& degrees) {
  Result<DepthReport> depth = ComputeDepth(CellKind::kRnn, degrees, 9);
  return depth.ok() ? depth->activation_depth : -1;
}

TEST(Search, BothSearchesFindTheBruteForceOptimumOnATinyRnn) {
  for (double tolerance : {0.05, 0.10}) {
    TinySearchCase c;
    RunTinySearches(4, tolerance, c);
    ASSERT_TRUE(c.brute->met_target);
    EXPECT_EQ(ActivationDepthOf(c.brute->degrees), c.best_depth);
    // Not trivial: neither all-cubic nor all-17 is the answer.
    EXPECT_GT(c.best_depth, 4 * 2) << "tolerance " << tolerance;
    EXPECT_LT(c.best_depth, 4 * 5) << "tolerance " << tolerance;
    for (auto& [method, r] : c.found) {
      EXPECT_TRUE(r->met_target) << SearchMethodName(method);
      EXPECT_EQ(ActivationDepthOf(r->degrees), c.best_depth) << SearchMethodName(method) << " tolerance " << tolerance;
      if (method == SearchMethod::kSensitivity) EXPECT_LE(r->evaluations, 1 + 4 * 2 * 2);
    }
  }
}

TEST(Search, AnswersMeetTheTargetAndNeverBeatBruteForce) {
  // Heuristics: on other tiny RNNs they may stop above the optimum (cells
  // interact), but never below it and never under the target.
  for (unsigned seed = 1; seed <= 7; ++seed) {
    TinySearchCase c;
    RunTinySearches(seed, 0.10, c);
    for (auto& [method, r] : c.found) {
      if (!r->met_target) continue;
      EXPECT_GE(ActivationDepthOf(r->degrees), c.best_depth) << SearchMethodName(method) << " seed " << seed;
    }
  }
}

TEST(Simulator, TrajectoryCacheGivesTheSameAccuracyAsAFreshRun) {
  TinyProblem p = MakeTinyProblem("GRU", 3, 2.0f, 500);
  SimulationOptions cached;
  SimulationOptions fresh;
  fresh.cached_trajectories = 0;
  auto a = Simulator::Create(p.model, p.images, p.labels, cached);
  auto b = Simulator::Create(p.model, p.images, p.labels, fresh);
  ASSERT_TRUE(a.ok() && b.ok());
  Result<PolynomialTable> table = PolynomialTable::LeastSquares(p.model, {3, 7, 17});
  ASSERT_TRUE(table.ok());
  std::mt19937 rng(5);
  for (int trial = 0; trial < 30; ++trial) {
    std::vector<int> assignment(4);
    for (int& k : assignment) k = static_cast<int>(rng() % 3);
    EXPECT_DOUBLE_EQ((*a)->Accuracy(table->Cells(assignment)), (*b)->Accuracy(table->Cells(assignment)));
  }
}

// Runs exported bytes on the engine and compares with the simulator's logits.
void ExpectOnnxMatchesSimulation(const TinyProblem& p, const std::vector<CellPolynomials>& cells) {
  Result<std::string> bytes = ExportApproxOnnx(p.model, cells);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  auto engine_model = engine::Model::LoadBytes(Bytes(*bytes), "approx");
  ASSERT_TRUE(engine_model.ok()) << engine_model.status().ToString();
  auto outputs = (*engine_model)->Run(std::span<const Tensor>(&p.images, 1));
  ASSERT_TRUE(outputs.ok()) << outputs.status().ToString();
  const int count = static_cast<int>(p.images.dim(0));
  auto simulator = Simulator::Create(p.model, p.images, p.labels, SimulationOptions{});
  ASSERT_TRUE(simulator.ok());
  const std::vector<float> expected = (*simulator)->Logits(cells, 0, count);
  const Tensor& got = outputs->at(0);
  ASSERT_EQ(got.element_count(), static_cast<int64_t>(expected.size()));
  double max_diff = 0, max_value = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(got.data<float>()[i]) - expected[i]));
    max_value = std::max(max_value, std::abs(static_cast<double>(expected[i])));
  }
  EXPECT_LT(max_diff, 1e-4 * std::max(1.0, max_value)) << "largest logit " << max_value;
}

TEST(ObserveRanges, HistogramsCountEveryPreactivationInsideTheRange) {
  for (const char* op : {"RNN", "GRU"}) {
    TinyProblem p = MakeTinyProblem(op, 5, 2.0f, 300);
    auto simulator = Simulator::Create(p.model, p.images, p.labels, SimulationOptions{});
    ASSERT_TRUE(simulator.ok());
    const std::vector<PreactivationRange> ranges = (*simulator)->ObserveRanges();
    ASSERT_EQ(ranges.size(), static_cast<size_t>(p.model.steps));
    const bool gru = p.model.cell == CellKind::kGru;
    const double bin_width = 2 * PreactivationRange::kHistogramLimit / PreactivationRange::kHistogramBins;
    for (const PreactivationRange& r : ranges) {
      auto check = [&](const std::vector<double>& histogram, float lo, float hi, double expected) {
        double total = 0;
        for (int b = 0; b < PreactivationRange::kHistogramBins; ++b) {
          const double count = histogram[static_cast<size_t>(b)];
          total += count;
          if (count > 0) {
            EXPECT_GE(PreactivationRange::BinCenter(b) + bin_width / 2, lo) << op;
            EXPECT_LE(PreactivationRange::BinCenter(b) - bin_width / 2, hi) << op;
          }
        }
        EXPECT_EQ(total, expected) << op;
      };
      check(r.tanh_histogram, r.tanh_lo, r.tanh_hi, 300.0 * p.model.hidden_size);
      if (gru) check(r.sigmoid_histogram, r.sigmoid_lo, r.sigmoid_hi, 300.0 * 2 * p.model.hidden_size);
    }
  }
}

TEST(PolynomialTable, DistributionFitsBeatRangeFitsOnTheObservedInputs) {
  // The expected squared error under each cell's observed histogram is what
  // the dist fit minimises; the Chebyshev range fit on the same interval
  // cannot do better there.
  TinyProblem p = MakeTinyProblem("RNN", 7, 3.0f, 400);
  auto simulator = Simulator::Create(p.model, p.images, p.labels, SimulationOptions{});
  ASSERT_TRUE(simulator.ok());
  const std::vector<PreactivationRange> ranges = (*simulator)->ObserveRanges();
  Result<PolynomialTable> range = PolynomialTable::PerCellRange(p.model, {3}, ranges, 0.1);
  Result<PolynomialTable> dist = PolynomialTable::PerCellDistribution(p.model, {3}, ranges, 0.1, 0.01);
  ASSERT_TRUE(range.ok() && dist.ok());
  for (int c = 0; c < p.model.steps; ++c) {
    auto expected_error = [&](const Polynomial& poly) {
      double sum = 0, total = 0;
      const std::vector<double>& histogram = ranges[static_cast<size_t>(c)].tanh_histogram;
      for (int b = 0; b < PreactivationRange::kHistogramBins; ++b) {
        const double count = histogram[static_cast<size_t>(b)];
        if (count == 0) continue;
        const double x = PreactivationRange::BinCenter(b);
        sum += count * std::pow(poly.Eval(x) - std::tanh(x), 2);
        total += count;
      }
      return sum / total;
    };
    EXPECT_LE(expected_error(*dist->Get(c, 0).tanh), expected_error(*range->Get(c, 0).tanh)) << "cell " << c;
  }
}

TEST(ExportApproxOnnx, EngineRunsTheSameFunctionAsTheSimulation) {
  for (const char* op : {"RNN", "GRU"}) {
    TinyProblem p = MakeTinyProblem(op, 11, 1.5f, 64);
    Result<PolynomialTable> lsq = PolynomialTable::LeastSquares(p.model, {3, 7, 17});
    ASSERT_TRUE(lsq.ok());
    ExpectOnnxMatchesSimulation(p, lsq->Cells({2, 0, 1, 2}));
    // Range fits: asymmetric intervals, every coefficient present.
    auto simulator = Simulator::Create(p.model, p.images, p.labels, SimulationOptions{});
    ASSERT_TRUE(simulator.ok());
    Result<PolynomialTable> range = PolynomialTable::PerCellRange(p.model, {3, 5}, (*simulator)->ObserveRanges(), 0.1);
    ASSERT_TRUE(range.ok());
    ExpectOnnxMatchesSimulation(p, range->Cells({0, 1, 0, 1}));
    Result<PolynomialTable> dist =
        PolynomialTable::PerCellDistribution(p.model, {3, 5}, (*simulator)->ObserveRanges(), 0.1, 0.1);
    ASSERT_TRUE(dist.ok()) << dist.status().ToString();
    ExpectOnnxMatchesSimulation(p, dist->Cells({1, 0, 1, 0}));
    // Exact activations become Tanh/Sigmoid nodes.
    ExpectOnnxMatchesSimulation(p, std::vector<CellPolynomials>(4));
  }
}

TEST(SpecJson, CarriesOneCellPerStepAndTheSamples) {
  TinyProblem p = MakeTinyProblem("GRU", 2, 1.0f, 4);
  Result<PolynomialTable> table = PolynomialTable::LeastSquares(p.model, {3, 7});
  ASSERT_TRUE(table.ok());
  const auto cells = table->Cells({0, 1, 1, 0});
  Result<DepthReport> depth = ComputeDepth(CellKind::kGru, {3, 7, 7, 3}, 9);
  ASSERT_TRUE(depth.ok());
  std::vector<SpecSample> samples(1);
  samples[0].pixels = p.images.values<float>().subspan(0, 12);
  samples[0].label = 2;
  samples[0].logits = {0.1f, 0.9f, -1.0f};
  Result<std::string> spec = BuildSpecJson(p.model, cells, {3, 7, 7, 3}, 9, *depth, samples);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  for (const char* key : {"\"format\":\"ppml-he-rnn/1\"", "\"cell\":\"gru\"", "\"Wz\":", "\"bn_h\":", "\"fc\":",
                          "\"step\":3", "\"sigmoid\":", "\"plain_prediction\":1", "\"depth\":20"}) {
    EXPECT_NE(spec->find(key), std::string::npos) << key;
  }
  EXPECT_EQ(spec->find("\"rnn\":"), std::string::npos);
  EXPECT_FALSE(BuildSpecJson(p.model, std::vector<CellPolynomials>(4), {3, 3, 3, 3}, 9, *depth, {}).ok());
}

// The committed models, read by our ONNX reader and run by the simulator,
// must score what PyTorch measured (models/he_*.json): this pins the gate
// order and bias semantics of the reader to PyTorch's.
TEST(CommittedModels, ExactSimulationMatchesPyTorchAccuracy) {
  Result<LabeledImages> data = LoadDataset("fashion-mnist:test");
  ASSERT_TRUE(data.ok()) << data.status().ToString() << " (./test.sh installs dataset-fashion-mnist)";
  for (const char* name : {"he_rnn", "he_gru"}) {
    const std::string base = std::string(PPML_SOURCE_DIR) + "/models/" + name;
    Result<RnnModel> model = LoadRnnModel(base + ".onnx");
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    std::ifstream meta(base + ".json");
    std::stringstream text;
    text << meta.rdbuf();
    const std::string json = text.str();
    const size_t at = json.find("\"test_accuracy\":");
    ASSERT_NE(at, std::string::npos) << base << ".json";
    const double torch_accuracy = std::stod(json.substr(at + 16));
    auto simulator = Simulator::Create(*model, data->images, data->labels, SimulationOptions{});
    ASSERT_TRUE(simulator.ok());
    const double accuracy = (*simulator)->Accuracy(std::vector<CellPolynomials>(static_cast<size_t>(model->steps)));
    EXPECT_NEAR(accuracy, torch_accuracy, 0.0015) << name;
  }
}

}  // namespace
}  // namespace ppml::he
