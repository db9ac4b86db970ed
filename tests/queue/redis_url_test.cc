// ParseRedisUrl: every part of redis[s]://[user[:password]@]host[:port][/db],
// and each way a URL can be wrong.
#include <gtest/gtest.h>

#include "queue/redis.h"

namespace ppml::queue {
namespace {

TEST(RedisUrlTest, PlainHostAndPort) {
  Result<RedisEndpoint> endpoint = ParseRedisUrl("redis://127.0.0.1:6390");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().ToString();
  EXPECT_EQ(endpoint->host, "127.0.0.1");
  EXPECT_EQ(endpoint->port, 6390);
  EXPECT_FALSE(endpoint->tls);
  EXPECT_FALSE(endpoint->db.has_value());
  EXPECT_TRUE(endpoint->user.empty());
  EXPECT_TRUE(endpoint->password.empty());
  EXPECT_EQ(endpoint->Address(), "127.0.0.1:6390");
}

TEST(RedisUrlTest, TlsWithUserPasswordAndDb) {
  Result<RedisEndpoint> endpoint = ParseRedisUrl("rediss://worker:s3cr%40t%3A@redis.internal:6380/2");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().ToString();
  EXPECT_TRUE(endpoint->tls);
  EXPECT_EQ(endpoint->user, "worker");
  EXPECT_EQ(endpoint->password, "s3cr@t:");
  EXPECT_EQ(endpoint->host, "redis.internal");
  EXPECT_EQ(endpoint->port, 6380);
  ASSERT_TRUE(endpoint->db.has_value());
  EXPECT_EQ(*endpoint->db, 2);
  EXPECT_EQ(endpoint->RedactedUrl(), "rediss://worker@redis.internal:6380/2");
}

TEST(RedisUrlTest, PasswordOnlyAndDefaultPort) {
  Result<RedisEndpoint> endpoint = ParseRedisUrl("redis://:hunter2@localhost");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().ToString();
  EXPECT_TRUE(endpoint->user.empty());
  EXPECT_EQ(endpoint->password, "hunter2");
  EXPECT_EQ(endpoint->port, 6379);
  EXPECT_EQ(endpoint->RedactedUrl(), "redis://localhost:6379");
}

TEST(RedisUrlTest, UserOnlyIpv6AndTrailingSlash) {
  Result<RedisEndpoint> user = ParseRedisUrl("redis://alice@host:1/");
  ASSERT_TRUE(user.ok()) << user.status().ToString();
  EXPECT_EQ(user->user, "alice");
  EXPECT_TRUE(user->password.empty());
  EXPECT_FALSE(user->db.has_value());

  Result<RedisEndpoint> v6 = ParseRedisUrl("rediss://[::1]:6380/0");
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 6380);
  EXPECT_EQ(*v6->db, 0);
  EXPECT_EQ(v6->Address(), "[::1]:6380");

  Result<RedisEndpoint> v6_default_port = ParseRedisUrl("redis://[fe80::1]");
  ASSERT_TRUE(v6_default_port.ok()) << v6_default_port.status().ToString();
  EXPECT_EQ(v6_default_port->port, 6379);
}

struct BadUrl {
  const char* url;
  const char* message;  // a part of the error message
};

TEST(RedisUrlTest, EveryBadFormIsInvalidArgumentNamingTheProblem) {
  const BadUrl cases[] = {
      {"", "missing scheme"},
      {"127.0.0.1:6379", "missing scheme"},
      {"http://host:1", "scheme must be redis or rediss, got 'http'"},
      {"redis://", "missing host"},
      {"redis://:6379", "missing host"},
      {"redis://host:", "missing port"},
      {"redis://host:0", "port must be 1-65535, got '0'"},
      {"redis://host:65536", "port must be 1-65535, got '65536'"},
      {"redis://host:-1", "port must be 1-65535"},
      {"redis://host:+1", "port must be 1-65535"},
      {"redis://host:63a", "port must be 1-65535, got '63a'"},
      {"redis://host:1/x", "db must be a non-negative integer, got 'x'"},
      {"redis://host:1/-1", "db must be a non-negative integer"},
      {"redis://host:1/1/2", "db must be a non-negative integer"},
      {"redis://host:1/99999999999", "db must be a non-negative integer"},
      {"redis://host:1?db=2", "query strings and fragments are not supported"},
      {"redis://host:1#x", "query strings and fragments are not supported"},
      {"redis://[::1:6379", "no closing ']'"},
      {"redis://[::1]6379", "unexpected text after the IPv6 host"},
      {"redis://[::1]:", "missing port"},
      {"redis://[nothost]:1", "is not an IPv6 address"},
      {"redis://::1:6379", "must be written in brackets"},
      {"redis://ho st:1", "invalid character"},
      {"redis://@host:1", "empty user info"},
      {"redis://user:@host:1", "empty password"},
      {"redis://user:p%zz@host:1", "bad %-escape in the password"},
      {"redis://user:p%4@host:1", "bad %-escape in the password"},
      {"redis://us%r:pw@host:1", "bad %-escape in the user"},
  };
  for (const BadUrl& bad : cases) {
    Result<RedisEndpoint> endpoint = ParseRedisUrl(bad.url);
    ASSERT_FALSE(endpoint.ok()) << bad.url;
    EXPECT_EQ(endpoint.status().code(), StatusCode::kInvalidArgument) << bad.url;
    EXPECT_NE(endpoint.status().message().find(bad.message), std::string::npos)
        << bad.url << " -> " << endpoint.status().ToString();
  }
}

TEST(RedisUrlTest, ErrorsNeverRepeatThePassword) {
  for (const char* url : {"redis://user:Sup3rSecret@host:0", "redis://user:Sup3rSecret%zz@host:1",
                          "redis://user:Sup3rSecret@ho st:1", "redis://user:Sup3rSecret@host:1/db"}) {
    Result<RedisEndpoint> endpoint = ParseRedisUrl(url);
    ASSERT_FALSE(endpoint.ok()) << url;
    EXPECT_EQ(endpoint.status().message().find("Sup3rSecret"), std::string::npos) << endpoint.status().ToString();
  }
}

}  // namespace
}  // namespace ppml::queue
