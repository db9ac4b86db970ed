#include "enclave_sim/weight_store.h"

#include "enclave_sim/package.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>

namespace ppml::enclave {
namespace {

size_t SegmentCount(size_t bytes) {
  return std::max<size_t>(1, (bytes + OnDemandWeights::kSegmentBytes - 1) / OnDemandWeights::kSegmentBytes);
}

// Segment `i` of a weight: kSegmentBytes from i * kSegmentBytes, the last one shorter.
template <typename T>
std::span<T> SegmentOf(std::span<T> weight, size_t i) {
  const size_t begin = i * OnDemandWeights::kSegmentBytes;
  return weight.subspan(begin, std::min(weight.size() - begin, OnDemandWeights::kSegmentBytes));
}

crypto::Bytes Aad(uint64_t handle, size_t segment, size_t segments, const std::string& label) {
  crypto::Bytes aad = {'p', 'p', 'm', 'l', '-', 'w', 'e', 'i', 'g', 'h', 't', '-', 'v', '2'};
  for (uint64_t field : {handle, uint64_t{segment}, uint64_t{segments}}) {
    for (int shift = 56; shift >= 0; shift -= 8) aad.push_back(static_cast<uint8_t>(field >> shift));
  }
  aad.insert(aad.end(), label.begin(), label.end());
  return aad;
}

std::span<uint8_t> AsU8(std::span<std::byte> bytes) {
  return {reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()};
}

}  // namespace

Result<std::unique_ptr<OnDemandWeights>> OnDemandWeights::Create(ChunkReader reader, Options options) {
  PPML_ASSIGN_OR_RETURN(crypto::Bytes key, crypto::RandomBytes(32));
  crypto::SecretBytes secret(key.size());
  std::copy(key.begin(), key.end(), secret.data());
  OPENSSL_cleanse(key.data(), key.size());
  return std::unique_ptr<OnDemandWeights>(new OnDemandWeights(std::move(reader), options, std::move(secret)));
}

OnDemandWeights::OnDemandWeights(ChunkReader reader, Options options, crypto::SecretBytes key)
    : reader_(std::move(reader)), options_(options), key_(std::move(key)) {
  if (options_.prefetch) prefetcher_ = std::thread([this] { PrefetchLoop(); });
}

OnDemandWeights::~OnDemandWeights() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (prefetcher_.joinable()) prefetcher_.join();
}

Status OnDemandWeights::ReadExternal(const std::string& location, std::span<std::byte> out) {
  size_t index = 0;
  const char* first = location.data() + std::min(location.size(), kChunkLocationPrefix.size());
  const char* last = location.data() + location.size();
  if (!location.starts_with(kChunkLocationPrefix) || std::from_chars(first, last, index).ptr != last || first == last) {
    return Status::InvalidArgument("external data location '" + location + "' is not 'chunk:<index>'");
  }
  return reader_(index, AsU8(out));
}

Result<uint64_t> OnDemandWeights::Put(const std::string& label, std::span<const std::byte> bytes) {
  const uint64_t handle = outside_.size();
  Sealed sealed;
  sealed.label = label;
  sealed.plain_bytes = bytes.size();
  const size_t segments = SegmentCount(bytes.size());
  for (size_t i = 0; i < segments; ++i) {
    Segment segment;
    segment.nonce = crypto::CounterNonce(0, next_nonce_++);  // never repeats under this session key
    const std::span<const std::byte> plain = SegmentOf(bytes, i);
    PPML_ASSIGN_OR_RETURN(segment.ciphertext,
                          crypto::AesGcmSeal({key_.data(), key_.size()}, segment.nonce,
                                             Aad(handle, i, segments, label),
                                             {reinterpret_cast<const uint8_t*>(plain.data()), plain.size()}));
    outside_bytes_ += segment.ciphertext.size();
    sealed.segments.push_back(std::move(segment));
  }
  outside_.push_back(std::move(sealed));
  return handle;
}

Status OnDemandWeights::OpenSegment(uint64_t handle, size_t segment, std::span<uint8_t> weight) const {
  if (handle >= outside_.size()) return Status::Internal("unknown weight handle " + std::to_string(handle));
  const Sealed& s = outside_[handle];
  if (weight.size() != s.plain_bytes) return Status::Internal("weight buffer size mismatch for " + s.label);
  // The count comes from the size the engine expects, not from host memory.
  const size_t segments = SegmentCount(weight.size());
  const bool opened = segment < segments && segment < s.segments.size() &&
                      crypto::AesGcmOpenInto({key_.data(), key_.size()}, s.segments[segment].nonce,
                                             Aad(handle, segment, segments, s.label), s.segments[segment].ciphertext,
                                             SegmentOf(weight, segment))
                          .ok();
  if (!opened) {
    return Status::DataLoss("weights of " + s.label +
                            " failed the integrity check: the copy outside the enclave was altered");
  }
  return Status::Ok();
}

Status OnDemandWeights::Get(uint64_t handle, std::span<std::byte> out) {
  for (size_t i = 0; i < SegmentCount(out.size()); ++i) PPML_RETURN_IF_ERROR(OpenSegment(handle, i, AsU8(out)));
  return Status::Ok();
}

Status OnDemandWeights::BeginRun(std::span<const Slot> order) {
  std::vector<Pending> run;
  run.reserve(order.size());
  for (const Slot& slot : order) {
    if (slot.handle >= outside_.size()) return Status::Internal("unknown weight handle " + std::to_string(slot.handle));
    const Sealed& sealed = outside_[slot.handle];
    if (slot.bytes.size() != sealed.plain_bytes) {
      return Status::Internal("the slot for the weights of " + sealed.label + " has " +
                              std::to_string(slot.bytes.size()) + " bytes, they have " +
                              std::to_string(sealed.plain_bytes));
    }
    Pending pending;
    pending.handle = slot.handle;
    pending.slot = AsU8(slot.bytes);
    pending.segments = SegmentCount(slot.bytes.size());
    run.push_back(std::move(pending));
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    run_ = std::move(run);
    acquired_ = 0;
    running_ = true;
  }
  changed_.notify_all();
  return Status::Ok();
}

bool OnDemandWeights::ClaimSegment(size_t last, Claim* claim) {
  for (size_t i = acquired_; running_ && i < std::min(last, run_.size()); ++i) {
    Pending& p = run_[i];
    if (p.claimed == p.segments) continue;
    *claim = {i, p.claimed++};
    return true;
  }
  return false;
}

void OnDemandWeights::Decrypt(std::span<const Claim> claims, std::unique_lock<std::mutex>& lock) {
  decrypting_ += claims.size();
  lock.unlock();
  std::vector<Status> statuses(claims.size());
  // On the engine's OpenMP threads: the one that waits for the next parallel
  // region would otherwise spin on the core a helper thread needs.
#pragma omp parallel for schedule(dynamic, 1) if (claims.size() > 1)
  for (size_t i = 0; i < claims.size(); ++i) {
    const Pending& p = run_[claims[i].position];  // run_ is not resized while segments are in flight
    statuses[i] = OpenSegment(p.handle, claims[i].segment, p.slot);
  }
  lock.lock();
  decrypting_ -= claims.size();
  for (size_t i = 0; i < claims.size(); ++i) {
    Pending& p = run_[claims[i].position];
    if (!statuses[i].ok() && p.status.ok()) p.status = std::move(statuses[i]);
    ++p.done;
  }
  changed_.notify_all();
}

void OnDemandWeights::PrefetchLoop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    Claim claim;
    // A slot may be filled once the weight `lookahead` places before it is in
    // use: the plan keeps its bytes free from then on.
    changed_.wait(lock, [&] { return stopping_ || ClaimSegment(acquired_ + lookahead(), &claim); });
    if (stopping_) return;
    Decrypt({&claim, 1}, lock);
  }
}

Status OnDemandWeights::Acquire(uint64_t handle) {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto misuse = [&](const std::string& what) {
    const std::string label = handle < outside_.size() ? outside_[handle].label : std::to_string(handle);
    return Status::Internal("weights acquired " + what + " the announced order (" + label + ")");
  };
  if (!running_ || acquired_ >= run_.size()) return misuse("past");
  const size_t position = acquired_;
  if (run_[position].handle != handle) return misuse("out of");
  // Decrypt what nobody has taken of this layer rather than wait for the prefetcher.
  std::vector<Claim> claims;
  for (Claim claim; ClaimSegment(position + 1, &claim);) claims.push_back(claim);
  if (!claims.empty()) Decrypt(claims, lock);
  changed_.wait(lock, [&] { return run_[position].ready(); });
  ++acquired_;
  changed_.notify_all();
  return run_[position].status;
}

void OnDemandWeights::EndRun() {
  std::unique_lock<std::mutex> lock(mutex_);
  running_ = false;
  // A decryption in flight writes into a slot: wait for it before the arena is reused.
  changed_.wait(lock, [&] { return decrypting_ == 0; });
  run_.clear();
  acquired_ = 0;
}

void OnDemandWeights::CorruptForTesting(uint64_t handle, size_t segment) {
  if (handle < outside_.size() && segment < outside_[handle].segments.size() &&
      !outside_[handle].segments[segment].ciphertext.empty()) {
    outside_[handle].segments[segment].ciphertext[0] ^= 1;
  }
}

void OnDemandWeights::SwapSegmentsForTesting(uint64_t handle, size_t a, size_t b) {
  if (handle < outside_.size() && a < outside_[handle].segments.size() && b < outside_[handle].segments.size()) {
    std::swap(outside_[handle].segments[a], outside_[handle].segments[b]);
  }
}

}  // namespace ppml::enclave
