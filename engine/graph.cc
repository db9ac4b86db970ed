#include "engine/graph.h"

#include "engine/memory.h"

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

std::shared_ptr<const Tensor> Graph::Constant(const std::string& value) const {
  if (auto it = constants.find(value); it != constants.end()) return it->second;
  auto it = offloaded.find(value);
  if (it == offloaded.end()) return nullptr;
  const OffloadedConstant& c = it->second;
  if (!env.store) throw StatusError(Status::Internal("constant '" + value + "' is offloaded but there is no store"));
  std::shared_ptr<Tensor> t = NewAccountedTensor(env.budget, c.dtype, c.shape, "constant '" + value + "'");
  auto out = std::as_writable_bytes(std::span<char>(static_cast<char*>(t->raw_data()), t->byte_size()));
  const Status fetched = c.handle ? env.store->Get(*c.handle, out) : env.store->ReadExternal(c.location, out);
  if (!fetched.ok()) throw StatusError(fetched.WithContext("constant '" + value + "'"));
  return t;
}

void Graph::SetConstant(const std::string& name, Tensor value) {
  EraseConstant(name);
  if (env.offload && env.store && value.byte_size() >= env.offload_min_bytes) {
    auto bytes = std::as_bytes(std::span<const char>(static_cast<const char*>(value.raw_data()), value.byte_size()));
    Result<uint64_t> handle = env.store->Put(name, bytes);
    if (!handle.ok()) throw StatusError(handle.status().WithContext("constant '" + name + "'"));
    offloaded[name] = {value.dtype(), value.shape(), "", *handle};
    return;
  }
  constants[name] = Accounted(env.budget, std::move(value), "constant '" + name + "'");
}

void Graph::AliasConstant(const std::string& alias, const std::string& name) {
  if (auto it = constants.find(name); it != constants.end()) constants[alias] = it->second;
  if (auto it = offloaded.find(name); it != offloaded.end()) offloaded[alias] = it->second;
}

void Graph::EraseConstant(const std::string& name) {
  constants.erase(name);
  offloaded.erase(name);
}

bool Graph::ConstantInfo(const std::string& value, DataType* dtype, Shape* shape) const {
  if (auto it = constants.find(value); it != constants.end()) {
    *dtype = it->second->dtype();
    *shape = it->second->shape();
    return true;
  }
  if (auto it = offloaded.find(value); it != offloaded.end()) {
    *dtype = it->second.dtype;
    *shape = it->second.shape;
    return true;
  }
  return false;
}

}  // namespace ppml::engine
