// Test helpers: build small ONNX models in code and check engine outputs.
//
//   OnnxBuilder b(13);
//   b.Input("x", {-1, 3, 8, 8});                    // -1: symbolic ("N")
//   b.Initializer("w", {4, 3, 3, 3}, RandomFloats(108, 1));
//   b.Node("Conv", {"x", "w"}, {"y"}, "conv1").Ints("pads", {1, 1, 1, 1});
//   b.Output("y");
//   auto model = b.Load();                          // Model::LoadBytes
//
// Also: a deterministic pseudo-random generator (same numbers on every
// platform) and AllClose, a gtest assertion comparing a Tensor with expected
// values at |got - want| <= abs + rel * |want|. Header-only, test-only.
#pragma once

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "engine/engine.h"

namespace ppml::test {

// Fluent setter of a node's attributes.
class NodeRef {
 public:
  explicit NodeRef(onnx::NodeProto* node) : node_(node) {}

  NodeRef& Int(const std::string& name, int64_t v) {
    auto* a = Add(name, onnx::AttributeProto::INT);
    a->set_i(v);
    return *this;
  }
  NodeRef& Float(const std::string& name, float v) {
    auto* a = Add(name, onnx::AttributeProto::FLOAT);
    a->set_f(v);
    return *this;
  }
  NodeRef& String(const std::string& name, const std::string& v) {
    auto* a = Add(name, onnx::AttributeProto::STRING);
    a->set_s(v);
    return *this;
  }
  NodeRef& Ints(const std::string& name, const std::vector<int64_t>& v) {
    auto* a = Add(name, onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
    return *this;
  }
  NodeRef& Floats(const std::string& name, const std::vector<float>& v) {
    auto* a = Add(name, onnx::AttributeProto::FLOATS);
    for (float x : v) a->add_floats(x);
    return *this;
  }
  onnx::NodeProto* proto() { return node_; }

 private:
  onnx::AttributeProto* Add(const std::string& name, onnx::AttributeProto::AttributeType type) {
    onnx::AttributeProto* a = node_->add_attribute();
    a->set_name(name);
    a->set_type(type);
    return a;
  }
  onnx::NodeProto* node_;
};

class OnnxBuilder {
 public:
  static constexpr int kFloat = onnx::TensorProto::FLOAT;
  static constexpr int kInt64 = onnx::TensorProto::INT64;

  explicit OnnxBuilder(int64_t opset = 13, const std::string& graph_name = "test_graph") {
    model_.set_ir_version(8);
    model_.set_producer_name("ppml-tests");
    auto* op = model_.add_opset_import();
    op->set_domain("");
    op->set_version(opset);
    model_.mutable_graph()->set_name(graph_name);
  }

  // A graph input. Negative dimensions are symbolic (dim_param `symbol`).
  OnnxBuilder& Input(const std::string& name, const std::vector<int64_t>& shape, int elem_type = kFloat,
                     const std::string& symbol = "N") {
    FillValueInfo(model_.mutable_graph()->add_input(), name, &shape, elem_type, symbol);
    return *this;
  }
  // A graph output with an element type and no shape (the engine infers it).
  OnnxBuilder& Output(const std::string& name, int elem_type = kFloat) {
    FillValueInfo(model_.mutable_graph()->add_output(), name, nullptr, elem_type, "N");
    return *this;
  }
  // A graph output with a declared shape.
  OnnxBuilder& Output(const std::string& name, const std::vector<int64_t>& shape, int elem_type = kFloat) {
    FillValueInfo(model_.mutable_graph()->add_output(), name, &shape, elem_type, "N");
    return *this;
  }

  OnnxBuilder& Initializer(const std::string& name, const std::vector<int64_t>& shape,
                           const std::vector<float>& values) {
    onnx::TensorProto* t = NewInitializer(name, shape, kFloat);
    for (float v : values) t->add_float_data(v);
    return *this;
  }
  OnnxBuilder& InitializerInt64(const std::string& name, const std::vector<int64_t>& shape,
                                const std::vector<int64_t>& values) {
    onnx::TensorProto* t = NewInitializer(name, shape, kInt64);
    for (int64_t v : values) t->add_int64_data(v);
    return *this;
  }
  // A 0-d int64 initializer (a Gather index, say).
  OnnxBuilder& ScalarInt64(const std::string& name, int64_t value) { return InitializerInt64(name, {}, {value}); }
  OnnxBuilder& ScalarFloat(const std::string& name, float value) { return Initializer(name, {}, {value}); }

  // A node; "" in `inputs` marks an omitted optional input. An empty `name`
  // leaves the node unnamed (the engine then calls it "<op>_<index>").
  NodeRef Node(const std::string& op_type, const std::vector<std::string>& inputs,
               const std::vector<std::string>& outputs, const std::string& name = "") {
    onnx::NodeProto* n = model_.mutable_graph()->add_node();
    n->set_op_type(op_type);
    if (!name.empty()) n->set_name(name);
    for (const auto& in : inputs) n->add_input(in);
    for (const auto& out : outputs) n->add_output(out);
    return NodeRef(n);
  }

  onnx::ModelProto& proto() { return model_; }
  const onnx::ModelProto& proto() const { return model_; }

  std::string Serialize() const {
    std::string bytes;
    model_.SerializeToString(&bytes);
    return bytes;
  }

  Result<std::unique_ptr<engine::Model>> Load(const engine::EngineOptions& options = {},
                                              const std::string& name = "test.onnx") const {
    const std::string bytes = Serialize();
    return engine::Model::LoadBytes(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), name, options);
  }

 private:
  static void FillValueInfo(onnx::ValueInfoProto* info, const std::string& name, const std::vector<int64_t>* shape,
                            int elem_type, const std::string& symbol) {
    info->set_name(name);
    auto* tt = info->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem_type);
    if (!shape) return;
    auto* s = tt->mutable_shape();
    for (int64_t d : *shape) {
      auto* dim = s->add_dim();
      if (d < 0) {
        dim->set_dim_param(symbol);
      } else {
        dim->set_dim_value(d);
      }
    }
  }
  onnx::TensorProto* NewInitializer(const std::string& name, const std::vector<int64_t>& shape, int type) {
    onnx::TensorProto* t = model_.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    for (int64_t d : shape) t->add_dims(d);
    return t;
  }

  onnx::ModelProto model_;
};

// Loads and runs once; the error of either step otherwise.
inline Result<std::vector<Tensor>> LoadAndRun(const OnnxBuilder& b, const std::vector<Tensor>& inputs,
                                              const engine::EngineOptions& options = {}) {
  auto model = b.Load(options);
  if (!model.ok()) return model.status();
  return (*model)->Run(inputs);
}

// xorshift64*: deterministic across platforms and standard libraries.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {
    if (state_ == 0) state_ = 1;
  }
  uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1Dull;
  }
  // Uniform in [lo, hi).
  float Uniform(float lo, float hi) {
    const double u = static_cast<double>(Next() >> 11) / static_cast<double>(1ull << 53);
    return static_cast<float>(lo + (hi - lo) * u);
  }

 private:
  uint64_t state_;
};

inline std::vector<float> RandomFloats(int64_t count, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = rng.Uniform(lo, hi);
  return v;
}

inline Tensor MakeTensor(const Shape& shape, const std::vector<float>& values) {
  return Tensor::FromVector<float>(shape, values);
}

inline std::vector<float> ToVector(const Tensor& t) {
  auto v = t.values<float>();
  return {v.begin(), v.end()};
}

// Passes when `got` is f32 with shape `shape` and every element is within
// abs + rel * |want| of `want`. Names the first few mismatches.
inline ::testing::AssertionResult AllClose(const Tensor& got, const Shape& shape, const std::vector<float>& want,
                                           float rel = 1e-4f, float abs = 1e-5f) {
  if (got.dtype() != DataType::kF32) {
    return ::testing::AssertionFailure() << "dtype is " << DataTypeName(got.dtype()) << ", expected f32";
  }
  if (got.shape() != shape) {
    return ::testing::AssertionFailure() << "shape is " << ShapeToString(got.shape()) << ", expected "
                                         << ShapeToString(shape);
  }
  if (static_cast<int64_t>(want.size()) != got.element_count()) {
    return ::testing::AssertionFailure() << "test bug: " << want.size() << " expected values for shape "
                                         << ShapeToString(shape);
  }
  const float* g = got.data<float>();
  int64_t bad = 0;
  double worst = 0;
  std::ostringstream details;
  for (int64_t i = 0; i < got.element_count(); ++i) {
    const float w = want[static_cast<size_t>(i)];
    const double diff = std::fabs(static_cast<double>(g[i]) - w);
    const bool ok = diff <= abs + rel * std::fabs(w) || (std::isnan(g[i]) && std::isnan(w));
    if (!ok) {
      if (bad < 8) details << "\n  [" << i << "] got " << g[i] << ", want " << w << " (diff " << diff << ")";
      ++bad;
      worst = std::max(worst, diff);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << got.element_count() << " elements differ (worst "
                                       << worst << ", rel " << rel << ", abs " << abs << ")" << details.str();
}

// A memory budget that refuses past `limit` bytes and records the peak.
class LimitedBudget final : public engine::MemoryBudget {
 public:
  explicit LimitedBudget(size_t limit) : limit_(limit) {}
  Status Reserve(size_t bytes, std::string_view what) override {
    if (in_use_ + bytes > limit_) return Status::ResourceExhausted(std::string(what) + " does not fit");
    in_use_ += bytes;
    peak_ = std::max(peak_, in_use_);
    return Status::Ok();
  }
  void Release(size_t bytes) override { in_use_ -= std::min(bytes, in_use_); }
  size_t peak() const { return peak_; }
  size_t in_use() const { return in_use_; }

 private:
  size_t limit_, in_use_ = 0, peak_ = 0;
};

// ---------------------------------------------------------------------------
// Naive references shared by the engine tests: plain loops, double accumulators.
namespace naive {

struct Conv2DArgs {
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t group = 1;
};

// x [N,C,H,W], w [O,C/group,KH,KW], bias [O] or empty. Sets *y_shape.
inline std::vector<float> Conv2D(const std::vector<float>& x, const Shape& xs, const std::vector<float>& w,
                                 const Shape& ws, const std::vector<float>& bias, const Conv2DArgs& a,
                                 Shape* y_shape) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
  const int64_t O = ws[0], Cg = ws[1], KH = ws[2], KW = ws[3];
  const int64_t Og = O / a.group;
  const int64_t OH = (H + a.pad_top + a.pad_bottom - ((KH - 1) * a.dilation_h + 1)) / a.stride_h + 1;
  const int64_t OW = (W + a.pad_left + a.pad_right - ((KW - 1) * a.dilation_w + 1)) / a.stride_w + 1;
  EXPECT_EQ(C, Cg * a.group) << "test bug: channels";
  *y_shape = {N, O, OH, OW};
  std::vector<float> y(static_cast<size_t>(N * O * OH * OW));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t g = o / Og;
          double acc = bias.empty() ? 0.0 : bias[o];
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = oh * a.stride_h - a.pad_top + kh * a.dilation_h;
                const int64_t iw = ow * a.stride_w - a.pad_left + kw * a.dilation_w;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += static_cast<double>(x[((n * C + g * Cg + c) * H + ih) * W + iw]) *
                       w[((o * Cg + c) * KH + kh) * KW + kw];
              }
          y[((n * O + o) * OH + oh) * OW + ow] = static_cast<float>(acc);
        }
  return y;
}

// Inference BatchNormalization over axis 1 of x (rank >= 2).
inline std::vector<float> BatchNorm(const std::vector<float>& x, const Shape& xs, const std::vector<float>& scale,
                                    const std::vector<float>& shift, const std::vector<float>& mean,
                                    const std::vector<float>& var, float epsilon) {
  const int64_t C = xs[1];
  int64_t inner = 1;
  for (size_t i = 2; i < xs.size(); ++i) inner *= xs[i];
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t c = (static_cast<int64_t>(i) / inner) % C;
    y[i] = static_cast<float>((x[i] - static_cast<double>(mean[c])) / std::sqrt(static_cast<double>(var[c]) + epsilon) *
                                  scale[c] +
                              shift[c]);
  }
  return y;
}

inline std::vector<float> Relu(std::vector<float> x) {
  for (float& v : x) v = v > 0.f ? v : 0.f;
  return x;
}

inline std::vector<float> Add(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> y(a.size());
  for (size_t i = 0; i < a.size(); ++i) y[i] = a[i] + b[i];
  return y;
}

// Layer normalization of rows of `inner` values (gamma/beta empty: ones/zeros);
// each row's mean and 1/stddev go to `mean`/`inv_std_dev` when given.
inline std::vector<float> LayerNorm(const std::vector<float>& x, int64_t inner, const std::vector<float>& gamma,
                                    const std::vector<float>& beta, float epsilon, std::vector<float>* mean = nullptr,
                                    std::vector<float>* inv_std_dev = nullptr) {
  std::vector<float> y(x.size());
  for (size_t r = 0; r * inner < x.size(); ++r) {
    double mu = 0, var = 0;
    for (int64_t i = 0; i < inner; ++i) mu += x[r * inner + i];
    mu /= static_cast<double>(inner);
    for (int64_t i = 0; i < inner; ++i) var += (x[r * inner + i] - mu) * (x[r * inner + i] - mu);
    const double inv = 1.0 / std::sqrt(var / static_cast<double>(inner) + epsilon);
    for (int64_t i = 0; i < inner; ++i) {
      const double g = gamma.empty() ? 1.0 : gamma[i], bias = beta.empty() ? 0.0 : beta[i];
      y[r * inner + i] = static_cast<float>((x[r * inner + i] - mu) * inv * g + bias);
    }
    if (mean) mean->push_back(static_cast<float>(mu));
    if (inv_std_dev) inv_std_dev->push_back(static_cast<float>(inv));
  }
  return y;
}

}  // namespace naive

}  // namespace ppml::test
