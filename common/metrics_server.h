// MetricsServer: a small HTTP endpoint for Prometheus and for the
// orchestrator's probes, on a thread of its own (libevent evhttp), so that a
// scrape never waits on inference and inference never waits on a scrape.
//
//   GET /metrics  200, text/plain; version=0.0.4   Registry::Render()
//   GET /healthz  200 {"status":"ok"}               the process is up
//   GET /ready    200 {"ready":true} or 503 {"ready":false}, from ready()
//   other paths   404 {"error":"not found: /path"}
//   known path, method other than GET or HEAD: 405 {"error":"method not allowed"}
//
// It serves no payloads and reads no request bodies (they are capped small).
// The registry must outlive the server. ready() runs on the server thread,
// so it must be safe to call concurrently with the rest of the program
// (read an atomic, say). The server thread blocks all signals, so signal
// handlers keep running on the program's own threads and a scraper hanging
// up mid-response cannot raise SIGPIPE on the process.
//
// Thread safety: Start and the destructor from one owner thread; port() from any.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/metrics.h"
#include "common/status.h"

struct event;
struct event_base;
struct evhttp;
struct evhttp_request;

namespace ppml::metrics {

class MetricsServer {
 public:
  // Listens on host:port ("0.0.0.0", "127.0.0.1", "::", a local name; port 0
  // lets the kernel pick, read it back with port()). ready() absent: always
  // ready. A host that does not resolve is InvalidArgument; an address that
  // cannot be bound (in use, not local) names host:port and the system's reason.
  static Result<std::unique_ptr<MetricsServer>> Start(const Registry& registry, const std::string& host,
                                                      uint16_t port, std::function<bool()> ready = {});
  // Stops the loop, joins the thread and closes the socket and connections.
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The port actually bound.
  uint16_t port() const { return port_; }

 private:
  struct EventBaseDeleter { void operator()(event_base* base) const; };
  struct EvhttpDeleter { void operator()(evhttp* http) const; };
  struct EventDeleter { void operator()(event* ev) const; };

  MetricsServer(const Registry& registry, std::function<bool()> ready);
  static void HandleRequest(evhttp_request* request, void* self);
  static void HandleStop(int fd, short what, void* self);

  const Registry& registry_;
  std::function<bool()> ready_;
  uint16_t port_ = 0;
  // Declared in teardown order reversed: connections and the stop event go
  // before the base they live on.
  std::unique_ptr<event_base, EventBaseDeleter> base_;
  std::unique_ptr<evhttp, EvhttpDeleter> http_;
  std::unique_ptr<event, EventDeleter> stop_event_;
  std::thread thread_;
};

}  // namespace ppml::metrics
