#include "common/metrics_server.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/json_line.h"
#include "common/listen.h"
#include "common/log.h"

namespace ppml::metrics {
namespace {

struct EvbufferDeleter {
  void operator()(evbuffer* buffer) const { evbuffer_free(buffer); }
};

void Reply(evhttp_request* request, int code, const char* reason, std::string_view content_type,
           std::string_view body) {
  evkeyvalq* headers = evhttp_request_get_output_headers(request);
  evhttp_add_header(headers, "Content-Type", std::string(content_type).c_str());
  evhttp_add_header(headers, "Cache-Control", "no-store");
  if (evhttp_request_get_command(request) == EVHTTP_REQ_HEAD) {
    // libevent 2.1 would send a body after HEAD's headers; send GET's length only.
    evhttp_add_header(headers, "Content-Length", std::to_string(body.size()).c_str());
    evhttp_send_reply(request, code, reason, nullptr);
    return;
  }
  std::unique_ptr<evbuffer, EvbufferDeleter> buffer(evbuffer_new());
  if (buffer == nullptr || evbuffer_add(buffer.get(), body.data(), body.size()) != 0) {
    evhttp_send_error(request, 500, "Internal Server Error");
    return;
  }
  evhttp_send_reply(request, code, reason, buffer.get());
}

void ReplyJson(evhttp_request* request, int code, const char* reason, const std::string& json) {
  Reply(request, code, reason, "application/json", json);
}

}  // namespace

void MetricsServer::EventBaseDeleter::operator()(event_base* base) const { event_base_free(base); }
void MetricsServer::EvhttpDeleter::operator()(evhttp* http) const { evhttp_free(http); }
void MetricsServer::EventDeleter::operator()(event* ev) const { event_free(ev); }

MetricsServer::MetricsServer(const Registry& registry, std::function<bool()> ready)
    : registry_(registry), ready_(std::move(ready)) {}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const Registry& registry, const std::string& host,
                                                            uint16_t port, std::function<bool()> ready) {
  // Locks inside libevent, so that the destructor may wake the loop from the
  // owner's thread. Must come before the event_base is created.
  static std::once_flag threads_once;
  static int threads_result = 0;
  std::call_once(threads_once, [] { threads_result = evthread_use_pthreads(); });
  if (threads_result != 0) return Status::Internal("metrics server: evthread_use_pthreads failed");

  PPML_ASSIGN_OR_RETURN(ScopedFd fd, ListenTcp(host, port, 128, "metrics server"));
  std::unique_ptr<MetricsServer> server(new MetricsServer(registry, std::move(ready)));
  server->port_ = BoundPort(fd.get());
  const std::string address = FormatHostPort(host, server->port_);

  server->base_.reset(event_base_new());
  if (server->base_ == nullptr) return Status::Internal("metrics server " + address + ": event_base_new failed");
  server->http_.reset(evhttp_new(server->base_.get()));
  if (server->http_ == nullptr) return Status::Internal("metrics server " + address + ": evhttp_new failed");
  evhttp* http = server->http_.get();
  evhttp_set_gencb(http, &MetricsServer::HandleRequest, server.get());
  // Every method reaches our handler, so each gets our JSON 405 rather than
  // libevent's HTML one.
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                       EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                       EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
  // Nothing here reads a body; keep what a stray client can make us buffer small.
  evhttp_set_max_headers_size(http, 16 * 1024);
  evhttp_set_max_body_size(http, 4 * 1024);
  evhttp_set_timeout(http, 30);
  if (evhttp_accept_socket_with_handle(http, fd.get()) == nullptr) {
    return Status::Internal("metrics server " + address + ": evhttp_accept_socket failed");
  }
  fd.release();  // evhttp closes it when freed

  // Woken from the destructor. An activated event waits for the loop to start,
  // unlike event_base_loopbreak, which a loop that is just starting forgets.
  server->stop_event_.reset(event_new(server->base_.get(), -1, 0, &MetricsServer::HandleStop, server.get()));
  if (server->stop_event_ == nullptr) return Status::Internal("metrics server " + address + ": event_new failed");

  // The thread inherits a fully blocked signal mask (see the header).
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);
  try {
    server->thread_ = std::thread([base = server->base_.get()] { event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY); });
  } catch (const std::system_error& e) {
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return Status::Internal("metrics server " + address + ": cannot start thread: " + e.what());
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);

  LogInfo("metrics_listening", {{"address", address}});
  return server;
}

MetricsServer::~MetricsServer() {
  if (thread_.joinable()) {
    event_active(stop_event_.get(), EV_READ, 0);
    thread_.join();
  }
  // Members go next: the stop event, evhttp (its socket and connections), the base.
}

void MetricsServer::HandleStop(int, short, void* self) {
  event_base_loopbreak(static_cast<MetricsServer*>(self)->base_.get());
}

void MetricsServer::HandleRequest(evhttp_request* request, void* self_ptr) {
  auto* self = static_cast<MetricsServer*>(self_ptr);
  // A C callback: nothing may unwind through libevent.
  try {
    const evhttp_uri* uri = evhttp_request_get_evhttp_uri(request);
    const char* raw_path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
    const std::string path = raw_path != nullptr && *raw_path != '\0' ? raw_path : "/";
    const evhttp_cmd_type method = evhttp_request_get_command(request);

    if (path != "/metrics" && path != "/healthz" && path != "/ready") {
      ReplyJson(request, 404, "Not Found", JsonLine().Add("error", "not found: " + path).str());
      return;
    }
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
      evhttp_add_header(evhttp_request_get_output_headers(request), "Allow", "GET, HEAD");
      ReplyJson(request, 405, "Method Not Allowed", JsonLine().Add("error", "method not allowed").str());
      return;
    }
    if (path == "/metrics") {
      Reply(request, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", self->registry_.Render());
    } else if (path == "/healthz") {
      ReplyJson(request, 200, "OK", JsonLine().Add("status", "ok").str());
    } else {
      const bool ready = !self->ready_ || self->ready_();
      ReplyJson(request, ready ? 200 : 503, ready ? "OK" : "Service Unavailable",
                JsonLine().Add("ready", ready).str());
    }
  } catch (const std::exception& e) {
    LogError("metrics_request_failed", {{"error", e.what()}});
    evhttp_send_error(request, 500, "Internal Server Error");
  }
}

}  // namespace ppml::metrics
