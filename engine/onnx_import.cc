#include "engine/onnx_import.h"

#include <set>

#include <onnx/onnx_pb.h>

#include "engine/onnx_tensor.h"

namespace ppml::engine {
namespace {

constexpr int kMinOpset = 7;
constexpr int kMaxOpset = 17;

Result<GraphValue> ValueFromInfo(const onnx::ValueInfoProto& info, const std::string& role) {
  GraphValue v;
  v.name = info.name();
  const std::string what = role + " '" + info.name() + "'";
  if (!info.type().has_tensor_type()) return Status::Unsupported(what + " is not a tensor");
  const auto& tt = info.type().tensor_type();
  PPML_ASSIGN_OR_RETURN(v.dtype, DataTypeFromOnnx(tt.elem_type(), what));
  if (tt.has_shape()) {
    for (const auto& d : tt.shape().dim()) v.shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
  }
  return v;
}

Result<Attribute> ConvertAttribute(const onnx::AttributeProto& a, const std::string& context) {
  Attribute out;
  switch (a.type()) {
    case onnx::AttributeProto::INT: out.value = static_cast<int64_t>(a.i()); break;
    case onnx::AttributeProto::FLOAT: out.value = a.f(); break;
    case onnx::AttributeProto::STRING: out.value = a.s(); break;
    case onnx::AttributeProto::INTS: out.value = std::vector<int64_t>(a.ints().begin(), a.ints().end()); break;
    case onnx::AttributeProto::FLOATS: out.value = std::vector<float>(a.floats().begin(), a.floats().end()); break;
    case onnx::AttributeProto::TENSOR: {
      PPML_ASSIGN_OR_RETURN(Tensor t, TensorFromProto(a.t(), context + " attribute '" + a.name() + "'"));
      out.value = std::make_shared<Tensor>(std::move(t));
      break;
    }
    default:
      return Status::Unsupported(context + ": attribute '" + a.name() + "' has a type the engine does not read (" +
                                 onnx::AttributeProto::AttributeType_Name(a.type()) + ")");
  }
  return out;
}

// A Constant node's value as a tensor (value, value_float(s), value_int(s)).
Result<Tensor> ConstantValue(const Node& node) {
  if (const Tensor* t = node.TensorAttr("value")) return t->Clone();
  if (node.HasAttr("value_float")) return Tensor::FromVector<float>({}, {node.Float("value_float", 0)});
  if (node.HasAttr("value_int")) return Tensor::FromVector<int64_t>({}, {node.Int("value_int", 0)});
  if (node.HasAttr("value_floats")) {
    auto v = node.Floats("value_floats");
    return Tensor::FromVector<float>({static_cast<int64_t>(v.size())}, v);
  }
  if (node.HasAttr("value_ints")) {
    auto v = node.Ints("value_ints");
    return Tensor::FromVector<int64_t>({static_cast<int64_t>(v.size())}, v);
  }
  return Status::Unsupported(node.Describe() + ": only value, value_float(s) and value_int(s) are supported");
}

// Kahn's algorithm; ONNX requires sorted nodes but exporters are not perfect.
Status SortTopologically(Graph& graph, const std::string& name) {
  std::set<std::string> available;
  for (const auto& in : graph.inputs) available.insert(in.name);
  for (const auto& [c, t] : graph.constants) available.insert(c);
  for (const auto& [c, t] : graph.offloaded) available.insert(c);
  std::vector<Node> sorted;
  std::vector<bool> done(graph.nodes.size(), false);
  for (size_t placed = 0; placed < graph.nodes.size();) {
    bool progress = false;
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      if (done[i]) continue;
      bool ready = true;
      for (const auto& in : graph.nodes[i].inputs) ready = ready && (in.empty() || available.count(in));
      if (!ready) continue;
      for (const auto& out : graph.nodes[i].outputs) available.insert(out);
      sorted.push_back(std::move(graph.nodes[i]));
      done[i] = true;
      ++placed;
      progress = true;
    }
    if (!progress) {
      for (size_t i = 0; i < graph.nodes.size(); ++i) {
        if (done[i]) continue;
        for (const auto& in : graph.nodes[i].inputs) {
          if (!in.empty() && !available.count(in)) {
            return Status::InvalidArgument(name + ": " + graph.nodes[i].Describe() + " reads '" + in +
                                           "', which no node, input or initializer defines (or a cycle)");
          }
        }
      }
    }
  }
  graph.nodes = std::move(sorted);
  return Status::Ok();
}

// An initializer whose bytes live at `location` in the WeightStore (an
// encrypted model package): offloaded as is when large and offloading,
// otherwise read into accounted memory now.
Status ImportExternalInitializer(const onnx::TensorProto& init, const std::string& context, Graph& graph) {
  std::string location;
  for (const auto& entry : init.external_data()) {
    if (entry.key() == "location") {
      location = entry.value();
    } else {
      return Status::Unsupported(context + ": external data key '" + entry.key() + "' (only 'location' is supported)");
    }
  }
  if (location.empty()) return Status::InvalidArgument(context + ": external data without a location");
  if (!graph.env.store) {
    return Status::Unsupported(context + ": external data needs a weight store (load the model from its package)");
  }
  OffloadedConstant c;
  PPML_ASSIGN_OR_RETURN(c.dtype, DataTypeFromOnnx(init.data_type(), context));
  for (int64_t d : init.dims()) {
    if (d < 0) return Status::InvalidArgument(context + ": negative dimension");
    c.shape.push_back(d);
  }
  c.location = location;
  if (graph.env.offload && c.bytes() >= graph.env.offload_min_bytes) {
    graph.offloaded[init.name()] = std::move(c);
    return Status::Ok();
  }
  graph.offloaded[init.name()] = c;  // read once through the store, then kept resident
  std::shared_ptr<const Tensor> t = graph.Constant(init.name());
  graph.offloaded.erase(init.name());
  graph.constants[init.name()] = std::const_pointer_cast<Tensor>(t);
  return Status::Ok();
}

}  // namespace

Result<Graph> ImportOnnx(std::span<const std::byte> bytes, const std::string& name, const ConstantEnv& env) {
  onnx::ModelProto model;
  if (bytes.empty()) return Status::DataLoss(name + ": the file is empty, not an ONNX model");
  if (!model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Status::DataLoss(name + ": not a valid ONNX model (protobuf parsing failed: truncated or not ONNX)");
  }
  if (!model.has_graph() || model.graph().output_size() == 0) {
    return Status::DataLoss(name + ": not a valid ONNX model (no graph or no graph outputs)");
  }
  Graph graph;
  graph.name = model.graph().name();
  int opset = -1;
  for (const auto& op : model.opset_import()) {
    if (op.domain().empty() || op.domain() == "ai.onnx") opset = static_cast<int>(op.version());
  }
  if (opset < 0) {
    if (model.opset_import_size() > 0) {
      return Status::Unsupported(name + ": the model uses only the domain '" + model.opset_import(0).domain() +
                                 "'; only the default ONNX domain is supported");
    }
    return Status::DataLoss(name + ": the model imports no opset");
  }
  if (opset < kMinOpset || opset > kMaxOpset) {
    return Status::Unsupported(name + ": opset " + std::to_string(opset) + " is outside the supported range " +
                               std::to_string(kMinOpset) + ".." + std::to_string(kMaxOpset));
  }
  graph.opset = opset;

  const auto& g = model.graph();
  if (g.sparse_initializer_size() > 0) return Status::Unsupported(name + ": sparse initializers are not supported");
  graph.env = env;
  for (const auto& init : g.initializer()) {
    const std::string context = name + ": initializer '" + init.name() + "'";
    if (init.data_location() == onnx::TensorProto::EXTERNAL) {
      PPML_RETURN_IF_ERROR(ImportExternalInitializer(init, context, graph));
      continue;
    }
    PPML_ASSIGN_OR_RETURN(Tensor t, TensorFromProto(init, context));
    graph.SetConstant(init.name(), std::move(t));
  }
  for (const auto& in : g.input()) {
    if (graph.IsConstant(in.name())) continue;  // IR < 4 lists initializers as inputs too
    PPML_ASSIGN_OR_RETURN(GraphValue v, ValueFromInfo(in, name + ": input"));
    graph.inputs.push_back(std::move(v));
  }
  for (const auto& out : g.output()) {
    PPML_ASSIGN_OR_RETURN(GraphValue v, ValueFromInfo(out, name + ": output"));
    graph.outputs.push_back(std::move(v));
  }
  int index = 0;
  for (const auto& n : g.node()) {
    Node node;
    node.op_type = n.op_type();
    node.name = n.name().empty() ? n.op_type() + "_" + std::to_string(index) : n.name();
    node.opset = opset;
    ++index;
    if (!n.domain().empty() && n.domain() != "ai.onnx") {
      return Status::Unsupported(name + ": " + node.Describe() + " is in domain '" + n.domain() +
                                 "'; only the default ONNX domain is supported");
    }
    node.inputs.assign(n.input().begin(), n.input().end());
    node.outputs.assign(n.output().begin(), n.output().end());
    for (const auto& a : n.attribute()) {
      PPML_ASSIGN_OR_RETURN(node.attributes[a.name()], ConvertAttribute(a, name + ": " + node.Describe()));
    }
    if (node.op_type == "Constant") {
      PPML_ASSIGN_OR_RETURN(Tensor value, ConstantValue(node));
      if (node.outputs.size() != 1) return Status::InvalidArgument(name + ": " + node.Describe() + " needs one output");
      graph.SetConstant(node.outputs[0], std::move(value));
      continue;
    }
    graph.nodes.push_back(std::move(node));
  }
  PPML_RETURN_IF_ERROR(SortTopologically(graph, name));
  return graph;
}

}  // namespace ppml::engine
