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
#include <memory>
#include <span>
#include <string>
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

struct EngineOptions {
  // OpenMP threads for oneDNN; 0 leaves the process default.
  int threads = 0;
  // Fold BatchNormalization into Conv, fuse eltwise/residual post-ops.
  bool fuse = true;
};

// Counters describing what Load made of the graph (for logs and tests).
struct ModelStats {
  int nodes_in_file = 0;
  int kernels = 0;             // after folding and fusion, for the last plan built
  int folded_batchnorms = 0;
  int fused_post_ops = 0;
  size_t weight_bytes = 0;
  size_t arena_bytes = 0;      // activation arena of the last plan built
  int64_t macs = 0;            // multiply-accumulates per run of the last plan built
  int quantized_tensors = 0;   // tensors a QDQ model keeps in INT8 (0: an FP32 model)
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

  virtual ModelStats stats() const = 0;
};

// The instruction set oneDNN dispatches to on this CPU, e.g. "avx2", "avx512_core_vnni".
std::string EffectiveCpuIsa();

// Sets the OpenMP thread count oneDNN uses in this process (0 keeps it) and
// flushes denormals to zero on every thread of the pool (see FlushDenormals).
void SetThreads(int threads);

// Treat denormal floats as zero on the calling thread pool: they are far
// below any meaningful activation and make x86 arithmetic ~100x slower.
void FlushDenormals();

}  // namespace ppml::engine
