// INT8 post-training quantization: calibrate an FP32 ONNX model on sample
// inputs, then rewrite it as a standard QDQ ONNX model (the format
// onnxruntime's quantize_static writes with QuantFormat.QDQ), which the
// engine runs with oneDNN INT8 primitives and other runtimes can read.
//
//   PPML_ASSIGN_OR_RETURN(std::string fp32, ReadModelBytes("m.onnx"));
//   PPML_ASSIGN_OR_RETURN(ModelInput in, ModelInputOf(fp32));
//   PPML_ASSIGN_OR_RETURN(CalibrationSet set, LoadCalibrationSet("fashion-mnist:train:1000", in.shape, in.dtype));
//   PPML_ASSIGN_OR_RETURN(Calibration cal, Calibrate(fp32, set, CalibrationMethod::kEntropy));
//   QuantizeSummary summary;
//   PPML_ASSIGN_OR_RETURN(std::string qdq, QuantizeToQdq(fp32, cal, {}, &summary));
//   std::cerr << summary.ToTable();
//
// What QuantizeToQdq writes (opset >= 13):
//
//   weights  W (f32) ──▶  W_quantized (int8 initializer, symmetric, per output
//            channel) ──DequantizeLinear(W_scale [C], W_zero_point [C] = 0, axis)──▶ op
//   bias     B (f32) ──▶  B_quantized (int32 = round(b / (s_x * s_w[c])))
//            ──DequantizeLinear(B_quantized_scale [C], zero point [C] = 0, axis 0)──▶ op
//   tensors  X ──QuantizeLinear(X_scale, X_zero_point)──▶ X_QuantizeLinear_Output
//              ──DequantizeLinear(same)──▶ X_DequantizeLinear_Output ──▶ every consumer of X
//
// A tensor is quantized when it is an activation input of an INT8 op (Conv,
// Gemm, MatMul, Add), the output of one (after what the engine folds into
// it, engine::FusedOutputs: bias Add, activations, GELU, x * gate(x); for an
// Add after its Relu/Clip when that is the output's only reader), or flows
// from such a tensor through MaxPool/Flatten/Reshape/Transpose/Squeeze/
// Unsqueeze/Identity/Dropout/Gather/Slice (output shares the input's scale,
// so INT8 passes through unchanged), AveragePool/GlobalAveragePool (own
// output scale) or Concat (all inputs and the output share one scale: the
// largest of their thresholds); and only while some reader takes it in
// INT8 (an INT8 op, or one of those, a Relu or elementwise arithmetic whose
// output stays quantized): an INT8 layer read only by float ops writes
// float.
// Activations are u8 (zero point 0, scale T/255) when the tensor is
// non-negative by construction (Relu, Clip with min >= 0, pools, reshapes,
// Concat and Add of such), s8 (zero point 0, scale T/127) otherwise, where T
// is the calibrated threshold. A graph output that no node reads stays FP32;
// one that is also read gets its Q/DQ pair for the readers and remains the
// FP32 value for the caller. FP32 nodes that read a quantized tensor read
// its DequantizeLinear output, as in onnxruntime's QDQ models.
//
// Before calibrating and quantizing, both steps prepare the model the same
// way, so tensor names match between them: opset raised to 13 when lower
// (ONNX version converter), unnamed nodes named "<op>_<index>" (as the
// engine names them), Constant nodes turned into initializers,
// BatchNormalization folded into the Conv before it (the Conv keeps its name
// and takes over the BN's output tensor). Every other node keeps its name.
//
// Errors are Status values; no exception crosses this header.
// Thread safety: free functions without shared state; Calibrate loads its own
// engine::Model, so concurrent calls on different data are fine.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "int8/histogram.h"

namespace ppml::int8 {

// ------------------------------------------------------------ calibration set

// Sample inputs for calibration: f32 [N, ...] where the dimensions after the
// first are the model input's.
struct CalibrationSet {
  std::string spec;  // what it was loaded from, for messages
  Tensor samples;
};

// Loads the samples a spec names, checked against the model's input shape
// (its batch dimension, usually -1, is ignored) and given its element type
// (f32; u8 for a model that takes pixels, engine/uint8_input.h; s8):
//
//   fashion-mnist:train:N   the first N training images, [N,1,28,28]: f32 in
//                           [0,1], or u8 pixels (any dataset spec of
//                           common/dataset.h works)
//   random:N                N uniform samples of the model's input shape
//                           (common/tensor.h FillUniform: f32 in [0,1], u8
//                           or s8 over their whole range),
//                           fixed seed (for throughput-only benchmarks)
//   DIR                     every *.npy file in DIR (sorted by name), each
//                           holding one sample (the input shape without the
//                           batch dimension) or a batch of them, of the
//                           input's element type
//
// A sample shape or type that differs from the model's is InvalidArgument
// naming the spec and both.
Result<CalibrationSet> LoadCalibrationSet(const std::string& spec, const std::vector<int64_t>& model_input_shape,
                                          DataType model_input_type = DataType::kF32);

// A model's only graph input (-1 for symbolic dimensions).
struct ModelInput {
  Shape shape;
  DataType dtype = DataType::kF32;
};
Result<ModelInput> ModelInputOf(std::string_view onnx_bytes);

// Reads a whole model file.
Result<std::string> ReadModelBytes(const std::string& path);

// True when the model is quantized already (QDQ, QLinear* or *Integer ops):
// the engine runs it in INT8 as it is, and quantizing it again is an error.
bool IsQuantizedOp(std::string_view op_type);
Result<bool> IsQuantizedModel(std::string_view onnx_bytes);

// ---------------------------------------------------------------- calibration

enum class CalibrationMethod {
  kMinMax,      // T = max |x| seen
  kPercentile,  // T = the 99.99th percentile of |x| (CalibrateOptions::percentile)
  kEntropy,     // TensorRT's KL-divergence threshold search over the |x| histogram
};

// "minmax", "percentile", "entropy"; anything else is InvalidArgument naming the value.
Result<CalibrationMethod> ParseCalibrationMethod(std::string_view name);
const char* CalibrationMethodName(CalibrationMethod method);

// What was observed of one tensor.
struct TensorStats {
  float min = 0;
  float max = 0;
  AbsHistogram histogram;  // of |x|
  float threshold = 0;     // the |x| clipping bound the method chose
};

struct Calibration {
  CalibrationMethod method = CalibrationMethod::kMinMax;
  double percentile = 99.99;
  int entropy_bins = 128;
  int64_t samples = 0;
  std::map<std::string, TensorStats> tensors;  // by tensor name in the prepared model

  // The same statistics with every threshold recomputed for `m` (no rerun).
  Calibration WithMethod(CalibrationMethod m) const;
  const TensorStats* Find(const std::string& tensor) const;
};

// The threshold `method` derives from one tensor's statistics.
float ThresholdFor(const TensorStats& stats, CalibrationMethod method, double percentile = 99.99,
                   int entropy_bins = 128);

struct CalibrationProgress {
  int batch = 0;  // 1-based, batches done so far
  int batches = 0;
  int64_t samples_done = 0;
  int64_t samples_total = 0;
  size_t tensors = 0;  // tensors observed
};

struct CalibrateOptions {
  // Samples per engine run; 0 sizes batches automatically (about 512 MiB of
  // observed activations per run). A model with a fixed batch uses its own.
  int64_t batch_size = 0;
  double percentile = 99.99;  // for kPercentile
  int entropy_bins = 128;     // quantized bins of the kEntropy search
  int threads = 0;            // engine threads; 0 leaves the process default
  // Called after every batch. Empty: one line per batch on stderr,
  // "calibrate: batch 3/10 samples=300/1000 tensors=14".
  std::function<void(const CalibrationProgress&)> progress;
};

// Runs the FP32 model (engine, fusions off) over the calibration set and
// records min/max and an |x| histogram of every float activation that feeds
// or leaves a Conv, Gemm, MatMul, Relu, Clip, MaxPool, AveragePool,
// GlobalAveragePool, Add, Concat, Flatten or Reshape (and the other
// data-movement ops QuantizeToQdq passes INT8 through).
Result<Calibration> Calibrate(std::string_view onnx_bytes, const CalibrationSet& set, CalibrationMethod method,
                              const CalibrateOptions& options = {});

// -------------------------------------------------------------- quantization

struct QuantizeOptions {
  // A Conv whose input has <= 4 channels (the first conv of an image model)
  // stays FP32. Off by default: INT8 there measured faster on both ISAs
  // (ResNet-50 +4-7% AVX2, +10% VNNI; the Fashion-MNIST CNN 1.5x) at no
  // accuracy cost (Fashion-MNIST 0.9172 against 0.9174).
  bool keep_first_conv_fp32 = false;
  // A Gemm/MatMul whose output reaches a graph output (through nothing but
  // Relu/Softmax/reshapes) stays FP32.
  bool keep_last_fp32 = true;
  // Node names that stay FP32 whatever else applies.
  std::set<std::string> fp32_nodes;
  // 7-bit weights (|q| <= 63, scale max|W_c| / 63), as onnxruntime's
  // reduce_range: CPUs without VNNI (AVX2, AVX-512 before Cascade Lake)
  // multiply u8 x s8 pairs into saturating 16-bit sums, which full-range
  // weights can overflow. Costs one bit of weight precision; leave it off
  // for VNNI machines.
  bool reduce_range = false;
};

// One row per node of the prepared model (folded BatchNormalizations
// included, marked "folded").
struct NodeQuantization {
  std::string name;
  std::string op;
  std::string precision;       // "int8", "fp32" or "folded"
  std::string reason;          // why
  std::string input;           // the first activation input ("" when none)
  float input_threshold = -1;  // its calibrated threshold; < 0 when not calibrated
  std::string input_type;      // "u8", "s8" or "f32"
};

struct QuantizeSummary {
  std::vector<NodeQuantization> nodes;
  int int8_nodes = 0;
  int fp32_nodes = 0;
  int quantized_tensors = 0;  // Q/DQ pairs inserted
  int quantized_weights = 0;
  int folded_batchnorms = 0;
  CalibrationMethod method = CalibrationMethod::kMinMax;

  // A fixed-width table, one line per node, and a totals line.
  std::string ToTable() const;
};

// Rewrites an FP32 ONNX model as a QDQ model using `calibration` (which must
// come from Calibrate on the same model: a calibration that knows none of
// the model's tensors is FailedPrecondition). Returns the serialized model.
// `summary`, when given, receives the per-node decisions. A model that
// already holds QuantizeLinear/DequantizeLinear/QLinear* nodes is
// FailedPrecondition.
Result<std::string> QuantizeToQdq(std::string_view onnx_bytes, const Calibration& calibration,
                                  const QuantizeOptions& options = {}, QuantizeSummary* summary = nullptr);

// The whole pipeline for tools (`ppml model quantize`, `--precision int8
// --calib SPEC`): load the calibration set named by `calibration_spec` for
// the model's input, calibrate with `method`, write the QDQ model.
struct QuantizedModel {
  std::string onnx_bytes;  // the QDQ model
  Calibration calibration;
  QuantizeSummary summary;
};
Result<QuantizedModel> QuantizeModel(std::string_view fp32_onnx_bytes, const std::string& calibration_spec,
                                     CalibrationMethod method, const QuantizeOptions& options = {},
                                     const CalibrateOptions& calibrate_options = {});

// ------------------------------------------------ quantization arithmetic

// ONNX QuantizeLinear on one value: saturate(round_half_even(x / scale) + zero_point)
// to the range of `type` (u8 0..255, s8 -128..127, s32). Other types: 0.
int32_t QuantizeValue(float x, float scale, int32_t zero_point, DataType type);
// ONNX DequantizeLinear on one value: (q - zero_point) * scale.
float DequantizeValue(int32_t q, float scale, int32_t zero_point);

// Parameters of one activation tensor: u8 (zero point 0, scale T/255) when
// non-negative, s8 (zero point 0, scale T/127) otherwise. A threshold that
// is not positive and finite gives scale 1.
struct ActivationQuantization {
  float scale = 1;
  int32_t zero_point = 0;
  DataType type = DataType::kS8;
};
ActivationQuantization ActivationParams(float threshold, bool non_negative);

// Symmetric per-channel weight scales: scale[c] = max |W[c]| / qmax over the
// slice at index c of `axis` (1 for an all-zero slice). `weights` is row-major
// with shape `shape`; qmax is 127, or 63 for reduce_range.
std::vector<float> PerChannelScales(std::span<const float> weights, const Shape& shape, int axis, int qmax = 127);
// The int8 weights for those scales: clamp(round_half_even(w / scale[c]), -qmax, qmax).
std::vector<int8_t> QuantizePerChannel(std::span<const float> weights, const Shape& shape, int axis,
                                       std::span<const float> scales, int qmax = 127);

}  // namespace ppml::int8
