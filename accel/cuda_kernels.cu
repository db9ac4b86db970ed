#include "accel/cuda_kernels.h"

namespace ppml::accel::cuda {
namespace {

constexpr int kThreads = 256;

// Grid-stride loops over int64 counts: a VGG16 batch's columns exceed 2^31.
unsigned Blocks(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

__device__ __forceinline__ uint32_t ModPrime(int64_t v) {
  int64_t r = v % kFieldPrime;
  return static_cast<uint32_t>(r < 0 ? r + kFieldPrime : r);
}

__device__ __forceinline__ int64_t CenteredValue(uint32_t x) {
  return x > kFieldPrime / 2 ? static_cast<int64_t>(x) - kFieldPrime : static_cast<int64_t>(x);
}

// The input element under tap k of output pixel p; false for a padding tap.
__device__ __forceinline__ bool TapInput(const ConvGeometry& g, const uint32_t* image, int64_t p, int64_t k,
                                         uint32_t* value) {
  const int64_t taps_per_channel = g.kernel_h * g.kernel_w;
  const int64_t c = k / taps_per_channel;
  const int64_t r = k - c * taps_per_channel;
  const int64_t kh = r / g.kernel_w, kw = r - kh * g.kernel_w;
  const int64_t oh = p / g.out_w, ow = p - oh * g.out_w;
  const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
  const int64_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
  if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) return false;
  *value = image[(c * g.in_h + ih) * g.in_w + iw];
  return true;
}

__global__ void Im2colDigitsKernel(ConvGeometry g, const uint32_t* x, int64_t batch, int64_t pixel_ld, int64_t tap_ld,
                                   int8_t* cols) {
  const int64_t pixels = g.out_h * g.out_w, taps = g.in_channels * g.kernel_h * g.kernel_w;
  const int64_t per_image = pixel_ld * tap_ld, total = batch * per_image;
  const int64_t digit_stride = batch * per_image;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t b = i / per_image, rest = i - b * per_image;
    const int64_t p = rest / tap_ld, k = rest - p * tap_ld;
    int8_t d0 = 0, d1 = 0, d2 = 0;
    if (p < pixels && k < taps) {
      uint32_t v = 0;  // padding reads 0
      TapInput(g, x + b * g.in_channels * g.in_h * g.in_w, p, k, &v);
      d0 = static_cast<int8_t>(static_cast<int>(v & 0xFF) - 128);
      d1 = static_cast<int8_t>(static_cast<int>((v >> 8) & 0xFF) - 128);
      d2 = static_cast<int8_t>(static_cast<int>((v >> 16) & 0xFF) - 128);
    }
    cols[i] = d0;
    cols[i + digit_stride] = d1;
    cols[i + 2 * digit_stride] = d2;
  }
}

__global__ void Im2colCenteredKernel(ConvGeometry g, const uint32_t* x, int64_t batch, int64_t pixel_ld,
                                     int64_t tap_ld, double* cols) {
  const int64_t pixels = g.out_h * g.out_w, taps = g.in_channels * g.kernel_h * g.kernel_w;
  const int64_t per_image = pixel_ld * tap_ld, total = batch * per_image;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t b = i / per_image, rest = i - b * per_image;
    const int64_t p = rest / tap_ld, k = rest - p * tap_ld;
    uint32_t v = 0;
    if (p < pixels && k < taps) TapInput(g, x + b * g.in_channels * g.in_h * g.in_w, p, k, &v);
    cols[i] = static_cast<double>(CenteredValue(v));
  }
}

__global__ void CombineDigitsKernel(const int32_t* acc, const int64_t* weight_sums, int64_t batch,
                                    int64_t out_channels, int64_t pixels, int64_t channel_ld, int64_t pixel_ld,
                                    uint32_t* out) {
  const int64_t total = batch * out_channels * pixels;
  const int64_t digit_stride = batch * channel_ld * pixel_ld;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t b = i / (out_channels * pixels), rest = i - b * out_channels * pixels;
    const int64_t c = rest / pixels, p = rest - c * pixels;
    const int64_t at = (b * channel_ld + c) * pixel_ld + p;
    const int64_t sum = int64_t{acc[at]} + (int64_t{acc[at + digit_stride]} << 8) +
                        (int64_t{acc[at + 2 * digit_stride]} << 16) + kDigitOffset * weight_sums[c];
    out[i] = ModPrime(sum);
  }
}

__global__ void CombineDoublesKernel(const double* acc, int64_t batch, int64_t out_channels, int64_t pixels,
                                     int64_t channel_ld, int64_t pixel_ld, uint32_t* out) {
  const int64_t total = batch * out_channels * pixels;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t b = i / (out_channels * pixels), rest = i - b * out_channels * pixels;
    const int64_t c = rest / pixels, p = rest - c * pixels;
    out[i] = ModPrime(__double2ll_rn(acc[(b * channel_ld + c) * pixel_ld + p]));
  }
}

__global__ void DirectConvolutionKernel(ConvGeometry g, const uint32_t* x, const int8_t* weights, int64_t batch,
                                        uint32_t* out) {
  const int64_t pixels = g.out_h * g.out_w;
  const int64_t total = batch * g.out_channels * pixels;
  const int64_t in_per_group = g.in_channels / g.groups, out_per_group = g.out_channels / g.groups;
  const int64_t taps = in_per_group * g.kernel_h * g.kernel_w;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t b = i / (g.out_channels * pixels), rest = i - b * g.out_channels * pixels;
    const int64_t c = rest / pixels, p = rest - c * pixels;
    const uint32_t* group_input = x + (b * g.in_channels + (c / out_per_group) * in_per_group) * g.in_h * g.in_w;
    const int8_t* w = weights + c * taps;
    int64_t sum = 0;
    for (int64_t k = 0; k < taps; ++k) {
      uint32_t v;
      if (TapInput(g, group_input, p, k, &v)) sum += CenteredValue(v) * w[k];
    }
    out[i] = ModPrime(sum);
  }
}

}  // namespace

cudaError_t Im2colDigits(const ConvGeometry& g, const uint32_t* x, int64_t batch, int64_t pixel_ld, int64_t tap_ld,
                         int8_t* cols, cudaStream_t stream) {
  Im2colDigitsKernel<<<Blocks(batch * pixel_ld * tap_ld), kThreads, 0, stream>>>(g, x, batch, pixel_ld, tap_ld, cols);
  return cudaGetLastError();
}

cudaError_t Im2colCentered(const ConvGeometry& g, const uint32_t* x, int64_t batch, int64_t pixel_ld, int64_t tap_ld,
                           double* cols, cudaStream_t stream) {
  Im2colCenteredKernel<<<Blocks(batch * pixel_ld * tap_ld), kThreads, 0, stream>>>(g, x, batch, pixel_ld, tap_ld,
                                                                                   cols);
  return cudaGetLastError();
}

cudaError_t CombineDigits(const int32_t* acc, const int64_t* weight_sums, int64_t batch, int64_t out_channels,
                          int64_t pixels, int64_t channel_ld, int64_t pixel_ld, uint32_t* out, cudaStream_t stream) {
  CombineDigitsKernel<<<Blocks(batch * out_channels * pixels), kThreads, 0, stream>>>(
      acc, weight_sums, batch, out_channels, pixels, channel_ld, pixel_ld, out);
  return cudaGetLastError();
}

cudaError_t CombineDoubles(const double* acc, int64_t batch, int64_t out_channels, int64_t pixels, int64_t channel_ld,
                           int64_t pixel_ld, uint32_t* out, cudaStream_t stream) {
  CombineDoublesKernel<<<Blocks(batch * out_channels * pixels), kThreads, 0, stream>>>(acc, batch, out_channels,
                                                                                       pixels, channel_ld, pixel_ld, out);
  return cudaGetLastError();
}

cudaError_t DirectConvolution(const ConvGeometry& g, const uint32_t* x, const int8_t* weights, int64_t batch,
                              uint32_t* out, cudaStream_t stream) {
  DirectConvolutionKernel<<<Blocks(batch * g.out_channels * g.out_h * g.out_w), kThreads, 0, stream>>>(g, x, weights,
                                                                                                      batch, out);
  return cudaGetLastError();
}

}  // namespace ppml::accel::cuda
