// Accounting of the engine's allocations against an optional MemoryBudget
// (engine.h), and the one exception the engine uses internally.
// Internal to engine/.
#pragma once

#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/tensor.h"
#include "engine/engine.h"

namespace ppml::engine {

// Carries a Status through code that hands out plain pointers (a constant
// fetched from the WeightStore on first access). Thrown only inside engine/;
// Model::Load*, Plan building and Run turn it back into the Status.
class StatusError : public std::exception {
 public:
  explicit StatusError(Status status) : status_(std::move(status)), what_(status_.ToString()) {}
  const Status& status() const { return status_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  Status status_;
  std::string what_;
};

// Reservation::Make, throwing StatusError when the budget refuses.
Reservation ReserveOrThrow(MemoryBudget* budget, size_t bytes, std::string_view what);

// A tensor of `dtype` and `shape` whose bytes stay reserved in `budget` for
// as long as any holder keeps it. Throws StatusError when the budget refuses.
std::shared_ptr<Tensor> NewAccountedTensor(MemoryBudget* budget, DataType dtype, const Shape& shape,
                                           std::string_view what);
// Takes ownership of an existing tensor and accounts its bytes.
std::shared_ptr<Tensor> Accounted(MemoryBudget* budget, Tensor tensor, std::string_view what);

}  // namespace ppml::engine
