#include "frontend/server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/crypto.h"
#include "common/ehbp.h"
#include "common/json_line.h"
#include "common/kserve.h"
#include "common/listen.h"
#include "common/log.h"
#include "queue/async_redis.h"
#include "queue/request_entry.h"
#include "queue/transport.h"

#ifndef PPML_VERSION
#define PPML_VERSION "0.1.0"
#endif

namespace ppml::frontend {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kReconnectMinMs = 200;
constexpr int kReconnectMaxMs = 2000;
constexpr int kResultsBlockMs = 1000;
constexpr int kResultsBatch = 1000;
constexpr int64_t kPollIntervalMs = 500;
constexpr int kTrimEveryPolls = 10;
constexpr int64_t kStopDrainMs = 2000;
constexpr int64_t kDrainCheckMs = 10;
constexpr int64_t kResultStreamLingerSeconds = 60;
// A client's X-Request-Id is not reused as a queue id while a late or
// repeated result for its previous use may still come.
constexpr auto kRecentIdWindow = std::chrono::seconds(60);
constexpr size_t kMaxRecentIds = 100000;
constexpr size_t kMaxHeadersBytes = 64 * 1024;
constexpr size_t kNonceMinBytes = 16;
constexpr size_t kNonceMaxBytes = 64;

constexpr std::string_view kRequestIdHeader = "X-Request-Id";
constexpr std::string_view kTimeoutHeader = "Inference-Timeout-Ms";

struct EventBaseDeleter {
  void operator()(event_base* base) const { event_base_free(base); }
};
struct EvhttpDeleter {
  void operator()(evhttp* http) const { evhttp_free(http); }
};
struct EventDeleter {
  void operator()(event* ev) const { event_free(ev); }
};
struct EvbufferDeleter {
  void operator()(evbuffer* buffer) const { evbuffer_free(buffer); }
};
using EventPtr = std::unique_ptr<event, EventDeleter>;

// The parsed query string of one request; evhttp allocates its entries.
struct QueryParams {
  evkeyvalq list{};
  QueryParams() = default;
  QueryParams(const QueryParams&) = delete;
  QueryParams& operator=(const QueryParams&) = delete;
  ~QueryParams() { evhttp_clear_headers(&list); }
  const char* Find(const char* key) const { return evhttp_find_header(&list, key); }
};

Result<queue::SslCtxPtr> ServerTlsContext(const TlsSection& tls) {
  queue::SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return Status::Internal(crypto::OpenSslErrorMessage("front-end TLS: SSL_CTX_new"));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert_file.c_str()) != 1) {
    return Status::InvalidArgument(
        crypto::OpenSslErrorMessage("frontend.tls.cert: cannot load certificate file " + tls.cert_file));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return Status::InvalidArgument(crypto::OpenSslErrorMessage("frontend.tls.key: cannot load key file " + tls.key_file));
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return Status::InvalidArgument(crypto::OpenSslErrorMessage("frontend.tls.key: " + tls.key_file +
                                                               " does not match the certificate " + tls.cert_file));
  }
  if (!tls.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), tls.client_ca_file.c_str(), nullptr) != 1) {
      return Status::InvalidArgument(
          crypto::OpenSslErrorMessage("frontend.tls.client_ca: cannot load CA file " + tls.client_ca_file));
    }
    // The CA names go into the CertificateRequest, so clients pick the right certificate.
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca_file.c_str());
    if (names == nullptr) {
      return Status::InvalidArgument(
          crypto::OpenSslErrorMessage("frontend.tls.client_ca: no certificate in " + tls.client_ca_file));
    }
    SSL_CTX_set_client_CA_list(ctx.get(), names);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return ctx;
}

bool IsHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

// [A-Za-z0-9_.:-]{1,128}: safe in logs, headers and Redis fields.
bool IsValidRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == ':' || c == '-';
  });
}

std::optional<int64_t> ParseNonNegative(std::string_view text) {
  int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 400 ? "OK" : "Error";
  }
}

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

HttpReply JsonReply(int status, std::string body) { return HttpReply{status, "application/json", std::move(body), {}}; }
HttpReply ErrorReply(int status, std::string_view message) { return JsonReply(status, kserve::ErrorJson(message)); }

timeval Milliseconds(int64_t ms) {
  return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}

}  // namespace

class FrontendServer::Impl {
 public:
  Impl(FrontendConfig config, metrics::Registry& registry);
  ~Impl();

  Status Init();
  Status StopOnSignals(std::initializer_list<int> signals);
  Status Run();
  void Stop() { event_active(stop_event_.get(), EV_READ, 0); }

  uint16_t port() const { return port_; }
  const std::string& id() const { return config_.id; }
  std::string url() const {
    return std::string(config_.tls.enabled ? "https://" : "http://") + FormatHostPort(config_.host, port_);
  }

 private:
  enum class Kind { kInfer, kAttest, kLookup };

  // An HTTP request waiting on Redis or on a worker. Owned by pending_.
  struct Pending {
    Impl* owner = nullptr;
    uint64_t seq = 0;
    Kind kind = Kind::kLookup;
    evhttp_request* request = nullptr;
    evhttp_connection* connection = nullptr;
    std::string rid;         // queue request id (inference, attestation)
    std::string client_rid;  // what X-Request-Id answers
    std::string model;
    std::optional<size_t> json_length;
    std::string encapsulated_key;
    int64_t deadline_unix_ms = 0;
    Clock::time_point started;
    EventPtr deadline;
  };

  // One Redis connection and its reconnect timer.
  struct Link {
    Impl* owner = nullptr;
    const char* name = "";
    std::unique_ptr<queue::AsyncRedisConnection> connection;
    EventPtr retry;
    int backoff_ms = kReconnectMinMs;
    bool ever_connected = false;
    bool reported_down = false;
  };

  // libevent callbacks (C functions: nothing may unwind through them).
  static bufferevent* MakeBufferevent(event_base* base, void* self);
  static void OnRequest(evhttp_request* request, void* self);
  static void OnConnectionClosed(evhttp_connection* connection, void* self);
  static void OnReplyComplete(evhttp_request* request, void* self);
  static void OnDeadline(evutil_socket_t, short, void* pending);
  static void OnStopEvent(evutil_socket_t, short, void* self);
  static void OnPollTimer(evutil_socket_t, short, void* self);
  static void OnDrainTimer(evutil_socket_t, short, void* self);
  static void OnRetryTimer(evutil_socket_t, short, void* link);
  static void OnResultsRetry(evutil_socket_t, short, void* self);

  void Route(evhttp_request* request, Clock::time_point started);
  void Infer(evhttp_request* request, const std::string& model, Clock::time_point started);
  void QueueInference(uint64_t seq);
  void Attest(evhttp_request* request, const QueryParams& query, Clock::time_point started);
  void Lookup(evhttp_request* request, const std::string& model, const char* field, const char* content_type,
              const char* what);

  Pending& Park(evhttp_request* request, Kind kind, Clock::time_point started);
  void ArmDeadline(Pending& pending, int64_t timeout_ms);
  Pending* Find(uint64_t seq);
  // Answers the parked request and forgets it; no-op when it is gone.
  void Finish(uint64_t seq, HttpReply reply);
  std::unique_ptr<Pending> Unpark(uint64_t seq);
  void Send(evhttp_request* request, const HttpReply& reply);
  // Answers a request that never parked (and counts it when it is an inference).
  void SendNow(evhttp_request* request, HttpReply reply, Kind kind, Clock::time_point started,
               const std::string& client_rid = "");
  void Count(int status, Clock::time_point started);

  std::string NewRequestId();
  bool RequestIdInUse(const std::string& rid) const;
  void RememberRequestId(const std::string& rid);

  void Connect(Link& link);
  void ScheduleReconnect(Link& link);
  void LinkReady(Link& link);
  bool CommandsReady() const { return commands_.connection && commands_.connection->ready(); }

  void StartResults();
  void ReadResults();
  void Deliver(const queue::StreamEntry& entry);
  HttpReply ReplyFromResult(const Pending& pending, queue::ResultEntry& result);

  void Poll();
  bool Ready() const;
  void BeginStop();

  FrontendConfig config_;
  metrics::Registry& registry_;
  metrics::Histogram& request_seconds_;
  metrics::Gauge& in_flight_;
  metrics::Counter& late_results_;
  metrics::Counter& redis_reconnects_;
  std::unordered_map<int, metrics::Counter*> requests_by_code_;
  std::map<std::string, metrics::Gauge*> queue_depth_;

  std::string result_stream_;
  std::string rid_prefix_;
  uint64_t next_seq_ = 0;
  uint64_t next_rid_ = 0;
  uint16_t port_ = 0;
  bool stopping_ = false;
  bool ran_ = false;
  Clock::time_point stop_deadline_;
  // Connections with a reply on its way out: the stop waits for them.
  std::unordered_set<evhttp_connection*> sending_;

  // Destroyed in reverse: the links, events and evhttp go before the
  // requests' bookkeeping (evhttp_free calls OnConnectionClosed) and all
  // before the base they live on.
  std::unique_ptr<event_base, EventBaseDeleter> base_;
  queue::SslCtxPtr ssl_ctx_;
  std::unordered_map<uint64_t, std::unique_ptr<Pending>> pending_;
  std::unordered_map<std::string, uint64_t> by_rid_;
  std::unordered_map<evhttp_connection*, uint64_t> by_connection_;
  std::deque<std::pair<Clock::time_point, std::string>> recent_order_;
  std::unordered_set<std::string> recent_ids_;
  std::map<std::string, bool> live_;  // model -> a worker's heartbeat is fresh
  int polls_waiting_ = 0;
  int64_t polls_ = 0;
  std::string last_result_id_;  // empty until read at start-up
  EventPtr results_retry_;

  std::unique_ptr<evhttp, EvhttpDeleter> http_;
  evhttp_bound_socket* bound_ = nullptr;  // owned by http_
  EventPtr stop_event_, poll_timer_, drain_timer_;
  std::vector<EventPtr> signal_events_;
  Link commands_, results_;
};

FrontendServer::Impl::Impl(FrontendConfig config, metrics::Registry& registry)
    : config_(std::move(config)),
      registry_(registry),
      request_seconds_(registry.AddHistogram("ppml_frontend_request_seconds",
                                             "Inference request latency at the front-end, arrival to reply.",
                                             metrics::ExponentialBuckets(0.0005, 2, 16))),
      in_flight_(registry.AddGauge("ppml_frontend_in_flight", "Inference requests received and not yet answered.")),
      late_results_(registry.AddCounter("ppml_frontend_late_results_total",
                                        "Results with no request waiting: after the deadline, repeated, or the "
                                        "client left.")),
      redis_reconnects_(registry.AddCounter("ppml_frontend_redis_reconnects_total",
                                            "Redis connections of the front-end re-established after a loss.")) {
  if (config_.id.empty()) config_.id = DefaultFrontendId();
  result_stream_ = queue::ResultStream(config_.id);
  // Unique across restarts under a fixed id, so an old request's result never
  // matches a new request.
  char start[24];
  std::snprintf(start, sizeof(start), "%llx", static_cast<unsigned long long>(queue::UnixNowMs()));
  rid_prefix_ = config_.id + "-" + start + "-";
  for (const std::string& model : config_.models) {
    live_[model] = false;
    queue_depth_[model] = &registry.AddGauge("ppml_frontend_queue_depth",
                                             "Length of the model's request stream at the last check.",
                                             {{"model", model}});
  }
  commands_.owner = results_.owner = this;
  commands_.name = "commands";
  results_.name = "results";
}

FrontendServer::Impl::~Impl() {
  // Redis first (their callbacks point here), then the HTTP side, whose
  // teardown reports closed connections to OnConnectionClosed.
  commands_.connection.reset();
  results_.connection.reset();
  http_.reset();
  pending_.clear();
}

Status FrontendServer::Impl::Init() {
  if (config_.tls.enabled) {
    PPML_ASSIGN_OR_RETURN(ssl_ctx_, ServerTlsContext(config_.tls));
  }
  PPML_ASSIGN_OR_RETURN(ScopedFd fd, ListenTcp(config_.host, static_cast<uint16_t>(config_.port), 1024, "front-end"));
  port_ = BoundPort(fd.get());
  const std::string address = FormatHostPort(config_.host, port_);

  base_.reset(event_base_new());
  if (!base_) return Status::Internal("front-end " + address + ": event_base_new failed");
  http_.reset(evhttp_new(base_.get()));
  if (!http_) return Status::Internal("front-end " + address + ": evhttp_new failed");
  evhttp* http = http_.get();
  evhttp_set_gencb(http, &Impl::OnRequest, this);
  if (ssl_ctx_) evhttp_set_bevcb(http, &Impl::MakeBufferevent, this);
  // Every method reaches OnRequest, so each gets our JSON 405.
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                       EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                       EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
  evhttp_set_max_headers_size(http, kMaxHeadersBytes);
  // evhttp refuses a larger body itself (413) from its Content-Length,
  // before reading it; libevent 2.1 has no hook to put our JSON on that reply.
  evhttp_set_max_body_size(http, config_.max_body_bytes);
  // A slow or silent client costs only its own connection.
  const timeval client_timeout = Milliseconds(config_.client_timeout_ms);
  evhttp_set_timeout_tv(http, &client_timeout);
  bound_ = evhttp_accept_socket_with_handle(http, fd.get());
  if (bound_ == nullptr) return Status::Internal("front-end " + address + ": evhttp_accept_socket failed");
  fd.release();  // evhttp closes it

  // Activated from Stop on any thread; an activated event waits for the loop to start.
  stop_event_.reset(event_new(base_.get(), -1, 0, &Impl::OnStopEvent, this));
  poll_timer_.reset(event_new(base_.get(), -1, EV_PERSIST, &Impl::OnPollTimer, this));
  drain_timer_.reset(event_new(base_.get(), -1, EV_PERSIST, &Impl::OnDrainTimer, this));
  results_retry_.reset(evtimer_new(base_.get(), &Impl::OnResultsRetry, this));
  for (Link* link : {&commands_, &results_}) {
    link->connection = std::make_unique<queue::AsyncRedisConnection>(base_.get(), config_.redis);
    link->retry.reset(evtimer_new(base_.get(), &Impl::OnRetryTimer, link));
    if (!link->retry) return Status::Internal("front-end: event_new failed");
    link->connection->SetLostCallback([this, link](const Status& status) {
      LogWarn("redis_lost", {{"id", config_.id}, {"link", link->name}, {"error", status.ToString()}});
      link->reported_down = true;
      link->backoff_ms = kReconnectMinMs;
      ScheduleReconnect(*link);
    });
  }
  if (!stop_event_ || !poll_timer_ || !drain_timer_ || !results_retry_) {
    return Status::Internal("front-end: event_new failed");
  }
  return Status::Ok();
}

Status FrontendServer::Impl::StopOnSignals(std::initializer_list<int> signals) {
  for (int signo : signals) {
    EventPtr ev(evsignal_new(base_.get(), signo, &Impl::OnStopEvent, this));
    if (!ev || event_add(ev.get(), nullptr) != 0) {
      return Status::Internal("front-end: cannot handle signal " + std::to_string(signo));
    }
    signal_events_.push_back(std::move(ev));
  }
  return Status::Ok();
}

Status FrontendServer::Impl::Run() {
  if (ran_) return Status::FailedPrecondition("front-end: Run called twice");
  ran_ = true;
  Connect(commands_);
  Connect(results_);
  const timeval poll = Milliseconds(kPollIntervalMs);
  event_add(poll_timer_.get(), &poll);
  std::string models;
  for (const std::string& model : config_.models) models += (models.empty() ? "" : ",") + model;
  LogInfo("frontend_listening", {{"url", url()},
                                 {"id", config_.id},
                                 {"models", models},
                                 {"redis", config_.redis.RedactedUrl()},
                                 {"client_certs", !config_.tls.client_ca_file.empty()},
                                 {"plaintext_allowed", config_.allow_plaintext}});
  const int rc = event_base_loop(base_.get(), EVLOOP_NO_EXIT_ON_EMPTY);
  LogInfo("frontend_stopped", {{"id", config_.id}});
  if (rc < 0) return Status::Internal("front-end: event loop failed");
  return Status::Ok();
}

// ---- HTTP ------------------------------------------------------------------

bufferevent* FrontendServer::Impl::MakeBufferevent(event_base* base, void* self_ptr) {
  auto* self = static_cast<Impl*>(self_ptr);
  SSL* ssl = SSL_new(self->ssl_ctx_.get());
  if (ssl == nullptr) return nullptr;  // OnRequest refuses the plain connection evhttp then makes
  // With BEV_OPT_CLOSE_ON_FREE the bufferevent owns the SSL and the socket.
  bufferevent* bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
  if (bev == nullptr) {
    SSL_free(ssl);
    return nullptr;
  }
  // Clients that hang up without close_notify are the norm, not an attack on us.
  bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  return bev;
}

void FrontendServer::Impl::OnRequest(evhttp_request* request, void* self_ptr) {
  auto* self = static_cast<Impl*>(self_ptr);
  const Clock::time_point started = Clock::now();
  try {
    self->Route(request, started);
  } catch (const std::exception& e) {
    // Allocation failure is the only way here; nothing may unwind through libevent.
    LogError("frontend_request_failed", {{"error", e.what()}});
    evhttp_send_error(request, 500, "Internal Server Error");
  }
}

void FrontendServer::Impl::Route(evhttp_request* request, Clock::time_point started) {
  if (ssl_ctx_) {
    // evhttp falls back to a plain connection when MakeBufferevent failed.
    evhttp_connection* connection = evhttp_request_get_connection(request);
    bufferevent* bev = connection != nullptr ? evhttp_connection_get_bufferevent(connection) : nullptr;
    if (bev == nullptr || bufferevent_openssl_get_ssl(bev) == nullptr) {
      HttpReply reply = ErrorReply(500, "TLS setup failed");
      reply.headers.emplace_back("Connection", "close");
      Send(request, reply);
      return;
    }
  }
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(request);
  const char* raw_path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  const std::string path = raw_path != nullptr && *raw_path != '\0' ? raw_path : "/";
  const evhttp_cmd_type method = evhttp_request_get_command(request);
  const bool get = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;

  if (stopping_) {
    HttpReply reply = ErrorReply(503, "the front-end is shutting down");
    reply.headers.emplace_back("Connection", "close");
    Send(request, reply);
    return;
  }
  const auto method_not_allowed = [&](const char* allow) {
    HttpReply reply = ErrorReply(405, "method not allowed; use " + std::string(allow));
    reply.headers.emplace_back("Allow", allow);
    Send(request, reply);
  };
  const auto not_found = [&] { Send(request, ErrorReply(404, "not found: " + path)); };

  if (path == "/v2/health/live") {
    if (!get) return method_not_allowed("GET, HEAD");
    Send(request, JsonReply(200, JsonLine().Add("live", true).str()));
  } else if (path == "/v2/health/ready") {
    if (!get) return method_not_allowed("GET, HEAD");
    const bool ready = Ready();
    Send(request, JsonReply(ready ? 200 : 503, JsonLine().Add("ready", ready).str()));
  } else if (path == "/v2" || path == "/v2/") {
    if (!get) return method_not_allowed("GET, HEAD");
    Send(request, JsonReply(200, JsonLine()
                                     .Add("name", "ppml-serving")
                                     .Add("version", PPML_VERSION)
                                     .AddRaw("extensions", R"(["ehbp","attestation","binary_tensor_data"])")
                                     .str()));
  } else if (path == "/metrics") {
    if (!get) return method_not_allowed("GET, HEAD");
    Send(request, HttpReply{200, "text/plain; version=0.0.4; charset=utf-8", registry_.Render(), {}});
  } else if (path == "/.well-known/hpke-keys" || path == "/v2/attestation") {
    if (!get) return method_not_allowed("GET, HEAD");
    QueryParams query;
    const char* raw_query = uri != nullptr ? evhttp_uri_get_query(uri) : nullptr;
    if (raw_query != nullptr && evhttp_parse_query_str(raw_query, &query.list) != 0) {
      return Send(request, ErrorReply(400, "malformed query string"));
    }
    if (path == "/v2/attestation") return Attest(request, query, started);
    const char* model = query.Find("model");
    const std::string name = model != nullptr ? model : config_.models.front();
    if (!live_.contains(name)) return Send(request, ErrorReply(404, "model '" + name + "' is not served here"));
    Lookup(request, name, "hpke_key_config", "application/ohttp-keys", "HPKE key config");
  } else if (path.starts_with("/v2/models/")) {
    const std::string rest = path.substr(std::string_view("/v2/models/").size());
    const size_t slash = rest.find('/');
    const std::string model = rest.substr(0, slash);
    const std::string action = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (action != "" && action != "ready" && action != "infer") return not_found();
    if (!live_.contains(model)) {
      HttpReply reply = ErrorReply(404, "model '" + model + "' is not served here");
      if (action == "infer") return SendNow(request, std::move(reply), Kind::kInfer, started);
      return Send(request, reply);
    }
    if (action == "infer") {
      if (method != EVHTTP_REQ_POST) return method_not_allowed("POST");
      return Infer(request, model, started);
    }
    if (!get) return method_not_allowed("GET, HEAD");
    if (action == "ready") {
      const bool ready = CommandsReady() && live_[model];
      Send(request, JsonReply(ready ? 200 : 503, JsonLine().Add("name", model).Add("ready", ready).str()));
    } else {
      Lookup(request, model, "metadata", "application/json", "metadata");
    }
  } else {
    not_found();
  }
}

void FrontendServer::Impl::Infer(evhttp_request* request, const std::string& model, Clock::time_point started) {
  evkeyvalq* headers = evhttp_request_get_input_headers(request);
  const char* given_rid = evhttp_find_header(headers, std::string(kRequestIdHeader).c_str());
  const std::string client_rid = given_rid != nullptr && IsValidRequestId(given_rid) ? given_rid : "";
  const auto fail = [&](int status, std::string_view message) {
    SendNow(request, ErrorReply(status, message), Kind::kInfer, started, client_rid);
  };

  const char* enc = evhttp_find_header(headers, std::string(ehbp::kEncapsulatedKeyHeader).c_str());
  if (enc == nullptr) {
    if (!config_.allow_plaintext) {
      return fail(403, "plaintext inference is not allowed here: encrypt the body with EHBP (header " +
                           std::string(ehbp::kEncapsulatedKeyHeader) + ")");
    }
  } else if (std::strlen(enc) != 64 || !IsHex(enc)) {
    return fail(400, "header " + std::string(ehbp::kEncapsulatedKeyHeader) + " must be 64 hex characters");
  }
  evbuffer* input = evhttp_request_get_input_buffer(request);
  const size_t body_size = evbuffer_get_length(input);
  if (body_size > static_cast<size_t>(config_.max_body_bytes)) {
    return fail(413, "request body over " + std::to_string(config_.max_body_bytes) + " bytes");
  }
  std::optional<size_t> json_length;
  if (const char* hlen = evhttp_find_header(headers, std::string(kserve::kHeaderLengthHeader).c_str())) {
    std::optional<int64_t> value = ParseNonNegative(hlen);
    if (!value || static_cast<size_t>(*value) > body_size) {
      return fail(400, "header " + std::string(kserve::kHeaderLengthHeader) +
                           " must be a byte count no larger than the body");
    }
    json_length = static_cast<size_t>(*value);
  }
  int64_t timeout_ms = config_.default_timeout_ms;
  if (const char* asked = evhttp_find_header(headers, std::string(kTimeoutHeader).c_str())) {
    std::optional<int64_t> value = ParseNonNegative(asked);
    if (!value || *value == 0) return fail(400, "header " + std::string(kTimeoutHeader) + " must be a positive integer");
    timeout_ms = std::min(timeout_ms, *value);
  }
  if (!CommandsReady()) return fail(503, "the request queue is unavailable (Redis does not answer)");

  Pending& pending = Park(request, Kind::kInfer, started);
  pending.model = model;
  pending.client_rid = client_rid;
  pending.rid = !client_rid.empty() && !RequestIdInUse(client_rid) ? client_rid : NewRequestId();
  if (pending.client_rid.empty()) pending.client_rid = pending.rid;
  by_rid_[pending.rid] = pending.seq;
  pending.encapsulated_key = enc != nullptr ? enc : "";
  pending.json_length = json_length;
  // The body stays in the request's buffer (valid while it is parked) until XADD.
  pending.deadline_unix_ms = queue::UnixNowMs() + timeout_ms;
  ArmDeadline(pending, timeout_ms);
  QueueInference(pending.seq);
}

// XLEN, then XADD unless the queue is full. The callbacks find the request by
// its sequence number: it may have been answered (deadline) or dropped
// (client gone) meanwhile.
void FrontendServer::Impl::QueueInference(uint64_t seq) {
  const std::string model = Find(seq)->model;
  commands_.connection->Command({"XLEN", queue::RequestStream(model)}, [this, seq, model](Result<queue::RedisReply> reply) {
    Pending* pending = Find(seq);
    if (pending == nullptr) return;
    if (!reply.ok() || !reply->is_integer()) {
      return Finish(seq, ErrorReply(503, "the request queue is unavailable (Redis does not answer)"));
    }
    queue_depth_.at(model)->Set(static_cast<double>(reply->integer()));
    if (reply->integer() >= config_.max_queue_length) {
      HttpReply full = ErrorReply(429, "the request queue of model '" + model + "' is full; retry later");
      full.headers.emplace_back("Retry-After", "1");
      return Finish(seq, std::move(full));
    }
    queue::RequestEntry entry;
    entry.request_id = pending->rid;
    entry.encapsulated_key = std::move(pending->encapsulated_key);
    entry.json_length = pending->json_length;
    entry.deadline_unix_ms = pending->deadline_unix_ms;
    entry.reply_to = config_.id;
    // The body goes from evhttp's buffer straight into the command, not
    // through a copy in `entry` (it may be max_body_bytes long).
    evbuffer* input = evhttp_request_get_input_buffer(pending->request);
    const size_t body_size = evbuffer_get_length(input);
    const unsigned char* body = evbuffer_pullup(input, -1);
    const std::string_view body_view(reinterpret_cast<const char*>(body), body != nullptr ? body_size : 0);
    const std::string stream = queue::RequestStream(model);
    std::vector<std::string_view> args = {"XADD", stream, "*"};
    for (const queue::StreamField& field : entry.Fields()) {
      args.insert(args.end(), {field.name, field.name == "body" ? body_view : field.value});
    }
    commands_.connection->Command(args, [this, seq](Result<queue::RedisReply> added) {
      if (!added.ok() || !added->is_string()) {
        if (added.ok()) LogWarn("frontend_xadd_failed", {{"id", config_.id}, {"reply", added->Describe()}});
        Finish(seq, ErrorReply(503, "the request queue is unavailable (Redis refused the request)"));
      }
      // Parked until the result, the deadline or the client's hang-up.
    });
  });
}

void FrontendServer::Impl::Attest(evhttp_request* request, const QueryParams& query, Clock::time_point started) {
  const char* nonce_hex = query.Find("nonce");
  const size_t hex_length = nonce_hex != nullptr ? std::strlen(nonce_hex) : 0;
  if (nonce_hex == nullptr || hex_length % 2 != 0 || hex_length < 2 * kNonceMinBytes ||
      hex_length > 2 * kNonceMaxBytes || !IsHex(nonce_hex)) {
    return Send(request, ErrorReply(400, "query parameter nonce must be " + std::to_string(kNonceMinBytes) + "-" +
                                             std::to_string(kNonceMaxBytes) + " bytes as hex"));
  }
  Result<crypto::Bytes> nonce = crypto::FromHex(nonce_hex);
  if (!nonce.ok()) return Send(request, ErrorReply(400, "query parameter nonce: " + nonce.status().message()));
  const char* model_param = query.Find("model");
  const std::string model = model_param != nullptr ? model_param : config_.models.front();
  if (!live_.contains(model)) return Send(request, ErrorReply(404, "model '" + model + "' is not served here"));
  if (!CommandsReady()) return Send(request, ErrorReply(503, "the request queue is unavailable (Redis does not answer)"));

  Pending& pending = Park(request, Kind::kAttest, started);
  const uint64_t seq = pending.seq;
  pending.model = model;
  pending.rid = NewRequestId();
  by_rid_[pending.rid] = seq;
  ArmDeadline(pending, config_.default_timeout_ms);

  queue::RequestEntry entry;
  entry.request_id = pending.rid;
  entry.body.assign(nonce->begin(), nonce->end());
  entry.reply_to = config_.id;
  entry.kind = std::string(queue::kAttestKind);
  entry.deadline_unix_ms = queue::UnixNowMs() + config_.default_timeout_ms;
  const std::string stream = queue::RequestStream(model);
  std::vector<std::string_view> args = {"XADD", stream, "*"};
  for (const queue::StreamField& field : entry.Fields()) args.insert(args.end(), {field.name, field.value});
  commands_.connection->Command(args, [this, seq](Result<queue::RedisReply> added) {
    if (!added.ok() || !added->is_string()) {
      Finish(seq, ErrorReply(503, "the request queue is unavailable (Redis refused the request)"));
    }
  });
}

// GET routes answered from what the workers published at ppml:{m}:info.
void FrontendServer::Impl::Lookup(evhttp_request* request, const std::string& model, const char* field,
                                  const char* content_type, const char* what) {
  if (!CommandsReady()) return Send(request, ErrorReply(503, "the request queue is unavailable (Redis does not answer)"));
  const uint64_t seq = Park(request, Kind::kLookup, Clock::now()).seq;
  commands_.connection->Command(
      {"HGET", queue::InfoKey(model), field},
      [this, seq, model, content_type, what = std::string(what)](Result<queue::RedisReply> reply) {
        if (Find(seq) == nullptr) return;
        if (!reply.ok() || reply->is_error()) {
          return Finish(seq, ErrorReply(503, "the request queue is unavailable (Redis does not answer)"));
        }
        if (!reply->is_string() || reply->str().empty()) {
          return Finish(seq, ErrorReply(503, "no worker of model '" + model + "' has published its " + what + " yet"));
        }
        Finish(seq, HttpReply{200, content_type, std::string(reply->str()), {}});
      });
}

FrontendServer::Impl::Pending& FrontendServer::Impl::Park(evhttp_request* request, Kind kind,
                                                          Clock::time_point started) {
  auto pending = std::make_unique<Pending>();
  pending->owner = this;
  pending->seq = ++next_seq_;
  pending->kind = kind;
  pending->request = request;
  pending->started = started;
  pending->connection = evhttp_request_get_connection(request);
  if (pending->connection != nullptr) {
    // evhttp serves one request per connection at a time, so the connection
    // names the request; told when the client goes away.
    evhttp_connection_set_closecb(pending->connection, &Impl::OnConnectionClosed, this);
    by_connection_[pending->connection] = pending->seq;
  }
  if (kind == Kind::kInfer) in_flight_.Add(1);
  Pending& ref = *pending;
  pending_.emplace(ref.seq, std::move(pending));
  return ref;
}

void FrontendServer::Impl::ArmDeadline(Pending& pending, int64_t timeout_ms) {
  pending.deadline.reset(evtimer_new(base_.get(), &Impl::OnDeadline, &pending));
  if (!pending.deadline) return;  // out of memory: the worker's own deadline check still answers
  const timeval timeout = Milliseconds(timeout_ms);
  evtimer_add(pending.deadline.get(), &timeout);
}

void FrontendServer::Impl::OnDeadline(evutil_socket_t, short, void* pending_ptr) {
  auto* pending = static_cast<Pending*>(pending_ptr);
  pending->owner->Finish(pending->seq, ErrorReply(504, "deadline exceeded"));
}

FrontendServer::Impl::Pending* FrontendServer::Impl::Find(uint64_t seq) {
  auto it = pending_.find(seq);
  return it == pending_.end() ? nullptr : it->second.get();
}

std::unique_ptr<FrontendServer::Impl::Pending> FrontendServer::Impl::Unpark(uint64_t seq) {
  auto it = pending_.find(seq);
  if (it == pending_.end()) return nullptr;
  std::unique_ptr<Pending> pending = std::move(it->second);
  pending_.erase(it);
  if (!pending->rid.empty()) {
    by_rid_.erase(pending->rid);
    RememberRequestId(pending->rid);
  }
  if (pending->connection != nullptr) by_connection_.erase(pending->connection);
  if (pending->kind == Kind::kInfer) in_flight_.Add(-1);
  return pending;
}

void FrontendServer::Impl::Finish(uint64_t seq, HttpReply reply) {
  std::unique_ptr<Pending> pending = Unpark(seq);
  if (pending == nullptr) return;
  if (pending->kind == Kind::kInfer && !pending->client_rid.empty()) {
    reply.headers.emplace_back(kRequestIdHeader, pending->client_rid);
  }
  Send(pending->request, reply);
  if (pending->kind == Kind::kInfer) Count(reply.status, pending->started);
}

void FrontendServer::Impl::SendNow(evhttp_request* request, HttpReply reply, Kind kind, Clock::time_point started,
                                   const std::string& client_rid) {
  if (!client_rid.empty()) reply.headers.emplace_back(kRequestIdHeader, client_rid);
  Send(request, reply);
  if (kind == Kind::kInfer) Count(reply.status, started);
}

void FrontendServer::Impl::Count(int status, Clock::time_point started) {
  metrics::Counter*& counter = requests_by_code_[status];
  if (counter == nullptr) {
    counter = &registry_.AddCounter("ppml_frontend_requests_total", "Inference requests answered, by HTTP status.",
                                    {{"code", std::to_string(status)}});
  }
  counter->Increment();
  request_seconds_.Observe(std::chrono::duration<double>(Clock::now() - started).count());
}

void FrontendServer::Impl::Send(evhttp_request* request, const HttpReply& reply) {
  evkeyvalq* headers = evhttp_request_get_output_headers(request);
  evhttp_add_header(headers, "Content-Type", reply.content_type.c_str());
  evhttp_add_header(headers, "Cache-Control", "no-store");
  for (const auto& [name, value] : reply.headers) evhttp_add_header(headers, name.c_str(), value.c_str());
  if (evhttp_connection* connection = evhttp_request_get_connection(request)) {
    // Told when the reply went out, or when the connection died first.
    sending_.insert(connection);
    evhttp_connection_set_closecb(connection, &Impl::OnConnectionClosed, this);
    evhttp_request_set_on_complete_cb(request, &Impl::OnReplyComplete, this);
  }
  const char* reason = ReasonPhrase(reply.status);
  if (evhttp_request_get_command(request) == EVHTTP_REQ_HEAD) {
    // libevent 2.1 would send a body after HEAD's headers; send GET's length only.
    evhttp_add_header(headers, "Content-Length", std::to_string(reply.body.size()).c_str());
    evhttp_send_reply(request, reply.status, reason, nullptr);
    return;
  }
  std::unique_ptr<evbuffer, EvbufferDeleter> buffer(evbuffer_new());
  if (buffer == nullptr || evbuffer_add(buffer.get(), reply.body.data(), reply.body.size()) != 0) {
    evhttp_send_error(request, 500, "Internal Server Error");
    return;
  }
  evhttp_send_reply(request, reply.status, reason, buffer.get());
}

void FrontendServer::Impl::OnReplyComplete(evhttp_request* request, void* self_ptr) {
  static_cast<Impl*>(self_ptr)->sending_.erase(evhttp_request_get_connection(request));
}

// The client went away (or evhttp is being freed). A request still waiting
// here is dropped; when libevent detached it from the connection, it is ours to free.
void FrontendServer::Impl::OnConnectionClosed(evhttp_connection* connection, void* self_ptr) {
  auto* self = static_cast<Impl*>(self_ptr);
  self->sending_.erase(connection);
  auto it = self->by_connection_.find(connection);
  if (it == self->by_connection_.end()) return;
  std::unique_ptr<Pending> pending = self->Unpark(it->second);
  if (pending == nullptr) return;
  if (evhttp_request_get_connection(pending->request) == nullptr) evhttp_request_free(pending->request);
  if (pending->kind == Kind::kInfer) self->Count(499, pending->started);  // nginx's "client closed request"
}

std::string FrontendServer::Impl::NewRequestId() { return rid_prefix_ + std::to_string(++next_rid_); }

bool FrontendServer::Impl::RequestIdInUse(const std::string& rid) const {
  return by_rid_.contains(rid) || recent_ids_.contains(rid);
}

void FrontendServer::Impl::RememberRequestId(const std::string& rid) {
  const Clock::time_point now = Clock::now();
  while (!recent_order_.empty() &&
         (recent_order_.front().first + kRecentIdWindow < now || recent_order_.size() >= kMaxRecentIds)) {
    recent_ids_.erase(recent_order_.front().second);
    recent_order_.pop_front();
  }
  if (recent_ids_.insert(rid).second) recent_order_.emplace_back(now, rid);
}

// ---- Redis -----------------------------------------------------------------

void FrontendServer::Impl::Connect(Link& link) {
  link.connection->Connect([this, &link](const Status& status) {
    if (status.ok()) {
      if (link.ever_connected) {
        redis_reconnects_.Increment();
        LogInfo("redis_reconnected", {{"id", config_.id}, {"link", link.name}, {"redis", config_.redis.Address()}});
      } else {
        LogInfo("redis_connected", {{"id", config_.id}, {"link", link.name}, {"redis", config_.redis.Address()}});
      }
      link.ever_connected = true;
      link.reported_down = false;
      link.backoff_ms = kReconnectMinMs;
      LinkReady(link);
      return;
    }
    if (!link.reported_down) {
      LogWarn("redis_unavailable", {{"id", config_.id}, {"link", link.name}, {"error", status.ToString()}});
      link.reported_down = true;
    }
    ScheduleReconnect(link);
  });
}

void FrontendServer::Impl::ScheduleReconnect(Link& link) {
  if (stopping_) return;
  const timeval delay = Milliseconds(link.backoff_ms);
  evtimer_add(link.retry.get(), &delay);
  link.backoff_ms = std::min(link.backoff_ms * 2, kReconnectMaxMs);
}

void FrontendServer::Impl::OnRetryTimer(evutil_socket_t, short, void* link_ptr) {
  auto* link = static_cast<Link*>(link_ptr);
  if (!link->owner->stopping_) link->owner->Connect(*link);
}

void FrontendServer::Impl::LinkReady(Link& link) {
  if (&link == &results_) {
    StartResults();
  } else {
    Poll();  // readiness without waiting for the timer
  }
}

// Reads from the result stream's last entry at start-up (nothing earlier is
// for this process), and after a reconnect from the last entry seen.
void FrontendServer::Impl::StartResults() {
  if (!last_result_id_.empty()) return ReadResults();
  // A previous process under this id left the stream to expire (BeginStop); it is ours again.
  results_.connection->Command({"PERSIST", result_stream_}, [](Result<queue::RedisReply>) {});
  results_.connection->Command({"XREVRANGE", result_stream_, "+", "-", "COUNT", "1"},
                               [this](Result<queue::RedisReply> reply) {
                                 if (!reply.ok()) return;  // lost: the reconnect starts over
                                 if (!reply->is_array()) {
                                   LogWarn("frontend_results_error",
                                           {{"id", config_.id}, {"reply", reply->Describe()}});
                                   const timeval delay = Milliseconds(kReconnectMaxMs);
                                   evtimer_add(results_retry_.get(), &delay);
                                   return;
                                 }
                                 last_result_id_ = "0-0";
                                 if (reply->size() > 0 && reply->view()[0].is_array() &&
                                     reply->view()[0].size() == 2 && reply->view()[0][0].is_string()) {
                                   last_result_id_ = std::string(reply->view()[0][0].str());
                                 }
                                 ReadResults();
                               });
}

void FrontendServer::Impl::OnResultsRetry(evutil_socket_t, short, void* self_ptr) {
  auto* self = static_cast<Impl*>(self_ptr);
  if (!self->stopping_ && self->results_.connection->ready()) self->StartResults();
}

void FrontendServer::Impl::ReadResults() {
  if (stopping_) return;
  const std::string count = std::to_string(kResultsBatch);
  const std::string block = std::to_string(kResultsBlockMs);
  results_.connection->Command(
      {"XREAD", "COUNT", count, "BLOCK", block, "STREAMS", result_stream_, last_result_id_},
      [this](Result<queue::RedisReply> reply) {
        if (!reply.ok()) return;  // lost: the reconnect resumes from last_result_id_
        Result<std::vector<queue::StreamEntry>> entries = queue::ParseReadReply(*reply, "redis XREAD " + result_stream_);
        if (!entries.ok()) {
          LogWarn("frontend_results_error", {{"id", config_.id}, {"error", entries.status().ToString()}});
          const timeval delay = Milliseconds(kReconnectMaxMs);
          evtimer_add(results_retry_.get(), &delay);
          return;
        }
        for (const queue::StreamEntry& entry : *entries) {
          last_result_id_ = entry.id;
          Deliver(entry);
        }
        ReadResults();
      },
      kResultsBlockMs);
}

void FrontendServer::Impl::Deliver(const queue::StreamEntry& entry) {
  Result<queue::ResultEntry> result = queue::ResultEntry::FromStream(entry);
  if (!result.ok()) {
    LogWarn("frontend_bad_result", {{"id", config_.id}, {"entry", entry.id}, {"error", result.status().message()}});
    return;
  }
  auto it = by_rid_.find(result->request_id);
  if (it == by_rid_.end()) {
    late_results_.Increment();
    return;
  }
  const uint64_t seq = it->second;
  Pending* pending = Find(seq);
  if (pending == nullptr) return;
  HttpReply reply = ReplyFromResult(*pending, *result);
  Finish(seq, std::move(reply));
}

HttpReply FrontendServer::Impl::ReplyFromResult(const Pending& pending,
                                                                      queue::ResultEntry& result) {
  HttpReply reply;
  reply.status = result.http_status;
  reply.body = std::move(result.body);
  if (pending.kind == Kind::kAttest) return reply;  // the attestation document or an error, JSON
  if (!result.response_nonce.empty()) {
    // Header values come from a worker: only well-formed ones go out.
    if (result.response_nonce.size() != 2 * ehbp::kResponseNonceLength || !IsHex(result.response_nonce)) {
      LogWarn("frontend_bad_result", {{"id", config_.id}, {"request_id", pending.rid}, {"error", "malformed nonce"}});
      return ErrorReply(502, "the worker's answer was malformed");
    }
    reply.headers.emplace_back(ehbp::kResponseNonceHeader, result.response_nonce);
    reply.content_type = "application/octet-stream";
  } else if (result.json_length) {
    reply.content_type = "application/octet-stream";  // JSON followed by binary tensor data
  }
  if (result.json_length) reply.headers.emplace_back(kserve::kHeaderLengthHeader, std::to_string(*result.json_length));
  return reply;
}

// Worker liveness and queue depths, pipelined on the command connection;
// every tenth poll also trims the result stream.
void FrontendServer::Impl::Poll() {
  if (stopping_ || polls_waiting_ > 0) return;
  if (!CommandsReady()) {
    for (auto& [model, live] : live_) live = false;
    return;
  }
  const std::string fresh_since = std::to_string(queue::UnixNowMs() - queue::kHeartbeatTtlMs);
  for (const std::string& model : config_.models) {
    polls_waiting_ += 2;
    commands_.connection->Command({"ZCOUNT", queue::WorkersKey(model), fresh_since, "+inf"},
                                  [this, model](Result<queue::RedisReply> reply) {
                                    --polls_waiting_;
                                    live_[model] = reply.ok() && reply->is_integer() && reply->integer() > 0;
                                  });
    commands_.connection->Command({"XLEN", queue::RequestStream(model)}, [this, model](Result<queue::RedisReply> reply) {
      --polls_waiting_;
      if (reply.ok() && reply->is_integer()) queue_depth_.at(model)->Set(static_cast<double>(reply->integer()));
    });
  }
  if (++polls_ % kTrimEveryPolls == 0) {
    const std::string max_length = std::to_string(config_.results_max_length);
    ++polls_waiting_;
    commands_.connection->Command({"XTRIM", result_stream_, "MAXLEN", "~", max_length},
                                  [this](Result<queue::RedisReply>) { --polls_waiting_; });
  }
}

void FrontendServer::Impl::OnPollTimer(evutil_socket_t, short, void* self_ptr) {
  static_cast<Impl*>(self_ptr)->Poll();
}

bool FrontendServer::Impl::Ready() const {
  if (stopping_ || !CommandsReady() || !results_.connection->ready()) return false;
  return std::any_of(live_.begin(), live_.end(), [](const auto& entry) { return entry.second; });
}

// ---- Stop ------------------------------------------------------------------

void FrontendServer::Impl::OnStopEvent(evutil_socket_t, short, void* self_ptr) {
  static_cast<Impl*>(self_ptr)->BeginStop();
}

void FrontendServer::Impl::BeginStop() {
  if (stopping_) return;
  stopping_ = true;
  LogInfo("frontend_stopping", {{"id", config_.id}, {"waiting", pending_.size()}});
  if (bound_ != nullptr) {
    evhttp_del_accept_socket(http_.get(), bound_);
    bound_ = nullptr;
  }
  event_del(poll_timer_.get());
  for (Link* link : {&commands_, &results_}) evtimer_del(link->retry.get());
  std::vector<uint64_t> waiting;
  for (const auto& [seq, pending] : pending_) waiting.push_back(seq);
  for (uint64_t seq : waiting) {
    HttpReply reply = ErrorReply(503, "the front-end is shutting down");
    reply.headers.emplace_back("Connection", "close");
    Finish(seq, std::move(reply));
  }
  // Results still on their way may land; then the stream goes (a result
  // stream has one reader, and it is leaving).
  if (CommandsReady()) {
    const std::string seconds = std::to_string(kResultStreamLingerSeconds);
    commands_.connection->Command({"EXPIRE", result_stream_, seconds}, [](Result<queue::RedisReply>) {});
  }
  // Let those replies (and the EXPIRE) go out before the loop ends.
  stop_deadline_ = Clock::now() + std::chrono::milliseconds(kStopDrainMs);
  const timeval check = Milliseconds(kDrainCheckMs);
  event_add(drain_timer_.get(), &check);
}

void FrontendServer::Impl::OnDrainTimer(evutil_socket_t, short, void* self_ptr) {
  auto* self = static_cast<Impl*>(self_ptr);
  const bool sent = self->sending_.empty() && self->commands_.connection->waiting() == 0;
  if (sent || Clock::now() >= self->stop_deadline_) event_base_loopbreak(self->base_.get());
}

// ---- FrontendServer ----------------------------------------------------------

FrontendServer::FrontendServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FrontendServer::~FrontendServer() = default;

Result<std::unique_ptr<FrontendServer>> FrontendServer::Start(FrontendConfig config, metrics::Registry& registry) {
  // Locks inside libevent, so that Stop may wake the loop from another
  // thread. Must come before the event_base is created.
  static std::once_flag threads_once;
  static int threads_result = 0;
  std::call_once(threads_once, [] { threads_result = evthread_use_pthreads(); });
  if (threads_result != 0) return Status::Internal("front-end: evthread_use_pthreads failed");
  // libevent writes with write(2): a client that hangs up must be an error
  // value, not the end of the process.
  signal(SIGPIPE, SIG_IGN);

  auto impl = std::make_unique<Impl>(std::move(config), registry);
  PPML_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<FrontendServer>(new FrontendServer(std::move(impl)));
}

Status FrontendServer::StopOnSignals(std::initializer_list<int> signals) { return impl_->StopOnSignals(signals); }
Status FrontendServer::Run() { return impl_->Run(); }
void FrontendServer::Stop() { impl_->Stop(); }
uint16_t FrontendServer::port() const { return impl_->port(); }
const std::string& FrontendServer::id() const { return impl_->id(); }
std::string FrontendServer::url() const { return impl_->url(); }

}  // namespace ppml::frontend
