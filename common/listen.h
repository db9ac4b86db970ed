// The listening TCP socket of our HTTP servers (front-end, metrics). The
// socket is ours rather than evhttp_bind_socket's so that a failure reports
// the real errno: an address that is not local or a host that does not
// resolve is InvalidArgument, a privileged port PermissionDenied, a port in
// use Unavailable; every message names who is listening and host:port.
//
// TCP_NODELAY is set on the listener, which Linux copies to every accepted
// connection: a reply written in pieces (headers, then body) must not wait
// for the client's delayed ACK (40 ms).
//
// Thread safety: stateless functions; a ScopedFd is a plain owner.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace ppml {

// Owns a file descriptor until released (to evhttp, say).
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept;
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd();
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// "host:port", "[::1]:port" for an IPv6 literal, "*:port" for every address.
std::string FormatHostPort(const std::string& host, uint16_t port);

// A non-blocking socket bound to host:port (port 0: the kernel picks; an
// empty host: every address) and listening; `who` starts error messages.
Result<ScopedFd> ListenTcp(const std::string& host, uint16_t port, int backlog, std::string_view who);

// The port `fd` is bound to (0 when unknown).
uint16_t BoundPort(int fd);

}  // namespace ppml
