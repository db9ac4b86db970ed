// ppml eval --model FILE.onnx --dataset fashion-mnist:test [--batch 256]
//           [--precision fp32|int8 --calib SPEC [--method M]] [--threads T] [--json]
//
// Top-1 accuracy of an image classifier on a labelled dataset. The model
// takes one f32 input whose per-item shape holds one image ([N,1,28,28] or a
// flattened [N,784]) and returns scores with one row per item. Progress goes
// to stderr; with --json the last stdout line is one object:
//   {"model","dataset","precision","isa","threads","batch","accuracy",
//    "count","seconds","throughput_per_s"}
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>

#include "common/dataset.h"
#include "common/json_line.h"
#include "engine/engine.h"
#include "tools/cli_support.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {

constexpr const char* kCommand = "eval";

struct EvalOptions {
  ModelSource source;
  std::string dataset = "fashion-mnist:test";
  int64_t batch = 256;
  bool batch_given = false;
  bool json = false;
  std::optional<double> min_accuracy;
};

// How images are fed: the per-item shape the model wants and the batch it runs.
struct InputPlan {
  Shape item_shape;         // e.g. [1,28,28] or [784]
  int64_t batch = 0;        // items per Run
  bool fixed_batch = false; // the model fixes its batch: pad the last one
};

Result<InputPlan> PlanInput(const engine::Model& model, const Tensor& images, const EvalOptions& options) {
  if (model.inputs().size() != 1) {
    return Status::InvalidArgument(options.source.path + " takes " + std::to_string(model.inputs().size()) +
                                   " inputs; eval needs a model with one image input");
  }
  const engine::TensorInfo& input = model.inputs()[0];
  if ((input.dtype != DataType::kF32 && input.dtype != DataType::kU8) || input.shape.empty()) {
    return Status::InvalidArgument(options.source.path + ": input '" + input.name + "' is " + DataTypeName(input.dtype) +
                                   " " + ShapeToString(input.shape) + "; eval needs an f32 or u8 batch of images");
  }
  InputPlan plan;
  plan.item_shape.assign(input.shape.begin() + 1, input.shape.end());
  const int64_t image_size = images.element_count() / std::max<int64_t>(images.dim(0), 1);
  if (std::any_of(plan.item_shape.begin(), plan.item_shape.end(), [](int64_t d) { return d < 0; }) ||
      ElementCount(plan.item_shape) != image_size) {
    return Status::InvalidArgument(options.source.path + ": input '" + input.name + "' of shape " +
                                   ShapeToString(input.shape) + " does not take the dataset's images of shape " +
                                   ShapeToString(Shape(images.shape().begin() + 1, images.shape().end())));
  }
  plan.fixed_batch = input.shape[0] >= 0;
  plan.batch = plan.fixed_batch ? input.shape[0] : options.batch;
  if (plan.fixed_batch && options.batch_given && options.batch != plan.batch) {
    std::cerr << "ppml eval: " << options.source.path << " fixes the batch at " << plan.batch << "; ignoring --batch "
              << options.batch << std::endl;
  }
  return plan;
}

// Index of the highest score in each of the first `count` rows.
Result<std::vector<int>> PredictedClasses(const Tensor& scores, int64_t count, const std::string& model) {
  if (scores.dtype() != DataType::kF32 || scores.rank() < 1 || scores.dim(0) < count || scores.element_count() == 0) {
    return Status::InvalidArgument(model + ": the first output is " + std::string(DataTypeName(scores.dtype())) +
                                   " " + ShapeToString(scores.shape()) + "; eval needs f32 scores, one row per item");
  }
  const int64_t classes = scores.element_count() / scores.dim(0);
  std::vector<int> predicted(static_cast<size_t>(count));
  const float* row = scores.data<float>();
  for (int64_t i = 0; i < count; ++i, row += classes) {
    predicted[static_cast<size_t>(i)] = static_cast<int>(std::max_element(row, row + classes) - row);
  }
  return predicted;
}

int RunEval(const EvalOptions& options) {
  Result<LabeledImages> data = LoadDataset(options.dataset);
  if (!data.ok()) return ReportError(kCommand, data.status());
  auto model = LoadModel(options.source);
  if (!model.ok()) return ReportError(kCommand, model.status().message(), kExitFailure);
  Result<InputPlan> plan = PlanInput(**model, data->images, options);
  if (!plan.ok()) return ReportError(kCommand, plan.status().message(), kExitFailure);
  const DataType input_type = (*model)->inputs()[0].dtype;
  Result<Tensor> images = ImagesAs(std::move(data->images), input_type);
  if (!images.ok()) return ReportError(kCommand, images.status());

  const int64_t count = images->dim(0);
  Shape all_shape = plan->item_shape;
  all_shape.insert(all_shape.begin(), count);
  Result<Tensor> all = images->Reshaped(all_shape);  // PlanInput checked the element counts
  if (!all.ok()) return ReportError(kCommand, all.status());
  std::cerr << "ppml eval: " << options.source.path << " on " << options.dataset << " (" << count << " images), batch "
            << plan->batch << ", " << options.source.threads << " threads, " << engine::EffectiveCpuIsa() << std::endl;

  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  Clock::time_point next_report = start + std::chrono::seconds(2);
  int64_t correct = 0;
  for (int64_t first = 0; first < count; first += plan->batch) {
    const int64_t items = std::min(plan->batch, count - first);
    const Tensor batch = all->CopyRows(first, items, plan->fixed_batch ? plan->batch : items);

    auto outputs = (*model)->Run(std::span<const Tensor>(&batch, 1));
    if (!outputs.ok()) return ReportError(kCommand, options.source.path + ": " + outputs.status().message(), kExitFailure);
    if (outputs->empty()) return ReportError(kCommand, options.source.path + " returned no outputs", kExitFailure);
    Result<std::vector<int>> predicted = PredictedClasses(outputs->front(), items, options.source.path);
    if (!predicted.ok()) return ReportError(kCommand, predicted.status().message(), kExitFailure);
    for (int64_t i = 0; i < items; ++i) correct += (*predicted)[i] == data->labels[first + i];

    if (Clock::now() >= next_report) {
      std::cerr << "ppml eval: " << first + items << "/" << count << " images, accuracy so far "
                << static_cast<double>(correct) / static_cast<double>(first + items) << std::endl;
      next_report += std::chrono::seconds(2);
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double accuracy = count > 0 ? static_cast<double>(correct) / static_cast<double>(count) : 0;
  const double throughput = seconds > 0 ? static_cast<double>(count) / seconds : 0;
  if (options.json) {
    JsonLine json;
    json.Add("model", options.source.path)
        .Add("dataset", options.dataset)
        .Add("precision", RunningPrecision(**model, options.source))
        .Add("isa", engine::EffectiveCpuIsa())
        .Add("threads", options.source.threads)
        .Add("batch", plan->batch)
        .Add("accuracy", accuracy)
        .Add("count", count)
        .Add("seconds", seconds)
        .Add("throughput_per_s", throughput);
    std::cout << json.str() << std::endl;
  } else {
    std::cout << options.source.path << " on " << options.dataset << ": accuracy " << accuracy << " (" << correct << "/"
              << count << "), " << throughput << " images/s" << std::endl;
  }
  if (options.min_accuracy && accuracy < *options.min_accuracy) {
    return ReportError(kCommand,
                       "accuracy " + std::to_string(accuracy) + " is below --min-accuracy " +
                           std::to_string(*options.min_accuracy),
                       kExitFailure);
  }
  return kExitOk;
}

}  // namespace

void AddEvalCommand(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<EvalOptions>();
  CLI::App* eval = app.add_subcommand("eval", "Top-1 accuracy of a classifier on a labelled dataset");
  eval->add_option("--model", options->source.path, "ONNX model file")->required()->check(CLI::ExistingFile);
  eval->add_option("--dataset", options->dataset, "fashion-mnist:test, fashion-mnist:train or fashion-mnist:test:N")
      ->capture_default_str();
  CLI::Option* batch = eval->add_option("--batch", options->batch, "images per run")
                           ->capture_default_str()
                           ->check(Positive());
  AddPrecisionOptions(*eval, options->source);
  eval->add_option("--threads", options->source.threads, "oneDNN threads")->capture_default_str()->check(Positive());
  eval->add_flag("--json", options->json, "print the result as one JSON object on the last line");
  eval->add_option("--min-accuracy", options->min_accuracy, "exit 1 when the accuracy is below this fraction")
      ->check(CLI::Range(0.0, 1.0));
  eval->callback([options, batch, exit_code] {
    options->batch_given = batch->count() > 0;
    *exit_code = RunEval(*options);
  });
}

}  // namespace ppml::tools
