#include "engine/passes.h"

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
  for (int i = 1; graph.constants.count(name); ++i) name = base + "_" + std::to_string(i);
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
        const Tensor* t = graph.Constant(n.inputs[i]);
        if (!t || t->dtype() != DataType::kF32 || t->element_count() != 1) return false;
        (i == 1 ? lo : hi) = t->data<float>()[0];
      }
    }
    *out = {n.op_type, lo, hi};
    return true;
  }
  return false;
}

void RemoveNodes(Graph& graph, const std::set<int>& dead) {
  std::vector<Node> kept;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (!dead.count(static_cast<int>(i))) kept.push_back(std::move(graph.nodes[i]));
  }
  graph.nodes = std::move(kept);
}

}  // namespace

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
    const Tensor& w = *graph.Constant(conv.inputs[1]);
    if (w.dtype() != DataType::kF32 || w.rank() < 3) continue;
    const int64_t out_channels = w.dim(0);
    const Tensor* params[4];
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

    Tensor new_w = w.Clone();
    Tensor new_b(DataType::kF32, {out_channels});
    const Tensor* old_b = conv.inputs.size() > 2 && !conv.inputs[2].empty() ? graph.Constant(conv.inputs[2]) : nullptr;
    const int64_t per_channel = w.element_count() / out_channels;
    for (int64_t c = 0; c < out_channels; ++c) {
      const float scale = gamma[c] / std::sqrt(var[c] + eps);
      float* wc = new_w.data<float>() + c * per_channel;
      for (int64_t k = 0; k < per_channel; ++k) wc[k] *= scale;
      const float bias = old_b ? old_b->data<float>()[c] : 0.f;
      new_b.data<float>()[c] = (bias - mean[c]) * scale + beta[c];
    }
    const std::string w_name = FreshName(graph, conv.name + "/folded_weight");
    graph.constants[w_name] = std::make_shared<Tensor>(std::move(new_w));
    const std::string b_name = FreshName(graph, conv.name + "/folded_bias");
    graph.constants[b_name] = std::make_shared<Tensor>(std::move(new_b));
    conv.inputs.resize(3);
    conv.inputs[1] = w_name;
    conv.inputs[2] = b_name;
    conv.outputs[0] = bn.outputs[0];
    dead.insert(b);
    ++stats->folded_batchnorms;
  }
  RemoveNodes(graph, dead);
  // Drop constants no node reads any more (the unfolded weights).
  std::set<std::string> used;
  for (const Node& n : graph.nodes) used.insert(n.inputs.begin(), n.inputs.end());
  for (const auto& out : graph.outputs) used.insert(out.name);
  for (auto it = graph.constants.begin(); it != graph.constants.end();) {
    it = used.count(it->first) ? std::next(it) : graph.constants.erase(it);
  }
  return Status::Ok();
}

Status FusePostOps(Graph& graph, PassStats* stats) {
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
      if (AsEltwise(graph, consumer, &eltwise) && consumer.Input(0) == op.outputs[0] &&
          consumer.outputs.size() == 1) {
        (op.fused_sum_input.empty() ? op.post_eltwise_before_sum : op.post_eltwise).push_back(eltwise);
      } else if (op.op_type == "Conv" && consumer.op_type == "Add" && op.fused_sum_input.empty() &&
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
      op.outputs[0] = consumer.outputs[0];
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
