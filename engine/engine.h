// The inference engine: loads an ONNX model and runs it on oneDNN (FP32).
//
// Model::Load parses and checks the whole graph up front: an op, attribute or
// data type the engine cannot run is an Unsupported error naming the node and
// op, never a crash or a wrong answer later. Run() compiles an execution plan
// per distinct set of input shapes (so per batch size) the first time it sees
// them and reuses it afterwards: oneDNN primitives, weights reordered into the
// layouts the primitives prefer, one planned activation arena.
//
// Thread safety: a Model is not safe to Run from several threads at once (its
// plans own scratch memory); use one Model per thread. Const accessors are.
// The engine knows nothing of enclaves, keys, Redis or HTTP.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace ppml::engine {

// A graph input or output. Dimensions that are not fixed by the model (a
// symbolic batch dimension) are -1.
struct TensorInfo {
  std::string name;
  DataType dtype = DataType::kF32;
  Shape shape;
};

// Accounts the bytes the engine allocates for a model (constants, reordered
// weights, activation arenas, scratchpads): an enclave's memory budget.
// Reserve is called before an allocation and may refuse it; every reserved
// byte is released again when its allocation is freed. Called from the thread
// that loads or runs the model.
class MemoryBudget {
 public:
  virtual ~MemoryBudget() = default;
  // An error (ResourceExhausted, naming `what`) makes the load or run fail.
  virtual Status Reserve(size_t bytes, std::string_view what) = 0;
  virtual void Release(size_t bytes) = 0;
};

// Bytes reserved in a budget, released when the reservation dies. A null
// budget reserves nothing and always succeeds.
class Reservation {
 public:
  Reservation() = default;
  static Result<Reservation> Make(MemoryBudget* budget, size_t bytes, std::string_view what);
  Reservation(Reservation&& other) noexcept { *this = std::move(other); }
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() { Reset(); }
  void Reset();
  size_t bytes() const { return bytes_; }

 private:
  MemoryBudget* budget_ = nullptr;
  size_t bytes_ = 0;
};

// Keeps a model's large constants outside the engine's memory and hands them
// back when needed (an enclave's on-demand weights: the store keeps them
// encrypted outside and decrypts them just before use). The engine knows
// nothing of how; it only calls, in order:
//   at load   ReadExternal for ONNX initializers stored as external data
//             (data_location EXTERNAL, key "location"), with offloading also
//   at build  Put (prepared weights, once per layout) and Get (copy back)
//   at run    BeginRun(the weights in the order they will be acquired, each
//             with the slot of the plan's arena it goes to), then per layer
//             Acquire -> compute, then EndRun.
// The plan places each weight's slot among the activations, live from the
// layer `lookahead()` weights before it to its own, so that the weights
// take the arena's room where activations are small and a store may fill
// that many slots ahead of the layer in use.
class WeightStore {
 public:
  struct Slot {
    uint64_t handle = 0;
    std::span<std::byte> bytes;
  };
  virtual ~WeightStore() = default;
  virtual Status ReadExternal(const std::string& location, std::span<std::byte> out) = 0;
  virtual Result<uint64_t> Put(const std::string& label, std::span<const std::byte> bytes) = 0;
  virtual Status Get(uint64_t handle, std::span<std::byte> out) = 0;
  // Weights a store may fill past the one in use (0: each when acquired).
  virtual int lookahead() const = 0;
  // The slots stay valid until EndRun.
  virtual Status BeginRun(std::span<const Slot> order) = 0;
  // Returns once the next slot in the announced order holds `handle`'s bytes.
  virtual Status Acquire(uint64_t handle) = 0;
  virtual void EndRun() = 0;
};

// A linear layer the engine hands to a LinearDelegate instead of running it:
// a 2-D Conv, or a Gemm/MatMul of a matrix by a constant matrix (a dense
// layer), with BatchNormalization already folded in. Valid during Adopt only.
struct LinearLayer {
  std::string node;   // the node's name
  std::string input;  // the name of its activation input
  bool dense = false;
  Shape input_shape;   // [N, C, H, W] or [N, K]
  Shape output_shape;  // [N, O, OH, OW] or [N, Nout]
  // Conv geometry (dense: all 1 / 0): strides, dilations (1 = dense kernel),
  // pads {top, left, bottom, right}, groups.
  int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t groups = 1;
  const Tensor* weights = nullptr;  // f32 [O, C/groups, kH, kW], or [Nout, K] for dense
  const Tensor* bias = nullptr;     // f32 [O] / [Nout], or null
};

// Runs linear layers in place of the engine (the enclave's verified
// outsourcing: accel/). The engine calls Adopt while it plans a layer (once
// per layer and batch size) and Run each time the plan reaches it; the
// layers in between (activations, pooling, residual adds) stay the engine's.
class LinearDelegate {
 public:
  virtual ~LinearDelegate() = default;
  // An id for Run, or -1 to leave the layer to the engine. An error fails the plan.
  virtual Result<int> Adopt(const LinearLayer& layer) = 0;
  // input: plain f32 of input_shape; output: plain f32 of output_shape,
  // the layer's result with its bias added (nothing else).
  virtual Status Run(int id, std::span<const float> input, const Shape& input_shape, std::span<float> output,
                     const Shape& output_shape) = 0;
};

struct EngineOptions {
  // OpenMP threads for oneDNN; 0 leaves the process default.
  int threads = 0;
  // Fold BatchNormalization into Conv, fuse eltwise/residual post-ops.
  bool fuse = true;
  // Run a QDQ model's QuantizeLinear/DequantizeLinear nodes as written, in
  // float, instead of keeping tensors in INT8 between INT8 kernels: slow, but
  // the reference the INT8 path must match to within rounding.
  bool literal_qdq = false;
  // Accounts every allocation of the model when set (not owned; must outlive the model).
  MemoryBudget* memory_budget = nullptr;
  // Source of external initializers and, with offload_weights, where large
  // constants and prepared weights live between uses (not owned; must outlive the model).
  WeightStore* weight_store = nullptr;
  // Keep constants of at least offload_min_bytes in weight_store instead of
  // in memory, and stream them in per layer while running.
  bool offload_weights = false;
  size_t offload_min_bytes = 64 * 1024;
  // Plans (one per set of input shapes) kept at once, least recently used
  // evicted first; each holds an activation arena, so a plan that does not
  // fit the memory budget evicts others until it does. A worker batching up
  // to N images meets every batch size up to N: keep at least that many.
  size_t max_plans = 64;
  // Runs the model's linear layers when set (not owned; must outlive the
  // model). BatchNormalization folding stays; post-op fusion is off, so each
  // delegated layer's result is its plain output.
  LinearDelegate* linear_delegate = nullptr;
  // FP32 3x3 convolutions in Winograd where oneDNN has it (AVX-512): about
  // 2x faster there, but their weights take 4x the bytes (6x6 tiles for 3x3)
  // and the scratchpad grows; off where memory is what is scarce.
  bool winograd = true;
  // A 1x1 convolution whose output only a 3x3 depthwise convolution reads
  // runs both in one oneDNN primitive (MobileNet's expand and depthwise
  // layers): the expanded tensor stays in cache. Off only to measure it.
  bool fuse_depthwise = true;
  // With more than one thread, a batch runs as one slice per thread side by
  // side, each slice on single-threaded kernels, where the graph keeps its
  // samples apart (no op mixes them) and its weights take at most this many
  // bytes (0: never). No synchronisation inside a layer, and the engine's own
  // loops (a channel shuffle, a Slice) run on every core; but each slice
  // reads every weight, so large weights are read once per thread instead of
  // once per batch. Measured at batch 16 on 2 threads (docs/BENCHMARKS.md):
  // ShuffleNetV2 +46%, MobileNetV2 INT8 +4%, while ResNet-18 (45 MB) and
  // ResNet-50 INT8 (25 MB) lose 3-10%. Offloaded weights or a linear
  // delegate run the batch whole.
  size_t split_batch_max_weight_bytes = size_t{16} << 20;
  // Time every step of every run (Model::Profile): a stream wait after each
  // oneDNN primitive, which costs a little throughput.
  bool profile = false;
};

// One step of the plan last run and its time summed over the runs since it
// was built (EngineOptions::profile): where a model's time goes.
struct StepTime {
  std::string node;    // the graph node it was built for ("output": the graph's output copies)
  std::string op;      // that node's op type
  std::string kernel;  // a oneDNN primitive and its implementation ("reorder jit:uni"), or "engine" for the engine's own loop
  double total_ms = 0;
  int64_t runs = 0;
};

// Counters describing what Load made of the graph (for logs and tests).
struct ModelStats {
  int nodes_in_file = 0;
  int kernels = 0;             // after folding and fusion, for the last plan built
  int folded_batchnorms = 0;
  int fused_post_ops = 0;
  int fused_layer_norms = 0;   // decomposed LayerNormalization patterns made one op
  int fused_gelus = 0;         // decomposed GELU patterns made one op
  int fused_gated_activations = 0;  // x * HardSigmoid(x), x * Sigmoid(x) made HardSwish, Swish
  size_t weight_bytes = 0;
  size_t arena_bytes = 0;      // arena (activations, streamed weights) of the last plan built
  int64_t macs = 0;            // multiply-accumulates per run of the last plan built
  int winograd_convs = 0;      // convolutions run in Winograd in the last plan built
  int fused_depthwise = 0;     // depthwise convolutions run inside the 1x1 before them, in the last plan built
  int reference_kernels = 0;   // oneDNN primitives of the last plan built on oneDNN's scalar reference code
  int quantized_tensors = 0;   // tensors a QDQ model keeps in INT8 (0: an FP32 model)
  size_t offloaded_bytes = 0;  // prepared weights kept in the WeightStore (offload_weights)
  size_t streamed_bytes_per_run = 0;  // of those, fetched per run of the last plan built
  int64_t plans_built = 0;     // since load; more than the shapes met means the cache is too small
  int batch_lanes = 1;         // slices the last run split its batch into (EngineOptions::split_batch_max_weight_bytes)
};

class Model {
 public:
  static Result<std::unique_ptr<Model>> LoadFile(const std::string& path, const EngineOptions& options = {});
  // `name` is used in error messages (a file name or a model name).
  static Result<std::unique_ptr<Model>> LoadBytes(std::span<const std::byte> onnx_bytes, const std::string& name,
                                                  const EngineOptions& options = {});
  virtual ~Model() = default;

  virtual const std::vector<TensorInfo>& inputs() const = 0;
  virtual const std::vector<TensorInfo>& outputs() const = 0;

  // Runs one inference. `inputs` are in the order of inputs(), plain row-major.
  // A wrong count, data type or shape is InvalidArgument naming the input.
  virtual Result<std::vector<Tensor>> Run(std::span<const Tensor> inputs) = 0;

  // Runs one inference on inputs the caller writes into the engine's own
  // memory (the plan's arena) instead of handing over tensors: `write` gets
  // each input's plain row-major bytes for `shapes`, in the order of
  // inputs(). A caller short of memory (an enclave decrypting requests) then
  // never holds the inputs twice. An error from `write` fails the run with it.
  using InputWriter = std::function<Status(std::span<const std::span<std::byte>> inputs)>;
  virtual Result<std::vector<Tensor>> RunWith(std::span<const Shape> shapes, const InputWriter& write) = 0;

  // Drops the plans kept for reuse, so their arenas go back to the memory
  // budget; the next Run builds what it needs again. For a caller that needs
  // budget for something else (an enclave's request buffers). Not during Run.
  virtual void ReleaseCachedPlans() = 0;

  virtual ModelStats stats() const = 0;

  // The steps of the plan last run, in order, with their times; empty unless
  // loaded with EngineOptions::profile.
  virtual std::vector<StepTime> Profile() const = 0;
};

// Whether the engine can fold an activation node `op` (Relu, Clip, Sigmoid,
// HardSwish...) into the op before it.
bool FusesActivation(const std::string& op);

// Whether the engine computes op `op` from a quantized input's stored bytes
// (pools, Concat, Relu, data movement, elementwise arithmetic; INT8 layers)
// rather than dequantizing it to floats first: the quantizer keeps a tensor
// quantized only for such readers.
bool ReadsQuantizedAsStored(const std::string& op);

// What the engine's load-time passes fold into each Conv, Gemm and MatMul
// of an ONNX model (a BatchNormalization, a bias Add, activations, GELU,
// x * gate(x)), for a quantizer that places an INT8 layer's output after
// them rather than between: per node that absorbs any, by name, the tensor
// that becomes its output and the absorbed nodes. Residual Adds are left
// apart.
struct FusedOutput {
  std::string tensor;
  std::vector<std::string> nodes;
};
Result<std::map<std::string, FusedOutput>> FusedOutputs(std::span<const std::byte> onnx_bytes);

// The instruction set oneDNN dispatches to on this CPU, e.g. "avx2", "avx512_core_vnni".
std::string EffectiveCpuIsa();
// Whether that instruction set multiplies u8 x s8 into 32-bit sums (VNNI;
// avx512_core_bf16 and _amx include it though their names do not say so).
bool CpuHasVnni();

// Sets the OpenMP thread count oneDNN uses in this process (0 keeps it) and
// flushes denormals to zero on every thread of the pool (see FlushDenormals).
void SetThreads(int threads);

// Treat denormal floats as zero on the calling thread pool: they are far
// below any meaningful activation and make x86 arithmetic ~100x slower.
void FlushDenormals();

}  // namespace ppml::engine
