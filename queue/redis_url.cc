// RedisEndpoint from a URL, and back (without the password).
//
//   rediss://worker:s3cr%40t@redis.internal:6380/2
//   \____/   \____/ \______/ \____________/ \__/ \/
//   scheme    user  password      host      port db
#include <arpa/inet.h>

#include <charconv>
#include <climits>

#include "common/crypto.h"
#include "queue/redis.h"

namespace ppml::queue {
namespace {

Status UrlError(const std::string& what) { return Status::InvalidArgument("redis URL: " + what); }

// %XX escapes decoded; `part` names the URL part for the message, which
// never quotes the text itself (it may be a password).
Result<std::string> PercentDecode(std::string_view text, const char* part) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    Result<crypto::Bytes> byte = crypto::FromHex(text.substr(i + 1, 2));
    if (i + 2 >= text.size() || !byte.ok()) {
      return UrlError(std::string("bad %-escape in the ") + part + " at offset " + std::to_string(i));
    }
    out.push_back(static_cast<char>((*byte)[0]));
    i += 2;
  }
  return out;
}

// A decimal in [min, max]; nullopt for anything else (signs, spaces, overflow).
std::optional<int64_t> ParseDecimal(std::string_view text, int64_t min, int64_t max) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || text.front() == '-' || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  if (value < min || value > max) return std::nullopt;
  return value;
}

bool IsHostNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_';
}

Status ParseHostPort(std::string_view text, RedisEndpoint* endpoint) {
  std::string_view port;
  if (text.starts_with('[')) {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return UrlError("IPv6 host has no closing ']'");
    endpoint->host = std::string(text.substr(1, close - 1));
    in6_addr address;
    if (inet_pton(AF_INET6, endpoint->host.c_str(), &address) != 1) {
      return UrlError("'" + endpoint->host + "' in brackets is not an IPv6 address");
    }
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return UrlError("unexpected text after the IPv6 host");
    port = rest.empty() ? std::string_view() : rest.substr(1);
    if (rest == ":") return UrlError("missing port after ':'");
  } else {
    size_t colon = text.find(':');
    if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos) {
      return UrlError("an IPv6 host must be written in brackets, as [::1]:6379");
    }
    endpoint->host = std::string(text.substr(0, colon));
    for (char c : endpoint->host) {
      if (!IsHostNameChar(c)) return UrlError("host '" + endpoint->host + "' has an invalid character");
    }
    if (colon != std::string_view::npos) {
      port = text.substr(colon + 1);
      if (port.empty()) return UrlError("missing port after ':'");
    }
  }
  if (endpoint->host.empty()) return UrlError("missing host");
  if (!port.empty()) {
    std::optional<int64_t> value = ParseDecimal(port, 1, 65535);
    if (!value) return UrlError("port must be 1-65535, got '" + std::string(port) + "'");
    endpoint->port = static_cast<uint16_t>(*value);
  }
  return Status::Ok();
}

Status ParseUserInfo(std::string_view text, RedisEndpoint* endpoint) {
  size_t colon = text.find(':');
  PPML_ASSIGN_OR_RETURN(endpoint->user, PercentDecode(text.substr(0, colon), "user"));
  if (colon != std::string_view::npos) {
    PPML_ASSIGN_OR_RETURN(endpoint->password, PercentDecode(text.substr(colon + 1), "password"));
    if (endpoint->password.empty()) return UrlError("empty password after ':'");
  }
  if (endpoint->user.empty() && endpoint->password.empty()) return UrlError("empty user info before '@'");
  return Status::Ok();
}

}  // namespace

Result<RedisEndpoint> ParseRedisUrl(std::string_view url) {
  RedisEndpoint endpoint;
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return UrlError("missing scheme, expected redis:// or rediss://");
  std::string_view scheme = url.substr(0, scheme_end);
  if (scheme == "rediss") {
    endpoint.tls = true;
  } else if (scheme != "redis") {
    return UrlError("scheme must be redis or rediss, got '" + std::string(scheme) + "'");
  }
  std::string_view rest = url.substr(scheme_end + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) return UrlError("query strings and fragments are not supported");

  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  // The last '@' splits: an unescaped '@' in a password still parses.
  size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    PPML_RETURN_IF_ERROR(ParseUserInfo(authority.substr(0, at), &endpoint));
    authority = authority.substr(at + 1);
  }
  PPML_RETURN_IF_ERROR(ParseHostPort(authority, &endpoint));

  if (slash != std::string_view::npos && slash + 1 < rest.size()) {
    std::string_view db = rest.substr(slash + 1);
    std::optional<int64_t> value = ParseDecimal(db, 0, INT_MAX);
    if (!value) return UrlError("db must be a non-negative integer, got '" + std::string(db) + "'");
    endpoint.db = static_cast<int>(*value);
  }
  return endpoint;
}

std::string RedisEndpoint::Address() const {
  // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on "x" + string.
  std::string address;
  bool ipv6 = host.find(':') != std::string::npos;
  if (ipv6) address += '[';
  address += host;
  if (ipv6) address += ']';
  address += ':';
  address += std::to_string(port);
  return address;
}

std::string RedisEndpoint::RedactedUrl() const {
  std::string url = tls ? "rediss://" : "redis://";
  if (!user.empty()) {
    url += user;
    url += '@';
  }
  url += Address();
  if (db) {
    url += '/';
    url += std::to_string(*db);
  }
  return url;
}

}  // namespace ppml::queue
