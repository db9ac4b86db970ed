// The untrusted accelerator (ppml-accel): holds the field-encoded weights of
// the layers enclaves register, and computes (X W) mod p for whatever batch
// they send (blinded or not: it cannot tell). The backend is FieldLinear on
// the CPU (oneDNN INT8 limbs); one per layer and batch size, shared by every
// connection.
//
// Fault injection for tests and the tamper benchmark: with tamper_rate > 0 a
// fraction of replies is corrupted in one of four ways, each a wrong result
// a Freivalds check must catch:
//   element     one element changed
//   row         one output channel of one image changed everywhere (a dense
//               layer: the whole image)
//   off-by-one  every element + 1
//   replay      the reply to an earlier request of the same size
//
// Thread safety: Serve runs one thread per connection; the layer table and
// the tamper state are guarded.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace ppml::accel {

enum class TamperKind { kElement, kRow, kOffByOne, kReplay };
// "element,row,off-by-one,replay" (any subset); InvalidArgument naming a bad one.
Result<std::vector<TamperKind>> ParseTamperKinds(const std::string& list);

struct ServerOptions {
  std::string listen;  // unix:PATH, tcp:HOST:PORT or HOST:PORT
  double tamper_rate = 0;
  std::vector<TamperKind> tamper_kinds = {TamperKind::kElement, TamperKind::kRow, TamperKind::kOffByOne,
                                          TamperKind::kReplay};
  uint64_t tamper_seed = 0;  // 0: random
};

struct ServerCounters {
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> layers{0};
  std::atomic<int64_t> computes{0};
  std::atomic<int64_t> tampered{0};
};

class AccelServer {
 public:
  // Binds the listening socket (a stale Unix socket file is replaced).
  static Result<std::unique_ptr<AccelServer>> Listen(const ServerOptions& options);
  ~AccelServer();
  // The address it listens on (with the real port for HOST:0).
  const std::string& address() const;
  // Accepts and serves until `stop` is set; returns once every connection ended.
  Status Serve(const std::atomic<bool>& stop);
  const ServerCounters& counters() const;

 private:
  struct Impl;
  explicit AccelServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ppml::accel
