// The ppml-accel wire protocol: length-prefixed binary frames over a stream
// socket (Unix or TCP). Every integer is little-endian.
//
//   frame    = magic "PPAC" (4) | type (1) | 3 zero bytes | payload length (u64) | payload
//   Register = spec: 17 x i64 (geometry, see EncodeSpec) | u64 weight count | weights (i8)
//   Registered = u64 handle (the same spec always gets the same handle)
//   Compute  = u64 handle | i64 batch | batch * input_size field elements (u32, < p)
//   Result   = batch * output_size field elements (u32)
//   Error    = u32 StatusCode | message (UTF-8)
//
// A frame whose magic, type or length is wrong is DataLoss; payloads are
// capped (kMaxPayloadBytes) so a peer cannot make the other side allocate
// without bound.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "accel/field.h"
#include "common/status.h"

namespace ppml::accel {

inline constexpr uint64_t kMaxPayloadBytes = uint64_t{1} << 30;
inline constexpr size_t kFrameHeaderBytes = 16;

enum class FrameType : uint8_t { kRegister = 1, kRegistered = 2, kCompute = 3, kResult = 4, kError = 5 };

struct Frame {
  FrameType type = FrameType::kError;
  std::vector<uint8_t> payload;
};

// Header + payload, ready to write.
std::vector<uint8_t> EncodeFrame(FrameType type, std::span<const uint8_t> payload);
// The payload length a 16-byte header announces, after checking magic, type and cap.
Result<uint64_t> DecodeFrameHeader(std::span<const uint8_t> header, FrameType* type);

std::vector<uint8_t> EncodeSpec(const LinearSpec& spec);
// Parses and validates (ValidateSpec) a Register payload.
Result<LinearSpec> DecodeSpec(std::span<const uint8_t> payload);

std::vector<uint8_t> EncodeCompute(uint64_t handle, int64_t batch, std::span<const uint32_t> x);
struct ComputeRequest {
  uint64_t handle = 0;
  int64_t batch = 0;
  std::vector<uint32_t> x;
};
Result<ComputeRequest> DecodeCompute(std::span<const uint8_t> payload);

std::vector<uint8_t> EncodeElements(std::span<const uint32_t> values);
Result<std::vector<uint32_t>> DecodeElements(std::span<const uint8_t> payload);

std::vector<uint8_t> EncodeError(const Status& status);
Status DecodeError(std::span<const uint8_t> payload);

// Blocking frame I/O on a connected socket; `what` names the peer in errors.
Status WriteFrame(int fd, FrameType type, std::span<const uint8_t> payload, const std::string& what);
Result<Frame> ReadFrame(int fd, const std::string& what);

}  // namespace ppml::accel
