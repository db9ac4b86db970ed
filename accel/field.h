// Fixed-point arithmetic over the prime field Z_p, p = 2^24 - 3 (as Slalom),
// and the exact linear layers both sides of outsourcing compute in it.
//
// Encoding (see docs/ACCEL.md): activations are 8-bit integers (u8 0..255
// after ReLU-like ops, s8 -127..127 otherwise) and weights 7-bit signed
// integers (|w| <= kMaxWeight) per output channel. A field element is a
// uint32_t in [0, p); a signed integer v is stored as v mod p and read back
// with Centered() (the representative in (-p/2, p/2)). Why 7-bit weights:
// CPUs without VNNI multiply u8 x s8 pairs into saturating 16-bit sums
// (255 * 63 * 2 = 32130 < 32767), so every oneDNN INT8 product here is exact
// on every ISA. (Accumulators need more care: oneDNN's INT8 convolutions are
// exact only up to 2^24, so long reductions are split; see int8_linear.h.)
//
// Thread safety: the free functions are pure; ExactLinear and FieldLinear
// objects are not safe to Run from several threads at once (they own oneDNN
// primitives and scratch); FreivaldsCheck is const after construction.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "common/status.h"

namespace ppml::accel {

inline constexpr uint32_t kPrime = (1u << 24) - 3;  // 16777213
inline constexpr int kMaxWeight = 63;
// The longest reduction (in_channels / groups * kernel_h * kernel_w) a layer
// may have: one 8-bit limb of FieldLinear accumulates |sum| <= 255 * 63 * K,
// which stays below 2^31 (oneDNN's s32 accumulator) for K <= 133,000.
inline constexpr int64_t kMaxReductionLength = 133'000;
// Size caps that keep every allocation of a (possibly hostile) spec bounded.
inline constexpr int64_t kMaxDimension = 1 << 18;  // any channel count, height, width, kernel, stride, pad
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 26;  // per image
// A sanity bound on one layer's weights, above VGG16's 25088 x 4096 dense
// layer (103M) and within the protocol's default 256 MiB payload.
inline constexpr int64_t kMaxWeightCount = int64_t{1} << 28;

inline uint32_t FieldFromSigned(int64_t v) {
  const int64_t r = v % static_cast<int64_t>(kPrime);
  return static_cast<uint32_t>(r < 0 ? r + kPrime : r);
}
inline int32_t Centered(uint32_t x) {
  return x > kPrime / 2 ? static_cast<int32_t>(x) - static_cast<int32_t>(kPrime) : static_cast<int32_t>(x);
}
inline uint32_t FieldAdd(uint32_t a, uint32_t b) {
  const uint32_t s = a + b;
  return s >= kPrime ? s - kPrime : s;
}
inline uint32_t FieldSub(uint32_t a, uint32_t b) { return a >= b ? a - b : a + kPrime - b; }
// Any uint64 reduced mod p with shifts and adds only (2^24 = 3 mod p), so
// loops of it vectorise, unlike a 64-bit division.
inline uint32_t FieldReduce(uint64_t v) {
  v = (v & 0xFFFFFF) + 3 * (v >> 24);  // < 2^24 + 3 * 2^40
  v = (v & 0xFFFFFF) + 3 * (v >> 24);  // < 2^24 + 3 * 2^18
  v = (v & 0xFFFFFF) + 3 * (v >> 24);  // < 2^24 + 3 = p + 6
  return static_cast<uint32_t>(v >= kPrime ? v - kPrime : v);
}
inline uint32_t FieldMul(uint32_t a, uint32_t b) { return FieldReduce(static_cast<uint64_t>(a) * b); }

// Whether every value is a field element (< p): inputs from callers and
// replies from the accelerator are checked with it before any arithmetic.
bool AllFieldElements(std::span<const uint32_t> values);

// A linear layer as the enclave and the accelerator both see it: a 2-D
// convolution per image of shape [in_channels, in_h, in_w] -> [out_channels,
// out_h, out_w]. A dense layer (Gemm/MatMul, y = x W^T) is the 1x1
// convolution of a 1x1 image: in_channels = K, out_channels = N.
struct LinearSpec {
  int64_t in_channels = 0, in_h = 1, in_w = 1;
  int64_t out_channels = 0, out_h = 1, out_w = 1;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;  // 1 = dense kernel (ONNX convention)
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t groups = 1;
  // [out_channels][in_channels / groups][kernel_h][kernel_w], each |w| <= kMaxWeight.
  std::vector<int8_t> weights;

  int64_t input_size() const { return in_channels * in_h * in_w; }    // per image
  int64_t output_size() const { return out_channels * out_h * out_w; }  // per image
  int64_t macs_per_image() const { return output_size() * reduction_length(); }
  // K: the products summed into one output element.
  int64_t reduction_length() const { return in_channels / groups * kernel_h * kernel_w; }
  // A Gemm/MatMul layer: 1x1 image, 1x1 kernel, one group.
  bool is_dense() const {
    return in_h == 1 && in_w == 1 && kernel_h == 1 && kernel_w == 1 && out_h == 1 && out_w == 1 && groups == 1;
  }
};

// Checks every field: positive sizes, channels divisible by groups, out_h/out_w
// consistent with the geometry, weights count and range. InvalidArgument naming the field.
Status ValidateSpec(const LinearSpec& spec);
// A stable identity of the spec (SHA-256 hex over SerializeSpec's bytes):
// enclaves sharing an accelerator register identical layers once. Empty only
// if OpenSSL itself fails.
std::string SpecDigest(const LinearSpec& spec);

// The canonical byte form of a spec, used for the digest and on the wire
// (accel/protocol.h):
//
//   +-----------+-----------------------------------+-------------------+
//   | "PLS1"    | 17 x int64 little-endian:         | weights: int8 x   |
//   | (4 bytes) | in_channels in_h in_w             | (rest of buffer)  |
//   |           | out_channels out_h out_w          |                   |
//   |           | kernel_h kernel_w stride_h        |                   |
//   |           | stride_w dilation_h dilation_w    |                   |
//   |           | pad_top pad_left pad_bottom       |                   |
//   |           | pad_right groups                  |                   |
//   +-----------+-----------------------------------+-------------------+
std::vector<uint8_t> SerializeSpec(const LinearSpec& spec);
// The inverse; InvalidArgument for a wrong magic or length, or whatever
// ValidateSpec says about the decoded spec.
Result<LinearSpec> ParseSpec(std::span<const uint8_t> bytes);

enum class ActivationType { kU8, kS8 };

// The enclave's own exact path: 8-bit activations x 7-bit weights -> exact
// int32 accumulators, oneDNN INT8 primitives (fast; mode `off`, the fallback
// after a failed check, and the reference for the outsourced modes): a
// convolution, an inner product for dense layers, split along the input
// channels when one primitive could round (int8_linear.h). Errors:
// InvalidArgument for a bad spec or batch, Unsupported when oneDNN has no
// kernel (or a kernel over 1044 taps), ResourceExhausted for batch * size > 2^31.
class ExactLinear {
 public:
  static Result<std::unique_ptr<ExactLinear>> Create(const LinearSpec& spec, ActivationType type, int64_t batch);
  virtual ~ExactLinear() = default;
  // input: batch * input_size() bytes (uint8_t or int8_t per `type`); out: batch * output_size().
  virtual Status Run(std::span<const std::byte> input, std::span<int32_t> out) = 0;
};

// Arbitrary field elements in, (X W) mod p out: what the accelerator
// computes on blinded inputs X + R, and what the enclave computes when it
// precomputes R W. Exact (see linear.cc: 8-bit limbs through the INT8
// primitives of ExactLinear, recombined in 64-bit integers). Run rejects an
// element >= p with InvalidArgument.
class FieldLinear {
 public:
  static Result<std::unique_ptr<FieldLinear>> Create(const LinearSpec& spec, int64_t batch);
  virtual ~FieldLinear() = default;
  // x: batch * input_size() elements in [0, p); out: batch * output_size().
  virtual Status Run(std::span<const uint32_t> x, std::span<uint32_t> out) = 0;
};

// Uniform field elements from a 32-byte seed (AES-256-CTR through OpenSSL
// EVP, rejection sampling of 24-bit values): blinding pads, Freivalds vectors.
// The key is the seed; the 16-byte counter block starts as stream (8 bytes
// big-endian) || 0 (8 bytes), so distinct streams of one seed never share
// keystream (2^64 blocks each). Each candidate takes 3 keystream bytes
// (big-endian) and is kept when < p (rejected with probability 3 / 2^24).
// Deterministic: the same seed and stream give the same sequence.
// Thread safety: one thread at a time (it owns an EVP_CIPHER_CTX).
class FieldPrg {
 public:
  static Result<FieldPrg> Create(std::span<const std::byte> seed32, uint64_t stream);
  Status Fill(std::span<uint32_t> out);

 private:
  explicit FieldPrg(crypto::EvpCipherCtxPtr ctx) : ctx_(std::move(ctx)) {}
  Status Refill();

  crypto::EvpCipherCtxPtr ctx_;
  std::vector<uint8_t> keystream_;  // unused bytes are keystream_[next_..]
  size_t next_ = 0;
};

// Freivalds' check of Z = X W (mod p) for a whole batch at once:
//   sum_b r_b sum_c s_c Z[b,c,pixel]  ==  conv(sum_b r_b X_b, sum_c s_c W_c)[pixel]
// for every output pixel, with secret s (fixed per check object, W s
// precomputed) and fresh secret r per call. A wrong Z passes one repetition
// with probability <= 2/p; `repetitions` (default 2) gives <= (2/p)^2 < 2^-40.
//
// Randomness: repetition t draws s from FieldPrg(seed, stream t); call n
// draws its r from FieldPrg(seed, stream 2^32 + n) with n from an atomic
// counter, so r is fresh per call, secret with the seed, and Verify stays
// const and thread-safe.
class FreivaldsCheck {
 public:
  static Result<std::unique_ptr<FreivaldsCheck>> Create(const LinearSpec& spec, std::span<const std::byte> seed32,
                                                        int repetitions = 2);
  ~FreivaldsCheck();
  // x: the unblinded input (batch * input_size() field elements in [0, p)),
  // z: the claimed batch * output_size() result. OK when it holds, DataLoss
  // naming the layer digest prefix otherwise (also for an element of z >= p);
  // InvalidArgument for wrong sizes, a batch < 1 or an x element >= p.
  Status Verify(std::span<const uint32_t> x, std::span<const uint32_t> z, int64_t batch) const;
  // Multiply-accumulates one Verify performs (for the enclave's MAC share).
  int64_t macs(int64_t batch) const;
  int repetitions() const;

 private:
  struct State;
  explicit FreivaldsCheck(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace ppml::accel
