// ONNX ModelProto -> Graph. Internal to engine/.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "common/status.h"
#include "engine/graph.h"

namespace ppml::engine {

// Parses a serialized ONNX model. `name` appears in error messages. Checks
// the structure (a parsable protobuf, known domains, opset 7..17, a
// topological order, supported input types); op support is checked later.
// Constants are accounted to env.budget; initializers stored as external data
// come from env.store, and with env.offload large constants stay there.
// May throw StatusError (a store or budget failure).
Result<Graph> ImportOnnx(std::span<const std::byte> bytes, const std::string& name, const ConstantEnv& env = {});

}  // namespace ppml::engine
