#include "enclave_sim/weight_store.h"

#include "enclave_sim/package.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>

namespace ppml::enclave {
namespace {

constexpr size_t kAlign = 64;
size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }


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

Result<std::unique_ptr<OnDemandWeights>> OnDemandWeights::Create(EpcBudget* budget, ChunkReader reader,
                                                                 Options options) {
  PPML_ASSIGN_OR_RETURN(crypto::Bytes key, crypto::RandomBytes(32));
  crypto::SecretBytes secret(key.size());
  std::copy(key.begin(), key.end(), secret.data());
  OPENSSL_cleanse(key.data(), key.size());
  return std::unique_ptr<OnDemandWeights>(
      new OnDemandWeights(budget, std::move(reader), options, std::move(secret)));
}

OnDemandWeights::OnDemandWeights(EpcBudget* budget, ChunkReader reader, Options options, crypto::SecretBytes key)
    : budget_(budget), reader_(std::move(reader)), options_(options), key_(std::move(key)) {
  if (options_.prefetch) prefetcher_ = std::thread([this] { PrefetchLoop(); });
}

OnDemandWeights::~OnDemandWeights() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (prefetcher_.joinable()) prefetcher_.join();
  if (pool_bytes_) budget_->Release(pool_bytes_);
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

Status OnDemandWeights::Open(uint64_t handle, std::span<uint8_t> out) const {
  for (size_t i = 0; i < SegmentCount(out.size()); ++i) PPML_RETURN_IF_ERROR(OpenSegment(handle, i, out));
  return Status::Ok();
}

Status OnDemandWeights::Get(uint64_t handle, std::span<std::byte> out) { return Open(handle, AsU8(out)); }

Status OnDemandWeights::EnsurePool(std::span<const uint64_t> order) {
  size_t largest = 0, pair = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    if (order[i] >= outside_.size()) return Status::Internal("unknown weight handle " + std::to_string(order[i]));
    const size_t bytes = AlignUp(outside_[order[i]].plain_bytes);
    largest = std::max(largest, bytes);
    if (i + 1 < order.size()) pair = std::max(pair, bytes + AlignUp(outside_[order[i + 1]].plain_bytes));
  }
  const size_t wanted = std::max(largest, options_.pool_bytes ? options_.pool_bytes : std::max(pair, largest));
  if (wanted <= pool_bytes_) return Status::Ok();
  // Grows only when a new plan needs more (another batch size); the old pool is released first.
  if (pool_bytes_) budget_->Release(pool_bytes_);
  pool_.reset();
  pool_bytes_ = 0;
  PPML_RETURN_IF_ERROR(budget_->Reserve(wanted, "the on-demand weight pool"));
  void* p = std::aligned_alloc(kAlign, wanted);
  if (!p) {
    budget_->Release(wanted);
    return Status::ResourceExhausted("cannot allocate the weight pool of " + MiB(wanted));
  }
  pool_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  pool_bytes_ = wanted;
  return Status::Ok();
}

bool OnDemandWeights::FindSpace(size_t bytes, size_t* offset) const {
  bytes = AlignUp(bytes);
  if (slots_.empty()) {
    *offset = 0;
    return bytes <= pool_bytes_;
  }
  const size_t head = slots_.front().offset;
  const size_t tail = slots_.back().offset + AlignUp(slots_.back().bytes);
  if (tail > head) {
    if (tail + bytes <= pool_bytes_) {
      *offset = tail;
      return true;
    }
    if (bytes <= head) {  // wrap around
      *offset = 0;
      return true;
    }
    return false;
  }
  if (tail + bytes <= head) {
    *offset = tail;
    return true;
  }
  return false;
}

Status OnDemandWeights::BeginRun(std::span<const uint64_t> order) {
  PPML_RETURN_IF_ERROR(EnsurePool(order));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    order_.assign(order.begin(), order.end());
    next_to_open_ = 0;
    slots_.clear();
    acquired_ = 0;
    running_ = true;
  }
  changed_.notify_all();
  return Status::Ok();
}

bool OnDemandWeights::OpenNextSlot() {
  if (!running_ || next_to_open_ >= order_.size()) return false;
  const uint64_t handle = order_[next_to_open_];
  const size_t bytes = outside_[handle].plain_bytes;
  size_t offset = 0;
  if (!FindSpace(bytes, &offset)) return false;
  Slot slot;
  slot.position = next_to_open_++;
  slot.handle = handle;
  slot.offset = offset;
  slot.bytes = bytes;
  slot.segments = SegmentCount(bytes);
  slots_.push_back(std::move(slot));
  return true;
}

bool OnDemandWeights::ClaimSegment(size_t first, size_t last, Claim* claim) {
  for (size_t i = first; i < std::min(last, slots_.size()); ++i) {
    Slot& slot = slots_[i];
    if (slot.claimed == slot.segments) continue;
    *claim = {slot.position, slot.handle, slot.offset, slot.bytes, slot.claimed++};
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
    const Claim& c = claims[i];
    statuses[i] = OpenSegment(c.handle, c.segment, {static_cast<uint8_t*>(pool_.get()) + c.offset, c.bytes});
  }
  lock.lock();
  decrypting_ -= claims.size();
  for (size_t i = 0; i < claims.size(); ++i) {
    // A claimed slot is not ready, so not released: it is still in slots_.
    Slot& slot = slots_[claims[i].position - slots_.front().position];
    if (!statuses[i].ok() && slot.status.ok()) slot.status = std::move(statuses[i]);
    ++slot.done;
  }
  changed_.notify_all();
}

void OnDemandWeights::PrefetchLoop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    Claim claim;
    changed_.wait(lock, [&] {
      if (stopping_) return true;
      if (!running_) return false;
      return ClaimSegment(0, slots_.size(), &claim) || (OpenNextSlot() && ClaimSegment(slots_.size() - 1, slots_.size(), &claim));
    });
    if (stopping_) return;
    Decrypt({&claim, 1}, lock);
  }
}

Result<const std::byte*> OnDemandWeights::Acquire(uint64_t handle) {
  std::unique_lock<std::mutex> lock(mutex_);
  // The engine acquires in the announced order: the oldest slot not yet acquired is this one.
  while (true) {
    if (slots_.size() == acquired_) {
      if (!running_ || next_to_open_ >= order_.size()) {
        return Status::Internal("weights acquired past the announced order (" + outside_[handle].label + ")");
      }
      // Every open slot is in the engine's hands: only its own Release frees room.
      if (!OpenNextSlot()) return Status::Internal("the weight pool is full (" + outside_[handle].label + ")");
      changed_.notify_all();  // the prefetcher may take segments of it too
    }
    const Slot& slot = slots_[acquired_];
    if (slot.handle != handle) {
      return Status::Internal("weights acquired out of the announced order (" + outside_[handle].label + ")");
    }
    if (slot.ready()) {
      if (!slot.status.ok()) return slot.status;
      ++acquired_;
      return reinterpret_cast<const std::byte*>(static_cast<uint8_t*>(pool_.get()) + slot.offset);
    }
    // Not ready: decrypt what nobody has taken of this layer rather than wait.
    std::vector<Claim> claims;
    for (Claim claim; ClaimSegment(acquired_, acquired_ + 1, &claim);) claims.push_back(claim);
    if (!claims.empty()) {
      Decrypt(claims, lock);
    } else {
      changed_.wait(lock);
    }
  }
}

void OnDemandWeights::Release(uint64_t handle) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Released in the order acquired: the oldest slot.
    if (acquired_ > 0 && slots_.front().handle == handle) {
      slots_.pop_front();
      --acquired_;
    }
  }
  changed_.notify_all();
}

void OnDemandWeights::EndRun() {
  std::unique_lock<std::mutex> lock(mutex_);
  running_ = false;
  // A decryption in flight writes into the pool: wait for it before the pool is reused.
  changed_.wait(lock, [&] { return decrypting_ == 0; });
  slots_.clear();
  acquired_ = 0;
  order_.clear();
  next_to_open_ = 0;
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
