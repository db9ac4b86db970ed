#include "engine/graph.h"

namespace ppml::engine {

Result<int64_t> Node::Int(const std::string& key) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) return Status::InvalidArgument(Describe() + ": missing attribute '" + key + "'");
  if (auto* v = std::get_if<int64_t>(&it->second.value)) return *v;
  return Status::InvalidArgument(Describe() + ": attribute '" + key + "' must be an integer");
}

int64_t Node::Int(const std::string& key, int64_t fallback) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) return fallback;
  if (auto* v = std::get_if<int64_t>(&it->second.value)) return *v;
  return fallback;
}

float Node::Float(const std::string& key, float fallback) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) return fallback;
  if (auto* v = std::get_if<float>(&it->second.value)) return *v;
  if (auto* i = std::get_if<int64_t>(&it->second.value)) return static_cast<float>(*i);
  return fallback;
}

std::string Node::String(const std::string& key, const std::string& fallback) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) return fallback;
  if (auto* v = std::get_if<std::string>(&it->second.value)) return *v;
  return fallback;
}

std::vector<int64_t> Node::Ints(const std::string& key, const std::vector<int64_t>& fallback) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) return fallback;
  if (auto* v = std::get_if<std::vector<int64_t>>(&it->second.value)) return *v;
  if (auto* i = std::get_if<int64_t>(&it->second.value)) return {*i};
  return fallback;
}

std::vector<float> Node::Floats(const std::string& key) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) return {};
  if (auto* v = std::get_if<std::vector<float>>(&it->second.value)) return *v;
  if (auto* f = std::get_if<float>(&it->second.value)) return {*f};
  return {};
}

const Tensor* Node::TensorAttr(const std::string& key) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) return nullptr;
  if (auto* v = std::get_if<std::shared_ptr<Tensor>>(&it->second.value)) return v->get();
  return nullptr;
}

std::string Node::Describe() const { return "node '" + name + "' (" + op_type + ")"; }

const std::string& Node::Input(size_t i) const {
  static const std::string kEmpty;
  return i < inputs.size() ? inputs[i] : kEmpty;
}

const Tensor* Graph::Constant(const std::string& value) const {
  auto it = constants.find(value);
  return it == constants.end() ? nullptr : it->second.get();
}

}  // namespace ppml::engine
