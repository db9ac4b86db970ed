// On-demand weights (Occlumency): the model's weights stay encrypted outside
// the enclave and are decrypted into enclave memory just before their layer
// runs, the next ones prefetched on a helper thread where a core is free.
//
//   package chunk ──(model key, at load)──▶ engine: fold, reorder to the
//   kernels' layout ──Put──▶ re-sealed under a per-enclave session key,
//   kept in host (untrusted) memory ──(per run)──▶ slot ──▶ layer
//
// The slots are the pool: fixed places in the plan's arena, which the engine
// lays out once per batch size beside the activations (engine::WeightStore),
// so that a late layer's large weights reuse the room of early layers' large
// activations. Slot i is live from layer i - lookahead to layer i, so the
// slots of consecutive layers form a ring over the arena's free room:
//
//   arena   | activations of layer i | slot i (in use) | slot i+1 (filling) |
//
// A stored weight is sealed in segments (kSegmentBytes each) so that threads
// can decrypt one layer together: the prefetcher works one layer ahead, and
// the engine thread, when it reaches a layer that is not ready, decrypts the
// segments of that layer nobody has taken yet on its OpenMP team instead of
// waiting. On a machine whose cores all run the kernels, that halves the time
// a layer waits for its weights; where a core is free, the prefetcher hides it.
//
// The session key is drawn inside the enclave at start and never leaves it;
// each segment has its own nonce (a counter) and is bound by the AAD to its
// handle, its index, the segment count and the label, so the host can
// neither read, alter, swap, drop nor replay one: a failed check is DataLoss
// naming the layer, and that run fails.
//
// Thread safety: one engine thread calls the WeightStore methods (as the
// engine does); the prefetcher is internal.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/crypto.h"
#include "common/status.h"
#include "engine/engine.h"

namespace ppml::enclave {

class OnDemandWeights final : public engine::WeightStore {
 public:
  // Decrypts and verifies package chunk `index` (the model owner's
  // encryption) into `out`, which has the size the graph expects.
  using ChunkReader = std::function<Status(size_t index, std::span<uint8_t> out)>;
  struct Options {
    // A helper thread decrypts the next layer's weights while one runs;
    // false: each layer's when the engine acquires it.
    bool prefetch = true;
  };

  static Result<std::unique_ptr<OnDemandWeights>> Create(ChunkReader reader, Options options);
  ~OnDemandWeights() override;

  // "chunk:<index>" locations of the package's graph.
  Status ReadExternal(const std::string& location, std::span<std::byte> out) override;
  Result<uint64_t> Put(const std::string& label, std::span<const std::byte> bytes) override;
  Status Get(uint64_t handle, std::span<std::byte> out) override;
  int lookahead() const override { return options_.prefetch ? 1 : 0; }
  Status BeginRun(std::span<const Slot> order) override;
  Status Acquire(uint64_t handle) override;
  void EndRun() override;

  bool prefetch() const { return options_.prefetch; }
  size_t outside_bytes() const { return outside_bytes_; }
  // The host altering untrusted memory: flips one bit of segment `segment` of a stored weight (tests).
  void CorruptForTesting(uint64_t handle, size_t segment = 0);
  // The host swapping two segments of a stored weight (tests).
  void SwapSegmentsForTesting(uint64_t handle, size_t a, size_t b);

  // Small enough that the engine's two threads share even a 1 MiB layer,
  // large enough that a segment's own cost (nonce, tag, AAD) stays under 1%.
  static constexpr size_t kSegmentBytes = size_t{256} << 10;

 private:
  struct Segment {
    crypto::Bytes nonce;
    crypto::Bytes ciphertext;  // in host memory: outside the EPC budget
  };
  struct Sealed {
    std::string label;
    std::vector<Segment> segments;
    size_t plain_bytes = 0;
  };
  // A weight of the run being decrypted into its slot, segment by segment.
  struct Pending {
    uint64_t handle = 0;
    std::span<uint8_t> slot;
    size_t claimed = 0, done = 0, segments = 0;
    Status status;
    bool ready() const { return done == segments; }
  };
  // One segment claimed by a thread, to decrypt outside the lock.
  struct Claim {
    size_t position = 0;  // in the run's order
    size_t segment = 0;
  };

  OnDemandWeights(ChunkReader reader, Options options, crypto::SecretBytes key);
  Status OpenSegment(uint64_t handle, size_t segment, std::span<uint8_t> weight) const;
  // Under mutex_: claims a segment nobody has taken of the run's weights [acquired_, last).
  bool ClaimSegment(size_t last, Claim* claim);
  // Decrypts claimed segments, several at once on the OpenMP threads (mutex_
  // held on entry and exit, released meanwhile).
  void Decrypt(std::span<const Claim> claims, std::unique_lock<std::mutex>& lock);
  void PrefetchLoop();

  ChunkReader reader_;
  Options options_;
  crypto::SecretBytes key_;
  uint64_t next_nonce_ = 0;
  std::deque<Sealed> outside_;
  size_t outside_bytes_ = 0;

  // Run state, shared with the prefetcher under mutex_.
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Pending> run_;  // the weights in the order the engine acquires them
  size_t acquired_ = 0;       // of run_, handed to the engine
  size_t decrypting_ = 0;     // segments being decrypted outside the lock
  bool running_ = false, stopping_ = false;
  std::thread prefetcher_;
};

}  // namespace ppml::enclave
