#include "enclave_sim/epc.h"

#include <algorithm>
#include <cstdio>

namespace ppml::enclave {

std::string MiB(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

Status EpcBudget::Reserve(size_t bytes, std::string_view what) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (bytes > budget_ - std::min(in_use_, budget_)) {
    return Status::ResourceExhausted("enclave memory budget exceeded: " + std::string(what) + " needs " + MiB(bytes) +
                                     ", " + MiB(in_use_) + " of the " + MiB(budget_) +
                                     " budget are in use (raise enclave.memory_budget_mib or use on-demand weights)");
  }
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
  return Status::Ok();
}

void EpcBudget::Release(size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  in_use_ -= std::min(bytes, in_use_);
}

EpcReport EpcBudget::report() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {budget_, in_use_, peak_};
}

void EpcBudget::ResetPeak() {
  std::lock_guard<std::mutex> lock(mutex_);
  peak_ = in_use_;
}

}  // namespace ppml::enclave
