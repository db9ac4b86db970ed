// Per-op tests of the engine: each builds a one- or few-node ONNX model, runs
// it and compares with a naive reference written here (plain loops over
// row-major data). Every model runs with fusion on and off. Inputs are
// deterministic pseudo-random numbers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "engine/engine.h"
#include "tests/engine/onnx_builder.h"

namespace ppml::test {
namespace {

using engine::EngineOptions;
using engine::Model;

// ---------------------------------------------------------------------------
// Index helpers and naive references.

std::vector<int64_t> RowMajorStrides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

std::vector<int64_t> Unravel(int64_t flat, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (size_t i = s.size(); i-- > 0;) {
    idx[i] = flat % s[i];
    flat /= s[i];
  }
  return idx;
}

Shape BroadcastShapes(const Shape& a, const Shape& b) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i + a.size() >= r ? a[i + a.size() - r] : 1;
    const int64_t db = i + b.size() >= r ? b[i + b.size() - r] : 1;
    out[i] = std::max(da, db);
  }
  return out;
}

// Offset into `s` of output index `idx` under right-aligned broadcasting.
int64_t BroadcastOffset(const std::vector<int64_t>& idx, const Shape& s) {
  const auto st = RowMajorStrides(s);
  int64_t off = 0;
  const size_t shift = idx.size() - s.size();
  for (size_t i = 0; i < s.size(); ++i) off += (s[i] == 1 ? 0 : idx[shift + i]) * st[i];
  return off;
}

std::vector<float> NaiveBinary(const std::function<float(float, float)>& f, const std::vector<float>& a,
                               const Shape& as, const std::vector<float>& b, const Shape& bs, Shape* os) {
  *os = BroadcastShapes(as, bs);
  std::vector<float> y(static_cast<size_t>(ElementCount(*os)));
  for (int64_t i = 0; i < ElementCount(*os); ++i) {
    const auto idx = Unravel(i, *os);
    y[i] = f(a[BroadcastOffset(idx, as)], b[BroadcastOffset(idx, bs)]);
  }
  return y;
}

// Batched matrix product of rank >= 2 operands with broadcast batch dims.
std::vector<float> NaiveMatMul(const std::vector<float>& a, Shape as, const std::vector<float>& b, Shape bs,
                               Shape* os) {
  const size_t r = std::max(as.size(), bs.size());
  as.insert(as.begin(), r - as.size(), 1);
  bs.insert(bs.begin(), r - bs.size(), 1);
  const int64_t M = as[r - 2], K = as[r - 1], N = bs[r - 1];
  Shape batch(r - 2);
  for (size_t i = 0; i + 2 < r; ++i) batch[i] = std::max(as[i], bs[i]);
  *os = batch;
  os->push_back(M);
  os->push_back(N);
  const Shape a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
  std::vector<float> y(static_cast<size_t>(ElementCount(*os)));
  for (int64_t bi = 0; bi < ElementCount(batch); ++bi) {
    const auto idx = Unravel(bi, batch);
    const int64_t ao = BroadcastOffset(idx, a_batch) * M * K, bo = BroadcastOffset(idx, b_batch) * K * N;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(a[ao + m * K + k]) * b[bo + k * N + n];
        y[(bi * M + m) * N + n] = static_cast<float>(acc);
      }
  }
  return y;
}

std::vector<float> NaiveTranspose(const std::vector<float>& x, const Shape& xs, const std::vector<int64_t>& perm,
                                  Shape* os) {
  os->clear();
  for (int64_t p : perm) os->push_back(xs[p]);
  const auto st = RowMajorStrides(xs);
  std::vector<float> y(x.size());
  for (int64_t i = 0; i < ElementCount(*os); ++i) {
    const auto idx = Unravel(i, *os);
    int64_t off = 0;
    for (size_t d = 0; d < perm.size(); ++d) off += idx[d] * st[perm[d]];
    y[i] = x[off];
  }
  return y;
}

// Softmax over the last dimension of [outer, inner].
std::vector<float> NaiveSoftmax(const std::vector<float>& x, int64_t outer, int64_t inner) {
  std::vector<float> y(x.size());
  for (int64_t o = 0; o < outer; ++o) {
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < inner; ++i) mx = std::max<double>(mx, x[o * inner + i]);
    for (int64_t i = 0; i < inner; ++i) sum += std::exp(x[o * inner + i] - mx);
    for (int64_t i = 0; i < inner; ++i) y[o * inner + i] = static_cast<float>(std::exp(x[o * inner + i] - mx) / sum);
  }
  return y;
}

enum class PadKind { kConstant, kReflect, kEdge };
std::vector<float> NaivePad(const std::vector<float>& x, const Shape& xs, const std::vector<int64_t>& pads,
                            PadKind kind, float value, Shape* os) {
  const size_t r = xs.size();
  os->resize(r);
  for (size_t i = 0; i < r; ++i) (*os)[i] = xs[i] + pads[i] + pads[i + r];
  const auto st = RowMajorStrides(xs);
  std::vector<float> y(static_cast<size_t>(ElementCount(*os)));
  for (int64_t i = 0; i < ElementCount(*os); ++i) {
    const auto idx = Unravel(i, *os);
    int64_t off = 0;
    bool outside = false;
    for (size_t d = 0; d < r; ++d) {
      int64_t j = idx[d] - pads[d];
      const int64_t n = xs[d];
      if (j < 0 || j >= n) {
        if (kind == PadKind::kConstant) outside = true;
        if (kind == PadKind::kEdge) j = std::clamp<int64_t>(j, 0, n - 1);
        if (kind == PadKind::kReflect) j = j < 0 ? -j : 2 * (n - 1) - j;  // pads < n in these tests
      }
      off += j * st[d];
    }
    y[i] = outside ? value : x[off];
  }
  return y;
}

enum class PoolKind { kMax, kAvgExcludePad, kAvgIncludePad };
struct Pool2DArgs {
  int64_t kh, kw;
  int64_t sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pt = 0, pl = 0, pb = 0, pr = 0;
  bool ceil_mode = false;
};

int64_t PoolOut(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe, bool ceil_mode) {
  const int64_t span = in + pb + pe - ((k - 1) * d + 1);
  return (ceil_mode ? (span + s - 1) / s : span / s) + 1;
}

std::vector<float> NaivePool2D(PoolKind kind, const std::vector<float>& x, const Shape& xs, const Pool2DArgs& a,
                               Shape* os) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
  const int64_t OH = PoolOut(H, a.kh, a.sh, a.dh, a.pt, a.pb, a.ceil_mode);
  const int64_t OW = PoolOut(W, a.kw, a.sw, a.dw, a.pl, a.pr, a.ceil_mode);
  *os = {N, C, OH, OW};
  std::vector<float> y(static_cast<size_t>(N * C * OH * OW));
  for (int64_t nc = 0; nc < N * C; ++nc)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double mx = -INFINITY, sum = 0;
        int64_t valid = 0, in_padded = 0;
        for (int64_t kh = 0; kh < a.kh; ++kh)
          for (int64_t kw = 0; kw < a.kw; ++kw) {
            const int64_t ih = oh * a.sh - a.pt + kh * a.dh, iw = ow * a.sw - a.pl + kw * a.dw;
            if (ih >= -a.pt && ih < H + a.pb && iw >= -a.pl && iw < W + a.pr) ++in_padded;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            const float v = x[(nc * H + ih) * W + iw];
            mx = std::max<double>(mx, v);
            sum += v;
            ++valid;
          }
        float out = 0;
        if (kind == PoolKind::kMax) out = static_cast<float>(mx);
        if (kind == PoolKind::kAvgExcludePad) out = static_cast<float>(sum / valid);
        if (kind == PoolKind::kAvgIncludePad) out = static_cast<float>(sum / in_padded);
        y[(nc * OH + oh) * OW + ow] = out;
      }
  return y;
}

// x [N,C,H,W], w [C,O/group,KH,KW] (ONNX ConvTranspose layout).
struct ConvT2DArgs {
  int64_t sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pt = 0, pl = 0, pb = 0, pr = 0;
  int64_t oph = 0, opw = 0;
  int64_t group = 1;
};
std::vector<float> NaiveConvTranspose2D(const std::vector<float>& x, const Shape& xs, const std::vector<float>& w,
                                        const Shape& ws, const std::vector<float>& bias, const ConvT2DArgs& a,
                                        Shape* os) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
  const int64_t Og = ws[1], KH = ws[2], KW = ws[3], O = Og * a.group, Cg = C / a.group;
  const int64_t OH = a.sh * (H - 1) + a.oph + (KH - 1) * a.dh + 1 - a.pt - a.pb;
  const int64_t OW = a.sw * (W - 1) + a.opw + (KW - 1) * a.dw + 1 - a.pl - a.pr;
  *os = {N, O, OH, OW};
  std::vector<double> acc(static_cast<size_t>(N * O * OH * OW), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < OH * OW; ++i) acc[(n * O + o) * OH * OW + i] = bias.empty() ? 0.0 : bias[o];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t ih = 0; ih < H; ++ih)
        for (int64_t iw = 0; iw < W; ++iw)
          for (int64_t oc = 0; oc < Og; ++oc)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t g = c / Cg;
                const int64_t oh = ih * a.sh - a.pt + kh * a.dh, ow = iw * a.sw - a.pl + kw * a.dw;
                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                acc[((n * O + g * Og + oc) * OH + oh) * OW + ow] +=
                    static_cast<double>(x[((n * C + c) * H + ih) * W + iw]) * w[((c * Og + oc) * KH + kh) * KW + kw];
              }
  return std::vector<float>(acc.begin(), acc.end());
}

// ---------------------------------------------------------------------------
// Running models.

// Loads `b` with fusion on and with fusion off, runs each on `inputs`, and
// checks output `output_index` against `want`.
void ExpectOutput(const OnnxBuilder& b, const std::vector<Tensor>& inputs, const Shape& shape,
                  const std::vector<float>& want, float rel = 1e-4f, float abs = 1e-5f, size_t output_index = 0) {
  for (bool fuse : {true, false}) {
    SCOPED_TRACE(fuse ? "fuse=true" : "fuse=false");
    EngineOptions options;
    options.fuse = fuse;
    auto out = LoadAndRun(b, inputs, options);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ASSERT_GT(out->size(), output_index);
    EXPECT_TRUE(AllClose((*out)[output_index], shape, want, rel, abs));
  }
}

// Loads `b` with `options`, runs it on `inputs`, checks output
// `output_index` against `want` and returns the model's statistics (how its
// plan ran: Winograd layers, reference kernels, steps); nullopt if it failed.
std::optional<engine::ModelStats> StatsOfCheckedRun(const OnnxBuilder& b, std::vector<Tensor> inputs,
                                                    const Shape& shape, const std::vector<float>& want, float rel,
                                                    float abs, const EngineOptions& options = {},
                                                    size_t output_index = 0) {
  auto model = b.Load(options);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return std::nullopt;
  auto out = (*model)->Run(std::move(inputs));
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return std::nullopt;
  EXPECT_GT(out->size(), output_index);
  if (out->size() <= output_index) return std::nullopt;
  EXPECT_TRUE(AllClose((*out)[output_index], shape, want, rel, abs));
  return (*model)->stats();
}

std::vector<Tensor> Inputs(Tensor a) {
  std::vector<Tensor> v;
  v.push_back(std::move(a));
  return v;
}
std::vector<Tensor> Inputs(Tensor a, Tensor b) {
  std::vector<Tensor> v;
  v.push_back(std::move(a));
  v.push_back(std::move(b));
  return v;
}

// Appends `count` Relu nodes after `in` and returns the last value's name.
// Each adds one value to the plan, so sweeping `count` moves the op under test
// across the points where the plan's value table grows (reallocates).
std::string ReluChain(OnnxBuilder& b, const std::string& in, int count) {
  std::string cur = in;
  for (int i = 0; i < count; ++i) {
    const std::string next = in + "_relu" + std::to_string(i);
    b.Node("Relu", {cur}, {next}, next);
    cur = next;
  }
  return cur;
}

// ---------------------------------------------------------------------------
// Conv

struct Conv2DCase {
  std::string label;
  Shape xs, ws;
  bool bias = true;
  naive::Conv2DArgs args;
  std::string auto_pad;  // empty: explicit pads attribute
};

struct Conv2DModel {
  OnnxBuilder builder;
  Tensor input;
  Shape ys;
  std::vector<float> want;
};

Conv2DModel MakeConv2D(const Conv2DCase& c, uint64_t seed) {
  const auto x = RandomFloats(ElementCount(c.xs), seed);
  const auto w = RandomFloats(ElementCount(c.ws), seed + 1);
  const auto bias = c.bias ? RandomFloats(c.ws[0], seed + 2) : std::vector<float>{};
  Conv2DModel m;
  OnnxBuilder& b = m.builder;
  b.Input("x", c.xs);
  b.Initializer("w", c.ws, w);
  if (c.bias) b.Initializer("b", {c.ws[0]}, bias);
  auto node = b.Node("Conv", c.bias ? std::vector<std::string>{"x", "w", "b"} : std::vector<std::string>{"x", "w"},
                     {"y"}, "conv");
  node.Ints("kernel_shape", {c.ws[2], c.ws[3]})
      .Ints("strides", {c.args.stride_h, c.args.stride_w})
      .Ints("dilations", {c.args.dilation_h, c.args.dilation_w})
      .Int("group", c.args.group);
  if (c.auto_pad.empty()) {
    node.Ints("pads", {c.args.pad_top, c.args.pad_left, c.args.pad_bottom, c.args.pad_right});
  } else {
    node.String("auto_pad", c.auto_pad);
  }
  b.Output("y");
  m.input = MakeTensor(c.xs, x);
  m.want = naive::Conv2D(x, c.xs, w, c.ws, bias, c.args, &m.ys);
  return m;
}

void RunConv2D(const Conv2DCase& c, uint64_t seed) {
  SCOPED_TRACE(c.label);
  Conv2DModel m = MakeConv2D(c, seed);
  ExpectOutput(m.builder, Inputs(std::move(m.input)), m.ys, m.want, 1e-4f, 1e-4f);
}

TEST(ConvTest, Stride2WithPadsAndBias) {
  naive::Conv2DArgs a;
  a.stride_h = a.stride_w = 2;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
  RunConv2D({"stride 2, pads 1", {2, 4, 9, 9}, {6, 4, 3, 3}, true, a, ""}, 10);
}

// FP32 3x3 stride-1 layers from a batch of 2 run Winograd where oneDNN has
// it (AVX-512), direct elsewhere or when asked: within float rounding of the
// reference either way.
// Runs the model with Winograd allowed or not, checks its output against the
// reference, and returns how many convolutions ran in Winograd (-1: failed).
int WinogradConvsOfCheckedRun(const Conv2DModel& m, bool winograd) {
  EngineOptions options;
  options.winograd = winograd;
  const auto stats = StatsOfCheckedRun(m.builder, Inputs(m.input.Clone()), m.ys, m.want, 1e-4f, 1e-4f, options);
  return stats ? stats->winograd_convs : -1;
}

TEST(ConvTest, Winograd3x3MatchesTheReferenceWhereOneDnnHasIt) {
  naive::Conv2DArgs a;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
  Conv2DModel m = MakeConv2D({"3x3, stride 1", {4, 32, 14, 14}, {48, 32, 3, 3}, true, a, ""}, 30);
  const bool has_winograd = engine::EffectiveCpuIsa().rfind("avx512", 0) == 0;
  EXPECT_EQ(WinogradConvsOfCheckedRun(m, true), has_winograd ? 1 : 0);
  EXPECT_EQ(WinogradConvsOfCheckedRun(m, false), 0);
}

// A first layer (3 input channels) stays direct: Winograd's transforms cost
// more than it saves there.
TEST(ConvTest, WinogradIsNotAskedForWithFewInputChannels) {
  naive::Conv2DArgs a;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
  Conv2DModel m = MakeConv2D({"3x3, 3 input channels", {4, 3, 14, 14}, {48, 3, 3, 3}, true, a, ""}, 31);
  EXPECT_EQ(WinogradConvsOfCheckedRun(m, true), 0);
}

// A Winograd layer (16-channel blocks only, AVX-512) and the 1x1 layer after
// it share one layout: the plan is the input's reorder, the two
// convolutions and a reorder for each of the two outputs, with none between
// the layers (oneDNN's brgemm 1x1 kernel would pick channels-last). Where
// oneDNN has no Winograd (AVX2) both take its 8-channel blocks: the same
// five steps.
TEST(ConvTest, ALayerAfterWinogradTakesItsLayout) {
  naive::Conv2DArgs a;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
  Conv2DModel m = MakeConv2D({"3x3 then 1x1", {4, 32, 14, 14}, {32, 32, 3, 3}, true, a, ""}, 32);
  OnnxBuilder& b = m.builder;
  Shape ys;
  const auto w = RandomFloats(64 * 32, 33);
  b.Initializer("w1x1", {64, 32, 1, 1}, w);
  b.Node("Conv", {"y", "w1x1"}, {"z"}, "conv1x1");
  b.Output("z");
  const auto want = naive::Conv2D(m.want, m.ys, w, {64, 32, 1, 1}, {}, naive::Conv2DArgs{}, &ys);
  const auto stats = StatsOfCheckedRun(b, Inputs(m.input.Clone()), ys, want, 1e-4f, 1e-4f, {}, 1);
  ASSERT_TRUE(stats);
  const bool has_winograd = engine::EffectiveCpuIsa().rfind("avx512", 0) == 0;
  EXPECT_EQ(stats->winograd_convs, has_winograd ? 1 : 0);
  EXPECT_EQ(stats->kernels, 5) << "input reorder, 3x3, 1x1, and the two outputs' reorders";
}

TEST(ConvTest, AsymmetricPadsAndStridesWithoutBias) {
  naive::Conv2DArgs a;
  a.stride_h = 1;
  a.stride_w = 2;
  a.pad_top = 0;
  a.pad_left = 1;
  a.pad_bottom = 2;
  a.pad_right = 1;
  RunConv2D({"asymmetric", {1, 3, 7, 10}, {5, 3, 3, 2}, false, a, ""}, 20);
}

TEST(ConvTest, Dilation2) {
  naive::Conv2DArgs a;
  a.dilation_h = a.dilation_w = 2;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 2;
  RunConv2D({"dilation 2", {2, 3, 8, 8}, {4, 3, 3, 3}, true, a, ""}, 30);
  a.stride_h = 2;
  RunConv2D({"dilation 2, stride 2x1, no bias", {1, 5, 11, 9}, {7, 5, 3, 3}, false, a, ""}, 31);
}

TEST(ConvTest, Groups2) {
  naive::Conv2DArgs a;
  a.group = 2;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
  RunConv2D({"group 2", {2, 4, 7, 7}, {6, 2, 3, 3}, true, a, ""}, 40);
  RunConv2D({"group 2, no bias, 16 channels", {1, 16, 6, 6}, {32, 8, 3, 3}, false, a, ""}, 41);
}

TEST(ConvTest, Depthwise) {
  naive::Conv2DArgs a;
  a.group = 8;
  a.stride_h = a.stride_w = 2;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
  RunConv2D({"depthwise 8, stride 2", {2, 8, 10, 10}, {8, 1, 3, 3}, true, a, ""}, 50);
  a.group = 32;
  a.stride_h = a.stride_w = 1;
  RunConv2D({"depthwise 32, no bias", {1, 32, 7, 7}, {32, 1, 3, 3}, false, a, ""}, 51);
}

TEST(ConvTest, AutoPadSameUpper) {
  // H: out 4, total pad (4-1)*2+3-7 = 2 -> 1/1. W: out 4, total (4-1)*2+3-8 = 1 -> 0 begin, 1 end.
  naive::Conv2DArgs a;
  a.stride_h = a.stride_w = 2;
  a.pad_top = 1;
  a.pad_bottom = 1;
  a.pad_left = 0;
  a.pad_right = 1;
  RunConv2D({"SAME_UPPER stride 2", {1, 3, 7, 8}, {4, 3, 3, 3}, true, a, "SAME_UPPER"}, 60);
  // Stride 1, even kernel: total 1 -> 0 begin, 1 end on both axes.
  naive::Conv2DArgs b;
  b.pad_bottom = b.pad_right = 1;
  RunConv2D({"SAME_UPPER even kernel", {2, 2, 5, 6}, {3, 2, 2, 2}, false, b, "SAME_UPPER"}, 61);
}

TEST(ConvTest, AutoPadValid) {
  naive::Conv2DArgs a;
  a.stride_h = a.stride_w = 2;
  RunConv2D({"VALID stride 2", {1, 3, 8, 9}, {4, 3, 3, 3}, true, a, "VALID"}, 70);
}

TEST(ConvTest, OneD) {
  const Shape xs = {2, 3, 20}, ws = {5, 3, 4};
  const auto x = RandomFloats(ElementCount(xs), 80);
  const auto w = RandomFloats(ElementCount(ws), 81);
  const auto bias = RandomFloats(5, 82);
  OnnxBuilder b;
  b.Input("x", xs);
  b.Initializer("w", ws, w);
  b.Initializer("b", {5}, bias);
  b.Node("Conv", {"x", "w", "b"}, {"y"}, "conv1d").Ints("strides", {2}).Ints("pads", {1, 2}).Ints("dilations", {2});
  b.Output("y");
  // As a 2-D conv over H = 1.
  naive::Conv2DArgs a;
  a.stride_w = 2;
  a.pad_left = 1;
  a.pad_right = 2;
  a.dilation_w = 2;
  Shape ys;
  const auto want = naive::Conv2D(x, {2, 3, 1, 20}, w, {5, 3, 1, 4}, bias, a, &ys);
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), {ys[0], ys[1], ys[3]}, want, 1e-4f, 1e-4f);
}

TEST(ConvTest, RunTimeWeights) {
  const Shape xs = {1, 3, 6, 6}, ws = {4, 3, 3, 3};
  const auto x = RandomFloats(ElementCount(xs), 90);
  const auto w = RandomFloats(ElementCount(ws), 91);
  OnnxBuilder b;
  b.Input("x", xs);
  b.Input("w", ws);
  b.Node("Conv", {"x", "w"}, {"y"}, "conv").Ints("pads", {1, 1, 1, 1});
  b.Output("y");
  naive::Conv2DArgs a;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
  Shape ys;
  const auto want = naive::Conv2D(x, xs, w, ws, {}, a, &ys);
  ExpectOutput(b, Inputs(MakeTensor(xs, x), MakeTensor(ws, w)), ys, want, 1e-4f, 1e-4f);
}

// ---------------------------------------------------------------------------
// ConvTranspose

void RunConvTranspose(const std::string& label, const Shape& xs, const Shape& ws, bool with_bias,
                      const ConvT2DArgs& a, uint64_t seed) {
  SCOPED_TRACE(label);
  const auto x = RandomFloats(ElementCount(xs), seed);
  const auto w = RandomFloats(ElementCount(ws), seed + 1);
  const auto bias = with_bias ? RandomFloats(ws[1] * a.group, seed + 2) : std::vector<float>{};
  OnnxBuilder b;
  b.Input("x", xs);
  b.Initializer("w", ws, w);
  if (with_bias) b.Initializer("b", {ws[1] * a.group}, bias);
  b.Node("ConvTranspose", with_bias ? std::vector<std::string>{"x", "w", "b"} : std::vector<std::string>{"x", "w"},
         {"y"}, "deconv")
      .Ints("strides", {a.sh, a.sw})
      .Ints("dilations", {a.dh, a.dw})
      .Ints("pads", {a.pt, a.pl, a.pb, a.pr})
      .Ints("output_padding", {a.oph, a.opw})
      .Int("group", a.group);
  b.Output("y");
  Shape ys;
  const auto want = NaiveConvTranspose2D(x, xs, w, ws, bias, a, &ys);
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), ys, want, 1e-4f, 1e-4f);
}

TEST(ConvTransposeTest, Stride2PadsOutputPadding) {
  ConvT2DArgs a;
  a.sh = a.sw = 2;
  a.pt = a.pl = a.pb = a.pr = 1;
  a.oph = a.opw = 1;
  RunConvTranspose("k3 s2 p1 op1 (2x upsampling)", {1, 4, 5, 5}, {4, 3, 3, 3}, true, a, 100);
}

TEST(ConvTransposeTest, Stride2NoPadsNoBias) {
  ConvT2DArgs a;
  a.sh = a.sw = 2;
  RunConvTranspose("k2 s2", {2, 3, 4, 5}, {3, 6, 2, 2}, false, a, 110);
}

TEST(ConvTransposeTest, AsymmetricPadsAndOutputPadding) {
  ConvT2DArgs a;
  a.sh = 2;
  a.sw = 3;
  a.pt = 0;
  a.pl = 1;
  a.pb = 1;
  a.pr = 2;
  a.oph = 1;
  a.opw = 2;
  RunConvTranspose("asymmetric", {1, 2, 4, 4}, {2, 3, 3, 4}, true, a, 120);
}

TEST(ConvTransposeTest, OutputPaddingWithoutEndPad) {
  // output_padding larger than the end padding: the output grows at the end.
  ConvT2DArgs a;
  a.sh = a.sw = 2;
  a.oph = a.opw = 1;
  RunConvTranspose("k3 s2 p0 op1", {1, 3, 4, 4}, {3, 2, 3, 3}, true, a, 130);
}

TEST(ConvTransposeTest, Groups2) {
  ConvT2DArgs a;
  a.sh = a.sw = 2;
  a.pt = a.pl = a.pb = a.pr = 1;
  a.oph = a.opw = 1;
  a.group = 2;
  RunConvTranspose("group 2", {1, 4, 5, 5}, {4, 3, 3, 3}, true, a, 140);
}

// ---------------------------------------------------------------------------
// Gemm

struct GemmCase {
  bool trans_a, trans_b;
  float alpha, beta;
  enum { kNoC, kConstVector, kRuntimeMatrix, kConstMatrix, kRuntimeVector } c;
};

void RunGemm(const GemmCase& g, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "transA=" << g.trans_a << " transB=" << g.trans_b << " alpha=" << g.alpha
                                    << " beta=" << g.beta << " c=" << g.c);
  const int64_t M = 3, K = 5, N = 4;
  const Shape as = g.trans_a ? Shape{K, M} : Shape{M, K};
  const Shape bs = g.trans_b ? Shape{N, K} : Shape{K, N};
  const auto a = RandomFloats(M * K, seed);
  const auto bw = RandomFloats(K * N, seed + 1);
  const bool c_matrix = g.c == GemmCase::kRuntimeMatrix || g.c == GemmCase::kConstMatrix;
  const Shape cs = c_matrix ? Shape{M, N} : Shape{N};
  const auto c = RandomFloats(ElementCount(cs), seed + 2);
  OnnxBuilder b;
  b.Input("a", as);
  b.Initializer("b", bs, bw);
  std::vector<std::string> inputs = {"a", "b"};
  if (g.c == GemmCase::kConstVector || g.c == GemmCase::kConstMatrix) b.Initializer("c", cs, c);
  if (g.c == GemmCase::kRuntimeMatrix || g.c == GemmCase::kRuntimeVector) b.Input("c", cs);
  if (g.c != GemmCase::kNoC) inputs.push_back("c");
  b.Node("Gemm", inputs, {"y"}, "gemm")
      .Int("transA", g.trans_a)
      .Int("transB", g.trans_b)
      .Float("alpha", g.alpha)
      .Float("beta", g.beta);
  b.Output("y");
  std::vector<float> want(M * N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const float av = g.trans_a ? a[k * M + m] : a[m * K + k];
        const float bv = g.trans_b ? bw[n * K + k] : bw[k * N + n];
        acc += static_cast<double>(av) * bv;
      }
      double v = g.alpha * acc;
      if (g.c != GemmCase::kNoC) v += g.beta * (c_matrix ? c[m * N + n] : c[n]);
      want[m * N + n] = static_cast<float>(v);
    }
  std::vector<Tensor> in = Inputs(MakeTensor(as, a));
  if (g.c == GemmCase::kRuntimeMatrix || g.c == GemmCase::kRuntimeVector) in.push_back(MakeTensor(cs, c));
  ExpectOutput(b, in, {M, N}, want, 1e-4f, 1e-5f);
}

TEST(GemmTest, TransposesWithConstantBiasVector) {
  uint64_t seed = 200;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) RunGemm({ta, tb, 1.f, 1.f, GemmCase::kConstVector}, seed += 3);
}

TEST(GemmTest, AlphaBetaWithConstantC) {
  uint64_t seed = 220;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      RunGemm({ta, tb, 0.5f, 2.f, GemmCase::kConstVector}, seed += 3);
      RunGemm({ta, tb, -1.5f, 0.25f, GemmCase::kConstMatrix}, seed += 3);
    }
}

TEST(GemmTest, RunTimeCMatrix) {
  uint64_t seed = 240;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      RunGemm({ta, tb, 1.f, 1.f, GemmCase::kRuntimeMatrix}, seed += 3);
      RunGemm({ta, tb, 0.5f, 2.f, GemmCase::kRuntimeMatrix}, seed += 3);
    }
  RunGemm({false, true, 0.75f, -3.f, GemmCase::kRuntimeVector}, 260);
}

TEST(GemmTest, NoC) {
  RunGemm({false, false, 1.f, 1.f, GemmCase::kNoC}, 270);
  RunGemm({true, true, 2.f, 1.f, GemmCase::kNoC}, 271);
}

TEST(GemmTest, RunTimeB) {
  const int64_t M = 2, K = 3, N = 4;
  const auto a = RandomFloats(M * K, 280), bw = RandomFloats(N * K, 281);
  OnnxBuilder b;
  b.Input("a", {M, K});
  b.Input("b", {N, K});
  b.Node("Gemm", {"a", "b"}, {"y"}, "gemm").Int("transB", 1);
  b.Output("y");
  std::vector<float> want(M * N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(a[m * K + k]) * bw[n * K + k];
      want[m * N + n] = static_cast<float>(acc);
    }
  ExpectOutput(b, Inputs(MakeTensor({M, K}, a), MakeTensor({N, K}, bw)), {M, N}, want);
}

// ---------------------------------------------------------------------------
// MatMul

void RunMatMul(const std::string& label, const Shape& as, const Shape& bs, bool b_constant, uint64_t seed) {
  SCOPED_TRACE(label);
  const auto a = RandomFloats(ElementCount(as), seed);
  const auto bw = RandomFloats(ElementCount(bs), seed + 1);
  OnnxBuilder b;
  b.Input("a", as);
  if (b_constant) {
    b.Initializer("b", bs, bw);
  } else {
    b.Input("b", bs);
  }
  b.Node("MatMul", {"a", "b"}, {"y"}, "matmul");
  b.Output("y");
  // 1-D operands as numpy: promote, multiply, drop the added dimension.
  Shape pa = as, pb = bs;
  if (as.size() == 1) pa.insert(pa.begin(), 1);
  if (bs.size() == 1) pb.push_back(1);
  Shape ys;
  const auto want = NaiveMatMul(a, pa, bw, pb, &ys);
  if (bs.size() == 1) ys.erase(ys.end() - 1);
  if (as.size() == 1) ys.erase(ys.end() - (bs.size() == 1 ? 1 : 2));
  std::vector<Tensor> in = Inputs(MakeTensor(as, a));
  if (!b_constant) in.push_back(MakeTensor(bs, bw));
  ExpectOutput(b, in, ys, want);
}

TEST(MatMulTest, TwoD) {
  RunMatMul("[3,4] x const [4,5]", {3, 4}, {4, 5}, true, 300);
  RunMatMul("[3,4] x [4,5]", {3, 4}, {4, 5}, false, 301);
}

TEST(MatMulTest, BatchedWithBroadcasting) {
  RunMatMul("[2,3,4] x const [4,5]", {2, 3, 4}, {4, 5}, true, 310);
  RunMatMul("[2,3,4] x const [2,4,5]", {2, 3, 4}, {2, 4, 5}, true, 311);
  RunMatMul("[1,3,4] x [2,4,5]", {1, 3, 4}, {2, 4, 5}, false, 312);
  RunMatMul("[2,1,3,4] x [5,4,6]", {2, 1, 3, 4}, {5, 4, 6}, false, 313);
  RunMatMul("[3,4] x [2,4,5]", {3, 4}, {2, 4, 5}, false, 314);
}

TEST(MatMulTest, OneDOperand) {
  RunMatMul("[4] x const [4,5]", {4}, {4, 5}, true, 320);
  RunMatMul("[2,3,4] x [4]", {2, 3, 4}, {4}, false, 321);
  RunMatMul("[3,4] x const [4]", {3, 4}, {4}, true, 322);
}

// ---------------------------------------------------------------------------
// BatchNormalization

struct BnParams {
  std::vector<float> scale, shift, mean, var;
};
BnParams RandomBn(int64_t c, uint64_t seed) {
  return {RandomFloats(c, seed, 0.5f, 1.5f), RandomFloats(c, seed + 1), RandomFloats(c, seed + 2),
          RandomFloats(c, seed + 3, 0.2f, 2.f)};
}
void AddBnInitializers(OnnxBuilder& b, const std::string& prefix, const BnParams& p) {
  const int64_t c = static_cast<int64_t>(p.scale.size());
  b.Initializer(prefix + "_scale", {c}, p.scale);
  b.Initializer(prefix + "_shift", {c}, p.shift);
  b.Initializer(prefix + "_mean", {c}, p.mean);
  b.Initializer(prefix + "_var", {c}, p.var);
}
std::vector<std::string> BnInputs(const std::string& x, const std::string& prefix) {
  return {x, prefix + "_scale", prefix + "_shift", prefix + "_mean", prefix + "_var"};
}

TEST(BatchNormTest, Standalone4D) {
  const Shape xs = {2, 3, 4, 5};
  const auto x = RandomFloats(ElementCount(xs), 400, -3.f, 3.f);
  const BnParams p = RandomBn(3, 401);
  OnnxBuilder b;
  b.Input("x", xs);
  AddBnInitializers(b, "bn", p);
  b.Node("BatchNormalization", BnInputs("x", "bn"), {"y"}, "bn").Float("epsilon", 1e-3f);
  b.Output("y");
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, naive::BatchNorm(x, xs, p.scale, p.shift, p.mean, p.var, 1e-3f));
}

TEST(BatchNormTest, Standalone2D) {
  const Shape xs = {4, 6};
  const auto x = RandomFloats(ElementCount(xs), 410, -3.f, 3.f);
  const BnParams p = RandomBn(6, 411);
  OnnxBuilder b;
  b.Input("x", xs);
  AddBnInitializers(b, "bn", p);
  b.Node("BatchNormalization", BnInputs("x", "bn"), {"y"}, "bn");
  b.Output("y");
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, naive::BatchNorm(x, xs, p.scale, p.shift, p.mean, p.var, 1e-5f));
}

TEST(BatchNormTest, AfterReluIsNotFolded) {
  const Shape xs = {1, 4, 3, 3};
  const auto x = RandomFloats(ElementCount(xs), 420);
  const BnParams p = RandomBn(4, 421);
  OnnxBuilder b;
  b.Input("x", xs);
  AddBnInitializers(b, "bn", p);
  b.Node("Relu", {"x"}, {"r"}, "relu");
  b.Node("BatchNormalization", BnInputs("r", "bn"), {"y"}, "bn");
  b.Output("y");
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs,
               naive::BatchNorm(naive::Relu(x), xs, p.scale, p.shift, p.mean, p.var, 1e-5f));
  auto model = b.Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->stats().folded_batchnorms, 0);
}

TEST(BatchNormTest, FoldedIntoConv) {
  const Shape xs = {2, 3, 8, 8}, ws = {8, 3, 3, 3};
  const auto x = RandomFloats(ElementCount(xs), 430);
  const auto w = RandomFloats(ElementCount(ws), 431);
  const auto bias = RandomFloats(8, 432);
  const BnParams p = RandomBn(8, 433);
  for (bool with_bias : {true, false}) {
    SCOPED_TRACE(with_bias ? "conv with bias" : "conv without bias");
    OnnxBuilder b;
    b.Input("x", xs);
    b.Initializer("w", ws, w);
    if (with_bias) b.Initializer("b", {8}, bias);
    AddBnInitializers(b, "bn", p);
    b.Node("Conv", with_bias ? std::vector<std::string>{"x", "w", "b"} : std::vector<std::string>{"x", "w"}, {"c"},
           "conv")
        .Ints("pads", {1, 1, 1, 1})
        .Ints("strides", {2, 2});
    b.Node("BatchNormalization", BnInputs("c", "bn"), {"y"}, "bn").Float("epsilon", 1e-4f);
    b.Output("y");
    naive::Conv2DArgs a;
    a.stride_h = a.stride_w = 2;
    a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
    Shape ys;
    const auto conv = naive::Conv2D(x, xs, w, ws, with_bias ? bias : std::vector<float>{}, a, &ys);
    const auto want = naive::BatchNorm(conv, ys, p.scale, p.shift, p.mean, p.var, 1e-4f);
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), ys, want, 1e-4f, 1e-4f);
    auto model = b.Load();
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    EXPECT_EQ((*model)->stats().folded_batchnorms, 1);
  }
}

// ---------------------------------------------------------------------------
// Activations

struct ActivationCase {
  std::string op;
  std::function<void(NodeRef&)> attrs;
  std::function<float(float)> f;
};

float Sigmoid(float x) { return static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(x)))); }

std::vector<ActivationCase> ActivationCases() {
  return {
      {"Relu", nullptr, [](float x) { return x > 0 ? x : 0.f; }},
      {"LeakyRelu", [](NodeRef& n) { n.Float("alpha", 0.1f); }, [](float x) { return x > 0 ? x : 0.1f * x; }},
      {"LeakyRelu", nullptr, [](float x) { return x > 0 ? x : 0.01f * x; }},
      {"Sigmoid", nullptr, Sigmoid},
      {"Tanh", nullptr, [](float x) { return std::tanh(x); }},
      {"HardSigmoid", [](NodeRef& n) { n.Float("alpha", 0.3f).Float("beta", 0.4f); },
       [](float x) { return std::clamp(0.3f * x + 0.4f, 0.f, 1.f); }},
      {"HardSigmoid", nullptr, [](float x) { return std::clamp(0.2f * x + 0.5f, 0.f, 1.f); }},
      {"HardSwish", nullptr, [](float x) { return x * std::clamp(x / 6.f + 0.5f, 0.f, 1.f); }},
  };
}

TEST(ActivationTest, Unary) {
  const Shape xs = {2, 3, 4, 5};
  const auto x = RandomFloats(ElementCount(xs), 500, -5.f, 5.f);
  for (const ActivationCase& c : ActivationCases()) {
    SCOPED_TRACE(c.op + (c.attrs ? " with attributes" : " with defaults"));
    OnnxBuilder b;
    b.Input("x", xs);
    NodeRef n = b.Node(c.op, {"x"}, {"y"}, "act");
    if (c.attrs) c.attrs(n);
    b.Output("y");
    std::vector<float> want(x.size());
    for (size_t i = 0; i < x.size(); ++i) want[i] = c.f(x[i]);
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, want, 1e-4f, 1e-5f);
  }
}

TEST(ActivationTest, ClipOpset13ConstantBounds) {
  const Shape xs = {3, 7};
  const auto x = RandomFloats(ElementCount(xs), 510, -2.f, 2.f);
  struct Case {
    const char* label;
    bool has_min, has_max;
  };
  for (const Case& c : {Case{"min and max", true, true}, Case{"min only", true, false},
                        Case{"max only", false, true}, Case{"neither", false, false}}) {
    SCOPED_TRACE(c.label);
    OnnxBuilder b(13);
    b.Input("x", xs);
    b.ScalarFloat("lo", -0.5f);
    b.ScalarFloat("hi", 0.7f);
    std::vector<std::string> inputs = {"x", c.has_min ? "lo" : ""};
    if (c.has_max) inputs.push_back("hi");
    b.Node("Clip", inputs, {"y"}, "clip");
    b.Output("y");
    std::vector<float> want(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      float v = x[i];
      if (c.has_min) v = std::max(v, -0.5f);
      if (c.has_max) v = std::min(v, 0.7f);
      want[i] = v;
    }
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, want);
  }
}

// ---------------------------------------------------------------------------
// Binary arithmetic with broadcasting

struct BinaryOpDef {
  std::string op;
  std::function<float(float, float)> f;
};
std::vector<BinaryOpDef> BinaryOps() {
  return {{"Add", [](float a, float b) { return a + b; }},
          {"Sub", [](float a, float b) { return a - b; }},
          {"Mul", [](float a, float b) { return a * b; }},
          {"Div", [](float a, float b) { return a / b; }}};
}

// Values for a divisor: magnitude in [0.5, 2], either sign.
std::vector<float> Divisors(int64_t n, uint64_t seed) {
  auto v = RandomFloats(n, seed, 0.5f, 2.f);
  Rng sign(seed + 7);
  for (float& x : v) x = sign.Next() & 1 ? -x : x;
  return v;
}

void RunBinary(const BinaryOpDef& op, const Shape& as, const Shape& bs, bool a_const, bool b_const, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << op.op << " " << ShapeToString(as) << (a_const ? "(const)" : "") << " op "
                                    << ShapeToString(bs) << (b_const ? "(const)" : ""));
  const auto a = RandomFloats(ElementCount(as), seed, -2.f, 2.f);
  const auto bv = Divisors(ElementCount(bs), seed + 1);
  OnnxBuilder b;
  std::vector<Tensor> in;
  if (a_const) {
    b.Initializer("a", as, a);
  } else {
    b.Input("a", as);
    in.push_back(MakeTensor(as, a));
  }
  if (b_const) {
    b.Initializer("b", bs, bv);
  } else {
    b.Input("b", bs);
    in.push_back(MakeTensor(bs, bv));
  }
  b.Node(op.op, {"a", "b"}, {"y"}, "binary");
  b.Output("y");
  Shape ys;
  const auto want = NaiveBinary(op.f, a, as, bv, bs, &ys);
  ExpectOutput(b, in, ys, want);
}

TEST(BinaryTest, BroadcastBothWays) {
  uint64_t seed = 600;
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{2, 3, 4, 5}, {5}},          {{5}, {2, 3, 4, 5}},          {{1, 3, 1, 1}, {2, 3, 4, 5}},
      {{2, 3, 4, 5}, {1, 3, 1, 1}}, {{2, 3, 4, 5}, {2, 3, 4, 5}}, {{2, 3, 1, 5}, {1, 1, 4, 1}},
      {{3, 1}, {1, 4}},             {{2, 3, 4, 5}, {}}};
  for (const BinaryOpDef& op : BinaryOps()) {
    for (const auto& [as, bs] : shapes) RunBinary(op, as, bs, false, false, seed += 2);
  }
}

TEST(BinaryTest, ConstantOperand) {
  uint64_t seed = 700;
  for (const BinaryOpDef& op : BinaryOps()) {
    RunBinary(op, {2, 3, 4, 5}, {3, 1, 1}, false, true, seed += 2);
    RunBinary(op, {4, 5}, {2, 3, 4, 5}, true, false, seed += 2);
    RunBinary(op, {2, 3, 4, 5}, {2, 3, 4, 5}, true, false, seed += 2);
    RunBinary(op, {}, {2, 3}, true, false, seed += 2);
  }
}

// Binary ops reading a conv output (oneDNN may keep it in a blocked layout).
// With Add and fusion on, the Add of the [1,C,1,1] run-time tensor becomes a
// broadcasting binary post-op of the conv. `relus` Relu nodes go before the
// conv (see ReluChain).
void RunBinaryOnConvOutput(const BinaryOpDef& op, int relus) {
  SCOPED_TRACE(::testing::Message() << op.op << " after " << relus << " Relu nodes");
  const Shape xs = {2, 3, 6, 6}, ws = {16, 3, 3, 3};
  const auto x = RandomFloats(ElementCount(xs), 750);
  const auto w = RandomFloats(ElementCount(ws), 751);
  const auto s = Divisors(16, 752);
  const auto k = RandomFloats(16, 753);
  OnnxBuilder b;
  b.Input("x", xs);
  b.Input("s", {1, 16, 1, 1});
  b.Initializer("w", ws, w);
  b.Initializer("k", {16, 1, 1}, k);
  const std::string conv_in = ReluChain(b, "x", relus);
  b.Node("Conv", {conv_in, "w"}, {"c"}, "conv").Ints("pads", {1, 1, 1, 1});
  b.Node(op.op, {"c", "s"}, {"t"}, "with_runtime");
  b.Node(op.op, {"t", "k"}, {"y"}, "with_constant");
  b.Output("y");
  naive::Conv2DArgs a;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
  Shape cs, ts, ys;
  const auto c = naive::Conv2D(relus > 0 ? naive::Relu(x) : x, xs, w, ws, {}, a, &cs);
  const auto t = NaiveBinary(op.f, c, cs, s, {1, 16, 1, 1}, &ts);
  const auto want = NaiveBinary(op.f, t, ts, k, {16, 1, 1}, &ys);
  ExpectOutput(b, Inputs(MakeTensor(xs, x), MakeTensor({1, 16, 1, 1}, s)), ys, want, 1e-4f, 1e-4f);
}

TEST(BinaryTest, OnConvOutput) {
  for (const BinaryOpDef& op : BinaryOps()) RunBinaryOnConvOutput(op, 0);
}

TEST(BinaryTest, FusedBroadcastAddAfterManyValues) {
  for (int relus = 0; relus <= 17; ++relus) RunBinaryOnConvOutput(BinaryOps()[0], relus);
}

// ---------------------------------------------------------------------------
// Pooling

void RunPool(const std::string& op, PoolKind kind, const Shape& xs, const Pool2DArgs& a,
             const std::function<void(NodeRef&)>& extra, uint64_t seed, bool after_conv = false) {
  SCOPED_TRACE(op);
  const auto x = RandomFloats(ElementCount(xs), seed, -3.f, 3.f);
  OnnxBuilder b;
  b.Input("x", xs);
  std::string pool_in = "x";
  std::vector<float> ref_in = x;
  Shape ref_shape = xs;
  if (after_conv) {
    const Shape ws = {16, xs[1], 1, 1};
    const auto w = RandomFloats(ElementCount(ws), seed + 1);
    b.Initializer("w", ws, w);
    b.Node("Conv", {"x", "w"}, {"c"}, "conv");
    pool_in = "c";
    ref_in = naive::Conv2D(x, xs, w, ws, {}, naive::Conv2DArgs{}, &ref_shape);
  }
  NodeRef n = b.Node(op, {pool_in}, {"y"}, "pool");
  n.Ints("kernel_shape", {a.kh, a.kw})
      .Ints("strides", {a.sh, a.sw})
      .Ints("pads", {a.pt, a.pl, a.pb, a.pr})
      .Int("ceil_mode", a.ceil_mode);
  if (extra) extra(n);
  b.Output("y");
  Shape ys;
  const auto want = NaivePool2D(kind, ref_in, ref_shape, a, &ys);
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), ys, want, 1e-4f, 1e-5f);
}

TEST(PoolTest, MaxPoolPadsStrides) {
  Pool2DArgs a{3, 3};
  a.sh = a.sw = 2;
  a.pt = a.pl = a.pb = a.pr = 1;
  RunPool("MaxPool", PoolKind::kMax, {2, 3, 9, 9}, a, nullptr, 800);
  Pool2DArgs asym{2, 3};
  asym.sh = 1;
  asym.sw = 2;
  asym.pt = 0;
  asym.pl = 1;
  asym.pb = 1;
  asym.pr = 0;
  RunPool("MaxPool", PoolKind::kMax, {1, 2, 6, 7}, asym, nullptr, 801);
}

TEST(PoolTest, MaxPoolCeilMode) {
  // 8 wide, k3 s2: floor gives 3 windows, ceil 4 (the last starts at 6, inside the input).
  Pool2DArgs a{3, 3};
  a.sh = a.sw = 2;
  a.ceil_mode = true;
  RunPool("MaxPool", PoolKind::kMax, {1, 2, 8, 8}, a, nullptr, 810);
  a.pt = a.pl = a.pb = a.pr = 1;  // 10 + 2 pads: floor 5 windows, ceil 6 (the last starts at 9, inside)
  RunPool("MaxPool", PoolKind::kMax, {1, 2, 10, 10}, a, nullptr, 811);
}

TEST(PoolTest, MaxPoolDilations) {
  Pool2DArgs a{2, 2};
  a.dh = a.dw = 2;
  RunPool("MaxPool", PoolKind::kMax, {1, 2, 7, 7}, a, [](NodeRef& n) { n.Ints("dilations", {2, 2}); }, 820);
  Pool2DArgs b{3, 3};
  b.dh = b.dw = 2;
  b.sh = b.sw = 2;
  b.pt = b.pl = b.pb = b.pr = 1;
  RunPool("MaxPool", PoolKind::kMax, {2, 3, 11, 10}, b, [](NodeRef& n) { n.Ints("dilations", {2, 2}); }, 821);
}

TEST(PoolTest, MaxPoolOnConvOutput) {
  Pool2DArgs a{3, 3};
  a.sh = a.sw = 2;
  a.pt = a.pl = a.pb = a.pr = 1;
  RunPool("MaxPool", PoolKind::kMax, {2, 3, 9, 9}, a, nullptr, 830, /*after_conv=*/true);
}

TEST(PoolTest, AveragePoolCountIncludePad) {
  Pool2DArgs a{3, 3};
  a.sh = a.sw = 2;
  a.pt = a.pl = a.pb = a.pr = 1;
  RunPool("AveragePool", PoolKind::kAvgExcludePad, {2, 3, 9, 9}, a, nullptr, 840);
  RunPool("AveragePool", PoolKind::kAvgExcludePad, {2, 3, 9, 9}, a,
          [](NodeRef& n) { n.Int("count_include_pad", 0); }, 841);
  RunPool("AveragePool", PoolKind::kAvgIncludePad, {2, 3, 9, 9}, a,
          [](NodeRef& n) { n.Int("count_include_pad", 1); }, 842);
  Pool2DArgs asym{2, 2};
  asym.pt = 1;
  asym.pr = 1;
  RunPool("AveragePool", PoolKind::kAvgIncludePad, {1, 2, 5, 6}, asym,
          [](NodeRef& n) { n.Int("count_include_pad", 1); }, 843);
  RunPool("AveragePool", PoolKind::kAvgExcludePad, {1, 2, 5, 6}, asym, nullptr, 844, /*after_conv=*/true);
}

TEST(PoolTest, GlobalAveragePool) {
  const Shape xs = {2, 5, 7, 6};
  const auto x = RandomFloats(ElementCount(xs), 850);
  OnnxBuilder b;
  b.Input("x", xs);
  b.Node("GlobalAveragePool", {"x"}, {"y"}, "gap");
  b.Output("y");
  std::vector<float> want(10);
  for (int64_t i = 0; i < 10; ++i) {
    double s = 0;
    for (int64_t j = 0; j < 42; ++j) s += x[i * 42 + j];
    want[i] = static_cast<float>(s / 42);
  }
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), {2, 5, 1, 1}, want);
}

// ---------------------------------------------------------------------------
// Shape ops

// A conv with 1x1 kernel and `channels` outputs in front of a shape op, so the
// op sees a (possibly blocked) oneDNN layout. Returns the reference conv output.
std::vector<float> AddConv1x1(OnnxBuilder& b, const std::string& in, const std::string& out, const Shape& xs,
                              const std::vector<float>& x, int64_t channels, uint64_t seed, Shape* ys,
                              const std::string& name = "conv") {
  const Shape ws = {channels, xs[1], 1, 1};
  const auto w = RandomFloats(ElementCount(ws), seed);
  const auto bias = RandomFloats(channels, seed + 1);
  b.Initializer(name + "_w", ws, w);
  b.Initializer(name + "_b", {channels}, bias);
  b.Node("Conv", {in, name + "_w", name + "_b"}, {out}, name);
  return naive::Conv2D(x, xs, w, ws, bias, naive::Conv2DArgs{}, ys);
}

// Squeeze-and-excitation (EfficientNet, MobileNetV3, RegNetY): a conv output
// in oneDNN's blocked layout times per-sample, per-channel scales
// [N,C,1,1]. The scales get the conv's blocked layout too (plain, oneDNN
// ran its reference kernel, about 100x slower: EfficientNet-B0 at 8 img/s).
TEST(ArithmeticTest, SqueezeExcitationScalesABlockedTensorPerSampleAndChannel) {
  const Shape xs = {3, 5, 6, 6};
  const auto x = RandomFloats(ElementCount(xs), 1400);
  OnnxBuilder b;
  b.Input("x", xs);
  Shape cs, ps, hs, es;
  const auto c = AddConv1x1(b, "x", "c", xs, x, 16, 1401, &cs, "expand");
  b.Node("GlobalAveragePool", {"c"}, {"p"});
  std::vector<float> pooled(3 * 16, 0.f);
  for (size_t i = 0; i < c.size(); ++i) pooled[i / 36] += c[i] / 36.f;
  ps = {3, 16, 1, 1};
  const auto h = naive::Relu(AddConv1x1(b, "p", "h", ps, pooled, 4, 1403, &hs, "squeeze"));
  b.Node("Relu", {"h"}, {"hr"});
  auto e = AddConv1x1(b, "hr", "e", hs, h, 16, 1405, &es, "excite");
  b.Node("Sigmoid", {"e"}, {"s"});
  b.Node("Mul", {"c", "s"}, {"y"});
  b.Output("y");
  std::vector<float> want(c.size());
  for (size_t i = 0; i < c.size(); ++i) want[i] = c[i] / (1.f + std::exp(-e[i / 36]));
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), cs, want, 1e-4f, 1e-5f);
}

// Runs `b` (fusion on), checks output `output_index` against `want` and
// returns how many oneDNN primitives of its plan run oneDNN's reference code
// (-1: failed).
int ReferenceKernelsOfCheckedRun(const OnnxBuilder& b, std::vector<Tensor> inputs, const Shape& shape,
                                 const std::vector<float>& want, size_t output_index = 0) {
  const auto stats = StatsOfCheckedRun(b, std::move(inputs), shape, want, 1e-4f, 1e-5f, {}, output_index);
  return stats ? stats->reference_kernels : -1;
}

// RegNetY: squeeze-and-excitation scales on a grouped convolution with 8
// channels per group, whose output oneDNN keeps in 8-channel blocks. Its
// binary kernels take only the ISA's own blocking (16 on AVX-512), so the
// Mul went to the reference kernel there (RegNetY-400MF at 55 img/s, 316
// after); it now runs channels-last, on both ISAs without reference code.
TEST(ArithmeticTest, ScalesOfAGroupedConvolutionRunOnAVectorKernel) {
  naive::Conv2DArgs a;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
  a.group = 6;
  Conv2DModel m = MakeConv2D({"3x3, 8 channels per group", {2, 48, 8, 8}, {48, 8, 3, 3}, true, a, ""}, 1410);
  OnnxBuilder& b = m.builder;
  b.Node("GlobalAveragePool", {"y"}, {"p"});
  b.Node("Sigmoid", {"p"}, {"s"});
  b.Node("Mul", {"y", "s"}, {"z"});
  b.Output("z");
  std::vector<float> pooled(2 * 48, 0.f);
  for (size_t i = 0; i < m.want.size(); ++i) pooled[i / 64] += m.want[i] / 64.f;
  std::vector<float> want(m.want.size());
  for (size_t i = 0; i < want.size(); ++i) want[i] = m.want[i] / (1.f + std::exp(-pooled[i / 64]));
  // Output 0 is the convolution itself (MakeConv2D's); the scaled tensor is output 1.
  EXPECT_EQ(ReferenceKernelsOfCheckedRun(b, Inputs(std::move(m.input)), m.ys, want, 1), 0);
}

// Swin's attention mask [1,H,1,L,L] added over [N,H,W,L,L] (broadcast over
// the first and third axes) is a pattern none of oneDNN's binary kernels
// take: it goes to the engine's own loop over contiguous stretches instead
// of oneDNN's reference kernel (Swin-T 21 -> 38 img/s).
TEST(ArithmeticTest, BroadcastOverNonAdjacentAxesAvoidsOneDnnReferenceCode) {
  const Shape xs = {2, 3, 4, 5, 5}, ms = {1, 3, 1, 5, 5};
  const auto x = RandomFloats(ElementCount(xs), 1420);
  const auto mask = RandomFloats(ElementCount(ms), 1421);
  OnnxBuilder b;
  b.Input("x", xs);
  b.Input("mask", ms);
  b.Node("Relu", {"x"}, {"r"});
  b.Node("Add", {"r", "mask"}, {"y"});
  b.Output("y");
  Shape os;
  const auto want = NaiveBinary([](float p, float q) { return p + q; }, naive::Relu(x), xs, mask, ms, &os);
  EXPECT_EQ(ReferenceKernelsOfCheckedRun(b, Inputs(MakeTensor(xs, x), MakeTensor(ms, mask)), os, want), 0);
}

TEST(ShapeOpsTest, Flatten) {
  const Shape xs = {2, 3, 4, 5};
  const auto x = RandomFloats(ElementCount(xs), 900);
  for (int64_t axis : {0, 1, 2, -1, 4}) {
    SCOPED_TRACE(::testing::Message() << "axis " << axis);
    OnnxBuilder b;
    b.Input("x", xs);
    b.Node("Flatten", {"x"}, {"y"}, "flatten").Int("axis", axis);
    b.Output("y");
    const int64_t a = axis < 0 ? axis + 4 : axis;
    const int64_t outer = std::accumulate(xs.begin(), xs.begin() + a, int64_t{1}, std::multiplies<>());
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), {outer, 120 / outer}, x);
  }
}

TEST(ShapeOpsTest, FlattenOfConvOutput) {
  const Shape xs = {2, 3, 4, 4};
  const auto x = RandomFloats(ElementCount(xs), 910);
  OnnxBuilder b;
  b.Input("x", xs);
  Shape cs;
  const auto c = AddConv1x1(b, "x", "c", xs, x, 16, 911, &cs);
  b.Node("Flatten", {"c"}, {"y"}, "flatten");
  b.Output("y");
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), {2, 256}, c);
}

TEST(ShapeOpsTest, ReshapeWithMinusOneAndZero) {
  const Shape xs = {2, 3, 4, 5};
  const auto x = RandomFloats(ElementCount(xs), 920);
  const std::vector<std::pair<std::vector<int64_t>, Shape>> cases = {
      {{0, -1}, {2, 60}}, {{0, 0, -1}, {2, 3, 20}}, {{-1, 5}, {24, 5}}, {{2, -1, 0}, {2, 15, 4}},
      {{0, 3, 0, 5}, {2, 3, 4, 5}}, {{120}, {120}}};
  for (const auto& [shape, want_shape] : cases) {
    SCOPED_TRACE(ShapeToString(Shape(shape.begin(), shape.end())));
    OnnxBuilder b;
    b.Input("x", xs);
    b.InitializerInt64("shape", {static_cast<int64_t>(shape.size())}, shape);
    b.Node("Reshape", {"x", "shape"}, {"y"}, "reshape");
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), want_shape, x);
  }
}

TEST(ShapeOpsTest, ReshapeOfConvOutputFeedsGemm) {
  const Shape xs = {2, 3, 4, 4};
  const auto x = RandomFloats(ElementCount(xs), 930);
  const auto w = RandomFloats(10 * 128, 931);
  OnnxBuilder b;
  b.Input("x", xs);
  Shape cs;
  const auto c = AddConv1x1(b, "x", "c", xs, x, 8, 932, &cs);
  b.InitializerInt64("shape", {2}, {0, -1});
  b.Initializer("fc_w", {10, 128}, w);
  b.Node("Reshape", {"c", "shape"}, {"r"}, "reshape");
  b.Node("Gemm", {"r", "fc_w"}, {"y"}, "fc").Int("transB", 1);
  b.Output("y");
  Shape ys;
  const auto want = NaiveMatMul(c, {2, 128}, NaiveTranspose(w, {10, 128}, {1, 0}, &ys), {128, 10}, &ys);
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), {2, 10}, want, 1e-4f, 1e-4f);
}

TEST(ShapeOpsTest, Transpose) {
  const Shape xs = {2, 3, 4};
  const auto x = RandomFloats(ElementCount(xs), 940);
  for (const std::vector<int64_t>& perm : std::vector<std::vector<int64_t>>{{2, 0, 1}, {0, 2, 1}, {1, 0, 2}}) {
    SCOPED_TRACE(ShapeToString(Shape(perm.begin(), perm.end())));
    OnnxBuilder b;
    b.Input("x", xs);
    b.Node("Transpose", {"x"}, {"y"}, "transpose").Ints("perm", perm);
    b.Output("y");
    Shape ys;
    const auto want = NaiveTranspose(x, xs, perm, &ys);
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), ys, want);
  }
  // No perm: reversed axes.
  OnnxBuilder b;
  b.Input("x", xs);
  b.Node("Transpose", {"x"}, {"y"}, "transpose");
  b.Output("y");
  Shape ys;
  const auto want = NaiveTranspose(x, xs, {2, 1, 0}, &ys);
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), ys, want);
}

TEST(ShapeOpsTest, TransposeOfConvOutput) {
  const Shape xs = {2, 3, 5, 4};
  const auto x = RandomFloats(ElementCount(xs), 950);
  OnnxBuilder b;
  b.Input("x", xs);
  Shape cs;
  const auto c = AddConv1x1(b, "x", "c", xs, x, 16, 951, &cs);
  b.Node("Transpose", {"c"}, {"y"}, "nhwc").Ints("perm", {0, 2, 3, 1});
  b.Output("y");
  Shape ys;
  const auto want = NaiveTranspose(c, cs, {0, 2, 3, 1}, &ys);
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), ys, want);
}

// x[start : start + step * length : step] along each axis.
std::vector<float> NaiveSlice(const std::vector<float>& x, const Shape& xs, const std::vector<int64_t>& start,
                              const std::vector<int64_t>& step, const Shape& ys) {
  const auto st = RowMajorStrides(xs);
  std::vector<float> y(static_cast<size_t>(ElementCount(ys)));
  for (int64_t i = 0; i < ElementCount(ys); ++i) {
    const auto idx = Unravel(i, ys);
    int64_t off = 0;
    for (size_t d = 0; d < xs.size(); ++d) off += (start[d] + idx[d] * step[d]) * st[d];
    y[i] = x[off];
  }
  return y;
}

// Forward slices run as a oneDNN reorder of a strided view (offset and
// strides), backward ones in the engine's loop; both against a naive walk,
// on a plain input and on a conv's blocked output.
TEST(ShapeOpsTest, Slice) {
  const Shape xs = {2, 3, 6, 5};
  const auto x = RandomFloats(ElementCount(xs), 960);
  struct Case {
    std::vector<int64_t> starts, ends, axes, steps;
    std::vector<int64_t> start, step;  // per axis, for the naive walk
    Shape ys;
  };
  const std::vector<Case> cases = {
      {{1}, {3}, {1}, {1}, {0, 1, 0, 0}, {1, 1, 1, 1}, {2, 2, 6, 5}},
      {{-4, 1}, {100, 5}, {2, 3}, {2, 1}, {0, 0, 2, 1}, {1, 1, 2, 1}, {2, 3, 2, 4}},
      {{0, 1, 1}, {1, 3, -1}, {0, 1, 2}, {1, 1, 3}, {0, 1, 1, 0}, {1, 1, 3, 1}, {1, 2, 2, 5}},
      {{4, -1}, {0, -100}, {2, 3}, {-2, -1}, {0, 0, 4, 4}, {1, 1, -2, -1}, {2, 3, 2, 5}},
  };
  for (bool after_conv : {false, true}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(::testing::Message() << (after_conv ? "conv output, " : "input, ") << "slice to "
                                        << ShapeToString(c.ys));
      OnnxBuilder b;
      b.Input("x", xs);
      std::string data = "x";
      Shape ds = xs;
      std::vector<float> d = x;
      if (after_conv) {
        d = AddConv1x1(b, "x", "c", xs, x, 3, 961, &ds);
        data = "c";
      }
      const auto n = static_cast<int64_t>(c.starts.size());
      b.InitializerInt64("starts", {n}, c.starts).InitializerInt64("ends", {n}, c.ends);
      b.InitializerInt64("axes", {n}, c.axes).InitializerInt64("steps", {n}, c.steps);
      b.Node("Slice", {data, "starts", "ends", "axes", "steps"}, {"y"}, "slice");
      b.Output("y");
      ExpectOutput(b, Inputs(MakeTensor(xs, x)), c.ys, NaiveSlice(d, ds, c.start, c.step, c.ys));
    }
  }
}

// Concatenates along axis 1 the outputs of two convs, with `c1` and `c2` channels.
void RunConcatOfConvs(int64_t c1, int64_t c2, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "channels " << c1 << " + " << c2);
  const Shape xs = {2, 3, 5, 5};
  const auto x = RandomFloats(ElementCount(xs), seed);
  OnnxBuilder b;
  b.Input("x", xs);
  Shape s1, s2;
  const auto y1 = AddConv1x1(b, "x", "c1", xs, x, c1, seed + 1, &s1, "conv_a");
  const auto y2 = AddConv1x1(b, "x", "c2", xs, x, c2, seed + 3, &s2, "conv_b");
  b.Node("Concat", {"c1", "c2"}, {"y"}, "concat").Int("axis", 1);
  b.Output("y");
  std::vector<float> want;
  for (int64_t n = 0; n < 2; ++n) {
    want.insert(want.end(), y1.begin() + n * c1 * 25, y1.begin() + (n + 1) * c1 * 25);
    want.insert(want.end(), y2.begin() + n * c2 * 25, y2.begin() + (n + 1) * c2 * 25);
  }
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), {2, c1 + c2, 5, 5}, want, 1e-4f, 1e-5f);
}

TEST(ShapeOpsTest, ConcatAxis1OfConvOutputs) {
  RunConcatOfConvs(16, 16, 960);
  RunConcatOfConvs(8, 16, 965);
  RunConcatOfConvs(3, 5, 970);
  RunConcatOfConvs(16, 3, 975);
}

TEST(ShapeOpsTest, ConcatAxis0AndNegativeAxis) {
  const auto a = RandomFloats(1 * 3 * 4, 980), c = RandomFloats(2 * 3 * 4, 981);
  {
    OnnxBuilder b;
    b.Input("a", {1, 3, 4});
    b.Input("c", {2, 3, 4});
    b.Node("Concat", {"a", "c"}, {"y"}, "concat").Int("axis", 0);
    b.Output("y");
    std::vector<float> want = a;
    want.insert(want.end(), c.begin(), c.end());
    ExpectOutput(b, Inputs(MakeTensor({1, 3, 4}, a), MakeTensor({2, 3, 4}, c)), {3, 3, 4}, want);
  }
  {
    const auto d = RandomFloats(2 * 3 * 2, 982);
    OnnxBuilder b;
    b.Input("c", {2, 3, 4});
    b.Input("d", {2, 3, 2});
    b.Node("Concat", {"c", "d"}, {"y"}, "concat").Int("axis", -1);
    b.Output("y");
    std::vector<float> want;
    for (int64_t r = 0; r < 6; ++r) {
      want.insert(want.end(), c.begin() + r * 4, c.begin() + r * 4 + 4);
      want.insert(want.end(), d.begin() + r * 2, d.begin() + r * 2 + 2);
    }
    ExpectOutput(b, Inputs(MakeTensor({2, 3, 4}, c), MakeTensor({2, 3, 2}, d)), {2, 3, 6}, want);
  }
}

TEST(SoftmaxTest, Opset13LastAxis) {
  const Shape xs = {2, 3, 4, 5};
  const auto x = RandomFloats(ElementCount(xs), 1000, -4.f, 4.f);
  OnnxBuilder b(13);
  b.Input("x", xs);
  b.Node("Softmax", {"x"}, {"y"}, "softmax").Int("axis", -1);
  b.Output("y");
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, NaiveSoftmax(x, 24, 5));
}

TEST(SoftmaxTest, Opset13DefaultAxisAndChannelAxis) {
  const Shape xs = {2, 3, 4};
  const auto x = RandomFloats(ElementCount(xs), 1010, -4.f, 4.f);
  {
    OnnxBuilder b(13);
    b.Input("x", xs);
    b.Node("Softmax", {"x"}, {"y"}, "softmax");
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, NaiveSoftmax(x, 6, 4));
  }
  {
    // Axis 1 of [2,3,4]: transpose to put the axis last, softmax, transpose back.
    OnnxBuilder b(13);
    b.Input("x", xs);
    b.Node("Softmax", {"x"}, {"y"}, "softmax").Int("axis", 1);
    b.Output("y");
    Shape ts, ys;
    const auto t = NaiveTranspose(x, xs, {0, 2, 1}, &ts);
    const auto want = NaiveTranspose(NaiveSoftmax(t, 8, 3), ts, {0, 2, 1}, &ys);
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, want);
  }
}

TEST(SoftmaxTest, Opset11LegacyFlattensAtAxis) {
  const Shape xs = {2, 3, 4, 5};
  const auto x = RandomFloats(ElementCount(xs), 1020, -4.f, 4.f);
  {
    OnnxBuilder b(11);
    b.Input("x", xs);
    b.Node("Softmax", {"x"}, {"y"}, "softmax").Int("axis", 1);
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, NaiveSoftmax(x, 2, 60));
  }
  {
    OnnxBuilder b(11);  // default axis is 1 before opset 13
    b.Input("x", xs);
    b.Node("Softmax", {"x"}, {"y"}, "softmax");
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, NaiveSoftmax(x, 2, 60));
  }
  {
    OnnxBuilder b(11);
    b.Input("x", xs);
    b.Node("Softmax", {"x"}, {"y"}, "softmax").Int("axis", 2);
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, NaiveSoftmax(x, 6, 20));
  }
}

// Legacy Softmax after `relus` Relu nodes (see ReluChain).
TEST(SoftmaxTest, Opset11LegacyAfterManyValues) {
  const Shape xs = {2, 3, 4, 5};
  const auto x = RandomFloats(ElementCount(xs), 1025, -4.f, 4.f);
  for (int relus = 0; relus <= 17; ++relus) {
    SCOPED_TRACE(::testing::Message() << relus << " Relu nodes before");
    OnnxBuilder b(11);
    b.Input("x", xs);
    b.Node("Softmax", {ReluChain(b, "x", relus)}, {"y"}, "softmax").Int("axis", 1);
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, NaiveSoftmax(relus > 0 ? naive::Relu(x) : x, 2, 60));
  }
}

// Softmax on an intermediate value (the output may take over the input's bytes).
TEST(SoftmaxTest, OnIntermediateValue) {
  const Shape xs = {2, 3, 4, 5};
  const auto x = RandomFloats(ElementCount(xs), 1030, -4.f, 4.f);
  for (int64_t axis : {-1, 1}) {
    SCOPED_TRACE(::testing::Message() << "axis " << axis);
    OnnxBuilder b(13);
    b.Input("x", xs);
    b.Node("Relu", {"x"}, {"r"}, "relu");
    b.Node("Softmax", {"r"}, {"y"}, "softmax").Int("axis", axis);
    b.Output("y");
    const auto r = naive::Relu(x);
    std::vector<float> want;
    if (axis == -1) {
      want = NaiveSoftmax(r, 24, 5);
    } else {
      Shape ts, ys;
      const auto t = NaiveTranspose(r, xs, {0, 2, 3, 1}, &ts);
      want = NaiveTranspose(NaiveSoftmax(t, 40, 3), ts, {0, 3, 1, 2}, &ys);
    }
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, want);
  }
}

TEST(PadTest, ConstantReflectEdge) {
  const Shape xs = {1, 2, 4, 5};
  const auto x = RandomFloats(ElementCount(xs), 1100);
  const std::vector<int64_t> pads = {0, 0, 1, 2, 0, 1, 2, 1};
  struct Case {
    const char* mode;
    PadKind kind;
  };
  for (const Case& c : {Case{"constant", PadKind::kConstant}, Case{"reflect", PadKind::kReflect},
                        Case{"edge", PadKind::kEdge}}) {
    SCOPED_TRACE(c.mode);
    OnnxBuilder b(13);
    b.Input("x", xs);
    b.InitializerInt64("pads", {8}, pads);
    std::vector<std::string> inputs = {"x", "pads"};
    if (c.kind == PadKind::kConstant) {
      b.ScalarFloat("value", 1.5f);
      inputs.push_back("value");
    }
    b.Node("Pad", inputs, {"y"}, "pad").String("mode", c.mode);
    b.Output("y");
    Shape ys;
    const auto want = NaivePad(x, xs, pads, c.kind, 1.5f, &ys);
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), ys, want);
  }
}

TEST(PadTest, ConstantDefaultValueAndOpset2Attributes) {
  const Shape xs = {2, 3};
  const auto x = RandomFloats(ElementCount(xs), 1110);
  const std::vector<int64_t> pads = {1, 0, 0, 2};
  Shape ys;
  {
    OnnxBuilder b(13);
    b.Input("x", xs);
    b.InitializerInt64("pads", {4}, pads);
    b.Node("Pad", {"x", "pads"}, {"y"}, "pad");
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), {3, 5}, NaivePad(x, xs, pads, PadKind::kConstant, 0.f, &ys));
  }
  {
    OnnxBuilder b(9);
    b.Input("x", xs);
    b.Node("Pad", {"x"}, {"y"}, "pad").Ints("pads", pads).Float("value", -2.f);
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), {3, 5}, NaivePad(x, xs, pads, PadKind::kConstant, -2.f, &ys));
  }
}

// A Pad of zeros (torch exports one before each of DenseNet's AveragePools)
// is the input as it is: the same values and not one step more than the
// model without it, so the convolution's blocked output reaches the pool
// with no reorder to plain and back.
TEST(PadTest, ZeroPadsAddNoStep) {
  const Shape xs = {2, 8, 6, 6};
  const auto x = RandomFloats(ElementCount(xs), 1120);
  std::vector<float> want;
  Shape ys;
  int kernels[2] = {-1, -1};
  for (bool with_pad : {false, true}) {
    OnnxBuilder b(13);
    b.Input("x", xs);
    Shape cs;
    const auto c = AddConv1x1(b, "x", "c", xs, x, 32, 1121, &cs);
    std::string pooled_input = "c";
    if (with_pad) {
      b.InitializerInt64("pads", {8}, std::vector<int64_t>(8, 0));
      b.Node("Pad", {"c", "pads"}, {"padded"}, "pad");
      pooled_input = "padded";
    }
    b.Node("AveragePool", {pooled_input}, {"y"}, "pool").Ints("kernel_shape", {2, 2}).Ints("strides", {2, 2});
    b.Output("y");
    ys = {2, 32, 3, 3};
    want.assign(static_cast<size_t>(ElementCount(ys)), 0.f);
    for (int64_t i = 0; i < ElementCount(ys); ++i) {
      const int64_t nc = i / 9, oh = i / 3 % 3, ow = i % 3;
      for (int64_t dy = 0; dy < 2; ++dy)
        for (int64_t dx = 0; dx < 2; ++dx) want[i] += c[nc * 36 + (2 * oh + dy) * 6 + 2 * ow + dx] / 4.f;
    }
    const auto stats = StatsOfCheckedRun(b, Inputs(MakeTensor(xs, x)), ys, want, 1e-4f, 1e-5f);
    ASSERT_TRUE(stats);
    kernels[with_pad] = stats->kernels;
  }
  EXPECT_EQ(kernels[1], kernels[0]);
}

TEST(ShapeOpsTest, IdentityAndDropout) {
  const Shape xs = {2, 3, 4};
  const auto x = RandomFloats(ElementCount(xs), 1200);
  {
    OnnxBuilder b;
    b.Input("x", xs);
    b.Node("Identity", {"x"}, {"y"}, "identity");
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, x);
  }
  {
    OnnxBuilder b(13);
    b.Input("x", xs);
    b.ScalarFloat("ratio", 0.5f);
    b.Node("Dropout", {"x", "ratio"}, {"y"}, "dropout");
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, x);
  }
  {
    OnnxBuilder b(11);
    b.Input("x", xs);
    b.Node("Dropout", {"x"}, {"d"}, "dropout").Float("ratio", 0.3f);
    b.Node("Relu", {"d"}, {"y"}, "relu");
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, naive::Relu(x));
  }
  {
    // Identity between two ops, on a conv output.
    const Shape cxs = {1, 3, 4, 4};
    const auto cx = RandomFloats(ElementCount(cxs), 1201);
    OnnxBuilder b;
    b.Input("x", cxs);
    Shape cs;
    const auto c = AddConv1x1(b, "x", "c", cxs, cx, 16, 1202, &cs);
    b.Node("Identity", {"c"}, {"i"}, "identity");
    b.Node("Relu", {"i"}, {"y"}, "relu");
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(cxs, cx)), cs, naive::Relu(c));
  }
}

// Dropout's training_mode input set: only a ratio of 0 (torch exports
// F.dropout(x, p=0.0) so) may run, as the identity.
TEST(ShapeOpsTest, DropoutInTrainingModeOnlyWithRatioZero) {
  const Shape xs = {2, 3};
  const auto x = RandomFloats(ElementCount(xs), 1210);
  for (float ratio : {0.f, 0.1f}) {
    SCOPED_TRACE(::testing::Message() << "ratio " << ratio);
    OnnxBuilder b(13);
    b.Input("x", xs);
    b.ScalarFloat("ratio", ratio);
    onnx::TensorProto* training = b.proto().mutable_graph()->add_initializer();
    training->set_name("training");
    training->set_data_type(onnx::TensorProto::BOOL);
    training->add_int32_data(1);
    b.Node("Dropout", {"x", "ratio", "training"}, {"y"}, "dropout");
    b.Output("y");
    if (ratio == 0.f) {
      ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, x);
    } else {
      auto model = b.Load();
      ASSERT_FALSE(model.ok());
      EXPECT_NE(model.status().message().find("Dropout in training mode"), std::string::npos)
          << model.status().ToString();
    }
  }
}

TEST(ShapeOpsTest, CastToBool) {
  OnnxBuilder b(13);
  b.Input("x", {5});
  b.Node("Cast", {"x"}, {"y"}).Int("to", onnx::TensorProto::BOOL);
  b.Output("y", onnx::TensorProto::BOOL);
  auto out = LoadAndRun(b, Inputs(MakeTensor({5}, {0.f, 1.5f, -2.f, 0.f, NAN})), {});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ((*out)[0].dtype(), DataType::kU8);
  const uint8_t* y = (*out)[0].data<uint8_t>();
  EXPECT_EQ(std::vector<uint8_t>(y, y + 5), (std::vector<uint8_t>{0, 1, 1, 0, 1}));
}

TEST(ShapeOpsTest, SqueezeUnsqueeze) {
  const Shape xs = {2, 1, 3, 1};
  const auto x = RandomFloats(ElementCount(xs), 1300);
  {
    OnnxBuilder b(13);
    b.Input("x", xs);
    b.InitializerInt64("axes", {2}, {1, -1});
    b.Node("Squeeze", {"x", "axes"}, {"y"}, "squeeze");
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), {2, 3}, x);
  }
  {
    OnnxBuilder b(13);
    b.Input("x", xs);
    b.Node("Squeeze", {"x"}, {"y"}, "squeeze_all");
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), {2, 3}, x);
  }
  {
    OnnxBuilder b(11);
    b.Input("x", xs);
    b.Node("Squeeze", {"x"}, {"y"}, "squeeze").Ints("axes", {3});
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor(xs, x)), {2, 1, 3}, x);
  }
  {
    OnnxBuilder b(13);
    b.Input("x", {2, 3});
    b.InitializerInt64("axes", {2}, {0, -1});
    b.Node("Unsqueeze", {"x", "axes"}, {"y"}, "unsqueeze");
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor({2, 3}, x)), {1, 2, 3, 1}, x);
  }
  {
    OnnxBuilder b(11);
    b.Input("x", {2, 3});
    b.Node("Unsqueeze", {"x"}, {"y"}, "unsqueeze").Ints("axes", {1});
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor({2, 3}, x)), {2, 1, 3}, x);
  }
}

// The dynamic-reshape pattern exporters emit for x.view(x.size(0), -1):
// Shape -> Gather(0) -> Unsqueeze -> Concat(with [-1]) -> Reshape, on a
// symbolic batch dimension.
TEST(ShapeOpsTest, ExporterDynamicReshapeWithSymbolicBatch) {
  const Shape ws = {8, 3, 3, 3};
  const auto w = RandomFloats(ElementCount(ws), 1400);
  const auto bias = RandomFloats(8, 1401);
  const auto fc = RandomFloats(10 * 128, 1402);
  const auto fc_b = RandomFloats(10, 1403);
  OnnxBuilder b(13);
  b.Input("x", {-1, 3, 4, 4});
  b.Initializer("w", ws, w);
  b.Initializer("b", {8}, bias);
  b.Initializer("fc_w", {10, 128}, fc);
  b.Initializer("fc_b", {10}, fc_b);
  b.ScalarInt64("zero", 0);
  b.InitializerInt64("axes0", {1}, {0});
  b.InitializerInt64("minus_one", {1}, {-1});
  b.Node("Conv", {"x", "w", "b"}, {"c"}, "conv").Ints("pads", {1, 1, 1, 1});
  b.Node("Relu", {"c"}, {"r"}, "relu");
  b.Node("Shape", {"r"}, {"shape"}, "shape");
  b.Node("Gather", {"shape", "zero"}, {"batch"}, "gather").Int("axis", 0);
  b.Node("Unsqueeze", {"batch", "axes0"}, {"batch1"}, "unsqueeze");
  b.Node("Concat", {"batch1", "minus_one"}, {"new_shape"}, "concat").Int("axis", 0);
  b.Node("Reshape", {"r", "new_shape"}, {"flat"}, "reshape");
  b.Node("Gemm", {"flat", "fc_w", "fc_b"}, {"y"}, "fc").Int("transB", 1);
  b.Output("y", {-1, 10});
  for (bool fuse : {true, false}) {
    SCOPED_TRACE(fuse ? "fuse=true" : "fuse=false");
    EngineOptions options;
    options.fuse = fuse;
    auto model = b.Load(options);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    ASSERT_EQ((*model)->inputs().size(), 1u);
    EXPECT_EQ((*model)->inputs()[0].shape, (Shape{-1, 3, 4, 4}));
    for (int64_t batch : {1, 5, 1}) {
      SCOPED_TRACE(::testing::Message() << "batch " << batch);
      const Shape xs = {batch, 3, 4, 4};
      const auto x = RandomFloats(ElementCount(xs), 1410 + batch);
      naive::Conv2DArgs a;
      a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
      Shape cs, ts, ys;
      const auto r = naive::Relu(naive::Conv2D(x, xs, w, ws, bias, a, &cs));
      auto want = NaiveMatMul(r, {batch, 128}, NaiveTranspose(fc, {10, 128}, {1, 0}, &ts), {128, 10}, &ys);
      for (int64_t i = 0; i < batch; ++i)
        for (int64_t j = 0; j < 10; ++j) want[i * 10 + j] += fc_b[j];
      auto out = (*model)->Run(Inputs(MakeTensor(xs, x)));
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      EXPECT_TRUE(AllClose((*out)[0], {batch, 10}, want, 1e-4f, 1e-4f));
    }
  }
}

// An integer graph output computed at plan time (Shape of a symbolic input).
TEST(ShapeOpsTest, ShapeAsGraphOutput) {
  OnnxBuilder b(13);
  b.Input("x", {-1, 3, 4});
  b.Node("Shape", {"x"}, {"s"}, "shape");
  b.Node("Relu", {"x"}, {"y"}, "relu");
  b.Output("s", OnnxBuilder::kInt64);
  b.Output("y");
  auto model = b.Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  for (int64_t batch : {2, 7}) {
    const auto x = RandomFloats(batch * 12, 1450 + batch);
    auto out = (*model)->Run(Inputs(MakeTensor({batch, 3, 4}, x)));
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ASSERT_EQ(out->size(), 2u);
    ASSERT_EQ((*out)[0].dtype(), DataType::kS64);
    const auto dims = (*out)[0].values<int64_t>();
    EXPECT_EQ(std::vector<int64_t>(dims.begin(), dims.end()), (std::vector<int64_t>{batch, 3, 4}));
    EXPECT_TRUE(AllClose((*out)[1], {batch, 3, 4}, naive::Relu(x)));
  }
}

TEST(ShapeOpsTest, ConcatOfConvOutputAndGraphInputAndItself) {
  const Shape xs = {1, 16, 3, 3};
  const auto x = RandomFloats(ElementCount(xs), 1460);
  OnnxBuilder b;
  b.Input("x", xs);
  Shape cs;
  const auto c = AddConv1x1(b, "x", "c", xs, x, 16, 1461, &cs);
  b.Node("Concat", {"c", "x", "c"}, {"y"}, "concat").Int("axis", 1);
  b.Output("y");
  std::vector<float> want = c;
  want.insert(want.end(), x.begin(), x.end());
  want.insert(want.end(), c.begin(), c.end());
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), {1, 48, 3, 3}, want, 1e-4f, 1e-5f);
}

// One model run at batch 1, then 4, then 1 and 4 again: a plan per batch size,
// each reused, all correct.
TEST(PlanCacheTest, BatchSizesInterleaved) {
  const Shape ws = {16, 3, 3, 3};
  const auto w = RandomFloats(ElementCount(ws), 1500);
  const auto bias = RandomFloats(16, 1501);
  const auto fc = RandomFloats(16 * 7, 1502);
  OnnxBuilder b(13);
  b.Input("x", {-1, 3, 8, 8});
  b.Initializer("w", ws, w);
  b.Initializer("b", {16}, bias);
  b.Initializer("fc", {16, 7}, fc);
  b.Node("Conv", {"x", "w", "b"}, {"c"}, "conv").Ints("pads", {1, 1, 1, 1}).Ints("strides", {2, 2});
  b.Node("Relu", {"c"}, {"r"}, "relu");
  b.Node("GlobalAveragePool", {"r"}, {"g"}, "gap");
  b.Node("Flatten", {"g"}, {"f"}, "flatten");
  b.Node("MatMul", {"f", "fc"}, {"y"}, "fc");
  b.Output("y");
  auto model = b.Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  uint64_t seed = 1510;
  for (int64_t batch : {1, 4, 1, 4, 2, 1}) {
    SCOPED_TRACE(::testing::Message() << "batch " << batch);
    const Shape xs = {batch, 3, 8, 8};
    const auto x = RandomFloats(ElementCount(xs), ++seed);
    naive::Conv2DArgs a;
    a.stride_h = a.stride_w = 2;
    a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
    Shape cs, ys;
    const auto r = naive::Relu(naive::Conv2D(x, xs, w, ws, bias, a, &cs));
    std::vector<float> g(batch * 16);
    for (int64_t i = 0; i < batch * 16; ++i) {
      double s = 0;
      for (int64_t j = 0; j < 16; ++j) s += r[i * 16 + j];
      g[i] = static_cast<float>(s / 16);
    }
    const auto want = NaiveMatMul(g, {batch, 16}, fc, {16, 7}, &ys);
    auto out = (*model)->Run(Inputs(MakeTensor(xs, x)));
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_TRUE(AllClose((*out)[0], {batch, 7}, want, 1e-4f, 1e-5f));
  }
}


// Runs batch sizes 1..20 ten times over (more batch sizes than the model
// keeps plans for) and checks every run against `reference`. Whether a
// dropped plan's memory gets reused for a new plan's weights depends on the
// allocator, so it tries many plans and counts the wrong ones.
void ExpectCorrectAcrossManyPlans(
    engine::Model& model, uint64_t seed,
    const std::function<std::vector<float>(const std::vector<float>&, const Shape&, Shape*)>& reference) {
  int wrong = 0, runs = 0;
  std::string first_wrong;
  for (int round = 0; round < 10; ++round) {
    for (int64_t batch = 1; batch <= 20; ++batch) {
      const Shape xs = {batch, 3, 5, 5};
      const auto x = RandomFloats(ElementCount(xs), seed + batch);
      Shape ys;
      const std::vector<float> want = reference(x, xs, &ys);
      auto out = model.Run(Inputs(MakeTensor(xs, x)));
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      ++runs;
      if (auto close = AllClose((*out)[0], ys, want, 1e-4f, 1e-4f); !close) {
        if (wrong++ == 0) {
          first_wrong = "round " + std::to_string(round) + ", batch " + std::to_string(batch) + ": " + close.message();
        }
      }
    }
  }
  EXPECT_EQ(wrong, 0) << wrong << " of " << runs << " runs were wrong; first: " << first_wrong;
}

// Conv weights computed at plan time (Reshape of a flat constant), two convs
// with same-shaped but different weights, over more batch sizes (20) than the
// model keeps plans for (16): every run must use the right weights, also
// after old plans (and the constants they computed) have been dropped.
TEST(PlanCacheTest, ComputedWeightsAcrossManyPlans) {
  const Shape ws = {32, 3, 3, 3};
  const auto w1 = RandomFloats(ElementCount(ws), 1600), w2 = RandomFloats(ElementCount(ws), 1601);
  OnnxBuilder b(13);
  b.Input("x", {-1, 3, 5, 5});
  b.Initializer("w1_flat", {ElementCount(ws)}, w1);
  b.Initializer("w2_flat", {ElementCount(ws)}, w2);
  b.InitializerInt64("w_shape", {4}, ws);
  b.Node("Reshape", {"w1_flat", "w_shape"}, {"w1"}, "reshape_w1");
  b.Node("Reshape", {"w2_flat", "w_shape"}, {"w2"}, "reshape_w2");
  b.Node("Conv", {"x", "w1"}, {"c1"}, "conv1").Ints("pads", {1, 1, 1, 1});
  b.Node("Conv", {"x", "w2"}, {"c2"}, "conv2").Ints("pads", {1, 1, 1, 1});
  b.Node("Sub", {"c1", "c2"}, {"y"}, "sub");
  b.Output("y");
  auto model = b.Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  naive::Conv2DArgs a;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
  ExpectCorrectAcrossManyPlans(**model, 1610, [&](const std::vector<float>& x, const Shape& xs, Shape* ys) {
    const auto c1 = naive::Conv2D(x, xs, w1, ws, {}, a, ys);
    const auto c2 = naive::Conv2D(x, xs, w2, ws, {}, a, ys);
    std::vector<float> want(c1.size());
    for (size_t i = 0; i < want.size(); ++i) want[i] = c1[i] - c2[i];
    return want;
  });
}

// Conv weights that depend on the batch size (W * batch, folded at plan time,
// so each plan computes its own weight tensor): after more batch sizes than
// the model keeps plans for, a new plan's weights must not be confused with
// those of a dropped plan.
TEST(PlanCacheTest, BatchDependentWeightsAcrossManyPlans) {
  const Shape ws = {32, 3, 3, 3};
  const auto w = RandomFloats(ElementCount(ws), 1700);
  OnnxBuilder b(13);
  b.Input("x", {-1, 3, 5, 5});
  b.Initializer("w", ws, w);
  b.ScalarInt64("zero", 0);
  b.Node("Shape", {"x"}, {"shape"}, "shape");
  b.Node("Gather", {"shape", "zero"}, {"batch"}, "gather").Int("axis", 0);
  b.Node("Cast", {"batch"}, {"batch_f"}, "cast").Int("to", onnx::TensorProto::FLOAT);
  b.Node("Mul", {"w", "batch_f"}, {"w_scaled"}, "scale_weights");
  b.Node("Conv", {"x", "w_scaled"}, {"y"}, "conv").Ints("pads", {1, 1, 1, 1});
  b.Output("y");
  auto model = b.Load();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  naive::Conv2DArgs a;
  a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
  ExpectCorrectAcrossManyPlans(**model, 1710, [&](const std::vector<float>& x, const Shape& xs, Shape* ys) {
    std::vector<float> wb = w;
    for (float& v : wb) v *= static_cast<float>(xs[0]);
    return naive::Conv2D(x, xs, wb, ws, {}, a, ys);
  });
}

// ---------------------------------------------------------------------------
// Erf and LayerNormalization (transformer-style models).

TEST(ErfTest, MatchesStdErf) {
  const Shape xs = {2, 3, 5};
  const auto x = RandomFloats(ElementCount(xs), 1100, -3.f, 3.f);
  OnnxBuilder b(13);
  b.Input("x", xs);
  b.Node("Erf", {"x"}, {"y"}, "erf");
  b.Output("y");
  std::vector<float> want(x.size());
  for (size_t i = 0; i < x.size(); ++i) want[i] = std::erf(x[i]);
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, want, 1e-5f, 1e-6f);
}

TEST(LayerNormTest, LastAxisWithScaleAndBias) {
  const Shape xs = {2, 3, 16};
  const auto x = RandomFloats(ElementCount(xs), 1110, -2.f, 5.f);
  const auto gamma = RandomFloats(16, 1111), beta = RandomFloats(16, 1112);
  OnnxBuilder b(17);
  b.Input("x", xs);
  b.Initializer("gamma", {16}, gamma);
  b.Initializer("beta", {16}, beta);
  b.Node("LayerNormalization", {"x", "gamma", "beta"}, {"y"}, "ln").Float("epsilon", 1e-3f);
  b.Output("y");
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, naive::LayerNorm(x, 16, gamma, beta, 1e-3f), 1e-4f, 1e-4f);
}

TEST(LayerNormTest, EarlierAxisAndRuntimeScaleWithoutBias) {
  // axis 1 of [2,3,4]: each of the 2 rows normalizes 12 values; the scale is a graph input.
  const Shape xs = {2, 3, 4};
  const auto x = RandomFloats(ElementCount(xs), 1120, -3.f, 3.f);
  const auto gamma = RandomFloats(12, 1121);
  OnnxBuilder b(17);
  b.Input("x", xs);
  b.Input("gamma", {3, 4});
  b.Node("LayerNormalization", {"x", "gamma"}, {"y"}, "ln").Int("axis", 1);
  b.Output("y");
  ExpectOutput(b, Inputs(MakeTensor(xs, x), MakeTensor({3, 4}, gamma)), xs, naive::LayerNorm(x, 12, gamma, {}, 1e-5f),
               1e-4f, 1e-4f);
}

TEST(LayerNormTest, MeanAndInvStdDevOutputs) {
  const Shape xs = {3, 5};
  const auto x = RandomFloats(ElementCount(xs), 1130, -1.f, 4.f);
  const auto gamma = RandomFloats(5, 1131), beta = RandomFloats(5, 1132);
  OnnxBuilder b(17);
  b.Input("x", xs);
  b.Initializer("gamma", {5}, gamma);
  b.Initializer("beta", {5}, beta);
  b.Node("LayerNormalization", {"x", "gamma", "beta"}, {"y", "mean", "inv_std_dev"}, "ln");
  b.Output("y");
  b.Output("mean");
  b.Output("inv_std_dev");
  std::vector<float> mean, inv_std_dev;
  const auto y = naive::LayerNorm(x, 5, gamma, beta, 1e-5f, &mean, &inv_std_dev);
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), xs, y, 1e-4f, 1e-4f, 0);
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), {3, 1}, mean, 1e-4f, 1e-5f, 1);
  ExpectOutput(b, Inputs(MakeTensor(xs, x)), {3, 1}, inv_std_dev, 1e-4f, 1e-5f, 2);
}

TEST(LayerNormTest, ScaleOfAnotherShapeIsAnErrorNamingTheNode) {
  OnnxBuilder b(17);
  b.Input("x", {2, 8});
  b.Initializer("gamma", {4}, RandomFloats(4, 1140));
  b.Node("LayerNormalization", {"x", "gamma"}, {"y"}, "ln_bad");
  b.Output("y");
  std::vector<Tensor> inputs;
  inputs.push_back(MakeTensor({2, 8}, RandomFloats(16, 1141)));
  auto out = LoadAndRun(b, inputs, {});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("ln_bad"), std::string::npos) << out.status().ToString();
  EXPECT_NE(out.status().message().find("Scale shape [4] is not the normalized shape [8]"), std::string::npos)
      << out.status().ToString();
}

// ---------------------------------------------------------------------------
// Comparisons, logic, Mod and ScatterND (mask and index arithmetic in
// transformer exports such as Swin's shifted windows).

template <typename T>
Tensor TensorOf(DataType dtype, const Shape& shape, const std::vector<T>& values) {
  Tensor t(dtype, shape);
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}

template <typename T>
std::vector<T> RunToVector(const OnnxBuilder& b, std::vector<Tensor> inputs, const Shape& want_shape) {
  auto out = LoadAndRun(b, inputs, {});
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return {};
  EXPECT_EQ((*out)[0].shape(), want_shape);
  const T* data = (*out)[0].data<T>();
  return std::vector<T>(data, data + (*out)[0].element_count());
}

TEST(CompareLogicTest, ComparisonsBroadcastToBools) {
  const std::vector<float> a = {1.f, 2.f, 3.f, 4.f, 5.f, 6.f};
  const std::vector<float> row = {2.f, 5.f, 3.f};
  const std::map<std::string, std::vector<uint8_t>> want = {
      {"Equal", {0, 0, 1, 0, 1, 0}}, {"Less", {1, 1, 0, 0, 0, 0}}, {"Greater", {0, 0, 0, 1, 0, 1}}};
  for (const auto& [op, expected] : want) {
    SCOPED_TRACE(op);
    OnnxBuilder b(13);
    b.Input("a", {2, 3});
    b.Initializer("row", {3}, row);
    b.Node(op, {"a", "row"}, {"y"});
    b.Output("y", onnx::TensorProto::BOOL);
    EXPECT_EQ(RunToVector<uint8_t>(b, Inputs(MakeTensor({2, 3}, a)), {2, 3}), expected);
  }
}

TEST(CompareLogicTest, AndOrNotOnBools) {
  const std::vector<uint8_t> p = {0, 0, 1, 1}, q = {0, 1, 0, 1};
  for (const auto& [op, expected] : std::map<std::string, std::vector<uint8_t>>{{"And", {0, 0, 0, 1}},
                                                                               {"Or", {0, 1, 1, 1}}}) {
    SCOPED_TRACE(op);
    OnnxBuilder b(13);
    b.Input("p", {4}, onnx::TensorProto::BOOL);
    b.Input("q", {4}, onnx::TensorProto::BOOL);
    b.Node(op, {"p", "q"}, {"r"});
    b.Node("Not", {"r"}, {"y"});
    b.Output("y", onnx::TensorProto::BOOL);
    std::vector<uint8_t> negated;
    for (uint8_t v : expected) negated.push_back(v == 0);
    EXPECT_EQ(RunToVector<uint8_t>(b, Inputs(TensorOf(DataType::kU8, {4}, p), TensorOf(DataType::kU8, {4}, q)), {4}),
              negated);
  }
}

// Variadic ops with two and three operands (two take another kernel path).
TEST(CompareLogicTest, MeanAndMaxOfTwoAndThreeInputs) {
  const std::vector<float> p = {1.f, -2.f, 3.f}, q = {3.f, 4.f, -3.f}, r = {2.f, 1.f, 6.f};
  for (const auto& [op, two, three] : std::vector<std::tuple<std::string, std::vector<float>, std::vector<float>>>{
           {"Mean", {2.f, 1.f, 0.f}, {2.f, 1.f, 2.f}}, {"Max", {3.f, 4.f, 3.f}, {3.f, 4.f, 6.f}}}) {
    SCOPED_TRACE(op);
    OnnxBuilder b(13);
    b.Input("p", {3});
    b.Initializer("q", {3}, q);
    b.Initializer("r", {3}, r);
    b.Node(op, {"p", "q"}, {"y2"});
    b.Node(op, {"p", "q", "r"}, {"y3"});
    b.Output("y2");
    b.Output("y3");
    ExpectOutput(b, Inputs(MakeTensor({3}, p)), {3}, two, 1e-6f, 1e-6f, 0);
    ExpectOutput(b, Inputs(MakeTensor({3}, p)), {3}, three, 1e-6f, 1e-6f, 1);
  }
}

TEST(ModTest, IntegerRemainderTakesTheDivisorsSignAndFmodTheDividends) {
  const std::vector<int64_t> a = {7, -7, 7, -7, 5, 0};
  const std::vector<int64_t> d = {3, 3, -3, -3, 5, 4};
  for (const auto& [fmod, expected] : std::map<int64_t, std::vector<int64_t>>{{0, {1, 2, -2, -1, 0, 0}},
                                                                             {1, {1, -1, 1, -1, 0, 0}}}) {
    SCOPED_TRACE(::testing::Message() << "fmod " << fmod);
    OnnxBuilder b(13);
    b.Input("a", {6}, OnnxBuilder::kInt64);
    b.Input("d", {6}, OnnxBuilder::kInt64);
    b.Node("Mod", {"a", "d"}, {"y"}).Int("fmod", fmod);
    b.Output("y", OnnxBuilder::kInt64);
    EXPECT_EQ(RunToVector<int64_t>(b, Inputs(TensorOf(DataType::kS64, {6}, a), TensorOf(DataType::kS64, {6}, d)), {6}),
              expected);
  }
}

TEST(ModTest, FloatFmodAndRemainderByZero) {
  OnnxBuilder b(13);
  b.Input("a", {4});
  b.Initializer("d", {4}, {2.5f, 2.5f, -2.f, 1.f});
  b.Node("Mod", {"a", "d"}, {"y"}).Int("fmod", 1);
  b.Output("y");
  ExpectOutput(b, Inputs(MakeTensor({4}, {5.5f, -5.5f, 5.f, 0.25f})), {4}, {0.5f, -0.5f, 1.f, 0.25f});

  OnnxBuilder z(13);
  z.Input("a", {2}, OnnxBuilder::kInt64);
  z.InitializerInt64("d", {2}, {3, 0});
  z.Node("Mod", {"a", "d"}, {"y"}, "mod_by_zero");
  z.Output("y", OnnxBuilder::kInt64);
  auto out = LoadAndRun(z, Inputs(TensorOf(DataType::kS64, {2}, std::vector<int64_t>{4, 4})), {});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("integer remainder by zero"), std::string::npos) << out.status().ToString();
}

TEST(ScatterNdTest, ReplacesAndAddsSlices) {
  // data [4,3]; indices [[1],[-1]] address rows 1 and 3.
  const std::vector<float> data = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  for (const auto& [reduction, expected] : std::map<std::string, std::vector<float>>{
           {"none", {0, 1, 2, 20, 21, 22, 6, 7, 8, 30, 31, 32}},
           {"add", {0, 1, 2, 23, 25, 27, 6, 7, 8, 39, 41, 43}}}) {
    SCOPED_TRACE(reduction);
    OnnxBuilder b(16);
    b.Input("data", {4, 3});
    b.InitializerInt64("indices", {2, 1}, {1, -1});
    b.Initializer("updates", {2, 3}, {20, 21, 22, 30, 31, 32});
    b.Node("ScatterND", {"data", "indices", "updates"}, {"y"}).String("reduction", reduction);
    b.Output("y");
    ExpectOutput(b, Inputs(MakeTensor({4, 3}, data)), {4, 3}, expected);
  }
}

TEST(ScatterNdTest, ElementIndicesAndAnIndexOutOfRange) {
  OnnxBuilder b(13);
  b.Input("data", {2, 2});
  b.InitializerInt64("indices", {2, 2}, {0, 1, 1, 0});
  b.Initializer("updates", {2}, {7, 8});
  b.Node("ScatterND", {"data", "indices", "updates"}, {"y"});
  b.Output("y");
  ExpectOutput(b, Inputs(MakeTensor({2, 2}, {1, 2, 3, 4})), {2, 2}, {1, 7, 8, 4});

  OnnxBuilder bad(13);
  bad.Input("data", {2, 2});
  bad.InitializerInt64("indices", {1, 1}, {2});
  bad.Initializer("updates", {1, 2}, {7, 8});
  bad.Node("ScatterND", {"data", "indices", "updates"}, {"y"}, "scatter_bad");
  bad.Output("y");
  auto out = LoadAndRun(bad, Inputs(MakeTensor({2, 2}, {1, 2, 3, 4})), {});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("index 2 is out of range for dimension 0 of size 2"), std::string::npos)
      << out.status().ToString();
}

}  // namespace
}  // namespace ppml::test
