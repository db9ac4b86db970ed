#include "accel/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "accel/cuda_kernels.h"
#include "accel/field.h"
#include "common/log.h"

namespace ppml::accel {

static_assert(cuda::kFieldPrime == kPrime, "the CUDA kernels reduce modulo accel::kPrime");

Result<CudaKernel> ParseCudaKernel(std::string_view name) {
  if (name == "int8") return CudaKernel::kInt8Digits;
  if (name == "fp64") return CudaKernel::kFp64;
  return Status::InvalidArgument("CUDA kernel '" + std::string(name) + "': expected int8 or fp64");
}

namespace {

Status CudaCheck(cudaError_t error, std::string_view what) {
  if (error == cudaSuccess) return Status::Ok();
  return Status::Unavailable("CUDA " + std::string(what) + ": " + cudaGetErrorString(error));
}

Status CublasCheck(cublasStatus_t status, std::string_view what) {
  if (status == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Status::Internal("cuBLAS " + std::string(what) + ": " + cublasGetStatusString(status));
}

int64_t RoundUp(int64_t v, int64_t multiple) { return (v + multiple - 1) / multiple * multiple; }

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};
using DevicePtr = std::unique_ptr<void, CudaFree>;

struct StreamDestroy {
  void operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
};
using StreamPtr = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDestroy>;

struct CublasDestroy {
  void operator()(cublasHandle_t h) const { cublasDestroy(h); }
};
using CublasPtr = std::unique_ptr<std::remove_pointer_t<cublasHandle_t>, CublasDestroy>;

Result<DevicePtr> DeviceAlloc(size_t bytes) {
  void* p = nullptr;
  PPML_RETURN_IF_ERROR(CudaCheck(cudaMalloc(&p, std::max<size_t>(bytes, 1)), "cudaMalloc of " +
                                                                                  std::to_string(bytes) + " bytes"));
  return DevicePtr(p);
}

Result<DevicePtr> Upload(const void* host, size_t bytes) {
  PPML_ASSIGN_OR_RETURN(DevicePtr device, DeviceAlloc(bytes));
  PPML_RETURN_IF_ERROR(CudaCheck(cudaMemcpy(device.get(), host, bytes, cudaMemcpyHostToDevice), "upload"));
  return device;
}

// Device memory that only grows: the per-call buffers, reused across calls.
class Scratch {
 public:
  template <typename T>
  Result<T*> Get(int64_t count) {
    const size_t bytes = static_cast<size_t>(count) * sizeof(T);
    if (bytes > bytes_) {
      memory_.reset();
      bytes_ = 0;
      PPML_ASSIGN_OR_RETURN(memory_, DeviceAlloc(bytes));
      bytes_ = bytes;
    }
    return static_cast<T*>(memory_.get());
  }

 private:
  DevicePtr memory_;
  size_t bytes_ = 0;
};

cuda::ConvGeometry GeometryOf(const LinearSpec& s) {
  return {s.in_channels, s.in_h,       s.in_w,       s.out_channels, s.out_h,   s.out_w,    s.kernel_h, s.kernel_w,
          s.stride_h,    s.stride_w,   s.dilation_h, s.dilation_w,   s.pad_top, s.pad_left, s.groups};
}

// A layer's weights on the device, in the layout its computation reads.
struct DeviceLayer {
  bool direct = false;  // grouped: DirectConvolution over the spec's own layout
  int64_t tap_ld = 0;   // GEMM: the reduction length rounded up to 16 (INT8 tensor-core alignment)
  int64_t rows = 0;     // GEMM: weight rows, out_channels rounded up to 4 for dense layers (they are GEMM's m)
  DevicePtr weights;
  DevicePtr weight_sums;  // int64 per output channel, for the digits' offset
  int64_t bytes = 0;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(CudaBackendOptions options, std::string device_name, StreamPtr stream, CublasPtr cublas)
      : options_(options), device_name_(std::move(device_name)), stream_(std::move(stream)), cublas_(std::move(cublas)) {}

  std::string name() const override {
    return std::string(digits() ? "cuda-int8-digits" : "cuda-fp64") + " (" + device_name_ + ")";
  }

  Status Compute(const LinearSpec& spec, const std::string& digest, int64_t batch, std::span<const uint32_t> x,
                 std::span<uint32_t> out) override {
    if (!AllFieldElements(x)) return Status::InvalidArgument("accelerator input: an element is not below p");
    std::lock_guard<std::mutex> lock(mu_);
    PPML_RETURN_IF_ERROR(CudaCheck(cudaSetDevice(options_.device), "cudaSetDevice"));
    PPML_ASSIGN_OR_RETURN(const DeviceLayer* layer, FindOrUpload(spec, digest));
    const int64_t in_size = spec.input_size(), out_size = spec.output_size();
    const int64_t chunk = std::clamp<int64_t>(options_.max_scratch_bytes / std::max<int64_t>(ScratchPerImage(spec, *layer), 1),
                                              1, batch);
    for (int64_t first = 0; first < batch; first += chunk) {
      const int64_t images = std::min(chunk, batch - first);
      PPML_RETURN_IF_ERROR(RunImages(spec, *layer, images, x.subspan(first * in_size, images * in_size),
                                     out.subspan(first * out_size, images * out_size)));
    }
    return Status::Ok();
  }

 private:
  bool digits() const { return options_.kernel == CudaKernel::kInt8Digits; }
  int limbs() const { return digits() ? cuda::kDigits : 1; }
  size_t operand_size() const { return digits() ? sizeof(int8_t) : sizeof(double); }
  size_t accumulator_size() const { return digits() ? sizeof(int32_t) : sizeof(double); }
  static int64_t PixelLd(const LinearSpec& spec) { return spec.is_dense() ? 1 : RoundUp(spec.out_h * spec.out_w, 4); }
  static int64_t ChannelLd(const LinearSpec& spec, const DeviceLayer& layer) {
    return spec.is_dense() ? layer.rows : spec.out_channels;
  }

  int64_t ScratchPerImage(const LinearSpec& spec, const DeviceLayer& layer) const {
    const int64_t io = (spec.input_size() + spec.output_size()) * static_cast<int64_t>(sizeof(uint32_t));
    if (layer.direct) return io;
    const int64_t pixel_ld = PixelLd(spec);
    return io + limbs() * pixel_ld *
                    (layer.tap_ld * static_cast<int64_t>(operand_size()) +
                     ChannelLd(spec, layer) * static_cast<int64_t>(accumulator_size()));
  }

  Result<const DeviceLayer*> FindOrUpload(const LinearSpec& spec, const std::string& digest) {
    auto found = layers_.find(digest);
    if (found != layers_.end()) {
      order_.splice(order_.end(), order_, found->second.position);
      return &found->second.layer;
    }
    PPML_ASSIGN_OR_RETURN(DeviceLayer layer, UploadLayer(spec));
    while (weight_bytes_ + layer.bytes > options_.max_weight_bytes && !order_.empty()) {
      auto oldest = layers_.find(order_.front());
      weight_bytes_ -= oldest->second.layer.bytes;
      layers_.erase(oldest);
      order_.pop_front();
    }
    weight_bytes_ += layer.bytes;
    LogInfo("accel_cuda_layer_uploaded", {{"layer", digest.substr(0, 12)},
                                          {"bytes", layer.bytes},
                                          {"direct", layer.direct},
                                          {"device_weight_bytes", weight_bytes_}});
    order_.push_back(digest);
    auto [entry, inserted] = layers_.emplace(digest, Cached{std::move(layer), std::prev(order_.end())});
    return &entry->second.layer;
  }

  Result<DeviceLayer> UploadLayer(const LinearSpec& spec) const {
    DeviceLayer layer;
    if (spec.groups > 1) {
      layer.direct = true;
      layer.bytes = static_cast<int64_t>(spec.weights.size());
      PPML_ASSIGN_OR_RETURN(layer.weights, Upload(spec.weights.data(), spec.weights.size()));
      return layer;
    }
    const int64_t taps = spec.reduction_length();
    layer.tap_ld = RoundUp(taps, 16);
    layer.rows = spec.is_dense() ? RoundUp(spec.out_channels, 4) : spec.out_channels;
    std::vector<int64_t> sums(static_cast<size_t>(spec.out_channels), 0);
    for (int64_t c = 0; c < spec.out_channels; ++c)
      for (int64_t k = 0; k < taps; ++k) sums[c] += spec.weights[c * taps + k];
    // [rows][tap_ld], zero beyond the real taps and channels.
    auto padded = [&](auto zero) {
      std::vector<decltype(zero)> w(static_cast<size_t>(layer.rows * layer.tap_ld), zero);
      for (int64_t c = 0; c < spec.out_channels; ++c)
        for (int64_t k = 0; k < taps; ++k) w[c * layer.tap_ld + k] = static_cast<decltype(zero)>(spec.weights[c * taps + k]);
      return w;
    };
    if (digits()) {
      const std::vector<int8_t> w = padded(int8_t{0});
      PPML_ASSIGN_OR_RETURN(layer.weights, Upload(w.data(), w.size()));
    } else {
      const std::vector<double> w = padded(0.0);
      PPML_ASSIGN_OR_RETURN(layer.weights, Upload(w.data(), w.size() * sizeof(double)));
    }
    PPML_ASSIGN_OR_RETURN(layer.weight_sums, Upload(sums.data(), sums.size() * sizeof(int64_t)));
    layer.bytes = layer.rows * layer.tap_ld * static_cast<int64_t>(operand_size()) +
                  static_cast<int64_t>(sums.size() * sizeof(int64_t));
    return layer;
  }

  Status RunImages(const LinearSpec& spec, const DeviceLayer& layer, int64_t images, std::span<const uint32_t> x,
                   std::span<uint32_t> out) {
    cudaStream_t stream = stream_.get();
    PPML_ASSIGN_OR_RETURN(uint32_t* input, input_.Get<uint32_t>(static_cast<int64_t>(x.size())));
    PPML_ASSIGN_OR_RETURN(uint32_t* output, output_.Get<uint32_t>(static_cast<int64_t>(out.size())));
    PPML_RETURN_IF_ERROR(
        CudaCheck(cudaMemcpyAsync(input, x.data(), x.size_bytes(), cudaMemcpyHostToDevice, stream), "input copy"));
    const cuda::ConvGeometry geometry = GeometryOf(spec);
    if (layer.direct) {
      PPML_RETURN_IF_ERROR(CudaCheck(cuda::DirectConvolution(geometry, input, static_cast<const int8_t*>(layer.weights.get()),
                                                             images, output, stream),
                                     "direct convolution"));
    } else {
      PPML_RETURN_IF_ERROR(RunGemm(spec, layer, geometry, images, input, output));
    }
    PPML_RETURN_IF_ERROR(
        CudaCheck(cudaMemcpyAsync(out.data(), output, out.size_bytes(), cudaMemcpyDeviceToHost, stream), "output copy"));
    return CudaCheck(cudaStreamSynchronize(stream), "synchronize");
  }

  Status RunGemm(const LinearSpec& spec, const DeviceLayer& layer, const cuda::ConvGeometry& geometry, int64_t images,
                 const uint32_t* input, uint32_t* output) {
    cudaStream_t stream = stream_.get();
    const int64_t pixel_ld = PixelLd(spec), channel_ld = ChannelLd(spec, layer);
    const int64_t columns = limbs() * images * pixel_ld;  // one per (digit, image, pixel)
    PPML_ASSIGN_OR_RETURN(void* cols, cols_.Get<std::byte>(columns * layer.tap_ld * static_cast<int64_t>(operand_size())));
    PPML_ASSIGN_OR_RETURN(void* acc, acc_.Get<std::byte>(columns * channel_ld * static_cast<int64_t>(accumulator_size())));
    if (digits()) {
      PPML_RETURN_IF_ERROR(CudaCheck(
          cuda::Im2colDigits(geometry, input, images, pixel_ld, layer.tap_ld, static_cast<int8_t*>(cols), stream),
          "im2col"));
    } else {
      PPML_RETURN_IF_ERROR(CudaCheck(
          cuda::Im2colCentered(geometry, input, images, pixel_ld, layer.tap_ld, static_cast<double*>(cols), stream),
          "im2col"));
    }
    const cudaDataType_t operand = digits() ? CUDA_R_8I : CUDA_R_64F;
    const cudaDataType_t result = digits() ? CUDA_R_32I : CUDA_R_64F;
    const cublasComputeType_t compute = digits() ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_64F;
    const int32_t one_i = 1, zero_i = 0;
    const double one_d = 1, zero_d = 0;
    const void* alpha = digits() ? static_cast<const void*>(&one_i) : &one_d;
    const void* beta = digits() ? static_cast<const void*>(&zero_i) : &zero_d;
    const int k = static_cast<int>(layer.tap_ld);
    PPML_RETURN_IF_ERROR(CublasCheck(cublasSetStream(cublas_.get(), stream), "set stream"));
    if (spec.is_dense()) {
      // C(c, j) = sum_k W(k, c) cols(k, j): column j (one digit of one image) is that image's output row.
      PPML_RETURN_IF_ERROR(CublasCheck(
          cublasGemmEx(cublas_.get(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(layer.rows), static_cast<int>(columns),
                       k, alpha, layer.weights.get(), operand, k, cols, operand, k, beta, acc, result,
                       static_cast<int>(layer.rows), compute, CUBLAS_GEMM_DEFAULT),
          "dense GEMM"));
    } else {
      // Per (digit, image): C(p, c) = sum_k cols(k, p) W(k, c), column-major, i.e. [channel][pixel] as NCHW wants.
      PPML_RETURN_IF_ERROR(CublasCheck(
          cublasGemmStridedBatchedEx(cublas_.get(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(pixel_ld),
                                     static_cast<int>(spec.out_channels), k, alpha, cols, operand, k, pixel_ld * k,
                                     layer.weights.get(), operand, k, 0, beta, acc, result, static_cast<int>(pixel_ld),
                                     spec.out_channels * pixel_ld, static_cast<int>(limbs() * images), compute,
                                     CUBLAS_GEMM_DEFAULT),
          "convolution GEMM"));
    }
    const int64_t pixels = spec.out_h * spec.out_w;
    if (digits()) {
      return CudaCheck(cuda::CombineDigits(static_cast<const int32_t*>(acc), static_cast<const int64_t*>(layer.weight_sums.get()),
                                           images, spec.out_channels, pixels, channel_ld, pixel_ld, output, stream),
                       "combine");
    }
    return CudaCheck(cuda::CombineDoubles(static_cast<const double*>(acc), images, spec.out_channels, pixels, channel_ld,
                                          pixel_ld, output, stream),
                     "combine");
  }

  struct Cached {
    DeviceLayer layer;
    std::list<std::string>::iterator position;
  };

  const CudaBackendOptions options_;
  const std::string device_name_;
  std::mutex mu_;  // one stream, one handle, one set of scratch buffers: calls take turns
  StreamPtr stream_;
  CublasPtr cublas_;
  std::unordered_map<std::string, Cached> layers_;
  std::list<std::string> order_;  // least recently used first
  int64_t weight_bytes_ = 0;
  Scratch input_, output_, cols_, acc_;
};

}  // namespace

Result<std::unique_ptr<Backend>> MakeCudaBackend(const CudaBackendOptions& options) {
  const std::string device = "CUDA device " + std::to_string(options.device);
  int count = 0;
  PPML_RETURN_IF_ERROR(CudaCheck(cudaGetDeviceCount(&count), "device count").WithContext(device));
  if (options.device < 0 || options.device >= count) {
    return Status::Unavailable(device + ": this machine has " + std::to_string(count));
  }
  PPML_RETURN_IF_ERROR(CudaCheck(cudaSetDevice(options.device), "cudaSetDevice").WithContext(device));
  cudaDeviceProp properties{};
  PPML_RETURN_IF_ERROR(CudaCheck(cudaGetDeviceProperties(&properties, options.device), "properties").WithContext(device));
  cudaStream_t stream = nullptr;
  PPML_RETURN_IF_ERROR(CudaCheck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream").WithContext(device));
  StreamPtr owned_stream(stream);
  cublasHandle_t handle = nullptr;
  PPML_RETURN_IF_ERROR(CublasCheck(cublasCreate(&handle), "create").WithContext(device));
  CublasPtr owned_handle(handle);
  return std::unique_ptr<Backend>(
      std::make_unique<CudaBackend>(options, properties.name, std::move(owned_stream), std::move(owned_handle)));
}

}  // namespace ppml::accel
