// Where ppml-accel listens and enclaves connect: a Unix domain socket or TCP.
//
//   "unix:/run/ppml/accel.sock", "/run/ppml/accel.sock"   Unix domain socket
//   "tcp:127.0.0.1:7070", "127.0.0.1:7070", "[::1]:7070"  TCP (port 0 to listen on a free port)
//
// Thread safety: stateless functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/listen.h"
#include "common/net.h"
#include "common/status.h"

namespace ppml::accel {

struct AccelAddress {
  bool is_unix = false;
  std::string path;  // Unix socket path
  std::string host;  // TCP host (IPv6 without brackets)
  uint16_t port = 0;
  // "unix:/path" or "host:port" ("[v6]:port").
  std::string ToString() const;
};

// InvalidArgument naming the text for anything else (no port, a port out of
// range, a Unix path longer than sockaddr_un allows).
Result<AccelAddress> ParseAccelAddress(std::string_view text);

// A connected non-blocking socket (TCP_NODELAY for TCP) before `deadline`;
// Unavailable when nobody answers there, DeadlineExceeded when it is slow.
Result<ScopedFd> ConnectAccel(const AccelAddress& address, net::Deadline deadline);

// A non-blocking listening socket; for TCP port 0 the kernel's pick is
// written back into `address`. A Unix path that is a stale socket (nobody
// listening) is replaced; one in use is Unavailable.
Result<ScopedFd> ListenAccel(AccelAddress& address);

}  // namespace ppml::accel
