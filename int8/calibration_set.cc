// Calibration sources: a dataset spec, synthetic random samples, or a folder
// of .npy files, all checked against the model's per-sample input shape.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "common/dataset.h"
#include "common/npy.h"
#include "engine/onnx_tensor.h"
#include "int8/quantize.h"

namespace ppml::int8 {
namespace {

constexpr std::string_view kRandomPrefix = "random:";
constexpr uint32_t kRandomSeed = 20240501;

Shape SampleDims(const Shape& shape) { return Shape(shape.begin() + 1, shape.end()); }

std::string ShapeMismatch(const std::string& spec, const Shape& got, const Shape& model_input_shape) {
  return "calibration set '" + spec + "': samples have shape " + ShapeToString(got) + ", the model expects " +
         ShapeToString(SampleDims(model_input_shape)) + " per sample (model input " +
         ShapeToString(model_input_shape) + ", -1: any)";
}

// Whether samples of shape `got` fit the model's per-sample dims `want` (-1
// matches anything). Equal element counts with fully known dims also fit
// (e.g. [1,28,28] images for a model that takes [784]); *reshape is then set.
bool SampleShapeFits(const Shape& got, const Shape& want, bool* reshape) {
  *reshape = false;
  if (got.size() == want.size()) {
    bool same = true;
    for (size_t i = 0; i < got.size(); ++i) same = same && (want[i] < 0 || want[i] == got[i]);
    if (same) return true;
  }
  if (std::any_of(want.begin(), want.end(), [](int64_t d) { return d < 0; })) return false;
  if (ElementCount(want) != ElementCount(got)) return false;
  *reshape = true;
  return true;
}

// Checks `samples` [N, ...] against the model and reshapes it when allowed.
Result<CalibrationSet> Checked(const std::string& spec, Tensor samples, const Shape& model_input_shape) {
  if (samples.rank() < 1 || samples.dim(0) == 0) {
    return Status::InvalidArgument("calibration set '" + spec + "' holds no samples");
  }
  const Shape got = SampleDims(samples.shape());
  const Shape want = SampleDims(model_input_shape);
  bool reshape = false;
  if (!SampleShapeFits(got, want, &reshape)) {
    return Status::InvalidArgument(ShapeMismatch(spec, got, model_input_shape));
  }
  CalibrationSet set;
  set.spec = spec;
  if (reshape) {
    Shape shape = want;
    shape.insert(shape.begin(), samples.dim(0));
    PPML_ASSIGN_OR_RETURN(set.samples, samples.Reshaped(shape));
  } else {
    set.samples = std::move(samples);
  }
  return set;
}

Result<int64_t> ParseCount(const std::string& spec, std::string_view text) {
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n <= 0) {
    return Status::InvalidArgument("calibration set '" + spec + "': the count '" + std::string(text) +
                                   "' is not a positive integer");
  }
  return n;
}

Result<CalibrationSet> LoadRandom(const std::string& spec, const Shape& model_input_shape, DataType type) {
  PPML_ASSIGN_OR_RETURN(int64_t n, ParseCount(spec, std::string_view(spec).substr(kRandomPrefix.size())));
  Shape shape = model_input_shape;
  shape[0] = n;
  for (size_t i = 1; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      return Status::InvalidArgument("calibration set '" + spec + "': the model input " +
                                     ShapeToString(model_input_shape) + " has a symbolic dimension " +
                                     std::to_string(i) + ", so random samples have no shape; use .npy files");
    }
  }
  Tensor samples(type, shape);
  std::mt19937 rng(kRandomSeed);  // mt19937's sequence is fixed by the standard
  if (!FillUniform(samples, rng)) {
    return Status::InvalidArgument("calibration set '" + spec + "': random samples are f32, u8 or s8; the model " +
                                   "input is " + DataTypeName(type) + " (use .npy files)");
  }
  return Checked(spec, std::move(samples), model_input_shape);
}

Result<CalibrationSet> LoadNpyFolder(const std::string& spec, const Shape& model_input_shape, DataType type) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(spec, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".npy") files.push_back(entry.path().string());
  }
  if (ec) return Status::IoError("calibration set '" + spec + "': cannot list the folder: " + ec.message());
  if (files.empty()) return Status::InvalidArgument("calibration set '" + spec + "': the folder has no .npy files");
  std::sort(files.begin(), files.end());

  const size_t sample_rank = model_input_shape.size() - 1;
  std::vector<Tensor> parts;
  Shape sample_shape;
  int64_t total = 0;
  for (const std::string& file : files) {
    PPML_ASSIGN_OR_RETURN(Tensor t, ReadNpyFile(file));
    if (t.dtype() != type) {
      return Status::InvalidArgument("calibration set '" + spec + "': " + file + " holds " + DataTypeName(t.dtype()) +
                                     " values; the model input takes " + DataTypeName(type) + " (" + NumpyAstype(type) + ")");
    }
    Shape shape = t.shape();
    if (shape.size() == sample_rank) shape.insert(shape.begin(), 1);  // one sample
    if (shape.size() != sample_rank + 1) {
      return Status::InvalidArgument(ShapeMismatch(spec + "/" + std::filesystem::path(file).filename().string(),
                                                   t.shape(), model_input_shape));
    }
    const Shape this_sample = SampleDims(shape);
    if (parts.empty()) sample_shape = this_sample;
    if (this_sample != sample_shape) {
      return Status::InvalidArgument("calibration set '" + spec + "': " + file + " has samples of shape " +
                                     ShapeToString(this_sample) + ", earlier files " + ShapeToString(sample_shape));
    }
    PPML_ASSIGN_OR_RETURN(Tensor batch, t.Reshaped(shape));
    total += shape[0];
    parts.push_back(std::move(batch));
  }
  Shape shape = sample_shape;
  shape.insert(shape.begin(), total);
  Tensor samples(type, shape);
  std::byte* out = samples.bytes().data();
  for (const Tensor& p : parts) {
    std::memcpy(out, p.raw_data(), p.byte_size());
    out += p.byte_size();
  }
  return Checked(spec, std::move(samples), model_input_shape);
}

}  // namespace

Result<CalibrationSet> LoadCalibrationSet(const std::string& spec, const std::vector<int64_t>& model_input_shape,
                                          DataType model_input_type) {
  if (model_input_shape.empty()) {
    return Status::InvalidArgument("calibration set '" + spec +
                                   "': the model input is a scalar; calibration needs a batch dimension");
  }
  if (spec.rfind(kRandomPrefix, 0) == 0) return LoadRandom(spec, model_input_shape, model_input_type);
  std::error_code ec;
  if (std::filesystem::is_directory(spec, ec)) return LoadNpyFolder(spec, model_input_shape, model_input_type);
  auto dataset_spec = ParseDatasetSpec(spec);
  if (!dataset_spec.ok()) {
    return Status::InvalidArgument("calibration set '" + spec +
                                   "' is neither a dataset (fashion-mnist:train:N), random:N nor a folder of .npy "
                                   "files (" + dataset_spec.status().message() + ")");
  }
  PPML_ASSIGN_OR_RETURN(LabeledImages data, LoadDataset(*dataset_spec));
  PPML_ASSIGN_OR_RETURN(Tensor images, ImagesAs(std::move(data.images), model_input_type));
  return Checked(spec, std::move(images), model_input_shape);
}

bool IsQuantizedOp(std::string_view op_type) {
  static const std::set<std::string, std::less<>> kQuantized = {
      "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"};
  return kQuantized.count(op_type) > 0;
}

Result<bool> IsQuantizedModel(std::string_view onnx_bytes) {
  PPML_ASSIGN_OR_RETURN(const onnx::ModelProto model, engine::ParseOnnxModel(onnx_bytes));
  const auto& nodes = model.graph().node();
  return std::any_of(nodes.begin(), nodes.end(), [](const onnx::NodeProto& n) { return IsQuantizedOp(n.op_type()); });
}

Result<ModelInput> ModelInputOf(std::string_view onnx_bytes) {
  PPML_ASSIGN_OR_RETURN(onnx::ModelProto model, engine::ParseOnnxModel(onnx_bytes));
  const std::vector<onnx::ValueInfoProto*> inputs = engine::RuntimeInputs(*model.mutable_graph());
  if (inputs.size() != 1) {
    return Status::Unsupported("the model has " + std::to_string(inputs.size()) +
                               " graph inputs; calibration supports models with one input");
  }
  ModelInput input;
  const auto& tt = inputs[0]->type().tensor_type();
  for (const auto& d : tt.shape().dim()) input.shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
  PPML_ASSIGN_OR_RETURN(input.dtype, engine::DataTypeFromOnnx(tt.elem_type(), "input '" + inputs[0]->name() + "'"));
  return input;
}

Result<std::string> ReadModelBytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return Status::NotFound(path + ": cannot open the model file");
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) return Status::IoError(path + ": read failed");
  return bytes;
}

}  // namespace ppml::int8
