// Model: ONNX import, load-time passes, and a plan per input-shape set.
#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include <oneapi/dnnl/dnnl.hpp>

#include "engine/batch_split.h"
#include "engine/engine.h"
#include "engine/memory.h"
#include "engine/onnx_import.h"
#include "engine/ops.h"
#include "engine/passes.h"
#include "engine/plan.h"

namespace ppml::engine {
namespace {

class OnnxModel final : public Model {
 public:
  OnnxModel(Graph graph, PassStats passes, int nodes_in_file, size_t max_plans, size_t split_batch_max_weight_bytes)
      : max_plans_(std::max<size_t>(max_plans, 1)), graph_(std::move(graph)),
        engine_(dnnl::engine::kind::cpu, 0), weights_(graph_.env) {
    stats_.nodes_in_file = nodes_in_file;
    stats_.folded_batchnorms = passes.folded_batchnorms;
    stats_.fused_layer_norms = passes.fused_layer_norms;
    stats_.fused_gelus = passes.fused_gelus;
    stats_.fused_gated_activations = passes.fused_gated_activations;
    stats_.fused_post_ops = passes.fused_post_ops;
    for (const auto& [name, t] : graph_.constants) stats_.weight_bytes += t->byte_size();
    for (const auto& [name, c] : graph_.offloaded) stats_.weight_bytes += c.bytes();
    split_batch_ = stats_.weight_bytes <= split_batch_max_weight_bytes;
    stats_.quantized_tensors = static_cast<int>(graph_.activation_quant.size());
    for (const auto& in : graph_.inputs) inputs_.push_back({in.name, in.dtype, in.shape});
    for (const auto& out : graph_.outputs) outputs_.push_back({out.name, out.dtype, out.shape});
  }

  // Builds the plan for the model's own shapes (symbolic dimensions as 1) so
  // that unsupported ops and attributes surface at load, not at the first request.
  Status Validate() {
    std::vector<Shape> shapes;
    bool symbolic = false;
    for (const auto& in : graph_.inputs) {
      Shape s = in.shape;
      for (int64_t& d : s) {
        if (d < 0) {
          d = 1;
          symbolic = true;
        }
      }
      shapes.push_back(std::move(s));
    }
    Result<Plan*> plan = PlanFor(shapes);
    // With symbolic dimensions a guess of 1 may be invalid for the model; only
    // an unsupported op or attribute, or a memory budget it cannot fit, is
    // then a load error.
    const bool load_error = !symbolic || plan.status().code() == StatusCode::kUnsupported ||
                            plan.status().code() == StatusCode::kResourceExhausted;
    if (!plan.ok() && load_error) return plan.status();
    return Status::Ok();
  }

  void ReleaseCachedPlans() override {
    if (plans_.empty()) return;
    last_run_ = nullptr;
    plans_.clear();
    weights_.Prune();
  }

  const std::vector<TensorInfo>& inputs() const override { return inputs_; }
  const std::vector<TensorInfo>& outputs() const override { return outputs_; }
  ModelStats stats() const override { return stats_; }
  std::vector<StepTime> Profile() const override { return last_run_ ? last_run_->Profile() : std::vector<StepTime>{}; }

  Result<std::vector<Tensor>> RunWith(std::span<const Shape> shapes, const InputWriter& write) override {
    if (shapes.size() != inputs_.size()) {
      return Status::InvalidArgument("the model takes " + std::to_string(inputs_.size()) + " inputs, got " +
                                     std::to_string(shapes.size()) + " shapes");
    }
    try {
      const std::vector<Shape> shape_list(shapes.begin(), shapes.end());
      PPML_ASSIGN_OR_RETURN(std::optional<Lanes> lanes, LanesFor(shape_list));
      if (lanes) {
        // The slices' plans each have their own arena: the inputs go to one
        // accounted place first, which the slices then read in place.
        std::vector<std::shared_ptr<Tensor>> held;
        std::vector<std::span<std::byte>> places;
        std::vector<void*> data;
        for (size_t i = 0; i < shapes.size(); ++i) {
          held.push_back(
              NewAccountedTensor(graph_.env.budget, inputs_[i].dtype, shapes[i], "input '" + inputs_[i].name + "'"));
          places.emplace_back(static_cast<std::byte*>(held.back()->raw_data()), held.back()->byte_size());
          data.push_back(held.back()->raw_data());
        }
        PPML_RETURN_IF_ERROR(write(places));
        return RunLanes(*lanes, shape_list, data);
      }
      PPML_ASSIGN_OR_RETURN(Plan * plan, PlanFor(shape_list));
      std::vector<std::span<std::byte>> places;
      for (size_t i = 0; i < shapes.size(); ++i) places.push_back(plan->arena_input(i));
      PPML_RETURN_IF_ERROR(write(places));
      stats_.batch_lanes = 1;
      return plan->RunOnArenaInputs();
    } catch (const StatusError& e) {
      return e.status();
    }
  }

  Result<std::vector<Tensor>> Run(std::span<const Tensor> inputs) override {
    if (inputs.size() != inputs_.size()) {
      return Status::InvalidArgument("the model takes " + std::to_string(inputs_.size()) + " inputs, got " +
                                     std::to_string(inputs.size()));
    }
    std::vector<Shape> shapes;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].dtype() != inputs_[i].dtype) {
        return Status::InvalidArgument("input '" + inputs_[i].name + "' must be " + DataTypeName(inputs_[i].dtype) +
                                       ", got " + DataTypeName(inputs[i].dtype()));
      }
      shapes.push_back(inputs[i].shape());
    }
    std::vector<void*> data;
    for (const Tensor& t : inputs) data.push_back(const_cast<void*>(t.raw_data()));
    try {
      PPML_ASSIGN_OR_RETURN(std::optional<Lanes> lanes, LanesFor(shapes));
      if (lanes) return RunLanes(*lanes, shapes, data);
      PPML_ASSIGN_OR_RETURN(Plan * plan, PlanFor(shapes));
      stats_.batch_lanes = 1;
      return plan->RunOn(data);
    } catch (const StatusError& e) {
      return e.status();
    }
  }

 private:
  // A batch run as one slice per thread side by side, each slice by its own
  // plan on single-threaded kernels: no synchronisation between the threads
  // inside a layer, and each core keeps its own slice's activations in its
  // own cache. Only for graphs that keep samples apart (batch_split.h).
  struct Lanes {
    std::vector<Plan*> plans;
    std::vector<int64_t> rows;  // samples per slice, in batch order
  };

  // The lanes to run a batch of these input shapes on, nullopt to run it whole.
  Result<std::optional<Lanes>> LanesFor(const std::vector<Shape>& shapes) {
    const std::optional<Lanes> kWhole;
    const int threads = omp_get_max_threads();
    if (!split_batch_ || threads < 2 || shapes.empty() || graph_.env.offload || graph_.linear_delegate) {
      return kWhole;
    }
    const int64_t batch = shapes[0].empty() ? 0 : shapes[0][0];
    for (const Shape& s : shapes) {
      if (s.empty() || s[0] != batch) return kWhole;
    }
    if (batch < 2) return kWhole;
    for (const TensorInfo& in : inputs_) {
      if (in.shape.empty() || in.shape[0] >= 0) return kWhole;  // the model fixes its batch
    }
    const int64_t count = std::min<int64_t>(threads, batch);
    Lanes lanes;
    for (int64_t lane = 0; lane < count; ++lane) lanes.rows.push_back(batch / count + (lane < batch % count ? 1 : 0));
    if (auto known = splittable_.find(lanes.rows[0]); known != splittable_.end() && !known->second) return kWhole;
    // Building one lane's plan must not evict another's (a small max_plans, a tight budget).
    struct Unpin {
      std::set<PlanKey>& pinned;
      ~Unpin() { pinned.clear(); }
    } unpin{pinned_};
    for (int64_t lane = 0; lane < count; ++lane) {
      std::vector<Shape> slice = shapes;
      for (Shape& s : slice) s[0] = lanes.rows[lane];
      Result<Plan*> plan = PlanFor(slice, static_cast<int>(lane));
      // A shape the model refuses: the whole batch's plan reports it in the caller's terms.
      if (!plan.ok() && plan.status().code() == StatusCode::kInvalidArgument) return kWhole;
      PPML_RETURN_IF_ERROR(plan.status());
      if (lane == 0 && !Splittable(lanes.rows[0], **plan)) {
        if (last_run_ == *plan) last_run_ = nullptr;
        plans_.erase({slice, 0});
        return kWhole;
      }
      pinned_.insert({slice, static_cast<int>(lane)});
      lanes.plans.push_back(*plan);
    }
    return std::optional<Lanes>(std::move(lanes));
  }

  // Whether slices of `rows` samples give what the whole batch gives; decided
  // once per slice size from a slice's plan (its shapes).
  bool Splittable(int64_t rows, const Plan& plan) {
    if (auto known = splittable_.find(rows); known != splittable_.end()) return known->second;
    const std::optional<std::string> why =
        WhyBatchNotSplittable(graph_, rows, [&](const std::string& name) { return plan.ValueShape(name); });
    return splittable_[rows] = !why;
  }

  Result<std::vector<Tensor>> RunLanes(const Lanes& lanes, const std::vector<Shape>& shapes,
                                       std::span<void* const> inputs) {
    const size_t count = lanes.plans.size();
    std::vector<Result<std::vector<Tensor>>> results;
    for (size_t lane = 0; lane < count; ++lane) results.emplace_back(Status::Internal("the slice did not run"));
    std::vector<int64_t> first_row(count, 0);
    for (size_t lane = 1; lane < count; ++lane) first_row[lane] = first_row[lane - 1] + lanes.rows[lane - 1];
    std::vector<size_t> row_bytes;
    for (size_t i = 0; i < inputs.size(); ++i) {
      row_bytes.push_back(static_cast<size_t>(ElementCount(shapes[i]) / shapes[i][0]) * ElementSize(inputs_[i].dtype));
    }
#pragma omp parallel for num_threads(static_cast<int>(count)) schedule(static, 1)
    for (size_t lane = 0; lane < count; ++lane) {
      // Kernels inside the lane run on this thread alone (built that way, see PlanFor).
      omp_set_num_threads(1);
      std::vector<void*> slice;
      for (size_t i = 0; i < inputs.size(); ++i) {
        slice.push_back(static_cast<std::byte*>(inputs[i]) + first_row[lane] * row_bytes[i]);
      }
      // Nothing may leave an OpenMP region by exception.
      try {
        results[lane] = lanes.plans[lane]->RunOn(slice);
      } catch (const StatusError& e) {
        results[lane] = e.status();
      } catch (const std::exception& e) {
        results[lane] = Status::Internal(std::string("slice of the batch: ") + e.what());
      }
    }
    last_run_ = lanes.plans[0];
    stats_.batch_lanes = static_cast<int>(count);
    stats_.macs = stats_.arena_bytes = 0;
    for (const Plan* plan : lanes.plans) {
      stats_.macs += plan->macs();
      stats_.arena_bytes += plan->arena_bytes();
    }
    for (Result<std::vector<Tensor>>& r : results) PPML_RETURN_IF_ERROR(r.status());
    // Each output: the slices' rows one after the other.
    std::vector<Tensor> outputs;
    for (size_t o = 0; o < results[0].value().size(); ++o) {
      Shape shape = results[0].value()[o].shape();
      shape[0] = first_row.back() + lanes.rows.back();
      Tensor out(results[0].value()[o].dtype(), shape);
      std::byte* dst = static_cast<std::byte*>(out.raw_data());
      for (size_t lane = 0; lane < count; ++lane) {
        const Tensor& part = results[lane].value()[o];
        std::memcpy(dst, part.raw_data(), part.byte_size());
        dst += part.byte_size();
      }
      outputs.push_back(std::move(out));
    }
    return outputs;
  }

  // The plan for these input shapes: for the whole batch (lane -1) on the
  // process's threads, or for one slice of it (lane >= 0) on one thread.
  Result<Plan*> PlanFor(const std::vector<Shape>& shapes, int lane = -1) {
    const PlanKey key{shapes, lane};
    auto it = plans_.find(key);
    if (it != plans_.end()) {
      it->second.last_used = ++uses_;
      last_run_ = it->second.plan.get();
      return last_run_;
    }
    // Bound the cache before building: a client sending ever new shapes must
    // not grow memory without limit, and the evicted arena frees budget.
    while (plans_.size() >= max_plans_ && EvictLeastRecentlyUsed()) {
    }
    for (;;) {
      PlanBuilder builder(graph_, engine_, &weights_);
      // oneDNN sizes a kernel's work split for the threads it sees when built.
      const int threads = omp_get_max_threads();
      if (lane >= 0) omp_set_num_threads(1);
      Result<std::unique_ptr<Plan>> built = builder.Build(shapes);
      omp_set_num_threads(threads);
      if (built.ok()) {
        std::unique_ptr<Plan> plan = std::move(built).value();
        stats_.kernels = static_cast<int>(plan->step_count());
        stats_.arena_bytes = plan->arena_bytes();
        stats_.macs = plan->macs();
        stats_.winograd_convs = plan->winograd_convs();
        stats_.fused_depthwise = plan->fused_depthwise();
        stats_.reference_kernels = plan->reference_kernels();
        stats_.offloaded_bytes = weights_.offloaded_bytes();
        stats_.streamed_bytes_per_run = plan->streamed_bytes();
        ++stats_.plans_built;
        last_run_ = plan.get();
        plans_[key] = CachedPlan{std::move(plan), ++uses_};
        return last_run_;
      }
      // Over the memory budget: the arenas of plans kept for other batch
      // sizes may be what stands in the way (a batcher meets every size up
      // to its maximum); drop the least recently used and try again.
      if (built.status().code() != StatusCode::kResourceExhausted || !EvictLeastRecentlyUsed()) return built.status();
    }
  }

  // False when every plan kept is pinned (nothing to evict).
  bool EvictLeastRecentlyUsed() {
    auto oldest = plans_.end();
    for (auto it = plans_.begin(); it != plans_.end(); ++it) {
      if (pinned_.count(it->first)) continue;
      if (oldest == plans_.end() || it->second.last_used < oldest->second.last_used) oldest = it;
    }
    if (oldest == plans_.end()) return false;
    if (oldest->second.plan.get() == last_run_) last_run_ = nullptr;
    plans_.erase(oldest);
    weights_.Prune();
    return true;
  }

  struct CachedPlan {
    std::unique_ptr<Plan> plan;
    uint64_t last_used = 0;
  };

  using PlanKey = std::pair<std::vector<Shape>, int>;  // input shapes, lane (-1: the whole batch)

  size_t max_plans_;
  bool split_batch_ = false;  // weights small enough (EngineOptions::split_batch_max_weight_bytes)
  std::map<int64_t, bool> splittable_;  // per slice size
  Graph graph_;
  dnnl::engine engine_;
  WeightCache weights_;
  std::map<PlanKey, CachedPlan> plans_;
  std::set<PlanKey> pinned_;  // lanes of the batch being set up
  uint64_t uses_ = 0;
  Plan* last_run_ = nullptr;  // for Profile
  std::vector<TensorInfo> inputs_, outputs_;
  ModelStats stats_;
};

Status RunLoadPasses(Graph& graph, const EngineOptions& options, PassStats* passes, bool residual_sums = true) {
  PPML_RETURN_IF_ERROR(PropagateConstantIdentities(graph));
  PPML_RETURN_IF_ERROR(DecomposeQLinearOps(graph));
  if (!options.literal_qdq) PPML_RETURN_IF_ERROR(CollapseQdqPairs(graph));
  PPML_RETURN_IF_ERROR(HoistConstantNodes(graph));
  if (!options.fuse) return Status::Ok();
  PPML_RETURN_IF_ERROR(FoldBatchNorms(graph, passes));
  PPML_RETURN_IF_ERROR(FuseLayerNorms(graph, passes));
  PPML_RETURN_IF_ERROR(FuseGelus(graph, passes));
  PPML_RETURN_IF_ERROR(FuseGatedActivations(graph, passes));
  // A delegate returns a layer's plain result: nothing may be fused into it.
  if (!options.linear_delegate) PPML_RETURN_IF_ERROR(FusePostOps(graph, passes, residual_sums));
  return Status::Ok();
}

Result<std::unique_ptr<Model>> Load(std::span<const std::byte> bytes, const std::string& name,
                                    const EngineOptions& options) {
  const ConstantEnv env{options.memory_budget, options.weight_store, options.offload_weights,
                        options.offload_min_bytes};
  PPML_ASSIGN_OR_RETURN(Graph graph, ImportOnnx(bytes, name, env));
  const int nodes_in_file = static_cast<int>(graph.nodes.size());
  static const std::set<std::string> kDecomposed = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"};
  for (const Node& n : graph.nodes) {
    if (!FindOp(n.op_type) && !kDecomposed.count(n.op_type)) {
      return Status::Unsupported(name + ": " + n.Describe() + ": op " + n.op_type + " is not supported by the engine");
    }
  }
  PassStats passes;
  PPML_RETURN_IF_ERROR(RunLoadPasses(graph, options, &passes));
  graph.linear_delegate = options.linear_delegate;
  graph.winograd = options.winograd;
  graph.fuse_depthwise = options.fuse_depthwise;
  graph.profile = options.profile;
  auto model = std::make_unique<OnnxModel>(std::move(graph), passes, nodes_in_file, options.max_plans,
                                           options.split_batch_max_weight_bytes);
  PPML_RETURN_IF_ERROR(model->Validate().WithContext(name));
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace

Result<std::unique_ptr<Model>> Model::LoadBytes(std::span<const std::byte> bytes, const std::string& name,
                                                const EngineOptions& options) {
  SetThreads(options.threads);
  try {
    return Load(bytes, name, options);
  } catch (const StatusError& e) {
    return e.status().WithContext(name);
  } catch (const std::exception& e) {
    return Status::Internal(name + ": " + e.what());
  }
}

Result<std::map<std::string, FusedOutput>> FusedOutputs(std::span<const std::byte> onnx_bytes) {
  try {
    PPML_ASSIGN_OR_RETURN(Graph graph, ImportOnnx(onnx_bytes, "model"));
    PassStats passes;
    PPML_RETURN_IF_ERROR(RunLoadPasses(graph, EngineOptions{}, &passes, /*residual_sums=*/false));
    std::map<std::string, FusedOutput> fused;
    static const std::set<std::string> kLayers = {"Conv", "Gemm", "MatMul"};
    for (const Node& n : graph.nodes) {
      if (kLayers.count(n.op_type) && !n.absorbed.empty()) fused[n.name] = {n.outputs[0], n.absorbed};
    }
    return fused;
  } catch (const StatusError& e) {
    return e.status();
  }
}

Result<std::unique_ptr<Model>> Model::LoadFile(const std::string& path, const EngineOptions& options) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return Status::NotFound(path + ": cannot open the model file");
  std::vector<char> data((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) return Status::IoError(path + ": read failed");
  return LoadBytes(std::as_bytes(std::span<const char>(data)), path, options);
}

bool CpuHasVnni() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx2_vnni:
    case dnnl::cpu_isa::avx512_core_vnni:
    case dnnl::cpu_isa::avx512_core_bf16:
    case dnnl::cpu_isa::avx512_core_amx: return true;
    default: return false;
  }
}

std::string EffectiveCpuIsa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

void SetThreads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
  FlushDenormals();
}

void FlushDenormals() {
  // Denormal floats (|x| < 1.2e-38) cost a hundred cycles each on x86; values
  // that small carry no information for inference, so every thread of the
  // pool treats them as zero (FTZ and DAZ bits of MXCSR).
#pragma omp parallel
  _mm_setcsr(_mm_getcsr() | 0x8040);
}

}  // namespace ppml::engine
