// The enclave's connection to a ppml-accel (protocol.h). Register a layer
// once, then Compute batches on it. Errors are Unavailable (cannot connect,
// connection lost), DeadlineExceeded (no reply within the timeout) or the
// status the accelerator answered with; the caller computes inside then.
//
// Thread safety: one thread at a time per client.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "accel/field.h"
#include "common/listen.h"
#include "common/status.h"

namespace ppml::accel {

class AccelClient {
 public:
  // "unix:PATH", "tcp:HOST:PORT" or "HOST:PORT".
  static Result<std::unique_ptr<AccelClient>> Connect(const std::string& address, int timeout_ms = 30000);
  // The accelerator's handle for this layer (the same for the same spec).
  Result<uint64_t> Register(const LinearSpec& spec);
  // (x W) mod p for a batch of field elements.
  Result<std::vector<uint32_t>> Compute(uint64_t handle, int64_t batch, std::span<const uint32_t> x);

 private:
  AccelClient(ScopedFd fd, std::string address) : fd_(std::move(fd)), address_(std::move(address)) {}
  ScopedFd fd_;
  std::string address_;
};

}  // namespace ppml::accel
