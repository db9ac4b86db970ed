// Whether a graph treats the samples of a batch independently, so that a
// batch may run as slices side by side (EngineOptions::split_batch_max_weight_bytes).
// Internal to engine/.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "common/tensor.h"
#include "engine/graph.h"

namespace ppml::engine {

// The shape of a graph value in a plan built for a slice of `rows` samples,
// nullopt when the plan does not hold it (fused away).
using SliceShapeOf = std::function<std::optional<Shape>(const std::string& name)>;

// Why running the graph on slices of its batch could give other results than
// running it whole (a node that mixes samples, an input without a batch
// dimension, an op this analysis does not know), or nullopt when it cannot:
// every graph input and output has the batch as its first dimension and every
// node maps sample i of its inputs to sample i of its outputs. Conservative:
// an op it does not know is a reason.
std::optional<std::string> WhyBatchNotSplittable(const Graph& graph, int64_t rows, const SliceShapeOf& shape_of);

}  // namespace ppml::engine
