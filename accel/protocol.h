// The enclave <-> ppml-accel wire protocol: length-prefixed binary frames
// over a stream socket (Unix domain or TCP), one request and one reply at a
// time per connection.
//
// Frame:
//
//   +-------+-------+---------+--------+------------------------+---------------+
//   | 'P'   | 'A'   | version | type   | payload length         | payload       |
//   | 1 B   | 1 B   | 1 B = 1 | 1 B    | 4 B unsigned, big-end. | length bytes  |
//   +-------+-------+---------+--------+------------------------+---------------+
//
// Payloads (integers little-endian, as field elements are on both ends):
//
//   kHello            client -> server, server -> client: u32 protocol version
//   kRegisterLayer    client -> server: SerializeSpec(spec) (accel/field.h)
//   kLayerRegistered  server -> client: u64 handle. The server keys layers
//                     by SpecDigest: every enclave registering the same layer
//                     gets the same handle and shares one set of weights.
//   kCompute          client -> server: u64 handle, u32 batch, then
//                     batch * input_size u32 field elements (nchw per image)
//   kComputeResult    server -> client: batch * output_size u32 field elements
//   kError            server -> client: u32 StatusCode, then a UTF-8 message
//                     (at most kMaxErrorMessage bytes)
//
// Validation: a frame with a wrong magic or version, an unknown type or a
// length above the receiver's cap is refused before its payload is read
// (the server answers kError and closes the connection, since it cannot find
// the next frame boundary); a payload whose length does not match its type
// is an InvalidArgument error. Nothing is allocated from a length before the
// cap check.
//
// Thread safety: stateless functions; one thread per fd at a time.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "accel/field.h"
#include "common/net.h"
#include "common/status.h"

namespace ppml::accel {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr size_t kFrameHeaderSize = 8;
// Default cap on one frame's payload: a batch of 64 activations of 1M elements.
inline constexpr uint32_t kDefaultMaxPayload = 256u << 20;
inline constexpr size_t kMaxErrorMessage = 1024;
inline constexpr int64_t kMaxComputeBatch = 4096;

enum class MessageType : uint8_t {
  kHello = 1,
  kRegisterLayer = 2,
  kLayerRegistered = 3,
  kCompute = 4,
  kComputeResult = 5,
  kError = 6,
};
const char* MessageTypeName(MessageType type);

struct Frame {
  MessageType type = MessageType::kError;
  std::vector<uint8_t> payload;
};

// The 8 header bytes and the payload, ready to send.
std::vector<uint8_t> EncodeFrame(MessageType type, std::span<const uint8_t> payload);
// Checks magic, version, type and the length against `max_payload`; returns
// the type and the payload length that follows.
struct FrameHeader {
  MessageType type;
  uint32_t payload_length;
};
Result<FrameHeader> ParseFrameHeader(std::span<const uint8_t, kFrameHeaderSize> header, uint32_t max_payload);

// ---- Payloads --------------------------------------------------------------

std::vector<uint8_t> EncodeHello(uint32_t version);
Result<uint32_t> ParseHello(std::span<const uint8_t> payload);

std::vector<uint8_t> EncodeHandle(uint64_t handle);
Result<uint64_t> ParseHandle(std::span<const uint8_t> payload);

struct ComputeRequest {
  uint64_t handle = 0;
  int64_t batch = 0;
  std::vector<uint32_t> x;
};
std::vector<uint8_t> EncodeCompute(uint64_t handle, int64_t batch, std::span<const uint32_t> x);
// Checks the batch (1..kMaxComputeBatch) and that the payload holds whole
// elements; the element count against the layer is the server's check.
Result<ComputeRequest> ParseCompute(std::span<const uint8_t> payload);

std::vector<uint8_t> EncodeElements(std::span<const uint32_t> elements);
// `expected` elements exactly, each < p (a reply outside the field is DataLoss).
Result<std::vector<uint32_t>> ParseElements(std::span<const uint8_t> payload, size_t expected);

std::vector<uint8_t> EncodeError(const Status& status);
// The Status the peer sent (never OK: an OK code is turned into Internal).
Status ParseError(std::span<const uint8_t> payload);

// ---- Socket I/O ------------------------------------------------------------

// Writes one whole frame to a non-blocking socket before `deadline`
// (MSG_NOSIGNAL: a peer that hung up is Unavailable, not SIGPIPE).
Status WriteFrame(int fd, MessageType type, std::span<const uint8_t> payload, net::Deadline deadline);
// Reads one frame. Unavailable when the peer closed or failed (a clean close
// before the first header byte says "closed"), DeadlineExceeded when the
// deadline passes, InvalidArgument for a bad header (see above).
Result<Frame> ReadFrame(int fd, uint32_t max_payload, net::Deadline deadline);

}  // namespace ppml::accel
