// The byte streams RESP travels over: plain TCP or TLS, from common/net.h
// (shared with the HTTPS client). This header names them in ppml::queue and
// opens one for a RedisEndpoint; messages start with "redis HOST:PORT".
#pragma once

#include <memory>

#include "common/net.h"
#include "common/status.h"
#include "queue/redis.h"

namespace ppml::queue {

using net::ConfigureTlsClient;
using net::DeadlineAfter;
using net::SslCtxPtr;
using net::SslPtr;
using net::TlsClientContext;
using net::TlsFailure;
using net::Transport;

// TCP connect (every address the host resolves to, in order) and, for a
// rediss:// endpoint, the TLS handshake with its tls_options, both before
// `deadline`. Read returns 0 when Redis closed the connection.
Result<std::unique_ptr<Transport>> OpenTransport(const RedisEndpoint& endpoint, Deadline deadline);

}  // namespace ppml::queue
