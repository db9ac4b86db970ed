#include "int8/model_graph.h"

#include <onnx/version_converter/convert.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>

namespace ppml::int8 {
namespace {

constexpr int64_t kQdqOpset = 13;  // QuantizeLinear/DequantizeLinear with `axis`
constexpr int64_t kMinIrVersion = 7;

const std::vector<int> kNoNodes;

bool IsDefaultDomain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

// ---------------------------------------------------------------- preparation

void NameUnnamedNodes(onnx::GraphProto* graph) {
  for (int i = 0; i < graph->node_size(); ++i) {
    onnx::NodeProto* node = graph->mutable_node(i);
    if (node->name().empty()) node->set_name(node->op_type() + "_" + std::to_string(i));
  }
}

// Constant(value | value_float(s) | value_int(s)) -> an initializer.
Status ConstantsToInitializers(onnx::GraphProto* graph) {
  std::vector<onnx::NodeProto> kept;
  for (const onnx::NodeProto& node : graph->node()) {
    if (node.op_type() != "Constant" || !IsDefaultDomain(node.domain()) || node.output_size() != 1 ||
        node.attribute_size() != 1) {
      kept.push_back(node);
      continue;
    }
    const onnx::AttributeProto& a = node.attribute(0);
    onnx::TensorProto t;
    if (a.name() == "value" && a.type() == onnx::AttributeProto::TENSOR) {
      t = a.t();
    } else if (a.name() == "value_float") {
      t.set_data_type(onnx::TensorProto::FLOAT);
      t.add_float_data(a.f());
    } else if (a.name() == "value_floats") {
      t.set_data_type(onnx::TensorProto::FLOAT);
      t.add_dims(a.floats_size());
      for (float f : a.floats()) t.add_float_data(f);
    } else if (a.name() == "value_int") {
      t.set_data_type(onnx::TensorProto::INT64);
      t.add_int64_data(a.i());
    } else if (a.name() == "value_ints") {
      t.set_data_type(onnx::TensorProto::INT64);
      t.add_dims(a.ints_size());
      for (int64_t v : a.ints()) t.add_int64_data(v);
    } else {
      kept.push_back(node);  // sparse or string constants: leave them alone
      continue;
    }
    t.set_name(node.output(0));
    *graph->add_initializer() = std::move(t);
  }
  graph->clear_node();
  for (auto& n : kept) *graph->add_node() = std::move(n);
  return Status::Ok();
}

// Kahn's algorithm, taking ready nodes in file order.
Status SortNodes(onnx::GraphProto* graph, const std::string& name) {
  std::set<std::string> available;
  for (const auto& in : graph->input()) available.insert(in.name());
  for (const auto& init : graph->initializer()) available.insert(init.name());
  std::vector<onnx::NodeProto> sorted;
  std::vector<bool> placed(static_cast<size_t>(graph->node_size()), false);
  size_t count = 0;
  while (count < placed.size()) {
    bool progress = false;
    for (int i = 0; i < graph->node_size(); ++i) {
      if (placed[static_cast<size_t>(i)]) continue;
      const onnx::NodeProto& n = graph->node(i);
      bool ready = true;
      for (const auto& in : n.input()) ready = ready && (in.empty() || available.count(in));
      if (!ready) continue;
      for (const auto& out : n.output()) available.insert(out);
      sorted.push_back(n);
      placed[static_cast<size_t>(i)] = true;
      ++count;
      progress = true;
    }
    if (!progress) {
      for (int i = 0; i < graph->node_size(); ++i) {
        if (placed[static_cast<size_t>(i)]) continue;
        for (const auto& in : graph->node(i).input()) {
          if (!in.empty() && !available.count(in)) {
            return Status::InvalidArgument(name + ": node '" + graph->node(i).name() + "' (" +
                                           graph->node(i).op_type() + ") reads '" + in +
                                           "', which nothing defines (or the graph has a cycle)");
          }
        }
      }
      return Status::Internal(name + ": topological sort made no progress");
    }
  }
  graph->clear_node();
  for (auto& n : sorted) *graph->add_node() = std::move(n);
  return Status::Ok();
}

std::map<std::string, int> UseCounts(const onnx::GraphProto& graph) {
  std::map<std::string, int> uses;
  for (const auto& n : graph.node()) {
    for (const auto& in : n.input()) {
      if (!in.empty()) ++uses[in];
    }
  }
  for (const auto& out : graph.output()) ++uses[out.name()];
  return uses;
}

onnx::TensorProto* FindInitializer(onnx::GraphProto* graph, const std::string& name) {
  for (auto& t : *graph->mutable_initializer()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

std::string UniqueName(const onnx::GraphProto& graph, const std::string& base) {
  std::set<std::string> used;
  for (const auto& t : graph.initializer()) used.insert(t.name());
  for (const auto& n : graph.node()) {
    for (const auto& o : n.output()) used.insert(o);
  }
  for (const auto& in : graph.input()) used.insert(in.name());
  if (!used.count(base)) return base;
  for (int i = 1;; ++i) {
    std::string candidate = base + "_" + std::to_string(i);
    if (!used.count(candidate)) return candidate;
  }
}

// Folds one BN into its Conv when every condition holds; false otherwise.
Result<bool> FoldBatchNorm(onnx::GraphProto* graph, int bn_index, const std::map<std::string, int>& uses,
                           std::string* conv_name) {
  const onnx::NodeProto& bn = graph->node(bn_index);
  if (bn.input_size() != 5 || bn.output_size() < 1) return false;
  for (int i = 1; i < bn.output_size(); ++i) {
    if (!bn.output(i).empty() && uses.count(bn.output(i))) return false;  // training outputs in use
  }
  const std::string& x = bn.input(0);
  int conv_index = -1;
  for (int i = 0; i < bn_index; ++i) {
    const auto& n = graph->node(i);
    if (n.output_size() > 0 && n.output(0) == x) conv_index = i;
  }
  if (conv_index < 0) return false;
  onnx::NodeProto* conv = graph->mutable_node(conv_index);
  if (conv->op_type() != "Conv" || !IsDefaultDomain(conv->domain()) || conv->input_size() < 2) return false;
  if (uses.at(x) != 1) return false;  // the Conv output is read elsewhere or is a graph output
  onnx::TensorProto* w = FindInitializer(graph, conv->input(1));
  onnx::TensorProto* b = conv->input_size() > 2 && !conv->input(2).empty() ? FindInitializer(graph, conv->input(2))
                                                                             : nullptr;
  if (!w || (conv->input_size() > 2 && !conv->input(2).empty() && !b)) return false;
  std::vector<const onnx::TensorProto*> params;
  for (int i = 1; i < 5; ++i) {
    const onnx::TensorProto* p = FindInitializer(graph, bn.input(i));
    if (!p) return false;
    params.push_back(p);
  }
  if (w->data_type() != onnx::TensorProto::FLOAT || w->dims_size() < 3) return false;
  const Shape w_dims = DimsOf(*w);
  const int64_t channels = w_dims[0];
  PPML_ASSIGN_OR_RETURN(std::vector<float> weights, FloatValues(*w));
  std::vector<std::vector<float>> p(4);
  for (int i = 0; i < 4; ++i) {
    if (params[static_cast<size_t>(i)]->data_type() != onnx::TensorProto::FLOAT) return false;
    PPML_ASSIGN_OR_RETURN(p[static_cast<size_t>(i)], FloatValues(*params[static_cast<size_t>(i)]));
    if (static_cast<int64_t>(p[static_cast<size_t>(i)].size()) != channels) return false;
  }
  std::vector<float> bias(static_cast<size_t>(channels), 0.f);
  if (b) {
    PPML_ASSIGN_OR_RETURN(bias, FloatValues(*b));
    if (static_cast<int64_t>(bias.size()) != channels) return false;
  }
  const float epsilon = FloatAttr(bn, "epsilon", 1e-5f);
  const int64_t per_channel = static_cast<int64_t>(weights.size()) / channels;
  for (int64_t c = 0; c < channels; ++c) {
    const auto cs = static_cast<size_t>(c);
    const double g = p[0][cs] / std::sqrt(static_cast<double>(p[3][cs]) + epsilon);
    for (int64_t k = 0; k < per_channel; ++k) {
      float& v = weights[static_cast<size_t>(c * per_channel + k)];
      v = static_cast<float>(v * g);
    }
    bias[cs] = static_cast<float>((bias[cs] - static_cast<double>(p[2][cs])) * g + p[1][cs]);
  }

  // Write the folded weights in place when this Conv is their only reader.
  const std::string w_name = conv->input(1);
  if (uses.at(w_name) == 1) {
    SetFloatData(w, w_dims, weights);
  } else {
    const std::string name = UniqueName(*graph, w_name + "_bnfold");
    *graph->add_initializer() = MakeFloatTensor(name, w_dims, weights);
    conv = graph->mutable_node(conv_index);
    conv->set_input(1, name);
  }
  if (b && uses.at(conv->input(2)) == 1) {
    SetFloatData(FindInitializer(graph, conv->input(2)), {channels}, bias);
  } else {
    const std::string name = UniqueName(*graph, conv->name() + ".bias");
    *graph->add_initializer() = MakeFloatTensor(name, {channels}, bias);
    conv = graph->mutable_node(conv_index);
    if (conv->input_size() > 2) {
      conv->set_input(2, name);
    } else {
      conv->add_input(name);
    }
  }
  conv->set_output(0, graph->node(bn_index).output(0));
  *conv_name = conv->name();
  return true;
}

}  // namespace

void RemoveUnusedInitializers(onnx::GraphProto* graph) {
  const std::map<std::string, int> uses = UseCounts(*graph);
  std::vector<onnx::TensorProto> kept;
  std::set<std::string> removed;
  for (auto& t : *graph->mutable_initializer()) {
    if (uses.count(t.name())) {
      kept.push_back(std::move(t));
    } else {
      removed.insert(t.name());
    }
  }
  graph->clear_initializer();
  for (auto& t : kept) *graph->add_initializer() = std::move(t);
  // IR < 4 lists initializers among the graph inputs too.
  std::vector<onnx::ValueInfoProto> inputs;
  for (const auto& in : graph->input()) {
    if (!removed.count(in.name())) inputs.push_back(in);
  }
  graph->clear_input();
  for (auto& in : inputs) *graph->add_input() = std::move(in);
}

int64_t DefaultOpset(const onnx::ModelProto& model) {
  int64_t opset = -1;
  for (const auto& op : model.opset_import()) {
    if (IsDefaultDomain(op.domain())) opset = op.version();
  }
  return opset;
}

Result<PreparedModel> PrepareModel(std::string_view onnx_bytes) {
  PreparedModel prepared;
  onnx::ModelProto& model = prepared.model;
  if (onnx_bytes.empty() || !model.ParseFromArray(onnx_bytes.data(), static_cast<int>(onnx_bytes.size())) ||
      !model.has_graph()) {
    return Status::DataLoss("not a valid ONNX model (protobuf parsing failed or no graph)");
  }
  const int64_t opset = DefaultOpset(model);
  if (opset < 0) return Status::Unsupported("the model imports no default-domain (ai.onnx) opset");
  if (opset < kQdqOpset) {
    try {
      model = onnx::version_conversion::ConvertVersion(model, static_cast<int>(kQdqOpset));
    } catch (const std::exception& e) {
      return Status::Unsupported("cannot convert the model from opset " + std::to_string(opset) + " to " +
                                 std::to_string(kQdqOpset) + " (QuantizeLinear per-axis needs 13): " + e.what());
    }
  }
  if (model.ir_version() < kMinIrVersion) model.set_ir_version(kMinIrVersion);

  onnx::GraphProto* graph = model.mutable_graph();
  NameUnnamedNodes(graph);
  PPML_RETURN_IF_ERROR(ConstantsToInitializers(graph));
  PPML_RETURN_IF_ERROR(SortNodes(graph, graph->name().empty() ? "model" : graph->name()));

  for (int i = 0; i < graph->node_size();) {
    const onnx::NodeProto& n = graph->node(i);
    if (n.op_type() != "BatchNormalization" || !IsDefaultDomain(n.domain())) {
      ++i;
      continue;
    }
    std::string conv_name;
    PPML_ASSIGN_OR_RETURN(bool folded, FoldBatchNorm(graph, i, UseCounts(*graph), &conv_name));
    if (!folded) {
      ++i;
      continue;
    }
    prepared.folded_batchnorms.emplace_back(graph->node(i).name(), conv_name);
    graph->mutable_node()->DeleteSubrange(i, 1);
  }
  RemoveUnusedInitializers(graph);
  // Shapes recorded for tensors that folding renamed or removed would be stale.
  graph->clear_value_info();
  return prepared;
}

// ------------------------------------------------------------------ op groups

bool IsDataMovementOp(const std::string& op) {
  static const std::set<std::string> kOps = {"MaxPool",   "GlobalMaxPool", "Flatten",  "Reshape", "Transpose",
                                             "Squeeze",   "Unsqueeze",     "Identity", "Dropout", "Gather",
                                             "Slice"};
  return kOps.count(op) > 0;
}

bool IsObservedOp(const std::string& op) {
  static const std::set<std::string> kOps = {"Conv", "Gemm", "MatMul", "Relu", "Clip", "AveragePool",
                                             "GlobalAveragePool", "Add", "Concat"};
  return kOps.count(op) > 0 || IsDataMovementOp(op);
}

// ----------------------------------------------------------------- GraphIndex

namespace {

// The element type of output `index` of `node`, from its op and the types of
// its inputs; 0 when unknown.
int InferElemType(const onnx::NodeProto& node, size_t index, const std::map<std::string, int>& types) {
  auto type_of = [&](int i) -> int {
    if (i >= node.input_size() || node.input(i).empty()) return 0;
    auto it = types.find(node.input(i));
    return it == types.end() ? 0 : it->second;
  };
  const std::string& op = node.op_type();
  if (op == "Shape" || op == "Size" || op == "ArgMax" || op == "ArgMin" || op == "NonZero") {
    return onnx::TensorProto::INT64;
  }
  static const std::set<std::string> kBool = {"Equal", "Less",  "Greater", "LessOrEqual", "GreaterOrEqual",
                                              "Not",   "And",   "Or",      "Xor",         "IsNaN", "IsInf"};
  if (kBool.count(op)) return onnx::TensorProto::BOOL;
  if (op == "Cast") return static_cast<int>(IntAttr(node, "to", 0));
  if (op == "DequantizeLinear") return onnx::TensorProto::FLOAT;
  if (op == "QuantizeLinear") return node.input_size() > 2 ? type_of(2) : onnx::TensorProto::UINT8;
  if (op == "Where") return type_of(1);
  if (op == "ConstantOfShape") {
    for (const auto& a : node.attribute()) {
      if (a.name() == "value") return a.t().data_type();
    }
    return onnx::TensorProto::FLOAT;
  }
  if (index > 0) {
    if (op == "MaxPool" || op == "TopK") return onnx::TensorProto::INT64;
    if (op == "Dropout") return onnx::TensorProto::BOOL;
  }
  for (int i = 0; i < node.input_size(); ++i) {
    if (int t = type_of(i)) return t;
  }
  return 0;
}

// A Clip whose lower bound (input 1, or attribute `min` before opset 11) is >= 0.
bool ClipIsNonNegative(const onnx::NodeProto& node, const std::map<std::string, const onnx::TensorProto*>& inits) {
  for (const auto& a : node.attribute()) {
    if (a.name() == "min") return a.f() >= 0;
  }
  if (node.input_size() < 2 || node.input(1).empty()) return false;
  auto it = inits.find(node.input(1));
  if (it == inits.end()) return false;
  auto values = FloatValues(*it->second);
  return values.ok() && values->size() == 1 && (*values)[0] >= 0;
}

}  // namespace

GraphIndex::GraphIndex(const onnx::GraphProto& graph) : graph_(graph) {
  for (const auto& t : graph.initializer()) {
    initializers_[t.name()] = &t;
    constant_.insert(t.name());
    elem_type_[t.name()] = t.data_type();
  }
  for (const auto& in : graph.input()) {
    if (initializers_.count(in.name())) continue;
    graph_inputs_.insert(in.name());
    if (in.type().has_tensor_type()) elem_type_[in.name()] = in.type().tensor_type().elem_type();
  }
  for (const auto& out : graph.output()) graph_outputs_.insert(out.name());
  static const std::set<std::string> kRandom = {"RandomNormal", "RandomUniform", "RandomNormalLike",
                                                "RandomUniformLike", "Multinomial"};
  for (int i = 0; i < graph.node_size(); ++i) {
    const onnx::NodeProto& n = graph.node(i);
    bool all_constant = !kRandom.count(n.op_type());
    for (const auto& in : n.input()) {
      if (in.empty()) continue;
      consumers_[in].push_back(i);
      all_constant = all_constant && constant_.count(in);
    }
    for (int o = 0; o < n.output_size(); ++o) {
      const std::string& out = n.output(o);
      if (out.empty()) continue;
      producer_[out] = i;
      if (all_constant) constant_.insert(out);
      if (int t = InferElemType(n, static_cast<size_t>(o), elem_type_)) elem_type_[out] = t;
    }
    if (n.output_size() == 0 || n.output(0).empty()) continue;
    const std::string& op = n.op_type();
    bool non_negative = false;
    if (op == "Relu" || op == "Sigmoid" || op == "HardSigmoid" || op == "Softmax") {
      non_negative = true;
    } else if (op == "Clip") {
      non_negative = ClipIsNonNegative(n, initializers_);
    } else if (IsDataMovementOp(op) || op == "AveragePool" || op == "GlobalAveragePool") {
      non_negative = n.input_size() > 0 && non_negative_.count(n.input(0));
    } else if (op == "Concat" || op == "Add" || op == "Max") {
      non_negative = n.input_size() > 0;
      for (const auto& in : n.input()) non_negative = non_negative && non_negative_.count(in);
    }
    if (non_negative) non_negative_.insert(n.output(0));
  }
}

int GraphIndex::Producer(const std::string& tensor) const {
  auto it = producer_.find(tensor);
  return it == producer_.end() ? -1 : it->second;
}

const std::vector<int>& GraphIndex::Consumers(const std::string& tensor) const {
  auto it = consumers_.find(tensor);
  return it == consumers_.end() ? kNoNodes : it->second;
}

const onnx::TensorProto* GraphIndex::Initializer(const std::string& tensor) const {
  auto it = initializers_.find(tensor);
  return it == initializers_.end() ? nullptr : it->second;
}

int GraphIndex::ElemType(const std::string& tensor) const {
  auto it = elem_type_.find(tensor);
  return it == elem_type_.end() ? 0 : it->second;
}

bool GraphIndex::IsFloatActivation(const std::string& tensor) const {
  return !tensor.empty() && !IsConstant(tensor) && ElemType(tensor) == onnx::TensorProto::FLOAT;
}

std::vector<std::string> GraphIndex::ObservedTensors() const {
  std::vector<std::string> names;
  std::set<std::string> seen;
  auto add = [&](const std::string& t) {
    if (IsFloatActivation(t) && seen.insert(t).second) names.push_back(t);
  };
  for (const auto& n : graph_.node()) {
    if (!IsObservedOp(n.op_type()) || !IsDefaultDomain(n.domain())) continue;
    for (const auto& in : n.input()) add(in);
    for (const auto& out : n.output()) add(out);
  }
  return names;
}

// ------------------------------------------------------ TensorProto helpers

Shape DimsOf(const onnx::TensorProto& tensor) { return Shape(tensor.dims().begin(), tensor.dims().end()); }

Result<std::vector<float>> FloatValues(const onnx::TensorProto& tensor) {
  const std::string what = "initializer '" + tensor.name() + "'";
  if (tensor.data_type() != onnx::TensorProto::FLOAT) {
    return Status::Unsupported(what + " is not FLOAT (type " + std::to_string(tensor.data_type()) + ")");
  }
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    return Status::Unsupported(what + " uses external data, which the quantizer does not read");
  }
  const int64_t count = ElementCount(DimsOf(tensor));
  std::vector<float> values;
  if (tensor.has_raw_data()) {
    if (tensor.raw_data().size() != static_cast<size_t>(count) * sizeof(float)) {
      return Status::DataLoss(what + ": raw_data holds " + std::to_string(tensor.raw_data().size()) +
                              " bytes for " + std::to_string(count) + " floats");
    }
    values.resize(static_cast<size_t>(count));
    if (count) std::memcpy(values.data(), tensor.raw_data().data(), tensor.raw_data().size());
  } else {
    if (tensor.float_data_size() != count) {
      return Status::DataLoss(what + ": float_data holds " + std::to_string(tensor.float_data_size()) +
                              " values for " + std::to_string(count) + " elements");
    }
    values.assign(tensor.float_data().begin(), tensor.float_data().end());
  }
  return values;
}

namespace {

template <typename T>
void SetRaw(onnx::TensorProto* tensor, int type, const Shape& dims, std::span<const T> values) {
  tensor->set_data_type(type);
  tensor->clear_dims();
  for (int64_t d : dims) tensor->add_dims(d);
  tensor->clear_float_data();
  tensor->clear_int32_data();
  tensor->clear_int64_data();
  tensor->clear_double_data();
  tensor->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)));
}

}  // namespace

void SetFloatData(onnx::TensorProto* tensor, const Shape& dims, std::span<const float> values) {
  SetRaw(tensor, onnx::TensorProto::FLOAT, dims, values);
}

onnx::TensorProto MakeFloatTensor(const std::string& name, const Shape& dims, std::span<const float> values) {
  onnx::TensorProto t;
  t.set_name(name);
  SetRaw(&t, onnx::TensorProto::FLOAT, dims, values);
  return t;
}

onnx::TensorProto MakeInt8Tensor(const std::string& name, const Shape& dims, std::span<const int8_t> values) {
  onnx::TensorProto t;
  t.set_name(name);
  SetRaw(&t, onnx::TensorProto::INT8, dims, values);
  return t;
}

onnx::TensorProto MakeUint8Tensor(const std::string& name, const Shape& dims, std::span<const uint8_t> values) {
  onnx::TensorProto t;
  t.set_name(name);
  SetRaw(&t, onnx::TensorProto::UINT8, dims, values);
  return t;
}

onnx::TensorProto MakeInt32Tensor(const std::string& name, const Shape& dims, std::span<const int32_t> values) {
  onnx::TensorProto t;
  t.set_name(name);
  SetRaw(&t, onnx::TensorProto::INT32, dims, values);
  return t;
}

int64_t IntAttr(const onnx::NodeProto& node, const std::string& name, int64_t fallback) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.i();
  }
  return fallback;
}

float FloatAttr(const onnx::NodeProto& node, const std::string& name, float fallback) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.f();
  }
  return fallback;
}

}  // namespace ppml::int8
