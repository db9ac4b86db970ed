// QuantizeToQdq: the FP32 graph rewritten in onnxruntime's QDQ format.
//
// Four steps over the prepared graph (model_graph.h):
//   1. decide each Conv/Gemm/MatMul/Add: INT8 or FP32, and why (options,
//      constant weights, calibration statistics, supported attributes);
//   2. mark the tensors to quantize: the activation inputs and the output
//      (after a Relu/Clip that is its only reader) of every INT8 op, then
//      propagate through data-movement ops, pools and Concat until stable;
//   3. group tensors that must share parameters (input and output of a
//      data-movement op, all inputs and the output of a Concat) and give each
//      group one scale from the largest threshold among its members;
//   4. emit the new node list in order: for a quantized tensor X its
//      producer, then X_QuantizeLinear and X_DequantizeLinear; every reader
//      of X reads X_DequantizeLinear_Output; weights and biases of INT8 ops
//      become integer initializers read through their own DequantizeLinear,
//      emitted just before the op.
//
// Names follow onnxruntime's quantizer: X_scale, X_zero_point,
// X_QuantizeLinear(_Output), X_DequantizeLinear(_Output), W_quantized,
// W_scale, W_zero_point, B_quantized, B_quantized_scale,
// B_quantized_zero_point (a suffix _1, _2... only on a clash).
#include <algorithm>
#include <exception>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/onnx_tensor.h"
#include "int8/model_graph.h"
#include "int8/quantize.h"

namespace ppml::int8 {
namespace {

enum class NodeKind { kOther, kCompute, kFused };

struct NodePlan {
  NodeKind kind = NodeKind::kOther;
  bool int8 = false;
  std::string reason;
  // For INT8 compute nodes.
  std::vector<int> activation_inputs;  // input indices quantized as activations
  int weight_input = -1;               // constant weight read per channel
  int weight_axis = -1;
  int bias_input = -1;
  std::string output;                  // quantized output tensor (after a fused activation)
  std::vector<int> fused_nodes;        // what the engine fuses into the op (output after them)
};

std::string OpLabel(const onnx::NodeProto& n) { return n.op_type() + " '" + n.name() + "'"; }

class QdqRewriter {
 public:
  QdqRewriter(PreparedModel& prepared, const Calibration& calibration, const QuantizeOptions& options)
      : graph_(*prepared.model.mutable_graph()),
        index_(graph_),
        calibration_(calibration),
        options_(options),
        folded_(prepared.folded_batchnorms),
        plans_(static_cast<size_t>(graph_.node_size())),
        original_nodes_(graph_.node().begin(), graph_.node().end()),
        names_(graph_) {
    for (int i = 0; i < graph_.node_size(); ++i) node_index_[graph_.node(i).name()] = i;
    // Without the engine's view (a model it cannot import), outputs stay at their ops.
    const std::string bytes = prepared.model.SerializeAsString();
    auto fused = engine::FusedOutputs(std::as_bytes(std::span<const char>(bytes)));
    if (fused.ok()) fused_outputs_ = std::move(fused).value();
  }

  Status Run(QuantizeSummary* summary) {
    for (const auto& n : graph_.node()) {
      if (IsQuantizedOp(n.op_type())) {
        return Status::FailedPrecondition("the model is already quantized (" + OpLabel(n) +
                                          "); quantize its FP32 original instead");
      }
    }
    if (!calibration_.tensors.empty()) {
      const std::vector<std::string> observed = index_.ObservedTensors();
      if (std::none_of(observed.begin(), observed.end(), [&](const std::string& t) { return Stats(t) != nullptr; })) {
        return Status::FailedPrecondition("the calibration knows none of this model's tensors; it was made for "
                                          "another model");
      }
    }
    for (int i = 0; i < graph_.node_size(); ++i) DecideComputeNode(i);
    MarkComputeTensors();
    Propagate();
    DropUnreadQuantization();
    PPML_RETURN_IF_ERROR(AssignParameters());
    PPML_RETURN_IF_ERROR(Rewrite());
    if (summary) Summarize(summary);
    return Status::Ok();
  }

 private:
  // ------------------------------------------------------------ decisions

  const TensorStats* Stats(const std::string& t) const { return calibration_.Find(t); }

  // "" when `t` can be quantized as an activation, else why not.
  std::string ActivationProblem(const std::string& t) const {
    if (!index_.IsFloatActivation(t)) return "'" + t + "' is not a float activation";
    if (!Stats(t)) return "no calibration statistics for '" + t + "'";
    return "";
  }

  // A constant FLOAT weight of rank >= `min_rank`; null otherwise.
  const onnx::TensorProto* ConstantFloat(const std::string& t, int min_rank) const {
    const onnx::TensorProto* w = index_.Initializer(t);
    if (!w || w->data_type() != onnx::TensorProto::FLOAT || w->dims_size() < min_rank) return nullptr;
    return w;
  }

  // Whether `t` reaches a graph output through ops that do not compute.
  bool ReachesGraphOutput(const std::string& t) const {
    static const std::set<std::string> kThrough = {"Relu",    "Clip",      "Softmax", "LogSoftmax", "Sigmoid",
                                                   "Identity", "Dropout",  "Flatten", "Reshape",    "Squeeze",
                                                   "Unsqueeze", "Transpose"};
    std::vector<std::string> todo = {t};
    std::set<std::string> seen;
    while (!todo.empty()) {
      const std::string cur = todo.back();
      todo.pop_back();
      if (!seen.insert(cur).second) continue;
      if (index_.IsGraphOutput(cur)) return true;
      for (int c : index_.Consumers(cur)) {
        const auto& n = graph_.node(c);
        if (kThrough.count(n.op_type()) && n.input_size() > 0 && n.input(0) == cur && n.output_size() > 0) {
          todo.push_back(n.output(0));
        }
      }
    }
    return false;
  }

  // The tensor to quantize at a compute node's output: after what the engine
  // folds into the op (engine::FusedOutputs: a bias Add, activations, GELU,
  // x * gate(x)), so that the op writes it in 8 bits and those run on the
  // exact accumulator; for a residual Add, after an activation that is its
  // only reader (the engine folds both into the Conv before the Add). Sets
  // plan.fused_nodes.
  void ChooseOutput(int i, NodePlan& plan) {
    const onnx::NodeProto& n = graph_.node(i);
    plan.output = n.output(0);
    if (index_.IsGraphOutput(plan.output)) return;
    std::vector<int> fused;
    std::string output;
    if (n.op_type() == "Add") {
      const std::vector<int>& readers = index_.Consumers(plan.output);
      if (readers.size() != 1) return;
      const onnx::NodeProto& r = graph_.node(readers[0]);
      if (!engine::FusesActivation(r.op_type()) || r.input(0) != plan.output || r.output_size() != 1) return;
      fused = {readers[0]};
      output = r.output(0);
    } else {
      auto it = fused_outputs_.find(n.name());
      if (it == fused_outputs_.end()) return;
      for (const std::string& name : it->second.nodes) {
        auto node = node_index_.find(name);
        if (node == node_index_.end()) return;
        fused.push_back(node->second);
      }
      output = it->second.tensor;
    }
    for (int f : fused) {
      if (options_.fp32_nodes.count(graph_.node(f).name())) return;
    }
    plan.fused_nodes = std::move(fused);
    plan.output = std::move(output);
  }

  std::string WeightKind() const { return options_.reduce_range ? "7-bit s8 weights" : "s8 weights"; }

  void Fp32(NodePlan& plan, std::string reason) {
    plan.int8 = false;
    plan.reason = std::move(reason);
  }

  void DecideComputeNode(int i) {
    const onnx::NodeProto& n = graph_.node(i);
    NodePlan& plan = plans_[static_cast<size_t>(i)];
    const std::string& op = n.op_type();
    if (op != "Conv" && op != "Gemm" && op != "MatMul" && op != "Add") return;
    plan.kind = NodeKind::kCompute;
    if (options_.fp32_nodes.count(n.name())) return Fp32(plan, "listed in fp32_nodes");
    if (op == "Conv") return DecideConv(n, plan, i);
    if (op == "Gemm") return DecideGemm(n, plan, i);
    if (op == "MatMul") return DecideMatMul(n, plan, i);
    return DecideAdd(n, plan, i);
  }

  void DecideConv(const onnx::NodeProto& n, NodePlan& plan, int i) {
    const onnx::TensorProto* w = n.input_size() > 1 ? ConstantFloat(n.input(1), 3) : nullptr;
    if (!w) return Fp32(plan, "weight is not a constant float tensor");
    const int64_t in_channels = w->dims(1) * IntAttr(n, "group", 1);
    if (options_.keep_first_conv_fp32 && in_channels <= 4) {
      return Fp32(plan, "first conv: input has " + std::to_string(in_channels) + " channel(s) (<= 4), kept FP32 as asked");
    }
    if (std::string p = ActivationProblem(n.input(0)); !p.empty()) return Fp32(plan, p);
    if (n.input_size() > 2 && !n.input(2).empty()) {
      const onnx::TensorProto* b = ConstantFloat(n.input(2), 1);
      if (!b || b->dims_size() != 1 || b->dims(0) != w->dims(0)) return Fp32(plan, "bias is not a constant [O] tensor");
      plan.bias_input = 2;
    }
    plan.int8 = true;
    plan.activation_inputs = {0};
    plan.weight_input = 1;
    plan.weight_axis = 0;
    plan.reason = WeightKind() + " per output channel (axis 0)";
    ChooseOutput(i, plan);
  }

  void DecideGemm(const onnx::NodeProto& n, NodePlan& plan, int i) {
    if (options_.keep_last_fp32 && ReachesGraphOutput(n.output(0))) {
      return Fp32(plan, "last layer: its output reaches a graph output");
    }
    if (IntAttr(n, "transA", 0) != 0) return Fp32(plan, "transA=1 is kept FP32");
    if (FloatAttr(n, "alpha", 1.f) != 1.f) return Fp32(plan, "alpha != 1 is kept FP32");
    const onnx::TensorProto* b = n.input_size() > 1 ? ConstantFloat(n.input(1), 2) : nullptr;
    if (!b || b->dims_size() != 2) return Fp32(plan, "B is not a constant 2-D float tensor");
    const bool trans_b = IntAttr(n, "transB", 0) != 0;
    const int64_t out_features = trans_b ? b->dims(0) : b->dims(1);
    if (n.input_size() > 2 && !n.input(2).empty()) {
      const onnx::TensorProto* c = ConstantFloat(n.input(2), 1);
      if (!c || c->dims_size() != 1 || c->dims(0) != out_features) {
        return Fp32(plan, "C is not a constant [N] bias");
      }
      if (FloatAttr(n, "beta", 1.f) != 1.f) return Fp32(plan, "beta != 1 is kept FP32");
      plan.bias_input = 2;
    }
    if (std::string p = ActivationProblem(n.input(0)); !p.empty()) return Fp32(plan, p);
    plan.int8 = true;
    plan.activation_inputs = {0};
    plan.weight_input = 1;
    plan.weight_axis = trans_b ? 0 : 1;
    plan.reason = WeightKind() + " per output channel (axis " + (trans_b ? "0, transB=1)" : "1)");
    ChooseOutput(i, plan);
  }

  void DecideMatMul(const onnx::NodeProto& n, NodePlan& plan, int i) {
    if (options_.keep_last_fp32 && ReachesGraphOutput(n.output(0))) {
      return Fp32(plan, "last layer: its output reaches a graph output");
    }
    if (std::string p = ActivationProblem(n.input(0)); !p.empty()) return Fp32(plan, p);
    plan.activation_inputs = {0};
    if (const onnx::TensorProto* b = ConstantFloat(n.input(1), 2)) {
      plan.weight_input = 1;
      plan.weight_axis = b->dims_size() - 1;
      plan.reason = WeightKind() + " per output channel (axis " + std::to_string(plan.weight_axis) + ")";
    } else {
      if (std::string p = ActivationProblem(n.input(1)); !p.empty()) return Fp32(plan, p);
      plan.activation_inputs.push_back(1);
      plan.reason = "both operands are activations";
    }
    plan.int8 = true;
    ChooseOutput(i, plan);
  }

  void DecideAdd(const onnx::NodeProto& n, NodePlan& plan, int i) {
    if (n.input_size() != 2) return Fp32(plan, "Add needs two inputs");
    for (int k = 0; k < 2; ++k) {
      if (index_.IsConstant(n.input(k))) return Fp32(plan, "one operand is a constant (not a residual add)");
      if (std::string p = ActivationProblem(n.input(k)); !p.empty()) return Fp32(plan, p);
    }
    plan.int8 = true;
    plan.activation_inputs = {0, 1};
    plan.reason = "residual add of two quantized tensors";
    ChooseOutput(i, plan);
  }

  // ------------------------------------------------------------ marking

  bool Quantized(const std::string& t) const { return quantized_.count(t) > 0; }
  bool HasReaders(const std::string& t) const { return !index_.Consumers(t).empty(); }

  void MarkComputeTensors() {
    for (int i = 0; i < graph_.node_size(); ++i) {
      NodePlan& plan = plans_[static_cast<size_t>(i)];
      if (!plan.int8) continue;
      const onnx::NodeProto& n = graph_.node(i);
      for (int k : plan.activation_inputs) quantized_.insert(n.input(k));
      for (int fused : plan.fused_nodes) {
        NodePlan& act = plans_[static_cast<size_t>(fused)];
        act.kind = NodeKind::kFused;
        act.int8 = true;
        act.reason = "fused into the output of " + OpLabel(n);
      }
      // A graph output with no readers stays FP32: nothing downstream gains.
      if (HasReaders(plan.output) && Stats(plan.output)) quantized_.insert(plan.output);
    }
  }

  // Data-movement ops, pools and Concat keep INT8 flowing; repeat until stable.
  void Propagate() {
    for (bool changed = true; changed;) {
      changed = false;
      for (int i = 0; i < graph_.node_size(); ++i) {
        const onnx::NodeProto& n = graph_.node(i);
        if (options_.fp32_nodes.count(n.name()) || n.input_size() == 0 || n.output_size() == 0) continue;
        const std::string& op = n.op_type();
        const std::string& in = n.input(0);
        const std::string& out = n.output(0);
        if (IsDataMovementOp(op) || op == "AveragePool" || op == "GlobalAveragePool") {
          const bool own_scale = !IsDataMovementOp(op);
          if (Quantized(in) && !Quantized(out) && HasReaders(out) && index_.IsFloatActivation(out) &&
              (!own_scale || Stats(out))) {
            quantized_.insert(out);
            changed = true;
          }
        } else if (op == "Concat") {
          bool any = Quantized(out);
          bool all_ok = Stats(out) != nullptr;
          for (const auto& x : n.input()) {
            any = any || Quantized(x);
            all_ok = all_ok && index_.IsFloatActivation(x) && Stats(x);
          }
          if (!any || !all_ok) continue;
          for (const auto& x : n.input()) changed = quantized_.insert(x).second || changed;
          if (HasReaders(out)) changed = quantized_.insert(out).second || changed;
        }
      }
    }
  }

  // Whether a reader takes `t` in INT8: an INT8 layer as an activation
  // input, or another op the engine computes from the stored bytes (a pool,
  // Concat, Relu, data movement, elementwise arithmetic) whose output stays
  // quantized.
  bool ReadAsInt8(const std::string& t) const {
    for (int r : index_.Consumers(t)) {
      const onnx::NodeProto& n = graph_.node(r);
      const NodePlan& plan = plans_[static_cast<size_t>(r)];
      if (plan.kind == NodeKind::kCompute) {
        if (!plan.int8) continue;
        for (int k : plan.activation_inputs) {
          if (n.input(k) == t) return true;
        }
      } else if (engine::ReadsQuantizedAsStored(n.op_type()) && n.output_size() > 0 && Quantized(n.output(0))) {
        return true;
      }
    }
    return false;
  }

  // A tensor quantized for no INT8 reader would only be rounded and read
  // back as float (an INT8 MatMul's scores before a float Add and Softmax):
  // it stays float, and the op before it writes float. Repeat until stable.
  void DropUnreadQuantization() {
    for (bool changed = true; changed;) {
      changed = false;
      for (auto it = quantized_.begin(); it != quantized_.end();) {
        if (ReadAsInt8(*it)) {
          ++it;
        } else {
          it = quantized_.erase(it);
          changed = true;
        }
      }
    }
  }

  // ------------------------------------------------------- parameters

  std::string Find(const std::string& t) {
    auto it = parent_.find(t);
    if (it == parent_.end() || it->second == t) return t;
    const std::string root = Find(it->second);
    parent_[t] = root;
    return root;
  }
  void Union(const std::string& a, const std::string& b) {
    const std::string ra = Find(a), rb = Find(b);
    if (ra != rb) parent_[rb] = ra;
  }

  Status AssignParameters() {
    for (const auto& n : graph_.node()) {
      if (n.input_size() == 0 || n.output_size() == 0 || options_.fp32_nodes.count(n.name())) continue;
      if (IsDataMovementOp(n.op_type()) && Quantized(n.input(0)) && Quantized(n.output(0))) {
        Union(n.input(0), n.output(0));
      } else if (n.op_type() == "Concat" && Quantized(n.input(0))) {
        // Propagate quantized every input of an INT8 Concat (and its output when read).
        for (const auto& x : n.input()) Union(n.input(0), x);
        if (Quantized(n.output(0))) Union(n.input(0), n.output(0));
      }
    }
    struct Group {
      float threshold = 0;
      bool non_negative = true;
      bool calibrated = false;
    };
    std::map<std::string, Group> groups;
    for (const std::string& t : quantized_) {
      Group& g = groups[Find(t)];
      g.non_negative = g.non_negative && index_.IsNonNegative(t);
      if (const TensorStats* s = Stats(t)) {
        g.threshold = std::max(g.threshold, s->threshold);
        g.calibrated = true;
      }
    }
    for (const std::string& t : quantized_) {
      const Group& g = groups[Find(t)];
      if (!g.calibrated) return Status::Internal("quantize: no calibrated member in the scale group of '" + t + "'");
      params_[t] = ActivationParams(g.threshold, g.non_negative);
      group_threshold_[t] = g.threshold;
    }
    return Status::Ok();
  }

  // ------------------------------------------------------------ rewrite

  // X -> X_QuantizeLinear -> X_DequantizeLinear; returns the DQ output.
  void EmitActivationQdq(const std::string& x, std::vector<onnx::NodeProto>* out) {
    const ActivationQuantization& p = params_.at(x);
    const std::string scale = names_.Take(x + "_scale");
    const std::string zero_point = names_.Take(x + "_zero_point");
    const float s[] = {p.scale};
    *graph_.add_initializer() = MakeFloatTensor(scale, {}, s);
    if (p.type == DataType::kU8) {
      const uint8_t z[] = {static_cast<uint8_t>(p.zero_point)};
      *graph_.add_initializer() = MakeUint8Tensor(zero_point, {}, z);
    } else {
      const int8_t z[] = {static_cast<int8_t>(p.zero_point)};
      *graph_.add_initializer() = MakeInt8Tensor(zero_point, {}, z);
    }
    const std::string q_out = names_.Take(x + "_QuantizeLinear_Output");
    const std::string dq_out = names_.Take(x + "_DequantizeLinear_Output");
    out->push_back(engine::MakeOnnxNode("QuantizeLinear", names_.Take(x + "_QuantizeLinear"), {x, scale, zero_point}, q_out));
    out->push_back(engine::MakeOnnxNode("DequantizeLinear", names_.Take(x + "_DequantizeLinear"), {q_out, scale, zero_point}, dq_out));
    dequantized_[x] = dq_out;
    ++quantized_tensors_;
  }

  // W -> W_quantized (int8, per channel) -> DequantizeLinear; returns the DQ
  // output. Scales go to *scales for the bias.
  Result<std::string> EmitWeight(const std::string& w_name, int axis, std::vector<onnx::NodeProto>* out,
                                 std::vector<float>* scales) {
    const auto key = std::make_pair(w_name, axis);
    if (auto it = weights_.find(key); it != weights_.end()) {
      *scales = it->second.second;
      return it->second.first;
    }
    const onnx::TensorProto* w = index_.Initializer(w_name);
    PPML_ASSIGN_OR_RETURN(std::vector<float> values, FloatValues(*w));
    const Shape dims = DimsOf(*w);
    const int qmax = options_.reduce_range ? 63 : 127;
    *scales = PerChannelScales(values, dims, axis, qmax);
    const std::vector<int8_t> q = QuantizePerChannel(values, dims, axis, *scales, qmax);
    const std::vector<int8_t> zeros(scales->size(), 0);
    const std::string q_name = names_.Take(w_name + "_quantized");
    const std::string scale = names_.Take(w_name + "_scale");
    const std::string zero_point = names_.Take(w_name + "_zero_point");
    *graph_.add_initializer() = MakeInt8Tensor(q_name, dims, q);
    *graph_.add_initializer() = MakeFloatTensor(scale, {static_cast<int64_t>(scales->size())}, *scales);
    *graph_.add_initializer() = MakeInt8Tensor(zero_point, {static_cast<int64_t>(zeros.size())}, zeros);
    const std::string dq_out = names_.Take(w_name + "_DequantizeLinear_Output");
    onnx::NodeProto dq = engine::MakeOnnxNode("DequantizeLinear", names_.Take(w_name + "_DequantizeLinear"), {q_name, scale, zero_point},
                                  dq_out);
    engine::SetIntAttribute(dq, "axis", axis);
    out->push_back(std::move(dq));
    weights_[key] = {dq_out, *scales};
    ++quantized_weights_;
    return dq_out;
  }

  // B -> B_quantized (int32 = round(b / (s_x * s_w[c]))) -> DequantizeLinear(axis 0).
  Result<std::string> EmitBias(const std::string& b_name, float input_scale, const std::vector<float>& weight_scales,
                               std::vector<onnx::NodeProto>* out) {
    const onnx::TensorProto* b = index_.Initializer(b_name);
    PPML_ASSIGN_OR_RETURN(std::vector<float> values, FloatValues(*b));
    if (values.size() != weight_scales.size()) {
      return Status::InvalidArgument("bias '" + b_name + "' has " + std::to_string(values.size()) + " values for " +
                                     std::to_string(weight_scales.size()) + " output channels");
    }
    std::vector<float> scales(values.size());
    std::vector<int32_t> q(values.size());
    for (size_t c = 0; c < values.size(); ++c) {
      scales[c] = input_scale * weight_scales[c];
      q[c] = QuantizeValue(values[c], scales[c], 0, DataType::kS32);
    }
    const std::vector<int32_t> zeros(values.size(), 0);
    const Shape dims = {static_cast<int64_t>(values.size())};
    const std::string q_name = names_.Take(b_name + "_quantized");
    const std::string scale = names_.Take(q_name + "_scale");
    const std::string zero_point = names_.Take(q_name + "_zero_point");
    *graph_.add_initializer() = MakeInt32Tensor(q_name, dims, q);
    *graph_.add_initializer() = MakeFloatTensor(scale, dims, scales);
    *graph_.add_initializer() = MakeInt32Tensor(zero_point, dims, zeros);
    const std::string dq_out = names_.Take(q_name + "_DequantizeLinear_Output");
    onnx::NodeProto dq = engine::MakeOnnxNode("DequantizeLinear", names_.Take(q_name + "_DequantizeLinear"), {q_name, scale, zero_point},
                                  dq_out);
    engine::SetIntAttribute(dq, "axis", 0);
    out->push_back(std::move(dq));
    return dq_out;
  }

  Status Rewrite() {
    std::vector<onnx::NodeProto> nodes;
    // Graph inputs first: their Q/DQ must precede every reader.
    for (const auto& in : graph_.input()) {
      if (Quantized(in.name())) EmitActivationQdq(in.name(), &nodes);
    }
    for (int i = 0; i < graph_.node_size(); ++i) {
      onnx::NodeProto node = graph_.node(i);
      const NodePlan& plan = plans_[static_cast<size_t>(i)];
      for (int k = 0; k < node.input_size(); ++k) {
        auto it = dequantized_.find(node.input(k));
        if (it != dequantized_.end()) node.set_input(k, it->second);
      }
      if (plan.int8 && plan.kind == NodeKind::kCompute && plan.weight_input >= 0) {
        std::vector<float> w_scales;
        PPML_ASSIGN_OR_RETURN(std::string w_dq,
                              EmitWeight(graph_.node(i).input(plan.weight_input), plan.weight_axis, &nodes, &w_scales));
        node.set_input(plan.weight_input, w_dq);
        if (plan.bias_input >= 0) {
          const float input_scale = params_.at(graph_.node(i).input(0)).scale;
          PPML_ASSIGN_OR_RETURN(std::string b_dq,
                                EmitBias(graph_.node(i).input(plan.bias_input), input_scale, w_scales, &nodes));
          node.set_input(plan.bias_input, b_dq);
        }
      }
      nodes.push_back(std::move(node));
      for (const auto& out : graph_.node(i).output()) {
        if (!out.empty() && Quantized(out)) EmitActivationQdq(out, &nodes);
      }
    }
    graph_.clear_node();
    for (auto& n : nodes) *graph_.add_node() = std::move(n);
    return Status::Ok();
  }

  // ------------------------------------------------------------ summary

  std::string TypeOf(const std::string& t) const {
    auto it = params_.find(t);
    if (it == params_.end()) return "f32";
    return it->second.type == DataType::kU8 ? "u8" : "s8";
  }

  void DescribeOther(const onnx::NodeProto& n, NodeQuantization& row) {
    const std::string& op = n.op_type();
    const bool in_q = n.input_size() > 0 && Quantized(n.input(0));
    const bool out_q = n.output_size() > 0 && Quantized(n.output(0));
    if (op == "Softmax" || op == "LogSoftmax") {
      row.precision = "fp32";
      row.reason = "softmax always FP32";
    } else if (options_.fp32_nodes.count(n.name())) {
      row.precision = "fp32";
      row.reason = "listed in fp32_nodes";
    } else if ((IsDataMovementOp(op) || op == "Concat") && in_q && out_q) {
      row.precision = "int8";
      row.reason = op == "Concat" ? "inputs and output share one scale (largest threshold)"
                                  : "INT8 passes through, sharing its input's scale";
    } else if ((op == "AveragePool" || op == "GlobalAveragePool") && in_q && out_q) {
      row.precision = "int8";
      row.reason = "INT8 pooling with its own output scale";
    } else if (in_q && out_q) {
      row.precision = "int8";
      row.reason = "input and output quantized";
    } else {
      row.precision = "fp32";
      row.reason = in_q ? "reads the dequantized input" : "input not quantized";
    }
  }

  void Summarize(QuantizeSummary* summary) {
    summary->nodes.clear();
    summary->method = calibration_.method;
    summary->folded_batchnorms = static_cast<int>(folded_.size());
    std::map<std::string, std::string> folded_into;  // conv -> bn
    for (const auto& [bn, conv] : folded_) folded_into[conv] = bn;
    for (size_t i = 0; i < original_nodes_.size(); ++i) {
      const onnx::NodeProto& n = original_nodes_[i];
      const NodePlan& plan = plans_[i];
      NodeQuantization row;
      row.name = n.name();
      row.op = n.op_type();
      for (const auto& in : n.input()) {
        if (index_.IsFloatActivation(in)) {
          row.input = in;
          break;
        }
      }
      if (!row.input.empty()) {
        row.input_type = TypeOf(row.input);
        if (auto it = group_threshold_.find(row.input); it != group_threshold_.end()) {
          row.input_threshold = it->second;
        } else if (const TensorStats* s = Stats(row.input)) {
          row.input_threshold = s->threshold;
        }
      }
      if (plan.kind == NodeKind::kCompute || plan.kind == NodeKind::kFused) {
        row.precision = plan.int8 ? "int8" : "fp32";
        row.reason = plan.reason;
        if (plan.kind == NodeKind::kCompute && plan.int8 && !plan.fused_nodes.empty()) {
          row.reason += ", output after its";
          for (int fused : plan.fused_nodes) row.reason += " " + original_nodes_[static_cast<size_t>(fused)].op_type();
        }
      } else {
        DescribeOther(n, row);
      }
      (row.precision == "int8" ? summary->int8_nodes : summary->fp32_nodes) += 1;
      summary->nodes.push_back(row);
      if (auto it = folded_into.find(n.name()); it != folded_into.end()) {
        NodeQuantization bn;
        bn.name = it->second;
        bn.op = "BatchNormalization";
        bn.precision = "folded";
        bn.reason = "folded into Conv '" + n.name() + "'";
        summary->nodes.push_back(bn);
      }
    }
    summary->quantized_tensors = quantized_tensors_;
    summary->quantized_weights = quantized_weights_;
  }

 private:
  onnx::GraphProto& graph_;
  GraphIndex index_;
  const Calibration& calibration_;
  const QuantizeOptions& options_;
  const std::vector<std::pair<std::string, std::string>>& folded_;
  std::vector<NodePlan> plans_;
  std::vector<onnx::NodeProto> original_nodes_;
  engine::FreshNames names_;  // for the Q/DQ nodes and parameters added
  std::map<std::string, int> node_index_;
  std::map<std::string, engine::FusedOutput> fused_outputs_;
  std::set<std::string> quantized_;
  std::map<std::string, std::string> parent_;
  std::map<std::string, ActivationQuantization> params_;
  std::map<std::string, float> group_threshold_;
  std::map<std::string, std::string> dequantized_;  // X -> X_DequantizeLinear_Output
  std::map<std::pair<std::string, int>, std::pair<std::string, std::vector<float>>> weights_;
  int quantized_tensors_ = 0;
  int quantized_weights_ = 0;
};

}  // namespace

Result<std::string> QuantizeToQdq(std::string_view onnx_bytes, const Calibration& calibration,
                                  const QuantizeOptions& options, QuantizeSummary* summary) {
  PPML_ASSIGN_OR_RETURN(PreparedModel prepared, PrepareModel(onnx_bytes));
  try {
    QdqRewriter rewriter(prepared, calibration, options);
    PPML_RETURN_IF_ERROR(rewriter.Run(summary).WithContext("quantize"));
  } catch (const std::exception& e) {  // a broken invariant of ours; never let it cross the API
    return Status::Internal(std::string("quantize: ") + e.what());
  }
  onnx::GraphProto* graph = prepared.model.mutable_graph();
  RemoveUnusedInitializers(graph);
  std::string bytes;
  if (!prepared.model.SerializeToString(&bytes)) return Status::Internal("quantize: cannot serialize the QDQ model");
  return bytes;
}

Result<QuantizedModel> QuantizeModel(std::string_view fp32_onnx_bytes, const std::string& calibration_spec,
                                     CalibrationMethod method, const QuantizeOptions& options,
                                     const CalibrateOptions& calibrate_options) {
  PPML_ASSIGN_OR_RETURN(ModelInput input, ModelInputOf(fp32_onnx_bytes));
  PPML_ASSIGN_OR_RETURN(CalibrationSet set, LoadCalibrationSet(calibration_spec, input.shape, input.dtype));
  QuantizedModel out;
  PPML_ASSIGN_OR_RETURN(out.calibration, Calibrate(fp32_onnx_bytes, set, method, calibrate_options));
  PPML_ASSIGN_OR_RETURN(out.onnx_bytes, QuantizeToQdq(fp32_onnx_bytes, out.calibration, options, &out.summary));
  return out;
}

}  // namespace ppml::int8
