// FreivaldsCheck: is Z = conv(X, W) mod p, for a whole batch, at the cost of
// one pass over X and Z and a single-output-channel convolution.
//
// With r (one field element per image, fresh per call) and s (one per output
// channel, fixed per object):
//
//   left[pixel]  = sum_b r_b sum_c s_c Z[b, c, pixel]
//   right[pixel] = conv(X_r, W_s)[pixel],   X_r = sum_b r_b X_b,
//                                           W_s[i, kh, kw] = sum_{c in group(i)} s_c W[c, i mod (Cin/g), kh, kw]
//
// Linearity of the convolution in X and in the output channel makes
// left == right whenever Z is right. For a grouped convolution, output
// channel c only reads the input channels of its group, so input channel i
// of group g meets only the s_c of that group: W_s is one dense kernel over
// all input channels.
//
// Arithmetic: field elements are < 2^24, so a product is < 2^48 and a uint64
// holds 2^16 of them; every accumulator is reduced mod p after at most
// kTermsBeforeReduce = 2^15 terms (and starts below p), so it never wraps.
#include <algorithm>
#include <atomic>
#include <cstring>

#include "accel/field.h"

namespace ppml::accel {
namespace {

constexpr int64_t kTermsBeforeReduce = int64_t{1} << 15;
constexpr uint64_t kVerifyStreamBase = uint64_t{1} << 32;  // r streams; s uses streams 0..repetitions-1

// The hot loops are built for AVX2 and for the baseline, picked at load
// time (the project compiles for generic x86-64).
#define PPML_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))

PPML_VECTOR_CLONES void ReduceAll(std::span<uint64_t> acc) {
  for (uint64_t& a : acc) a = FieldReduce(a);
}

// acc[i] += coeff * src[i]: the vectorised heart of both sides. Both factors
// are 32-bit so the compiler uses the 32x32->64 multiply (vpmuludq), not a
// 64x64 emulation.
PPML_VECTOR_CLONES void MultiplyAccumulate(uint64_t* __restrict acc, uint32_t coeff, const uint32_t* __restrict src,
                                           int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += uint64_t{coeff} * src[i];
}

// sum_i a[i] * b[i] mod p for long vectors, reduced every 2^15 terms.
PPML_VECTOR_CLONES uint64_t DotMod(const uint32_t* a, const uint32_t* b, int64_t n) {
  uint64_t total = 0;
  for (int64_t start = 0; start < n; start += kTermsBeforeReduce) {
    const int64_t end = std::min(n, start + kTermsBeforeReduce);
    uint64_t chunk = 0;
    for (int64_t i = start; i < end; ++i) chunk += uint64_t{a[i]} * b[i];
    total = FieldReduce(total + FieldReduce(chunk));
  }
  return total;
}

}  // namespace

struct FreivaldsCheck::State {
  LinearSpec geometry;  // weights cleared
  std::string digest_prefix;
  int repetitions = 0;
  crypto::SecretBytes seed;
  // Per repetition: s over the output channels, and W_s over [Cin][kh][kw].
  std::vector<std::vector<uint32_t>> s;
  std::vector<std::vector<uint32_t>> kernel;
  mutable std::atomic<uint64_t> calls{0};
};

FreivaldsCheck::FreivaldsCheck(std::unique_ptr<State> state) : state_(std::move(state)) {}
FreivaldsCheck::~FreivaldsCheck() = default;
int FreivaldsCheck::repetitions() const { return state_->repetitions; }

Result<std::unique_ptr<FreivaldsCheck>> FreivaldsCheck::Create(const LinearSpec& spec,
                                                               std::span<const std::byte> seed32, int repetitions) {
  PPML_RETURN_IF_ERROR(ValidateSpec(spec));
  if (repetitions < 1 || repetitions > 8) return Status::InvalidArgument("Freivalds: repetitions must be in [1, 8]");
  if (seed32.size() != crypto::kAes256KeyLength) return Status::InvalidArgument("Freivalds: seed must be 32 bytes");
  auto state = std::make_unique<State>();
  state->geometry = spec;
  state->geometry.weights.clear();
  state->digest_prefix = SpecDigest(spec).substr(0, 12);
  state->repetitions = repetitions;
  state->seed = crypto::SecretBytes(crypto::ByteSpan(reinterpret_cast<const uint8_t*>(seed32.data()), seed32.size()));

  const int64_t in_per_group = spec.in_channels / spec.groups;
  const int64_t out_per_group = spec.out_channels / spec.groups;
  const int64_t taps = spec.kernel_h * spec.kernel_w;
  for (int t = 0; t < repetitions; ++t) {
    std::vector<uint32_t> s(static_cast<size_t>(spec.out_channels));
    PPML_ASSIGN_OR_RETURN(FieldPrg prg, FieldPrg::Create(seed32, static_cast<uint64_t>(t)));
    PPML_RETURN_IF_ERROR(prg.Fill(s));
    // W_s: |s_c w| < 2^30 and at most 2^16 channels per group, so the int64 sum is exact.
    std::vector<int64_t> sums(static_cast<size_t>(spec.in_channels * taps), 0);
    for (int64_t c = 0; c < spec.out_channels; ++c) {
      const int64_t group = c / out_per_group;
      const int8_t* w = spec.weights.data() + c * in_per_group * taps;
      int64_t* dst = sums.data() + group * in_per_group * taps;
      for (int64_t j = 0; j < in_per_group * taps; ++j) dst[j] += int64_t{s[c]} * w[j];
    }
    std::vector<uint32_t> kernel(sums.size());
    for (size_t j = 0; j < sums.size(); ++j) kernel[j] = FieldFromSigned(sums[j]);
    state->s.push_back(std::move(s));
    state->kernel.push_back(std::move(kernel));
  }
  return std::unique_ptr<FreivaldsCheck>(new FreivaldsCheck(std::move(state)));
}

int64_t FreivaldsCheck::macs(int64_t batch) const {
  const LinearSpec& g = state_->geometry;
  const int64_t right_conv = g.out_h * g.out_w * g.in_channels * g.kernel_h * g.kernel_w;
  return state_->repetitions * (batch * (g.input_size() + g.output_size()) + right_conv);
}

Status FreivaldsCheck::Verify(std::span<const uint32_t> x, std::span<const uint32_t> z, int64_t batch) const {
  const LinearSpec& g = state_->geometry;
  if (batch < 1 || batch > kMaxTensorElements) return Status::InvalidArgument("Freivalds: batch must be >= 1");
  const int64_t in_size = g.input_size(), out_size = g.output_size();
  if (static_cast<int64_t>(x.size()) != batch * in_size || static_cast<int64_t>(z.size()) != batch * out_size) {
    return Status::InvalidArgument("Freivalds " + state_->digest_prefix + ": x has " + std::to_string(x.size()) +
                                   " and z " + std::to_string(z.size()) + " elements; batch " +
                                   std::to_string(batch) + " needs " + std::to_string(batch * in_size) + " and " +
                                   std::to_string(batch * out_size));
  }
  if (!AllFieldElements(x)) return Status::InvalidArgument("Freivalds " + state_->digest_prefix + ": an x element is >= p");
  if (!AllFieldElements(z)) {
    return Status::DataLoss("Freivalds check failed for layer " + state_->digest_prefix + ": a result element is >= p");
  }

  // Fresh r for this call: its own PRG stream, one r vector per repetition.
  const uint64_t call = state_->calls.fetch_add(1, std::memory_order_relaxed);
  const std::span<const std::byte> seed(reinterpret_cast<const std::byte*>(state_->seed.data()), state_->seed.size());
  PPML_ASSIGN_OR_RETURN(FieldPrg r_prg, FieldPrg::Create(seed, kVerifyStreamBase + call));
  std::vector<uint32_t> r(static_cast<size_t>(batch));

  const int64_t pixels = g.out_h * g.out_w;
  const int64_t plane = g.in_h * g.in_w;
  std::vector<uint64_t> acc(static_cast<size_t>(std::max<int64_t>(pixels, 2048)));
  std::vector<uint32_t> left(static_cast<size_t>(pixels)), image_sum(static_cast<size_t>(pixels));
  std::vector<uint32_t> x_r(static_cast<size_t>(in_size));
  std::vector<uint64_t> right(static_cast<size_t>(pixels));

  for (int t = 0; t < state_->repetitions; ++t) {
    PPML_RETURN_IF_ERROR(r_prg.Fill(r));
    const std::vector<uint32_t>& s = state_->s[t];
    const std::vector<uint32_t>& kernel = state_->kernel[t];

    // Left: per image T_b = sum_c s_c Z[b, c] (over pixels), then sum_b r_b T_b.
    std::fill(left.begin(), left.end(), 0);
    for (int64_t b = 0; b < batch; ++b) {
      const uint32_t* zb = z.data() + b * out_size;
      if (pixels == 1) {
        image_sum[0] = static_cast<uint32_t>(DotMod(s.data(), zb, g.out_channels));
      } else {
        std::fill(acc.begin(), acc.begin() + pixels, 0);
        for (int64_t c = 0; c < g.out_channels; ++c) {
          MultiplyAccumulate(acc.data(), s[c], zb + c * pixels, pixels);
          if ((c + 1) % kTermsBeforeReduce == 0) ReduceAll(std::span(acc).first(pixels));
        }
        for (int64_t p = 0; p < pixels; ++p) image_sum[p] = FieldReduce(acc[p]);
      }
      for (int64_t p = 0; p < pixels; ++p) left[p] = FieldAdd(left[p], FieldMul(r[b], image_sum[p]));
    }

    // X_r = sum_b r_b X_b, a cache-sized block of elements at a time.
    constexpr int64_t kBlock = 2048;
    for (int64_t start = 0; start < in_size; start += kBlock) {
      const int64_t len = std::min(kBlock, in_size - start);
      std::span<uint64_t> block = std::span(acc).first(len);
      std::fill(block.begin(), block.end(), 0);
      for (int64_t b = 0; b < batch; ++b) {
        MultiplyAccumulate(block.data(), r[b], x.data() + b * in_size + start, len);
        if ((b + 1) % kTermsBeforeReduce == 0) ReduceAll(block);
      }
      for (int64_t i = 0; i < len; ++i) x_r[start + i] = FieldReduce(block[i]);
    }

    // Right: conv(X_r, W_s), one output channel. Loop order keeps the inner
    // loop along an output row (contiguous input for stride 1).
    if (g.is_dense()) {
      right[0] = DotMod(x_r.data(), kernel.data(), g.in_channels);
    } else {
      std::fill(right.begin(), right.end(), 0);
      int64_t terms = 0;
      for (int64_t i = 0; i < g.in_channels; ++i) {
        for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
          for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
            const uint32_t k = kernel[(i * g.kernel_h + kh) * g.kernel_w + kw];
            if (k == 0) continue;
            // Output columns whose input column ow * stride - pad + kw * dilation is inside [0, in_w).
            const int64_t offset = kw * g.dilation_w - g.pad_left;
            const int64_t ow_begin = offset >= 0 ? 0 : (-offset + g.stride_w - 1) / g.stride_w;
            const int64_t ow_end = std::min(g.out_w, g.in_w - 1 - offset < 0 ? 0 : (g.in_w - 1 - offset) / g.stride_w + 1);
            if (ow_begin >= ow_end) continue;
            for (int64_t oh = 0; oh < g.out_h; ++oh) {
              const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
              if (ih < 0 || ih >= g.in_h) continue;
              const uint32_t* row = x_r.data() + i * plane + ih * g.in_w;  // input column = ow * stride + offset
              uint64_t* out = right.data() + oh * g.out_w;
              if (g.stride_w == 1) {
                MultiplyAccumulate(out + ow_begin, k, row + ow_begin + offset, ow_end - ow_begin);
              } else {
                for (int64_t ow = ow_begin; ow < ow_end; ++ow) out[ow] += uint64_t{k} * row[ow * g.stride_w + offset];
              }
            }
            if (++terms == kTermsBeforeReduce) {
              ReduceAll(right);
              terms = 0;
            }
          }
        }
      }
      ReduceAll(right);
    }

    for (int64_t p = 0; p < pixels; ++p) {
      if (left[p] != right[p]) {
        return Status::DataLoss("Freivalds check failed for layer " + state_->digest_prefix + " (repetition " +
                                std::to_string(t) + ", output pixel " + std::to_string(p) + ")");
      }
    }
  }
  return Status::Ok();
}

}  // namespace ppml::accel
