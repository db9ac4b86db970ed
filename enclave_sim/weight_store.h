// On-demand weights (Occlumency): the model's weights stay encrypted outside
// the enclave and are decrypted into a fixed pool of enclave memory just
// before their layer runs, the next ones prefetched on a helper thread.
//
//   package chunk ──(model key, at load)──▶ engine: fold, reorder to the
//   kernels' layout ──Put──▶ re-sealed under a per-enclave session key,
//   kept in host (untrusted) memory ──(per run)──▶ pool ring ──▶ layer
//
//   pool (one allocation, reserved in the EPC budget once):
//   +------------+------------+--------------+----------
//   | layer i    | layer i+1  | layer i+2 .. | (wraps to the start)
//   | (in use)   | (prefetched)              |
//   +------------+------------+--------------+----------
//
// A stored weight is sealed in segments (kSegmentBytes each) so that two
// threads can decrypt one layer: the prefetcher works ahead, and the engine
// thread, when it reaches a layer that is not ready, decrypts the segments of
// that layer nobody has taken yet instead of waiting. On a machine whose
// cores all run the kernels, that halves the time a layer waits for its
// weights; where a core is free, the prefetcher hides it.
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
#include "enclave_sim/epc.h"
#include "engine/engine.h"

namespace ppml::enclave {

class OnDemandWeights final : public engine::WeightStore {
 public:
  // Decrypts and verifies package chunk `index` (the model owner's
  // encryption) into `out`, which has the size the graph expects.
  using ChunkReader = std::function<Status(size_t index, std::span<uint8_t> out)>;
  struct Options {
    // Pool size; 0 sizes it for the two largest consecutive layers (one in
    // use, the next prefetched).
    size_t pool_bytes = 0;
    bool prefetch = true;  // false: decrypt synchronously in Acquire
  };

  static Result<std::unique_ptr<OnDemandWeights>> Create(EpcBudget* budget, ChunkReader reader, Options options);
  ~OnDemandWeights() override;

  // "chunk:<index>" locations of the package's graph.
  Status ReadExternal(const std::string& location, std::span<std::byte> out) override;
  Result<uint64_t> Put(const std::string& label, std::span<const std::byte> bytes) override;
  Status Get(uint64_t handle, std::span<std::byte> out) override;
  Status BeginRun(std::span<const uint64_t> order) override;
  Result<const std::byte*> Acquire(uint64_t handle) override;
  void Release(uint64_t handle) override;
  void EndRun() override;

  size_t pool_bytes() const { return pool_bytes_; }
  bool prefetch() const { return options_.prefetch; }
  size_t outside_bytes() const { return outside_bytes_; }
  // The host altering untrusted memory: flips one bit of segment `segment` of a stored weight (tests).
  void CorruptForTesting(uint64_t handle, size_t segment = 0);
  // The host swapping two segments of a stored weight (tests).
  void SwapSegmentsForTesting(uint64_t handle, size_t a, size_t b);

  static constexpr size_t kSegmentBytes = size_t{1} << 20;

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
  // A stored weight being decrypted into the pool, segment by segment.
  struct Slot {
    size_t position = 0;  // in the run's order
    uint64_t handle = 0;
    size_t offset = 0, bytes = 0;
    size_t claimed = 0, done = 0, segments = 0;
    Status status;
    bool ready() const { return done == segments; }
  };
  // One segment claimed by a thread, to decrypt outside the lock.
  struct Claim {
    size_t position = 0;
    uint64_t handle = 0;
    size_t offset = 0, bytes = 0, segment = 0;
  };

  OnDemandWeights(EpcBudget* budget, ChunkReader reader, Options options, crypto::SecretBytes key);
  Status OpenSegment(uint64_t handle, size_t segment, std::span<uint8_t> weight) const;
  Status Open(uint64_t handle, std::span<uint8_t> out) const;
  Status EnsurePool(std::span<const uint64_t> order);
  // Where the next slot of `bytes` fits in the ring, or false while it does not.
  bool FindSpace(size_t bytes, size_t* offset) const;
  // Under mutex_: opens the slot of the next weight in the run's order when the pool has room.
  bool OpenNextSlot();
  // Under mutex_: claims a segment nobody has taken from slots [first, last) of slots_.
  bool ClaimSegment(size_t first, size_t last, Claim* claim);
  // Decrypts claimed segments, several at once on the OpenMP threads (mutex_
  // held on entry and exit, released meanwhile).
  void Decrypt(std::span<const Claim> claims, std::unique_lock<std::mutex>& lock);
  void PrefetchLoop();

  EpcBudget* budget_;
  ChunkReader reader_;
  Options options_;
  crypto::SecretBytes key_;
  uint64_t next_nonce_ = 0;
  std::deque<Sealed> outside_;
  size_t outside_bytes_ = 0;

  std::shared_ptr<void> pool_;
  size_t pool_bytes_ = 0;

  // Run state, shared with the prefetcher under mutex_.
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<uint64_t> order_;
  size_t next_to_open_ = 0; // position in order_ of the next slot to open
  std::deque<Slot> slots_;  // opened and not yet released, oldest first
  size_t acquired_ = 0;     // the oldest slots, handed to the engine and not yet released
  size_t decrypting_ = 0;   // segments being decrypted outside the lock
  bool running_ = false, stopping_ = false;
  std::thread prefetcher_;
};

}  // namespace ppml::enclave
