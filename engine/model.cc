// Model: ONNX import, load-time passes, and a plan per input-shape set.
#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>

#include <oneapi/dnnl/dnnl.hpp>

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
  OnnxModel(Graph graph, PassStats passes, int nodes_in_file, size_t max_plans)
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
      PPML_ASSIGN_OR_RETURN(Plan * plan, PlanFor({shapes.begin(), shapes.end()}));
      std::vector<std::span<std::byte>> places;
      for (size_t i = 0; i < shapes.size(); ++i) places.push_back(plan->arena_input(i));
      PPML_RETURN_IF_ERROR(write(places));
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
    try {
      PPML_ASSIGN_OR_RETURN(Plan * plan, PlanFor(shapes));
      return plan->Run(inputs);
    } catch (const StatusError& e) {
      return e.status();
    }
  }

 private:
  Result<Plan*> PlanFor(const std::vector<Shape>& shapes) {
    auto it = plans_.find(shapes);
    if (it != plans_.end()) {
      it->second.last_used = ++uses_;
      last_run_ = it->second.plan.get();
      return last_run_;
    }
    // Bound the cache before building: a client sending ever new shapes must
    // not grow memory without limit, and the evicted arena frees budget.
    while (plans_.size() >= max_plans_) EvictLeastRecentlyUsed();
    for (;;) {
      PlanBuilder builder(graph_, engine_, &weights_);
      Result<std::unique_ptr<Plan>> built = builder.Build(shapes);
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
        plans_[shapes] = CachedPlan{std::move(plan), ++uses_};
        return last_run_;
      }
      // Over the memory budget: the arenas of plans kept for other batch
      // sizes may be what stands in the way (a batcher meets every size up
      // to its maximum); drop the least recently used and try again.
      if (built.status().code() != StatusCode::kResourceExhausted || plans_.empty()) return built.status();
      EvictLeastRecentlyUsed();
    }
  }

  void EvictLeastRecentlyUsed() {
    auto oldest = std::min_element(plans_.begin(), plans_.end(), [](const auto& a, const auto& b) {
      return a.second.last_used < b.second.last_used;
    });
    if (oldest->second.plan.get() == last_run_) last_run_ = nullptr;
    plans_.erase(oldest);
    weights_.Prune();
  }

  struct CachedPlan {
    std::unique_ptr<Plan> plan;
    uint64_t last_used = 0;
  };

  size_t max_plans_;
  Graph graph_;
  dnnl::engine engine_;
  WeightCache weights_;
  std::map<std::vector<Shape>, CachedPlan> plans_;
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
  auto model = std::make_unique<OnnxModel>(std::move(graph), passes, nodes_in_file, options.max_plans);
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
