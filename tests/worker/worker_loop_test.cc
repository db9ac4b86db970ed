// The worker loop against a real redis-server, plain and TLS with client
// certificates (the same tests for both): batching by size and by delay,
// expired deadlines, dead-lettering, invalid entries, reclaim from a consumer
// that went away, Redis restarted mid-run.
#include <gtest/gtest.h>

#include "tests/worker/worker_support.h"

namespace ppml::testing {
namespace {

using namespace std::chrono_literals;

class WorkerLoopTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    redis_ = StartRedis(GetParam());
    ASSERT_NE(redis_, nullptr);
    client_ = std::make_unique<queue::RedisClient>(redis_->Endpoint());
  }

  worker::WorkerConfig Config(const std::string& consumer = "w1") { return EchoConfig(redis_->Endpoint(), "m", consumer); }

  std::unique_ptr<queue::LocalRedisServer> redis_;
  std::unique_ptr<queue::RedisClient> client_;
};

TEST_P(WorkerLoopTest, BatchClosesAtMaxBatchSize) {
  Push(*client_, "m", "fe", "r", 8);
  worker::WorkerConfig config = Config();
  config.batching.max_batch_size = 4;
  config.batching.max_queue_delay_us = 5'000'000;  // only size can close these batches in time
  auto recorder = std::make_unique<RecordingProcessor>();
  RecordingProcessor* recording = recorder.get();
  const auto start = Clock::now();
  InProcessWorker worker(config, std::move(recorder));
  ResultCollector results(redis_->Endpoint(), "fe");
  ASSERT_EQ(results.Collect(8, 4s).size(), 8u);
  EXPECT_LT(Clock::now() - start, 4s);
  const auto batches = recording->batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].ids.size(), 4u);
  EXPECT_EQ(batches[1].ids.size(), 4u);
  for (const auto& [rid, answers] : results.results()) {
    ASSERT_EQ(answers.size(), 1u) << rid;
    EXPECT_EQ(answers[0].http_status, 200);
    EXPECT_EQ(answers[0].body, "body-of-" + rid);
  }
  EXPECT_EQ(worker.Stop().ToString(), "OK");
  auto length = queue::Xlen(*client_, queue::RequestStream("m"));
  ASSERT_TRUE(length.ok());
  EXPECT_EQ(*length, 0) << "answered entries are deleted";
  EXPECT_EQ(PendingOf(*client_, "m", "w1"), 0);
}

TEST_P(WorkerLoopTest, BatchClosesWhenTheOldestEntryHasWaitedTheDelay) {
  worker::WorkerConfig config = Config();
  config.batching.max_batch_size = 100;
  config.batching.max_queue_delay_us = 300'000;
  auto recorder = std::make_unique<RecordingProcessor>();
  RecordingProcessor* recording = recorder.get();
  InProcessWorker worker(config, std::move(recorder));
  ASSERT_TRUE(WaitFor([&] { return worker.worker().counters().ready.load(); }, 5s));
  const auto pushed = Clock::now();
  Push(*client_, "m", "fe", "a", 2);
  std::this_thread::sleep_for(100ms);
  Push(*client_, "m", "fe", "b", 1);  // joins the open batch
  ResultCollector results(redis_->Endpoint(), "fe");
  ASSERT_EQ(results.Collect(3, 5s).size(), 3u);
  const auto batches = recording->batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].ids.size(), 3u);
  EXPECT_GE(batches[0].at - pushed, 250ms) << "the batch waited for more";
  EXPECT_LT(batches[0].at - pushed, 2s) << "but not much longer than the delay";
}

TEST_P(WorkerLoopTest, ExpiredDeadlineGets504WithoutInference) {
  Push(*client_, "m", "fe", "late", 2, queue::UnixNowMs() - 1000);
  Push(*client_, "m", "fe", "ok", 1, queue::UnixNowMs() + 60'000);
  auto recorder = std::make_unique<RecordingProcessor>();
  RecordingProcessor* recording = recorder.get();
  InProcessWorker worker(Config(), std::move(recorder));
  ResultCollector results(redis_->Endpoint(), "fe");
  auto& answers = results.Collect(3, 5s);
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(answers["late0"].at(0).http_status, 504);
  EXPECT_NE(answers["late0"].at(0).body.find("deadline"), std::string::npos);
  EXPECT_TRUE(answers["late0"].at(0).response_nonce.empty());
  EXPECT_EQ(answers["ok0"].at(0).http_status, 200);
  for (const auto& batch : recording->batches()) {
    for (const std::string& id : batch.ids) EXPECT_EQ(id.rfind("late", 0), std::string::npos) << id << " was run";
  }
  EXPECT_EQ(worker.worker().counters().expired.load(), 2);
}

TEST_P(WorkerLoopTest, EntryDeliveredTooOftenGoesToTheDeadLetterStream) {
  const std::string stream = queue::RequestStream("m");
  ASSERT_TRUE(queue::EnsureGroup(*client_, stream, queue::kWorkersGroup, "0").ok());
  Push(*client_, "m", "fe", "poison", 1);
  // A consumer that took it three times and never answered (crashing on it, say).
  auto read = queue::XreadGroup(*client_, queue::kWorkersGroup, "ghost", stream, 10, 0);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->size(), 1u);
  const std::string id = read->front().id;
  for (int i = 0; i < 2; ++i) {
    auto claimed = client_->Command({"XCLAIM", stream, queue::kWorkersGroup, "ghost", "0", id});
    ASSERT_TRUE(claimed.ok());
  }
  worker::WorkerConfig config = Config();
  config.recovery.claim_idle_ms = 50;
  config.recovery.max_deliveries = 3;
  auto recorder = std::make_unique<RecordingProcessor>();
  RecordingProcessor* recording = recorder.get();
  InProcessWorker worker(config, std::move(recorder));
  ResultCollector results(redis_->Endpoint(), "fe");
  auto& answers = results.Collect(1, 5s);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers["poison0"].at(0).http_status, 500);
  EXPECT_NE(answers["poison0"].at(0).body.find("3 deliveries"), std::string::npos) << answers["poison0"].at(0).body;
  EXPECT_TRUE(recording->batches().empty()) << "a dead letter is not run again";
  auto dead = queue::Xread(*client_, queue::DeadLetterStream("m"), "0", 10, 0);
  ASSERT_TRUE(dead.ok());
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ(dead->front().Field("rid").value_or(""), "poison0");
  EXPECT_TRUE(dead->front().Field("dead_reason").has_value());
  EXPECT_EQ(PendingOf(*client_, "m", "ghost"), 0);
  EXPECT_EQ(PendingOf(*client_, "m", "w1"), 0);
}

TEST_P(WorkerLoopTest, InvalidEntryIsAnswered400AndDeadLettered) {
  auto added = queue::Xadd(*client_, queue::RequestStream("m"),
                           std::vector<queue::StreamField>{{"rid", "broken"}, {"reply_to", "fe"}, {"body", "x"}});
  ASSERT_TRUE(added.ok());
  auto garbage = queue::Xadd(*client_, queue::RequestStream("m"), std::vector<queue::StreamField>{{"junk", "1"}});
  ASSERT_TRUE(garbage.ok());
  Push(*client_, "m", "fe", "good", 1);
  InProcessWorker worker(Config(), std::make_unique<RecordingProcessor>());
  ResultCollector results(redis_->Endpoint(), "fe");
  auto& answers = results.Collect(2, 5s);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers["broken"].at(0).http_status, 400);
  EXPECT_NE(answers["broken"].at(0).body.find("'enc'"), std::string::npos) << answers["broken"].at(0).body;
  EXPECT_EQ(answers["good0"].at(0).http_status, 200);
  const auto deadline = Clock::now() + 5s;
  int64_t dead_count = 0;
  while (Clock::now() < deadline && dead_count < 2) {
    auto length = queue::Xlen(*client_, queue::DeadLetterStream("m"));
    dead_count = length.ok() ? *length : 0;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(dead_count, 2) << "both entries that are not requests are kept for the operator";
}

TEST_P(WorkerLoopTest, EntriesOfAConsumerThatWentAwayAreReclaimed) {
  const std::string stream = queue::RequestStream("m");
  ASSERT_TRUE(queue::EnsureGroup(*client_, stream, queue::kWorkersGroup, "0").ok());
  Push(*client_, "m", "fe", "orphan", 5);
  auto read = queue::XreadGroup(*client_, queue::kWorkersGroup, "crashed", stream, 10, 0);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->size(), 5u);
  worker::WorkerConfig config = Config();
  config.recovery.claim_idle_ms = 300;
  const auto start = Clock::now();
  InProcessWorker worker(config, std::make_unique<RecordingProcessor>());
  ResultCollector results(redis_->Endpoint(), "fe");
  ASSERT_EQ(results.Collect(5, 5s).size(), 5u);
  const auto took = Clock::now() - start;
  EXPECT_GE(took, 250ms) << "not before claim_idle_ms";
  EXPECT_LT(took, 3s);
  EXPECT_EQ(worker.worker().counters().reclaimed.load(), 5);
  EXPECT_EQ(PendingOf(*client_, "m", "crashed"), 0);
}

TEST_P(WorkerLoopTest, RedisRestartedMidRunTheWorkerReconnectsAndCarriesOn) {
  InProcessWorker worker(Config(), std::make_unique<RecordingProcessor>());
  Push(*client_, "m", "fe", "before", 5);
  {
    ResultCollector results(redis_->Endpoint(), "fe");
    ASSERT_EQ(results.Collect(5, 5s).size(), 5u);
  }
  // Without persistence the restart loses the stream and the group: the
  // worker must notice (NOGROUP) and make them again.
  ASSERT_TRUE(redis_->Restart().ok());
  std::this_thread::sleep_for(300ms);
  Push(*client_, "m", "fe", "after", 5);
  ResultCollector results(redis_->Endpoint(), "fe");
  auto& answers = results.Collect(5, 10s);
  EXPECT_EQ(answers.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(answers.count("after" + std::to_string(i)), 1u);
  EXPECT_EQ(worker.Stop().ToString(), "OK");
}

TEST_P(WorkerLoopTest, PublishesInfoAndHeartbeatAndLeavesOnStop) {
  auto worker = std::make_unique<InProcessWorker>(Config("w-live"), std::make_unique<RecordingProcessor>());
  ASSERT_TRUE(WaitFor([&] { return worker->worker().counters().ready.load(); }, 5s));
  auto metadata = client_->Command({"HGET", queue::InfoKey("m"), "metadata"});
  ASSERT_TRUE(metadata.ok());
  EXPECT_EQ(metadata->str(), R"({"name":"m","versions":[],"platform":"ppml-echo","inputs":[],"outputs":[]})");
  auto beat = client_->Command({"ZSCORE", queue::WorkersKey("m"), "w-live"});
  ASSERT_TRUE(beat.ok());
  ASSERT_TRUE(beat->is_string()) << beat->Describe();
  const int64_t at = std::stoll(std::string(beat->str()));
  EXPECT_LE(std::llabs(queue::UnixNowMs() - at), queue::kHeartbeatTtlMs);
  EXPECT_EQ(worker->Stop().ToString(), "OK");
  auto gone = client_->Command({"ZSCORE", queue::WorkersKey("m"), "w-live"});
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone->is_nil()) << "a stopped worker is no longer live";
}

TEST_P(WorkerLoopTest, AttestEntryWithoutAnEnclaveIsAnswered501) {
  RequestEntry attest = MakeRequest("att", "fe");
  attest.kind = std::string(queue::kAttestKind);
  attest.encapsulated_key.clear();
  attest.body = std::string(32, '\x01');
  ASSERT_TRUE(queue::Xadd(*client_, queue::RequestStream("m"), attest.Fields()).ok());
  auto recorder = std::make_unique<RecordingProcessor>();
  RecordingProcessor* recording = recorder.get();
  InProcessWorker worker(Config(), std::move(recorder));
  ResultCollector results(redis_->Endpoint(), "fe");
  auto& answers = results.Collect(1, 5s);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers["att"].at(0).http_status, 501);
  EXPECT_NE(answers["att"].at(0).body.find("no attestation"), std::string::npos);
  EXPECT_TRUE(recording->batches().empty()) << "an attestation runs no model";
}

INSTANTIATE_TEST_SUITE_P(PlainAndTls, WorkerLoopTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Tls" : "Plain"; });

}  // namespace
}  // namespace ppml::testing
