// Int8Linear: oneDNN INT8 primitives for a LinearSpec over a fixed number of
// images, plain layouts at the edges: u8 or s8 nchw in, s32 nchw out, s8
// weights, no scales, so every output is the exact integer sum of products.
//
// Private to accel/: ExactLinear, FieldLinear and the benchmark build on it.
//
// Exactness, measured on oneDNN 2.6 (tests/accel/field_test.cc):
//   - products: |w| <= 63 keeps the 16-bit pair sums of CPUs without VNNI
//     (vpmaddubsw) below 2^15 (see field.h);
//   - accumulators: the JIT INT8 convolutions convert the s32 accumulator to
//     f32 and back in their epilogue even with an s32 output and no scales,
//     so they are exact only while |sum| <= 2^24. A convolution whose
//     worst-case sum 255 * 63 * K exceeds 2^24 (K > 1044, e.g. 3x3 over 117+
//     channels) is therefore split along its input channels into parts of at
//     most kMaxExactConvReduction products each, and the parts' outputs are
//     added in int32 here. The gemm inner product (dense layers,
//     gemm_s8u8s32) keeps s32 all the way and is exact up to 2^31, so it is
//     not split; any other inner-product kernel oneDNN picks (brgemm on
//     AVX-512/AMX machines, not measured here) is split like a convolution.
//
// Layouts follow oneDNN's advice: primitives are created with format_tag::any,
// weights are reordered once, inputs and outputs are reordered only when the
// layout oneDNN chose is not plain (a caller may instead write the input
// straight into the primitive's buffer, see input_layout()).
//
// Signed input: oneDNN on CPUs without VNNI halves s8 weights (rounding) when
// the source is s8 and compensates with an output scale, which is not exact.
// So an s8 input is shifted to u8 (x + 128) on the way in, and 128 * (the
// sum of the weights each output sees, padding excluded) is subtracted on the
// way out: a map precomputed once by running on an all-ones image.
//
// Thread safety: one thread at a time.
#pragma once

#include <dnnl.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "accel/field.h"
#include "common/status.h"

namespace ppml::accel {

// The longest reduction one oneDNN INT8 convolution may sum exactly:
// 255 * 63 * 1044 = 16,771,860 <= 2^24.
inline constexpr int64_t kMaxExactConvReduction = (int64_t{1} << 24) / (255 * kMaxWeight);

enum class Int8Kernel {
  kAuto,           // inner product for dense layers, convolution otherwise
  kConvolution,    // convolution_forward always
  kInnerProduct,   // inner_product_forward (dense layers only)
};

class Int8Linear {
 public:
  static Result<std::unique_ptr<Int8Linear>> Create(const LinearSpec& spec, ActivationType type, int64_t images,
                                                    Int8Kernel kernel = Int8Kernel::kAuto);

  // src: images * input_size() values (uint8_t or int8_t per `type`), nchw.
  // dst: images * output_size() int32, nchw.
  Status Run(const void* src, int32_t* dst);

  // For callers that produce the u8 input themselves (FieldLinear's limbs):
  // element (image n, channel c, row h, column w) goes to
  // data[n * n_stride + c * c_stride + h * h_stride + w * w_stride]. That is
  // the primitive's own buffer when its layout is strided (nchw, nhwc), so
  // no reorder runs; a plain staging buffer otherwise.
  struct InputLayout {
    uint8_t* data;
    int64_t n_stride, c_stride, h_stride, w_stride;
  };
  InputLayout input_layout();
  // Runs on what the caller wrote through input_layout(). Only for kU8.
  Status RunOnInputLayout(int32_t* dst);

  int64_t images() const { return images_; }
  // oneDNN's kernel name, and how many primitives the reduction was split into.
  const std::string& implementation() const { return implementation_; }
  size_t parts() const { return parts_.size(); }

 private:
  // One primitive: input channels [in_begin, in_begin + in_count) of group
  // `group` (or the whole layer when it is not split) into output channels
  // [out_begin, out_begin + out_count).
  struct Part {
    int64_t in_begin = 0, out_begin = 0, out_count = 0;
    dnnl::primitive primitive;
    dnnl::memory src_view;  // the part's channels seen in the plain input
    dnnl::memory src, weights, dst;
    dnnl::memory dst_plain;  // nchw s32 of the part's output channels
    dnnl::reorder src_reorder, dst_reorder;  // empty when the layouts are the same
  };

  Int8Linear() = default;
  Status AddPart(const LinearSpec& part_spec, int64_t in_begin, int64_t out_begin, bool inner_product);
  // Runs every part on src_plain_'s handle (or, for one strided part, on its
  // own src buffer) and writes the sum into dst.
  void Execute(int32_t* dst, bool input_in_part_buffer);

  LinearSpec geometry_;  // weights cleared
  ActivationType type_ = ActivationType::kU8;
  int64_t images_ = 0;
  std::string implementation_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::vector<Part> parts_;
  dnnl::memory src_plain_;  // the whole plain nchw input (a staging buffer, or the caller's bytes during Run)
  std::vector<uint8_t> shifted_;       // an s8 input moved to u8 (plain layout)
  std::vector<int32_t> compensation_;  // per output element of one image: 128 * sum of the weights it sees
};

}  // namespace ppml::accel
