// The Redis data model of the request path (DESIGN.md "Request life";
// docs/PROTOCOL.md "Redis keys" documents the same):
//
//   ppml:{MODEL}:requests        stream; the front-end XADDs RequestEntry;
//                                consumer group "workers"
//   ppml:{MODEL}:dead            stream; requests delivered more than
//                                max_deliveries times (fields + reason)
//   ppml:results:{FRONTEND_ID}   stream; workers XADD ResultEntry (MAXLEN ~)
//   ppml:{MODEL}:info            hash the workers publish at start (WorkerInfo):
//                                measurement, hpke_key_config, metadata, updated_ms
//   ppml:{MODEL}:workers         sorted set: consumer -> last heartbeat (Unix ms),
//                                refreshed every second; a worker is live
//                                while its heartbeat is under kHeartbeatTtlMs old
//
// The braces are literal: a Redis Cluster hash tag, so a model's keys share
// a slot. Model names and front-end ids are [A-Za-z0-9_.-], 1-128 characters.
//
// Request entry fields                 Result entry fields
//   rid       request id                 rid     request id
//   enc       Ehbp-Encapsulated-Key      status  HTTP status (decimal)
//   body      EHBP frames (opaque)       nonce   Ehbp-Response-Nonce (absent: plaintext error body)
//   hlen      Inference-Header-Content-  body    EHBP frames, or a plaintext {"error": ...}
//             Length (optional)          hlen    Inference-Header-Content-Length (optional)
//   deadline  Unix ms; 0 or absent: none
//   reply_to  the front-end id
//   kind      absent: inference; "attest": answer with the enclave's
//             attestation document for the nonce in `body` (raw bytes),
//             no model run (the quote comes from a live enclave)
//
// Values are opaque bytes to Redis and to the host part of the worker; only
// the enclave reads `enc` and `body`. Parsing errors name the field, never a value.
//
// Thread safety: stateless functions and plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "queue/streams.h"

namespace ppml::queue {

inline constexpr std::string_view kWorkersGroup = "workers";
inline constexpr std::string_view kAttestKind = "attest";
inline constexpr int64_t kHeartbeatIntervalMs = 1000;
inline constexpr int64_t kHeartbeatTtlMs = 5000;

// InvalidArgument unless `name` is 1-128 of [A-Za-z0-9_.-]; `what` names it in the message.
Status CheckKeyName(std::string_view name, std::string_view what);

std::string RequestStream(std::string_view model);
std::string DeadLetterStream(std::string_view model);
std::string ResultStream(std::string_view frontend_id);
std::string InfoKey(std::string_view model);
std::string WorkersKey(std::string_view model);

// What a worker publishes of its enclave and model (all public).
struct WorkerInfo {
  std::string measurement_hex;   // serving measurement: what quotes carry
  std::string hpke_key_config;   // RFC 9458 key config, binary (GET /.well-known/hpke-keys)
  std::string metadata_json;     // KServe v2 model metadata (GET /v2/models/{m})
};

struct RequestEntry {
  std::string request_id;
  std::string encapsulated_key;
  std::string body;
  std::optional<size_t> json_length;
  int64_t deadline_unix_ms = 0;  // 0: none
  std::string reply_to;
  std::string kind;  // "" (inference) or kAttestKind

  // The fields for XADD; the views point into this object.
  std::vector<StreamField> Fields() const;
  // InvalidArgument naming the first missing or malformed field.
  static Result<RequestEntry> FromStream(const StreamEntry& entry);

 private:
  mutable std::string hlen_text_, deadline_text_;
};

struct ResultEntry {
  std::string request_id;
  int http_status = 200;
  std::string response_nonce;  // empty: the body is a plaintext error
  std::string body;
  std::optional<size_t> json_length;

  std::vector<StreamField> Fields() const;
  static Result<ResultEntry> FromStream(const StreamEntry& entry);

 private:
  mutable std::string status_text_, hlen_text_;
};

// {"error": message} with `status`, plaintext (no nonce): what the host side
// answers when the enclave never saw the request (deadline, dead letter, bad entry).
ResultEntry PlainErrorResult(std::string request_id, int http_status, std::string_view message);

// Milliseconds since the Unix epoch, by the system clock.
int64_t UnixNowMs();

}  // namespace ppml::queue
