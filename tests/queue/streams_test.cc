// The stream operations of the request path against a real redis-server:
// group creation, XADD/XREADGROUP/XACK+XDEL, the worker's one-round-trip
// batch, XAUTOCLAIM of a crashed consumer's entries, delivery counts.
#include "queue/streams.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/queue/redis_server.h"

namespace ppml::queue {
namespace {

using namespace std::string_literals;
using testing::RedisServer;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kStream = "ppml:fashion_cnn:requests";
constexpr std::string_view kGroup = "workers";

class StreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<RedisServer>> server = RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    client_.emplace(server_->Endpoint());
    ASSERT_TRUE(EnsureGroup(client(), kStream, kGroup).ok());
  }

  RedisClient& client() { return *client_; }

  // Adds `n` requests with ids "r0".."r{n-1}" and binary bodies; returns the entry ids.
  std::vector<std::string> AddRequests(int n) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      std::string rid = std::to_string(i);
      rid.insert(rid.begin(), 'r');  // not "r" + ...: GCC 12 warns falsely (-Wrestrict)
      const std::string body = "\0\r\n"s + rid + "\xff"s;
      const StreamField fields[] = {{"rid", rid}, {"body", body}};
      Result<std::string> id = Xadd(client(), kStream, fields);
      EXPECT_TRUE(id.ok()) << id.status().ToString();
      if (id.ok()) ids.push_back(*id);
    }
    return ids;
  }

  std::unique_ptr<RedisServer> server_;
  std::optional<RedisClient> client_;
};

TEST_F(StreamsTest, EnsureGroupIsIdempotentAndMakesTheStream) {
  ASSERT_TRUE(EnsureGroup(client(), kStream, kGroup).ok());  // BUSYGROUP is fine
  ASSERT_TRUE(EnsureGroup(client(), kStream, kGroup).ok());
  Result<RedisReply> groups = client().Command({"XINFO", "GROUPS", kStream});
  ASSERT_TRUE(groups.ok());
  ASSERT_TRUE(groups->is_array());
  EXPECT_EQ(groups->size(), 1u);
  Result<int64_t> length = Xlen(client(), kStream);
  ASSERT_TRUE(length.ok());
  EXPECT_EQ(*length, 0);  // MKSTREAM made it, empty

  ASSERT_TRUE(client().Command({"SET", "not-a-stream", "x"}).ok());
  Status wrong_type = EnsureGroup(client(), "not-a-stream", kGroup);
  EXPECT_EQ(wrong_type.code(), StatusCode::kFailedPrecondition) << wrong_type.ToString();
  EXPECT_NE(wrong_type.message().find("redis XGROUP CREATE not-a-stream"), std::string::npos);
}

TEST_F(StreamsTest, AddReadAcknowledgeDelete) {
  std::vector<std::string> ids = AddRequests(3);
  ASSERT_EQ(ids.size(), 3u);

  Result<std::vector<StreamEntry>> read = XreadGroup(client(), kGroup, "worker-1", kStream, 10, 0);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const StreamEntry& entry = (*read)[i];
    EXPECT_EQ(entry.id, ids[i]);
    EXPECT_EQ(entry.Field("rid"), "r" + std::to_string(i));
    EXPECT_EQ(entry.Field("body"), "\0\r\nr"s + std::to_string(i) + "\xff"s);
    EXPECT_FALSE(entry.Field("missing").has_value());
  }
  // Delivered once, pending on worker-1 until acknowledged.
  Result<std::vector<PendingEntry>> pending = PendingRange(client(), kStream, kGroup, PendingQuery{});
  ASSERT_TRUE(pending.ok()) << pending.status().ToString();
  ASSERT_EQ(pending->size(), 3u);
  EXPECT_EQ((*pending)[0].consumer, "worker-1");
  EXPECT_EQ((*pending)[0].deliveries, 1);

  Result<int64_t> acked = AckAndDelete(client(), kStream, kGroup, ids);
  ASSERT_TRUE(acked.ok()) << acked.status().ToString();
  EXPECT_EQ(*acked, 3);
  EXPECT_EQ(*Xlen(client(), kStream), 0);
  EXPECT_TRUE(PendingRange(client(), kStream, kGroup, PendingQuery{})->empty());
  Result<int64_t> again = AckAndDelete(client(), kStream, kGroup, ids);  // idempotent
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
  EXPECT_EQ(*AckAndDelete(client(), kStream, kGroup, {}), 0);

  // Nothing left: a non-blocking read is empty at once, a blocking one after its wait.
  Result<std::vector<StreamEntry>> empty = XreadGroup(client(), kGroup, "worker-1", kStream, 10, 0);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  auto start = Clock::now();
  Result<std::vector<StreamEntry>> waited = XreadGroup(client(), kGroup, "worker-1", kStream, 10, 150);
  ASSERT_TRUE(waited.ok()) << waited.status().ToString();
  EXPECT_TRUE(waited->empty());
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(140));
}

TEST_F(StreamsTest, BlockingReadWakesForANewEntry) {
  RedisClient producer(server_->Endpoint());
  std::thread add_later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const StreamField fields[] = {{"rid", "late"}};
    EXPECT_TRUE(Xadd(producer, kStream, fields).ok());
  });
  // Longer than the 5 s default io timeout: block_ms extends the wait.
  auto start = Clock::now();
  Result<std::vector<StreamEntry>> read = XreadGroup(client(), kGroup, "worker-1", kStream, 1, 6000);
  add_later.join();
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->size(), 1u);
  EXPECT_EQ((*read)[0].Field("rid"), "late");
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(3000));
}

TEST_F(StreamsTest, WorkerBatchOfResultsAckAndDeleteInOneRoundTrip) {
  std::vector<std::string> ids = AddRequests(4);
  Result<std::vector<StreamEntry>> batch_in = XreadGroup(client(), kGroup, "worker-1", kStream, 16, 0);
  ASSERT_TRUE(batch_in.ok());
  ASSERT_EQ(batch_in->size(), 4u);

  CommandBatch out;
  const std::string results = "ppml:results:frontend-1";
  for (const StreamEntry& entry : *batch_in) {
    const StreamField fields[] = {{"rid", *entry.Field("rid")}, {"body", "encrypted result"}};
    AppendXadd(out, results, fields, 10000);
  }
  AppendAckAndDelete(out, kStream, kGroup, ids);
  EXPECT_EQ(out.size(), 6u);
  Result<std::vector<RedisReply>> replies = client().Execute(out);  // one write, six replies
  ASSERT_TRUE(replies.ok()) << replies.status().ToString();
  for (const RedisReply& reply : *replies) EXPECT_FALSE(reply.is_error()) << reply.Describe();
  EXPECT_EQ((*replies)[4].integer(), 4);  // XACK
  EXPECT_EQ((*replies)[5].integer(), 4);  // XDEL

  EXPECT_EQ(*Xlen(client(), kStream), 0);
  Result<std::vector<StreamEntry>> front_end = Xread(client(), results, "0", 100, 0);
  ASSERT_TRUE(front_end.ok()) << front_end.status().ToString();
  ASSERT_EQ(front_end->size(), 4u);
  EXPECT_EQ((*front_end)[3].Field("rid"), "r3");
  // Reading on from the last id finds nothing new.
  Result<std::vector<StreamEntry>> nothing_new = Xread(client(), results, front_end->back().id, 100, 0);
  ASSERT_TRUE(nothing_new.ok());
  EXPECT_TRUE(nothing_new->empty());
}

TEST_F(StreamsTest, AutoclaimTakesOverIdleEntriesAndCountsDeliveries) {
  std::vector<std::string> ids = AddRequests(3);
  // worker-1 reads all three and "crashes" (never acknowledges).
  ASSERT_EQ(XreadGroup(client(), kGroup, "worker-1", kStream, 10, 0)->size(), 3u);

  // Not idle long enough yet: nothing to claim.
  Result<AutoclaimResult> early = Autoclaim(client(), kStream, kGroup, "worker-2", 60000, "0-0", 10);
  ASSERT_TRUE(early.ok()) << early.status().ToString();
  EXPECT_TRUE(early->entries.empty());

  // One entry disappears while pending: XAUTOCLAIM reports it as deleted.
  ASSERT_TRUE(client().Command({"XDEL", kStream, ids[1]}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  Result<AutoclaimResult> claimed = Autoclaim(client(), kStream, kGroup, "worker-2", 50, "0-0", 10);
  ASSERT_TRUE(claimed.ok()) << claimed.status().ToString();
  ASSERT_EQ(claimed->entries.size(), 2u);
  EXPECT_EQ(claimed->entries[0].id, ids[0]);
  EXPECT_EQ(claimed->entries[0].Field("body"), "\0\r\nr0\xff"s);
  EXPECT_EQ(claimed->entries[1].id, ids[2]);
  EXPECT_EQ(claimed->deleted_ids, std::vector<std::string>{ids[1]});
  EXPECT_EQ(claimed->next_start, "0-0");  // the whole list was scanned

  // Claimed entries now belong to worker-2, delivered twice.
  Result<std::vector<PendingEntry>> deliveries = PendingDeliveries(client(), kStream, kGroup, ids);
  ASSERT_TRUE(deliveries.ok()) << deliveries.status().ToString();
  ASSERT_EQ(deliveries->size(), 2u);  // ids[1] is no longer pending
  for (const PendingEntry& entry : *deliveries) {
    EXPECT_EQ(entry.consumer, "worker-2");
    EXPECT_EQ(entry.deliveries, 2);
    EXPECT_LT(entry.idle_ms, 1000);
  }
  EXPECT_EQ((*deliveries)[0].id, ids[0]);
  EXPECT_EQ((*deliveries)[1].id, ids[2]);

  // A third consumer claims again: the count goes on rising (dead-letter input).
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  ASSERT_EQ(Autoclaim(client(), kStream, kGroup, "worker-3", 50, "0-0", 10)->entries.size(), 2u);
  Result<std::vector<PendingEntry>> third = PendingDeliveries(client(), kStream, kGroup, std::span(ids).first(1));
  ASSERT_TRUE(third.ok());
  ASSERT_EQ(third->size(), 1u);
  EXPECT_EQ((*third)[0].deliveries, 3);

  // Filters of the range form: by consumer and by idle time.
  PendingQuery by_consumer;
  by_consumer.consumer = "worker-1";
  EXPECT_TRUE(PendingRange(client(), kStream, kGroup, by_consumer)->empty());
  PendingQuery idle;
  idle.min_idle_ms = 60000;
  EXPECT_TRUE(PendingRange(client(), kStream, kGroup, idle)->empty());
}

TEST_F(StreamsTest, AutoclaimPagesWithNextStart) {
  AddRequests(5);
  ASSERT_EQ(XreadGroup(client(), kGroup, "worker-1", kStream, 10, 0)->size(), 5u);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  Result<AutoclaimResult> first = Autoclaim(client(), kStream, kGroup, "worker-2", 10, "0-0", 2);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->entries.size(), 2u);
  EXPECT_NE(first->next_start, "0-0");
  Result<AutoclaimResult> rest = Autoclaim(client(), kStream, kGroup, "worker-2", 10, first->next_start, 10);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->entries.size(), 3u);
}

TEST_F(StreamsTest, ConsumerRereadsItsOwnPendingEntries) {
  std::vector<std::string> ids = AddRequests(2);
  ASSERT_EQ(XreadGroup(client(), kGroup, "worker-1", kStream, 10, 0)->size(), 2u);
  // After a restart, worker-1 asks for its history ("0") instead of new entries.
  Result<std::vector<StreamEntry>> history = XreadGroup(client(), kGroup, "worker-1", kStream, 10, 0, "0");
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[1].id, ids[1]);
  EXPECT_EQ((*history)[1].Field("rid"), "r1");
  EXPECT_TRUE(XreadGroup(client(), kGroup, "worker-2", kStream, 10, 0, "0")->empty());
}

TEST_F(StreamsTest, MaxlenTrimsApproximately) {
  CommandBatch batch;
  for (int i = 0; i < 2000; ++i) {
    const std::string rid = std::to_string(i);
    const StreamField fields[] = {{"rid", rid}};
    AppendXadd(batch, kStream, fields, 100);
  }
  ASSERT_TRUE(client().Execute(batch).ok());
  Result<int64_t> length = Xlen(client(), kStream);
  ASSERT_TRUE(length.ok());
  EXPECT_GE(*length, 100);
  EXPECT_LT(*length, 2000);
}

TEST_F(StreamsTest, ErrorsNameTheCommandAndStream) {
  Result<std::vector<StreamEntry>> no_group = XreadGroup(client(), "no-such-group", "w", kStream, 1, 0);
  ASSERT_FALSE(no_group.ok());
  EXPECT_EQ(no_group.status().code(), StatusCode::kNotFound) << no_group.status().ToString();
  EXPECT_NE(no_group.status().message().find("redis XREADGROUP ppml:fashion_cnn:requests: NOGROUP"),
            std::string::npos)
      << no_group.status().ToString();

  Result<std::string> no_fields = Xadd(client(), kStream, {});
  EXPECT_EQ(no_fields.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(XreadGroup(client(), kGroup, "w", kStream, 0, 0).status().code(), StatusCode::kInvalidArgument);

  ASSERT_TRUE(client().Command({"SET", "plain-key", "x"}).ok());
  Result<int64_t> wrong_type = Xlen(client(), "plain-key");
  EXPECT_EQ(wrong_type.status().code(), StatusCode::kFailedPrecondition) << wrong_type.status().ToString();
  EXPECT_EQ(*Xlen(client(), "no-such-stream"), 0);
}

}  // namespace
}  // namespace ppml::queue
