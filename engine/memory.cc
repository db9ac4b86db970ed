#include "engine/memory.h"

namespace ppml::engine {

Result<Reservation> Reservation::Make(MemoryBudget* budget, size_t bytes, std::string_view what) {
  Reservation r;
  if (!budget || bytes == 0) return r;
  PPML_RETURN_IF_ERROR(budget->Reserve(bytes, what));
  r.budget_ = budget;
  r.bytes_ = bytes;
  return r;
}

Reservation ReserveOrThrow(MemoryBudget* budget, size_t bytes, std::string_view what) {
  Result<Reservation> r = Reservation::Make(budget, bytes, what);
  if (!r.ok()) throw StatusError(r.status());
  return std::move(r).value();
}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Reset();
    budget_ = other.budget_;
    bytes_ = other.bytes_;
    other.budget_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

void Reservation::Reset() {
  if (budget_) budget_->Release(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

namespace {

std::shared_ptr<Tensor> HoldWith(Tensor* tensor, Reservation reservation) {
  auto held = std::make_shared<Reservation>(std::move(reservation));
  return std::shared_ptr<Tensor>(tensor, [held](Tensor* t) {
    delete t;
    held->Reset();
  });
}

}  // namespace

std::shared_ptr<Tensor> NewAccountedTensor(MemoryBudget* budget, DataType dtype, const Shape& shape,
                                           std::string_view what) {
  const size_t bytes = static_cast<size_t>(ElementCount(shape)) * ElementSize(dtype);
  Reservation r = ReserveOrThrow(budget, bytes, what);
  return HoldWith(new Tensor(dtype, shape), std::move(r));
}

std::shared_ptr<Tensor> Accounted(MemoryBudget* budget, Tensor tensor, std::string_view what) {
  Reservation r = ReserveOrThrow(budget, tensor.byte_size(), what);
  return HoldWith(new Tensor(std::move(tensor)), std::move(r));
}

}  // namespace ppml::engine
