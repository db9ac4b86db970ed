#include "engine/passes.h"

#include "engine/engine.h"
#include "engine/memory.h"
#include "engine/op_util.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace ppml::engine {
namespace {

// Index of the node producing each value.
std::map<std::string, int> Producers(const Graph& graph) {
  std::map<std::string, int> producers;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const auto& out : graph.nodes[i].outputs) producers[out] = static_cast<int>(i);
  }
  return producers;
}

bool IsGraphOutput(const Graph& graph, const std::string& value) {
  for (const auto& out : graph.outputs) {
    if (out.name == value) return true;
  }
  return false;
}

// The single node reading `value`, or -1.
int SoleConsumer(const Graph& graph, const std::string& value) {
  if (IsGraphOutput(graph, value)) return -1;
  int consumer = -1;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& n = graph.nodes[i];
    int reads = 0;
    for (const auto& in : n.inputs) reads += in == value;
    reads += n.fused_sum_input == value;
    if (reads == 0) continue;
    if (consumer >= 0 || reads > 1) return -1;
    consumer = static_cast<int>(i);
  }
  return consumer;
}

bool AllConstant(const Graph& graph, const Node& node, size_t first, size_t count) {
  for (size_t i = first; i < first + count; ++i) {
    if (i >= node.inputs.size() || !graph.IsConstant(node.inputs[i])) return false;
  }
  return true;
}

std::string FreshName(const Graph& graph, const std::string& base) {
  std::string name = base;
  for (int i = 1; graph.IsConstant(name); ++i) name = base + "_" + std::to_string(i);
  return name;
}

// The activation a node applies, as a fused eltwise; false when it is not one.
bool AsEltwise(const Graph& graph, const Node& n, FusedEltwise* out) {
  static const std::set<std::string> kSimple = {"Relu", "Sigmoid", "Tanh", "HardSwish"};
  if (kSimple.count(n.op_type)) {
    *out = {n.op_type, 0.f, 0.f};
    return n.inputs.size() == 1;
  }
  if (n.op_type == "LeakyRelu") {
    *out = {n.op_type, n.Float("alpha", 0.01f), 0.f};
    return true;
  }
  if (n.op_type == "Swish") {
    *out = {n.op_type, n.Float("alpha", 1.f), 0.f};
    return true;
  }
  if (n.op_type == "Gelu") {
    const std::string approximate = n.String("approximate", "none");
    *out = {n.op_type, approximate == "tanh" ? 1.f : 0.f, 0.f};
    return approximate == "none" || approximate == "tanh";
  }
  if (n.op_type == "HardSigmoid") {
    *out = {n.op_type, n.Float("alpha", 0.2f), n.Float("beta", 0.5f)};
    return true;
  }
  if (n.op_type == "Clip") {
    float lo = -INFINITY, hi = INFINITY;
    if (n.opset < 11) {
      lo = n.Float("min", lo);
      hi = n.Float("max", hi);
    } else {
      for (size_t i = 1; i < 3 && i < n.inputs.size(); ++i) {
        if (n.inputs[i].empty()) continue;
        const auto t = graph.Constant(n.inputs[i]);
        if (!t || t->dtype() != DataType::kF32 || t->element_count() != 1) return false;
        (i == 1 ? lo : hi) = t->data<float>()[0];
      }
    }
    *out = {n.op_type, lo, hi};
    return true;
  }
  return false;
}

// A scalar constant as (value, element type); false when not a constant scalar.
bool ScalarConstant(const Graph& graph, const std::string& name, double* value, DataType* type) {
  const auto t = graph.Constant(name);
  if (!t || t->element_count() != 1) return false;
  *type = t->dtype();
  *value = t->ElementAsDouble(0);
  return true;
}

// Every node reading `value`.
std::vector<int> Consumers(const Graph& graph, const std::string& value) {
  std::vector<int> readers;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& n = graph.nodes[i];
    if (std::count(n.inputs.begin(), n.inputs.end(), value) || n.fused_sum_input == value) {
      readers.push_back(static_cast<int>(i));
    }
  }
  return readers;
}

// The sole reader of `value` when it is a single-output `op`; -1 otherwise.
int SoleConsumerOp(const Graph& graph, const std::string& value, const std::string& op) {
  const int c = SoleConsumer(graph, value);
  return c >= 0 && graph.nodes[c].op_type == op && graph.nodes[c].outputs.size() == 1 ? c : -1;
}

// The other input of a two-input node that reads `value` once; "" otherwise.
std::string OtherInput(const Node& n, const std::string& value) {
  if (n.inputs.size() != 2 || n.inputs[0] == n.inputs[1]) return "";
  if (n.inputs[0] == value) return n.inputs[1];
  if (n.inputs[1] == value) return n.inputs[0];
  return "";
}

bool FloatScalarNear(const Graph& graph, const std::string& name, double want) {
  double value;
  DataType type;
  return ScalarConstant(graph, name, &value, &type) && type == DataType::kF32 &&
         std::abs(value - want) <= 1e-5 * std::max(1.0, std::abs(want));
}

// Axes of a ReduceMean with kept dimensions that are the last `-*first` ones,
// written negative (the rank is not known before planning).
bool TrailingAxes(const Graph& graph, const Node& reduce, int64_t* first) {
  if (reduce.Int("keepdims", 1) == 0) return false;
  std::vector<int64_t> axes = reduce.Ints("axes");
  if (reduce.opset >= 18) {
    const auto t = graph.Constant(reduce.Input(1));
    if (!t || t->dtype() != DataType::kS64) return false;
    axes.assign(t->data<int64_t>(), t->data<int64_t>() + t->element_count());
  }
  std::sort(axes.begin(), axes.end());
  for (size_t i = 0; i < axes.size(); ++i) {
    if (axes[i] != -static_cast<int64_t>(axes.size() - i)) return false;
  }
  if (axes.empty()) return false;
  *first = axes[0];
  return true;
}

// The constant a binary `op` node applies to `value` when it holds one float
// per element of the last `dims` dimensions (leading 1s aside, no dimension
// of 1, so that it cannot broadcast any other way).
std::string PerElementOperand(const Graph& graph, const Node& n, const std::string& value, int64_t dims) {
  const std::string other = OtherInput(n, value);
  DataType type;
  Shape shape;
  if (other.empty() || !graph.ConstantInfo(other, &type, &shape) || type != DataType::kF32) return "";
  const Shape trailing = WithoutLeadingOnes(shape);
  if (static_cast<int64_t>(trailing.size()) != dims) return "";
  for (int64_t d : trailing) {
    if (d <= 1) return "";
  }
  return other;
}

// Whether `add` adds a constant with one float per output column to the
// result of `product`, a MatMul or Gemm with 2-D constant weights and no bias yet.
bool AddsRowBias(const Graph& graph, const Node& product, const Node& add) {
  if (product.inputs.size() != 2 || (product.op_type != "MatMul" && product.op_type != "Gemm")) return false;
  if (product.op_type == "Gemm" && product.Float("beta", 1.f) != 1.f) return false;
  DataType type;
  Shape w_shape;
  std::string weights = product.inputs[1];
  if (auto q = graph.quantized_constants.find(weights); q != graph.quantized_constants.end()) weights = q->second.values;
  if (!graph.ConstantInfo(weights, &type, &w_shape) || w_shape.size() != 2) return false;
  const int64_t columns = product.op_type == "Gemm" && product.Int("transB", 0) != 0 ? w_shape[0] : w_shape[1];
  const std::string bias = PerElementOperand(graph, add, product.outputs[0], 1);
  Shape bias_shape;
  return !bias.empty() && graph.ConstantInfo(bias, &type, &bias_shape) && ElementCount(bias_shape) == columns;
}

// `into` takes `node`'s place in the graph: its output and the nodes it had absorbed.
void Absorb(Node& into, Node& node) {
  into.outputs[0] = node.outputs[0];
  into.absorbed.insert(into.absorbed.end(), node.absorbed.begin(), node.absorbed.end());
  into.absorbed.push_back(node.name);
}

void RemoveNodes(Graph& graph, const std::set<int>& dead) {
  std::vector<Node> kept;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (!dead.count(static_cast<int>(i))) kept.push_back(std::move(graph.nodes[i]));
  }
  graph.nodes = std::move(kept);
}

// Per-tensor quantization parameters of a Q or DQ node; false unless both are constant scalars.
bool ScalarQuantParams(const Graph& graph, const Node& n, QuantParams* q) {
  double scale, zero = 0;
  DataType type, zero_type = DataType::kU8;
  if (!ScalarConstant(graph, n.Input(1), &scale, &type) || type != DataType::kF32 || !(scale > 0)) return false;
  if (!n.Input(2).empty() && !ScalarConstant(graph, n.Input(2), &zero, &zero_type)) return false;
  if (zero_type != DataType::kU8 && zero_type != DataType::kS8) return false;
  *q = {static_cast<float>(scale), static_cast<int32_t>(zero), zero_type};
  return true;
}

void RenameReaders(Graph& graph, const std::string& from, const std::string& to) {
  for (Node& n : graph.nodes) {
    for (std::string& in : n.inputs) {
      if (in == from) in = to;
    }
  }
}

Node MakeNode(const std::string& op, const std::string& name, std::vector<std::string> inputs,
              std::vector<std::string> outputs, int opset) {
  Node n;
  n.op_type = op;
  n.name = name;
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  n.opset = opset;
  return n;
}

// The nodes of a matched pattern become one `op` node in the place (name,
// output) of the last of them, `last`; the others die. `inputs` is taken
// by value: it may name values of the nodes being replaced.
Node& ReplacePattern(Graph& graph, std::set<int> matched, int last, const std::string& op,
                     std::vector<std::string> inputs, int opset, std::set<int>* dead) {
  std::vector<std::string> absorbed;
  for (int m : matched) {
    if (m != last) absorbed.push_back(graph.nodes[m].name);
  }
  graph.nodes[last] = MakeNode(op, graph.nodes[last].name, std::move(inputs), {graph.nodes[last].outputs[0]}, opset);
  graph.nodes[last].absorbed = std::move(absorbed);
  matched.erase(last);
  dead->insert(matched.begin(), matched.end());
  return graph.nodes[last];
}

// A gate `op` read as x * op(x) that is one activation: HardSigmoid with
// HardSwish's constants, or Sigmoid (SiLU).
bool FusesGatedActivation(const std::string& op, float alpha, float beta) {
  return op == "Sigmoid" || (op == "HardSigmoid" && std::abs(alpha - 1.0 / 6) <= 1e-6 && beta == 0.5f);
}

}  // namespace

bool FusesActivation(const std::string& op) {
  const Graph no_constants;
  Node node;
  node.op_type = op;
  node.inputs = {"x"};
  FusedEltwise eltwise;
  return AsEltwise(no_constants, node, &eltwise);
}

Status DecomposeQLinearOps(Graph& graph) {
  std::vector<Node> rewritten;
  int counter = 0;
  for (Node& n : graph.nodes) {
    const bool qlinear = n.op_type == "QLinearConv" || n.op_type == "QLinearMatMul";
    const bool integer = n.op_type == "ConvInteger" || n.op_type == "MatMulInteger";
    if (!qlinear && !integer) {
      rewritten.push_back(std::move(n));
      continue;
    }
    const bool conv = n.op_type == "QLinearConv" || n.op_type == "ConvInteger";
    auto fresh = [&](const std::string& what) { return n.name + "/" + what + std::to_string(counter++); };
    // Inputs: QLinear*: x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp[, B]; *Integer: x, w, x_zp, w_zp.
    std::string x = n.Input(0), w = qlinear ? n.Input(3) : n.Input(1);
    std::string x_scale = qlinear ? n.Input(1) : "", x_zp = qlinear ? n.Input(2) : n.Input(2);
    std::string w_scale = qlinear ? n.Input(4) : "", w_zp = qlinear ? n.Input(5) : n.Input(3);
    if (integer) {  // integer products: unit scales, the result cast to int32
      x_scale = w_scale = fresh("unit_scale");
      graph.SetConstant(x_scale, Tensor::FromVector<float>({}, {1.f}));
    }
    const std::string xf = fresh("x_float"), wf = fresh("w_float"), yf = fresh("y_float");
    rewritten.push_back(MakeNode("DequantizeLinear", fresh("dq_x"), {x, x_scale, x_zp}, {xf}, 13));
    Node dq_w = MakeNode("DequantizeLinear", fresh("dq_w"), {w, w_scale, w_zp}, {wf}, 13);
    // Per-channel weights: output channels are axis 0 of conv weights, axis 1 (columns) of a matrix.
    dq_w.attributes["axis"].value = int64_t{conv ? 0 : 1};
    rewritten.push_back(std::move(dq_w));
    Node op = MakeNode(conv ? "Conv" : "MatMul", n.name, {xf, wf}, {yf}, n.opset);
    if (conv) op.attributes = n.attributes;
    if (n.op_type == "QLinearConv" && !n.Input(8).empty()) {
      // The int32 bias is quantized with x_scale * w_scale; both must be constants.
      const auto xs = graph.Constant(x_scale);
      const auto ws = graph.Constant(w_scale);
      if (!xs || !ws) return Status::Unsupported(n.Describe() + ": run-time scales with a bias");
      Tensor bias_scale(DataType::kF32, {ws->element_count()});
      for (int64_t i = 0; i < ws->element_count(); ++i) {
        bias_scale.data<float>()[i] = xs->data<float>()[0] * ws->data<float>()[i];
      }
      const std::string bs = fresh("bias_scale"), bf = fresh("bias_float");
      graph.SetConstant(bs, std::move(bias_scale));
      Node dq_b = MakeNode("DequantizeLinear", fresh("dq_b"), {n.Input(8), bs}, {bf}, 13);
      dq_b.attributes["axis"].value = int64_t{0};
      rewritten.push_back(std::move(dq_b));
      op.inputs.push_back(bf);
    }
    rewritten.push_back(std::move(op));
    if (qlinear) {
      rewritten.push_back(MakeNode("QuantizeLinear", fresh("q_y"), {yf, n.Input(6), n.Input(7)}, {n.outputs[0]}, 13));
    } else {
      Node cast = MakeNode("Cast", fresh("to_int32"), {yf}, {n.outputs[0]}, 13);
      cast.attributes["to"].value = int64_t{6};  // INT32
      rewritten.push_back(std::move(cast));
    }
  }
  graph.nodes = std::move(rewritten);
  return Status::Ok();
}

Status CollapseQdqPairs(Graph& graph) {
  // Integer constants behind DequantizeLinear: the INT8 kernels read them directly.
  for (const Node& n : graph.nodes) {
    if (n.op_type != "DequantizeLinear") continue;
    DataType values_type;
    Shape values_shape;
    const auto scales = graph.Constant(n.Input(1));
    if (!graph.ConstantInfo(n.Input(0), &values_type, &values_shape) || !scales || scales->dtype() != DataType::kF32) {
      continue;
    }
    if (values_type != DataType::kS8 && values_type != DataType::kU8 && values_type != DataType::kS32) continue;
    QuantizedConstant q;
    q.values = n.Input(0);
    q.dtype = values_type;
    q.scales.assign(scales->data<float>(), scales->data<float>() + scales->element_count());
    q.zero_points.assign(q.scales.size(), 0);
    if (const auto zp = graph.Constant(n.Input(2))) {
      if (zp->element_count() != scales->element_count()) continue;
      for (int64_t i = 0; i < zp->element_count(); ++i) q.zero_points[i] = static_cast<int32_t>(zp->ElementAsDouble(i));
    } else if (!n.Input(2).empty()) {
      continue;
    }
    q.axis = n.Int("axis", 1);
    if (q.axis < 0) q.axis += static_cast<int64_t>(values_shape.size());
    graph.quantized_constants[n.outputs[0]] = std::move(q);
  }

  std::set<int> dead;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& q = graph.nodes[i];
    if (q.op_type != "QuantizeLinear" || q.outputs.size() != 1 || graph.IsConstant(q.Input(0))) continue;
    QuantParams params;
    if (!ScalarQuantParams(graph, q, &params)) continue;
    const std::string& x = q.Input(0);
    const std::string& xq = q.outputs[0];
    if (IsGraphOutput(graph, xq) || graph.activation_quant.count(x)) continue;
    std::vector<int> readers;
    bool collapsible = true;
    for (size_t j = 0; j < graph.nodes.size() && collapsible; ++j) {
      const Node& r = graph.nodes[j];
      if (std::find(r.inputs.begin(), r.inputs.end(), xq) == r.inputs.end()) continue;
      QuantParams dq_params;
      collapsible = r.op_type == "DequantizeLinear" && r.Input(0) == xq && ScalarQuantParams(graph, r, &dq_params) &&
                    dq_params == params && !IsGraphOutput(graph, r.outputs[0]);
      readers.push_back(static_cast<int>(j));
    }
    if (!collapsible || readers.empty()) continue;
    for (int r : readers) {
      RenameReaders(graph, graph.nodes[r].outputs[0], x);
      dead.insert(r);
    }
    dead.insert(static_cast<int>(i));
    graph.activation_quant[x] = params;
  }
  RemoveNodes(graph, dead);
  return Status::Ok();
}

Status PropagateConstantIdentities(Graph& graph) {
  std::set<int> dead;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& n = graph.nodes[i];
    if ((n.op_type != "Identity" && n.op_type != "Dropout") || n.outputs.size() != 1) continue;
    if (!graph.IsConstant(n.Input(0))) continue;
    graph.AliasConstant(n.outputs[0], n.Input(0));
    dead.insert(static_cast<int>(i));
  }
  RemoveNodes(graph, dead);
  return Status::Ok();
}

Status HoistConstantNodes(Graph& graph) {
  std::set<std::string> computed;  // outputs of the nodes hoisted so far
  std::vector<Node> hoisted, rest;
  for (Node& n : graph.nodes) {
    const bool from_constants =
        n.fused_sum_input.empty() && std::all_of(n.inputs.begin(), n.inputs.end(), [&](const std::string& in) {
          return in.empty() || graph.IsConstant(in) || computed.count(in);
        });
    if (from_constants) computed.insert(n.outputs.begin(), n.outputs.end());
    (from_constants ? hoisted : rest).push_back(std::move(n));
  }
  graph.nodes = std::move(hoisted);
  graph.nodes.insert(graph.nodes.end(), std::make_move_iterator(rest.begin()), std::make_move_iterator(rest.end()));
  return Status::Ok();
}

Status FoldBatchNorms(Graph& graph, PassStats* stats) {
  std::set<int> dead;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& conv = graph.nodes[i];
    if (conv.op_type != "Conv" || conv.outputs.size() != 1 || conv.inputs.size() < 2) continue;
    if (!AllConstant(graph, conv, 1, conv.inputs.size() - 1)) continue;
    const int b = SoleConsumer(graph, conv.outputs[0]);
    if (b < 0) continue;
    Node& bn = graph.nodes[b];
    if (bn.op_type != "BatchNormalization" || bn.outputs.size() != 1 || bn.Input(0) != conv.outputs[0]) continue;
    if (bn.Int("training_mode", 0) != 0 || !AllConstant(graph, bn, 1, 4)) continue;
    DataType w_type;
    Shape w_shape;
    graph.ConstantInfo(conv.inputs[1], &w_type, &w_shape);
    if (w_type != DataType::kF32 || w_shape.size() < 3) continue;
    const int64_t out_channels = w_shape[0];
    std::shared_ptr<const Tensor> params[4];
    bool shapes_ok = true;
    for (int k = 0; k < 4; ++k) {
      params[k] = graph.Constant(bn.inputs[k + 1]);
      shapes_ok = shapes_ok && params[k]->dtype() == DataType::kF32 && params[k]->element_count() == out_channels;
    }
    if (!shapes_ok) continue;
    const float eps = bn.Float("epsilon", 1e-5f);
    const float* gamma = params[0]->data<float>();
    const float* beta = params[1]->data<float>();
    const float* mean = params[2]->data<float>();
    const float* var = params[3]->data<float>();

    // An offloaded weight comes back as a private, accounted copy: fold it in
    // place (its reservation lasts as long as `fetched`). A resident one is
    // shared: fold a copy.
    const std::shared_ptr<const Tensor> fetched = graph.Constant(conv.inputs[1]);
    Reservation folding;
    Tensor new_w;
    if (graph.offloaded.count(conv.inputs[1])) {
      new_w = std::move(*std::const_pointer_cast<Tensor>(fetched));
    } else {
      folding = ReserveOrThrow(graph.env.budget, fetched->byte_size(), "folding " + conv.name);
      new_w = fetched->Clone();
    }
    Tensor new_b(DataType::kF32, {out_channels});
    const auto old_b = conv.inputs.size() > 2 && !conv.inputs[2].empty() ? graph.Constant(conv.inputs[2]) : nullptr;
    const int64_t per_channel = new_w.element_count() / out_channels;
    for (int64_t c = 0; c < out_channels; ++c) {
      const float scale = gamma[c] / std::sqrt(var[c] + eps);
      float* wc = new_w.data<float>() + c * per_channel;
      for (int64_t k = 0; k < per_channel; ++k) wc[k] *= scale;
      const float bias = old_b ? old_b->data<float>()[c] : 0.f;
      new_b.data<float>()[c] = (bias - mean[c]) * scale + beta[c];
    }
    const std::string w_name = FreshName(graph, conv.name + "/folded_weight");
    graph.SetConstant(w_name, std::move(new_w));
    const std::string b_name = FreshName(graph, conv.name + "/folded_bias");
    graph.SetConstant(b_name, std::move(new_b));
    conv.inputs.resize(3);
    conv.inputs[1] = w_name;
    conv.inputs[2] = b_name;
    Absorb(conv, bn);
    dead.insert(b);
    ++stats->folded_batchnorms;
  }
  RemoveNodes(graph, dead);
  // Drop constants no node reads any more (the unfolded weights).
  std::set<std::string> used;
  for (const Node& n : graph.nodes) used.insert(n.inputs.begin(), n.inputs.end());
  for (const auto& out : graph.outputs) used.insert(out.name);
  std::vector<std::string> unused;
  for (const auto& [name, t] : graph.constants) {
    if (!used.count(name)) unused.push_back(name);
  }
  for (const auto& [name, c] : graph.offloaded) {
    if (!used.count(name)) unused.push_back(name);
  }
  for (const std::string& name : unused) graph.EraseConstant(name);
  return Status::Ok();
}

Status FuseLayerNorms(Graph& graph, PassStats* stats) {
  std::set<int> dead;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& mean = graph.nodes[i];
    int64_t axis, variance_axis;
    if (mean.op_type != "ReduceMean" || mean.outputs.size() != 1 || !TrailingAxes(graph, mean, &axis)) continue;
    const std::string& x = mean.Input(0);
    const int sub = SoleConsumerOp(graph, mean.outputs[0], "Sub");
    if (sub < 0 || graph.nodes[sub].Input(0) != x || graph.nodes[sub].Input(1) != mean.outputs[0]) continue;
    const std::string centered = graph.nodes[sub].outputs[0];
    const std::vector<int> readers = Consumers(graph, centered);
    if (readers.size() != 2 || IsGraphOutput(graph, centered)) continue;
    int square = -1, divide = -1;
    for (int r : readers) {
      const Node& n = graph.nodes[r];
      if (n.outputs.size() != 1) continue;
      if ((n.op_type == "Pow" && n.Input(0) == centered && FloatScalarNear(graph, n.Input(1), 2.0)) ||
          (n.op_type == "Mul" && n.inputs.size() == 2 && n.inputs[0] == centered && n.inputs[1] == centered)) {
        square = r;
      } else if (n.op_type == "Div" && n.Input(0) == centered) {
        divide = r;
      }
    }
    if (square < 0 || divide < 0) continue;
    const int variance = SoleConsumerOp(graph, graph.nodes[square].outputs[0], "ReduceMean");
    if (variance < 0 || !TrailingAxes(graph, graph.nodes[variance], &variance_axis) || variance_axis != axis) continue;
    const int add_epsilon = SoleConsumerOp(graph, graph.nodes[variance].outputs[0], "Add");
    if (add_epsilon < 0) continue;
    double epsilon;
    DataType epsilon_type;
    const std::string epsilon_name = OtherInput(graph.nodes[add_epsilon], graph.nodes[variance].outputs[0]);
    if (!ScalarConstant(graph, epsilon_name, &epsilon, &epsilon_type) || epsilon_type != DataType::kF32) continue;
    const int root = SoleConsumerOp(graph, graph.nodes[add_epsilon].outputs[0], "Sqrt");
    if (root < 0 || SoleConsumer(graph, graph.nodes[root].outputs[0]) != divide ||
        graph.nodes[divide].Input(1) != graph.nodes[root].outputs[0]) {
      continue;
    }
    std::set<int> matched = {static_cast<int>(i), sub, square, variance, add_epsilon, root, divide};
    int last = divide;
    std::string scale, bias;
    // Then optionally the affine part: Mul by a scale, Add of a bias.
    for (const char* op : {"Mul", "Add"}) {
      const int next = SoleConsumerOp(graph, graph.nodes[last].outputs[0], op);
      if (next < 0) continue;
      const std::string operand = PerElementOperand(graph, graph.nodes[next], graph.nodes[last].outputs[0], -axis);
      if (operand.empty()) break;
      (std::string(op) == "Mul" ? scale : bias) = operand;
      matched.insert(next);
      last = next;
    }
    Node& norm = ReplacePattern(graph, matched, last, "LayerNormalization", {x, scale, bias}, mean.opset, &dead);
    norm.attributes["axis"] = Attribute{axis};
    norm.attributes["epsilon"] = Attribute{static_cast<float>(epsilon)};
    ++stats->fused_layer_norms;
  }
  RemoveNodes(graph, dead);
  return Status::Ok();
}

Status FuseGelus(Graph& graph, PassStats* stats) {
  const auto producers = Producers(graph);
  const auto produced_by = [&](const std::string& value) -> const Node* {
    auto p = producers.find(value);
    return p == producers.end() ? nullptr : &graph.nodes[p->second];
  };
  std::set<int> dead;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& erf = graph.nodes[i];
    if (erf.op_type != "Erf" || erf.outputs.size() != 1) continue;
    // x / sqrt(2) or x * (1 / sqrt(2)) feeds the Erf only.
    const Node* scaling = produced_by(erf.Input(0));
    if (!scaling || SoleConsumer(graph, erf.Input(0)) != static_cast<int>(i)) continue;
    std::string x;
    if (scaling->op_type == "Div" && FloatScalarNear(graph, scaling->Input(1), std::sqrt(2.0))) {
      x = scaling->Input(0);
    } else if (scaling->op_type == "Mul") {
      for (const std::string& in : scaling->inputs) {
        if (FloatScalarNear(graph, OtherInput(*scaling, in), std::sqrt(0.5))) x = in;
      }
    }
    if (x.empty()) continue;
    const int plus_one = SoleConsumerOp(graph, erf.outputs[0], "Add");
    if (plus_one < 0 || !FloatScalarNear(graph, OtherInput(graph.nodes[plus_one], erf.outputs[0]), 1.0)) continue;
    const std::string& one_plus_erf = graph.nodes[plus_one].outputs[0];
    const int product = SoleConsumerOp(graph, one_plus_erf, "Mul");
    if (product < 0) continue;
    const std::string other = OtherInput(graph.nodes[product], one_plus_erf);
    std::set<int> matched = {producers.at(erf.Input(0)), static_cast<int>(i), plus_one, product};
    int last = -1;
    const Node* half_x = produced_by(other);
    if (other == x || FloatScalarNear(graph, other, 0.5)) {
      // (x * (1 + erf)) * 0.5 or ((1 + erf) * 0.5) * x
      last = SoleConsumerOp(graph, graph.nodes[product].outputs[0], "Mul");
      const std::string rest = last < 0 ? "" : OtherInput(graph.nodes[last], graph.nodes[product].outputs[0]);
      if (rest.empty() || !(other == x ? FloatScalarNear(graph, rest, 0.5) : rest == x)) continue;
    } else if (half_x && half_x->op_type == "Mul" && half_x->outputs.size() == 1 &&
               FloatScalarNear(graph, OtherInput(*half_x, x), 0.5) && SoleConsumer(graph, other) == product) {
      // (x * 0.5) * (1 + erf)
      last = product;
      matched.insert(producers.at(other));
    } else {
      continue;
    }
    ReplacePattern(graph, matched, last, "Gelu", {x}, erf.opset, &dead);
    ++stats->fused_gelus;
  }
  RemoveNodes(graph, dead);
  return Status::Ok();
}

Status FuseGatedActivations(Graph& graph, PassStats* stats) {
  std::set<int> dead;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& gate = graph.nodes[i];
    if (gate.inputs.size() != 1 || gate.outputs.size() != 1) continue;
    // A QDQ model that rounds the gate before the product keeps them apart.
    if (graph.activation_quant.count(gate.outputs[0])) continue;
    if (!FusesGatedActivation(gate.op_type, gate.Float("alpha", 0.2f), gate.Float("beta", 0.5f))) continue;
    const std::string fused = gate.op_type == "Sigmoid" ? "Swish" : "HardSwish";
    const int product = SoleConsumerOp(graph, gate.outputs[0], "Mul");
    if (product < 0 || OtherInput(graph.nodes[product], gate.outputs[0]) != gate.inputs[0]) continue;
    const std::string x = gate.inputs[0];
    ReplacePattern(graph, {static_cast<int>(i), product}, product, fused, {x}, gate.opset, &dead);
    ++stats->fused_gated_activations;
  }
  RemoveNodes(graph, dead);
  return Status::Ok();
}

namespace {

// Whether fusing `candidate` into `op` would give it two eltwise steps of one
// algorithm, which oneDNN 2.6 runs wrong (see PostOpsSpec): it stays apart.
bool FusingRepeatsAnAlgorithm(const Node& op, const FusedEltwise& candidate) {
  std::vector<FusedEltwise> activations = op.post_eltwise_before_sum;
  activations.insert(activations.end(), op.post_eltwise.begin(), op.post_eltwise.end());
  activations.push_back(candidate);
  auto steps = StepsOf(activations);
  return !steps.ok() || RepeatsAnAlgorithm(*steps);
}

}  // namespace

Status FusePostOps(Graph& graph, PassStats* stats, bool residual_sums) {
  static const std::set<std::string> kFusable = {"Conv", "Gemm", "MatMul"};
  std::set<int> dead;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (dead.count(static_cast<int>(i))) continue;
    Node& op = graph.nodes[i];
    if (!kFusable.count(op.op_type) || op.outputs.size() != 1) continue;
    // Absorb a chain: [activation]* [Add(residual) [activation]*] (Add for Conv only).
    for (;;) {
      const int next = SoleConsumer(graph, op.outputs[0]);
      if (next < 0) break;
      Node& consumer = graph.nodes[next];
      FusedEltwise eltwise;
      // A QDQ model that rounds the value before its activation (collapsed
      // into activation_quant) keeps the activation apart: fused, the
      // rounding and clipping would be skipped.
      if (AsEltwise(graph, consumer, &eltwise) && consumer.Input(0) == op.outputs[0] &&
          consumer.outputs.size() == 1 && !graph.activation_quant.count(op.outputs[0]) &&
          !FusingRepeatsAnAlgorithm(op, eltwise)) {
        (op.fused_sum_input.empty() ? op.post_eltwise_before_sum : op.post_eltwise).push_back(eltwise);
      } else if (consumer.op_type == "Add" && consumer.outputs.size() == 1 && op.post_eltwise_before_sum.empty() &&
                 !graph.activation_quant.count(op.outputs[0]) && AddsRowBias(graph, op, consumer)) {
        // A bias after the product: MatMul gets it as a third input, Gemm as C.
        op.inputs.resize(3);
        op.inputs[2] = OtherInput(consumer, op.outputs[0]);
      } else if (residual_sums && op.op_type == "Conv" && consumer.op_type == "Add" && op.fused_sum_input.empty() &&
                 op.post_eltwise.empty() && consumer.inputs.size() == 2) {
        const std::string& other = consumer.inputs[0] == op.outputs[0] ? consumer.inputs[1] : consumer.inputs[0];
        if (other == op.outputs[0] || graph.IsConstant(other)) break;
        // The residual must exist when the conv runs.
        const auto producers = Producers(graph);
        auto p = producers.find(other);
        if (p != producers.end() && p->second > static_cast<int>(i)) break;
        op.fused_sum_input = other;
      } else {
        break;
      }
      Absorb(op, consumer);
      consumer.inputs.clear();
      consumer.outputs.clear();
      dead.insert(next);
      ++stats->fused_post_ops;
    }
  }
  RemoveNodes(graph, dead);
  return Status::Ok();
}

}  // namespace ppml::engine
