// Calibrate: run the FP32 model over the calibration set and record, for
// every activation the quantizer may quantize, its min/max and |x| histogram.
//
// The engine only returns graph outputs, so the prepared model gets every
// observed intermediate tensor appended as an extra graph output (type
// float, no shape: the engine infers it) and is loaded with fusions off, so
// that no observed tensor disappears inside a fused kernel. The graph input
// itself is observed straight from the samples.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "engine/engine.h"
#include "engine/onnx_tensor.h"
#include "int8/model_graph.h"
#include "int8/quantize.h"

namespace ppml::int8 {
namespace {

// Automatic batch size: aim for at most this many bytes of observed outputs
// per engine run (ResNet-50 observes ~100 MB of activations per image).
constexpr size_t kOutputBudgetBytes = size_t{512} << 20;
constexpr int64_t kMaxAutoBatch = 256;

void DefaultProgress(const CalibrationProgress& p) {
  std::fprintf(stderr, "calibrate: batch %d/%d samples=%lld/%lld tensors=%zu\n", p.batch, p.batches,
               static_cast<long long>(p.samples_done), static_cast<long long>(p.samples_total), p.tensors);
}

// Adds `values` to one tensor's statistics.
void Observe(TensorStats& stats, std::span<const float> values) {
  float lo = std::numeric_limits<float>::infinity();
  float hi = -std::numeric_limits<float>::infinity();
  for (float v : values) {
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const bool first = stats.histogram.count() == 0;
  stats.histogram.Add(values);
  if (lo > hi) return;  // nothing finite
  stats.min = first ? lo : std::min(stats.min, lo);
  stats.max = first ? hi : std::max(stats.max, hi);
}

// The rows of `t` that belong to real samples: a tensor whose first
// dimension is the (padded) batch contributes its first `items` rows only.
std::span<const float> RealRows(const Tensor& t, int64_t batch, int64_t items) {
  std::span<const float> all = t.values<float>();
  if (items == batch || t.rank() == 0 || t.dim(0) != batch) return all;
  return all.first(static_cast<size_t>(t.element_count() / batch * items));
}

}  // namespace

Result<CalibrationMethod> ParseCalibrationMethod(std::string_view name) {
  if (name == "minmax") return CalibrationMethod::kMinMax;
  if (name == "percentile") return CalibrationMethod::kPercentile;
  if (name == "entropy") return CalibrationMethod::kEntropy;
  return Status::InvalidArgument("unknown calibration method '" + std::string(name) +
                                 "' (expected minmax, percentile or entropy)");
}

const char* CalibrationMethodName(CalibrationMethod method) {
  switch (method) {
    case CalibrationMethod::kMinMax: return "minmax";
    case CalibrationMethod::kPercentile: return "percentile";
    case CalibrationMethod::kEntropy: return "entropy";
  }
  return "unknown";
}

float ThresholdFor(const TensorStats& stats, CalibrationMethod method, double percentile, int entropy_bins) {
  switch (method) {
    case CalibrationMethod::kMinMax: return std::max(std::fabs(stats.min), std::fabs(stats.max));
    case CalibrationMethod::kPercentile: return stats.histogram.Percentile(percentile);
    case CalibrationMethod::kEntropy: return stats.histogram.EntropyThreshold(entropy_bins);
  }
  return 0;
}

namespace {

// Thresholds of every tensor; the entropy search takes ~0.1 s per tensor,
// so tensors are spread over the OpenMP threads.
void SetThresholds(Calibration& c) {
  std::vector<TensorStats*> all;
  for (auto& [name, stats] : c.tensors) all.push_back(&stats);
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < all.size(); ++i) {
    all[i]->threshold = ThresholdFor(*all[i], c.method, c.percentile, c.entropy_bins);
  }
}

}  // namespace

Calibration Calibration::WithMethod(CalibrationMethod m) const {
  Calibration out = *this;
  out.method = m;
  SetThresholds(out);
  return out;
}

const TensorStats* Calibration::Find(const std::string& tensor) const {
  auto it = tensors.find(tensor);
  return it == tensors.end() ? nullptr : &it->second;
}

namespace {

// The model calibration runs: the prepared graph with every observed
// intermediate tensor appended as a graph output.
struct ObservationModel {
  std::string bytes;
  std::string input_name;
  bool observe_input = false;                           // the graph input is observed from the samples
  std::vector<std::pair<std::string, int>> from_outputs;  // (tensor, index among the engine's outputs)
};

Result<ObservationModel> MakeObservationModel(std::string_view onnx_bytes) {
  PPML_ASSIGN_OR_RETURN(PreparedModel prepared, PrepareModel(onnx_bytes));
  onnx::GraphProto* graph = prepared.model.mutable_graph();
  std::vector<std::string> observed = GraphIndex(*graph).ObservedTensors();
  ObservationModel m;
  const std::vector<onnx::ValueInfoProto*> inputs = engine::RuntimeInputs(*graph);
  if (!inputs.empty()) m.input_name = inputs.back()->name();
  std::map<std::string, int> output_index;
  for (int i = 0; i < graph->output_size(); ++i) output_index[graph->output(i).name()] = i;
  for (const std::string& name : observed) {
    if (name == m.input_name) {
      m.observe_input = true;
      continue;
    }
    auto it = output_index.find(name);
    if (it == output_index.end()) {
      onnx::ValueInfoProto* out = graph->add_output();
      out->set_name(name);
      out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
      it = output_index.emplace(name, graph->output_size() - 1).first;
    }
    m.from_outputs.emplace_back(name, it->second);
  }
  if (!prepared.model.SerializeToString(&m.bytes)) return Status::Internal("calibrate: cannot serialize the model");
  return m;
}

// The samples must be [N, dims of the model input after the first], of its type.
Status CheckSamples(const CalibrationSet& set, const engine::TensorInfo& input) {
  const Tensor& samples = set.samples;
  bool fits = samples.dtype() == input.dtype && samples.rank() >= 1 &&
              samples.rank() == static_cast<int64_t>(input.shape.size());
  for (size_t d = 1; fits && d < input.shape.size(); ++d) {
    fits = input.shape[d] < 0 || input.shape[d] == samples.dim(d);
  }
  if (fits) return Status::Ok();
  return Status::InvalidArgument("calibrate: calibration set '" + set.spec + "' holds " +
                                 DataTypeName(samples.dtype()) + " " + ShapeToString(samples.shape()) +
                                 ", the model input '" + input.name + "' takes " + DataTypeName(input.dtype) + " " +
                                 ShapeToString(input.shape) + " (-1: any)");
}

}  // namespace

Result<Calibration> Calibrate(std::string_view onnx_bytes, const CalibrationSet& set, CalibrationMethod method,
                              const CalibrateOptions& options) {
  PPML_ASSIGN_OR_RETURN(ObservationModel observation, MakeObservationModel(onnx_bytes));
  engine::EngineOptions engine_options;
  engine_options.fuse = false;  // a fused kernel would hide the tensors between its ops
  engine_options.threads = options.threads;
  const std::string& bytes = observation.bytes;
  PPML_ASSIGN_OR_RETURN(std::unique_ptr<engine::Model> model,
                        engine::Model::LoadBytes(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())),
                                                 "calibration model", engine_options));
  if (model->inputs().size() != 1) {
    return Status::Unsupported("calibrate: the model has " + std::to_string(model->inputs().size()) +
                               " inputs; calibration supports models with one input");
  }
  const engine::TensorInfo& input = model->inputs()[0];
  PPML_RETURN_IF_ERROR(CheckSamples(set, input));
  const auto& from_outputs = observation.from_outputs;

  Calibration calibration;
  calibration.method = method;
  calibration.percentile = options.percentile;
  calibration.entropy_bins = options.entropy_bins;
  calibration.samples = set.samples.dim(0);
  std::vector<TensorStats*> stats(from_outputs.size());
  for (size_t i = 0; i < from_outputs.size(); ++i) stats[i] = &calibration.tensors[from_outputs[i].first];
  std::vector<char> was_f32(from_outputs.size(), 0);
  TensorStats* input_stats = observation.observe_input ? &calibration.tensors[observation.input_name] : nullptr;

  const Tensor& samples = set.samples;
  const int64_t total = samples.dim(0);
  const bool fixed_batch = input.shape[0] >= 0;
  const bool auto_batch = !fixed_batch && options.batch_size <= 0;
  // An automatic batch starts with one sample to measure the outputs' size.
  int64_t batch = fixed_batch ? input.shape[0] : (auto_batch ? 1 : options.batch_size);
  int batches = static_cast<int>((total + batch - 1) / batch);
  int batch_number = 0;
  for (int64_t first = 0; first < total;) {
    const int64_t items = std::min(batch, total - first);
    const Tensor x = samples.CopyRows(first, items, fixed_batch ? batch : items);
    auto outputs = model->Run(std::span<const Tensor>(&x, 1));
    if (!outputs.ok()) {
      return outputs.status().WithContext("calibrate: samples " + std::to_string(first) + ".." +
                                          std::to_string(first + items - 1) + " of '" + set.spec + "'");
    }
    // Tensors are independent: update their statistics in parallel.
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < from_outputs.size(); ++i) {
      const Tensor& t = (*outputs)[static_cast<size_t>(from_outputs[i].second)];
      if (t.dtype() != DataType::kF32) continue;
      was_f32[i] = 1;
      Observe(*stats[i], RealRows(t, x.dim(0), items));
    }
    if (input_stats) Observe(*input_stats, RealRows(x, x.dim(0), items));
    first += items;
    ++batch_number;
    if (auto_batch && batch_number == 1) {
      size_t bytes_per_sample = 0;
      for (const Tensor& t : *outputs) bytes_per_sample += t.byte_size() / static_cast<size_t>(items);
      batch = std::clamp<int64_t>(static_cast<int64_t>(kOutputBudgetBytes / std::max<size_t>(bytes_per_sample, 1)),
                                  1, kMaxAutoBatch);
      batches = 1 + static_cast<int>((total - first + batch - 1) / batch);
    }
    const CalibrationProgress progress{batch_number, batches, first, total,
                                       from_outputs.size() + (input_stats ? 1 : 0)};
    options.progress ? options.progress(progress) : DefaultProgress(progress);
  }
  // A tensor that never came back as f32 (an integer computation the graph
  // analysis could not type) is not an activation.
  for (size_t i = 0; i < from_outputs.size(); ++i) {
    if (!was_f32[i]) calibration.tensors.erase(from_outputs[i].first);
  }
  SetThresholds(calibration);
  return calibration;
}

}  // namespace ppml::int8
