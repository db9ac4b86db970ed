// Shared by the accel tests: layer specs of every shape the check must
// handle, random weights and inputs, and a naive reference convolution.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "accel/field.h"

namespace ppml::accel::testing {

// A spec with out_h/out_w computed from the geometry and random weights in
// [-63, 63] (both extremes included at the first two positions).
inline LinearSpec MakeSpec(int64_t in_c, int64_t in_h, int64_t in_w, int64_t out_c, int64_t k, int64_t stride = 1,
                           int64_t pad = 0, int64_t dilation = 1, int64_t groups = 1, uint64_t seed = 1) {
  LinearSpec s;
  s.in_channels = in_c, s.in_h = in_h, s.in_w = in_w, s.out_channels = out_c;
  s.kernel_h = s.kernel_w = k;
  s.stride_h = s.stride_w = stride;
  s.dilation_h = s.dilation_w = dilation;
  s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = pad;
  s.groups = groups;
  s.out_h = (in_h + 2 * pad - (k - 1) * dilation - 1) / stride + 1;
  s.out_w = (in_w + 2 * pad - (k - 1) * dilation - 1) / stride + 1;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> w(-kMaxWeight, kMaxWeight);
  s.weights.resize(static_cast<size_t>(out_c * (in_c / groups) * k * k));
  for (auto& v : s.weights) v = static_cast<int8_t>(w(rng));
  if (s.weights.size() >= 2) s.weights[0] = kMaxWeight, s.weights[1] = -kMaxWeight;
  return s;
}

inline LinearSpec MakeDense(int64_t k, int64_t n, uint64_t seed = 1) { return MakeSpec(k, 1, 1, n, 1, 1, 0, 1, 1, seed); }

struct NamedSpec {
  std::string name;
  LinearSpec spec;
};

// Convolutions with stride, padding (incl. asymmetric), dilation, groups,
// depthwise, 1x1, and dense layers.
inline std::vector<NamedSpec> VarietyOfSpecs() {
  std::vector<NamedSpec> specs = {
      {"conv3x3_pad1", MakeSpec(8, 9, 9, 16, 3, 1, 1)},
      {"conv3x3_stride2", MakeSpec(6, 11, 10, 8, 3, 2, 1, 1, 1, 2)},
      {"conv5x5_stride3_pad2", MakeSpec(3, 13, 13, 5, 5, 3, 2, 1, 1, 3)},
      {"conv3x3_dilation2", MakeSpec(4, 12, 12, 6, 3, 1, 2, 2, 1, 4)},
      {"grouped_conv", MakeSpec(8, 7, 7, 12, 3, 1, 1, 1, 4, 5)},
      {"depthwise_conv", MakeSpec(16, 8, 8, 16, 3, 1, 1, 1, 16, 6)},
      {"pointwise_conv", MakeSpec(32, 5, 5, 24, 1, 1, 0, 1, 1, 7)},
      {"dense", MakeDense(300, 70, 8)},
      {"dense_small", MakeDense(5, 3, 9)},
  };
  LinearSpec asym = MakeSpec(5, 10, 9, 7, 3, 2, 0, 1, 1, 10);
  asym.pad_top = 2, asym.pad_left = 0, asym.pad_bottom = 1, asym.pad_right = 1;
  asym.out_h = (10 + 3 - 3) / 2 + 1, asym.out_w = (9 + 1 - 3) / 2 + 1;
  specs.push_back({"conv_asymmetric_pads", asym});
  return specs;
}

// Naive exact convolution in int64: out[b][c][oh][ow] = sum x * w.
inline std::vector<int64_t> ReferenceLinear(const LinearSpec& s, const std::vector<int64_t>& x, int64_t batch) {
  std::vector<int64_t> out(static_cast<size_t>(batch * s.output_size()), 0);
  const int64_t in_g = s.in_channels / s.groups, out_g = s.out_channels / s.groups;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < s.out_channels; ++c)
      for (int64_t oh = 0; oh < s.out_h; ++oh)
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          int64_t sum = 0;
          const int64_t g = c / out_g;
          for (int64_t i = 0; i < in_g; ++i)
            for (int64_t kh = 0; kh < s.kernel_h; ++kh)
              for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
                const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dilation_h;
                const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dilation_w;
                if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) continue;
                const int64_t xv = x[((b * s.in_channels + g * in_g + i) * s.in_h + ih) * s.in_w + iw];
                sum += xv * s.weights[((c * in_g + i) * s.kernel_h + kh) * s.kernel_w + kw];
              }
          out[((b * s.out_channels + c) * s.out_h + oh) * s.out_w + ow] = sum;
        }
  return out;
}

// A 32-byte PRG seed of one repeated byte.
inline std::vector<std::byte> Seed(uint8_t fill) { return std::vector<std::byte>(32, std::byte{fill}); }

// Uniform field elements, with p - 1 and 0 planted at the start.
inline std::vector<uint32_t> RandomField(size_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<uint32_t> d(0, kPrime - 1);
  std::vector<uint32_t> v(n);
  for (auto& e : v) e = d(rng);
  if (n >= 2) v[0] = kPrime - 1, v[1] = 0;
  return v;
}

inline std::vector<uint32_t> ReferenceFieldLinear(const LinearSpec& s, const std::vector<uint32_t>& x, int64_t batch) {
  std::vector<int64_t> wide(x.begin(), x.end());
  std::vector<int64_t> exact = ReferenceLinear(s, wide, batch);  // |sum| < 2^24 * 63 * K < 2^63
  std::vector<uint32_t> out(exact.size());
  for (size_t i = 0; i < exact.size(); ++i) out[i] = FieldFromSigned(exact[i]);
  return out;
}

}  // namespace ppml::accel::testing
