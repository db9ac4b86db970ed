// RedisClient: reconnects with backoff after the server goes away, gives up
// when told to, never retries what waiting cannot fix, and logs one line per
// reconnect without secrets.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/log.h"
#include "queue/redis.h"
#include "tests/queue/redis_server.h"

namespace ppml::queue {
namespace {

using testing::RedisServer;
using testing::RedisServerOptions;
using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

ReconnectPolicy FastPolicy() {
  return ReconnectPolicy{.initial_delay_ms = 20, .max_delay_ms = 200, .max_attempts = 0, .give_up_after_ms = 5000};
}

class RedisClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RedisServerOptions options;
    options.requirepass = "pa55-in-the-log?";
    Result<std::unique_ptr<RedisServer>> server = RedisServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }
  std::unique_ptr<RedisServer> server_;
};

TEST_F(RedisClientTest, CommandsSurviveAServerRestart) {
  RedisClient client(server_->Endpoint(), FastPolicy());
  ASSERT_TRUE(client.Connect().ok());
  ASSERT_TRUE(client.Command({"SET", "before", "1"}).ok());

  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(server_->Restart().ok());
  Result<RedisReply> after = client.Command({"GET", "before"});  // the old link is dead: reconnect, resend
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_TRUE(after->is_nil());  // no persistence: the restarted server is empty
  EXPECT_EQ(client.reconnects(), 1);
  EXPECT_TRUE(client.connected());

  EXPECT_NE(log.find("event=redis_reconnected"), std::string::npos) << log;
  EXPECT_NE(log.find("endpoint=127.0.0.1:" + std::to_string(server_->port())), std::string::npos) << log;
  EXPECT_EQ(log.find("pa55-in-the-log"), std::string::npos) << log;
  EXPECT_EQ(log.find("before"), std::string::npos) << log;  // no arguments either
}

TEST_F(RedisClientTest, WaitsWithBackoffUntilTheServerIsBack) {
  RedisClient client(server_->Endpoint(), FastPolicy());
  ASSERT_TRUE(client.Connect().ok());
  server_->Stop();
  // The thread that starts redis-server must outlive it (PR_SET_PDEATHSIG
  // fires when that thread ends), so it waits for the end of the test.
  std::atomic<bool> done = false;
  std::thread restarter([this, &done] {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    EXPECT_TRUE(server_->Restart().ok());
    while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    server_->Stop();
  });
  auto start = Clock::now();
  Result<RedisReply> pong = client.Command({"PING"});
  int64_t elapsed = MsSince(start);
  done = true;
  restarter.join();
  ASSERT_TRUE(pong.ok()) << pong.status().ToString();
  EXPECT_EQ(pong->str(), "PONG");
  EXPECT_GE(elapsed, 350);
  EXPECT_EQ(client.reconnects(), 1);
}

TEST_F(RedisClientTest, GivesUpAfterMaxAttempts) {
  RedisClient client(server_->Endpoint(), ReconnectPolicy{.initial_delay_ms = 40, .max_delay_ms = 1000, .max_attempts = 3});
  ASSERT_TRUE(client.Connect().ok());
  server_->Stop();

  ::testing::internal::CaptureStderr();
  auto start = Clock::now();
  Result<RedisReply> reply = client.Command({"PING"});
  int64_t elapsed = MsSince(start);
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable) << reply.status().ToString();
  EXPECT_NE(reply.status().message().find("refused"), std::string::npos) << reply.status().ToString();
  // Attempts 2 and 3 wait 40 and 80 ms, each shortened by at most half.
  EXPECT_GE(elapsed, 55);
  EXPECT_LT(elapsed, 1000);
  EXPECT_NE(log.find("event=redis_unavailable"), std::string::npos) << log;
  EXPECT_NE(log.find("attempts=3"), std::string::npos) << log;
  EXPECT_FALSE(client.connected());
}

TEST_F(RedisClientTest, GivesUpAtTheDeadline) {
  RedisClient client(server_->Endpoint(),
                     ReconnectPolicy{.initial_delay_ms = 50, .max_delay_ms = 50, .max_attempts = 0, .give_up_after_ms = 300});
  server_->Stop();
  auto start = Clock::now();
  Status status = client.Connect();
  int64_t elapsed = MsSince(start);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_LT(elapsed, 600);
  EXPECT_GE(elapsed, 100);
}

TEST_F(RedisClientTest, WrongPasswordIsNotRetried) {
  RedisEndpoint endpoint = server_->Endpoint();
  endpoint.password = "wrong";
  ReconnectPolicy policy = FastPolicy();
  policy.initial_delay_ms = 500;
  RedisClient client(endpoint, policy);
  auto start = Clock::now();
  Result<RedisReply> reply = client.Command({"PING"});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kPermissionDenied) << reply.status().ToString();
  EXPECT_LT(MsSince(start), 400);  // no backoff wait happened
}

// Connections the server has accepted so far (INFO stats), read over `admin`.
int64_t ConnectionsReceived(RedisConnection& admin) {
  Result<RedisReply> info = admin.Command({"INFO", "stats"});
  if (!info.ok()) return -1;
  std::string_view text = info->str();
  const std::string_view key = "total_connections_received:";
  size_t at = text.find(key);
  if (at == std::string_view::npos) return -1;
  return std::stoll(std::string(text.substr(at + key.size(), text.find('\r', at) - at - key.size())));
}

TEST_F(RedisClientTest, TimedOutCommandIsNotResentButTheNextCallReconnects) {
  Result<RedisConnection> admin = RedisConnection::Connect(server_->Endpoint());
  ASSERT_TRUE(admin.ok());
  RedisEndpoint endpoint = server_->Endpoint();
  endpoint.io_timeout_ms = 150;
  RedisClient client(endpoint, FastPolicy());
  int64_t before = ConnectionsReceived(*admin);

  Result<RedisReply> timed_out = client.Command({"BLPOP", "jobs", "2"});
  ASSERT_FALSE(timed_out.ok());
  EXPECT_EQ(timed_out.status().code(), StatusCode::kDeadlineExceeded) << timed_out.status().ToString();
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(ConnectionsReceived(*admin), before + 1);  // a resend would have needed a second connection

  Result<RedisReply> pong = client.Command({"PING"});
  ASSERT_TRUE(pong.ok()) << pong.status().ToString();
  EXPECT_EQ(client.reconnects(), 1);
  EXPECT_EQ(ConnectionsReceived(*admin), before + 2);
}

TEST_F(RedisClientTest, BatchIsResentWholeOnANewConnection) {
  RedisClient client(server_->Endpoint(), FastPolicy());
  ASSERT_TRUE(client.Connect().ok());
  ASSERT_TRUE(server_->Restart().ok());
  CommandBatch batch;
  for (int i = 0; i < 100; ++i) batch.Add({"RPUSH", "results", std::to_string(i)});
  Result<std::vector<RedisReply>> replies = client.Execute(batch);
  ASSERT_TRUE(replies.ok()) << replies.status().ToString();
  EXPECT_EQ(replies->back().integer(), 100);  // sent once on the new link: the old one never delivered it
}

}  // namespace
}  // namespace ppml::queue
