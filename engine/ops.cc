#include "engine/ops.h"

#include <algorithm>
#include <map>

namespace ppml::engine {
namespace {

const std::map<std::string, OpEntry>& Registry() {
  static const auto* registry = [] {
    auto* r = new std::map<std::string, OpEntry>();
    for (auto group : {ConvOps, ElementwiseOps, LinearOps, PoolingOps, ShapeOps, QuantOps}) {
      for (const OpEntry& e : group()) (*r)[e.op_type] = e;
    }
    return r;
  }();
  return *registry;
}

}  // namespace

const OpEntry* FindOp(const std::string& op_type) {
  const auto& r = Registry();
  auto it = r.find(op_type);
  return it == r.end() ? nullptr : &it->second;
}

bool ReadsQuantizedAsStored(const std::string& op) {
  const OpEntry* entry = FindOp(op);
  return entry && entry->int8_aware;
}

}  // namespace ppml::engine
