#include "accel/protocol.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ppml::accel {
namespace {

constexpr uint8_t kMagic[4] = {'P', 'P', 'A', 'C'};
constexpr int kSpecFields = 17;

// The hosts this runs on are little-endian x86-64; memcpy keeps it explicit.
template <typename T>
void Put(std::vector<uint8_t>& out, T value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}
  template <typename T>
  Result<T> Get(const char* what) {
    if (data_.size() - at_ < sizeof(T)) return Status::DataLoss(std::string("accel frame: truncated at ") + what);
    T value;
    std::memcpy(&value, data_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return value;
  }
  size_t remaining() const { return data_.size() - at_; }
  const uint8_t* here() const { return data_.data() + at_; }

 private:
  std::span<const uint8_t> data_;
  size_t at_ = 0;
};

int64_t* SpecField(LinearSpec& s, int i) {
  int64_t* fields[kSpecFields] = {&s.in_channels, &s.in_h,       &s.in_w,       &s.out_channels, &s.out_h,
                                  &s.out_w,       &s.kernel_h,   &s.kernel_w,   &s.stride_h,     &s.stride_w,
                                  &s.dilation_h,  &s.dilation_w, &s.pad_top,    &s.pad_left,     &s.pad_bottom,
                                  &s.pad_right,   &s.groups};
  return fields[i];
}

}  // namespace

std::vector<uint8_t> EncodeFrame(FrameType type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out(kMagic, kMagic + 4);
  out.push_back(static_cast<uint8_t>(type));
  out.insert(out.end(), 3, 0);
  Put<uint64_t>(out, payload.size());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Result<uint64_t> DecodeFrameHeader(std::span<const uint8_t> header, FrameType* type) {
  if (header.size() != kFrameHeaderBytes) return Status::DataLoss("accel frame: short header");
  if (std::memcmp(header.data(), kMagic, 4) != 0) return Status::DataLoss("accel frame: bad magic");
  const uint8_t t = header[4];
  if (t < 1 || t > 5) return Status::DataLoss("accel frame: unknown type " + std::to_string(t));
  uint64_t length;
  std::memcpy(&length, header.data() + 8, 8);
  if (length > kMaxPayloadBytes) return Status::DataLoss("accel frame: payload of " + std::to_string(length) + " bytes exceeds the cap");
  *type = static_cast<FrameType>(t);
  return length;
}

std::vector<uint8_t> EncodeSpec(const LinearSpec& spec) {
  LinearSpec copy = spec;
  std::vector<uint8_t> out;
  for (int i = 0; i < kSpecFields; ++i) Put<int64_t>(out, *SpecField(copy, i));
  Put<uint64_t>(out, spec.weights.size());
  const auto* w = reinterpret_cast<const uint8_t*>(spec.weights.data());
  out.insert(out.end(), w, w + spec.weights.size());
  return out;
}

Result<LinearSpec> DecodeSpec(std::span<const uint8_t> payload) {
  Reader r(payload);
  LinearSpec s;
  for (int i = 0; i < kSpecFields; ++i) {
    PPML_ASSIGN_OR_RETURN(*SpecField(s, i), r.Get<int64_t>("a spec field"));
  }
  PPML_ASSIGN_OR_RETURN(uint64_t count, r.Get<uint64_t>("the weight count"));
  if (count != r.remaining()) return Status::DataLoss("accel frame: weight count does not match the payload");
  s.weights.resize(count);
  std::memcpy(s.weights.data(), r.here(), count);
  PPML_RETURN_IF_ERROR(ValidateSpec(s));
  return s;
}

std::vector<uint8_t> EncodeCompute(uint64_t handle, int64_t batch, std::span<const uint32_t> x) {
  std::vector<uint8_t> out;
  out.reserve(16 + x.size_bytes());
  Put<uint64_t>(out, handle);
  Put<int64_t>(out, batch);
  const auto* bytes = reinterpret_cast<const uint8_t*>(x.data());
  out.insert(out.end(), bytes, bytes + x.size_bytes());
  return out;
}

Result<ComputeRequest> DecodeCompute(std::span<const uint8_t> payload) {
  Reader r(payload);
  ComputeRequest c;
  PPML_ASSIGN_OR_RETURN(c.handle, r.Get<uint64_t>("the layer handle"));
  PPML_ASSIGN_OR_RETURN(c.batch, r.Get<int64_t>("the batch"));
  if (c.batch < 1) return Status::InvalidArgument("accel compute: batch must be positive");
  PPML_ASSIGN_OR_RETURN(c.x, DecodeElements(payload.subspan(16)));
  return c;
}

std::vector<uint8_t> EncodeElements(std::span<const uint32_t> values) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(values.data());
  return std::vector<uint8_t>(bytes, bytes + values.size_bytes());
}

Result<std::vector<uint32_t>> DecodeElements(std::span<const uint8_t> payload) {
  if (payload.size() % 4 != 0) return Status::DataLoss("accel frame: field elements are not whole u32s");
  std::vector<uint32_t> values(payload.size() / 4);
  std::memcpy(values.data(), payload.data(), payload.size());
  for (uint32_t v : values) {
    if (v >= kPrime) return Status::InvalidArgument("accel frame: a field element is not below p");
  }
  return values;
}

std::vector<uint8_t> EncodeError(const Status& status) {
  std::vector<uint8_t> out;
  Put<uint32_t>(out, static_cast<uint32_t>(status.code()));
  out.insert(out.end(), status.message().begin(), status.message().end());
  return out;
}

Status DecodeError(std::span<const uint8_t> payload) {
  Reader r(payload);
  Result<uint32_t> code = r.Get<uint32_t>("the error code");
  if (!code.ok()) return code.status();
  const StatusCode c = *code <= static_cast<uint32_t>(StatusCode::kInternal) && *code != 0
                           ? static_cast<StatusCode>(*code)
                           : StatusCode::kInternal;
  return Status(c, "ppml-accel: " + std::string(reinterpret_cast<const char*>(r.here()), r.remaining()));
}

namespace {

Status WriteAll(int fd, const uint8_t* data, size_t size, const std::string& what) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Unavailable(what + ": write failed: " + std::strerror(errno));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status ReadAll(int fd, uint8_t* data, size_t size, const std::string& what) {
  while (size > 0) {
    const ssize_t n = ::recv(fd, data, size, 0);
    if (n == 0) return Status::Unavailable(what + ": connection closed");
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::DeadlineExceeded(what + ": read timed out");
      return Status::Unavailable(what + ": read failed: " + std::strerror(errno));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Status WriteFrame(int fd, FrameType type, std::span<const uint8_t> payload, const std::string& what) {
  const std::vector<uint8_t> frame = EncodeFrame(type, payload);
  return WriteAll(fd, frame.data(), frame.size(), what);
}

Result<Frame> ReadFrame(int fd, const std::string& what) {
  uint8_t header[kFrameHeaderBytes];
  PPML_RETURN_IF_ERROR(ReadAll(fd, header, sizeof(header), what));
  Frame frame;
  PPML_ASSIGN_OR_RETURN(uint64_t length, DecodeFrameHeader(header, &frame.type));
  frame.payload.resize(length);
  PPML_RETURN_IF_ERROR(ReadAll(fd, frame.payload.data(), length, what));
  return frame;
}

}  // namespace ppml::accel
