// ppml-accel's backend on an NVIDIA GPU: (X W) mod p through cuBLAS, exact
// either as three INT8 GEMMs over signed 8-bit digits (tensor cores) or as
// one FP64 GEMM (see accel/cuda_kernels.h for why both are exact). Grouped
// and depthwise convolutions run a direct kernel instead of a GEMM.
//
// Built only where CMake finds a CUDA compiler (PPML_WITH_CUDA); elsewhere
// ppml-accel --backend cuda says the build has none.
//
// Weights are uploaded once per layer (SpecDigest) and kept on the device,
// least recently used dropped first beyond `max_weight_bytes`. One stream and
// one cuBLAS handle serve every connection, in turn.
// Thread safety: Compute may be called from any number of threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "accel/server.h"
#include "common/status.h"

namespace ppml::accel {

enum class CudaKernel { kInt8Digits, kFp64 };
// "int8" or "fp64".
Result<CudaKernel> ParseCudaKernel(std::string_view name);

struct CudaBackendOptions {
  int device = 0;
  CudaKernel kernel = CudaKernel::kInt8Digits;
  int64_t max_weight_bytes = int64_t{8} << 30;
  // Images per GEMM are capped so that one pass's scratch stays below this.
  int64_t max_scratch_bytes = int64_t{2} << 30;
};

// Unavailable when there is no such CUDA device or the runtime fails.
Result<std::unique_ptr<Backend>> MakeCudaBackend(const CudaBackendOptions& options);

}  // namespace ppml::accel
