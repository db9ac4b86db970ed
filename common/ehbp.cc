#include "common/ehbp.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <utility>

namespace ppml::ehbp {
namespace {

ByteSpan Span(std::string_view text) {
  return ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

Status CheckChunkSize(size_t chunk_size) {
  if (chunk_size == 0 || chunk_size > kMaxFrameLength - hpke::kTagLength) {
    return Status::InvalidArgument("EHBP chunk size " + std::to_string(chunk_size) + " is outside 1.." +
                                   std::to_string(kMaxFrameLength - hpke::kTagLength));
  }
  return Status::Ok();
}

void AppendFrame(Bytes& body, const Bytes& ciphertext) {
  const auto len = static_cast<uint32_t>(ciphertext.size());
  body.push_back(static_cast<uint8_t>(len >> 24));
  body.push_back(static_cast<uint8_t>(len >> 16));
  body.push_back(static_cast<uint8_t>(len >> 8));
  body.push_back(static_cast<uint8_t>(len));
  body.insert(body.end(), ciphertext.begin(), ciphertext.end());
}

// Splits `plaintext` into chunks of at most `chunk_size` and appends each
// sealed chunk as a frame. An empty plaintext gives one empty chunk when
// `seal_empty` is set, no frame otherwise.
Status SealFrames(ByteSpan plaintext, size_t chunk_size, bool seal_empty,
                  const std::function<Result<Bytes>(ByteSpan chunk)>& seal, Bytes& body) {
  if (plaintext.empty() && !seal_empty) return Status::Ok();
  const size_t frames = plaintext.empty() ? 1 : (plaintext.size() + chunk_size - 1) / chunk_size;
  body.reserve(plaintext.size() + frames * (kLengthPrefixLength + hpke::kTagLength));
  size_t offset = 0;
  do {
    const size_t n = std::min(chunk_size, plaintext.size() - offset);
    PPML_ASSIGN_OR_RETURN(Bytes ciphertext, seal(plaintext.subspan(offset, n)));
    AppendFrame(body, ciphertext);
    offset += n;
  } while (offset < plaintext.size());
  return Status::Ok();
}

// One non-empty frame of a body.
struct Frame {
  size_t index;          // frame index, LEN = 0 frames counted (for messages)
  size_t offset;         // byte offset of its length prefix (for messages)
  ByteSpan ciphertext;   // LEN bytes: ct || tag
};

std::string FrameWhere(std::string_view what, size_t index, size_t offset) {
  return std::string(what) + " frame " + std::to_string(index) + " at byte " + std::to_string(offset);
}

// The one parser of EHBP framing. From the frame whose length prefix starts
// at `offset` (frame index `index`), skips LEN = 0 frames and returns the next
// non-empty one, or nullopt at the end of the body; `offset` and `index` move
// past it. Errors: InvalidArgument for a bad LEN, DataLoss for a body ending
// inside a prefix or a frame.
Result<std::optional<Frame>> NextFrame(ByteSpan body, std::string_view what, size_t& offset, size_t& index) {
  while (offset < body.size()) {
    const size_t start = offset;
    if (body.size() - offset < kLengthPrefixLength) {
      return Status::DataLoss(FrameWhere(what, index, start) + ": truncated length prefix (" +
                              std::to_string(body.size() - offset) + " of 4 bytes)");
    }
    const uint32_t len = (uint32_t{body[offset]} << 24) | (uint32_t{body[offset + 1]} << 16) |
                         (uint32_t{body[offset + 2]} << 8) | uint32_t{body[offset + 3]};
    if (len == 0) {
      offset += kLengthPrefixLength;
      ++index;
      continue;
    }
    if (len < hpke::kTagLength || len > kMaxFrameLength) {
      return Status::InvalidArgument(FrameWhere(what, index, start) + ": bad length prefix " + std::to_string(len) +
                                     " (must be 0 or " + std::to_string(hpke::kTagLength) + ".." +
                                     std::to_string(kMaxFrameLength) + ")");
    }
    if (body.size() - offset - kLengthPrefixLength < len) {
      return Status::DataLoss(FrameWhere(what, index, start) + ": truncated chunk (" +
                              std::to_string(body.size() - offset - kLengthPrefixLength) + " of " +
                              std::to_string(len) + " ciphertext bytes)");
    }
    Frame frame{index, start, body.subspan(offset + kLengthPrefixLength, len)};
    offset += kLengthPrefixLength + len;
    ++index;
    return std::optional<Frame>(frame);
  }
  return std::optional<Frame>();
}

// Walks the frames of `body`; `open` gets each non-empty frame's ciphertext
// with its number among the non-empty frames (0, 1, ...) and the byte offset
// of its prefix. Returns the number of non-empty frames.
Result<size_t> OpenFrames(ByteSpan body, std::string_view what,
                          const std::function<Status(size_t opened, size_t offset, ByteSpan ct)>& open) {
  size_t offset = 0;
  size_t index = 0;
  size_t opened = 0;
  for (;;) {
    PPML_ASSIGN_OR_RETURN(std::optional<Frame> frame, NextFrame(body, what, offset, index));
    if (!frame) return opened;
    Status status = open(opened, frame->offset, frame->ciphertext);
    if (!status.ok()) return status.WithContext(FrameWhere(what, frame->index, frame->offset));
    ++opened;
  }
}

void Wipe(Bytes& bytes) {
  if (!bytes.empty()) OPENSSL_cleanse(bytes.data(), bytes.size());
  bytes.clear();
}

constexpr std::string_view kRequestWhat = "EHBP request";

Result<Bytes> DecodeHexHeader(std::string_view name, std::string_view value, size_t length) {
  if (value.size() != 2 * length) {
    return Status::InvalidArgument(std::string(name) + ": expected " + std::to_string(2 * length) +
                                   " hex characters, got " + std::to_string(value.size()));
  }
  auto bytes = crypto::FromHex(value);
  if (!bytes.ok()) return bytes.status().WithContext(std::string(name));
  return std::move(bytes).value();
}

// nonce XOR seq, seq big-endian in the last 8 bytes (identity/derive.go).
Bytes ChunkNonce(const Bytes& base, uint64_t seq) {
  Bytes nonce = base;
  for (size_t i = 0; i < 8; ++i) nonce[nonce.size() - 1 - i] ^= static_cast<uint8_t>(seq >> (8 * i));
  return nonce;
}

constexpr std::string_view kFailedAuth =
    "failed to authenticate (tampered, reordered or dropped frame, or wrong key)";

}  // namespace

Result<EncryptedRequest> EncryptRequest(ByteSpan recipient_public_key, ByteSpan plaintext, size_t chunk_size,
                                        ByteSpan fixed_ephemeral_private_key) {
  PPML_RETURN_IF_ERROR(CheckChunkSize(chunk_size));
  PPML_ASSIGN_OR_RETURN(hpke::SenderSetup setup,
                        hpke::SetupBaseS(recipient_public_key, Span(kRequestInfo), kAead, fixed_ephemeral_private_key));
  Bytes body;
  PPML_RETURN_IF_ERROR(SealFrames(plaintext, chunk_size, /*seal_empty=*/true,
                                  [&](ByteSpan chunk) { return setup.context.Seal({}, chunk); }, body));
  std::string header = crypto::ToHex(setup.enc);
  return EncryptedRequest{std::move(header), std::move(body),
                          ClientState{std::move(setup.enc), std::move(setup.context)}};
}

RequestReader::RequestReader(ServerState state, ByteSpan body, size_t plaintext_size, size_t max_frame_plaintext)
    : state_(std::move(state)), body_(body), plaintext_size_(plaintext_size), remaining_(plaintext_size),
      max_frame_plaintext_(max_frame_plaintext) {}

RequestReader::RequestReader(RequestReader&& other) noexcept
    : state_(std::move(other.state_)), body_(other.body_), next_offset_(other.next_offset_),
      next_index_(other.next_index_), plaintext_size_(other.plaintext_size_), remaining_(other.remaining_),
      max_frame_plaintext_(other.max_frame_plaintext_), buffer_(std::move(other.buffer_)),
      buffer_pos_(other.buffer_pos_), error_(std::move(other.error_)) {
  other.buffer_.clear();  // empty after a move already; stated, since it held plaintext
  other.buffer_pos_ = 0;
}

RequestReader& RequestReader::operator=(RequestReader&& other) noexcept {
  if (this == &other) return *this;
  WipeBuffer();
  state_ = std::move(other.state_);
  body_ = other.body_;
  next_offset_ = other.next_offset_;
  next_index_ = other.next_index_;
  plaintext_size_ = other.plaintext_size_;
  remaining_ = other.remaining_;
  max_frame_plaintext_ = other.max_frame_plaintext_;
  buffer_ = std::move(other.buffer_);
  buffer_pos_ = other.buffer_pos_;
  error_ = std::move(other.error_);
  other.buffer_.clear();
  other.buffer_pos_ = 0;
  return *this;
}

RequestReader::~RequestReader() { WipeBuffer(); }

void RequestReader::WipeBuffer() {
  Wipe(buffer_);
  buffer_pos_ = 0;
}

Status RequestReader::Fail(Status status) {
  WipeBuffer();
  error_ = status;
  return status;
}

Result<RequestReader> RequestReader::Open(std::string_view encapsulated_key_header_value, ByteSpan body,
                                          const crypto::X25519PrivateKey& recipient_private_key) {
  PPML_ASSIGN_OR_RETURN(Bytes enc,
                        DecodeHexHeader(kEncapsulatedKeyHeader, encapsulated_key_header_value, hpke::kEncLength));
  auto context = hpke::SetupBaseR(enc, recipient_private_key, Span(kRequestInfo), kAead);
  if (!context.ok()) return context.status().WithContext(std::string(kEncapsulatedKeyHeader));
  // The whole framing first: a bad prefix anywhere fails here, before any frame is opened.
  size_t frames = 0;
  size_t plaintext_size = 0;
  size_t max_frame_plaintext = 0;
  for (size_t offset = 0, index = 0;;) {
    PPML_ASSIGN_OR_RETURN(std::optional<Frame> frame, NextFrame(body, kRequestWhat, offset, index));
    if (!frame) break;
    const size_t n = frame->ciphertext.size() - hpke::kTagLength;
    ++frames;
    plaintext_size += n;
    max_frame_plaintext = std::max(max_frame_plaintext, n);
  }
  if (frames == 0) {
    return Status::DataLoss(std::string(kRequestWhat) + ": body has no non-empty frame, so " +
                            std::string(kEncapsulatedKeyHeader) + " is unauthenticated");
  }
  RequestReader reader(ServerState{std::move(enc), std::move(context).value()}, body, plaintext_size,
                       max_frame_plaintext);
  // The first frame authenticates enc; its plaintext stays buffered for Read.
  PPML_ASSIGN_OR_RETURN(bool opened, reader.OpenNextFrame());
  if (!opened) return Status::Internal(std::string(kRequestWhat) + ": first frame vanished");
  return reader;
}

Result<bool> RequestReader::OpenNextFrame() {
  PPML_ASSIGN_OR_RETURN(std::optional<Frame> frame, NextFrame(body_, kRequestWhat, next_offset_, next_index_));
  if (!frame) return false;
  auto chunk = state_.context.Open({}, frame->ciphertext);
  if (!chunk.ok()) {
    return Status::DataLoss(std::string(kFailedAuth)).WithContext(FrameWhere(kRequestWhat, frame->index,
                                                                             frame->offset));
  }
  WipeBuffer();
  buffer_ = std::move(chunk).value();
  return true;
}

Status RequestReader::Read(std::span<uint8_t> out) {
  if (!error_.ok()) return error_;
  if (out.size() > remaining_) {
    return Fail(Status::InvalidArgument(std::string(kRequestWhat) + ": read of " + std::to_string(out.size()) +
                                        " bytes past the end of the plaintext (" + std::to_string(remaining_) +
                                        " of " + std::to_string(plaintext_size_) + " bytes remain)"));
  }
  size_t done = 0;
  while (done < out.size()) {
    if (buffer_pos_ == buffer_.size()) {
      Result<bool> opened = OpenNextFrame();
      if (!opened.ok()) return Fail(opened.status());
      if (!*opened) {
        return Fail(Status::Internal(std::string(kRequestWhat) + ": frames ended with " +
                                     std::to_string(remaining_) + " plaintext bytes to go"));
      }
      continue;
    }
    const size_t n = std::min(out.size() - done, buffer_.size() - buffer_pos_);
    std::memcpy(out.data() + done, buffer_.data() + buffer_pos_, n);
    buffer_pos_ += n;
    done += n;
    remaining_ -= n;
  }
  if (buffer_pos_ == buffer_.size()) WipeBuffer();  // consumed
  return Status::Ok();
}

Status RequestReader::Finish() {
  if (!error_.ok()) return error_;
  if (remaining_ != 0) {
    return Fail(Status::FailedPrecondition(std::string(kRequestWhat) + ": Finish with " +
                                           std::to_string(remaining_) + " of " + std::to_string(plaintext_size_) +
                                           " plaintext bytes not read"));
  }
  for (;;) {
    Result<bool> opened = OpenNextFrame();
    if (!opened.ok()) return Fail(opened.status());
    if (!*opened) break;
    if (!buffer_.empty()) {
      return Fail(Status::Internal(std::string(kRequestWhat) + ": a frame with plaintext after the end"));
    }
  }
  WipeBuffer();
  return Status::Ok();
}

Result<DecryptedRequest> DecryptRequest(std::string_view encapsulated_key_header_value, ByteSpan body,
                                        const crypto::X25519PrivateKey& recipient_private_key) {
  PPML_ASSIGN_OR_RETURN(RequestReader reader,
                        RequestReader::Open(encapsulated_key_header_value, body, recipient_private_key));
  Bytes plaintext(reader.plaintext_size());
  Status status = reader.Read(plaintext);
  if (status.ok()) status = reader.Finish();
  if (!status.ok()) {
    Wipe(plaintext);
    return status;
  }
  return DecryptedRequest{std::move(plaintext), std::move(reader.state())};
}

Result<DecryptedRequest> DecryptRequest(std::string_view encapsulated_key_header_value, ByteSpan body,
                                        ByteSpan recipient_private_key) {
  PPML_ASSIGN_OR_RETURN(crypto::X25519PrivateKey key, crypto::X25519PrivateKey::FromRaw(recipient_private_key));
  return DecryptRequest(encapsulated_key_header_value, body, key);
}

Result<EncryptedResponse> EncryptResponse(ServerState& state, ByteSpan plaintext, size_t chunk_size,
                                          ByteSpan fixed_response_nonce) {
  PPML_RETURN_IF_ERROR(CheckChunkSize(chunk_size));
  Bytes response_nonce;
  if (fixed_response_nonce.empty()) {
    PPML_ASSIGN_OR_RETURN(response_nonce, crypto::RandomBytes(kResponseNonceLength));
  } else if (fixed_response_nonce.size() != kResponseNonceLength) {
    return Status::InvalidArgument("EHBP fixed response nonce must be 32 bytes, got " +
                                   std::to_string(fixed_response_nonce.size()));
  } else {
    response_nonce.assign(fixed_response_nonce.begin(), fixed_response_nonce.end());
  }
  PPML_ASSIGN_OR_RETURN(hpke::ResponseKeys keys,
                        hpke::DeriveResponseKeys(state.context, state.enc, response_nonce, kResponseExportLabel));
  uint64_t seq = 0;
  Bytes body;
  PPML_RETURN_IF_ERROR(SealFrames(plaintext, chunk_size, /*seal_empty=*/false,
                                  [&](ByteSpan chunk) {
                                    return crypto::AesGcmSeal(keys.key.span(), ChunkNonce(keys.nonce, seq++), {},
                                                              chunk);
                                  },
                                  body));
  return EncryptedResponse{crypto::ToHex(response_nonce), std::move(body)};
}

Result<Bytes> DecryptResponse(ClientState& state, std::string_view response_nonce_header_value, ByteSpan body) {
  PPML_ASSIGN_OR_RETURN(Bytes response_nonce,
                        DecodeHexHeader(kResponseNonceHeader, response_nonce_header_value, kResponseNonceLength));
  PPML_ASSIGN_OR_RETURN(hpke::ResponseKeys keys,
                        hpke::DeriveResponseKeys(state.context, state.enc, response_nonce, kResponseExportLabel));
  Bytes plaintext;
  plaintext.reserve(body.size());
  PPML_ASSIGN_OR_RETURN(
      size_t frames, OpenFrames(body, "EHBP response", [&](size_t opened, size_t, ByteSpan ct) -> Status {
        auto chunk = crypto::AesGcmOpen(keys.key.span(), ChunkNonce(keys.nonce, opened), {}, ct);
        if (!chunk.ok()) return Status::DataLoss(std::string(kFailedAuth));
        plaintext.insert(plaintext.end(), chunk->begin(), chunk->end());
        return Status::Ok();
      }));
  (void)frames;
  return plaintext;
}

}  // namespace ppml::ehbp
