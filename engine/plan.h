// An execution plan: the graph compiled for one set of concrete input shapes.
//
//   Graph ──PlanBuilder──▶ values (shape, dtype, oneDNN layout, arena slot)
//                          steps  (oneDNN primitive + args | reference kernel)
//
// Op builders (ops_*.cc) turn each node into steps through PlanBuilder. Layouts
// propagate: a oneDNN op picks its preferred (often blocked) layout and the
// next oneDNN op consumes it as is; a reorder is inserted only where an op
// needs another layout (reference kernels and graph outputs need plain).
// Activations live in one arena: buffers whose lifetimes do not overlap share
// bytes, and an op may write in place into an input that dies with it.
// Weights streamed from a WeightStore get slots in the same arena, so that
// the large late-layer weights reuse the room of the large early activations.
// A node whose inputs are all constant is run once at build time and its
// outputs become constants (shape arithmetic folds away this way).
// Not thread-safe: a Plan owns its arena and scratchpad.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "common/status.h"
#include "common/tensor.h"
#include "engine/graph.h"
#include "engine/memory.h"

namespace ppml::engine {

using ValueId = int;
constexpr ValueId kNoValue = -1;

struct PlanValue {
  std::string name;
  DataType dtype = DataType::kF32;
  Shape shape;
  dnnl::memory::desc desc;             // zero desc for dtypes oneDNN lacks (s64)
  std::shared_ptr<Tensor> constant;    // plain data of a constant
  int buffer = -1;                     // arena buffer, -1 for constants and graph inputs
  ValueId alias_of = -1;               // shares the bytes of this value (a reshape)
  // Set when the value holds a float tensor in quantized form (dtype u8/s8).
  std::optional<QuantParams> quant;
  // Set on f32 values already rounded onto this quantization's grid (an INT8
  // op's output that only float ops read): a Q/DQ pair would not change them.
  std::optional<QuantParams> on_grid;
  bool graph_input = false;
  // A graph constant kept in the WeightStore: `constant` stays null (its
  // bytes are fetched while the plan is built) unless a run-time kernel needs
  // them, which pins them in memory.
  bool offloaded = false;
  // The float output of a DequantizeLinear of integer constants: computed
  // only when a kernel reads it, as INT8 kernels read the integers instead
  // (`constant` stays null until then, like an offloaded one).
  const QuantizedConstant* dequantized_from = nullptr;
  bool deferred() const { return (offloaded || dequantized_from) && !constant; }
  size_t bytes() const;
};

// Pointers to the data of values while a plan runs.
class RunContext {
 public:
  explicit RunContext(std::vector<void*>* data, const std::deque<PlanValue>* values) : data_(data), values_(values) {}
  void* Data(ValueId id) const { return (*data_)[id]; }
  const PlanValue& Value(ValueId id) const { return (*values_)[id]; }
 private:
  std::vector<void*>* data_;
  const std::deque<PlanValue>* values_;
};

using CustomKernel = std::function<Status(const RunContext&)>;

struct Step {
  std::string label;
  std::string op;      // the node's op type, for profiles
  std::string kernel;  // primitive kind and implementation, or "engine"; for profiles
  std::optional<dnnl::primitive> primitive;
  std::vector<std::pair<int, ValueId>> value_args;       // DNNL_ARG_* -> value
  std::unordered_map<int, dnnl::memory> fixed_args;       // weights and other prepared memories
  CustomKernel custom;
  std::unordered_map<int, dnnl::memory> bound_args;       // filled when the plan is finalized
  // Weights kept in the WeightStore: DNNL_ARG_* -> handle, fetched per run.
  std::vector<std::pair<int, uint64_t>> streamed_args;
  int node = 0;  // index of the graph node it was built for (buffer lifetimes count in nodes)
};

class Plan {
 public:
  // Input i's plain bytes inside the arena, for RunOnArenaInputs. Valid
  // between runs only: the run reuses them once the input is consumed.
  std::span<std::byte> arena_input(size_t i);
  Result<std::vector<Tensor>> RunOnArenaInputs();
  // Runs with each input's plain bytes at the given address, in graph-input
  // order; outputs in graph-output order.
  Result<std::vector<Tensor>> RunOn(std::span<void* const> inputs);
  // The shape graph value `name` has in this plan; nullopt when the plan does not hold it (fused away).
  std::optional<Shape> ValueShape(const std::string& name) const;
  size_t arena_bytes() const { return arena_bytes_; }
  size_t step_count() const { return steps_.size(); }
  // Multiply-accumulates of the convolutions and matrix products per run.
  int64_t macs() const { return macs_; }
  int winograd_convs() const { return winograd_convs_; }
  int fused_depthwise() const { return fused_depthwise_; }
  // oneDNN primitives that run its reference (scalar) code: 10-100x slower.
  int reference_kernels() const { return reference_kernels_; }
  // Bytes of weights fetched from the WeightStore per run.
  size_t streamed_bytes() const { return streamed_bytes_; }
  // Per step, the time summed over the runs (empty unless built to profile).
  std::vector<StepTime> Profile() const;

 private:
  friend class PlanBuilder;
  dnnl::engine engine_;
  dnnl::stream stream_;
  // A deque: builders hold references to values while adding new ones.
  std::deque<PlanValue> values_;
  std::vector<Step> steps_;
  std::vector<ValueId> inputs_, outputs_;
  std::vector<dnnl::memory> memories_;   // per value; empty for values oneDNN cannot hold
  std::vector<void*> data_;              // per value
  std::shared_ptr<void> arena_, scratchpad_;
  std::vector<Reservation> owned_reservations_;  // resident prepared weights the plan computed
  std::vector<ValueId> input_aliases_;   // values sharing a graph input's bytes
  std::vector<void*> arena_inputs_;      // each graph input's place in the arena
  dnnl::memory scratchpad_memory_;
  Reservation arena_reservation_, scratchpad_reservation_;
  WeightStore* store_ = nullptr;
  std::vector<WeightStore::Slot> stream_order_;  // in the order the steps acquire them
  size_t arena_bytes_ = 0;
  size_t streamed_bytes_ = 0;
  int64_t macs_ = 0;
  int winograd_convs_ = 0;
  int fused_depthwise_ = 0;
  int reference_kernels_ = 0;
  bool profile_ = false;
  std::vector<double> step_ms_;  // per step when profiling
  int64_t runs_ = 0;
};

// A weight in the layout a primitive wants: resident (memory has data), or
// kept in the WeightStore (memory without a data handle, fetched per run).
struct PreparedWeight {
  dnnl::memory memory;
  std::optional<uint64_t> streamed;
  Reservation reservation;  // of resident bytes
};

// Reorders `source` (times `source_scale`) into `wanted` and, with
// offloading and at least the minimum size, moves the result to the store.
// Throws StatusError.
PreparedWeight PrepareWeight(const dnnl::engine& engine, const ConstantEnv& env, const dnnl::memory& source,
                             const dnnl::memory::desc& wanted, const std::string& label, float source_scale = 1.f);

// Weights reordered into primitive-preferred layouts, shared across the plans
// (batch sizes) of one model.
class WeightCache {
 public:
  explicit WeightCache(const ConstantEnv& env) : env_(env) {}
  // `resident` is the source tensor, or null for the offloaded graph constant
  // `offloaded_name` (fetched from the store for the reorder). A resident
  // entry keeps its source alive, so the address cannot be reused by another
  // tensor while the entry exists. Throws StatusError.
  const PreparedWeight& Get(const dnnl::engine& engine, const Graph& graph,
                            const std::shared_ptr<const Tensor>& resident, const std::string& offloaded_name,
                            const dnnl::memory::desc& source_desc, const dnnl::memory::desc& wanted, float source_scale = 1.f);
  // Drops entries whose source nobody but the cache holds (the constants of evicted plans).
  void Prune();
  size_t offloaded_bytes() const { return offloaded_bytes_; }

 private:
  struct Entry {
    std::shared_ptr<const Tensor> source;
    std::string offloaded_name;
    dnnl::memory::desc source_desc, wanted;
    float source_scale = 1.f;
    PreparedWeight weight;
  };
  ConstantEnv env_;
  std::deque<Entry> entries_;  // a deque: Get hands out references
  size_t offloaded_bytes_ = 0;
};

class PlanBuilder {
 public:
  PlanBuilder(const Graph& graph, const dnnl::engine& engine, WeightCache* weights);

  // Compiles the graph for these concrete input shapes.
  Result<std::unique_ptr<Plan>> Build(const std::vector<Shape>& input_shapes);

  // ---- for op builders ----
  const dnnl::engine& engine() const { return engine_; }
  const Node& node() const { return *node_; }
  const Graph& graph() const { return graph_; }
  // Whether FP32 convolutions take Winograd's 16-channel blocks in this plan
  // (it has Winograd layers: see PlansWinograd).
  bool ChannelBlockedConvs() const { return channel_blocked_convs_; }
  // Value of a node input by position; kNoValue for an omitted optional input.
  // For builders that are not int8-aware a quantized input comes dequantized.
  ValueId Input(size_t i);
  // The input as stored, quantized or not.
  ValueId RawInput(size_t i) const;
  // Value by name (a fused residual), kNoValue when undefined.
  ValueId Lookup(const std::string& name) const;
  const PlanValue& Value(ValueId id) const { return plan_->values_[id]; }
  bool IsConstant(ValueId id) const {
    return id != kNoValue && (Value(id).constant || Value(id).offloaded || Value(id).dequantized_from);
  }
  // The constant's data (fetched from the store when offloaded, valid while
  // the node is built), null when not a constant. Throws StatusError.
  const Tensor* Constant(ValueId id) const;
  // Reads a constant integer input (a shape, axes, pads) as int64s; an error if it is not constant.
  Result<std::vector<int64_t>> ConstantInts(size_t input_index) const;

  // The value in plain row-major layout (reorders when needed, once per value).
  ValueId Plain(ValueId id);
  // The float form of a quantized value (dequantizes once per value, keeping
  // the layout); the value itself when it is not quantized.
  ValueId Float(ValueId id);
  // The value quantized with `params` (from float, or requantized).
  ValueId Quantized(ValueId id, const QuantParams& params);
  // Marks a value the builder produced as holding quantized data.
  void SetQuant(ValueId id, const QuantParams& params);
  void SetOnGrid(ValueId id, const QuantParams& params);
  // Whether every node reading graph value `name` reads it as floats (no
  // int8-aware op, no fused residual), so that an INT8 producer may hand it
  // over dequantized; or as stored (int8-aware ops and fused residuals only,
  // not a graph output), so that a float producer may write it quantized.
  bool ReadOnlyAsFloat(const std::string& name) const;
  bool ReadOnlyAsStored(const std::string& name) const;
  // The one node reading graph value `name`, when exactly one node reads it
  // (as an input or a fused residual) and it is not a graph output.
  const Node* OnlyReader(const std::string& name) const;
  // The value in layout `desc` (reorders when needed).
  ValueId InLayout(ValueId id, const dnnl::memory::desc& desc);

  // Defines the node's output `index`. With `in_place_of`, the output reuses
  // that input's bytes when the input dies at this node (same size); returns
  // whether it did via `*in_place` when given.
  ValueId DefineOutput(size_t index, DataType dtype, const Shape& shape, const dnnl::memory::desc& desc,
                       ValueId in_place_of = kNoValue, bool* in_place = nullptr);
  // For a builder whose primitive also runs `reader`, the only reader of the
  // node's output 0 (OnlyReader): defines reader's output 0 in place of the
  // node's, which never exists, and skips `reader` when its turn comes.
  ValueId DefineOutputOfFusedReader(const Node& reader, DataType dtype, const Shape& shape,
                                    const dnnl::memory::desc& desc);
  // Output in plain layout.
  ValueId DefinePlainOutput(size_t index, DataType dtype, const Shape& shape, ValueId in_place_of = kNoValue);
  // Output that shares the bytes of `source` (a plain value) under another shape: Reshape & co.
  ValueId DefineAliasOutput(size_t index, ValueId source, const Shape& shape);
  void DefineConstantOutput(size_t index, Tensor value);
  // An unnamed value sharing the bytes of plain value `source` under another
  // shape, optionally with an explicit (strided) layout.
  ValueId AliasValue(ValueId source, const Shape& shape, std::optional<dnnl::memory::desc> desc = std::nullopt);

  dnnl::primitive_attr Attr() const;  // user-managed scratchpad
  void AddPrimitive(const dnnl::primitive& primitive, const dnnl::primitive_desc_base& pd,
                    std::vector<std::pair<int, ValueId>> value_args,
                    std::unordered_map<int, dnnl::memory> fixed_args = {});
  void AddCustom(CustomKernel kernel);
  // Records the multiply-accumulates a linear op performs (for stats and FLOP rates).
  void CountMacs(int64_t macs) { plan_->macs_ += macs; }
  void CountWinograd() { ++plan_->winograd_convs_; }
  void CountFusedDepthwise() { ++plan_->fused_depthwise_; }
  // Copies `from` into `to` (a reorder: layouts may differ, shapes may not).
  void AddCopy(ValueId from, ValueId to);
  // Memory holding constant `id` in layout `wanted` (weights, reordered once per model).
  // `source_desc` describes the constant's plain bytes as the primitive sees them
  // (grouped convolution weights get an extra leading dimension, say).
  // `source_scale` multiplies the values on the way (INT8 weights for a
  // oneDNN layout that halves them again, see ops_conv.cc).
  dnnl::memory ConstantMemory(ValueId id, const dnnl::memory::desc& source_desc, const dnnl::memory::desc& wanted,
                              float source_scale = 1.f);
  dnnl::memory ConstantMemory(ValueId id, const dnnl::memory::desc& wanted) {
    return ConstantMemory(id, Value(id).desc, wanted);
  }
  // The same for a graph constant by name (the integers behind quantized weights).
  dnnl::memory ConstantMemory(const std::string& constant_name, const dnnl::memory::desc& source_desc,
                              const dnnl::memory::desc& wanted, float source_scale = 1.f) {
    return ConstantMemory(Lookup(constant_name), source_desc, wanted, source_scale);
  }
  // Memory for a tensor computed by the builder; the plan keeps it alive.
  dnnl::memory OwnedConstantMemory(Tensor tensor, const dnnl::memory::desc& wanted);

  Status Error(const std::string& what) const;        // InvalidArgument naming the node
  Status Unsupported(const std::string& what) const;  // Unsupported naming the node

 private:
  struct Buffer {
    size_t bytes = 0;
    int first = 0, last = 0;  // node indices, inclusive
    size_t offset = 0;
  };
  struct Readers {
    int as_float = 0, as_stored = 0;
  };
  Readers CountReaders(const std::string& name) const;
  ValueId AddValue(PlanValue value);
  ValueId NewBufferValue(PlanValue value, int last_use);
  ValueId DefineNamedOutput(const std::string& name, DataType dtype, const Shape& shape,
                            const dnnl::memory::desc& desc, ValueId in_place_of, bool* in_place);
  int LastUse(const std::string& name) const;
  Status BuildNode(const Node& node, int index);
  // Defines the output of an all-constant DequantizeLinear whose integers an
  // INT8 kernel may read directly, without computing it (false: not one).
  bool DeferDequantize(const Node& node);
  Status FoldConstantNode(size_t first_new_step, size_t first_new_value);
  // Makes the stored form of each output match the model's quantization annotation.
  void ApplyOutputQuantization(const Node& node);
  ValueId Reorder(ValueId id, const dnnl::memory::desc& desc, const dnnl::primitive_attr& attr);
  Status Finalize();
  // Keeps an offloaded constant's data in memory for the plan's lifetime (a
  // run-time kernel reads it).
  void Pin(ValueId id);
  // Remembers which memories are fetched from the store per run.
  dnnl::memory Track(const PreparedWeight& weight);

  const Graph& graph_;
  dnnl::engine engine_;
  WeightCache* weights_;
  std::unique_ptr<Plan> plan_;
  std::unordered_map<std::string, ValueId> by_name_;
  std::unordered_map<ValueId, ValueId> plain_of_, float_of_;
  std::map<std::string, int> last_use_;
  std::vector<Buffer> buffers_;
  // Nodes a builder ran inside an earlier node's primitive, and the values
  // that this left unmaterialized (see DefineOutputOfFusedReader).
  std::set<const Node*> fused_readers_;
  std::set<std::string> fused_away_;
  const Node* node_ = nullptr;
  int node_index_ = 0;
  bool int8_aware_ = false;
  bool channel_blocked_convs_ = false;
  size_t scratchpad_bytes_ = 0;
  // Offloaded constants fetched for the node being built, by value.
  mutable std::unordered_map<ValueId, std::shared_ptr<const Tensor>> fetched_;
  std::unordered_map<const void*, uint64_t> streamed_;  // dnnl_memory_t -> store handle
};

// Helpers shared by op builders.
dnnl::memory::data_type DnnlType(DataType type);
bool HasDnnlType(DataType type);
dnnl::memory::dims ToDims(const Shape& shape);  // a scalar becomes {1}
dnnl::memory::desc PlainDesc(DataType type, const Shape& shape);
dnnl::memory::desc AnyDesc(DataType type, const Shape& shape);
// Channels last (NWC, NHWC, NDHWC) for a tensor of rank 3 to 5; empty otherwise.
dnnl::memory::desc ChannelsLastDesc(DataType type, const Shape& shape);
// The channel-blocked (8 or 16 channels) or channels-last format `desc` has
// for `shape`, if any.
std::optional<dnnl::memory::format_tag> ChannelBlockedTag(const dnnl::memory::desc& desc, const Shape& shape);
// Whether oneDNN fell back to its reference (scalar) kernel for `pd`.
bool IsReferenceImpl(const dnnl::primitive_desc_base& pd);
// The same layout with another element type.
dnnl::memory::desc WithDataType(const dnnl::memory::desc& desc, DataType type);

}  // namespace ppml::engine
