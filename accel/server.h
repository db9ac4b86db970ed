// The ppml-accel server: the untrusted accelerator that computes (X W) mod p
// for enclaves over the protocol of accel/protocol.h.
//
// Pieces:
//   - Backend: where the arithmetic runs. CpuBackend uses FieldLinear (oneDNN
//     INT8 limbs), one cached instance per (layer, batch size). A CUDA (or any
//     other device) backend implements the same interface and is picked in
//     accel/main.cc; nothing else changes.
//   - the layer registry: layers keyed by SpecDigest, so enclaves that
//     register the same layer share one handle and one copy of its weights;
//     capped in count and weight bytes.
//   - Tamperer: for testing the enclave's checks, corrupts a chosen fraction
//     of replies in one of four ways (see TamperKind), reproducibly with a seed.
//   - AccelServer: accepts connections (a thread each) until told to stop.
//
// Logs: one key=value line per event (listen, connection, registration,
// errors, every tamper with its kind and counter); never a payload.
//
// Thread safety: Backend::Compute and Tamperer::MaybeTamper are called from
// every connection thread at once and are safe for it. AccelServer: Start
// and Run from one thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "accel/address.h"
#include "accel/field.h"
#include "accel/protocol.h"
#include "common/metrics.h"
#include "common/status.h"

namespace ppml::accel {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // out = (x W) mod p for batch images; x checked against the spec's sizes
  // by the caller. `digest` is SpecDigest(spec), the cache key.
  virtual Status Compute(const LinearSpec& spec, const std::string& digest, int64_t batch,
                         std::span<const uint32_t> x, std::span<uint32_t> out) = 0;
};

// FieldLinear on this CPU; keeps at most `max_cached` (layer, batch)
// primitives, dropping the oldest first.
std::unique_ptr<Backend> MakeCpuBackend(size_t max_cached = 256);

enum class TamperKind {
  kElement,   // one element changed
  kRow,       // every element of one image's one output channel (a dense layer: the whole image)
  kOffByOne,  // every element + 1
  kReplay,    // the reply to an earlier Compute of the same size (element when there is none)
};
const char* TamperKindName(TamperKind kind);
// "element,row,off-by-one,replay" (any subset, any order); "all" for every kind.
Result<std::vector<TamperKind>> ParseTamperKinds(std::string_view list);

struct TamperOptions {
  double rate = 0;  // fraction of Compute replies corrupted, 0..1
  std::vector<TamperKind> kinds = {TamperKind::kElement, TamperKind::kRow, TamperKind::kOffByOne, TamperKind::kReplay};
  std::optional<uint64_t> seed;  // unset: a random seed
};

class Tamperer {
 public:
  explicit Tamperer(TamperOptions options);
  struct Applied {
    TamperKind kind;
    uint64_t counter;  // 1 for the first reply tampered, 2 for the next...
  };
  // Corrupts `reply` (the honest result for `batch` images of `spec`) with
  // probability `rate`; says what it did. Remembers honest replies for kReplay.
  std::optional<Applied> MaybeTamper(const LinearSpec& spec, int64_t batch, std::vector<uint32_t>& reply);
  uint64_t tampered() const;

 private:
  void ChangeElement(std::vector<uint32_t>& reply);
  uint32_t NonZeroDelta();

  TamperOptions options_;
  mutable std::mutex mu_;
  std::mt19937_64 rng_;
  uint64_t tampered_ = 0;
  std::unordered_map<size_t, std::vector<uint32_t>> last_reply_by_size_;
};

struct ServerOptions {
  AccelAddress listen;
  uint32_t max_payload = kDefaultMaxPayload;
  size_t max_layers = 4096;
  int64_t max_weight_bytes = int64_t{1} << 30;
  int idle_poll_ms = 200;        // how often an idle connection looks at the stop flag
  int frame_timeout_ms = 30000;  // a frame that has started must arrive within this
  TamperOptions tamper;
};

class AccelServer {
 public:
  // Binds the listening socket (port 0: the kernel picks; see address()).
  static Result<std::unique_ptr<AccelServer>> Start(ServerOptions options, std::unique_ptr<Backend> backend,
                                                    metrics::Registry& registry);
  ~AccelServer();
  AccelServer(const AccelServer&) = delete;
  AccelServer& operator=(const AccelServer&) = delete;

  // The address actually bound ("unix:/path" or "host:port").
  const AccelAddress& address() const { return options_.listen; }
  // Accepts and serves until `stop` is set; then waits for the connections
  // to finish the request in hand and returns.
  Status Run(const std::atomic<bool>& stop);

 private:
  struct Layer;
  struct Metrics;
  AccelServer(ServerOptions options, std::unique_ptr<Backend> backend, metrics::Registry& registry);
  void Serve(int fd, uint64_t connection_id, const std::atomic<bool>& stop);
  // Answers one request frame; false when the connection must close.
  bool Handle(int fd, const Frame& request, uint64_t connection_id);
  Result<std::shared_ptr<const Layer>> Register(std::span<const uint8_t> payload);
  Result<std::vector<uint32_t>> Compute(std::span<const uint8_t> payload, std::string* layer_digest);

  ServerOptions options_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Metrics> metrics_;
  Tamperer tamperer_;
  ScopedFd listener_;

  std::mutex layers_mu_;
  std::unordered_map<std::string, std::shared_ptr<const Layer>> layers_by_digest_;
  std::unordered_map<uint64_t, std::shared_ptr<const Layer>> layers_by_handle_;
  uint64_t next_handle_ = 1;
  int64_t weight_bytes_ = 0;
};

}  // namespace ppml::accel
