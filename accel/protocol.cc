#include "accel/protocol.h"

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>

namespace ppml::accel {

// Field elements travel as their in-memory bytes.
static_assert(std::endian::native == std::endian::little, "the protocol's integers are little-endian");

namespace {

constexpr uint8_t kMagic0 = 'P', kMagic1 = 'A', kFrameVersion = 1;

// Vectors are sized once and filled (no growth: GCC 12 warns falsely on
// growing small byte vectors at -O3).
void StoreLe(uint8_t* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t GetLe(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

std::array<uint8_t, kFrameHeaderSize> HeaderBytes(MessageType type, uint32_t length) {
  return {kMagic0,
          kMagic1,
          kFrameVersion,
          static_cast<uint8_t>(type),
          static_cast<uint8_t>(length >> 24),
          static_cast<uint8_t>(length >> 16),
          static_cast<uint8_t>(length >> 8),
          static_cast<uint8_t>(length)};
}

int PollTimeoutMs(net::Deadline deadline) {
  if (deadline == net::Deadline::max()) return -1;
  const auto left = deadline - std::chrono::steady_clock::now();
  if (left <= std::chrono::steady_clock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

Status WaitFor(int fd, short events, net::Deadline deadline, const char* what) {
  for (;;) {
    const int timeout = PollTimeoutMs(deadline);
    if (timeout == 0) return Status::DeadlineExceeded(std::string("accel connection: ") + what + " timed out");
    pollfd entry{fd, events, 0};
    const int n = ::poll(&entry, 1, timeout);
    if (n > 0) return Status::Ok();
    if (n < 0 && errno != EINTR) return Status::Unavailable(std::string("accel connection: poll: ") + std::strerror(errno));
  }
}

Status WriteAll(int fd, std::span<const uint8_t> data, net::Deadline deadline) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      PPML_RETURN_IF_ERROR(WaitFor(fd, POLLOUT, deadline, "write"));
    } else if (n < 0 && errno != EINTR) {
      return Status::Unavailable(std::string("accel connection: write: ") + std::strerror(errno));
    }
  }
  return Status::Ok();
}

// Reads exactly out.size() bytes; `at_boundary` makes a clean close before
// the first byte read "closed" rather than "closed mid-frame".
Status ReadExact(int fd, std::span<uint8_t> out, net::Deadline deadline, bool at_boundary) {
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::recv(fd, out.data() + got, out.size() - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n == 0) {
      return Status::Unavailable(at_boundary && got == 0 ? "accel connection: closed by the peer"
                                                         : "accel connection: closed by the peer mid-frame");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      PPML_RETURN_IF_ERROR(WaitFor(fd, POLLIN, deadline, "read"));
    } else if (errno != EINTR) {
      return Status::Unavailable(std::string("accel connection: read: ") + std::strerror(errno));
    }
  }
  return Status::Ok();
}

}  // namespace

const char* MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kHello: return "hello";
    case MessageType::kRegisterLayer: return "register_layer";
    case MessageType::kLayerRegistered: return "layer_registered";
    case MessageType::kCompute: return "compute";
    case MessageType::kComputeResult: return "compute_result";
    case MessageType::kError: return "error";
  }
  return "unknown";
}

std::vector<uint8_t> EncodeFrame(MessageType type, std::span<const uint8_t> payload) {
  const auto header = HeaderBytes(type, static_cast<uint32_t>(payload.size()));
  std::vector<uint8_t> out(header.size() + payload.size());
  std::memcpy(out.data(), header.data(), header.size());
  if (!payload.empty()) std::memcpy(out.data() + header.size(), payload.data(), payload.size());
  return out;
}

Result<FrameHeader> ParseFrameHeader(std::span<const uint8_t, kFrameHeaderSize> h, uint32_t max_payload) {
  if (h[0] != kMagic0 || h[1] != kMagic1) return Status::InvalidArgument("accel frame: bad magic (not a ppml-accel peer)");
  if (h[2] != kFrameVersion) {
    return Status::InvalidArgument("accel frame: version " + std::to_string(h[2]) + ", this side speaks " +
                                   std::to_string(kFrameVersion));
  }
  if (h[3] < static_cast<uint8_t>(MessageType::kHello) || h[3] > static_cast<uint8_t>(MessageType::kError)) {
    return Status::InvalidArgument("accel frame: unknown message type " + std::to_string(h[3]));
  }
  const uint32_t length = (uint32_t{h[4]} << 24) | (uint32_t{h[5]} << 16) | (uint32_t{h[6]} << 8) | h[7];
  if (length > max_payload) {
    return Status::InvalidArgument("accel frame: payload of " + std::to_string(length) + " bytes exceeds the cap of " +
                                   std::to_string(max_payload));
  }
  return FrameHeader{static_cast<MessageType>(h[3]), length};
}

std::vector<uint8_t> EncodeHello(uint32_t version) {
  std::vector<uint8_t> out(4);
  StoreLe(out.data(), version, 4);
  return out;
}

Result<uint32_t> ParseHello(std::span<const uint8_t> payload) {
  if (payload.size() != 4) return Status::InvalidArgument("accel hello: payload must be 4 bytes");
  return static_cast<uint32_t>(GetLe(payload.data(), 4));
}

std::vector<uint8_t> EncodeHandle(uint64_t handle) {
  std::vector<uint8_t> out(8);
  StoreLe(out.data(), handle, 8);
  return out;
}

Result<uint64_t> ParseHandle(std::span<const uint8_t> payload) {
  if (payload.size() != 8) return Status::InvalidArgument("accel layer_registered: payload must be 8 bytes");
  return GetLe(payload.data(), 8);
}

std::vector<uint8_t> EncodeCompute(uint64_t handle, int64_t batch, std::span<const uint32_t> x) {
  std::vector<uint8_t> out(12 + x.size_bytes());
  StoreLe(out.data(), handle, 8);
  StoreLe(out.data() + 8, static_cast<uint64_t>(batch), 4);
  if (!x.empty()) std::memcpy(out.data() + 12, x.data(), x.size_bytes());
  return out;
}

Result<ComputeRequest> ParseCompute(std::span<const uint8_t> payload) {
  if (payload.size() < 12 || (payload.size() - 12) % 4 != 0) {
    return Status::InvalidArgument("accel compute: payload of " + std::to_string(payload.size()) +
                                   " bytes is not a handle, a batch and whole elements");
  }
  ComputeRequest request;
  request.handle = GetLe(payload.data(), 8);
  request.batch = static_cast<int64_t>(GetLe(payload.data() + 8, 4));
  if (request.batch < 1 || request.batch > kMaxComputeBatch) {
    return Status::InvalidArgument("accel compute: batch " + std::to_string(request.batch) + " is outside [1, " +
                                   std::to_string(kMaxComputeBatch) + "]");
  }
  request.x.resize((payload.size() - 12) / 4);
  std::memcpy(request.x.data(), payload.data() + 12, payload.size() - 12);
  return request;
}

std::vector<uint8_t> EncodeElements(std::span<const uint32_t> elements) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(elements.data());
  return std::vector<uint8_t>(bytes, bytes + elements.size_bytes());
}

Result<std::vector<uint32_t>> ParseElements(std::span<const uint8_t> payload, size_t expected) {
  if (payload.size() != expected * 4) {
    return Status::DataLoss("accel compute_result: " + std::to_string(payload.size()) + " bytes, expected " +
                            std::to_string(expected) + " elements");
  }
  std::vector<uint32_t> out(expected);
  std::memcpy(out.data(), payload.data(), payload.size());
  if (!AllFieldElements(out)) return Status::DataLoss("accel compute_result: an element is outside the field");
  return out;
}

std::vector<uint8_t> EncodeError(const Status& status) {
  const std::string& m = status.message();
  const size_t length = std::min(m.size(), kMaxErrorMessage);
  std::vector<uint8_t> out(4 + length);
  StoreLe(out.data(), static_cast<uint32_t>(status.code()), 4);
  if (length > 0) std::memcpy(out.data() + 4, m.data(), length);
  return out;
}

Status ParseError(std::span<const uint8_t> payload) {
  if (payload.size() < 4 || payload.size() > 4 + kMaxErrorMessage) {
    return Status::InvalidArgument("accel error: malformed error payload");
  }
  const uint32_t code = static_cast<uint32_t>(GetLe(payload.data(), 4));
  std::string message(payload.begin() + 4, payload.end());
  if (code == 0 || code > static_cast<uint32_t>(StatusCode::kInternal)) {
    return Status::Internal("ppml-accel: " + message + " (code " + std::to_string(code) + ")");
  }
  return Status(static_cast<StatusCode>(code), "ppml-accel: " + message);
}

Status WriteFrame(int fd, MessageType type, std::span<const uint8_t> payload, net::Deadline deadline) {
  if (payload.size() > UINT32_MAX) return Status::InvalidArgument("accel frame: payload too large");
  // A small frame goes out in one send (one TCP segment); a large payload
  // is sent from where it is rather than copied behind its header.
  if (payload.size() <= 64 * 1024) return WriteAll(fd, EncodeFrame(type, payload), deadline);
  PPML_RETURN_IF_ERROR(WriteAll(fd, HeaderBytes(type, static_cast<uint32_t>(payload.size())), deadline));
  return WriteAll(fd, payload, deadline);
}

Result<Frame> ReadFrame(int fd, uint32_t max_payload, net::Deadline deadline) {
  std::array<uint8_t, kFrameHeaderSize> header;
  PPML_RETURN_IF_ERROR(ReadExact(fd, header, deadline, /*at_boundary=*/true));
  PPML_ASSIGN_OR_RETURN(FrameHeader parsed, ParseFrameHeader(header, max_payload));
  Frame frame;
  frame.type = parsed.type;
  frame.payload.resize(parsed.payload_length);
  PPML_RETURN_IF_ERROR(ReadExact(fd, frame.payload, deadline, /*at_boundary=*/false));
  return frame;
}

}  // namespace ppml::accel
