// A small blocking HTTP(S) client for the front-end tests: one request per
// connection to 127.0.0.1:port (Connection: close), the reply read to EOF.
// TLS verifies the server against a CA file and the IP 127.0.0.1 with the
// same settings the Redis client uses (queue/transport.h), and can offer a
// client certificate.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "queue/transport.h"

namespace ppml::testing {

struct HttpsResponse {
  int status = -1;  // -1: no response; `error` says why
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string error;

  // The header's value, "" when absent.
  std::string Header(std::string name) const {
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct HttpsRequest {
  std::string method = "GET";
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool send_content_length = true;
  int receive_timeout_ms = 15000;  // then the client gives up and hangs up
};

class HttpsClient {
 public:
  // `ca_file` empty: plain HTTP.
  explicit HttpsClient(uint16_t port, std::string ca_file = "", std::string cert_file = "", std::string key_file = "")
      : port_(port), ca_file_(std::move(ca_file)), cert_file_(std::move(cert_file)), key_file_(std::move(key_file)) {
    // SSL_write uses write(2): a server that hangs up (413, a refused
    // client certificate) must fail the write, not kill the test.
    ::signal(SIGPIPE, SIG_IGN);
  }

  HttpsResponse Get(const std::string& path) const { return Send({"GET", path, {}, "", true, 15000}); }
  HttpsResponse Post(const std::string& path, std::string body,
                     std::vector<std::pair<std::string, std::string>> headers = {}) const {
    return Send({"POST", path, std::move(headers), std::move(body), true, 15000});
  }

  HttpsResponse Send(const HttpsRequest& request) const {
    HttpsResponse response;
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
      response.error = "socket failed";
      return response;
    }
    Closer closer{fd};
    // A hang fails the test rather than the run.
    timeval timeout{request.receive_timeout_ms / 1000, (request.receive_timeout_ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    timeout = timeval{15, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      response.error = "connect failed";
      return response;
    }
    std::string wire = request.method + " " + request.path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    for (const auto& [name, value] : request.headers) wire += name + ": " + value + "\r\n";
    if (request.send_content_length) wire += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
    wire += "\r\n";
    wire += request.body;

    std::string raw;
    if (ca_file_.empty()) {
      size_t sent = 0;
      while (sent < wire.size()) {
        const ssize_t n = ::send(fd, wire.data() + sent, wire.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;  // the server may answer (413) before taking the whole body
        sent += static_cast<size_t>(n);
      }
      char buffer[16384];
      for (;;) {
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        raw.append(buffer, static_cast<size_t>(n));
      }
    } else {
      queue::RedisTlsOptions options;
      options.ca_file = ca_file_;
      options.cert_file = cert_file_;
      options.key_file = key_file_;
      auto ctx = queue::TlsClientContext(options);
      if (!ctx.ok()) {
        response.error = ctx.status().ToString();
        return response;
      }
      queue::SslPtr ssl(SSL_new(ctx->get()));
      if (!ssl || !queue::ConfigureTlsClient(ssl.get(), "127.0.0.1").ok() || SSL_set_fd(ssl.get(), fd) != 1) {
        response.error = "TLS setup failed";
        return response;
      }
      if (SSL_connect(ssl.get()) != 1) {
        response.error = "TLS handshake failed: " + OpenSslError();
        return response;
      }
      size_t sent = 0;
      while (sent < wire.size()) {
        const int n = SSL_write(ssl.get(), wire.data() + sent, static_cast<int>(std::min<size_t>(wire.size() - sent, 1 << 20)));
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      char buffer[16384];
      for (;;) {
        const int n = SSL_read(ssl.get(), buffer, sizeof(buffer));
        if (n <= 0) break;
        raw.append(buffer, static_cast<size_t>(n));
      }
      ERR_clear_error();
    }
    Parse(raw, response);
    return response;
  }

 private:
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  };

  static std::string OpenSslError() {
    char text[256] = {};
    ERR_error_string_n(ERR_get_error(), text, sizeof(text));
    ERR_clear_error();
    return text;
  }

  static void Parse(const std::string& raw, HttpsResponse& response) {
    const size_t header_end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.", 0) != 0 || header_end == std::string::npos) {
      response.error = "no HTTP response (" + std::to_string(raw.size()) + " bytes)";
      return;
    }
    response.status = std::stoi(raw.substr(9, 3));
    size_t line_start = raw.find("\r\n") + 2;
    while (line_start < header_end) {
      size_t line_end = raw.find("\r\n", line_start);
      const std::string line = raw.substr(line_start, line_end - line_start);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
        size_t value_start = colon + 1;
        while (value_start < line.size() && line[value_start] == ' ') ++value_start;
        response.headers[name] = line.substr(value_start);
      }
      line_start = line_end + 2;
    }
    response.body = raw.substr(header_end + 4);
    if (auto it = response.headers.find("content-length"); it != response.headers.end()) {
      const size_t length = std::stoul(it->second);
      if (response.body.size() > length) response.body.resize(length);
      if (response.body.size() < length) response.error = "body shorter than Content-Length";
    }
  }

  uint16_t port_;
  std::string ca_file_, cert_file_, key_file_;
};

}  // namespace ppml::testing
