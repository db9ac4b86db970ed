// Tiny recurrent classifiers built as ONNX in memory, the way PyTorch exports
// them (Reshape -> Transpose -> RNN/GRU -> Reshape of Y_h -> Gemm), for the he tests.
#pragma once

#include <onnx/onnx_pb.h>

#include <random>
#include <string>
#include <vector>

namespace ppml::he::testing {

struct TinyShape {
  int steps = 4;
  int inputs = 3;
  int hidden = 4;
  int classes = 3;
};

// op: "RNN", "GRU" or "LSTM"; activations: the attribute (empty: none).
// Weights are uniform in [-scale, scale] from `seed`.
inline std::string TinyRecurrentModel(const std::string& op, const TinyShape& s, unsigned seed, float scale,
                                      const std::vector<std::string>& activations = {}) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-scale, scale);
  const int gates = op == "RNN" ? 1 : (op == "GRU" ? 3 : 4);
  onnx::ModelProto model;
  model.set_ir_version(7);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(14);
  onnx::GraphProto* g = model.mutable_graph();
  g->set_name("tiny");
  auto add_init = [&](const std::string& name, std::vector<int64_t> dims, bool random, int64_t int_values = 0,
                      std::vector<int64_t> ints = {}) {
    onnx::TensorProto* t = g->add_initializer();
    t->set_name(name);
    int64_t count = 1;
    for (int64_t d : dims) {
      t->add_dims(d);
      count *= d;
    }
    if (!ints.empty()) {
      t->set_data_type(onnx::TensorProto::INT64);
      for (int64_t v : ints) t->add_int64_data(v);
      return;
    }
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t i = 0; i < count; ++i) t->add_float_data(random ? uniform(rng) : 0.0f);
    (void)int_values;
  };
  auto node = [&](const std::string& op_type, std::vector<std::string> in, std::vector<std::string> out) {
    onnx::NodeProto* n = g->add_node();
    n->set_op_type(op_type);
    n->set_name(out[0] + "_node");
    for (auto& i : in) n->add_input(i);
    for (auto& o : out) n->add_output(o);
    return n;
  };
  auto* input = g->add_input();
  input->set_name("input");
  auto* tt = input->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  tt->mutable_shape()->add_dim()->set_dim_param("N");
  for (int64_t d : {1, s.steps, s.inputs}) tt->mutable_shape()->add_dim()->set_dim_value(d);
  auto* output = g->add_output();
  output->set_name("logits");
  output->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);

  add_init("seq_shape", {3}, false, 0, {-1, s.steps, s.inputs});
  add_init("W", {1, gates * s.hidden, s.inputs}, true);
  add_init("R", {1, gates * s.hidden, s.hidden}, true);
  add_init("B", {1, 2 * gates * s.hidden}, true);
  add_init("h_shape", {2}, false, 0, {-1, s.hidden});
  add_init("fc_w", {s.classes, s.hidden}, true);
  add_init("fc_b", {s.classes}, true);
  node("Reshape", {"input", "seq_shape"}, {"seq"});
  auto* transpose = node("Transpose", {"seq"}, {"seq_t"});
  auto* perm = transpose->add_attribute();
  perm->set_name("perm");
  perm->set_type(onnx::AttributeProto::INTS);
  for (int64_t p : {1, 0, 2}) perm->add_ints(p);
  auto* cell = node(op, {"seq_t", "W", "R", "B"}, {"Y", "Y_h"});
  auto* hidden = cell->add_attribute();
  hidden->set_name("hidden_size");
  hidden->set_type(onnx::AttributeProto::INT);
  hidden->set_i(s.hidden);
  if (op == "GRU") {
    auto* lbr = cell->add_attribute();
    lbr->set_name("linear_before_reset");
    lbr->set_type(onnx::AttributeProto::INT);
    lbr->set_i(1);
  }
  if (!activations.empty()) {
    auto* a = cell->add_attribute();
    a->set_name("activations");
    a->set_type(onnx::AttributeProto::STRINGS);
    for (const auto& name : activations) a->add_strings(name);
  }
  node("Reshape", {"Y_h", "h_shape"}, {"h_last"});
  auto* gemm = node("Gemm", {"h_last", "fc_w", "fc_b"}, {"logits"});
  auto* trans_b = gemm->add_attribute();
  trans_b->set_name("transB");
  trans_b->set_type(onnx::AttributeProto::INT);
  trans_b->set_i(1);
  std::string bytes;
  model.SerializeToString(&bytes);
  return bytes;
}

}  // namespace ppml::he::testing
