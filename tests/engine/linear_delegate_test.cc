// The engine's LinearDelegate hook: a delegate that computes every Conv and
// dense layer with naive loops must reproduce the engine's own outputs, and
// a delegate that declines must leave the model untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "common/tensor.h"
#include "engine/engine.h"

namespace ppml::engine {
namespace {

const std::string kModel = std::string(PPML_SOURCE_DIR) + "/models/fashion_cnn.onnx";

struct Layer {
  LinearLayer geometry;  // pointers cleared: only Adopt may read them
  int64_t kernel_h = 1, kernel_w = 1;
  std::vector<float> weights, bias;
};

class NaiveDelegate final : public LinearDelegate {
 public:
  explicit NaiveDelegate(bool adopt) : adopt_(adopt) {}

  Result<int> Adopt(const LinearLayer& layer) override {
    adopted_names.insert(layer.node);
    if (!adopt_) return -1;
    Layer l{layer, 1, 1, {}, {}};
    if (!layer.dense) {
      l.kernel_h = layer.weights->dim(2);
      l.kernel_w = layer.weights->dim(3);
    }
    const float* w = layer.weights->data<float>();
    l.weights.assign(w, w + layer.weights->element_count());
    if (layer.bias) l.bias.assign(layer.bias->data<float>(), layer.bias->data<float>() + layer.bias->element_count());
    l.geometry.weights = l.geometry.bias = nullptr;
    layers_.push_back(std::move(l));
    return static_cast<int>(layers_.size() - 1);
  }

  Status Run(int id, std::span<const float> in, const Shape& in_shape, std::span<float> out,
             const Shape& out_shape) override {
    ++runs;
    const Layer& l = layers_.at(id);
    const LinearLayer& g = l.geometry;
    if (in_shape.size() != g.input_shape.size() || in_shape[1] != g.input_shape[1]) {
      return Status::InvalidArgument("input shape differs from the adopted layer's");
    }
    const int64_t n = in_shape[0];
    if (g.dense) {
      const int64_t k = in_shape[1], m = out_shape[1];
      for (int64_t b = 0; b < n; ++b) {
        for (int64_t o = 0; o < m; ++o) {
          double acc = l.bias.empty() ? 0 : l.bias[o];
          for (int64_t j = 0; j < k; ++j) acc += double{in[b * k + j]} * l.weights[o * k + j];
          out[b * m + o] = static_cast<float>(acc);
        }
      }
      return Status::Ok();
    }
    const int64_t c = in_shape[1], h = in_shape[2], w = in_shape[3];
    const int64_t oc = out_shape[1], oh = out_shape[2], ow = out_shape[3];
    const int64_t cg = c / g.groups, og = oc / g.groups;
    const int64_t kh = l.kernel_h, kw = l.kernel_w;
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t o = 0; o < oc; ++o) {
        const int64_t group = o / og;
        for (int64_t y = 0; y < oh; ++y) {
          for (int64_t x = 0; x < ow; ++x) {
            double acc = l.bias.empty() ? 0 : l.bias[o];
            for (int64_t ci = 0; ci < cg; ++ci) {
              for (int64_t ky = 0; ky < kh; ++ky) {
                for (int64_t kx = 0; kx < kw; ++kx) {
                  const int64_t iy = y * g.stride_h - g.pad_top + ky * g.dilation_h;
                  const int64_t ix = x * g.stride_w - g.pad_left + kx * g.dilation_w;
                  if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                  const int64_t channel = group * cg + ci;
                  acc += double{in[((b * c + channel) * h + iy) * w + ix]} *
                         l.weights[((o * cg + ci) * kh + ky) * kw + kx];
                }
              }
            }
            out[((b * oc + o) * oh + y) * ow + x] = static_cast<float>(acc);
          }
        }
      }
    }
    return Status::Ok();
  }

  std::set<std::string> adopted_names;
  int runs = 0;

 private:
  bool adopt_;
  std::vector<Layer> layers_;
};

Tensor Inputs(int64_t batch) {
  Tensor t(DataType::kF32, {batch, 1, 28, 28});
  for (int64_t i = 0; i < t.element_count(); ++i) t.data<float>()[i] = float((i * 37) % 101) / 101.f;
  return t;
}

std::vector<float> RunModel(LinearDelegate* delegate, int64_t batch) {
  EngineOptions options;
  options.threads = 1;
  options.linear_delegate = delegate;
  auto model = Model::LoadFile(kModel, options);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return {};
  Tensor in = Inputs(batch);
  auto out = (*model)->Run(std::span<const Tensor>(&in, 1));
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return {};
  const Tensor& y = (*out)[0];
  return std::vector<float>(y.data<float>(), y.data<float>() + y.element_count());
}

TEST(LinearDelegate, NaiveDelegateReproducesTheEngine) {
  const std::vector<float> expected = RunModel(nullptr, 3);
  NaiveDelegate delegate(/*adopt=*/true);
  const std::vector<float> got = RunModel(&delegate, 3);
  ASSERT_EQ(got.size(), expected.size());
  ASSERT_FALSE(got.empty());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-3f * (1 + std::fabs(expected[i]))) << i;
  // Every conv and dense layer of the model went through the delegate.
  EXPECT_GE(delegate.adopted_names.size(), 3u);
  EXPECT_GE(delegate.runs, static_cast<int>(delegate.adopted_names.size()));
}

TEST(LinearDelegate, DecliningDelegateLeavesTheEngineAlone) {
  const std::vector<float> expected = RunModel(nullptr, 2);
  NaiveDelegate delegate(/*adopt=*/false);
  const std::vector<float> got = RunModel(&delegate, 2);
  ASSERT_EQ(got, expected);
  EXPECT_FALSE(delegate.adopted_names.empty());
  EXPECT_EQ(delegate.runs, 0);
}

class FailingDelegate final : public LinearDelegate {
 public:
  Result<int> Adopt(const LinearLayer&) override { return 0; }
  Status Run(int, std::span<const float>, const Shape&, std::span<float>, const Shape&) override {
    return Status::Unavailable("accelerator gone");
  }
};

TEST(LinearDelegate, RunErrorsReachTheCaller) {
  FailingDelegate delegate;
  EngineOptions options;
  options.linear_delegate = &delegate;
  auto model = Model::LoadFile(kModel, options);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  Tensor in = Inputs(1);
  auto out = (*model)->Run(std::span<const Tensor>(&in, 1));
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("accelerator gone"), std::string::npos) << out.status().ToString();
}

}  // namespace
}  // namespace ppml::engine
