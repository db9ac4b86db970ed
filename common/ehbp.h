// EHBP: the Encrypted HTTP Body Protocol framing that encrypted inference
// requests and replies use (DESIGN.md, "Request life", step 2).
//
// Source: tinfoilsh/encrypted-http-body-protocol, SPEC.md §4 (headers, body
// framing, response keys), §5.5 and §6.2.1 (empty frames, sequence numbers),
// and identity/derive.go (labels, response nonce XOR). Read from the stored
// copy of that repository; not checked against a running EHBP peer.
//
// Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM (SPEC §3.2).
//
// Request (client -> server)
//   enc, ctx = SetupBaseS(pkR, info = "ehbp request")
//   header  Ehbp-Encapsulated-Key: lowercase hex of enc, 64 chars, no prefix
//   body    zero or more frames, end of body = end of the HTTP entity:
//
//     0        4                       4 + LEN
//     +--------+-----------------------+--------+--------------- ...
//     |  LEN   | ctx.Seal(aad = "",    |  LEN   | next frame ...
//     | u32 BE |   chunk_i) = ct||tag  | u32 BE |
//     +--------+-----------------------+--------+--------------- ...
//
//   LEN counts ciphertext bytes only (chunk plaintext + 16-byte tag). The
//   HPKE context's own sequence number (0, 1, 2, ...) nonces the frames, so
//   a reordered or dropped frame fails to authenticate. A frame with LEN = 0
//   MAY appear; receivers skip it and the sequence number does not advance.
//   There is no terminator frame: EHBP cannot detect a body cut exactly at a
//   frame boundary (the application must check completeness, SPEC §6.2.1).
//
// Response (server -> client)
//   response_nonce = random 32 bytes (max(Nn, Nk))
//   header  Ehbp-Response-Nonce: lowercase hex of response_nonce, 64 chars
//   secret  = ctx.Export("ehbp response", 32)     (RFC 9458 §4.4, EHBP label)
//   prk     = HKDF-Extract(salt = enc || response_nonce, secret)
//   key     = HKDF-Expand(prk, "key", 32);  nonce = HKDF-Expand(prk, "nonce", 12)
//   body    the same frames; frame i = AES-256-GCM(key,
//             nonce XOR (i as big-endian u64 in the last 8 bytes), aad = "")
//
// Choices of ours (EHBP leaves them to the implementation):
//   - Plaintext chunk size: 64 KiB by default. Receiver maximum LEN:
//     kMaxFrameLength (16 MiB); a larger prefix is rejected before copying.
//   - An empty request plaintext is sent as one frame sealing "" (LEN = 16),
//     so the encapsulated key is still authenticated (SPEC §7.4 sends such
//     requests unencrypted instead). DecryptRequest rejects a body with no
//     non-empty frame: an unauthenticated enc must not key a reply.
//   - An empty response plaintext is sent as zero frames (an empty body).
//   - Header values: hex of either case is accepted; no whitespace trimming.
//
// Errors: a malformed header value or a bad length prefix (non-zero but
// shorter than the tag, or over the maximum) is InvalidArgument; a body ending
// inside a prefix or a frame, or a frame that fails to authenticate (tampered,
// reordered, dropped, wrong key), is DataLoss. Messages name the frame index
// and byte offset, never the key material.
//
// Thread safety: free functions are stateless. ClientState, ServerState and
// RequestReader hold an HPKE context whose sequence number advances: one
// thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/crypto.h"
#include "common/hpke.h"
#include "common/status.h"

namespace ppml::ehbp {

using crypto::Bytes;
using crypto::ByteSpan;

inline constexpr std::string_view kEncapsulatedKeyHeader = "Ehbp-Encapsulated-Key";
inline constexpr std::string_view kResponseNonceHeader = "Ehbp-Response-Nonce";
inline constexpr std::string_view kRequestInfo = "ehbp request";          // HPKE info
inline constexpr std::string_view kResponseExportLabel = "ehbp response"; // HPKE export context
inline constexpr hpke::Aead kAead = hpke::Aead::kAes256Gcm;
inline constexpr size_t kLengthPrefixLength = 4;
inline constexpr size_t kResponseNonceLength = 32;
inline constexpr size_t kDefaultChunkSize = 64 * 1024;     // plaintext bytes per frame
inline constexpr size_t kMaxFrameLength = 16 * 1024 * 1024; // largest LEN accepted

// What the client keeps to decrypt the reply.
struct ClientState {
  Bytes enc;
  hpke::SenderContext context;
};

// What the server keeps to encrypt the reply.
struct ServerState {
  Bytes enc;
  hpke::ReceiverContext context;
};

struct EncryptedRequest {
  std::string encapsulated_key_header_value;
  Bytes body;
  ClientState client_state;
};

struct DecryptedRequest {
  Bytes plaintext;
  ServerState server_state;
};

struct EncryptedResponse {
  std::string response_nonce_header_value;
  Bytes body;
};

// `chunk_size` is the plaintext bytes per frame (1 .. kMaxFrameLength - 16).
// `fixed_ephemeral_private_key` is for test vectors only; empty draws a fresh one.
Result<EncryptedRequest> EncryptRequest(ByteSpan recipient_public_key, ByteSpan plaintext,
                                        size_t chunk_size = kDefaultChunkSize,
                                        ByteSpan fixed_ephemeral_private_key = {});

// A server keeps its key loaded (crypto::X25519PrivateKey: loading a raw key
// costs a scalar multiplication); the raw form loads it for one call.
Result<DecryptedRequest> DecryptRequest(std::string_view encapsulated_key_header_value, ByteSpan body,
                                        const crypto::X25519PrivateKey& recipient_private_key);
Result<DecryptedRequest> DecryptRequest(std::string_view encapsulated_key_header_value, ByteSpan body,
                                        ByteSpan recipient_private_key);

// Decrypts a request body a piece at a time. Why: a server that reads the
// JSON of a request first and its large binary tensor data later, straight to
// where it is used, holds one frame of plaintext at a time (at most
// max_frame_plaintext() bytes) instead of the whole decrypted body.
// DecryptRequest is built on it, so there is one decryption path.
//
// Frames are opened in order with the HPKE context's sequence number, so the
// bytes Read hands out are always authenticated; but a later frame may still
// fail to, and EHBP cannot tell a body cut at a frame boundary (see above):
// call Finish, and check that the sizes the JSON declares add up to
// plaintext_size(), before acting on the request.
//
// Buffered plaintext is wiped (OPENSSL_cleanse) when it is consumed and when
// the reader is destroyed or assigned over. Move-only, one thread at a time.
class RequestReader {
 public:
  // Checks the whole framing (every length prefix, as DecryptRequest does,
  // with the same error codes and messages), derives the HPKE context and
  // opens the first non-empty frame, so the encapsulated key is authenticated
  // before anything answers under it. A body with no non-empty frame is
  // DataLoss. `body` is borrowed: it must outlive the reader.
  static Result<RequestReader> Open(std::string_view encapsulated_key_header_value, ByteSpan body,
                                    const crypto::X25519PrivateKey& recipient_private_key);

  RequestReader(RequestReader&& other) noexcept;
  RequestReader& operator=(RequestReader&& other) noexcept;
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;
  ~RequestReader();

  // Of the whole body, from its framing: the sum of LEN - 16 over non-empty frames.
  size_t plaintext_size() const { return plaintext_size_; }
  // Plaintext bytes not yet handed out by Read.
  size_t remaining() const { return remaining_; }
  // The most plaintext one frame holds: what the reader may buffer.
  size_t max_frame_plaintext() const { return max_frame_plaintext_; }

  // Decrypts the next out.size() bytes into `out`, opening frames as needed;
  // a frame's plaintext beyond what was asked stays buffered for the next
  // Read. A zero-length Read opens nothing. Errors:
  //   DataLoss         a frame fails to authenticate (the message names the
  //                    frame index and byte offset, as DecryptRequest's does);
  //   InvalidArgument  fewer than out.size() bytes remain; nothing is
  //                    written then.
  // After a DataLoss, `out` may hold some authenticated bytes of the frames
  // before the failing one. After any error, every later Read and Finish
  // fails with that same error.
  Status Read(std::span<uint8_t> out);

  // Authenticates every frame not yet opened (once remaining() is 0 these
  // can only be frames with empty plaintext, e.g. a trailing frame sealing
  // ""). FailedPrecondition when remaining() != 0; DataLoss as for Read.
  // Errors stick as for Read.
  Status Finish();

  // The reply's keys come from this (for EncryptResponse).
  ServerState& state() { return state_; }

 private:
  RequestReader(ServerState state, ByteSpan body, size_t plaintext_size, size_t max_frame_plaintext);
  // Opens the next non-empty frame into buffer_; false when none is left.
  Result<bool> OpenNextFrame();
  void WipeBuffer();
  Status Fail(Status status);

  ServerState state_;
  ByteSpan body_;
  size_t next_offset_ = 0;  // of the next frame's length prefix in body_
  size_t next_index_ = 0;   // its frame index (LEN = 0 frames count too)
  size_t plaintext_size_ = 0;
  size_t remaining_ = 0;
  size_t max_frame_plaintext_ = 0;
  Bytes buffer_;            // the plaintext of the last frame opened
  size_t buffer_pos_ = 0;   // how much of it Read has handed out
  Status error_;            // the first error; sticks
};

// Draws a fresh response nonce per call. `fixed_response_nonce` (32 bytes) is
// for test vectors only.
Result<EncryptedResponse> EncryptResponse(ServerState& state, ByteSpan plaintext,
                                          size_t chunk_size = kDefaultChunkSize,
                                          ByteSpan fixed_response_nonce = {});

Result<Bytes> DecryptResponse(ClientState& state, std::string_view response_nonce_header_value, ByteSpan body);

}  // namespace ppml::ehbp
