#include "client/https.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "common/net.h"

namespace ppml::client {
namespace {

using net::Deadline;
using net::DeadlineAfter;

constexpr std::string_view kUserAgent = "ppml-client/0.1";

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Whether the comma-separated header value `list` holds `token` (any case).
bool HasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = Trim(list.substr(0, comma));
    if (EqualsIgnoreCase(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool IsIpv6(const std::string& text) {
  in6_addr v6;
  return inet_pton(AF_INET6, text.c_str(), &v6) == 1;
}

}  // namespace

// ---- Target ----------------------------------------------------------------------

std::string HttpTarget::Url() const {
  std::string host_part = IsIpv6(host) ? "[" + host + "]" : host;
  return std::string(tls ? "https://" : "http://") + host_part + ":" + std::to_string(port) + path_prefix;
}

Result<HttpTarget> ParseUrl(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("URL \"" + std::string(url) + "\": " + why);
  };
  HttpTarget target;
  std::string_view rest;
  const std::string lower = Lower(url.substr(0, std::min<size_t>(url.size(), 8)));
  if (lower.rfind("https://", 0) == 0) {
    target.tls = true;
    target.port = 443;
    rest = url.substr(8);
  } else if (lower.rfind("http://", 0) == 0) {
    target.tls = false;
    target.port = 80;
    rest = url.substr(7);
  } else {
    return bad("expected http://HOST[:PORT] or https://HOST[:PORT]");
  }
  if (rest.find_first_of("?#") != std::string_view::npos) return bad("a query or fragment is not allowed");
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) return bad("user information (user@) is not supported");
  if (authority.empty()) return bad("no host");

  std::string_view port_text;
  if (authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated [IPv6 address]");
    target.host = std::string(authority.substr(1, close - 1));
    if (!IsIpv6(target.host)) return bad("\"" + target.host + "\" is not an IPv6 address");
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("unexpected text after the IPv6 address");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    const size_t colon = authority.find(':');
    target.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
      if (port_text.find(':') != std::string_view::npos) return bad("IPv6 addresses go in brackets: [::1]:8443");
    }
    if (target.host.empty()) return bad("no host");
    for (char c : target.host) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') {
        return bad("host \"" + target.host + "\" has a character other than letters, digits, '-', '.', '_'");
      }
    }
  }
  if (!port_text.empty()) {
    if (port_text.size() > 5 || !std::all_of(port_text.begin(), port_text.end(),
                                             [](char c) { return c >= '0' && c <= '9'; })) {
      return bad("port \"" + std::string(port_text) + "\" is not a number from 1 to 65535");
    }
    const int port = std::stoi(std::string(port_text));
    if (port < 1 || port > 65535) return bad("port " + std::to_string(port) + " is not from 1 to 65535");
    target.port = static_cast<uint16_t>(port);
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  for (char c : path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return bad("the path has a space or control character");
  }
  target.path_prefix = std::string(path);
  return target;
}

std::optional<std::string> HttpResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return std::string(Trim(value));
  }
  return std::nullopt;
}

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// ---- Connections --------------------------------------------------------------------

// The TLS settings, loaded once by Create and shared by every connection.
struct HttpClient::TlsContext {
  net::SslCtxPtr ctx;
};

namespace {

// Where the connections go; messages start with the URL.
net::Endpoint EndpointOf(const HttpTarget& target) {
  net::Endpoint endpoint;
  endpoint.name = target.Url();
  endpoint.host = target.host;
  endpoint.port = target.port;
  endpoint.tls = target.tls;
  endpoint.tls_options.ca_file = target.ca_file;
  endpoint.tls_options.cert_file = target.client_cert_file;
  endpoint.tls_options.key_file = target.client_key_file;
  endpoint.tls_options.server_name = target.server_name;
  return endpoint;
}

// ---- Reply parsing -----------------------------------------------------------------

// Buffered reads of one reply from a connection.
class ReplyReader {
 public:
  ReplyReader(net::Transport& connection, Deadline deadline, const std::string& name)
      : connection_(connection), deadline_(deadline), name_(name) {}

  size_t received() const { return received_; }

  // One line without its CRLF (a bare LF is accepted too); at most `limit`
  // bytes are looked at. `what` names the line in messages.
  Result<std::string> ReadLine(size_t limit, const char* what) {
    for (;;) {
      const size_t lf = buffer_.find('\n', position_);
      if (lf != std::string::npos) {
        size_t end = lf;
        if (end > position_ && buffer_[end - 1] == '\r') --end;
        std::string line = buffer_.substr(position_, end - position_);
        if (lf + 1 - position_ > limit) return TooLarge(what);
        position_ = lf + 1;
        Compact();
        return line;
      }
      if (buffer_.size() - position_ > limit) return TooLarge(what);
      PPML_ASSIGN_OR_RETURN(size_t got, Fill());
      if (got == 0) {
        return Status::Unavailable(name_ + ": connection closed by the server " +
                                   (received_ == 0 ? std::string("before replying") : std::string("inside the ") + what));
      }
    }
  }

  // Appends exactly `count` bytes to `out`.
  Status ReadExact(size_t count, std::string& out, const char* what) {
    while (count > 0) {
      if (position_ == buffer_.size()) {
        PPML_ASSIGN_OR_RETURN(size_t got, Fill());
        if (got == 0) {
          return Status::Unavailable(name_ + ": connection closed by the server inside the " + std::string(what) +
                                     " (" + std::to_string(count) + " bytes missing)");
        }
      }
      const size_t take = std::min(count, buffer_.size() - position_);
      out.append(buffer_, position_, take);
      position_ += take;
      count -= take;
      Compact();
    }
    return Status::Ok();
  }

  // Appends everything up to the end of the stream, at most `limit` bytes in `out`.
  Status ReadToEnd(std::string& out, size_t limit) {
    for (;;) {
      out.append(buffer_, position_, std::string::npos);
      position_ = buffer_.size();
      Compact();
      if (out.size() > limit) return TooLarge("body");
      PPML_ASSIGN_OR_RETURN(size_t got, Fill());
      if (got == 0) return Status::Ok();
    }
  }

  // Bytes read past the reply (a server that sent more than it announced).
  bool HasUnread() const { return position_ < buffer_.size(); }

 private:
  Result<size_t> Fill() {
    char chunk[16 * 1024];
    PPML_ASSIGN_OR_RETURN(size_t got, connection_.Read(std::span<char>(chunk, sizeof(chunk)), deadline_));
    buffer_.append(chunk, got);
    received_ += got;
    return got;
  }
  void Compact() {
    if (position_ == buffer_.size()) {
      buffer_.clear();
      position_ = 0;
    } else if (position_ > (size_t{1} << 16)) {
      buffer_.erase(0, position_);
      position_ = 0;
    }
  }
  Status TooLarge(const std::string& what) {
    return Status::ResourceExhausted(name_ + ": the reply's " + what + " is larger than this client accepts");
  }

  net::Transport& connection_;
  Deadline deadline_;
  const std::string& name_;
  std::string buffer_;
  size_t position_ = 0;
  size_t received_ = 0;
};

Result<uint64_t> ParseDecimal(std::string_view text) {
  if (text.empty() || text.size() > 18) return Status::InvalidArgument("not a decimal length");
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return Status::InvalidArgument("not a decimal length");
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

Result<uint64_t> ParseHexSize(std::string_view text) {
  if (text.empty() || text.size() > 15) return Status::InvalidArgument("bad chunk size");
  uint64_t value = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else return Status::InvalidArgument("bad chunk size");
    value = value * 16 + static_cast<uint64_t>(digit);
  }
  return value;
}

struct ParsedReply {
  HttpResponse response;
  bool reusable = false;  // the connection may carry another request
};

Result<ParsedReply> ReadReply(ReplyReader& reader, std::string_view method, const HttpTarget& target,
                              const std::string& name) {
  ParsedReply parsed;
  HttpResponse& response = parsed.response;
  bool http11 = false;
  size_t header_bytes = 0;
  for (;;) {  // interim 1xx responses are skipped
    PPML_ASSIGN_OR_RETURN(std::string status_line, reader.ReadLine(target.max_header_bytes, "status line"));
    header_bytes = status_line.size();
    // HTTP/1.x SSS reason
    if (status_line.size() < 12 || status_line.compare(0, 7, "HTTP/1.") != 0 || status_line[8] != ' ' ||
        !std::isdigit(static_cast<unsigned char>(status_line[9])) ||
        !std::isdigit(static_cast<unsigned char>(status_line[10])) ||
        !std::isdigit(static_cast<unsigned char>(status_line[11])) ||
        (status_line.size() > 12 && status_line[12] != ' ')) {
      return Status::DataLoss(name + ": the reply is not HTTP/1.x (status line \"" +
                              status_line.substr(0, 40) + "\")");
    }
    http11 = status_line[7] != '0';
    response.status = std::stoi(status_line.substr(9, 3));
    response.reason = status_line.size() > 13 ? status_line.substr(13) : "";
    response.headers.clear();
    for (;;) {
      PPML_ASSIGN_OR_RETURN(std::string line, reader.ReadLine(target.max_header_bytes, "headers"));
      header_bytes += line.size() + 2;
      if (header_bytes > target.max_header_bytes) {
        return Status::ResourceExhausted(name + ": the reply's headers are larger than " +
                                         std::to_string(target.max_header_bytes) + " bytes");
      }
      if (line.empty()) break;
      const size_t colon = line.find(':');
      if (colon == std::string::npos || colon == 0 || line[0] == ' ' || line[0] == '\t') {
        return Status::DataLoss(name + ": malformed reply header line \"" + line.substr(0, 40) + "\"");
      }
      std::string key = line.substr(0, colon);
      if (key.find_first_of(" \t") != std::string::npos) {
        return Status::DataLoss(name + ": malformed reply header name \"" + key.substr(0, 40) + "\"");
      }
      response.headers.emplace_back(std::move(key), std::string(Trim(std::string_view(line).substr(colon + 1))));
    }
    if (response.status >= 100 && response.status < 200 && response.status != 101) continue;
    break;
  }

  const std::optional<std::string> connection = response.Header("Connection");
  bool keep = http11 && !(connection && HasToken(*connection, "close"));
  const bool no_body = EqualsIgnoreCase(method, "HEAD") || response.status == 204 || response.status == 304 ||
                       (response.status >= 100 && response.status < 200);
  const std::optional<std::string> transfer_encoding = response.Header("Transfer-Encoding");
  std::optional<uint64_t> content_length;
  for (const auto& [key, value] : response.headers) {
    if (!EqualsIgnoreCase(key, "Content-Length")) continue;
    Result<uint64_t> length = ParseDecimal(Trim(value));
    if (!length.ok() || (content_length && *content_length != *length)) {
      return Status::DataLoss(name + ": the reply's Content-Length \"" + value + "\" is not valid");
    }
    content_length = *length;
  }

  if (no_body) {
    // nothing
  } else if (transfer_encoding && !EqualsIgnoreCase(*transfer_encoding, "identity")) {
    std::string_view codings = *transfer_encoding;
    const size_t last_comma = codings.rfind(',');
    std::string_view last = Trim(last_comma == std::string_view::npos ? codings : codings.substr(last_comma + 1));
    if (!EqualsIgnoreCase(last, "chunked")) {
      // Delimited by the end of the connection (RFC 9112 §6.3).
      keep = false;
      PPML_RETURN_IF_ERROR(reader.ReadToEnd(response.body, target.max_response_bytes));
    } else {
      for (;;) {
        PPML_ASSIGN_OR_RETURN(std::string size_line, reader.ReadLine(1024, "chunk size line"));
        std::string_view size_text = Trim(std::string_view(size_line).substr(0, size_line.find(';')));
        Result<uint64_t> size = ParseHexSize(size_text);
        if (!size.ok()) {
          return Status::DataLoss(name + ": malformed chunk size line \"" + size_line.substr(0, 40) + "\"");
        }
        if (*size == 0) break;
        if (response.body.size() + *size > target.max_response_bytes) {
          return Status::ResourceExhausted(name + ": the reply's body is larger than " +
                                           std::to_string(target.max_response_bytes) + " bytes");
        }
        PPML_RETURN_IF_ERROR(reader.ReadExact(static_cast<size_t>(*size), response.body, "chunked body"));
        PPML_ASSIGN_OR_RETURN(std::string end, reader.ReadLine(1024, "chunked body"));
        if (!end.empty()) return Status::DataLoss(name + ": a chunk is longer than its size line says");
      }
      for (;;) {  // trailers, up to the empty line
        PPML_ASSIGN_OR_RETURN(std::string trailer, reader.ReadLine(target.max_header_bytes, "trailers"));
        if (trailer.empty()) break;
      }
    }
  } else if (content_length) {
    if (*content_length > target.max_response_bytes) {
      return Status::ResourceExhausted(name + ": the reply's body (" + std::to_string(*content_length) +
                                       " bytes) is larger than " + std::to_string(target.max_response_bytes) +
                                       " bytes");
    }
    response.body.reserve(static_cast<size_t>(*content_length));
    PPML_RETURN_IF_ERROR(reader.ReadExact(static_cast<size_t>(*content_length), response.body, "body"));
  } else {
    keep = false;
    PPML_RETURN_IF_ERROR(reader.ReadToEnd(response.body, target.max_response_bytes));
  }
  if (reader.HasUnread()) keep = false;  // more than announced: do not trust the stream
  parsed.reusable = keep;
  return parsed;
}

bool ValidHeaderText(std::string_view text) {
  return std::none_of(text.begin(), text.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

}  // namespace

// ---- HttpClient -----------------------------------------------------------------------

HttpClient::HttpClient(HttpTarget target, std::shared_ptr<TlsContext> tls)
    : target_(std::move(target)), tls_(std::move(tls)) {}
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;
HttpClient::~HttpClient() = default;

Result<HttpClient> HttpClient::Create(HttpTarget target) {
  if (target.host.empty()) return Status::InvalidArgument("HTTP target without a host");
  std::shared_ptr<TlsContext> tls;
  if (target.tls) {
    // Said in this client's terms before net's ("cert_file and key_file").
    if (target.client_cert_file.empty() != target.client_key_file.empty()) {
      return Status::InvalidArgument(target.Url() +
                                     ": a client certificate and its key go together (give both or neither)");
    }
    Result<net::SslCtxPtr> ctx = net::TlsClientContext(EndpointOf(target).tls_options);
    if (!ctx.ok()) return ctx.status().WithContext(target.Url());
    tls = std::make_shared<TlsContext>();
    tls->ctx = std::move(ctx).value();
  } else if (!target.client_cert_file.empty() || !target.client_key_file.empty()) {
    return Status::InvalidArgument(target.Url() + ": a client certificate needs https://");
  }
  return HttpClient(std::move(target), std::move(tls));
}

void HttpClient::Close() { connection_.reset(); }

Result<HttpResponse> HttpClient::Attempt(std::string_view method, const std::string& request_head,
                                         std::span<const uint8_t> body, bool& retryable) {
  const std::string name = target_.Url();
  const Deadline deadline = DeadlineAfter(target_.io_timeout_ms);
  retryable = false;
  Status sent;
  if (body.size() <= 64 * 1024) {
    std::string message = request_head;
    message.append(reinterpret_cast<const char*>(body.data()), body.size());
    sent = connection_->Write(message, deadline);
  } else {
    sent = connection_->Write(request_head, deadline);
    if (sent.ok()) {
      sent = connection_->Write(std::string_view(reinterpret_cast<const char*>(body.data()), body.size()), deadline);
    }
  }
  ReplyReader reader(*connection_, deadline, name);
  if (!sent.ok()) {
    // A server that rejects a request early may answer before it has read it
    // all, then close: read that answer if it is there.
    if (sent.code() != StatusCode::kUnavailable) return sent;
    Result<ParsedReply> early = ReadReply(reader, method, target_, name);
    if (!early.ok()) {
      retryable = reader.received() == 0;
      return sent;
    }
    connection_.reset();
    return std::move(early->response);
  }
  Result<ParsedReply> reply = ReadReply(reader, method, target_, name);
  if (!reply.ok()) {
    retryable = reader.received() == 0 && reply.status().code() == StatusCode::kUnavailable;
    return reply.status();
  }
  if (!reply->reusable || !keep_alive_) connection_.reset();
  return std::move(reply->response);
}

Result<HttpResponse> HttpClient::Request(std::string_view method, std::string_view path, const HttpHeaders& headers,
                                         std::span<const uint8_t> body) {
  const std::string name = target_.Url();
  if (method.empty() || !std::all_of(method.begin(), method.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
    return Status::InvalidArgument(name + ": bad HTTP method \"" + std::string(method) + "\"");
  }
  if (path.empty() || path.front() != '/' ||
      std::any_of(path.begin(), path.end(), [](char c) { return static_cast<unsigned char>(c) <= 0x20; })) {
    return Status::InvalidArgument(name + ": bad request path \"" + std::string(path) + "\"");
  }
  std::string head;
  head.reserve(256);
  head.append(method).append(" ").append(target_.path_prefix).append(path).append(" HTTP/1.1\r\n");
  const bool default_port = target_.port == (target_.tls ? 443 : 80);
  head.append("Host: ")
      .append(IsIpv6(target_.host) ? "[" + target_.host + "]" : target_.host)
      .append(default_port ? "" : ":" + std::to_string(target_.port))
      .append("\r\n");
  head.append("User-Agent: ").append(kUserAgent).append("\r\n");
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    head.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  if (!keep_alive_) head.append("Connection: close\r\n");
  for (const auto& [key, value] : headers) {
    if (key.empty() || !ValidHeaderText(key) || key.find_first_of(" \t:") != std::string::npos ||
        !ValidHeaderText(value)) {
      return Status::InvalidArgument(name + ": header \"" + key + "\" has a character HTTP does not allow");
    }
    if (EqualsIgnoreCase(key, "Host") || EqualsIgnoreCase(key, "Content-Length") ||
        EqualsIgnoreCase(key, "Transfer-Encoding") || EqualsIgnoreCase(key, "Connection")) {
      return Status::InvalidArgument(name + ": header \"" + key + "\" is set by the HTTP client itself");
    }
    head.append(key).append(": ").append(value).append("\r\n");
  }
  head.append("\r\n");

  for (int attempt = 0;; ++attempt) {
    bool reused = false;
    if (connection_ && connection_->Stale()) connection_.reset();
    if (connection_) {
      reused = true;
    } else {
      const Deadline connect_deadline = DeadlineAfter(target_.connect_timeout_ms);
      PPML_ASSIGN_OR_RETURN(connection_,
                            net::OpenTransport(EndpointOf(target_), connect_deadline, tls_ ? tls_->ctx.get() : nullptr));
      ++connections_opened_;
    }
    bool retryable = false;
    Result<HttpResponse> response = Attempt(method, head, body, retryable);
    if (response.ok()) return response;
    connection_.reset();
    if (!(reused && retryable && attempt == 0)) return response.status();
  }
}

Result<HttpResponse> HttpRequest(const HttpTarget& target, std::string_view method, std::string_view path,
                                 const HttpHeaders& headers, std::span<const uint8_t> body) {
  PPML_ASSIGN_OR_RETURN(HttpClient client, HttpClient::Create(target));
  client.set_keep_alive(false);
  return client.Request(method, path, headers, body);
}

}  // namespace ppml::client
