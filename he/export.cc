#include "he/export.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <map>

#include "common/json_line.h"
#include "common/tensor.h"
#include "engine/onnx_tensor.h"

namespace ppml::he {
namespace {

// Builds the unrolled graph: unique tensor names, constants as initializers.
class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto* graph) : graph_(graph) {}

  std::string Constant(const std::string& hint, Shape shape, const std::vector<float>& values) {
    const std::string name = Unique(hint);
    *graph_->add_initializer() = engine::TensorToProto(Tensor::FromVector<float>(std::move(shape), values), name);
    return name;
  }
  std::string Scalar(float value) {
    auto it = scalars_.find(value);
    if (it != scalars_.end()) return it->second;
    return scalars_[value] = Constant("c", {}, {value});
  }
  std::string Int64s(const std::string& hint, const std::vector<int64_t>& values, bool scalar = false) {
    const std::string name = Unique(hint);
    Shape shape = scalar ? Shape{} : Shape{static_cast<int64_t>(values.size())};
    *graph_->add_initializer() = engine::TensorToProto(Tensor::FromVector<int64_t>(shape, values), name);
    return name;
  }
  std::string Node(const std::string& op, const std::vector<std::string>& inputs, const std::string& hint,
                   int64_t axis = -1) {
    const std::string out = Unique(hint);
    onnx::NodeProto* node = graph_->add_node();
    *node = engine::MakeOnnxNode(op, out, inputs, out);
    if (axis >= 0) engine::SetIntAttribute(*node, "axis", axis);
    return out;
  }
  // The last node writes `name` instead of its generated output name.
  void RenameLastOutput(const std::string& name) {
    onnx::NodeProto* node = graph_->mutable_node(graph_->node_size() - 1);
    node->set_output(0, name);
  }

 private:
  std::string Unique(const std::string& hint) { return hint + "_" + std::to_string(counter_++); }
  onnx::GraphProto* graph_;
  std::map<float, std::string> scalars_;
  int counter_ = 0;
};

std::vector<float> Transposed(const Matrix& m) {
  std::vector<float> t(m.values.size());
  for (int r = 0; r < m.rows; ++r) {
    for (int c = 0; c < m.cols; ++c) t[static_cast<size_t>(c) * m.rows + r] = m.at(r, c);
  }
  return t;
}

// Emits p(x) exactly as Simulator evaluates it (see the header).
std::string EmitActivation(GraphBuilder& g, const Polynomial* p, Activation activation, const std::string& x,
                           const std::string& hint) {
  if (p == nullptr) return g.Node(activation == Activation::kTanh ? "Tanh" : "Sigmoid", {x}, hint);
  const std::vector<float> c(p->coeffs.begin(), p->coeffs.end());
  const std::string u = g.Node("Add", {g.Node("Mul", {x, g.Scalar(static_cast<float>(p->scale()))}, hint + "_us"),
                                       g.Scalar(static_cast<float>(p->shift()))},
                               hint + "_u");
  const int degree = p->degree();
  if (degree == 0) return g.Node("Add", {g.Node("Mul", {u, g.Scalar(0.0f)}, hint), g.Scalar(c[0])}, hint);
  std::string acc = g.Node("Mul", {u, g.Scalar(c[static_cast<size_t>(degree)])}, hint + "_h");
  for (int k = degree - 1; k >= 0; --k) {
    if (c[static_cast<size_t>(k)] != 0.0f) acc = g.Node("Add", {acc, g.Scalar(c[static_cast<size_t>(k)])}, hint + "_h");
    if (k > 0) acc = g.Node("Mul", {acc, u}, hint + "_h");
  }
  return acc;
}

// x·Wt (+ h·Ut) + bias for one gate; h empty at the first step (zero state).
std::string GatePreactivation(GraphBuilder& g, const std::string& x, const std::string& h, const std::string& wt,
                              const std::string& ut, const std::string& bias, const std::string& hint) {
  std::string sum = g.Node("MatMul", {x, wt}, hint + "_x");
  if (!h.empty()) sum = g.Node("Add", {sum, g.Node("MatMul", {h, ut}, hint + "_h")}, hint + "_xh");
  return g.Node("Add", {sum, bias}, hint + "_pre");
}

void SetTensorType(onnx::ValueInfoProto* info, const std::string& name, std::initializer_list<int64_t> dims) {
  info->set_name(name);
  auto* tensor = info->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  bool first = true;
  for (int64_t d : dims) {
    auto* dim = tensor->mutable_shape()->add_dim();
    if (first) {
      dim->set_dim_param("N");
    } else {
      dim->set_dim_value(d);
    }
    first = false;
  }
}

}  // namespace

Result<std::string> ExportApproxOnnx(const RnnModel& model, std::span<const CellPolynomials> cells) {
  if (cells.size() != static_cast<size_t>(model.steps)) {
    return Status::InvalidArgument(std::to_string(cells.size()) + " cells for " + std::to_string(model.steps) + " steps");
  }
  onnx::ModelProto proto;
  proto.set_ir_version(7);
  proto.set_producer_name("ppml he search");
  auto* opset = proto.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  onnx::GraphProto* graph = proto.mutable_graph();
  graph->set_name(std::string("approx_") + CellKindName(model.cell));
  SetTensorType(graph->add_input(), "input", {-1, 1, model.steps, model.input_size});
  SetTensorType(graph->add_output(), "logits", {-1, model.classes});

  GraphBuilder g(graph);
  const int64_t hidden = model.hidden_size, inputs = model.input_size;
  const std::string seq = g.Node("Reshape", {"input", g.Int64s("seq_shape", {-1, model.steps, inputs})}, "seq");
  std::string h;  // empty: the zero initial state
  auto weights = [&](const Matrix& m, const std::string& name) { return g.Constant(name, {m.cols, m.rows}, Transposed(m)); };
  auto bias = [&](const std::vector<float>& b, const std::string& name) { return g.Constant(name, {hidden}, b); };

  if (model.cell == CellKind::kRnn) {
    const std::string wt = weights(model.w, "Wt"), ut = weights(model.u, "Ut"), b = bias(model.b, "b");
    for (int t = 0; t < model.steps; ++t) {
      const std::string p = "t" + std::to_string(t);
      std::string x = g.Node("Gather", {seq, g.Int64s(p + "_index", {t}, true)}, p + "_x", 1);
      if (model.input_scale != 1 || model.input_shift != 0) {
        x = g.Node("Add", {g.Node("Mul", {x, g.Scalar(model.input_scale)}, p), g.Scalar(model.input_shift)}, p + "_xt");
      }
      const std::string pre = GatePreactivation(g, x, h, wt, ut, b, p);
      h = EmitActivation(g, cells[static_cast<size_t>(t)].tanh, Activation::kTanh, pre, p + "_tanh");
    }
  } else {
    const std::string wz = weights(model.wz, "Wzt"), uz = weights(model.uz, "Uzt"), bz = bias(model.bz, "bz");
    const std::string wr = weights(model.wr, "Wrt"), ur = weights(model.ur, "Urt"), br = bias(model.br, "br");
    const std::string wn = weights(model.wn, "Wnt"), un = weights(model.un, "Unt");
    const std::string bnx = bias(model.bn_x, "bn_x"), bnh = bias(model.bn_h, "bn_h");
    for (int t = 0; t < model.steps; ++t) {
      const std::string p = "t" + std::to_string(t);
      const CellPolynomials& cell = cells[static_cast<size_t>(t)];
      std::string x = g.Node("Gather", {seq, g.Int64s(p + "_index", {t}, true)}, p + "_x", 1);
      if (model.input_scale != 1 || model.input_shift != 0) {
        x = g.Node("Add", {g.Node("Mul", {x, g.Scalar(model.input_scale)}, p), g.Scalar(model.input_shift)}, p + "_xt");
      }
      const std::string z = EmitActivation(g, cell.sigmoid, Activation::kSigmoid,
                                           GatePreactivation(g, x, h, wz, uz, bz, p + "_z"), p + "_zs");
      const std::string r = EmitActivation(g, cell.sigmoid, Activation::kSigmoid,
                                           GatePreactivation(g, x, h, wr, ur, br, p + "_r"), p + "_rs");
      const std::string nx = g.Node("Add", {g.Node("MatMul", {x, wn}, p + "_nx"), bnx}, p + "_nxb");
      const std::string nh = h.empty() ? bnh : g.Node("Add", {g.Node("MatMul", {h, un}, p + "_nh"), bnh}, p + "_nhb");
      const std::string n_pre = g.Node("Add", {nx, g.Node("Mul", {r, nh}, p + "_rnh")}, p + "_npre");
      const std::string n = EmitActivation(g, cell.tanh, Activation::kTanh, n_pre, p + "_tanh");
      const std::string keep = g.Node("Mul", {g.Node("Sub", {g.Scalar(1.0f), z}, p + "_1mz"), n}, p + "_keep");
      h = h.empty() ? keep : g.Node("Add", {keep, g.Node("Mul", {z, h}, p + "_zh")}, p + "_h");
    }
  }
  g.Node("Add", {g.Node("MatMul", {h, weights(model.fc_w, "fc_Wt")}, "fc"), g.Constant("fc_b", {model.classes}, model.fc_b)},
         "logits");
  g.RenameLastOutput("logits");
  std::string bytes;
  if (!proto.SerializeToString(&bytes)) return Status::Internal("could not serialize the approximated ONNX model");
  return bytes;
}

namespace {

std::string JsonArray(std::span<const float> values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ",";
    out += JsonNumber(values[i]);
  }
  return out + "]";
}

std::string JsonArray(const std::vector<double>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ",";
    out += JsonNumber(values[i]);
  }
  return out + "]";
}

std::string JsonMatrix(const Matrix& m) {
  std::string out = "[";
  for (int r = 0; r < m.rows; ++r) {
    if (r > 0) out += ",";
    out += JsonArray(std::span<const float>(m.values).subspan(static_cast<size_t>(r) * m.cols, m.cols));
  }
  return out + "]";
}

std::string JsonPolynomial(const Polynomial& p) {
  return JsonLine().Add("lo", p.lo).Add("hi", p.hi).AddRaw("coeffs", JsonArray(p.coeffs)).str();
}

}  // namespace

Result<std::string> BuildSpecJson(const RnnModel& model, std::span<const CellPolynomials> cells,
                                  const std::vector<int>& degrees, int budget, const DepthReport& depth,
                                  const std::vector<SpecSample>& samples) {
  const bool gru = model.cell == CellKind::kGru;
  if (cells.size() != static_cast<size_t>(model.steps) || degrees.size() != cells.size()) {
    return Status::InvalidArgument("spec: " + std::to_string(cells.size()) + " cells and " +
                                   std::to_string(degrees.size()) + " degrees for " + std::to_string(model.steps) +
                                   " steps");
  }
  JsonLine weights;
  if (gru) {
    weights.AddRaw("gru", JsonLine()
                              .AddRaw("Wz", JsonMatrix(model.wz)).AddRaw("Uz", JsonMatrix(model.uz)).AddRaw("bz", JsonArray(model.bz))
                              .AddRaw("Wr", JsonMatrix(model.wr)).AddRaw("Ur", JsonMatrix(model.ur)).AddRaw("br", JsonArray(model.br))
                              .AddRaw("Wn", JsonMatrix(model.wn)).AddRaw("Un", JsonMatrix(model.un))
                              .AddRaw("bn_x", JsonArray(model.bn_x)).AddRaw("bn_h", JsonArray(model.bn_h))
                              .str());
  } else {
    weights.AddRaw("rnn", JsonLine().AddRaw("W", JsonMatrix(model.w)).AddRaw("U", JsonMatrix(model.u)).AddRaw("b", JsonArray(model.b)).str());
  }
  weights.AddRaw("fc", JsonLine().AddRaw("W", JsonMatrix(model.fc_w)).AddRaw("b", JsonArray(model.fc_b)).str());

  std::string cell_list = "[";
  for (size_t t = 0; t < cells.size(); ++t) {
    if (cells[t].tanh == nullptr || (gru && cells[t].sigmoid == nullptr)) {
      return Status::InvalidArgument("spec: step " + std::to_string(t) + " has no polynomial");
    }
    JsonLine cell;
    cell.Add("step", static_cast<int>(t)).Add("degree", degrees[t]).AddRaw("tanh", JsonPolynomial(*cells[t].tanh));
    if (gru) cell.AddRaw("sigmoid", JsonPolynomial(*cells[t].sigmoid));
    if (t > 0) cell_list += ",";
    cell_list += cell.str();
  }
  cell_list += "]";

  std::string sample_list = "[";
  for (size_t i = 0; i < samples.size(); ++i) {
    const SpecSample& s = samples[i];
    const int predicted = static_cast<int>(std::max_element(s.logits.begin(), s.logits.end()) - s.logits.begin());
    if (i > 0) sample_list += ",";
    sample_list += JsonLine()
                                        .Add("index", s.index)
                                        .AddRaw("pixels", JsonArray(s.pixels))
                                        .Add("label", s.label)
                                        .Add("plain_prediction", predicted)
                                        .AddRaw("plain_logits", JsonArray(s.logits))
                                        .str();
  }
  sample_list += "]";

  JsonLine spec;
  spec.Add("format", "ppml-he-rnn/1")
      .Add("cell", CellKindName(model.cell))
      .Add("input_size", model.input_size)
      .Add("hidden_size", model.hidden_size)
      .Add("steps", model.steps)
      .Add("classes", model.classes)
      .AddRaw("input_transform", JsonLine().Add("scale", static_cast<double>(model.input_scale))
                                     .Add("shift", static_cast<double>(model.input_shift)).str())
      .AddRaw("weights", weights.str())
      .AddRaw("cells", cell_list)
      .Add("budget", budget)
      .Add("depth", depth.activation_depth)
      .Add("bootstraps", depth.bootstraps)
      .AddRaw("test_samples", sample_list);
  return spec.str() + "\n";
}

}  // namespace ppml::he
