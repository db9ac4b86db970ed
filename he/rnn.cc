#include "he/rnn.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/file_io.h"
#include "common/tensor.h"
#include "engine/onnx_tensor.h"

namespace ppml::he {

const char* CellKindName(CellKind cell) { return cell == CellKind::kRnn ? "rnn" : "gru"; }

namespace {

// Ops that may surround the cell: shape plumbing PyTorch emits to feed the
// sequence and pick the last state, and the classifier. Anything else (an
// activation, a normalisation) would change the function we approximate.
const std::set<std::string> kPlumbingOps = {"Constant", "Shape",     "Gather",  "Unsqueeze",       "Squeeze",
                                            "Concat",   "Reshape",   "Flatten", "ConstantOfShape", "Transpose",
                                            "Identity", "Slice",     "Gemm",    "MatMul",          "Add"};

std::string NodeLabel(const onnx::NodeProto& node, int index) {
  return "node " + std::to_string(index) + " (" + node.op_type() + (node.name().empty() ? "" : " '" + node.name() + "'") +
         ")";
}

// Constant tensors by name: initializers and Constant node outputs.
class Constants {
 public:
  Constants(const onnx::GraphProto& graph, const std::string& model) : model_(model) {
    for (const auto& init : graph.initializer()) protos_[init.name()] = &init;
    for (const auto& node : graph.node()) {
      if (node.op_type() != "Constant" || node.output_size() != 1) continue;
      for (const auto& attr : node.attribute()) {
        if (attr.name() == "value" && attr.has_t()) protos_[node.output(0)] = &attr.t();
      }
    }
  }
  bool Has(const std::string& name) const { return protos_.count(name) > 0; }
  Result<Tensor> Get(const std::string& name, const std::string& role) const {
    auto it = protos_.find(name);
    if (it == protos_.end()) {
      return Status::Unsupported(model_ + ": " + role + " '" + name + "' is not a constant (an initializer)");
    }
    PPML_ASSIGN_OR_RETURN(Tensor t, engine::TensorFromProto(*it->second, model_ + ": " + role + " '" + name + "'"));
    if (t.dtype() != DataType::kF32) {
      return Status::Unsupported(model_ + ": " + role + " '" + name + "' is " + DataTypeName(t.dtype()) + ", not f32");
    }
    return t;
  }

 private:
  std::string model_;
  std::map<std::string, const onnx::TensorProto*> protos_;
};

Status ExpectShape(const Tensor& t, const Shape& want, const std::string& what) {
  if (t.shape() != want) {
    return Status::InvalidArgument(what + " has shape " + ShapeToString(t.shape()) + ", expected " + ShapeToString(want));
  }
  return Status::Ok();
}

// Rows [row0, row0 + rows) of a [1, R, cols] tensor as a matrix.
Matrix RowBlock(const Tensor& t, int row0, int rows) {
  Matrix m;
  m.rows = rows;
  m.cols = static_cast<int>(t.dim(t.rank() - 1));
  const float* src = t.data<float>() + static_cast<size_t>(row0) * m.cols;
  m.values.assign(src, src + static_cast<size_t>(rows) * m.cols);
  return m;
}

std::vector<float> Slice(const Tensor& t, int offset, int count) {
  const float* src = t.data<float>() + offset;
  return {src, src + count};
}

std::vector<float> Sum(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> out(a.size());
  for (size_t i = 0; i < a.size(); ++i) out[i] = a[i] + b[i];
  return out;
}

Status CheckCellAttributes(const onnx::NodeProto& node, const std::string& where, CellKind cell) {
  const std::vector<std::string> default_activations =
      cell == CellKind::kRnn ? std::vector<std::string>{"Tanh"} : std::vector<std::string>{"Sigmoid", "Tanh"};
  for (const auto& attr : node.attribute()) {
    const std::string& key = attr.name();
    if (key == "hidden_size") continue;
    if (key == "direction") {
      if (attr.s() != "forward") return Status::Unsupported(where + ": direction '" + attr.s() + "' (only forward)");
    } else if (key == "activations") {
      std::vector<std::string> given(attr.strings().begin(), attr.strings().end());
      if (given != default_activations) {
        std::string list;
        for (const auto& s : given) list += (list.empty() ? "" : ",") + s;
        std::string want;
        for (const auto& s : default_activations) want += (want.empty() ? "" : ",") + s;
        return Status::Unsupported(where + ": attribute activations = [" + list +
                                   "] is not supported; HE approximation handles [" + want + "] only");
      }
    } else if (key == "linear_before_reset") {
      if (attr.i() != 1) {
        return Status::Unsupported(where + ": linear_before_reset = " + std::to_string(attr.i()) +
                                   " (only 1, as PyTorch exports GRU)");
      }
    } else if (key == "layout") {
      if (attr.i() != 0) return Status::Unsupported(where + ": layout = " + std::to_string(attr.i()) + " (only 0)");
    } else if (key == "activation_alpha" || key == "activation_beta" || key == "clip") {
      return Status::Unsupported(where + ": attribute '" + key + "' is not supported");
    } else {
      return Status::Unsupported(where + ": unknown attribute '" + key + "'");
    }
  }
  if (cell == CellKind::kGru) {
    const bool has_lbr = std::any_of(node.attribute().begin(), node.attribute().end(),
                                     [](const auto& a) { return a.name() == "linear_before_reset"; });
    if (!has_lbr) return Status::Unsupported(where + ": linear_before_reset = 0 (only 1, as PyTorch exports GRU)");
  }
  return Status::Ok();
}

// Steps per item: the graph input's per-item element count over input_size.
Result<int> StepsFromGraphInput(const onnx::GraphProto& graph, const Constants& constants, int input_size,
                                const std::string& model) {
  std::vector<const onnx::ValueInfoProto*> inputs;
  for (const auto& in : graph.input()) {
    if (!constants.Has(in.name())) inputs.push_back(&in);
  }
  if (inputs.size() != 1) {
    return Status::Unsupported(model + ": the graph has " + std::to_string(inputs.size()) +
                               " non-constant inputs; an RNN classifier takes one image batch");
  }
  const auto& dims = inputs[0]->type().tensor_type().shape().dim();
  int64_t per_item = 1;
  for (int i = 1; i < dims.size(); ++i) {
    if (!dims[i].has_dim_value()) {
      return Status::Unsupported(model + ": input '" + inputs[0]->name() + "' has a symbolic dimension " +
                                 std::to_string(i) + "; only the batch may be symbolic");
    }
    per_item *= dims[i].dim_value();
  }
  if (dims.size() < 2 || per_item % input_size != 0) {
    return Status::InvalidArgument(model + ": input '" + inputs[0]->name() + "' holds " + std::to_string(per_item) +
                                   " values per item, not a whole number of steps of " + std::to_string(input_size));
  }
  return static_cast<int>(per_item / input_size);
}

// The classifier: the node producing the graph output, a Gemm (B transposed
// or not) or an Add of a bias to a MatMul.
Status ReadClassifier(const onnx::GraphProto& graph, const Constants& constants, RnnModel& model) {
  if (graph.output_size() != 1) {
    return Status::Unsupported(model.name + ": " + std::to_string(graph.output_size()) + " graph outputs (expected the logits only)");
  }
  const std::string& logits = graph.output(0).name();
  std::map<std::string, const onnx::NodeProto*> producer;
  for (const auto& node : graph.node()) {
    for (const auto& out : node.output()) producer[out] = &node;
  }
  auto it = producer.find(logits);
  if (it == producer.end()) return Status::InvalidArgument(model.name + ": no node produces output '" + logits + "'");
  const onnx::NodeProto& last = *it->second;
  const std::string where = model.name + ": classifier " + last.op_type() + " '" + last.name() + "'";
  Tensor weight, bias;
  bool weight_is_out_by_in = false;  // [C,H] as Gemm transB=1 stores it
  if (last.op_type() == "Gemm") {
    if (last.input_size() < 3) return Status::Unsupported(where + " has no bias");
    PPML_ASSIGN_OR_RETURN(weight, constants.Get(last.input(1), "classifier weight"));
    PPML_ASSIGN_OR_RETURN(bias, constants.Get(last.input(2), "classifier bias"));
    for (const auto& attr : last.attribute()) {
      if (attr.name() == "transB") weight_is_out_by_in = attr.i() == 1;
      if (attr.name() == "transA" && attr.i() != 0) return Status::Unsupported(where + ": transA = 1");
      if ((attr.name() == "alpha" || attr.name() == "beta") && attr.f() != 1.0f) {
        return Status::Unsupported(where + ": " + attr.name() + " != 1");
      }
    }
  } else if (last.op_type() == "Add") {
    const int bias_input = constants.Has(last.input(1)) ? 1 : 0;
    PPML_ASSIGN_OR_RETURN(bias, constants.Get(last.input(bias_input), "classifier bias"));
    auto mm = producer.find(last.input(1 - bias_input));
    if (mm == producer.end() || mm->second->op_type() != "MatMul") {
      return Status::Unsupported(where + ": the bias is not added to a MatMul");
    }
    PPML_ASSIGN_OR_RETURN(weight, constants.Get(mm->second->input(1), "classifier weight"));
  } else {
    return Status::Unsupported(model.name + ": the logits come from " + last.op_type() +
                               "; expected a Gemm or MatMul + Add classifier after the RNN cell");
  }
  if (weight.rank() != 2) return Status::InvalidArgument(where + ": weight is not a matrix");
  const int in = static_cast<int>(weight.dim(weight_is_out_by_in ? 1 : 0));
  const int out = static_cast<int>(weight.dim(weight_is_out_by_in ? 0 : 1));
  if (in != model.hidden_size || bias.element_count() != out) {
    return Status::InvalidArgument(where + ": weight " + ShapeToString(weight.shape()) + " and bias " +
                                   ShapeToString(bias.shape()) + " do not map hidden size " +
                                   std::to_string(model.hidden_size) + " to classes");
  }
  model.classes = out;
  model.fc_w.rows = out;
  model.fc_w.cols = in;
  model.fc_w.values.resize(static_cast<size_t>(out) * in);
  const float* w = weight.data<float>();
  for (int c = 0; c < out; ++c) {
    for (int h = 0; h < in; ++h) {
      model.fc_w.values[static_cast<size_t>(c) * in + h] = weight_is_out_by_in ? w[c * in + h] : w[h * out + c];
    }
  }
  model.fc_b.assign(bias.data<float>(), bias.data<float>() + out);
  return Status::Ok();
}

}  // namespace

Result<RnnModel> ParseRnnModel(std::span<const std::byte> onnx_bytes, const std::string& name) {
  onnx::ModelProto proto;
  if (onnx_bytes.empty() || !proto.ParseFromArray(onnx_bytes.data(), static_cast<int>(onnx_bytes.size()))) {
    return Status::InvalidArgument(name + ": not a parsable ONNX model");
  }
  const onnx::GraphProto& graph = proto.graph();
  RnnModel model;
  model.name = name;
  Constants constants(graph, name);

  const onnx::NodeProto* cell_node = nullptr;
  int cell_index = -1;
  for (int i = 0; i < graph.node_size(); ++i) {
    const auto& node = graph.node(i);
    const std::string& op = node.op_type();
    if (op == "LSTM") {
      return Status::Unsupported(name + ": " + NodeLabel(node, i) +
                                 ": LSTM cells are not supported (HE approximation handles RNN and GRU)");
    }
    if (op == "RNN" || op == "GRU") {
      if (cell_node != nullptr) {
        return Status::Unsupported(name + ": more than one recurrent cell (" + NodeLabel(node, i) + "); only one layer");
      }
      cell_node = &node;
      cell_index = i;
    } else if (!kPlumbingOps.count(op)) {
      return Status::Unsupported(name + ": " + NodeLabel(node, i) + ": op " + op +
                                 " is outside the RNN classifier pattern (recurrent cell, reshapes, linear layer)");
    }
  }
  if (cell_node == nullptr) {
    return Status::InvalidArgument(name + ": no RNN or GRU node; HE approximation needs a recurrent cell");
  }
  const std::string where = name + ": " + NodeLabel(*cell_node, cell_index);
  model.cell = cell_node->op_type() == "RNN" ? CellKind::kRnn : CellKind::kGru;
  PPML_RETURN_IF_ERROR(CheckCellAttributes(*cell_node, where, model.cell));

  if (cell_node->input_size() < 3 || cell_node->input(2).empty()) {
    return Status::Unsupported(where + ": no bias input B");
  }
  if (cell_node->input_size() > 4 && !cell_node->input(4).empty()) {
    return Status::Unsupported(where + ": sequence_lens is not supported (every sequence has all steps)");
  }
  if (cell_node->input_size() > 5 && !cell_node->input(5).empty()) {
    // PyTorch feeds a zero state from ConstantOfShape; anything else is a learnt or given state.
    bool zero_state = false;
    for (const auto& node : graph.node()) {
      if (node.op_type() != "ConstantOfShape" || node.output(0) != cell_node->input(5)) continue;
      zero_state = true;
      for (const auto& attr : node.attribute()) {
        if (attr.name() == "value" && attr.has_t()) {
          auto value = engine::TensorFromProto(attr.t(), where + " initial_h value");
          zero_state = value.ok() && value->element_count() == 1 && value->ElementAsDouble(0) == 0.0;
        }
      }
    }
    if (!zero_state) return Status::Unsupported(where + ": initial_h must be zero (absent or ConstantOfShape 0)");
  }

  const int gates = model.cell == CellKind::kRnn ? 1 : 3;
  PPML_ASSIGN_OR_RETURN(Tensor w, constants.Get(cell_node->input(1), "input weights W"));
  PPML_ASSIGN_OR_RETURN(Tensor r, constants.Get(cell_node->input(2), "recurrent weights R"));
  PPML_ASSIGN_OR_RETURN(Tensor b, constants.Get(cell_node->input(3), "bias B"));
  if (w.rank() != 3 || w.dim(0) != 1 || w.dim(1) % gates != 0) {
    return Status::InvalidArgument(where + ": W has shape " + ShapeToString(w.shape()) + ", expected [1, " +
                                   std::to_string(gates) + "*hidden, input]");
  }
  const int hidden = static_cast<int>(w.dim(1) / gates);
  const int input = static_cast<int>(w.dim(2));
  PPML_RETURN_IF_ERROR(ExpectShape(r, {1, gates * hidden, hidden}, where + ": R"));
  PPML_RETURN_IF_ERROR(ExpectShape(b, {1, 2 * gates * hidden}, where + ": B"));
  model.hidden_size = hidden;
  model.input_size = input;
  PPML_ASSIGN_OR_RETURN(model.steps, StepsFromGraphInput(graph, constants, input, name));

  // ONNX B = [Wb (gates*H) | Rb (gates*H)].
  const int rb = gates * hidden;
  if (model.cell == CellKind::kRnn) {
    model.w = RowBlock(w, 0, hidden);
    model.u = RowBlock(r, 0, hidden);
    model.b = Sum(Slice(b, 0, hidden), Slice(b, rb, hidden));
  } else {  // ONNX gate order z, r, h
    model.wz = RowBlock(w, 0, hidden);
    model.wr = RowBlock(w, hidden, hidden);
    model.wn = RowBlock(w, 2 * hidden, hidden);
    model.uz = RowBlock(r, 0, hidden);
    model.ur = RowBlock(r, hidden, hidden);
    model.un = RowBlock(r, 2 * hidden, hidden);
    model.bz = Sum(Slice(b, 0, hidden), Slice(b, rb, hidden));
    model.br = Sum(Slice(b, hidden, hidden), Slice(b, rb + hidden, hidden));
    model.bn_x = Slice(b, 2 * hidden, hidden);
    model.bn_h = Slice(b, rb + 2 * hidden, hidden);
  }
  PPML_RETURN_IF_ERROR(ReadClassifier(graph, constants, model));
  return model;
}

Result<RnnModel> LoadRnnModel(const std::string& path) {
  PPML_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return ParseRnnModel(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), path);
}

}  // namespace ppml::he
