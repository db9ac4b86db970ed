// Test helpers for int8/: deterministic sample distributions, a quiet
// calibration progress callback, and accessors for the nodes and
// initializers of a serialized ONNX model. Header-only, test-only.
#pragma once

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "int8/quantize.h"
#include "tests/engine/onnx_builder.h"

namespace ppml::test {

inline std::vector<float> UniformSamples(size_t n, uint64_t seed, float lo, float hi) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = rng.Uniform(lo, hi);
  return v;
}

// Box-Muller over the deterministic Rng.
inline std::vector<float> GaussianSamples(size_t n, uint64_t seed, float sigma) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i += 2) {
    const double u1 = std::max(1e-12, static_cast<double>(rng.Uniform(0.f, 1.f)));
    const double u2 = rng.Uniform(0.f, 1.f);
    const double r = std::sqrt(-2.0 * std::log(u1));
    v[i] = static_cast<float>(sigma * r * std::cos(2 * M_PI * u2));
    if (i + 1 < n) v[i + 1] = static_cast<float>(sigma * r * std::sin(2 * M_PI * u2));
  }
  return v;
}

inline int8::CalibrateOptions QuietCalibration(int64_t batch = 0) {
  int8::CalibrateOptions o;
  o.batch_size = batch;
  o.progress = [](const int8::CalibrationProgress&) {};
  return o;
}

// A parsed QDQ model with lookups by node name, output tensor and initializer.
class ModelView {
 public:
  explicit ModelView(const std::string& bytes) { ok_ = model_.ParseFromString(bytes); }
  bool ok() const { return ok_; }
  const onnx::ModelProto& proto() const { return model_; }
  const onnx::GraphProto& graph() const { return model_.graph(); }

  const onnx::NodeProto* Node(const std::string& name) const {
    for (const auto& n : graph().node()) {
      if (n.name() == name) return &n;
    }
    return nullptr;
  }
  const onnx::NodeProto* Producer(const std::string& tensor) const {
    for (const auto& n : graph().node()) {
      for (const auto& o : n.output()) {
        if (o == tensor) return &n;
      }
    }
    return nullptr;
  }
  std::vector<const onnx::NodeProto*> Readers(const std::string& tensor) const {
    std::vector<const onnx::NodeProto*> out;
    for (const auto& n : graph().node()) {
      for (const auto& i : n.input()) {
        if (i == tensor) {
          out.push_back(&n);
          break;
        }
      }
    }
    return out;
  }
  int Count(const std::string& op) const {
    int c = 0;
    for (const auto& n : graph().node()) c += n.op_type() == op;
    return c;
  }
  const onnx::TensorProto* Initializer(const std::string& name) const {
    for (const auto& t : graph().initializer()) {
      if (t.name() == name) return &t;
    }
    return nullptr;
  }
  template <typename T>
  std::vector<T> Values(const std::string& name) const {
    const onnx::TensorProto* t = Initializer(name);
    if (!t) {
      ADD_FAILURE() << "no initializer '" << name << "'";
      return {};
    }
    if (!t->raw_data().empty()) {
      std::vector<T> v(t->raw_data().size() / sizeof(T));
      std::memcpy(v.data(), t->raw_data().data(), v.size() * sizeof(T));
      return v;
    }
    if constexpr (std::is_same_v<T, float>) return {t->float_data().begin(), t->float_data().end()};
    return {};
  }
  int64_t Opset() const {
    for (const auto& o : model_.opset_import()) {
      if (o.domain().empty() || o.domain() == "ai.onnx") return o.version();
    }
    return -1;
  }

 private:
  onnx::ModelProto model_;
  bool ok_ = false;
};

inline int64_t IntAttribute(const onnx::NodeProto& n, const std::string& name, int64_t fallback) {
  for (const auto& a : n.attribute()) {
    if (a.name() == name) return a.i();
  }
  return fallback;
}

}  // namespace ppml::test
