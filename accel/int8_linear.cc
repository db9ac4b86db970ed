#include "accel/int8_linear.h"

#include <algorithm>
#include <cstring>
#include <new>

namespace ppml::accel {
namespace {

using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

// Weights as oneDNN wants them: [O, I, kh, kw], or [g, O/g, I/g, kh, kw];
// the spec's [O][I/g][kh][kw] order is the same bytes either way.
memory::desc PlainWeightsDesc(const LinearSpec& s, bool inner_product) {
  if (inner_product) return memory::desc({s.out_channels, s.in_channels}, dt::s8, tag::oi);
  if (s.groups == 1) {
    return memory::desc({s.out_channels, s.in_channels, s.kernel_h, s.kernel_w}, dt::s8, tag::oihw);
  }
  return memory::desc({s.groups, s.out_channels / s.groups, s.in_channels / s.groups, s.kernel_h, s.kernel_w}, dt::s8,
                      tag::goihw);
}

// A desc laid out with plain strides only (nchw, nhwc: no inner blocks, no
// padding), so a caller can address its elements directly.
bool IsStrided(const memory::desc& desc) {
  const dnnl_memory_desc_t& d = desc.data;
  if (d.format_kind != dnnl_blocked || d.format_desc.blocking.inner_nblks != 0 || d.offset0 != 0) return false;
  for (int i = 0; i < d.ndims; ++i) {
    if (d.padded_dims[i] != d.dims[i] || d.padded_offsets[i] != 0) return false;
  }
  return true;
}

Status DnnlFailure(const dnnl::error& e) {
  if (e.status == dnnl_unimplemented) return Status::Unsupported("INT8 linear layer: oneDNN has no kernel for it");
  return Status::Internal(std::string("INT8 linear layer: oneDNN: ") + e.what());
}

// Input channels [c0, c0 + count) of group g, as a groups = 1 layer onto
// that group's output channels.
LinearSpec GroupChannelSlice(const LinearSpec& spec, int64_t g, int64_t c0, int64_t count) {
  LinearSpec part = spec;
  const int64_t in_g = spec.in_channels / spec.groups, out_g = spec.out_channels / spec.groups;
  const int64_t taps = spec.kernel_h * spec.kernel_w;
  part.groups = 1;
  part.in_channels = count;
  part.out_channels = out_g;
  part.weights.resize(static_cast<size_t>(out_g * count * taps));
  for (int64_t o = 0; o < out_g; ++o) {
    const int8_t* src = spec.weights.data() + ((g * out_g + o) * in_g + c0) * taps;
    std::memcpy(part.weights.data() + o * count * taps, src, static_cast<size_t>(count * taps));
  }
  return part;
}

}  // namespace

Result<std::unique_ptr<Int8Linear>> Int8Linear::Create(const LinearSpec& spec, ActivationType type, int64_t images,
                                                       Int8Kernel kernel) {
  PPML_RETURN_IF_ERROR(ValidateSpec(spec));
  if (images < 1 || images > kMaxTensorElements) return Status::InvalidArgument("batch must be in [1, 2^26]");
  if (images * std::max(spec.input_size(), spec.output_size()) > (int64_t{1} << 31)) {
    return Status::ResourceExhausted("batch * layer size exceeds 2^31 elements");
  }
  const bool inner_product =
      kernel == Int8Kernel::kInnerProduct || (kernel == Int8Kernel::kAuto && spec.is_dense());
  if (inner_product && !spec.is_dense()) return Status::InvalidArgument("the inner-product kernel needs a dense layer");
  const int64_t taps = spec.kernel_h * spec.kernel_w;
  if (!inner_product && taps > kMaxExactConvReduction) {
    return Status::Unsupported("INT8 linear layer: a " + std::to_string(spec.kernel_h) + "x" +
                               std::to_string(spec.kernel_w) + " kernel has more taps than one exact convolution sums (" +
                               std::to_string(kMaxExactConvReduction) + ")");
  }

  std::unique_ptr<Int8Linear> self(new Int8Linear());
  self->geometry_ = spec;
  self->geometry_.weights.clear();
  self->type_ = type;
  self->images_ = images;
  try {
    self->engine_ = dnnl::engine(dnnl::engine::kind::cpu, 0);
    self->stream_ = dnnl::stream(self->engine_);
    const memory::dims src_dims = inner_product ? memory::dims{images, spec.in_channels}
                                                : memory::dims{images, spec.in_channels, spec.in_h, spec.in_w};
    self->src_plain_ = memory(memory::desc(src_dims, dt::u8, inner_product ? tag::nc : tag::nchw), self->engine_);
    bool split = !inner_product && spec.reduction_length() > kMaxExactConvReduction;
    if (!split) {
      PPML_RETURN_IF_ERROR(self->AddPart(spec, 0, 0, inner_product));
      // Only the gemm inner product was measured exact beyond 2^24; another
      // kernel (brgemm on AVX-512 or AMX machines) is split like a convolution.
      if (inner_product && spec.reduction_length() > kMaxExactConvReduction &&
          self->implementation_.find("gemm_s8u8s32") == std::string::npos) {
        self->parts_.clear();
        split = true;
      }
    }
    if (split) {
      const int64_t in_g = spec.in_channels / spec.groups, out_g = spec.out_channels / spec.groups;
      const int64_t chunk = kMaxExactConvReduction / taps;
      for (int64_t g = 0; g < spec.groups; ++g) {
        for (int64_t c0 = 0; c0 < in_g; c0 += chunk) {
          const int64_t count = std::min(chunk, in_g - c0);
          PPML_RETURN_IF_ERROR(
              self->AddPart(GroupChannelSlice(spec, g, c0, count), g * in_g + c0, g * out_g, inner_product));
        }
      }
    }

    if (type == ActivationType::kS8) {
      // Compensation for the u8 shift: run once on all-ones images.
      std::vector<uint8_t> ones(static_cast<size_t>(images * spec.input_size()), 1);
      std::vector<int32_t> ones_out(static_cast<size_t>(images * spec.output_size()));
      self->type_ = ActivationType::kU8;
      PPML_RETURN_IF_ERROR(self->Run(ones.data(), ones_out.data()));
      self->type_ = type;
      self->compensation_.resize(static_cast<size_t>(spec.output_size()));
      for (size_t i = 0; i < self->compensation_.size(); ++i) self->compensation_[i] = 128 * ones_out[i];
    }
  } catch (const dnnl::error& e) {
    return DnnlFailure(e);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("INT8 linear layer: out of memory");
  }
  return self;
}

Status Int8Linear::AddPart(const LinearSpec& s, int64_t in_begin, int64_t out_begin, bool inner_product) {
  const LinearSpec& whole = geometry_;
  Part part;
  part.in_begin = in_begin;
  part.out_begin = out_begin;
  part.out_count = s.out_channels;
  const memory::dims src_dims =
      inner_product ? memory::dims{images_, s.in_channels} : memory::dims{images_, s.in_channels, s.in_h, s.in_w};
  const memory::dims dst_dims =
      inner_product ? memory::dims{images_, s.out_channels} : memory::dims{images_, s.out_channels, s.out_h, s.out_w};
  const memory::dims weight_dims = PlainWeightsDesc(s, inner_product).dims();
  const memory::desc src_any(src_dims, dt::u8, tag::any);
  const memory::desc dst_any(dst_dims, dt::s32, tag::any);
  const memory::desc weights_any(weight_dims, dt::s8, tag::any);
  memory::desc src_desc, dst_desc, weights_desc;
  if (inner_product) {
    dnnl::inner_product_forward::desc desc(dnnl::prop_kind::forward_inference, src_any, weights_any, dst_any);
    dnnl::inner_product_forward::primitive_desc pd(desc, engine_);
    src_desc = pd.src_desc(), dst_desc = pd.dst_desc(), weights_desc = pd.weights_desc();
    implementation_ = pd.impl_info_str();
    part.primitive = dnnl::inner_product_forward(pd);
  } else {
    dnnl::convolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_any, weights_any, dst_any,
        {s.stride_h, s.stride_w}, {s.dilation_h - 1, s.dilation_w - 1}, {s.pad_top, s.pad_left},
        {s.pad_bottom, s.pad_right});
    dnnl::convolution_forward::primitive_desc pd(desc, engine_);
    src_desc = pd.src_desc(), dst_desc = pd.dst_desc(), weights_desc = pd.weights_desc();
    implementation_ = pd.impl_info_str();
    part.primitive = dnnl::convolution_forward(pd);
  }

  // The part's channels inside the whole plain input: the plain strides of
  // the whole tensor, the data handle moved to its first channel per run.
  const memory::dims view_strides =
      inner_product ? memory::dims{whole.in_channels, 1}
                    : memory::dims{whole.in_channels * whole.in_h * whole.in_w, whole.in_h * whole.in_w, whole.in_w, 1};
  const memory::desc view_desc(src_dims, dt::u8, view_strides);
  part.src_view = memory(view_desc, engine_, DNNL_MEMORY_NONE);
  if (src_desc == view_desc) {
    part.src = part.src_view;
  } else {
    part.src = memory(src_desc, engine_);
    part.src_reorder = dnnl::reorder(part.src_view, part.src);
  }

  memory user_weights(PlainWeightsDesc(s, inner_product), engine_, const_cast<int8_t*>(s.weights.data()));
  part.weights = memory(weights_desc, engine_);
  dnnl::reorder(user_weights, part.weights).execute(stream_, user_weights, part.weights);
  stream_.wait();

  // One part writes the caller's output directly; several sum their own buffers.
  const memory::desc dst_plain_desc(dst_dims, dt::s32, inner_product ? tag::nc : tag::nchw);
  const bool whole_layer = s.out_channels == whole.out_channels && in_begin == 0 && s.in_channels == whole.in_channels;
  part.dst_plain = whole_layer ? memory(dst_plain_desc, engine_, DNNL_MEMORY_NONE) : memory(dst_plain_desc, engine_);
  if (dst_desc == dst_plain_desc) {
    part.dst = part.dst_plain;
  } else {
    part.dst = memory(dst_desc, engine_);
    part.dst_reorder = dnnl::reorder(part.dst, part.dst_plain);
  }
  parts_.push_back(std::move(part));
  return Status::Ok();
}

Int8Linear::InputLayout Int8Linear::input_layout() {
  const bool direct = parts_.size() == 1 && parts_[0].src != parts_[0].src_view && IsStrided(parts_[0].src.get_desc());
  const memory& target = direct ? parts_[0].src : src_plain_;
  const dnnl_memory_desc_t& d = target.get_desc().data;
  const auto* strides = d.format_desc.blocking.strides;
  InputLayout layout{static_cast<uint8_t*>(target.get_data_handle()), strides[0], strides[1], 0, 0};
  if (d.ndims == 4) layout.h_stride = strides[2], layout.w_stride = strides[3];
  return layout;
}

Status Int8Linear::RunOnInputLayout(int32_t* dst) {
  const bool direct = parts_.size() == 1 && parts_[0].src != parts_[0].src_view && IsStrided(parts_[0].src.get_desc());
  try {
    Execute(dst, direct);
  } catch (const dnnl::error& e) {
    return DnnlFailure(e);
  }
  return Status::Ok();
}

Status Int8Linear::Run(const void* src, int32_t* dst) {
  const size_t in_count = static_cast<size_t>(images_ * geometry_.input_size());
  if (type_ == ActivationType::kS8) {
    // x + 128 as a byte is x ^ 0x80.
    shifted_.resize(in_count);
    const uint8_t* in = static_cast<const uint8_t*>(src);
    for (size_t i = 0; i < in_count; ++i) shifted_[i] = in[i] ^ 0x80;
    src = shifted_.data();
  }
  try {
    // The plain input edge points at the caller's bytes for this call only.
    void* own = src_plain_.get_data_handle();
    src_plain_.set_data_handle(const_cast<void*>(src));
    try {
      Execute(dst, false);
    } catch (...) {
      src_plain_.set_data_handle(own);
      throw;
    }
    src_plain_.set_data_handle(own);
  } catch (const dnnl::error& e) {
    return DnnlFailure(e);
  }
  if (type_ == ActivationType::kS8) {
    const int64_t per_image = geometry_.output_size();
    for (int64_t n = 0; n < images_; ++n) {
      int32_t* out = dst + n * per_image;
      for (int64_t i = 0; i < per_image; ++i) out[i] -= compensation_[i];
    }
  }
  return Status::Ok();
}

void Int8Linear::Execute(int32_t* dst, bool input_in_part_buffer) {
  uint8_t* input = static_cast<uint8_t*>(src_plain_.get_data_handle());
  const bool is_dense_view = parts_[0].src_view.get_desc().data.ndims == 2;
  const int64_t channel_stride = is_dense_view ? 1 : geometry_.in_h * geometry_.in_w;
  for (Part& part : parts_) {
    if (!input_in_part_buffer) {
      part.src_view.set_data_handle(input + part.in_begin * channel_stride);
      if (part.src_reorder) part.src_reorder.execute(stream_, part.src_view, part.src);
    }
    if (parts_.size() == 1) part.dst_plain.set_data_handle(dst);
    part.primitive.execute(stream_, {{DNNL_ARG_SRC, part.src}, {DNNL_ARG_WEIGHTS, part.weights}, {DNNL_ARG_DST, part.dst}});
    if (part.dst_reorder) part.dst_reorder.execute(stream_, part.dst, part.dst_plain);
  }
  stream_.wait();
  if (parts_.size() == 1) return;

  // Sum the parts' outputs (each exact, |sum| <= 2^24) into the output channels they cover.
  const int64_t pixels = geometry_.out_h * geometry_.out_w;
  std::fill(dst, dst + images_ * geometry_.output_size(), 0);
  for (const Part& part : parts_) {
    const int32_t* src = static_cast<const int32_t*>(part.dst_plain.get_data_handle());
    const int64_t block = part.out_count * pixels;  // contiguous per image
    for (int64_t n = 0; n < images_; ++n) {
      int32_t* out = dst + (n * geometry_.out_channels + part.out_begin) * pixels;
      const int32_t* in = src + n * block;
      for (int64_t i = 0; i < block; ++i) out[i] += in[i];
    }
  }
}

}  // namespace ppml::accel
