// LinearSpec validation and identity, and the field PRG.
#include "accel/field.h"

#include <openssl/evp.h>

#include <array>
#include <cstring>

namespace ppml::accel {
namespace {

constexpr std::array<char, 4> kSpecMagic = {'P', 'L', 'S', '1'};
constexpr size_t kSpecFieldCount = 17;
constexpr size_t kSpecHeaderSize = kSpecMagic.size() + kSpecFieldCount * 8;

// The geometry fields in SerializeSpec's order (see the diagram in field.h).
std::array<int64_t*, kSpecFieldCount> GeometryFields(LinearSpec& s) {
  return {&s.in_channels, &s.in_h,       &s.in_w,       &s.out_channels, &s.out_h,      &s.out_w,
          &s.kernel_h,    &s.kernel_w,   &s.stride_h,   &s.stride_w,     &s.dilation_h, &s.dilation_w,
          &s.pad_top,     &s.pad_left,   &s.pad_bottom, &s.pad_right,    &s.groups};
}
constexpr std::array<const char*, kSpecFieldCount> kGeometryNames = {
    "in_channels", "in_h",     "in_w",       "out_channels", "out_h",    "out_w",      "kernel_h",  "kernel_w", "stride_h",
    "stride_w",    "dilation_h", "dilation_w", "pad_top",    "pad_left", "pad_bottom", "pad_right", "groups"};
bool IsPadField(size_t i) { return i >= 12 && i < 16; }

// Every geometry field within [1, 2^18] (pads [0, 2^18]).
Status CheckGeometryRanges(LinearSpec& spec);

Status CheckRange(const char* name, int64_t value, int64_t low, int64_t high) {
  if (value < low || value > high) {
    return Status::InvalidArgument("linear spec: " + std::string(name) + " = " + std::to_string(value) +
                                   " is outside [" + std::to_string(low) + ", " + std::to_string(high) + "]");
  }
  return Status::Ok();
}

Status CheckGeometryRanges(LinearSpec& spec) {
  const auto fields = GeometryFields(spec);
  for (size_t i = 0; i < kSpecFieldCount; ++i) {
    PPML_RETURN_IF_ERROR(CheckRange(kGeometryNames[i], *fields[i], IsPadField(i) ? 0 : 1, kMaxDimension));
  }
  return Status::Ok();
}

// ONNX/oneDNN output extent: floor((in + pads - dilated kernel) / stride) + 1.
int64_t OutputExtent(int64_t in, int64_t pad_begin, int64_t pad_end, int64_t kernel, int64_t dilation,
                     int64_t stride) {
  const int64_t span = in + pad_begin + pad_end - (kernel - 1) * dilation - 1;
  return span < 0 ? 0 : span / stride + 1;
}

void PutInt64(uint8_t* out, int64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i));
}
int64_t GetInt64(const uint8_t* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(in[i]) << (8 * i);
  return static_cast<int64_t>(v);
}

}  // namespace

// Builds for AVX2 and for the baseline, picked at load time (the project is
// compiled for generic x86-64): the hot loops of the check run on 4 lanes.
bool AllFieldElements(std::span<const uint32_t> values) __attribute__((target_clones("avx2", "default")));
bool AllFieldElements(std::span<const uint32_t> values) {
  // v >= p iff v >= 2^24 or (v < 2^24 and v + 3 >= 2^24): shifts and ors
  // only, which vectorise on every x86 (unsigned compares do not on SSE2).
  uint32_t high = 0;
  for (uint32_t v : values) high |= (v >> 24) | ((v + 3) >> 24);
  return high == 0;
}

Status ValidateSpec(const LinearSpec& spec) {
  LinearSpec geometry = spec;  // GeometryFields wants a mutable spec
  geometry.weights.clear();
  PPML_RETURN_IF_ERROR(CheckGeometryRanges(geometry));
  if (spec.in_channels % spec.groups != 0 || spec.out_channels % spec.groups != 0) {
    return Status::InvalidArgument("linear spec: groups = " + std::to_string(spec.groups) +
                                   " does not divide in_channels = " + std::to_string(spec.in_channels) +
                                   " and out_channels = " + std::to_string(spec.out_channels));
  }
  const int64_t out_h =
      OutputExtent(spec.in_h, spec.pad_top, spec.pad_bottom, spec.kernel_h, spec.dilation_h, spec.stride_h);
  const int64_t out_w =
      OutputExtent(spec.in_w, spec.pad_left, spec.pad_right, spec.kernel_w, spec.dilation_w, spec.stride_w);
  if (out_h != spec.out_h || out_w != spec.out_w) {
    return Status::InvalidArgument("linear spec: out_h x out_w = " + std::to_string(spec.out_h) + "x" +
                                   std::to_string(spec.out_w) + " but the geometry gives " + std::to_string(out_h) +
                                   "x" + std::to_string(out_w));
  }
  // Each factor is <= 2^18, so these products cannot overflow int64.
  if (spec.input_size() > kMaxTensorElements || spec.output_size() > kMaxTensorElements) {
    return Status::InvalidArgument("linear spec: more than 2^26 input or output elements per image");
  }
  if (spec.reduction_length() > kMaxReductionLength) {
    return Status::InvalidArgument("linear spec: reduction length in_channels / groups * kernel_h * kernel_w = " +
                                   std::to_string(spec.reduction_length()) + " exceeds " +
                                   std::to_string(kMaxReductionLength) + " (exactness of the INT8 limbs)");
  }
  const int64_t weight_count = spec.out_channels * spec.reduction_length();
  if (weight_count > kMaxWeightCount) {
    return Status::InvalidArgument("linear spec: " + std::to_string(weight_count) + " weights, more than 2^28");
  }
  if (static_cast<int64_t>(spec.weights.size()) != weight_count) {
    return Status::InvalidArgument("linear spec: weights has " + std::to_string(spec.weights.size()) +
                                   " values, the geometry needs " + std::to_string(weight_count));
  }
  for (size_t i = 0; i < spec.weights.size(); ++i) {
    if (spec.weights[i] > kMaxWeight || spec.weights[i] < -kMaxWeight) {
      return Status::InvalidArgument("linear spec: weights[" + std::to_string(i) + "] = " +
                                     std::to_string(spec.weights[i]) + " is outside [-63, 63]");
    }
  }
  return Status::Ok();
}

std::vector<uint8_t> SerializeSpec(const LinearSpec& spec) {
  LinearSpec geometry = spec;
  geometry.weights.clear();
  std::vector<uint8_t> out(kSpecHeaderSize + spec.weights.size());
  std::memcpy(out.data(), kSpecMagic.data(), kSpecMagic.size());
  uint8_t* p = out.data() + kSpecMagic.size();
  for (int64_t* field : GeometryFields(geometry)) {
    PutInt64(p, *field);
    p += 8;
  }
  std::memcpy(p, spec.weights.data(), spec.weights.size());
  return out;
}

Result<LinearSpec> ParseSpec(std::span<const uint8_t> bytes) {
  if (bytes.size() < kSpecHeaderSize || std::memcmp(bytes.data(), kSpecMagic.data(), kSpecMagic.size()) != 0) {
    return Status::InvalidArgument("linear spec: " + std::to_string(bytes.size()) + " bytes without the PLS1 header");
  }
  LinearSpec spec;
  const uint8_t* p = bytes.data() + kSpecMagic.size();
  for (int64_t* field : GeometryFields(spec)) {
    *field = GetInt64(p);
    p += 8;
  }
  // Geometry first: the weight count it implies must match the bytes that
  // are actually there before anything is allocated.
  PPML_RETURN_IF_ERROR(CheckGeometryRanges(spec));
  const size_t weight_bytes = bytes.size() - kSpecHeaderSize;
  // (reduction_length() <= 2^54 here, so the product is checked before it could overflow.)
  if (spec.in_channels % spec.groups != 0 || spec.reduction_length() > kMaxReductionLength ||
      spec.out_channels * spec.reduction_length() != static_cast<int64_t>(weight_bytes)) {
    return Status::InvalidArgument("linear spec: " + std::to_string(weight_bytes) +
                                   " weight bytes do not match the geometry");
  }
  spec.weights.resize(weight_bytes);
  std::memcpy(spec.weights.data(), p, weight_bytes);
  PPML_RETURN_IF_ERROR(ValidateSpec(spec));
  return spec;
}

std::string SpecDigest(const LinearSpec& spec) {
  Result<crypto::Bytes> digest = crypto::Sha256(SerializeSpec(spec));
  return digest.ok() ? crypto::ToHex(*digest) : std::string();
}

// ---- FieldPrg ----------------------------------------------------------------

namespace {
constexpr size_t kKeystreamChunk = 3 * 1024;  // a multiple of 3: candidates never straddle chunks
}  // namespace

Result<FieldPrg> FieldPrg::Create(std::span<const std::byte> seed32, uint64_t stream) {
  if (seed32.size() != crypto::kAes256KeyLength) {
    return Status::InvalidArgument("field PRG: seed must be 32 bytes, got " + std::to_string(seed32.size()));
  }
  crypto::EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return Status::Internal(crypto::OpenSslErrorMessage("field PRG: EVP_CIPHER_CTX_new"));
  std::array<uint8_t, 16> counter_block{};
  for (int i = 0; i < 8; ++i) counter_block[i] = static_cast<uint8_t>(stream >> (56 - 8 * i));
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_ctr(), nullptr, reinterpret_cast<const uint8_t*>(seed32.data()),
                         counter_block.data()) != 1) {
    return Status::Internal(crypto::OpenSslErrorMessage("field PRG: AES-256-CTR init"));
  }
  return FieldPrg(std::move(ctx));
}

Status FieldPrg::Refill() {
  // The keystream is the encryption of zeros.
  keystream_.assign(kKeystreamChunk, 0);
  int written = 0;
  if (EVP_EncryptUpdate(ctx_.get(), keystream_.data(), &written, keystream_.data(),
                        static_cast<int>(keystream_.size())) != 1 ||
      written != static_cast<int>(keystream_.size())) {
    return Status::Internal(crypto::OpenSslErrorMessage("field PRG: AES-256-CTR"));
  }
  next_ = 0;
  return Status::Ok();
}

Status FieldPrg::Fill(std::span<uint32_t> out) {
  size_t filled = 0;
  while (filled < out.size()) {
    if (next_ + 3 > keystream_.size()) PPML_RETURN_IF_ERROR(Refill());
    const uint8_t* k = keystream_.data() + next_;
    const size_t end = keystream_.size();
    size_t pos = next_;
    while (filled < out.size() && pos + 3 <= end) {
      const uint32_t candidate = (uint32_t{k[0]} << 16) | (uint32_t{k[1]} << 8) | k[2];
      k += 3;
      pos += 3;
      if (candidate < kPrime) out[filled++] = candidate;
    }
    next_ = pos;
  }
  return Status::Ok();
}

}  // namespace ppml::accel
