// ExactLinear and FieldLinear: exact linear layers on oneDNN INT8 kernels.
//
// FieldLinear's exactness (X in [0, p), p < 2^24; |w| <= 63):
//
//   X = L0 + 2^8 L1 + 2^16 L2 with limbs Li in [0, 255], so
//   X W = L0 W + 2^8 (L1 W) + 2^16 (L2 W).
//
// Each Li W is an INT8 convolution (u8 x s8 -> s32) whose every output is a
// sum of K = in_channels / groups * kernel_h * kernel_w products, so
// |Li W| <= 255 * 63 * K < 2^31 for K <= 133,000 (kMaxReductionLength): the
// s32 accumulator never overflows, and on CPUs without VNNI each pair of
// products summed in 16 bits stays <= 2 * 255 * 63 = 32130 < 2^15. The
// recombination |L0 W + 2^8 L1 W + 2^16 L2 W| < 2^31 * 65793 < 2^48 fits an
// int64, which is then reduced mod p. Negative weights give negative sums;
// the reduction maps them to [0, p).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "accel/field.h"
#include "accel/field_kernels.h"
#include "accel/int8_linear.h"

namespace ppml::accel {
namespace {

// Reduces |v| < p * 2^24 (about 2^48) to [0, p) with one unsigned division by a
// constant (the compiler turns it into a multiplication).
inline uint32_t ReduceSigned48(int64_t v) {
  constexpr int64_t kOffset = static_cast<int64_t>(kPrime) << 24;  // a multiple of p larger than |v|
  return static_cast<uint32_t>(static_cast<uint64_t>(v + kOffset) % kPrime);
}

Status CheckBatch(int64_t batch) {
  if (batch < 1 || batch > (int64_t{1} << 20)) return Status::InvalidArgument("batch must be in [1, 2^20]");
  return Status::Ok();
}

class OneDnnExactLinear final : public ExactLinear {
 public:
  OneDnnExactLinear(std::unique_ptr<Int8Linear> int8, int64_t input_count, int64_t output_count)
      : int8_(std::move(int8)), input_count_(input_count), output_count_(output_count) {}

  Status Run(std::span<const std::byte> input, std::span<int32_t> out) override {
    if (static_cast<int64_t>(input.size()) != input_count_ || static_cast<int64_t>(out.size()) != output_count_) {
      return Status::InvalidArgument("exact linear: input has " + std::to_string(input.size()) + " bytes and out " +
                                     std::to_string(out.size()) + " elements; expected " +
                                     std::to_string(input_count_) + " and " + std::to_string(output_count_));
    }
    return int8_->Run(input.data(), out.data());
  }

 private:
  std::unique_ptr<Int8Linear> int8_;
  int64_t input_count_, output_count_;
};

class LimbFieldLinear final : public FieldLinear {
 public:
  LimbFieldLinear(std::unique_ptr<Int8Linear> int8, const LinearSpec& spec, int64_t batch)
      : int8_(std::move(int8)),
        batch_(batch),
        channels_(spec.in_channels),
        height_(spec.in_h),
        width_(spec.in_w),
        output_count_(batch * spec.output_size()),
        accumulators_(static_cast<size_t>(3 * output_count_)) {}

  Status Run(std::span<const uint32_t> x, std::span<uint32_t> out) override {
    const int64_t input_count = batch_ * channels_ * height_ * width_;
    if (static_cast<int64_t>(x.size()) != input_count || static_cast<int64_t>(out.size()) != output_count_) {
      return Status::InvalidArgument("field linear: x has " + std::to_string(x.size()) + " elements and out " +
                                     std::to_string(out.size()) + "; expected " + std::to_string(input_count) +
                                     " and " + std::to_string(output_count_));
    }
    if (!AllFieldElements(x)) return Status::InvalidArgument("field linear: an input element is >= p");
    SplitLimbs(x);
    PPML_RETURN_IF_ERROR(int8_->RunOnInputLayout(accumulators_.data()));
    const int32_t* a0 = accumulators_.data();
    const int32_t* a1 = a0 + output_count_;
    const int32_t* a2 = a1 + output_count_;
    for (int64_t i = 0; i < output_count_; ++i) {
      out[i] = ReduceSigned48(int64_t{a0[i]} + (int64_t{a1[i]} << 8) + (int64_t{a2[i]} << 16));
    }
    return Status::Ok();
  }

 private:
  // Writes limb l of image n as image l * batch + n, straight into the
  // primitive's input layout (nchw or nhwc; a staging buffer otherwise).
  void SplitLimbs(std::span<const uint32_t> x) {
    const Int8Linear::InputLayout layout = int8_->input_layout();
    const int64_t image_size = channels_ * height_ * width_;
    const bool plain = layout.w_stride <= 1 && layout.h_stride == width_ && layout.c_stride == height_ * width_ &&
                       layout.n_stride == image_size;
    if (plain) {
      // Contiguous: three vectorised passes.
      const int64_t count = batch_ * image_size;
      for (int limb = 0; limb < 3; ++limb) {
        uint8_t* dst = layout.data + limb * count;
        const int shift = 8 * limb;
        for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<uint8_t>(x[i] >> shift);
      }
      return;
    }
    for (int64_t n = 0; n < batch_; ++n) {
      for (int64_t c = 0; c < channels_; ++c) {
        for (int64_t h = 0; h < height_; ++h) {
          const uint32_t* src = x.data() + ((n * channels_ + c) * height_ + h) * width_;
          for (int limb = 0; limb < 3; ++limb) {
            uint8_t* dst = layout.data + (limb * batch_ + n) * layout.n_stride + c * layout.c_stride +
                           h * layout.h_stride;
            const int shift = 8 * limb;
            for (int64_t w = 0; w < width_; ++w) dst[w * layout.w_stride] = static_cast<uint8_t>(src[w] >> shift);
          }
        }
      }
    }
  }

  std::unique_ptr<Int8Linear> int8_;
  int64_t batch_, channels_, height_, width_, output_count_;
  std::vector<int32_t> accumulators_;  // [limb][image][output], nchw
};

// out[b][n] = sum_k x[b][k] w[n][k], exact in doubles (see field_kernels.h).
// Blocked for the caches: a tile of kRows images x kCols outputs is
// accumulated over all of K, reading W^T rows of kCols doubles.
class DoubleDenseFieldLinear final : public FieldLinear {
 public:
  DoubleDenseFieldLinear(const LinearSpec& spec, int64_t batch)
      : batch_(batch), k_(spec.in_channels), n_(spec.out_channels), weights_t_(static_cast<size_t>(k_ * n_)) {
    for (int64_t n = 0; n < n_; ++n) {
      for (int64_t k = 0; k < k_; ++k) weights_t_[k * n_ + n] = spec.weights[n * k_ + k];
    }
  }

  Status Run(std::span<const uint32_t> x, std::span<uint32_t> out) override {
    if (static_cast<int64_t>(x.size()) != batch_ * k_ || static_cast<int64_t>(out.size()) != batch_ * n_) {
      return Status::InvalidArgument("field linear: wrong input or output size");
    }
    if (!AllFieldElements(x)) return Status::InvalidArgument("field linear: an input element is >= p");
    constexpr int64_t kRows = 4, kCols = 256;
    const int64_t row_tiles = (batch_ + kRows - 1) / kRows, col_tiles = (n_ + kCols - 1) / kCols;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t rt = 0; rt < row_tiles; ++rt) {
      for (int64_t ct = 0; ct < col_tiles; ++ct) {
        const int64_t b0 = rt * kRows, rows = std::min(kRows, batch_ - b0);
        const int64_t n0 = ct * kCols, cols = std::min(kCols, n_ - n0);
        alignas(64) double acc[kRows][kCols] = {};
        for (int64_t k = 0; k < k_; ++k) {
          const double* w = weights_t_.data() + k * n_ + n0;
          for (int64_t r = 0; r < rows; ++r) {
            const double xv = static_cast<double>(x[(b0 + r) * k_ + k]);
            double* a = acc[r];
            for (int64_t c = 0; c < cols; ++c) a[c] += xv * w[c];
          }
        }
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < cols; ++c) {
            out[(b0 + r) * n_ + n0 + c] = ReduceSigned48(static_cast<int64_t>(acc[r][c]) % kPrime);
          }
        }
      }
    }
    return Status::Ok();
  }

 private:
  int64_t batch_, k_, n_;
  std::vector<double> weights_t_;  // [K][N]
};

}  // namespace

Result<std::unique_ptr<ExactLinear>> ExactLinear::Create(const LinearSpec& spec, ActivationType type, int64_t batch) {
  PPML_RETURN_IF_ERROR(CheckBatch(batch));
  PPML_ASSIGN_OR_RETURN(std::unique_ptr<Int8Linear> int8, Int8Linear::Create(spec, type, batch));
  return std::unique_ptr<ExactLinear>(
      new OneDnnExactLinear(std::move(int8), batch * spec.input_size(), batch * spec.output_size()));
}

Result<std::unique_ptr<FieldLinear>> CreateLimbFieldLinear(const LinearSpec& spec, int64_t batch, Int8Kernel kernel) {
  PPML_RETURN_IF_ERROR(CheckBatch(batch));
  PPML_ASSIGN_OR_RETURN(std::unique_ptr<Int8Linear> int8,
                        Int8Linear::Create(spec, ActivationType::kU8, 3 * batch, kernel));
  try {
    return std::unique_ptr<FieldLinear>(new LimbFieldLinear(std::move(int8), spec, batch));
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("field linear: out of memory");
  }
}

Result<std::unique_ptr<FieldLinear>> CreateDoubleDenseFieldLinear(const LinearSpec& spec, int64_t batch) {
  PPML_RETURN_IF_ERROR(ValidateSpec(spec));
  PPML_RETURN_IF_ERROR(CheckBatch(batch));
  if (!spec.is_dense()) return Status::InvalidArgument("field linear: the double GEMM is for dense layers only");
  try {
    return std::unique_ptr<FieldLinear>(new DoubleDenseFieldLinear(spec, batch));
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("field linear: out of memory");
  }
}

Result<std::unique_ptr<FieldLinear>> FieldLinear::Create(const LinearSpec& spec, int64_t batch) {
  if (kDenseUsesDouble && spec.is_dense()) return CreateDoubleDenseFieldLinear(spec, batch);
  return CreateLimbFieldLinear(spec, batch);
}

}  // namespace ppml::accel
