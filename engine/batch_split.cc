#include "engine/batch_split.h"

#include <algorithm>
#include <map>
#include <set>

#include "engine/ops.h"

namespace ppml::engine {
namespace {

// What a value holds with respect to the batch.
enum class Role {
  kConstant,   // the same for every batch size: weights, folded constants, a shape's other dimensions
  kShapeOf,    // a batched value's shape: element 0 is the batch size, the others are not
  kBatchSize,  // computed from the batch size (each slice's plan computes its own)
  kBatch,      // first dimension is the batch, sample i from sample i of the inputs
};

// Ops that map each element (or each sample along the first input) on its
// own: a batched first input gives a batched output when no other input is batched.
const std::set<std::string>& PerSampleOps() {
  static const std::set<std::string> ops = [] {
    std::set<std::string> s(UnaryElementwiseOps().begin(), UnaryElementwiseOps().end());
    s.insert({"Erf", "Not", "Identity", "Dropout", "Cast", "Conv", "ConvTranspose", "MaxPool", "AveragePool",
              "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization"});
    return s;
  }();
  return ops;
}

// Element-wise ops with broadcasting.
const std::set<std::string>& BroadcastingOps() {
  static const std::set<std::string> ops = [] {
    std::set<std::string> s(BroadcastingElementwiseOps().begin(), BroadcastingElementwiseOps().end());
    s.insert("Where");
    return s;
  }();
  return ops;
}

// Reductions whose axes come from input 1 from this opset on (an attribute before).
const std::map<std::string, int>& ReductionAxesInputOpset() {
  static const std::map<std::string, int> ops = {{"ReduceSum", 13},       {"ReduceMean", 18},    {"ReduceMax", 18},
                                                 {"ReduceMin", 18},       {"ReduceProd", 18},    {"ReduceLogSumExp", 18},
                                                 {"ReduceSumSquare", 18}};
  return ops;
}

class Analysis {
 public:
  Analysis(const Graph& graph, int64_t rows, const SliceShapeOf& shape_of)
      : graph_(graph), rows_(rows), shape_of_(shape_of) {}

  std::optional<std::string> Run() {
    for (const GraphValue& in : graph_.inputs) {
      const std::optional<Shape> shape = shape_of_(in.name);
      if (in.shape.empty() || in.shape[0] >= 0 || !shape || shape->empty() || (*shape)[0] != rows_) {
        return "input '" + in.name + "' has no symbolic batch dimension first";
      }
      roles_[in.name] = Role::kBatch;
    }
    for (const Node& node : graph_.nodes) {
      if (std::optional<std::string> why = Visit(node)) return node.Describe() + " " + *why;
    }
    for (const GraphValue& out : graph_.outputs) {
      const std::optional<Shape> shape = shape_of_(out.name);
      if (RoleOf(out.name) != Role::kBatch || !shape || shape->empty() || (*shape)[0] != rows_) {
        return "output '" + out.name + "' does not have the batch as its first dimension";
      }
    }
    return std::nullopt;
  }

 private:
  std::optional<Role> RoleOf(const std::string& name) const {
    if (auto it = roles_.find(name); it != roles_.end()) return it->second;
    if (graph_.IsConstant(name)) return Role::kConstant;
    return std::nullopt;
  }

  std::optional<Shape> ShapeOf(const std::string& name) const {
    DataType dtype;
    Shape shape;
    if (graph_.ConstantInfo(name, &dtype, &shape)) return shape;
    return shape_of_(name);
  }

  // The integer values of constant `name`, nullopt when it is not a constant.
  std::optional<std::vector<int64_t>> ConstantInts(const std::string& name) const {
    if (name.empty() || !graph_.IsConstant(name)) return std::nullopt;
    const std::shared_ptr<const Tensor> t = graph_.Constant(name);
    std::vector<int64_t> out;
    for (int64_t i = 0; i < t->element_count(); ++i) out.push_back(static_cast<int64_t>(t->ElementAsDouble(i)));
    return out;
  }

  // Axes from attribute `attr`, or from input `input` from `input_opset` on;
  // nullopt when given but not constant, empty when not given.
  std::optional<std::vector<int64_t>> Axes(const Node& node, const std::string& attr, size_t input,
                                           int input_opset) const {
    if (node.opset < input_opset) return node.Ints(attr);
    if (node.Input(input).empty()) return std::vector<int64_t>{};
    return ConstantInts(node.Input(input));
  }

  // Whether axis 0 of a rank-`rank` tensor is among `axes` (negative from the end).
  static bool TouchesBatch(const std::vector<int64_t>& axes, size_t rank) {
    return std::any_of(axes.begin(), axes.end(), [&](int64_t a) { return a == 0 || a + static_cast<int64_t>(rank) == 0; });
  }

  size_t RankOf(const std::string& name) const {
    const std::optional<Shape> shape = ShapeOf(name);
    return shape ? shape->size() : 0;
  }

  // Why the node may mix samples, nullopt when it does not; records its outputs' role.
  std::optional<std::string> Visit(const Node& node) {
    bool batched = false, sized = false;
    std::vector<std::string> inputs = node.inputs;
    if (!node.fused_sum_input.empty()) inputs.push_back(node.fused_sum_input);
    for (const std::string& in : inputs) {
      if (in.empty()) continue;
      const std::optional<Role> role = RoleOf(in);
      if (!role) return "reads '" + in + "', which no node before it writes";
      batched |= *role == Role::kBatch;
      sized |= *role == Role::kShapeOf || *role == Role::kBatchSize;
    }
    Role out = sized ? ShapeArithmetic(node) : Role::kConstant;
    if (batched) {
      // The batch size may size a Reshape or an Expand; as data it would be
      // the slice's batch size, not the batch's.
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        const bool shape_input = i == 1 && (node.op_type == "Reshape" || node.op_type == "Expand");
        const std::optional<Role> role = RoleOf(node.inputs[i]);
        if (!shape_input && (role == Role::kShapeOf || role == Role::kBatchSize)) {
          return "reads a value computed from the batch size";
        }
      }
      if (node.op_type == "Shape") {
        out = node.Int("start", 0) >= 1 ? Role::kConstant : Role::kShapeOf;
      } else if (node.op_type == "Size") {
        out = Role::kBatchSize;
      } else if (std::optional<std::string> why = CheckBatched(node)) {
        return why;
      } else {
        out = Role::kBatch;
      }
    }
    for (const std::string& o : node.outputs) {
      if (!o.empty()) roles_[o] = out;
    }
    return std::nullopt;
  }

  // The role of a node computing on shapes only: picking dimensions other
  // than the batch out of a batched value's shape gives the same for every
  // batch size (a channel count); anything else may carry the batch size.
  Role ShapeArithmetic(const Node& node) const {
    if (RoleOf(node.Input(0)) != Role::kShapeOf) return Role::kBatchSize;
    for (size_t i = 1; i < node.inputs.size(); ++i) {
      if (RoleOf(node.inputs[i]) != Role::kConstant) return Role::kBatchSize;
    }
    if (node.op_type == "Gather" && node.Int("axis", 0) == 0) {
      const std::optional<std::vector<int64_t>> indices = ConstantInts(node.Input(1));
      if (indices && !indices->empty() && std::all_of(indices->begin(), indices->end(), [](int64_t i) { return i > 0; })) {
        return Role::kConstant;
      }
    }
    if (node.op_type == "Slice" && node.opset >= 10) {
      const std::optional<std::vector<int64_t>> starts = ConstantInts(node.Input(1));
      const std::optional<std::vector<int64_t>> steps =
          node.Input(4).empty() ? std::optional(std::vector<int64_t>{1}) : ConstantInts(node.Input(4));
      if (starts && starts->size() == 1 && (*starts)[0] >= 1 && steps && steps->size() == 1 && (*steps)[0] > 0) {
        return Role::kConstant;
      }
    }
    return Role::kBatchSize;
  }

  bool OnlyFirstBatched(const Node& node) const {
    for (size_t i = 1; i < node.inputs.size(); ++i) {
      if (!node.inputs[i].empty() && RoleOf(node.inputs[i]) == Role::kBatch) return false;
    }
    return RoleOf(node.Input(0)) == Role::kBatch;
  }

  // For a node with a batched input: why it may mix samples, nullopt when it does not.
  std::optional<std::string> CheckBatched(const Node& node) const {
    const std::string& op = node.op_type;
    const std::string& x = node.Input(0);
    const size_t rank = RankOf(x);
    const std::optional<Shape> out_shape = node.outputs.empty() ? std::nullopt : ShapeOf(node.outputs[0]);
    if (!node.fused_sum_input.empty() && RoleOf(node.fused_sum_input) != Role::kBatch) {
      return "adds a residual without the batch dimension";
    }
    if (PerSampleOps().count(op)) {
      if (!OnlyFirstBatched(node)) return "has a batched parameter input";
      return std::nullopt;
    }
    if (op == "QuantizeLinear" || op == "DequantizeLinear") {
      if (!OnlyFirstBatched(node)) return "has batched quantization parameters";
      const std::optional<Shape> scale = ShapeOf(node.Input(1));
      const bool per_tensor = scale && ElementCount(*scale) == 1;
      if (!per_tensor && TouchesBatch({node.Int("axis", 1)}, rank)) return "quantizes along the batch axis";
      return std::nullopt;
    }
    if (BroadcastingOps().count(op)) {
      // Broadcasting aligns trailing dimensions: a batched input must reach
      // the output's first dimension, any other must not.
      const size_t out_rank = out_shape ? out_shape->size() : 0;
      if (out_rank == 0) return "has an output of unknown rank";
      for (const std::string& in : node.inputs) {
        if (in.empty()) continue;
        const std::optional<Shape> shape = ShapeOf(in);
        if (!shape) return "reads '" + in + "' of unknown shape";
        if (RoleOf(in) == Role::kBatch) {
          if (shape->size() != out_rank) return "broadcasts a batched input of lower rank";
        } else if (shape->size() == out_rank && (*shape)[0] != 1) {
          return "broadcasts '" + in + "' along the batch axis";
        }
      }
      return std::nullopt;
    }
    if (op == "Gemm") {
      if (!OnlyFirstBatched(node) || node.Int("transA", 0) != 0) return "multiplies across samples";
      const std::optional<Shape> c = node.Input(2).empty() ? std::nullopt : ShapeOf(node.Input(2));
      if (c && c->size() == 2 && (*c)[0] != 1) return "adds a bias with rows";
      return std::nullopt;
    }
    if (op == "MatMul") {
      const size_t rank_b = RankOf(node.Input(1));
      if (RoleOf(x) != Role::kBatch || rank < 2) return "multiplies across samples";
      if (RoleOf(node.Input(1)) == Role::kBatch) {
        if (rank_b != rank || rank < 3) return "multiplies across samples";
      } else if (rank_b > 2) {
        return "broadcasts a stacked constant along the batch axis";
      }
      return std::nullopt;
    }
    if (op == "Softmax" || op == "LogSoftmax" || op == "LayerNormalization") {
      const int64_t fallback = op != "LayerNormalization" && node.opset < 13 ? 1 : -1;
      if (!OnlyFirstBatched(node) || TouchesBatch({node.Int("axis", fallback)}, rank)) return "normalizes across samples";
      return std::nullopt;
    }
    if (op == "Flatten") {
      if (TouchesBatch({node.Int("axis", 1)}, rank)) return "flattens the batch axis";
      return std::nullopt;
    }
    if (op == "Reshape" || op == "Expand") {
      // Row-major: the same number of elements per sample and the batch kept
      // first means sample i stays block i.
      const std::optional<Shape> in_shape = ShapeOf(x);
      if (!OnlyFirstBatched(node) || !in_shape || !out_shape || in_shape->empty() || out_shape->empty() ||
          (*in_shape)[0] != rows_ || (*out_shape)[0] != rows_ ||
          (op == "Reshape" && ElementCount(*in_shape) != ElementCount(*out_shape)) ||
          (op == "Expand" && in_shape->size() != out_shape->size())) {
        return "does not keep the batch as the first dimension";
      }
      return std::nullopt;
    }
    if (op == "Squeeze" || op == "Unsqueeze") {
      const std::optional<std::vector<int64_t>> axes = Axes(node, "axes", 1, 13);
      const size_t axes_rank = op == "Unsqueeze" && out_shape ? out_shape->size() : rank;
      if (!OnlyFirstBatched(node) || !axes || axes->empty() || TouchesBatch(*axes, axes_rank)) {
        return "may move the batch axis";
      }
      return std::nullopt;
    }
    if (op == "Transpose") {
      const std::vector<int64_t> perm = node.Ints("perm");
      if (perm.empty() || perm[0] != 0) return "moves the batch axis";
      return std::nullopt;
    }
    if (op == "Concat") {
      for (const std::string& in : node.inputs) {
        if (RoleOf(in) != Role::kBatch) return "concatenates a tensor without the batch dimension";
      }
      if (TouchesBatch({node.Int("axis", 0)}, rank)) return "concatenates along the batch axis";
      return std::nullopt;
    }
    if (op == "Gather") {
      if (!OnlyFirstBatched(node) || TouchesBatch({node.Int("axis", 0)}, rank)) return "gathers along the batch axis";
      return std::nullopt;
    }
    if (op == "Slice") {
      // Without axes a Slice covers the first len(starts) axes, the batch among them.
      const std::optional<std::vector<int64_t>> axes = Axes(node, "axes", 3, 10);
      if (!OnlyFirstBatched(node) || !axes || axes->empty() || TouchesBatch(*axes, rank)) return "slices the batch axis";
      return std::nullopt;
    }
    if (op == "Pad") {
      const std::optional<std::vector<int64_t>> pads =
          node.opset < 11 ? std::optional(node.Ints("pads")) : ConstantInts(node.Input(1));
      if (!OnlyFirstBatched(node) || !pads || pads->size() != 2 * rank || (*pads)[0] != 0 || (*pads)[rank] != 0) {
        return "pads the batch axis";
      }
      return std::nullopt;
    }
    if (auto reduction = ReductionAxesInputOpset().find(op); reduction != ReductionAxesInputOpset().end()) {
      const std::optional<std::vector<int64_t>> axes = Axes(node, "axes", 1, reduction->second);
      if (!OnlyFirstBatched(node) || !axes || axes->empty() || TouchesBatch(*axes, rank)) {
        return "reduces along the batch axis";
      }
      return std::nullopt;
    }
    return "is not known to keep samples apart";
  }

  const Graph& graph_;
  const int64_t rows_;
  const SliceShapeOf& shape_of_;
  std::map<std::string, Role> roles_;
};

}  // namespace

std::optional<std::string> WhyBatchNotSplittable(const Graph& graph, int64_t rows, const SliceShapeOf& shape_of) {
  return Analysis(graph, rows, shape_of).Run();
}

}  // namespace ppml::engine
