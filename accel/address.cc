#include "accel/address.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

namespace ppml::accel {
namespace {

struct AddrinfoDeleter {
  void operator()(addrinfo* p) const { freeaddrinfo(p); }
};

Result<sockaddr_un> UnixSockaddr(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument("accel address: Unix socket path must have 1 to " +
                                   std::to_string(sizeof(addr.sun_path) - 1) + " characters");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Waits for a non-blocking connect to finish and reads its outcome.
Status FinishConnect(int fd, net::Deadline deadline, const std::string& name) {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (deadline != net::Deadline::max() && left.count() <= 0) return Status::DeadlineExceeded(name + ": connect timed out");
    pollfd entry{fd, POLLOUT, 0};
    const int timeout = deadline == net::Deadline::max() ? -1 : static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
    const int n = ::poll(&entry, 1, timeout);
    if (n > 0) break;
    if (n < 0 && errno != EINTR) return Status::Unavailable(name + ": poll: " + std::strerror(errno));
  }
  int error = 0;
  socklen_t length = sizeof(error);
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
  if (error != 0) return Status::Unavailable(name + ": connect failed: " + std::strerror(error));
  return Status::Ok();
}

Status ConnectOne(int fd, const sockaddr* addr, socklen_t length, net::Deadline deadline, const std::string& name) {
  if (::connect(fd, addr, length) == 0) return Status::Ok();
  if (errno != EINPROGRESS && errno != EAGAIN) return Status::Unavailable(name + ": connect failed: " + std::strerror(errno));
  return FinishConnect(fd, deadline, name);
}

}  // namespace

std::string AccelAddress::ToString() const { return is_unix ? "unix:" + path : FormatHostPort(host, port); }

Result<AccelAddress> ParseAccelAddress(std::string_view text) {
  AccelAddress address;
  if (text.starts_with("unix:") || text.starts_with("/")) {
    address.is_unix = true;
    address.path = std::string(text.starts_with("unix:") ? text.substr(5) : text);
    PPML_RETURN_IF_ERROR(UnixSockaddr(address.path).status());
    return address;
  }
  if (text.starts_with("tcp:")) text.remove_prefix(4);
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return Status::InvalidArgument("accel address '" + std::string(text) +
                                   "': expected unix:/path, /path, HOST:PORT or tcp:HOST:PORT");
  }
  std::string_view host = text.substr(0, colon), port_text = text.substr(colon + 1);
  if (host.starts_with("[") && host.ends_with("]")) host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return Status::InvalidArgument("accel address '" + std::string(text) + "': bad port '" + std::string(port_text) + "'");
  }
  address.host = std::string(host);
  address.port = static_cast<uint16_t>(port);
  return address;
}

Result<ScopedFd> ConnectAccel(const AccelAddress& address, net::Deadline deadline) {
  const std::string name = "ppml-accel " + address.ToString();
  if (address.is_unix) {
    PPML_ASSIGN_OR_RETURN(sockaddr_un addr, UnixSockaddr(address.path));
    ScopedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) return Status::Unavailable(name + ": socket: " + std::strerror(errno));
    PPML_RETURN_IF_ERROR(ConnectOne(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr), deadline, name));
    return fd;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(address.host.c_str(), std::to_string(address.port).c_str(), &hints, &found);
  if (rc != 0) return Status::Unavailable(name + ": cannot resolve host: " + gai_strerror(rc));
  std::unique_ptr<addrinfo, AddrinfoDeleter> addresses(found);
  Status last = Status::Unavailable(name + ": host resolved to no address");
  for (addrinfo* ai = addresses.get(); ai != nullptr; ai = ai->ai_next) {
    ScopedFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) {
      last = Status::Unavailable(name + ": socket: " + std::strerror(errno));
      continue;
    }
    last = ConnectOne(fd.get(), ai->ai_addr, ai->ai_addrlen, deadline, name);
    if (last.code() == StatusCode::kDeadlineExceeded) return last;  // no time left for the next address
    if (!last.ok()) continue;
    // Requests and replies go out when written, not after Nagle's delay.
    const int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
  }
  return last;
}

Result<ScopedFd> ListenAccel(AccelAddress& address) {
  if (!address.is_unix) {
    PPML_ASSIGN_OR_RETURN(ScopedFd fd, ListenTcp(address.host, address.port, 128, "ppml-accel"));
    address.port = BoundPort(fd.get());
    return fd;
  }
  PPML_ASSIGN_OR_RETURN(sockaddr_un addr, UnixSockaddr(address.path));
  ScopedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::Unavailable("ppml-accel: socket: " + std::string(std::strerror(errno)));
  struct stat info{};
  if (::lstat(address.path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode)) {
    // A socket file left by a process that died: replace it, unless someone answers there.
    ScopedFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.get() >= 0 && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      return Status::Unavailable("ppml-accel cannot listen on unix:" + address.path + ": another server is listening");
    }
    ::unlink(address.path.c_str());
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd.get(), 128) != 0) {
    const int error = errno;
    const std::string reason = "ppml-accel cannot listen on unix:" + address.path + ": " + std::strerror(error);
    if (error == EACCES || error == EPERM) return Status::PermissionDenied(reason);
    if (error == EADDRINUSE) return Status::Unavailable(reason);
    return Status::InvalidArgument(reason);
  }
  return fd;
}

}  // namespace ppml::accel
