// ppml he search --model M.onnx --dataset fashion-mnist:test --degrees 3,7,17 --tolerance 0.02
//                --method dfs|sensitivity|exhaustive --fit lsq|range|dist [--out approx.onnx] [--json]
//                [--budget 9] [--noise-bits N] [--threads T] [--spec-out FILE] [--spec-samples K]
//                [--visited-csv FILE] [--calib SPEC] [--margin M] [--uniform-share U] [--costs FILE] [--check-onnx]
//                [--max-evaluations N] [--max-seconds S]
// ppml he fit    [--degrees 3,7,17] [--lo -8 --hi 8] [--model M.onnx --fit range|dist --calib SPEC --margin M
//                [--uniform-share U]]
//
// `he search` picks a polynomial degree per RNN cell (he/search.h), writes the
// approximated model as plain ONNX, the spec JSON for the encrypted side and
// every visited assignment as CSV. With --json its last stdout line is one
// object: model, cell, method, fit, baseline_accuracy, all17_accuracy,
// approx_accuracy, met_target, degrees, depth, depth_all17, depth_ratio,
// total_levels, bootstraps, bootstraps_all17, evaluations, search_seconds,
// full_evaluation_seconds (one uncached evaluation of the 10k images),
// he_estimated_ms, he_estimated_ms_all17, onnx_accuracy (with --check-onnx).
// ("all17" means every cell at the highest degree given.)
// The `he` group is created by AddHeCommands, which returns it so further
// subcommands (ppml he bench) can be registered on it.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "common/dataset.h"
#include "common/file_io.h"
#include "common/json_line.h"
#include "engine/engine.h"
#include "he/approx.h"
#include "he/depth.h"
#include "he/export.h"
#include "he/rnn.h"
#include "he/search.h"
#include "he/simulate.h"
#include "tools/cli_support.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {

constexpr const char* kSearchCommand = "he search";
constexpr const char* kFitCommand = "he fit";

// How per-cell fits (--fit range|dist) see a model's pre-activations.
struct CellFitOptions {
  std::string calibration = "fashion-mnist:train:10000";
  double margin = 0.1;
  double uniform_share = 0.1;
};

struct HeSearchOptions {
  std::string model;
  std::string dataset = "fashion-mnist:test";
  std::vector<int> degrees = {3, 7, 17};
  double tolerance = 0.02;
  std::string method = "sensitivity";
  std::string fit = "lsq";
  std::string out;
  bool json = false;
  int budget = 9;
  int noise_bits = 0;
  int threads = 2;
  std::string spec_out;
  int spec_samples = 32;
  std::string visited_csv;
  CellFitOptions cell_fit;
  std::string costs;
  bool check_onnx = false;
  int max_evaluations = 2048;
  double max_seconds = 280;
};

std::string JoinInts(const std::vector<int>& values, const char* separator) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += separator;
    out += std::to_string(values[i]);
  }
  return out;
}

// Top-1 accuracy of an ONNX file run by our engine: the exported graph must
// reproduce the simulation.
Result<double> EngineAccuracy(const std::string& onnx_bytes, const LabeledImages& data, int threads) {
  engine::EngineOptions options;
  options.threads = threads;
  PPML_ASSIGN_OR_RETURN(auto model, engine::Model::LoadBytes(std::as_bytes(std::span(onnx_bytes.data(), onnx_bytes.size())),
                                                             "approximated model", options));
  const int64_t count = data.images.dim(0);
  constexpr int64_t kBatch = 1000;
  int64_t correct = 0;
  for (int64_t first = 0; first < count; first += kBatch) {
    const int64_t items = std::min(kBatch, count - first);
    const Tensor batch = data.images.CopyRows(first, items);
    PPML_ASSIGN_OR_RETURN(auto outputs, model->Run(std::span<const Tensor>(&batch, 1)));
    const float* logits = outputs.at(0).data<float>();
    const int64_t classes = outputs[0].dim(1);
    for (int64_t i = 0; i < items; ++i) {
      const float* row = logits + i * classes;
      correct += (std::max_element(row, row + classes) - row) == data.labels[static_cast<size_t>(first + i)];
    }
  }
  return static_cast<double>(correct) / static_cast<double>(count);
}

Result<he::PolynomialTable> BuildTable(const std::string& fit, const he::RnnModel& model, const std::vector<int>& degrees,
                                       const CellFitOptions& o, int threads) {
  PPML_ASSIGN_OR_RETURN(he::FitKind kind, he::ParseFitKind(fit));
  if (kind == he::FitKind::kLeastSquares) return he::PolynomialTable::LeastSquares(model, degrees);
  // Ranges come from a calibration set (training images by default), never the test set.
  PPML_ASSIGN_OR_RETURN(LabeledImages calib, LoadDataset(o.calibration));
  he::SimulationOptions sim_options;
  sim_options.threads = threads;
  sim_options.cached_trajectories = 0;
  PPML_ASSIGN_OR_RETURN(auto simulator, he::Simulator::Create(model, calib.images, calib.labels, sim_options));
  const std::vector<he::PreactivationRange> ranges = simulator->ObserveRanges();
  if (kind == he::FitKind::kRange) return he::PolynomialTable::PerCellRange(model, degrees, ranges, o.margin);
  return he::PolynomialTable::PerCellDistribution(model, degrees, ranges, o.margin, o.uniform_share);
}

Status WriteVisitedCsv(const std::string& path, const HeSearchOptions& o, const he::RnnModel& model,
                       const he::SearchResult& result) {
  std::ostringstream csv;
  csv << "model,cell,method,fit,index,accuracy,depth,bootstraps,degrees\n";
  for (size_t i = 0; i < result.visited.size(); ++i) {
    const he::VisitedAssignment& v = result.visited[i];
    PPML_ASSIGN_OR_RETURN(he::DepthReport depth, he::ComputeDepth(model.cell, v.degrees, o.budget));
    csv << o.model << "," << he::CellKindName(model.cell) << "," << o.method << "," << o.fit << "," << i << ","
        << std::setprecision(6) << v.accuracy << "," << v.activation_depth << "," << depth.bootstraps << ","
        << JoinInts(v.degrees, " ") << "\n";
  }
  return WriteFile(path, csv.str());
}

int RunHeSearch(const HeSearchOptions& o) {
  auto fail = [](const Status& status) { return ReportError(kSearchCommand, status); };
  Result<he::SearchMethod> method = he::ParseSearchMethod(o.method);
  if (!method.ok()) return fail(method.status());
  Result<he::RnnModel> model = he::LoadRnnModel(o.model);
  if (!model.ok()) return ReportError(kSearchCommand, model.status().message(), kExitFailure);
  Result<LabeledImages> data = LoadDataset(o.dataset);
  if (!data.ok()) return fail(data.status());
  he::HeCosts costs;
  if (!o.costs.empty()) {
    Result<he::HeCosts> loaded = he::LoadHeCosts(o.costs);
    if (!loaded.ok()) return fail(loaded.status());
    costs = *loaded;
  }

  // The FP32 baseline without noise; the search simulator adds noise when asked.
  he::SimulationOptions exact_options;
  exact_options.threads = o.threads;
  exact_options.cached_trajectories = 0;
  auto exact = he::Simulator::Create(*model, data->images, data->labels, exact_options);
  if (!exact.ok()) return fail(exact.status());
  const std::vector<he::CellPolynomials> exact_cells(static_cast<size_t>(model->steps));
  const double baseline = (*exact)->Accuracy(exact_cells);
  std::cerr << "ppml he search: " << o.model << " (" << he::CellKindName(model->cell) << ", " << model->steps
            << " steps, hidden " << model->hidden_size << ") on " << o.dataset << ": FP32 baseline " << baseline
            << std::endl;

  Result<he::PolynomialTable> table = BuildTable(o.fit, *model, o.degrees, o.cell_fit, o.threads);
  if (!table.ok()) return fail(table.status());
  he::SimulationOptions search_options;
  search_options.threads = o.threads;
  search_options.noise_bits = o.noise_bits;
  auto simulator = he::Simulator::Create(*model, data->images, data->labels, search_options);
  if (!simulator.ok()) return fail(simulator.status());

  he::SearchOptions options;
  options.target_accuracy = baseline - o.tolerance;
  options.tolerance = o.tolerance;
  options.max_evaluations = o.max_evaluations;
  options.max_seconds = o.max_seconds;
  options.budget = o.budget;
  Result<he::SearchResult> result = he::RunSearch(*method, **simulator, *table, options);
  if (!result.ok()) return fail(result.status());

  const std::vector<int> top_index(static_cast<size_t>(model->steps), static_cast<int>(table->degrees().size()) - 1);
  const std::vector<int> top_degrees = table->DegreesOf(top_index);
  const double top_accuracy = (*simulator)->Accuracy(table->Cells(top_index));
  Result<he::DepthReport> depth = he::ComputeDepth(model->cell, result->degrees, o.budget);
  if (!depth.ok()) return fail(depth.status());
  Result<he::DepthReport> depth_top = he::ComputeDepth(model->cell, top_degrees, o.budget);
  if (!depth_top.ok()) return fail(depth_top.status());
  const he::HeOpCounts ops = he::EstimateHeOps(*model, result->degrees, depth->bootstraps, costs);
  const he::HeOpCounts ops_top = he::EstimateHeOps(*model, top_degrees, depth_top->bootstraps, costs);
  std::vector<int> chosen_index;
  for (int d : result->degrees) {
    chosen_index.push_back(static_cast<int>(std::find(table->degrees().begin(), table->degrees().end(), d) -
                                            table->degrees().begin()));
  }
  const std::vector<he::CellPolynomials> chosen = table->Cells(chosen_index);

  // One full evaluation without the trajectory cache: the cost every search step would pay without it.
  const auto full_start = std::chrono::steady_clock::now();
  (void)(*exact)->Accuracy(table->Cells(top_index));
  const double full_evaluation_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - full_start).count();

  std::cerr << "ppml he search: " << o.method << "/" << o.fit << ": " << result->evaluations << " evaluations in "
            << result->seconds << " s; accuracy " << result->accuracy << " (all-top " << top_accuracy << ", target "
            << options.target_accuracy << (result->met_target ? "" : ", NOT met") << "), activation depth "
            << depth->activation_depth << "/" << depth_top->activation_depth << ", bootstraps " << depth->bootstraps
            << "/" << depth_top->bootstraps << "; degrees " << JoinInts(result->degrees, ",") << std::endl;

  std::optional<double> onnx_accuracy;
  if (!o.out.empty() || o.check_onnx) {
    Result<std::string> bytes = he::ExportApproxOnnx(*model, chosen);
    if (!bytes.ok()) return fail(bytes.status());
    if (!o.out.empty()) {
      if (Status s = WriteFile(o.out, *bytes); !s.ok()) return fail(s);
    }
    if (o.check_onnx) {
      Result<double> accuracy = EngineAccuracy(*bytes, *data, o.threads);
      if (!accuracy.ok()) return ReportError(kSearchCommand, "exported ONNX: " + accuracy.status().message(), kExitFailure);
      onnx_accuracy = *accuracy;
      std::cerr << "ppml he search: the exported ONNX run by the engine: accuracy " << *accuracy << std::endl;
    }
  }
  if (!o.spec_out.empty()) {
    const int k = std::min(o.spec_samples, (*exact)->count());
    const std::vector<float> logits = (*exact)->Logits(chosen, 0, k);
    const int64_t image_size = data->images.element_count() / data->images.dim(0);
    std::vector<he::SpecSample> samples;
    for (int i = 0; i < k; ++i) {
      he::SpecSample s;
      s.index = i;
      s.pixels = std::span<const float>(data->images.data<float>() + i * image_size, static_cast<size_t>(image_size));
      s.label = data->labels[static_cast<size_t>(i)];
      s.logits.assign(logits.begin() + i * model->classes, logits.begin() + (i + 1) * model->classes);
      samples.push_back(std::move(s));
    }
    Result<std::string> spec = he::BuildSpecJson(*model, chosen, result->degrees, o.budget, *depth, samples);
    if (!spec.ok()) return fail(spec.status());
    if (Status s = WriteFile(o.spec_out, *spec); !s.ok()) return fail(s);
  }
  if (!o.visited_csv.empty()) {
    if (Status s = WriteVisitedCsv(o.visited_csv, o, *model, *result); !s.ok()) return fail(s);
  }

  if (o.json) {
    JsonLine json;
    json.Add("model", o.model)
        .Add("cell", he::CellKindName(model->cell))
        .Add("method", o.method)
        .Add("fit", o.fit)
        .Add("dataset", o.dataset)
        .Add("threads", o.threads)
        .Add("noise_bits", o.noise_bits)
        .Add("tolerance", o.tolerance)
        .Add("baseline_accuracy", baseline)
        .Add("all17_accuracy", top_accuracy)
        .Add("approx_accuracy", result->accuracy)
        .Add("met_target", result->met_target)
        .AddRaw("degrees", "[" + JoinInts(result->degrees, ",") + "]")
        .Add("depth", depth->activation_depth)
        .Add("depth_all17", depth_top->activation_depth)
        .Add("depth_ratio", static_cast<double>(depth->activation_depth) / std::max(1, depth_top->activation_depth))
        .Add("total_levels", depth->total_levels)
        .Add("budget", o.budget)
        .Add("bootstraps", depth->bootstraps)
        .Add("bootstraps_all17", depth_top->bootstraps)
        .Add("evaluations", result->evaluations)
        .Add("search_seconds", result->seconds)
        .Add("full_evaluation_seconds", full_evaluation_seconds)
        .Add("he_estimated_ms", ops.estimated_ms)
        .Add("he_estimated_ms_all17", ops_top.estimated_ms)
        .Add("he_costs", costs.source)
        .Add("isa", engine::EffectiveCpuIsa());
    if (onnx_accuracy) json.Add("onnx_accuracy", *onnx_accuracy);
    std::cout << json.str() << std::endl;
  } else {
    std::cout << o.model << ": " << o.method << "/" << o.fit << " accuracy " << result->accuracy << " (FP32 "
              << baseline << "), depth " << depth->activation_depth << " of " << depth_top->activation_depth
              << ", bootstraps " << depth->bootstraps << " of " << depth_top->bootstraps << std::endl;
  }
  return kExitOk;
}

struct HeFitOptions {
  std::vector<int> degrees = {3, 7, 17};
  double lo = -8, hi = 8;
  std::string model;
  std::string fit = "range";
  CellFitOptions cell_fit;
  int threads = 2;
};

void PrintFit(const std::string& label, he::Activation activation, const he::Polynomial& p) {
  const he::FitError error = he::MeasureFitError(activation, p);
  std::cout << std::left << std::setw(28) << label << std::setw(9) << he::ActivationName(activation) << "degree "
            << std::setw(3) << p.degree() << " [" << std::setprecision(4) << p.lo << ", " << p.hi << "]  max error "
            << std::setprecision(3) << error.max_abs << "  mean error " << error.mean_abs << "  depth "
            << he::PolynomialDepth(p.degree()) << "\n";
}

int RunHeFit(const HeFitOptions& o) {
  for (he::Activation a : {he::Activation::kTanh, he::Activation::kSigmoid}) {
    for (int d : o.degrees) {
      Result<he::Polynomial> lsq = he::FitLeastSquares(a, d, o.lo, o.hi);
      if (!lsq.ok()) return ReportError(kFitCommand, lsq.status());
      PrintFit("least squares", a, *lsq);
      Result<he::Polynomial> cheb = he::FitChebyshev(a, d, o.lo, o.hi);
      if (!cheb.ok()) return ReportError(kFitCommand, cheb.status());
      PrintFit("chebyshev", a, *cheb);
    }
  }
  if (o.model.empty()) return kExitOk;
  // Per-cell fits of a model, as `he search --fit range|dist` makes them.
  Result<he::RnnModel> model = he::LoadRnnModel(o.model);
  if (!model.ok()) return ReportError(kFitCommand, model.status().message(), kExitFailure);
  Result<he::PolynomialTable> table = BuildTable(o.fit, *model, o.degrees, o.cell_fit, o.threads);
  if (!table.ok()) return ReportError(kFitCommand, table.status());
  for (int c = 0; c < table->cells(); ++c) {
    for (size_t k = 0; k < table->degrees().size(); ++k) {
      const he::CellPolynomials p = table->Get(c, static_cast<int>(k));
      const std::string label = "cell " + std::to_string(c) + " " + o.fit;
      PrintFit(label, he::Activation::kTanh, *p.tanh);
      if (p.sigmoid != nullptr) PrintFit(label, he::Activation::kSigmoid, *p.sigmoid);
    }
  }
  return kExitOk;
}

void AddCellFitOptions(CLI::App& command, CellFitOptions& o) {
  command.add_option("--calib", o.calibration, "images whose pre-activations --fit range|dist observe")->capture_default_str();
  command.add_option("--margin", o.margin, "range and dist fits: widen each observed range by this fraction per side")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10.0));
  command.add_option("--uniform-share", o.uniform_share,
                     "dist fits: weight spread evenly over the interval, the rest follows the observed distribution")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 1.0));
}

}  // namespace

CLI::App* AddHeCommands(CLI::App& app, int* exit_code) {
  CLI::App* he = app.add_subcommand("he", "HE-friendly RNNs: polynomial activations, degree search, CKKS costs");
  he->require_subcommand(1);

  auto s = std::make_shared<HeSearchOptions>();
  CLI::App* search = he->add_subcommand("search", "choose a polynomial degree per RNN cell and export the model");
  search->add_option("--model", s->model, "ONNX model with one RNN or GRU cell")->required()->check(CLI::ExistingFile);
  search->add_option("--dataset", s->dataset, "labelled images the accuracy is measured on")->capture_default_str();
  search->add_option("--degrees", s->degrees, "candidate polynomial degrees")->delimiter(',')->capture_default_str();
  search->add_option("--tolerance", s->tolerance, "accuracy points (fraction) the answer may lose against FP32; DFS: per step")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  search->add_option("--method", s->method, "dfs (the method), sensitivity (ours) or exhaustive")->capture_default_str();
  search->add_option("--fit", s->fit,
                     "lsq (on [-8,8]), range (Chebyshev on each cell's observed range) or dist (least squares weighted "
                     "by each cell's observed distribution)")
      ->capture_default_str();
  search->add_option("--out", s->out, "write the approximated model here (ONNX)");
  search->add_flag("--json", s->json, "print the result as one JSON object on the last line");
  search->add_option("--budget", s->budget, "levels between bootstraps")->capture_default_str()->check(Positive());
  search->add_option("--noise-bits", s->noise_bits, "CKKS-like relative noise 2^-N on every product and polynomial (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0, 60));
  search->add_option("--threads", s->threads, "simulation threads")->capture_default_str()->check(Positive());
  search->add_option("--spec-out", s->spec_out, "write the spec JSON for the encrypted run here");
  search->add_option("--spec-samples", s->spec_samples, "test images in the spec JSON")->capture_default_str()->check(NonNegative());
  search->add_option("--visited-csv", s->visited_csv, "write every visited assignment here (CSV)");
  AddCellFitOptions(*search, s->cell_fit);
  search->add_option("--costs", s->costs, "per-operation CKKS costs JSON (ppml he bench)")->check(CLI::ExistingFile);
  search->add_flag("--check-onnx", s->check_onnx, "run the exported ONNX with the engine and report its accuracy");
  search->add_option("--max-evaluations", s->max_evaluations, "DFS: stop after this many evaluations")
      ->capture_default_str()
      ->check(Positive());
  search->add_option("--max-seconds", s->max_seconds, "DFS: stop after this many seconds")->capture_default_str()->check(Positive());
  search->callback([s, exit_code] { *exit_code = RunHeSearch(*s); });

  auto f = std::make_shared<HeFitOptions>();
  CLI::App* fit = he->add_subcommand("fit", "polynomial fits of tanh and sigmoid with their errors");
  fit->add_option("--degrees", f->degrees, "degrees to fit")->delimiter(',')->capture_default_str();
  fit->add_option("--lo", f->lo, "interval start")->capture_default_str();
  fit->add_option("--hi", f->hi, "interval end")->capture_default_str();
  fit->add_option("--model", f->model, "also print per-cell fits of this model")->check(CLI::ExistingFile);
  fit->add_option("--fit", f->fit, "per-cell fits: range or dist")->capture_default_str()->check(CLI::IsMember({"range", "dist"}));
  AddCellFitOptions(*fit, f->cell_fit);
  fit->add_option("--threads", f->threads, "simulation threads")->capture_default_str()->check(Positive());
  fit->callback([f, exit_code] { *exit_code = RunHeFit(*f); });
  return he;
}

}  // namespace ppml::tools
