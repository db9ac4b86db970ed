#include "common/ehbp.h"

#include <algorithm>
#include <functional>
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

// Walks the frames of `body`; `open` gets each non-empty frame's ciphertext
// with its frame index and byte offset. Returns the number of non-empty frames.
Result<size_t> OpenFrames(ByteSpan body, std::string_view what,
                          const std::function<Status(size_t index, size_t offset, ByteSpan ct)>& open) {
  size_t offset = 0;
  size_t index = 0;
  size_t opened = 0;
  while (offset < body.size()) {
    const std::string where = std::string(what) + " frame " + std::to_string(index) + " at byte " +
                              std::to_string(offset);
    if (body.size() - offset < kLengthPrefixLength) {
      return Status::DataLoss(where + ": truncated length prefix (" + std::to_string(body.size() - offset) +
                              " of 4 bytes)");
    }
    const uint32_t len = (uint32_t{body[offset]} << 24) | (uint32_t{body[offset + 1]} << 16) |
                         (uint32_t{body[offset + 2]} << 8) | uint32_t{body[offset + 3]};
    offset += kLengthPrefixLength;
    if (len != 0) {
      if (len < hpke::kTagLength || len > kMaxFrameLength) {
        return Status::InvalidArgument(where + ": bad length prefix " + std::to_string(len) +
                                       " (must be 0 or " + std::to_string(hpke::kTagLength) + ".." +
                                       std::to_string(kMaxFrameLength) + ")");
      }
      if (body.size() - offset < len) {
        return Status::DataLoss(where + ": truncated chunk (" + std::to_string(body.size() - offset) + " of " +
                                std::to_string(len) + " ciphertext bytes)");
      }
      Status status = open(opened, offset - kLengthPrefixLength, body.subspan(offset, len));
      if (!status.ok()) return status.WithContext(where);
      offset += len;
      ++opened;
    }
    ++index;
  }
  return opened;
}

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

Result<DecryptedRequest> DecryptRequest(std::string_view encapsulated_key_header_value, ByteSpan body,
                                        const crypto::X25519PrivateKey& recipient_private_key) {
  PPML_ASSIGN_OR_RETURN(Bytes enc,
                        DecodeHexHeader(kEncapsulatedKeyHeader, encapsulated_key_header_value, hpke::kEncLength));
  auto context = hpke::SetupBaseR(enc, recipient_private_key, Span(kRequestInfo), kAead);
  if (!context.ok()) return context.status().WithContext(std::string(kEncapsulatedKeyHeader));
  hpke::ReceiverContext& ctx = context.value();
  Bytes plaintext;
  plaintext.reserve(body.size());
  PPML_ASSIGN_OR_RETURN(
      size_t frames, OpenFrames(body, "EHBP request", [&](size_t, size_t, ByteSpan ct) -> Status {
        auto chunk = ctx.Open({}, ct);
        if (!chunk.ok()) return Status::DataLoss(std::string(kFailedAuth));
        plaintext.insert(plaintext.end(), chunk->begin(), chunk->end());
        return Status::Ok();
      }));
  if (frames == 0) {
    return Status::DataLoss("EHBP request: body has no non-empty frame, so " + std::string(kEncapsulatedKeyHeader) +
                            " is unauthenticated");
  }
  return DecryptedRequest{std::move(plaintext), ServerState{std::move(enc), std::move(context).value()}};
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
      size_t frames, OpenFrames(body, "EHBP response", [&](size_t index, size_t, ByteSpan ct) -> Status {
        auto chunk = crypto::AesGcmOpen(keys.key.span(), ChunkNonce(keys.nonce, index), {}, ct);
        if (!chunk.ok()) return Status::DataLoss(std::string(kFailedAuth));
        plaintext.insert(plaintext.end(), chunk->begin(), chunk->end());
        return Status::Ok();
      }));
  (void)frames;
  return plaintext;
}

}  // namespace ppml::ehbp
