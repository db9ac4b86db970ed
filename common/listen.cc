#include "common/listen.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace ppml {
namespace {

struct AddrInfoDeleter {
  void operator()(addrinfo* info) const { freeaddrinfo(info); }
};

}  // namespace

ScopedFd& ScopedFd::operator=(ScopedFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

ScopedFd::~ScopedFd() {
  if (fd_ >= 0) ::close(fd_);
}

std::string FormatHostPort(const std::string& host, uint16_t port) {
  const std::string shown = host.empty() ? "*" : host;
  if (shown.find(':') != std::string::npos) return "[" + shown + "]:" + std::to_string(port);
  return shown + ":" + std::to_string(port);
}

Result<ScopedFd> ListenTcp(const std::string& host, uint16_t port, int backlog, std::string_view who) {
  const std::string address = FormatHostPort(host, port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* raw = nullptr;
  const std::string service = std::to_string(port);
  const int gai = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &raw);
  if (gai != 0) {
    return Status::InvalidArgument(std::string(who) + " cannot resolve " + address + ": " + gai_strerror(gai));
  }
  std::unique_ptr<addrinfo, AddrInfoDeleter> infos(raw);

  int error = 0;
  for (const addrinfo* info = infos.get(); info != nullptr; info = info->ai_next) {
    ScopedFd fd(::socket(info->ai_family, info->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, info->ai_protocol));
    if (fd.get() < 0) {
      error = errno;
      continue;
    }
    // Lets a restarted process rebind while old connections sit in TIME_WAIT;
    // on Linux it still refuses a port someone is listening on.
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (::bind(fd.get(), info->ai_addr, info->ai_addrlen) != 0 || ::listen(fd.get(), backlog) != 0) {
      error = errno;
      continue;
    }
    return fd;
  }
  const std::string reason = std::string(who) + " cannot listen on " + address + ": " + std::strerror(error);
  switch (error) {
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT:
    case EINVAL:
      return Status::InvalidArgument(reason);
    case EACCES:
    case EPERM:
      return Status::PermissionDenied(reason);
    default:
      return Status::Unavailable(reason);
  }
}

uint16_t BoundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t length = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

}  // namespace ppml
