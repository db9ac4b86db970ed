// NumPy .npy files to and from ppml::Tensor, for test inputs and outputs
// exchanged with Python (`np.save` / `np.load`).
//
// Supported: format versions 1.0, 2.0 and 3.0; C order (fortran_order False);
// the little-endian types '<f4' (f32), '|u1' (u8), '|i1' (s8), '<i4' (s32),
// '<i8' (s64). Anything else — float64, big-endian, Fortran order, object
// arrays — is Unsupported with a message naming the file and the dtype, so
// the fix (`x.astype(np.float32)`) is obvious. Truncated data and a bad magic
// are DataLoss.
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "common/status.h"
#include "common/tensor.h"

namespace ppml {

Result<Tensor> ReadNpyFile(const std::string& path);
// Writes version 1.0 (2.0 when the header needs it), as np.save does.
Status WriteNpyFile(const std::string& path, const Tensor& tensor);

// The same on bytes in memory; `name` stands for the file name in messages.
Result<Tensor> ParseNpy(std::span<const std::byte> bytes, const std::string& name);
std::string EncodeNpy(const Tensor& tensor);

// How to give NumPy values `type`, for messages: "x.astype(np.uint8)".
std::string NumpyAstype(DataType type);

}  // namespace ppml
