#include "accel/client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "accel/protocol.h"

namespace ppml::accel {
namespace {

Result<ScopedFd> ConnectUnix(const std::string& path, const std::string& address) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Status::InvalidArgument(address + ": socket path too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ScopedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::IoError(address + ": socket: " + std::strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::Unavailable(address + ": connect: " + std::strerror(errno));
  }
  return fd;
}

Result<ScopedFd> ConnectTcp(const std::string& host_port, const std::string& address) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return Status::InvalidArgument(address + ": expected unix:PATH or HOST:PORT");
  std::string host = host_port.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = host_port.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return Status::Unavailable(address + ": cannot resolve: " + ::gai_strerror(rc));
  }
  Status last = Status::Unavailable(address + ": no address");
  for (addrinfo* a = found; a; a = a->ai_next) {
    ScopedFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (fd.get() < 0) continue;
    if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) == 0) {
      const int one = 1;
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      ::freeaddrinfo(found);
      return fd;
    }
    last = Status::Unavailable(address + ": connect: " + std::strerror(errno));
  }
  ::freeaddrinfo(found);
  return last;
}

}  // namespace

Result<std::unique_ptr<AccelClient>> AccelClient::Connect(const std::string& address, int timeout_ms) {
  Result<ScopedFd> fd = address.rfind("unix:", 0) == 0   ? ConnectUnix(address.substr(5), address)
                        : address.rfind("tcp:", 0) == 0 ? ConnectTcp(address.substr(4), address)
                                                         : ConnectTcp(address, address);
  if (!fd.ok()) return fd.status();
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd->get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return std::unique_ptr<AccelClient>(new AccelClient(std::move(*fd), address));
}

Result<uint64_t> AccelClient::Register(const LinearSpec& spec) {
  PPML_RETURN_IF_ERROR(WriteFrame(fd_.get(), FrameType::kRegister, EncodeSpec(spec), address_));
  PPML_ASSIGN_OR_RETURN(Frame reply, ReadFrame(fd_.get(), address_));
  if (reply.type == FrameType::kError) return DecodeError(reply.payload);
  if (reply.type != FrameType::kRegistered || reply.payload.size() != 8) {
    return Status::DataLoss(address_ + ": unexpected reply to Register");
  }
  uint64_t handle;
  std::memcpy(&handle, reply.payload.data(), 8);
  return handle;
}

Result<std::vector<uint32_t>> AccelClient::Compute(uint64_t handle, int64_t batch, std::span<const uint32_t> x) {
  PPML_RETURN_IF_ERROR(WriteFrame(fd_.get(), FrameType::kCompute, EncodeCompute(handle, batch, x), address_));
  PPML_ASSIGN_OR_RETURN(Frame reply, ReadFrame(fd_.get(), address_));
  if (reply.type == FrameType::kError) return DecodeError(reply.payload);
  if (reply.type != FrameType::kResult) return Status::DataLoss(address_ + ": unexpected reply to Compute");
  return DecodeElements(reply.payload);
}

}  // namespace ppml::accel
