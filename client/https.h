// A small blocking HTTP/1.1 client over TCP or TLS (OpenSSL), for the ppml
// client library and the `ppml infer` / `ppml attest` commands.
//
//   Result<HttpTarget> target = ParseUrl("https://127.0.0.1:8443");
//   target->ca_file = "ca.pem";
//   Result<HttpClient> http = HttpClient::Create(*target);
//   Result<HttpResponse> r = http->Request("GET", "/v2/models/m", {}, {});
//
// What it does
//   - URLs: http://HOST[:PORT][/PREFIX] and https://...; HOST is a DNS name,
//     an IPv4 address or a bracketed IPv6 address ([::1]); default ports 80
//     and 443; PREFIX (no query, no fragment, no user info) is put before
//     every request path (a front-end behind a path-routing proxy).
//   - TLS: 1.2 at least; the server certificate must chain to ca_file (the
//     system's CAs when it is empty) and name the host (or server_name): a
//     DNS name against its DNS subject alt names (SNI sent), an IP address
//     against its IP SANs (no SNI: RFC 6066). Optional client certificate.
//     A certificate that does not verify is PermissionDenied carrying
//     OpenSSL's reason ("certificate verify failed: unable to get local
//     issuer certificate", "... hostname mismatch").
//   - Requests: Host, Content-Length (whenever there is a body, and for
//     POST/PUT/PATCH always), caller headers (CR, LF and NUL refused).
//   - Responses: status line, headers, body delimited by Content-Length, by
//     chunked transfer coding (extensions and trailers skipped), or by the
//     end of the connection; 1xx interim responses skipped; no body for HEAD,
//     204 and 304. At most max_header_bytes of status line and headers and
//     max_response_bytes of body.
//   - Connections: an HttpClient keeps its connection open between requests
//     (HTTP/1.1 keep-alive) unless the server says `Connection: close` or
//     ends the body with the connection. A kept connection the server has
//     closed meanwhile is noticed before reuse; a request that fails on a
//     reused connection before any byte of the reply arrived is sent once
//     more on a fresh connection (what browsers do for a server's idle close).
//   - Timeouts: connect_timeout_ms bounds name resolution's aftermath, TCP
//     connect and the TLS handshake; io_timeout_ms bounds the rest of one
//     request (sending it and receiving the whole reply). 0 means no limit.
//   - Sockets, TLS and deadlines are common/net.h's (shared with the Redis
//     client): writes use send(MSG_NOSIGNAL) (TLS included), so a server that
//     hung up is an error, never SIGPIPE.
//
// Errors (every message starts with the URL, e.g. "https://h:8443: ..."):
//   InvalidArgument    a malformed URL or header; CA/certificate/key files
//                      that do not load (naming the file)
//   Unavailable        cannot resolve, connect refused, connection reset or
//                      closed before the reply was complete
//   DeadlineExceeded   a timeout above
//   PermissionDenied   the server certificate does not verify, or the
//                      server rejected our client certificate
//   DataLoss           a reply that is not HTTP (bad status line, header,
//                      chunk size, Content-Length)
//   ResourceExhausted  a reply over max_header_bytes or max_response_bytes
// An HTTP error status (4xx, 5xx) is not an error here: it is a response.
//
// Thread safety: an HttpClient is used by one thread at a time; separate
// clients may run on separate threads (OpenSSL 3 needs no global locking).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ppml::net {
class Transport;
}  // namespace ppml::net

namespace ppml::client {

struct HttpTarget {
  bool tls = true;          // https:// (true) or http:// (false)
  std::string host;         // without brackets for IPv6
  uint16_t port = 443;
  std::string path_prefix;  // "" or "/prefix" (no trailing slash)

  std::string ca_file;           // PEM; empty: the system's CAs
  std::string client_cert_file;  // PEM chain; with client_key_file, offered to the server
  std::string client_key_file;
  std::string server_name;       // name to verify and send as SNI; empty: host

  int connect_timeout_ms = 10'000;
  int io_timeout_ms = 120'000;
  size_t max_header_bytes = 64 * 1024;
  size_t max_response_bytes = size_t{512} << 20;

  // "https://host:port" (IPv6 in brackets), with the prefix: what messages name.
  std::string Url() const;
};

// Parses http(s)://HOST[:PORT][/PREFIX]; the other fields keep their defaults.
// InvalidArgument naming the URL and what is wrong with it.
Result<HttpTarget> ParseUrl(std::string_view url);

// Header names are compared case-insensitively; order is kept.
using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 0;
  std::string reason;
  HttpHeaders headers;
  std::string body;  // bytes, as received (chunked coding removed)

  // The first header named `name` (any case), without surrounding blanks.
  std::optional<std::string> Header(std::string_view name) const;
};

class HttpClient {
 public:
  // Loads the TLS settings (CA file, client certificate and key) now, so a
  // missing file is reported before anything touches the network; does not
  // connect.
  static Result<HttpClient> Create(HttpTarget target);

  HttpClient(HttpClient&&) noexcept;
  HttpClient& operator=(HttpClient&&) noexcept;
  ~HttpClient();

  // Sends `method path` (path starts with '/'; the target's prefix is put
  // before it) and reads the whole reply.
  Result<HttpResponse> Request(std::string_view method, std::string_view path, const HttpHeaders& headers,
                               std::span<const uint8_t> body);

  // Closes the kept connection, if any.
  void Close();
  // false: one connection per request (`Connection: close`).
  void set_keep_alive(bool keep_alive) { keep_alive_ = keep_alive; }

  const HttpTarget& target() const { return target_; }
  // Connections opened so far (tests of keep-alive).
  int connections_opened() const { return connections_opened_; }

 private:
  struct TlsContext;
  HttpClient(HttpTarget target, std::shared_ptr<TlsContext> tls);
  Result<HttpResponse> Attempt(std::string_view method, const std::string& request_head,
                               std::span<const uint8_t> body, bool& retryable);

  HttpTarget target_;
  std::shared_ptr<TlsContext> tls_;
  std::unique_ptr<net::Transport> connection_;
  bool keep_alive_ = true;
  int connections_opened_ = 0;
};

// One request on a connection of its own (closed afterwards).
Result<HttpResponse> HttpRequest(const HttpTarget& target, std::string_view method, std::string_view path,
                                 const HttpHeaders& headers, std::span<const uint8_t> body);

// Percent-encodes `text` for one path segment or a query value (RFC 3986
// unreserved characters stay as they are).
std::string UrlEncode(std::string_view text);

}  // namespace ppml::client
