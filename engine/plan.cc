#include "engine/plan.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>

#include <oneapi/dnnl/dnnl_debug.h>

#include "engine/ops.h"

namespace ppml::engine {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

constexpr size_t kAlign = 64;
size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::shared_ptr<void> AlignedBytes(size_t bytes) {
  void* p = std::aligned_alloc(kAlign, AlignUp(std::max<size_t>(bytes, 1)));
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

tag PlainTag(size_t rank) {
  static const tag kTags[] = {tag::a, tag::a, tag::ab, tag::abc, tag::abcd, tag::abcde, tag::abcdef};
  return rank < std::size(kTags) ? kTags[rank] : tag::undef;
}

}  // namespace

dnnl::memory::data_type DnnlType(DataType type) {
  switch (type) {
    case DataType::kF32: return memory::data_type::f32;
    case DataType::kU8: return memory::data_type::u8;
    case DataType::kS8: return memory::data_type::s8;
    case DataType::kS32: return memory::data_type::s32;
    case DataType::kS64: return memory::data_type::undef;
  }
  return memory::data_type::undef;
}

bool HasDnnlType(DataType type) { return DnnlType(type) != memory::data_type::undef; }

memory::dims ToDims(const Shape& shape) {
  if (shape.empty()) return {1};
  return memory::dims(shape.begin(), shape.end());
}

memory::desc PlainDesc(DataType type, const Shape& shape) {
  if (!HasDnnlType(type) || ElementCount(shape) == 0) return memory::desc();
  const memory::dims dims = ToDims(shape);
  if (dims.size() <= 6) return memory::desc(dims, DnnlType(type), PlainTag(dims.size()));
  memory::dims strides(dims.size(), 1);
  for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * dims[i + 1];
  return memory::desc(dims, DnnlType(type), strides);
}

memory::desc ChannelsLastDesc(DataType type, const Shape& shape) {
  static const tag kTags[] = {tag::acb, tag::acdb, tag::acdeb};
  if (!HasDnnlType(type) || shape.size() < 3 || shape.size() > 5) return memory::desc();
  return memory::desc(ToDims(shape), DnnlType(type), kTags[shape.size() - 3]);
}

std::optional<memory::format_tag> ChannelBlockedTag(const memory::desc& desc, const Shape& shape) {
  static const std::map<size_t, std::vector<tag>> kTags = {{3, {tag::aBc8b, tag::aBc16b, tag::acb}},
                                                           {4, {tag::aBcd8b, tag::aBcd16b, tag::acdb}},
                                                           {5, {tag::aBcde8b, tag::aBcde16b, tag::acdeb}}};
  auto it = kTags.find(shape.size());
  if (it == kTags.end()) return std::nullopt;
  for (tag t : it->second) {
    if (desc == memory::desc(ToDims(shape), desc.data_type(), t)) return t;
  }
  return std::nullopt;
}

bool IsReferenceImpl(const dnnl::primitive_desc_base& pd) {
  return std::string_view(pd.impl_info_str()).starts_with("ref");
}

memory::desc AnyDesc(DataType type, const Shape& shape) {
  return memory::desc(ToDims(shape), DnnlType(type), tag::any);
}

memory::desc WithDataType(const memory::desc& desc, DataType type) {
  memory::desc out = desc;
  out.data.data_type = memory::convert_to_c(DnnlType(type));
  return out;
}

size_t PlanValue::bytes() const {
  if (desc.get_size() > 0) return desc.get_size();
  return static_cast<size_t>(ElementCount(shape)) * ElementSize(dtype);
}

// ---------------------------------------------------------------- WeightCache

PreparedWeight PrepareWeight(const dnnl::engine& engine, const ConstantEnv& env, const memory& source,
                             const memory::desc& wanted, const std::string& label, float source_scale) {
  const size_t bytes = wanted.get_size();
  PreparedWeight out;
  out.reservation = ReserveOrThrow(env.budget, bytes, "weights of " + label);
  memory dst(wanted, engine);
  if (source.get_desc() == wanted && source_scale == 1.f) {
    std::memcpy(dst.get_data_handle(), source.get_data_handle(), bytes);
  } else {
    dnnl::stream stream(engine);
    dnnl::primitive_attr attr;
    if (source_scale != 1.f) attr.set_output_scales(0, {source_scale});
    dnnl::reorder(source, dst, attr).execute(stream, const_cast<memory&>(source), dst);
    stream.wait();
  }
  if (!env.offload || !env.store || bytes < env.offload_min_bytes) {
    out.memory = dst;
    return out;
  }
  auto prepared = std::as_bytes(std::span<const char>(static_cast<const char*>(dst.get_data_handle()), bytes));
  Result<uint64_t> handle = env.store->Put(label, prepared);
  if (!handle.ok()) throw StatusError(handle.status().WithContext("weights of " + label));
  out.memory = memory(wanted, engine, DNNL_MEMORY_NONE);
  out.streamed = *handle;
  out.reservation.Reset();  // the bytes now live in the store; dst is freed on return
  return out;
}

const PreparedWeight& WeightCache::Get(const dnnl::engine& engine, const Graph& graph,
                                       const std::shared_ptr<const Tensor>& resident,
                                       const std::string& offloaded_name, const memory::desc& source_desc,
                                       const memory::desc& wanted, float source_scale) {
  for (const Entry& e : entries_) {
    const bool same_source = resident ? e.source == resident : !e.source && e.offloaded_name == offloaded_name;
    if (same_source && e.source_desc == source_desc && e.wanted == wanted && e.source_scale == source_scale) {
      return e.weight;
    }
  }
  // An offloaded source is fetched for the reorder only and released after it.
  const std::shared_ptr<const Tensor> source = resident ? resident : graph.Constant(offloaded_name);
  memory src(source_desc, engine, const_cast<void*>(source->raw_data()));
  Entry e{resident, offloaded_name, source_desc, wanted, source_scale, {}};
  e.weight = PrepareWeight(engine, env_, src, wanted, "'" + (resident ? std::string("constant") : offloaded_name) + "'",
                           source_scale);
  if (e.weight.streamed) offloaded_bytes_ += wanted.get_size();
  entries_.push_back(std::move(e));
  return entries_.back().weight;
}

void WeightCache::Prune() {
  std::erase_if(entries_, [](const Entry& e) { return e.source && e.source.use_count() == 1; });
}

// ----------------------------------------------------------------------- Plan

namespace {

// Brackets one run's use of the WeightStore, ending it on every path.
class StreamedRun {
 public:
  StreamedRun(WeightStore* store, std::span<const WeightStore::Slot> order)
      : store_(order.empty() ? nullptr : store) {}
  Status Begin(std::span<const WeightStore::Slot> order) { return store_ ? store_->BeginRun(order) : Status::Ok(); }
  ~StreamedRun() {
    if (store_) store_->EndRun();
  }

 private:
  WeightStore* store_;
};

}  // namespace

std::span<std::byte> Plan::arena_input(size_t i) {
  return {static_cast<std::byte*>(arena_inputs_[i]), values_[inputs_[i]].bytes()};
}

Result<std::vector<Tensor>> Plan::RunOnArenaInputs() { return RunOn(arena_inputs_); }

std::optional<Shape> Plan::ValueShape(const std::string& name) const {
  for (const PlanValue& v : values_) {
    if (v.name == name) return v.shape;
  }
  return std::nullopt;
}

std::vector<StepTime> Plan::Profile() const {
  std::vector<StepTime> times;
  if (!profile_) return times;
  for (size_t i = 0; i < steps_.size(); ++i) {
    times.push_back({steps_[i].label, steps_[i].op, steps_[i].kernel, step_ms_[i], runs_});
  }
  return times;
}

Result<std::vector<Tensor>> Plan::RunOn(std::span<void* const> inputs) {
  for (size_t i = 0; i < inputs_.size(); ++i) {
    data_[inputs_[i]] = inputs[i];
    if (memories_[inputs_[i]]) memories_[inputs_[i]].set_data_handle(inputs[i]);
  }
  for (ValueId alias : input_aliases_) {
    data_[alias] = data_[values_[alias].alias_of];
    if (memories_[alias]) memories_[alias].set_data_handle(data_[alias]);
  }
  RunContext context(&data_, &values_);
  StreamedRun streamed(store_, stream_order_);
  PPML_RETURN_IF_ERROR(streamed.Begin(stream_order_));
  using Clock = std::chrono::steady_clock;
  for (size_t i = 0; i < steps_.size(); ++i) {
    Step& step = steps_[i];
    const Clock::time_point start = profile_ ? Clock::now() : Clock::time_point{};
    if (step.primitive) {
      for (auto [arg, handle] : step.streamed_args) PPML_RETURN_IF_ERROR(store_->Acquire(handle));
      step.primitive->execute(stream_, step.bound_args);
      if (profile_) stream_.wait();
    } else {
      PPML_RETURN_IF_ERROR(step.custom(context).WithContext(step.label));
    }
    if (profile_) step_ms_[i] += std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }
  stream_.wait();
  ++runs_;
  std::vector<Tensor> outputs;
  outputs.reserve(outputs_.size());
  for (ValueId id : outputs_) {
    const PlanValue& v = values_[id];
    Tensor t(v.dtype, v.shape);
    if (t.byte_size()) std::memcpy(t.raw_data(), data_[id], t.byte_size());
    outputs.push_back(std::move(t));
  }
  return outputs;
}

// ---------------------------------------------------------------- PlanBuilder

PlanBuilder::PlanBuilder(const Graph& graph, const dnnl::engine& engine, WeightCache* weights)
    : graph_(graph), engine_(engine), weights_(weights) {}

const Tensor* PlanBuilder::Constant(ValueId id) const {
  if (id == kNoValue) return nullptr;
  const PlanValue& v = Value(id);
  if (v.constant) return v.constant.get();
  if (!v.deferred()) return nullptr;
  auto& fetched = fetched_[id];
  if (!fetched) fetched = v.offloaded ? graph_.Constant(v.name) : DequantizeConstant(graph_, *v.dequantized_from, v.name);
  return fetched.get();
}

void PlanBuilder::Pin(ValueId id) {
  PlanValue& v = plan_->values_[id];
  if (!v.deferred()) return;
  Constant(id);
  v.constant = std::const_pointer_cast<Tensor>(fetched_[id]);
}

memory PlanBuilder::Track(const PreparedWeight& weight) {
  if (weight.streamed) streamed_[weight.memory.get()] = *weight.streamed;
  return weight.memory;
}

ValueId PlanBuilder::AddValue(PlanValue value) {
  plan_->values_.push_back(std::move(value));
  return static_cast<ValueId>(plan_->values_.size() - 1);
}

ValueId PlanBuilder::NewBufferValue(PlanValue value, int last_use) {
  buffers_.push_back({AlignUp(value.bytes()), node_index_, std::max(last_use, node_index_), 0});
  value.buffer = static_cast<int>(buffers_.size() - 1);
  return AddValue(std::move(value));
}

int PlanBuilder::LastUse(const std::string& name) const {
  auto it = last_use_.find(name);
  return it == last_use_.end() ? node_index_ : it->second;
}

Result<std::unique_ptr<Plan>> PlanBuilder::Build(const std::vector<Shape>& input_shapes) {
  plan_ = std::make_unique<Plan>();
  plan_->engine_ = engine_;
  plan_->stream_ = dnnl::stream(engine_);
  by_name_.clear();
  fused_readers_.clear();
  fused_away_.clear();
  plain_of_.clear();
  buffers_.clear();
  scratchpad_bytes_ = 0;
  channel_blocked_convs_ = !input_shapes.empty() && !input_shapes[0].empty() && PlansWinograd(graph_, input_shapes[0][0]);

  const int end = static_cast<int>(graph_.nodes.size());
  last_use_.clear();
  for (int i = 0; i < end; ++i) {
    for (const std::string& in : graph_.nodes[i].inputs) last_use_[in] = i;
    if (!graph_.nodes[i].fused_sum_input.empty()) last_use_[graph_.nodes[i].fused_sum_input] = i;
  }
  for (const GraphValue& out : graph_.outputs) last_use_[out.name] = end;

  for (const auto& [name, tensor] : graph_.constants) {
    PlanValue v;
    v.name = name;
    v.dtype = tensor->dtype();
    v.shape = tensor->shape();
    v.desc = PlainDesc(v.dtype, v.shape);
    v.constant = tensor;
    by_name_[name] = AddValue(std::move(v));
  }
  for (const auto& [name, c] : graph_.offloaded) {
    PlanValue v;
    v.name = name;
    v.dtype = c.dtype;
    v.shape = c.shape;
    v.desc = PlainDesc(v.dtype, v.shape);
    v.offloaded = true;
    by_name_[name] = AddValue(std::move(v));
  }
  if (input_shapes.size() != graph_.inputs.size()) {
    return Status::InvalidArgument("model expects " + std::to_string(graph_.inputs.size()) + " inputs, got " +
                                   std::to_string(input_shapes.size()));
  }
  node_index_ = 0;
  for (size_t i = 0; i < graph_.inputs.size(); ++i) {
    const GraphValue& in = graph_.inputs[i];
    const Shape& shape = input_shapes[i];
    bool matches = shape.size() == in.shape.size();
    for (size_t d = 0; matches && d < shape.size(); ++d) matches = in.shape[d] < 0 || in.shape[d] == shape[d];
    if (!matches) {
      return Status::InvalidArgument("input '" + in.name + "' has shape " + ShapeToString(shape) +
                                     ", the model expects " + ShapeToString(in.shape) + " (-1: any)");
    }
    PlanValue v;
    v.name = in.name;
    v.dtype = in.dtype;
    v.shape = shape;
    v.desc = PlainDesc(v.dtype, v.shape);
    v.graph_input = true;
    // A place in the arena too, for callers that write the input there
    // (Plan::RunOnArenaInputs); Run binds the caller's tensor instead.
    const ValueId id = NewBufferValue(std::move(v), LastUse(in.name));
    by_name_[in.name] = id;
    plan_->inputs_.push_back(id);
    if (auto q = graph_.activation_quant.find(in.name); q != graph_.activation_quant.end()) {
      by_name_[in.name] = Quantized(id, q->second);
    }
  }

  for (int i = 0; i < end; ++i) {
    node_index_ = i;
    const Status built = BuildNode(graph_.nodes[i], i);
    fetched_.clear();  // offloaded constants are held only while their node is built
    PPML_RETURN_IF_ERROR(built);
  }
  node_index_ = end;
  node_ = nullptr;
  for (const GraphValue& out : graph_.outputs) {
    auto it = by_name_.find(out.name);
    if (it == by_name_.end()) return Status::InvalidArgument("graph output '" + out.name + "' is never produced");
    plan_->outputs_.push_back(Plain(Float(it->second)));
  }
  PPML_RETURN_IF_ERROR(Finalize());
  return std::move(plan_);
}

Status PlanBuilder::BuildNode(const Node& node, int index) {
  node_ = &node;
  const OpEntry* op = FindOp(node.op_type);
  if (!op) return Unsupported("op is not supported by the engine");
  if (fused_readers_.count(&node)) {
    ApplyOutputQuantization(node);
    return Status::Ok();
  }
  int8_aware_ = op->int8_aware;
  bool all_constant = true;
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    if (node.inputs[i].empty()) continue;
    auto it = by_name_.find(node.inputs[i]);
    if (it == by_name_.end()) return Error("input '" + node.inputs[i] + "' is not defined before the node");
    all_constant = all_constant && IsConstant(it->second);
  }
  all_constant = all_constant && node.fused_sum_input.empty();
  if (all_constant && DeferDequantize(node)) return Status::Ok();
  const size_t first_step = plan_->steps_.size();
  const size_t first_value = plan_->values_.size();
  const size_t first_buffer = buffers_.size();
  try {
    PPML_RETURN_IF_ERROR(op->builder(node, *this));
  } catch (const dnnl::error& e) {
    // oneDNN refuses a configuration (an unsupported shape, stride or type mix).
    return Unsupported(std::string("oneDNN cannot run this configuration: ") + e.what());
  } catch (const StatusError& e) {
    return e.status().WithContext(node.Describe());
  }
  for (const std::string& out : node.outputs) {
    if (!out.empty() && !by_name_.count(out) && !fused_away_.count(out)) {
      return Error("the op builder did not define output '" + out + "'");
    }
  }
  if (all_constant && plan_->steps_.size() > first_step) {
    PPML_RETURN_IF_ERROR(FoldConstantNode(first_step, first_value));
    buffers_.resize(first_buffer);
  }
  ApplyOutputQuantization(node);
  return Status::Ok();
}

bool PlanBuilder::DeferDequantize(const Node& node) {
  if (node.op_type != "DequantizeLinear" || node.outputs.size() != 1) return false;
  const auto q = graph_.quantized_constants.find(node.outputs[0]);
  if (q == graph_.quantized_constants.end() || graph_.activation_quant.count(node.outputs[0])) return false;
  PlanValue v;
  v.name = node.outputs[0];
  v.dtype = DataType::kF32;
  v.shape = Value(by_name_.at(q->second.values)).shape;
  v.desc = PlainDesc(v.dtype, v.shape);
  v.dequantized_from = &q->second;
  const std::string name = v.name;
  by_name_[name] = AddValue(std::move(v));
  return true;
}

void PlanBuilder::ApplyOutputQuantization(const Node& node) {
  for (const std::string& name : node.outputs) {
    auto q = graph_.activation_quant.find(name);
    auto defined = by_name_.find(name);
    if (q == graph_.activation_quant.end() || defined == by_name_.end()) continue;
    const ValueId id = defined->second;
    if (IsConstant(id) || (Value(id).dtype != DataType::kF32 && !Value(id).quant)) continue;
    if (Value(id).on_grid == q->second) continue;
    if (Value(id).quant != q->second) by_name_[name] = Quantized(id, q->second);
  }
}

ValueId PlanBuilder::Lookup(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? kNoValue : it->second;
}

ValueId PlanBuilder::RawInput(size_t i) const {
  const std::string& name = node_->Input(i);
  if (name.empty()) return kNoValue;
  auto it = by_name_.find(name);
  return it == by_name_.end() ? kNoValue : it->second;
}

ValueId PlanBuilder::Input(size_t i) {
  const ValueId id = RawInput(i);
  return id == kNoValue || int8_aware_ ? id : Float(id);
}

ValueId PlanBuilder::Reorder(ValueId id, const memory::desc& desc, const dnnl::primitive_attr& attr) {
  const PlanValue& v = Value(id);
  PlanValue copy;
  copy.name = v.name + "#" + std::to_string(plan_->values_.size());
  copy.dtype = desc.data_type() == memory::data_type::f32 ? DataType::kF32
               : desc.data_type() == memory::data_type::u8 ? DataType::kU8
               : desc.data_type() == memory::data_type::s8 ? DataType::kS8
                                                           : DataType::kS32;
  copy.shape = v.shape;
  copy.desc = desc;
  // The copy lives as long as its source: a copy of a copy ("x#7") has no
  // readers by name, only its source's buffer knows them.
  int last_use = LastUse(v.name);
  if (v.buffer >= 0) last_use = std::max(last_use, buffers_[v.buffer].last);
  const ValueId out = NewBufferValue(std::move(copy), last_use);
  dnnl::reorder::primitive_desc pd(engine_, v.desc, engine_, desc, attr);
  AddPrimitive(dnnl::reorder(pd), pd, {{DNNL_ARG_FROM, id}, {DNNL_ARG_TO, out}});
  return out;
}

ValueId PlanBuilder::Float(ValueId id) {
  if (id == kNoValue) return id;
  const PlanValue& v = Value(id);
  if (!v.quant) return id;
  if (auto it = float_of_.find(id); it != float_of_.end()) return it->second;
  dnnl::primitive_attr attr = Attr();
  attr.set_output_scales(0, {v.quant->scale});
  if (v.quant->zero_point != 0) attr.set_zero_points(DNNL_ARG_FROM, 0, {v.quant->zero_point});
  const ValueId out = Reorder(id, WithDataType(v.desc, DataType::kF32), attr);
  float_of_[id] = out;
  return out;
}

ValueId PlanBuilder::Quantized(ValueId id, const QuantParams& params) {
  const PlanValue& v = Value(id);
  dnnl::primitive_attr attr = Attr();
  const float from_scale = v.quant ? v.quant->scale : 1.f;
  attr.set_output_scales(0, {from_scale / params.scale});
  if (v.quant && v.quant->zero_point != 0) attr.set_zero_points(DNNL_ARG_FROM, 0, {v.quant->zero_point});
  if (params.zero_point != 0) attr.set_zero_points(DNNL_ARG_TO, 0, {params.zero_point});
  const ValueId out = Reorder(id, WithDataType(v.desc, params.dtype), attr);
  plan_->values_[out].quant = params;
  return out;
}

void PlanBuilder::SetQuant(ValueId id, const QuantParams& params) { plan_->values_[id].quant = params; }

void PlanBuilder::SetOnGrid(ValueId id, const QuantParams& params) { plan_->values_[id].on_grid = params; }

PlanBuilder::Readers PlanBuilder::CountReaders(const std::string& name) const {
  Readers readers;
  for (const Node& n : graph_.nodes) {
    if (n.fused_sum_input == name) ++readers.as_stored;
    if (std::find(n.inputs.begin(), n.inputs.end(), name) == n.inputs.end()) continue;
    const OpEntry* op = FindOp(n.op_type);
    ++(op && op->int8_aware ? readers.as_stored : readers.as_float);
  }
  for (const GraphValue& out : graph_.outputs) readers.as_float += out.name == name;
  return readers;
}

const Node* PlanBuilder::OnlyReader(const std::string& name) const {
  const Node* reader = nullptr;
  for (const Node& n : graph_.nodes) {
    const auto reads = std::count(n.inputs.begin(), n.inputs.end(), name) + (n.fused_sum_input == name);
    if (reads == 0) continue;
    if (reads > 1 || reader) return nullptr;
    reader = &n;
  }
  for (const GraphValue& out : graph_.outputs) {
    if (out.name == name) return nullptr;
  }
  return reader;
}

bool PlanBuilder::ReadOnlyAsFloat(const std::string& name) const { return CountReaders(name).as_stored == 0; }

bool PlanBuilder::ReadOnlyAsStored(const std::string& name) const {
  const Readers readers = CountReaders(name);
  return readers.as_float == 0 && readers.as_stored > 0;
}

Result<std::vector<int64_t>> PlanBuilder::ConstantInts(size_t input_index) const {
  const ValueId id = RawInput(input_index);
  if (id == kNoValue) return Error("input " + std::to_string(input_index) + " is missing");
  const Tensor* t = Constant(id);
  if (!t) {
    return Unsupported("input '" + node_->Input(input_index) +
                       "' must be a constant (computed shapes/axes at run time are not supported)");
  }
  std::vector<int64_t> out;
  switch (t->dtype()) {
    case DataType::kS64: for (int64_t v : t->values<int64_t>()) out.push_back(v); break;
    case DataType::kS32: for (int32_t v : t->values<int32_t>()) out.push_back(v); break;
    default: return Error("input '" + node_->Input(input_index) + "' must be an integer tensor");
  }
  return out;
}

ValueId PlanBuilder::Plain(ValueId id) {
  const PlanValue& v = Value(id);
  if (IsConstant(id) || !HasDnnlType(v.dtype) || v.desc == PlainDesc(v.dtype, v.shape)) return id;
  if (auto it = plain_of_.find(id); it != plain_of_.end()) return it->second;
  const ValueId plain = InLayout(id, PlainDesc(v.dtype, v.shape));
  plain_of_[id] = plain;
  return plain;
}

ValueId PlanBuilder::InLayout(ValueId id, const memory::desc& desc) {
  if (Value(id).desc == desc) return id;
  const ValueId out = Reorder(id, desc, Attr());
  plan_->values_[out].quant = Value(id).quant;
  return out;
}

ValueId PlanBuilder::DefineOutput(size_t index, DataType dtype, const Shape& shape, const memory::desc& desc,
                                  ValueId in_place_of, bool* in_place) {
  return DefineNamedOutput(index < node_->outputs.size() ? node_->outputs[index] : "", dtype, shape, desc,
                           in_place_of, in_place);
}

ValueId PlanBuilder::DefineOutputOfFusedReader(const Node& reader, DataType dtype, const Shape& shape,
                                               const memory::desc& desc) {
  fused_readers_.insert(&reader);
  fused_away_.insert(node_->outputs[0]);
  return DefineNamedOutput(reader.outputs[0], dtype, shape, desc, kNoValue, nullptr);
}

ValueId PlanBuilder::DefineNamedOutput(const std::string& name, DataType dtype, const Shape& shape,
                                       const memory::desc& desc, ValueId in_place_of, bool* in_place) {
  PlanValue v;
  v.name = name;
  v.dtype = dtype;
  v.shape = shape;
  v.desc = desc;
  const int last_use = v.name.empty() ? node_index_ : LastUse(v.name);
  bool reused = false;
  ValueId id;
  if (in_place_of != kNoValue && Value(in_place_of).buffer >= 0) {
    Buffer& b = buffers_[Value(in_place_of).buffer];
    // Bytes are reused as they are: the layout must match, the element type
    // may differ in name only (a residual summed as s8 into a u8 output).
    const PlanValue& src = Value(in_place_of);
    const bool same_layout = ElementSize(src.dtype) == ElementSize(dtype) && WithDataType(src.desc, dtype) == desc;
    if (b.last <= node_index_ && b.bytes >= AlignUp(v.bytes()) && same_layout) {
      v.buffer = Value(in_place_of).buffer;
      b.last = std::max(b.last, last_use);
      id = AddValue(std::move(v));
      reused = true;
    }
  }
  if (!reused) id = NewBufferValue(std::move(v), last_use);
  if (in_place) *in_place = reused;
  if (!Value(id).name.empty()) by_name_[Value(id).name] = id;
  return id;
}

ValueId PlanBuilder::DefinePlainOutput(size_t index, DataType dtype, const Shape& shape, ValueId in_place_of) {
  return DefineOutput(index, dtype, shape, PlainDesc(dtype, shape), in_place_of);
}

ValueId PlanBuilder::AliasValue(ValueId source, const Shape& shape, std::optional<memory::desc> desc) {
  const PlanValue& src = Value(source);
  PlanValue v;
  v.name = src.name + "#view" + std::to_string(plan_->values_.size());
  v.dtype = src.dtype;
  v.shape = shape;
  // Same shape: keep the source's layout (an Identity on a blocked tensor costs nothing).
  v.desc = desc ? *desc : shape == src.shape ? src.desc : PlainDesc(v.dtype, shape);
  v.quant = src.quant;
  if (IsConstant(source)) {
    Pin(source);
    v.constant = src.constant;
    if (shape != src.shape) {
      v.constant = Accounted(graph_.env.budget, src.constant->Reshaped(shape).value(), "constant '" + v.name + "'");
    }
    return AddValue(std::move(v));
  }
  v.alias_of = src.alias_of != kNoValue ? src.alias_of : source;
  v.buffer = Value(v.alias_of).buffer;
  return AddValue(std::move(v));
}

ValueId PlanBuilder::DefineAliasOutput(size_t index, ValueId source, const Shape& shape) {
  const ValueId id = AliasValue(source, shape);
  PlanValue& v = plan_->values_[id];
  v.name = node_->outputs[index];
  if (v.buffer >= 0) buffers_[v.buffer].last = std::max(buffers_[v.buffer].last, LastUse(v.name));
  by_name_[v.name] = id;
  return id;
}

void PlanBuilder::DefineConstantOutput(size_t index, Tensor value) {
  PlanValue v;
  v.name = node_->outputs[index];
  v.dtype = value.dtype();
  v.shape = value.shape();
  v.desc = PlainDesc(v.dtype, v.shape);
  v.constant = Accounted(graph_.env.budget, std::move(value), "constant '" + v.name + "'");
  const ValueId id = AddValue(std::move(v));
  if (!Value(id).name.empty()) by_name_[Value(id).name] = id;
}

dnnl::primitive_attr PlanBuilder::Attr() const {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

void PlanBuilder::AddPrimitive(const dnnl::primitive& primitive, const dnnl::primitive_desc_base& pd,
                               std::vector<std::pair<int, ValueId>> value_args,
                               std::unordered_map<int, memory> fixed_args) {
  Step step;
  step.label = node_ ? node_->name : "output";
  step.op = node_ ? node_->op_type : "";
  step.kernel = std::string(dnnl_prim_kind2str(static_cast<dnnl_primitive_kind_t>(pd.get_kind()))) + " " +
                pd.impl_info_str();
  step.node = node_index_;
  step.primitive = primitive;
  step.value_args = std::move(value_args);
  step.fixed_args = std::move(fixed_args);
  for (auto [arg, id] : step.value_args) Pin(id);
  for (const auto& [arg, m] : step.fixed_args) {
    if (auto it = streamed_.find(m.get()); it != streamed_.end()) step.streamed_args.push_back({arg, it->second});
  }
  scratchpad_bytes_ = std::max(scratchpad_bytes_, pd.scratchpad_desc().get_size());
  if (IsReferenceImpl(pd)) ++plan_->reference_kernels_;
  plan_->steps_.push_back(std::move(step));
}

void PlanBuilder::AddCustom(CustomKernel kernel) {
  // A reference kernel reads its constant inputs at run time.
  if (node_) {
    for (size_t i = 0; i < node_->inputs.size(); ++i) {
      if (const ValueId id = RawInput(i); id != kNoValue) Pin(id);
    }
  }
  Step step;
  step.label = node_ ? node_->name : "output";
  step.op = node_ ? node_->op_type : "";
  step.kernel = "engine";
  step.custom = std::move(kernel);
  plan_->steps_.push_back(std::move(step));
}

void PlanBuilder::AddCopy(ValueId from, ValueId to) {
  dnnl::reorder::primitive_desc pd(engine_, Value(from).desc, engine_, Value(to).desc, Attr());
  AddPrimitive(dnnl::reorder(pd), pd, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
}

memory PlanBuilder::ConstantMemory(ValueId id, const memory::desc& source_desc, const memory::desc& wanted,
                                   float source_scale) {
  const PlanValue& v = Value(id);
  if (v.constant && source_desc == wanted && source_scale == 1.f &&
      !(graph_.env.offload && wanted.get_size() >= graph_.env.offload_min_bytes)) {
    return memory(wanted, engine_, v.constant->raw_data());
  }
  if (v.dequantized_from && !v.constant) {
    // Reordered once from the computed floats, which the cache releases when pruned.
    Constant(id);
    return Track(weights_->Get(engine_, graph_, fetched_.at(id), "", source_desc, wanted, source_scale));
  }
  return Track(weights_->Get(engine_, graph_, v.constant, v.offloaded ? v.name : "", source_desc, wanted, source_scale));
}

memory PlanBuilder::OwnedConstantMemory(Tensor tensor, const memory::desc& wanted) {
  const memory::desc plain = PlainDesc(tensor.dtype(), tensor.shape());
  memory src(plain, engine_, tensor.raw_data());
  const std::string label = "'" + (node_ ? node_->name : std::string("plan")) + "'";
  PreparedWeight prepared = PrepareWeight(engine_, graph_.env, src, wanted, label);
  plan_->owned_reservations_.push_back(std::move(prepared.reservation));
  if (!prepared.streamed) {
    // Keep the memory object (it owns its bytes) alive with the plan via the step's fixed args.
    return prepared.memory;
  }
  return Track(prepared);
}

Status PlanBuilder::Error(const std::string& what) const {
  return Status::InvalidArgument((node_ ? node_->Describe() + ": " : "") + what);
}

Status PlanBuilder::Unsupported(const std::string& what) const {
  return Status::Unsupported((node_ ? node_->Describe() + ": " : "") + what);
}

// Runs the steps just added for an all-constant node, once, on temporary
// memory, and turns the node's outputs into constants.
Status PlanBuilder::FoldConstantNode(size_t first_step, size_t first_value) {
  auto& values = plan_->values_;
  std::vector<void*> data(values.size(), nullptr);
  std::vector<memory> memories(values.size());
  std::vector<std::shared_ptr<void>> storage;
  size_t storage_bytes = scratchpad_bytes_;
  for (size_t id = first_value; id < values.size(); ++id) {
    if (!values[id].constant && values[id].alias_of == kNoValue) storage_bytes += AlignUp(values[id].bytes());
  }
  PPML_ASSIGN_OR_RETURN(Reservation reserved,
                        Reservation::Make(graph_.env.budget, storage_bytes, "folding " + node_->Describe()));
  for (size_t id = 0; id < values.size(); ++id) {
    PlanValue& v = values[id];
    if (v.constant) {
      data[id] = const_cast<void*>(v.constant->raw_data());
    } else if (id >= first_value && v.alias_of == kNoValue) {
      storage.push_back(AlignedBytes(v.bytes()));
      data[id] = storage.back().get();
    }
  }
  for (size_t id = first_value; id < values.size(); ++id) {
    if (values[id].alias_of != kNoValue) data[id] = data[values[id].alias_of];
  }
  for (size_t id = 0; id < values.size(); ++id) {
    if (data[id] && values[id].desc.get_size() > 0) memories[id] = memory(values[id].desc, engine_, data[id]);
  }
  auto scratch = AlignedBytes(scratchpad_bytes_);
  memory scratch_memory({{static_cast<memory::dim>(std::max<size_t>(scratchpad_bytes_, 1))},
                         memory::data_type::u8, tag::a}, engine_, scratch.get());
  dnnl::stream stream(engine_);
  RunContext context(&data, &values);
  for (size_t s = first_step; s < plan_->steps_.size(); ++s) {
    Step& step = plan_->steps_[s];
    if (step.primitive) {
      std::unordered_map<int, memory> args = step.fixed_args;
      for (auto [arg, id] : step.value_args) args[arg] = memories[id];
      args[DNNL_ARG_SCRATCHPAD] = scratch_memory;
      step.primitive->execute(stream, args);
    } else {
      PPML_RETURN_IF_ERROR(step.custom(context));
    }
  }
  stream.wait();
  for (const std::string& name : node_->outputs) {
    if (name.empty()) continue;
    const ValueId id = by_name_[name];
    PlanValue& v = values[id];
    if (v.constant) continue;
    auto t = NewAccountedTensor(graph_.env.budget, v.dtype, v.shape, "constant '" + name + "'");
    const memory::desc plain = PlainDesc(v.dtype, v.shape);
    if (v.desc.get_size() == 0 || v.desc == plain) {
      if (t->byte_size()) std::memcpy(t->raw_data(), data[id], t->byte_size());
    } else {
      memory dst(plain, engine_, t->raw_data());
      dnnl::reorder(memories[id], dst).execute(stream, memories[id], dst);
      stream.wait();
    }
    v.constant = std::move(t);
    v.desc = plain;
    v.buffer = -1;
    v.alias_of = kNoValue;
  }
  plan_->steps_.resize(first_step);
  for (size_t id = first_value; id < values.size(); ++id) {
    if (!values[id].constant) values[id].buffer = -1;
  }
  for (auto it = plain_of_.begin(); it != plain_of_.end();) {
    it = static_cast<size_t>(it->second) >= first_value ? plain_of_.erase(it) : std::next(it);
  }
  return Status::Ok();
}

// Places buffers in the arena (greedy, largest first, sharing bytes between
// buffers whose node intervals do not overlap) and binds every step's args.
Status PlanBuilder::Finalize() {
  // A streamed weight's slot is live from the node of the weight `lookahead`
  // places before it in the run (when the store may start filling it) to its
  // own; the first ones from the start of the run.
  struct StreamedSlot {
    size_t step = 0;
    int arg = 0;
    uint64_t handle = 0;
    int buffer = 0;
  };
  std::vector<StreamedSlot> streamed;
  const size_t lookahead = graph_.env.store ? static_cast<size_t>(std::max(0, graph_.env.store->lookahead())) : 0;
  for (size_t s = 0; s < plan_->steps_.size(); ++s) {
    const Step& step = plan_->steps_[s];
    for (auto [arg, handle] : step.streamed_args) {
      const size_t position = streamed.size();
      const int first = lookahead == 0         ? step.node
                        : position < lookahead ? 0
                                               : plan_->steps_[streamed[position - lookahead].step].node;
      buffers_.push_back({AlignUp(step.fixed_args.at(arg).get_desc().get_size()), first, step.node, 0});
      streamed.push_back({s, arg, handle, static_cast<int>(buffers_.size() - 1)});
    }
  }
  std::vector<int> order(buffers_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return buffers_[a].bytes > buffers_[b].bytes; });
  std::vector<int> placed;
  size_t arena = 0;
  for (int b : order) {
    Buffer& buf = buffers_[b];
    std::vector<std::pair<size_t, size_t>> busy;
    for (int p : placed) {
      const Buffer& o = buffers_[p];
      if (o.first <= buf.last && buf.first <= o.last) busy.push_back({o.offset, o.offset + o.bytes});
    }
    std::sort(busy.begin(), busy.end());
    size_t offset = 0;
    for (auto [lo, hi] : busy) {
      if (offset + buf.bytes <= lo) break;
      offset = std::max(offset, hi);
    }
    buf.offset = offset;
    arena = std::max(arena, offset + buf.bytes);
    placed.push_back(b);
  }
  Plan& plan = *plan_;
  PPML_ASSIGN_OR_RETURN(plan.arena_reservation_,
                        Reservation::Make(graph_.env.budget, arena, "the arena (activations and streamed weights)"));
  PPML_ASSIGN_OR_RETURN(plan.scratchpad_reservation_,
                        Reservation::Make(graph_.env.budget, scratchpad_bytes_, "the oneDNN scratchpad"));
  plan.arena_bytes_ = arena;
  plan.arena_ = AlignedBytes(arena);
  plan.scratchpad_ = AlignedBytes(scratchpad_bytes_);
  plan.scratchpad_memory_ = memory({{static_cast<memory::dim>(std::max<size_t>(scratchpad_bytes_, 1))},
                                    memory::data_type::u8, tag::a}, engine_, plan.scratchpad_.get());
  const size_t n = plan.values_.size();
  plan.data_.assign(n, nullptr);
  plan.memories_.assign(n, memory());
  char* base = static_cast<char*>(plan.arena_.get());
  for (size_t id = 0; id < n; ++id) {
    PlanValue& v = plan.values_[id];
    if (v.constant) {
      plan.data_[id] = const_cast<void*>(v.constant->raw_data());
    } else if (v.buffer >= 0) {
      plan.data_[id] = base + buffers_[v.buffer].offset;
    }
    if (v.alias_of != kNoValue && plan.values_[v.alias_of].graph_input) plan.input_aliases_.push_back(id);
  }
  for (size_t id = 0; id < n; ++id) {
    const PlanValue& v = plan.values_[id];
    // A view at an offset (a Slice) reports size 0 in oneDNN 2.6, yet holds elements.
    if (v.desc.get_size() > 0 || v.desc.data.offset0 != 0) plan.memories_[id] = memory(v.desc, engine_, plan.data_[id]);
  }
  for (ValueId id : plan.inputs_) plan.arena_inputs_.push_back(plan.data_[id]);
  plan.store_ = graph_.env.store;
  for (Step& step : plan.steps_) {
    if (!step.primitive) continue;
    step.bound_args = step.fixed_args;
    for (auto [arg, id] : step.value_args) {
      if (!plan.memories_[id]) return Status::Internal("value '" + plan.values_[id].name + "' has no oneDNN memory");
      step.bound_args[arg] = plan.memories_[id];
    }
    step.bound_args[DNNL_ARG_SCRATCHPAD] = plan.scratchpad_memory_;
  }
  for (const StreamedSlot& slot : streamed) {
    Step& step = plan.steps_[slot.step];
    const memory::desc desc = step.fixed_args.at(slot.arg).get_desc();
    void* bytes = base + buffers_[slot.buffer].offset;
    step.bound_args[slot.arg] = memory(desc, engine_, bytes);
    plan.stream_order_.push_back({slot.handle, {static_cast<std::byte*>(bytes), desc.get_size()}});
    plan.streamed_bytes_ += desc.get_size();
  }
  plan.profile_ = graph_.profile;
  if (plan.profile_) plan.step_ms_.assign(plan.steps_.size(), 0.0);
  return Status::Ok();
}

}  // namespace ppml::engine
