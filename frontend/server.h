// FrontendServer: the HTTPS front door (DESIGN.md "Request life", step 3).
// It holds no key and never decrypts: an encrypted inference request's
// encapsulated key and EHBP body are copied into a Redis stream entry
// (queue/request_entry.h), the HTTP request is parked, and the worker's result
// is returned as it came, with its Ehbp-Response-Nonce.
//
//   client ──TLS──▶ evhttp ──XLEN, XADD──▶ ppml:{m}:requests
//                     ▲                         (workers)
//                     └──── XREAD BLOCK ──── ppml:results:{id}
//
// Routes (KServe v2 / Open Inference Protocol; every error body is
// {"error": "..."} as application/json):
//
//   GET  /v2/health/live             200 {"live":true}
//   GET  /v2/health/ready            200 {"ready":true} while Redis answers and a
//                                    worker of a served model is live; else 503
//   GET  /v2                         server metadata (name, version, extensions)
//   GET  /v2/models/{m}              the metadata a worker published; 404 unknown
//                                    model, 503 none published yet or Redis down
//   GET  /v2/models/{m}/ready        200/503 by the model's live workers
//   POST /v2/models/{m}/infer        encrypted (header Ehbp-Encapsulated-Key) or,
//                                    when allowed, plaintext; the worker's answer,
//                                    or 400 bad header, 403 plaintext not allowed,
//                                    404, 413 body too large, 429 queue full
//                                    (Retry-After: 1), 503 Redis down, 504 deadline
//   GET  /.well-known/hpke-keys[?model=m]   the enclave's key config
//                                    (application/ohttp-keys)
//   GET  /v2/attestation?nonce=HEX[&model=m]  a live enclave's attestation
//                                    document for the nonce (16-64 bytes)
//   GET  /metrics                    Prometheus text
//   other paths 404, other methods on a known path 405 (HEAD works as GET).
//
// Request ids: X-Request-Id when it is 1-128 of [A-Za-z0-9_.:-] and not in use
// (in flight or answered in the last minute), else one made here; the client's
// X-Request-Id (or the one made) comes back on the reply. Results are matched
// by id; a result with no request waiting (late, duplicate, client gone) is
// dropped and counted.
//
// Redis: two event-driven connections on the server's loop, one for commands
// and one for the blocking XREAD of the result stream (from the stream's last
// entry at start-up); each reconnects on its own with backoff (200 ms .. 2 s).
// Worker liveness (ZCOUNT of fresh heartbeats) and queue depths (XLEN) are
// polled every 500 ms, not per request.
//
// Metrics (inference requests): ppml_frontend_requests_total{code},
// ppml_frontend_request_seconds, ppml_frontend_in_flight,
// ppml_frontend_queue_depth{model}, ppml_frontend_late_results_total,
// ppml_frontend_redis_reconnects_total.
//
// Logs one line per start (event=frontend_listening url=... id=...), stop and
// Redis loss or reconnect; never a payload, key or header value.
//
// Thread safety: Start, Run and the destructor from one owner thread; Run
// runs everything on that thread. Stop and port() from any thread.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "common/metrics.h"
#include "common/status.h"
#include "frontend/config.h"

namespace ppml::frontend {

class FrontendServer {
 public:
  // Loads the TLS certificate and key, binds the listening socket and
  // prepares the loop (Redis is connected once Run runs). Errors: TLS files
  // that do not load (InvalidArgument naming the file), an address that does
  // not resolve or cannot be bound (naming host:port). `registry` must
  // outlive the server.
  static Result<std::unique_ptr<FrontendServer>> Start(FrontendConfig config, metrics::Registry& registry);
  ~FrontendServer();
  FrontendServer(const FrontendServer&) = delete;
  FrontendServer& operator=(const FrontendServer&) = delete;

  // Stops (as Stop does) when one of `signals` arrives; libevent turns the
  // signal into a loop event, so nothing runs in signal context. Before Run.
  Status StopOnSignals(std::initializer_list<int> signals);

  // Serves until Stop: then stops accepting, answers every parked request
  // 503, waits (up to 2 s) for those replies to go out and returns OK.
  Status Run();
  // Asks the loop to stop; returns at once. Safe from any thread, before or during Run.
  void Stop();

  uint16_t port() const;
  const std::string& id() const;
  // "https://HOST:PORT" ("http://" with TLS off).
  std::string url() const;

 private:
  class Impl;
  explicit FrontendServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ppml::frontend
