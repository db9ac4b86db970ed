// The CUDA kernels of ppml-accel's GPU backend (accel/cuda_backend.cc), in
// plain types so that only accel/cuda_kernels.cu goes through nvcc.
//
// Two exact ways to compute (X W) mod p with cuBLAS between these kernels:
//   - int8 digits: every field element x = u0 + 2^8 u1 + 2^16 u2 (bytes
//     u_l) becomes three signed digits d_l = u_l - 128, so the digits
//     encode x - kDigitOffset with kDigitOffset = 128 (1 + 2^8 + 2^16).
//     One INT8 GEMM (s8 x s8 -> s32, tensor cores) per digit; every partial
//     sum is exact (|d w| <= 128 * 63 and K <= 133,000 gives < 2^31), and
//     CombineDigits adds kDigitOffset * sum_k w back in 64-bit integers.
//   - fp64: the centered representative of x (|x| < 2^23) as a double; one
//     DGEMM whose products (< 2^29) and sums (< 2^47) are exact in a 53-bit
//     mantissa.
// Padding taps read x = 0 (digits -128 each: the offset correction covers them).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ppml::accel::cuda {

inline constexpr int64_t kFieldPrime = (1 << 24) - 3;  // accel::kPrime (checked in cuda_backend.cc)
inline constexpr int kDigits = 3;
inline constexpr int64_t kDigitOffset = 128 * (1 + 256 + 65536);

struct ConvGeometry {
  int64_t in_channels, in_h, in_w;
  int64_t out_channels, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
  int64_t pad_top, pad_left;
  int64_t groups;
};

// The GEMM operand of `batch` images (one group only): for digit/limb l,
// image b, output pixel p and tap k (k = (channel, kh, kw)),
//   cols[((l * batch + b) * pixel_ld + p) * tap_ld + k]
// with zeros for p >= out_h * out_w and k >= taps.
cudaError_t Im2colDigits(const ConvGeometry& g, const uint32_t* x, int64_t batch, int64_t pixel_ld, int64_t tap_ld,
                         int8_t* cols, cudaStream_t stream);
cudaError_t Im2colCentered(const ConvGeometry& g, const uint32_t* x, int64_t batch, int64_t pixel_ld, int64_t tap_ld,
                           double* cols, cudaStream_t stream);

// out[(b * out_channels + c) * pixels + p] (mod p) from the GEMM results
// acc[((l * batch + b) * channel_ld + c) * pixel_ld + p].
cudaError_t CombineDigits(const int32_t* acc, const int64_t* weight_sums, int64_t batch, int64_t out_channels,
                          int64_t pixels, int64_t channel_ld, int64_t pixel_ld, uint32_t* out, cudaStream_t stream);
cudaError_t CombineDoubles(const double* acc, int64_t batch, int64_t out_channels, int64_t pixels, int64_t channel_ld,
                           int64_t pixel_ld, uint32_t* out, cudaStream_t stream);

// Grouped and depthwise convolutions, where a GEMM per group would be tiny:
// one thread per output element, exact int64 sums. weights as LinearSpec.
cudaError_t DirectConvolution(const ConvGeometry& g, const uint32_t* x, const int8_t* weights, int64_t batch,
                              uint32_t* out, cudaStream_t stream);

}  // namespace ppml::accel::cuda
