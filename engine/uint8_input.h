// Gives a model a uint8 input: images travel as their pixels' bytes, a
// quarter of the float tensor the model was trained on, and the model
// normalizes them itself.
//
//   Uint8InputOptions o;
//   o.mean = {0.485f, 0.456f, 0.406f};
//   o.std = {0.229f, 0.224f, 0.225f};
//   PPML_ASSIGN_OR_RETURN(std::string u8_model, WithUint8Input(onnx_bytes, o));
//
// The rewritten model's only input keeps its name and shape and becomes
// UINT8; three nodes in front compute what the old input held,
//   x[n, c, ...] = (v[n, c, ...] / pixel_scale - mean[c]) / std[c]
// as Cast, then Mul by 1 / (pixel_scale * std[c]) and Add of -mean[c] / std[c]
// (standard ONNX, so other runtimes read the result too). mean and std hold
// one value for every channel (dimension 1) or a single value for all. A
// QDQ model works as well: its QuantizeLinear then reads the normalized
// floats.
//
// Errors (InvalidArgument/Unsupported/DataLoss, naming the input or option):
// not an ONNX model; not exactly one graph input; an input that is not
// FLOAT; mean or std of the wrong length or a channel dimension that is
// symbolic; a std or pixel_scale that is zero, negative or not finite.
//
// Thread safety: a pure function.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ppml::engine {

struct Uint8InputOptions {
  std::vector<float> mean = {0.0f};
  std::vector<float> std = {1.0f};
  float pixel_scale = 255.0f;
};

Result<std::string> WithUint8Input(std::string_view onnx_bytes, const Uint8InputOptions& options);

}  // namespace ppml::engine
