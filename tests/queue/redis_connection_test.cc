// RedisConnection against a real redis-server: commands, binary values,
// pipelining, error replies, AUTH, SELECT, timeouts and broken links.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "queue/redis.h"
#include "tests/queue/redis_server.h"

namespace ppml::queue {
namespace {

using namespace std::string_literals;
using testing::RedisServer;
using testing::RedisServerOptions;
using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

bool Contains(const Status& status, const std::string& part) {
  return status.message().find(part) != std::string::npos;
}

// `status` is a timeout that names `setting`, and took about `expected_ms`.
void ExpectTimedOut(const Status& status, const std::string& setting, int64_t elapsed_ms, int64_t expected_ms) {
  EXPECT_EQ(status.code(), StatusCode::kDeadlineExceeded) << status.ToString();
  EXPECT_TRUE(Contains(status, "timed out (" + setting + "=" + std::to_string(expected_ms) + ")"))
      << status.ToString();
  EXPECT_GE(elapsed_ms, expected_ms - 10);
  EXPECT_LT(elapsed_ms, expected_ms + 1500);
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string bytes(n, '\0');
  for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
  return bytes;
}

// A TCP listener on 127.0.0.1 that is not Redis: it never accepts (the
// kernel still completes connects), or accepts one connection and answers
// `reply` to whatever it is sent.
class FakeServer {
 public:
  explicit FakeServer(std::string reply = "") {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    ::listen(fd_, 8);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    if (!reply.empty()) {
      thread_ = std::thread([this, reply] {
        int client = ::accept(fd_, nullptr, nullptr);
        if (client < 0) return;
        char buffer[256];
        (void)::recv(client, buffer, sizeof(buffer), 0);
        (void)::send(client, reply.data(), reply.size(), MSG_NOSIGNAL);
        ::close(client);
      });
    }
  }
  ~FakeServer() {
    ::shutdown(fd_, SHUT_RDWR);  // wakes a blocked accept
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

class RedisConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<RedisServer>> server = RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    Result<RedisConnection> connection = RedisConnection::Connect(server_->Endpoint());
    ASSERT_TRUE(connection.ok()) << connection.status().ToString();
    connection_.emplace(std::move(connection).value());
  }

  RedisConnection& connection() { return *connection_; }

  std::unique_ptr<RedisServer> server_;
  std::optional<RedisConnection> connection_;
};

TEST_F(RedisConnectionTest, CommandsAndReplyTypes) {
  Result<RedisReply> set = connection().Command({"SET", "greeting", "hello"});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_TRUE(set->is_status());
  EXPECT_EQ(set->str(), "OK");

  Result<RedisReply> get = connection().Command({"GET", "greeting"});
  ASSERT_TRUE(get.ok());
  EXPECT_TRUE(get->is_string());
  EXPECT_EQ(get->str(), "hello");

  Result<RedisReply> missing = connection().Command({"GET", "nothing-here"});
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->is_nil());

  Result<RedisReply> incr = connection().Command({"INCRBY", "counter", "41"});
  ASSERT_TRUE(incr.ok());
  EXPECT_TRUE(incr->is_integer());
  EXPECT_EQ(incr->integer(), 41);

  ASSERT_TRUE(connection().Command({"RPUSH", "list", "a", "b", "c"}).ok());
  Result<RedisReply> range = connection().Command({"LRANGE", "list", "0", "-1"});
  ASSERT_TRUE(range.ok());
  ASSERT_TRUE(range->is_array());
  ASSERT_EQ(range->size(), 3u);
  EXPECT_EQ((*range)[2].str(), "c");
}

TEST_F(RedisConnectionTest, ValuesAreBinarySafe) {
  const std::string tricky = "a\0b\r\n*1\r\n$4\r\nPING\r\n\xff"s;  // NUL, CRLF and RESP look-alikes
  const std::string big = RandomBytes(3 << 20, 7);                 // 3 MiB: many reads and writes
  const std::string key = "k\0\r\n"s;
  ASSERT_TRUE(connection().Command({"SET", key, tricky}).ok());
  ASSERT_TRUE(connection().Command({"SET", "big", big}).ok());
  Result<RedisReply> got = connection().Command({"GET", key});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->str(), tricky);
  Result<RedisReply> got_big = connection().Command({"GET", "big"});
  ASSERT_TRUE(got_big.ok());
  EXPECT_EQ(got_big->str().size(), big.size());
  EXPECT_TRUE(got_big->str() == big);
  Result<RedisReply> length = connection().Command({"STRLEN", key});
  ASSERT_TRUE(length.ok());
  EXPECT_EQ(length->integer(), static_cast<int64_t>(tricky.size()));
}

TEST_F(RedisConnectionTest, ThousandPipelinedCommandsInOneFlush) {
  for (int i = 0; i < 1000; ++i) connection().Append({"INCR", "pipelined"});
  EXPECT_EQ(connection().pending_replies(), 1000u);
  ASSERT_TRUE(connection().Flush().ok());
  for (int i = 1; i <= 1000; ++i) {
    Result<RedisReply> reply = connection().ReadReply();
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    ASSERT_EQ(reply->integer(), i);  // in order
  }
  EXPECT_EQ(connection().pending_replies(), 0u);

  // The same through a CommandBatch, with a Redis error in the middle that
  // does not disturb the replies around it.
  CommandBatch batch;
  for (int i = 0; i < 500; ++i) batch.Add({"SET", "key:" + std::to_string(i), std::to_string(i)});
  batch.Add({"LPUSH", "key:0", "x"});  // WRONGTYPE
  for (int i = 0; i < 500; ++i) batch.Add({"GET", "key:" + std::to_string(i)});
  Result<std::vector<RedisReply>> replies = connection().Execute(batch);
  ASSERT_TRUE(replies.ok()) << replies.status().ToString();
  ASSERT_EQ(replies->size(), 1001u);
  EXPECT_TRUE((*replies)[500].is_error());
  EXPECT_EQ((*replies)[1000].str(), "499");
  EXPECT_EQ((*replies)[501].str(), "0");
}

TEST_F(RedisConnectionTest, ErrorRepliesAreValuesAndTheConnectionStaysUsable) {
  ASSERT_TRUE(connection().Command({"SET", "s", "1"}).ok());
  Result<RedisReply> wrong_type = connection().Command({"LPUSH", "s", "x"});
  ASSERT_TRUE(wrong_type.ok()) << wrong_type.status().ToString();  // not a transport failure
  ASSERT_TRUE(wrong_type->is_error());
  EXPECT_EQ(wrong_type->error().rfind("WRONGTYPE", 0), 0u) << wrong_type->error();
  EXPECT_EQ(RedisErrorStatus(*wrong_type, "LPUSH").code(), StatusCode::kFailedPrecondition);

  Result<RedisReply> unknown = connection().Command({"NOSUCHCOMMAND", "x"});
  ASSERT_TRUE(unknown.ok());
  EXPECT_TRUE(unknown->is_error());
  EXPECT_NE(unknown->error().find("unknown command"), std::string_view::npos);

  EXPECT_TRUE(connection().healthy());
  Result<RedisReply> ping = connection().Command({"PING"});
  ASSERT_TRUE(ping.ok());
  EXPECT_EQ(ping->str(), "PONG");
}

TEST_F(RedisConnectionTest, MisuseIsRefusedWithoutBreakingTheConnection) {
  connection().Append({"PING"});
  Result<RedisReply> command = connection().Command({"PING"});
  EXPECT_EQ(command.status().code(), StatusCode::kFailedPrecondition);
  Result<RedisReply> pong = connection().ReadReply();  // flushes by itself
  ASSERT_TRUE(pong.ok()) << pong.status().ToString();
  EXPECT_EQ(pong->str(), "PONG");
  EXPECT_EQ(connection().ReadReply().status().code(), StatusCode::kFailedPrecondition);  // none expected

  connection().Append({"PING"});
  connection().Append(std::span<const std::string_view>());
  EXPECT_EQ(connection().Flush().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(connection().pending_replies(), 0u);  // nothing was sent
  EXPECT_TRUE(connection().Command({"PING"}).ok());
}

TEST_F(RedisConnectionTest, SelectAndClientNameFromTheEndpoint) {
  RedisEndpoint endpoint = server_->Endpoint();
  endpoint.db = 3;
  endpoint.client_name = "worker-7";
  Result<RedisConnection> db3 = RedisConnection::Connect(endpoint);
  ASSERT_TRUE(db3.ok()) << db3.status().ToString();
  ASSERT_TRUE(db3->Command({"SET", "only-in-3", "x"}).ok());
  Result<RedisReply> name = db3->Command({"CLIENT", "GETNAME"});
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(name->str(), "worker-7");
  Result<RedisReply> in_db0 = connection().Command({"EXISTS", "only-in-3"});
  ASSERT_TRUE(in_db0.ok());
  EXPECT_EQ(in_db0->integer(), 0);

  endpoint.db = 100000;
  Result<RedisConnection> out_of_range = RedisConnection::Connect(endpoint);
  ASSERT_FALSE(out_of_range.ok());
  EXPECT_TRUE(Contains(out_of_range.status(), "SELECT")) << out_of_range.status().ToString();
}

TEST_F(RedisConnectionTest, ServerClosingTheLinkIsUnavailable) {
  Result<RedisReply> id = connection().Command({"CLIENT", "ID"});
  ASSERT_TRUE(id.ok());
  Result<RedisConnection> admin = RedisConnection::Connect(server_->Endpoint());
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(admin->Command({"CLIENT", "KILL", "ID", std::to_string(id->integer())}).ok());

  Result<RedisReply> after = connection().Command({"PING"});
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().code(), StatusCode::kUnavailable) << after.status().ToString();
  EXPECT_TRUE(Contains(after.status(), "redis 127.0.0.1:" + std::to_string(server_->port())));
  EXPECT_FALSE(connection().healthy());
  Result<RedisReply> again = connection().Command({"PING"});
  EXPECT_EQ(again.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(again.status(), "closed after an earlier failure"));
}

TEST_F(RedisConnectionTest, ReadTimeoutWithBlockingCommand) {
  RedisEndpoint endpoint = server_->Endpoint();
  endpoint.io_timeout_ms = 200;
  Result<RedisConnection> short_timeout = RedisConnection::Connect(endpoint);
  ASSERT_TRUE(short_timeout.ok());

  // The server blocks for 300 ms; with block_ms the wait covers it.
  auto start = Clock::now();
  Result<RedisReply> waited = short_timeout->Command({"XREAD", "BLOCK", "300", "STREAMS", "s", "$"}, 300);
  ASSERT_TRUE(waited.ok()) << waited.status().ToString();
  EXPECT_TRUE(waited->is_nil());
  EXPECT_GE(MsSince(start), 290);

  // Without it the 200 ms io timeout ends the wait and the connection.
  start = Clock::now();
  Result<RedisReply> timed_out = short_timeout->Command({"XREAD", "BLOCK", "5000", "STREAMS", "s", "$"});
  ExpectTimedOut(timed_out.status(), "io_timeout_ms", MsSince(start), 200);
  EXPECT_TRUE(Contains(timed_out.status(), "read timed out")) << timed_out.status().ToString();
  EXPECT_FALSE(short_timeout->healthy());  // a late reply would be out of step
}

TEST(RedisConnectTest, NothingListeningIsUnavailable) {
  Result<uint16_t> port = testing::PickFreePort();
  ASSERT_TRUE(port.ok());
  RedisEndpoint endpoint;
  endpoint.host = "127.0.0.1";
  endpoint.port = *port;
  auto start = Clock::now();
  Result<RedisConnection> connection = RedisConnection::Connect(endpoint);
  ASSERT_FALSE(connection.ok());
  EXPECT_EQ(connection.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(connection.status(), "redis 127.0.0.1:" + std::to_string(*port) + ": connect failed"))
      << connection.status().ToString();
  EXPECT_TRUE(Contains(connection.status(), "refused")) << connection.status().ToString();
  EXPECT_LT(MsSince(start), 1000);
}

TEST(RedisConnectTest, UnresolvableHostIsUnavailable) {
  RedisEndpoint endpoint;
  endpoint.host = "no-such-host.invalid";
  Result<RedisConnection> connection = RedisConnection::Connect(endpoint);
  ASSERT_FALSE(connection.ok());
  EXPECT_EQ(connection.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(connection.status(), "cannot resolve host")) << connection.status().ToString();
}

TEST(RedisConnectTest, SilentServerTimesOutWithinConnectTimeout) {
  FakeServer silent;  // connects complete in the kernel, nobody answers PING
  RedisEndpoint endpoint;
  endpoint.host = "127.0.0.1";
  endpoint.port = silent.port();
  endpoint.connect_timeout_ms = 300;
  auto start = Clock::now();
  Result<RedisConnection> connection = RedisConnection::Connect(endpoint);
  ExpectTimedOut(connection.status(), "connect_timeout_ms", MsSince(start), 300);
}

TEST(RedisConnectTest, GarbageFromTheServerIsDataLoss) {
  FakeServer liar("?this is not RESP\r\n");
  RedisEndpoint endpoint;
  endpoint.host = "127.0.0.1";
  endpoint.port = liar.port();
  Result<RedisConnection> connection = RedisConnection::Connect(endpoint);
  ASSERT_FALSE(connection.ok());
  EXPECT_EQ(connection.status().code(), StatusCode::kDataLoss) << connection.status().ToString();
  EXPECT_TRUE(Contains(connection.status(), "protocol error")) << connection.status().ToString();
}

// ---- AUTH ----------------------------------------------------------------------

TEST(RedisAuthTest, DefaultUserPassword) {
  RedisServerOptions options;
  options.requirepass = "correct horse";
  Result<std::unique_ptr<RedisServer>> server = RedisServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();

  Result<RedisConnection> good = RedisConnection::Connect((*server)->Endpoint());
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_TRUE(good->Command({"SET", "a", "b"}).ok());

  RedisEndpoint wrong = (*server)->Endpoint();
  wrong.password = "battery staple";
  Result<RedisConnection> refused = RedisConnection::Connect(wrong);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied) << refused.status().ToString();
  EXPECT_TRUE(Contains(refused.status(), "AUTH: WRONGPASS")) << refused.status().ToString();
  EXPECT_FALSE(Contains(refused.status(), "battery staple"));

  RedisEndpoint none = (*server)->Endpoint();
  none.password.clear();
  Result<RedisConnection> anonymous = RedisConnection::Connect(none);
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.status().code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Contains(anonymous.status(), "PING: NOAUTH")) << anonymous.status().ToString();
}

TEST(RedisAuthTest, AclUserAndPassword) {
  RedisServerOptions options;
  options.acl_user = "worker";
  options.acl_password = "w0rker-secret";
  Result<std::unique_ptr<RedisServer>> server = RedisServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();

  Result<RedisConnection> good = RedisConnection::Connect((*server)->Endpoint());
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  Result<RedisReply> whoami = good->Command({"ACL", "WHOAMI"});
  ASSERT_TRUE(whoami.ok());
  EXPECT_EQ(whoami->str(), "worker");

  // Through a URL, as an operator would write it.
  Result<RedisEndpoint> from_url =
      ParseRedisUrl("redis://worker:w0rker-secret@127.0.0.1:" + std::to_string((*server)->port()));
  ASSERT_TRUE(from_url.ok());
  EXPECT_TRUE(RedisConnection::Connect(*from_url).ok());

  RedisEndpoint wrong = (*server)->Endpoint();
  wrong.password = "guess";
  Result<RedisConnection> refused = RedisConnection::Connect(wrong);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied) << refused.status().ToString();
  EXPECT_TRUE(Contains(refused.status(), "WRONGPASS"));
}

}  // namespace
}  // namespace ppml::queue
