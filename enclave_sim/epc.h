// The simulated enclave page cache (EPC): a byte budget for everything the
// enclave allocates (decrypted weights, activations, scratch, request and
// reply buffers). SGX gives an enclave about 93 MiB of usable EPC; past it
// the real thing pages (slowly) — here an allocation past the budget fails
// with a clear error instead, so a configuration that would page is caught.
//
// Thread safety: Reserve/Release/report are safe from several threads (the
// engine's thread and the weight prefetcher).
#pragma once

#include <cstddef>
#include <mutex>
#include <string_view>

#include "common/status.h"
#include "engine/engine.h"

namespace ppml::enclave {

inline constexpr size_t kDefaultEpcBudgetBytes = size_t{93} << 20;

struct EpcReport {
  size_t budget_bytes = 0;
  size_t in_use_bytes = 0;
  size_t peak_bytes = 0;
};

class EpcBudget final : public engine::MemoryBudget {
 public:
  explicit EpcBudget(size_t budget_bytes) : budget_(budget_bytes) {}
  // ResourceExhausted naming `what`, its size, the bytes in use and the budget.
  Status Reserve(size_t bytes, std::string_view what) override;
  void Release(size_t bytes) override;
  EpcReport report() const;
  // Starts a new peak measurement from the bytes in use now.
  void ResetPeak();

 private:
  mutable std::mutex mutex_;
  size_t budget_;
  size_t in_use_ = 0;
  size_t peak_ = 0;
};

// "12.3 MiB"
std::string MiB(size_t bytes);

}  // namespace ppml::enclave
