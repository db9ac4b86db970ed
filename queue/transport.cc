#include "queue/transport.h"

namespace ppml::queue {

Result<std::unique_ptr<Transport>> OpenTransport(const RedisEndpoint& endpoint, Deadline deadline) {
  net::Endpoint target;
  target.name = "redis " + endpoint.Address();
  target.host = endpoint.host;
  target.port = endpoint.port;
  target.tls = endpoint.tls;
  target.tls_options = endpoint.tls_options;
  return net::OpenTransport(target, deadline);
}

}  // namespace ppml::queue
