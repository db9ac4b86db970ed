#include "engine/uint8_input.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/tensor.h"
#include "engine/onnx_tensor.h"

namespace ppml::engine {
namespace {

// Mul and Add broadcast from opset 7; the engine reads opsets 7 and later.
constexpr int64_t kMinOpset = 7;

std::string Join(const std::vector<float>& values) {
  std::ostringstream out;
  for (size_t i = 0; i < values.size(); ++i) out << (i ? "," : "") << values[i];
  return out.str();
}

Status CheckValues(const char* option, const std::vector<float>& values, bool positive) {
  if (values.empty()) return Status::InvalidArgument(std::string(option) + ": no values");
  for (float v : values) {
    if (!std::isfinite(v) || (positive && v <= 0)) {
      return Status::InvalidArgument(std::string(option) + " " + Join(values) + ": every value must be " +
                                     (positive ? "positive and finite" : "finite"));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> WithUint8Input(std::string_view onnx_bytes, const Uint8InputOptions& options) {
  PPML_RETURN_IF_ERROR(CheckValues("mean", options.mean, false));
  PPML_RETURN_IF_ERROR(CheckValues("std", options.std, true));
  PPML_RETURN_IF_ERROR(CheckValues("pixel scale", {options.pixel_scale}, true));
  PPML_ASSIGN_OR_RETURN(onnx::ModelProto model, ParseOnnxModel(onnx_bytes));
  for (const auto& opset : model.opset_import()) {
    if ((opset.domain().empty() || opset.domain() == "ai.onnx") && opset.version() < kMinOpset) {
      return Status::Unsupported("the model imports ONNX opset " + std::to_string(opset.version()) + "; at least " +
                                 std::to_string(kMinOpset) + " is needed");
    }
  }
  onnx::GraphProto* graph = model.mutable_graph();
  const std::vector<onnx::ValueInfoProto*> inputs = RuntimeInputs(*graph);
  if (inputs.size() != 1) {
    return Status::Unsupported("the model has " + std::to_string(inputs.size()) +
                               " graph inputs; only a model with one input can be given a uint8 one");
  }
  onnx::ValueInfoProto& input = *inputs[0];
  const std::string name = input.name();
  auto* tensor_type = input.mutable_type()->mutable_tensor_type();
  if (tensor_type->elem_type() != onnx::TensorProto::FLOAT) {
    return Status::InvalidArgument("input '" + name + "' is " + OnnxTypeName(tensor_type->elem_type()) +
                                   "; only a FLOAT input can be given a uint8 one");
  }
  for (const auto& out : graph->output()) {
    if (out.name() == name) return Status::Unsupported("input '" + name + "' is also a graph output");
  }

  // Per-channel constants, shaped [1, C, 1, ...] to broadcast along dimension 1.
  const size_t channels = std::max(options.mean.size(), options.std.size());
  Shape constant_shape = {1};
  if (channels > 1) {
    const auto& dims = tensor_type->shape().dim();
    const bool known = dims.size() >= 2 && dims[1].has_dim_value();
    if (!known || dims[1].dim_value() != static_cast<int64_t>(channels)) {
      return Status::InvalidArgument(
          "mean " + Join(options.mean) + " and std " + Join(options.std) + ": " + std::to_string(channels) +
          " channels, but input '" + name + "' has " +
          (known ? std::to_string(dims[1].dim_value()) + " in dimension 1" : "no fixed dimension 1") +
          " (give one value for all channels, or one per channel)");
    }
    for (const auto* list : {&options.mean, &options.std}) {
      if (list->size() != 1 && list->size() != channels) {
        return Status::InvalidArgument("mean and std must have as many values as each other, or one");
      }
    }
    constant_shape.assign(static_cast<size_t>(dims.size()), 1);
    constant_shape[1] = static_cast<int64_t>(channels);
  }
  Tensor scale(DataType::kF32, constant_shape), shift(DataType::kF32, constant_shape);
  for (size_t c = 0; c < channels; ++c) {
    const float mean = options.mean[options.mean.size() == 1 ? 0 : c];
    const float std = options.std[options.std.size() == 1 ? 0 : c];
    scale.data<float>()[c] = 1.0f / (options.pixel_scale * std);
    shift.data<float>()[c] = -mean / std;
  }

  FreshNames names(*graph);
  const std::string normalized = names.Take(name + "_normalized");
  for (auto& node : *graph->mutable_node()) {
    for (auto& in : *node.mutable_input()) {
      if (in == name) in = normalized;
    }
  }
  auto* value_info = graph->mutable_value_info();
  value_info->erase(std::remove_if(value_info->begin(), value_info->end(),
                                   [&](const onnx::ValueInfoProto& v) { return v.name() == name; }),
                    value_info->end());
  tensor_type->set_elem_type(onnx::TensorProto::UINT8);

  const std::string scale_name = names.Take(name + "_pixel_scale");
  const std::string shift_name = names.Take(name + "_pixel_shift");
  for (const auto& [constant, constant_name] : {std::pair{&scale, scale_name}, std::pair{&shift, shift_name}}) {
    *graph->add_initializer() = TensorToProto(*constant, constant_name);
    // Before IR version 4 every initializer is listed among the graph inputs too.
    if (model.ir_version() < 4) {
      onnx::ValueInfoProto* listed = graph->add_input();
      listed->set_name(constant_name);
      auto* type = listed->mutable_type()->mutable_tensor_type();
      type->set_elem_type(onnx::TensorProto::FLOAT);
      for (int64_t d : constant->shape()) type->mutable_shape()->add_dim()->set_dim_value(d);
    }
  }
  const std::string as_float = names.Take(name + "_float");
  const std::string scaled = names.Take(name + "_scaled");
  onnx::NodeProto steps[] = {MakeOnnxNode("Cast", names.Take(name + "_Cast"), {name}, as_float),
                             MakeOnnxNode("Mul", names.Take(name + "_Mul"), {as_float, scale_name}, scaled),
                             MakeOnnxNode("Add", names.Take(name + "_Add"), {scaled, shift_name}, normalized)};
  SetIntAttribute(steps[0], "to", onnx::TensorProto::FLOAT);
  auto* nodes = graph->mutable_node();
  for (onnx::NodeProto& step : steps) *nodes->Add() = std::move(step);
  std::rotate(nodes->pointer_begin(), nodes->pointer_end() - std::size(steps), nodes->pointer_end());

  std::string out;
  if (!model.SerializeToString(&out)) return Status::Internal("cannot serialize the rewritten model");
  return out;
}

}  // namespace ppml::engine
