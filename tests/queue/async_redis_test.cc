// AsyncRedisConnection on a libevent loop against a real redis-server:
// in-order replies for pipelined commands, TLS verification, timeouts, a lost
// link, and a connection destroyed from inside its own callback.
#include "queue/async_redis.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <functional>

#include "tests/queue/redis_server.h"

namespace ppml::queue {
namespace {

using namespace std::string_literals;
using testing::RedisServer;
using testing::RedisServerOptions;

bool Contains(const Status& status, const std::string& part) {
  return status.message().find(part) != std::string::npos;
}

class AsyncRedisTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ::signal(SIGPIPE, SIG_IGN); }  // as every libevent program does

  void SetUp() override {
    base_ = event_base_new();
    // A heartbeat so that one loop turn never waits long for nothing.
    tick_ = event_new(base_, -1, EV_PERSIST, [](int, short, void*) {}, nullptr);
    timeval period{0, 5000};
    event_add(tick_, &period);
  }
  void TearDown() override {
    event_free(tick_);
    event_base_free(base_);
  }

  std::unique_ptr<RedisServer> StartServer(RedisServerOptions options = {}) {
    Result<std::unique_ptr<RedisServer>> server = RedisServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    return server.ok() ? std::move(server).value() : nullptr;
  }

  // Turns the loop until `done()` or 10 s; false on timeout.
  bool RunUntil(const std::function<bool()>& done) {
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() > give_up) return false;
      event_base_loop(base_, EVLOOP_ONCE);
    }
    return true;
  }

  // Connects and returns the status Connect reported.
  Status ConnectAndWait(AsyncRedisConnection& connection) {
    std::optional<Status> result;
    connection.Connect([&](const Status& status) { result = status; });
    if (!RunUntil([&] { return result.has_value(); })) return Status::Internal("test: Connect never called back");
    return *result;
  }

  event_base* base_ = nullptr;
  event* tick_ = nullptr;
};

TEST_F(AsyncRedisTest, PipelinedCommandsAnswerInOrder) {
  std::unique_ptr<RedisServer> server = StartServer();
  ASSERT_TRUE(server);
  AsyncRedisConnection connection(base_, server->Endpoint());
  std::optional<Status> connected;
  connection.Connect([&](const Status& status) { connected = status; });

  // Issued before the connection is ready: they wait for the handshake.
  const std::string value = "a\0b\r\n$3\r\n"s + std::string(100000, 'x');
  std::vector<int64_t> counts;
  std::optional<Result<RedisReply>> got;
  connection.Command({"SET", "k", value}, [](Result<RedisReply>) {});
  for (int i = 0; i < 1000; ++i) {
    connection.Command({"INCR", "n"}, [&](Result<RedisReply> reply) {
      counts.push_back(reply.ok() ? reply->integer() : -1);
    });
  }
  connection.Command({"GET", "k"}, [&](Result<RedisReply> reply) { got = std::move(reply); });
  EXPECT_EQ(connection.waiting(), 1002u);
  ASSERT_TRUE(RunUntil([&] { return got.has_value(); }));

  ASSERT_TRUE(connected.has_value() && connected->ok()) << (connected ? connected->ToString() : "");
  EXPECT_TRUE(connection.ready());
  ASSERT_EQ(counts.size(), 1000u);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(counts[i], i + 1);
  ASSERT_TRUE(got->ok()) << got->status().ToString();
  EXPECT_TRUE((*got)->str() == value);
  EXPECT_EQ(connection.waiting(), 0u);

  // An error reply is a value; the connection goes on.
  std::optional<Result<RedisReply>> wrong;
  connection.Command({"LPUSH", "k", "x"}, [&](Result<RedisReply> reply) { wrong = std::move(reply); });
  ASSERT_TRUE(RunUntil([&] { return wrong.has_value(); }));
  ASSERT_TRUE(wrong->ok());
  EXPECT_TRUE((*wrong)->is_error());
  EXPECT_TRUE(connection.ready());

  std::optional<Result<RedisReply>> empty;
  connection.Command(std::span<const std::string_view>(), [&](Result<RedisReply> reply) { empty = std::move(reply); });
  ASSERT_TRUE(empty.has_value());  // refused at once
  EXPECT_EQ(empty->status().code(), StatusCode::kInvalidArgument);
}

TEST_F(AsyncRedisTest, ConnectFailures) {
  AsyncRedisConnection never(base_, RedisEndpoint{});
  std::optional<Result<RedisReply>> unconnected;
  never.Command({"PING"}, [&](Result<RedisReply> reply) { unconnected = std::move(reply); });
  ASSERT_TRUE(unconnected.has_value());
  EXPECT_EQ(unconnected->status().code(), StatusCode::kUnavailable);

  Result<uint16_t> port = testing::PickFreePort();
  ASSERT_TRUE(port.ok());
  RedisEndpoint nobody;
  nobody.host = "127.0.0.1";
  nobody.port = *port;
  AsyncRedisConnection refused(base_, nobody);
  Status status = ConnectAndWait(refused);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_TRUE(Contains(status, "redis 127.0.0.1:" + std::to_string(*port) + ": connect failed")) << status.ToString();

  RedisServerOptions options;
  options.requirepass = "right";
  std::unique_ptr<RedisServer> server = StartServer(options);
  ASSERT_TRUE(server);
  RedisEndpoint wrong = server->Endpoint();
  wrong.password = "wrong";
  AsyncRedisConnection denied(base_, wrong);
  status = ConnectAndWait(denied);
  EXPECT_EQ(status.code(), StatusCode::kPermissionDenied) << status.ToString();
  EXPECT_TRUE(Contains(status, "AUTH: WRONGPASS")) << status.ToString();
  AsyncRedisConnection allowed(base_, server->Endpoint());
  EXPECT_TRUE(ConnectAndWait(allowed).ok());
}

TEST_F(AsyncRedisTest, TlsIsVerified) {
  RedisServerOptions options;
  options.tls = true;
  options.require_client_cert = true;
  std::unique_ptr<RedisServer> server = StartServer(options);
  ASSERT_TRUE(server);

  AsyncRedisConnection good(base_, server->Endpoint());
  ASSERT_TRUE(ConnectAndWait(good).ok());
  std::optional<Result<RedisReply>> pong;
  good.Command({"PING"}, [&](Result<RedisReply> reply) { pong = std::move(reply); });
  ASSERT_TRUE(RunUntil([&] { return pong.has_value(); }));
  ASSERT_TRUE(pong->ok());
  EXPECT_EQ((*pong)->str(), "PONG");

  RedisEndpoint wrong_name = server->Endpoint();
  wrong_name.tls_options.server_name = "redis.example.com";
  AsyncRedisConnection mismatch(base_, wrong_name);
  Status status = ConnectAndWait(mismatch);
  EXPECT_EQ(status.code(), StatusCode::kPermissionDenied) << status.ToString();
  EXPECT_TRUE(Contains(status, "certificate verify failed: hostname mismatch")) << status.ToString();

  RedisEndpoint no_cert = server->Endpoint();
  no_cert.tls_options.cert_file.clear();
  no_cert.tls_options.key_file.clear();
  AsyncRedisConnection anonymous(base_, no_cert);
  status = ConnectAndWait(anonymous);
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(Contains(status, "client certificate")) << status.ToString();
}

TEST_F(AsyncRedisTest, ReadTimeoutAndBlockingCommands) {
  std::unique_ptr<RedisServer> server = StartServer();
  ASSERT_TRUE(server);
  RedisEndpoint endpoint = server->Endpoint();
  endpoint.io_timeout_ms = 200;
  AsyncRedisConnection connection(base_, endpoint);
  ASSERT_TRUE(ConnectAndWait(connection).ok());

  std::optional<Result<RedisReply>> waited;
  connection.Command({"XREAD", "BLOCK", "300", "STREAMS", "s", "$"},
                     [&](Result<RedisReply> reply) { waited = std::move(reply); }, 300);
  ASSERT_TRUE(RunUntil([&] { return waited.has_value(); }));
  ASSERT_TRUE(waited->ok()) << waited->status().ToString();
  EXPECT_TRUE((*waited)->is_nil());

  std::optional<Result<RedisReply>> timed_out;
  std::optional<Status> lost;
  connection.SetLostCallback([&](const Status& status) { lost = status; });
  auto start = std::chrono::steady_clock::now();
  connection.Command({"XREAD", "BLOCK", "5000", "STREAMS", "s", "$"},
                     [&](Result<RedisReply> reply) { timed_out = std::move(reply); });
  ASSERT_TRUE(RunUntil([&] { return timed_out.has_value(); }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2000));
  EXPECT_EQ(timed_out->status().code(), StatusCode::kDeadlineExceeded) << timed_out->status().ToString();
  EXPECT_TRUE(Contains(timed_out->status(), "io_timeout_ms=200"));
  ASSERT_TRUE(lost.has_value());
  EXPECT_FALSE(connection.ready());
  EXPECT_TRUE(ConnectAndWait(connection).ok());  // the program reconnects when it wants
}

TEST_F(AsyncRedisTest, LostLinkFailsEveryWaitingCommand) {
  std::unique_ptr<RedisServer> server = StartServer();
  ASSERT_TRUE(server);
  AsyncRedisConnection connection(base_, server->Endpoint());
  ASSERT_TRUE(ConnectAndWait(connection).ok());
  std::optional<Status> lost;
  connection.SetLostCallback([&](const Status& status) { lost = status; });
  std::vector<Status> failures;
  for (int i = 0; i < 3; ++i) {
    connection.Command({"BLPOP", "never", "10"}, [&](Result<RedisReply> reply) { failures.push_back(reply.status()); },
                       10000);
  }
  server->Stop();
  ASSERT_TRUE(RunUntil([&] { return lost.has_value(); }));
  ASSERT_EQ(failures.size(), 3u);
  for (const Status& failure : failures) EXPECT_EQ(failure.code(), StatusCode::kUnavailable) << failure.ToString();
  EXPECT_TRUE(Contains(*lost, "redis 127.0.0.1:" + std::to_string(server->port()))) << lost->ToString();

  ASSERT_TRUE(server->Restart().ok());
  EXPECT_TRUE(ConnectAndWait(connection).ok());
}

TEST_F(AsyncRedisTest, CallbackMayDestroyTheConnection) {
  std::unique_ptr<RedisServer> server = StartServer();
  ASSERT_TRUE(server);
  auto connection = std::make_unique<AsyncRedisConnection>(base_, server->Endpoint());
  ASSERT_TRUE(ConnectAndWait(*connection).ok());
  int called = 0;
  connection->Command({"PING"}, [&](Result<RedisReply>) {
    ++called;
    connection.reset();
  });
  connection->Command({"PING"}, [&](Result<RedisReply>) { ++called; });  // dropped with the connection
  ASSERT_TRUE(RunUntil([&] { return connection == nullptr; }));
  for (int i = 0; i < 10; ++i) event_base_loop(base_, EVLOOP_ONCE);
  EXPECT_EQ(called, 1);
}

}  // namespace
}  // namespace ppml::queue
