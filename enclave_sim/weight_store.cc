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


crypto::Bytes Aad(uint64_t handle, const std::string& label) {
  crypto::Bytes aad = {'p', 'p', 'm', 'l', '-', 'w', 'e', 'i', 'g', 'h', 't', '-', 'v', '1'};
  for (int shift = 56; shift >= 0; shift -= 8) aad.push_back(static_cast<uint8_t>(handle >> shift));
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
  sealed.nonce.assign(crypto::kAesGcmNonceLength, 0);
  const uint64_t counter = next_nonce_++;  // never repeats under this session key
  for (int i = 0; i < 8; ++i) sealed.nonce[crypto::kAesGcmNonceLength - 1 - i] = static_cast<uint8_t>(counter >> (8 * i));
  PPML_ASSIGN_OR_RETURN(sealed.ciphertext,
                        crypto::AesGcmSeal({key_.data(), key_.size()}, sealed.nonce, Aad(handle, label),
                                           {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}));
  sealed.plain_bytes = bytes.size();
  outside_bytes_ += sealed.ciphertext.size();
  outside_.push_back(std::move(sealed));
  return handle;
}

Status OnDemandWeights::Open(uint64_t handle, std::span<uint8_t> out) const {
  if (handle >= outside_.size()) return Status::Internal("unknown weight handle " + std::to_string(handle));
  const Sealed& s = outside_[handle];
  if (out.size() != s.plain_bytes) return Status::Internal("weight buffer size mismatch for " + s.label);
  const Status opened = crypto::AesGcmOpenInto({key_.data(), key_.size()}, s.nonce, Aad(handle, s.label),
                                               s.ciphertext, out);
  if (!opened.ok()) {
    return Status::DataLoss("weights of " + s.label +
                            " failed the integrity check: the copy outside the enclave was altered");
  }
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
    next_to_fetch_ = 0;
    slots_.clear();
    acquired_ = 0;
    running_ = true;
  }
  changed_.notify_all();
  return Status::Ok();
}

void OnDemandWeights::PrefetchLoop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    size_t offset = 0;
    changed_.wait(lock, [&] {
      return stopping_ || (running_ && next_to_fetch_ < order_.size() &&
                           FindSpace(outside_[order_[next_to_fetch_]].plain_bytes, &offset));
    });
    if (stopping_) return;
    const uint64_t handle = order_[next_to_fetch_++];
    const size_t bytes = outside_[handle].plain_bytes;
    slots_.push_back({handle, offset, bytes, false, Status::Ok()});
    fetching_ = true;
    lock.unlock();
    // Decryption runs outside the lock, overlapping the layer being computed.
    Status status = Open(handle, {static_cast<uint8_t*>(pool_.get()) + offset, bytes});
    lock.lock();
    fetching_ = false;
    // EndRun may have cleared the slots meanwhile; then the result is dropped.
    for (Slot& slot : slots_) {
      if (slot.handle == handle && slot.offset == offset && !slot.ready) {
        slot.ready = true;
        slot.status = std::move(status);
        break;
      }
    }
    changed_.notify_all();
  }
}

Result<const std::byte*> OnDemandWeights::Acquire(uint64_t handle) {
  if (!options_.prefetch) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (handle >= outside_.size()) return Status::Internal("unknown weight handle " + std::to_string(handle));
    size_t offset = 0;
    const size_t bytes = outside_[handle].plain_bytes;
    if (!FindSpace(bytes, &offset)) return Status::Internal("the weight pool is full");
    PPML_RETURN_IF_ERROR(Open(handle, {static_cast<uint8_t*>(pool_.get()) + offset, bytes}));
    slots_.push_back({handle, offset, bytes, true, Status::Ok()});
    ++acquired_;
    return reinterpret_cast<const std::byte*>(static_cast<uint8_t*>(pool_.get()) + offset);
  }
  std::unique_lock<std::mutex> lock(mutex_);
  // The engine acquires in the announced order: the oldest slot not yet acquired is this one.
  changed_.wait(lock, [&] { return slots_.size() > acquired_ && slots_[acquired_].ready; });
  const Slot& slot = slots_[acquired_];
  if (slot.handle != handle) {
    return Status::Internal("weights acquired out of the announced order (" + outside_[handle].label + ")");
  }
  if (!slot.status.ok()) return slot.status;
  ++acquired_;
  return reinterpret_cast<const std::byte*>(static_cast<uint8_t*>(pool_.get()) + slot.offset);
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
  changed_.wait(lock, [&] { return !fetching_; });
  slots_.clear();
  acquired_ = 0;
  order_.clear();
}

void OnDemandWeights::CorruptForTesting(uint64_t handle) {
  if (handle < outside_.size() && !outside_[handle].ciphertext.empty()) outside_[handle].ciphertext[0] ^= 1;
}

}  // namespace ppml::enclave
