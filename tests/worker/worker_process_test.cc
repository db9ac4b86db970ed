// ppml-worker as processes against a real redis-server: three workers share
// a stream under load and every request is answered exactly once, also when
// one is killed with SIGKILL mid-batch; SIGTERM finishes the batch in hand;
// metrics and readiness over HTTP; a bad config exits 2 naming the key; the
// enclave end to end (encrypted requests of mixed shapes through Redis); and
// the enclave outsourcing its linear layers to a real ppml-accel.
#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include "common/ehbp.h"
#include "common/kserve.h"
#include "enclave_sim/attestation.h"
#include "tests/support/accel_process.h"
#include "tests/support/http_fetch.h"
#include "tests/support/metric_value.h"
#include "tests/worker/worker_support.h"

namespace ppml::testing {
namespace {

using namespace std::chrono_literals;

std::string EchoYaml(const queue::LocalRedisServer& redis, const std::string& consumer, int64_t delay_us,
                     int metrics_port = -1) {
  return RedisYaml(redis) + "model:\n  name: m\n  backend: echo\n  echo_delay_us: " + std::to_string(delay_us) +
         "\nworker:\n  consumer: " + consumer +
         "\n  batching:\n    max_batch_size: 16\n    max_queue_delay_us: 1000\n"
         "  recovery:\n    claim_idle_ms: 1000\n    max_deliveries: 3\n"
         "  metrics:\n    port: " + std::to_string(metrics_port) + "\n";
}

class WorkerProcessTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    redis_ = StartRedis(GetParam());
    ASSERT_NE(redis_, nullptr);
    client_ = std::make_unique<queue::RedisClient>(redis_->Endpoint());
  }

  TempDir dir_{"ppml-worker-test"};
  std::unique_ptr<queue::LocalRedisServer> redis_;
  std::unique_ptr<queue::RedisClient> client_;
};

TEST_P(WorkerProcessTest, ThreeWorkersOneKilledMidBatchEveryRequestAnsweredExactlyOnce) {
  std::vector<ChildProcess> workers;
  std::vector<std::string> names;
  const auto start_worker = [&] {
    names.push_back("w" + std::to_string(names.size()));
    workers.push_back(StartWorkerProcess(dir_, names.back(), EchoYaml(*redis_, names.back(), 20'000)));
  };
  for (int i = 0; i < 3; ++i) start_worker();
  for (const std::string& name : names) ASSERT_TRUE(WaitForServing(dir_, name, 10s)) << ReadLog(dir_, name);
  constexpr int kRequests = 3000;
  ResultCollector results(redis_->Endpoint(), "fe");
  // The victim may acknowledge its batch between our look and the kill; then
  // it died holding nothing, and a fresh worker takes its place as the victim.
  size_t victim = 0;
  bool killed_holding_a_batch = false;
  Clock::time_point killed_at;
  for (int sent = 0; sent < kRequests; sent += 100) {
    Push(*client_, "m", "fe", "r" + std::to_string(sent) + "-", 100);
    results.Poll(0);
    if (!killed_holding_a_batch && sent >= kRequests / 3 && PendingOf(*client_, "m", names[victim]) > 0) {
      workers[victim].Signal(SIGKILL);
      killed_at = Clock::now();
      const std::optional<int> status = workers[victim].Wait(1s);
      ASSERT_TRUE(status.has_value());
      EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << DescribeExit(*status);
      // Dead, its pending entries stay put until a live worker claims them
      // after claim_idle_ms (1 s): read now, this is what it died holding.
      killed_holding_a_batch = PendingOf(*client_, "m", names[victim]) > 0;
      if (!killed_holding_a_batch) {
        start_worker();
        victim = workers.size() - 1;
        ASSERT_TRUE(WaitForServing(dir_, names[victim], 10s)) << ReadLog(dir_, names[victim]);
      }
    }
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(killed_holding_a_batch) << "no worker was killed while it held a batch";
  auto& answers = results.Collect(kRequests, 20s);
  const auto all_answered = Clock::now();
  EXPECT_EQ(answers.size(), static_cast<size_t>(kRequests));
  size_t duplicates = 0;
  for (const auto& [rid, list] : answers) {
    duplicates += list.size() - 1;
    EXPECT_EQ(list.at(0).http_status, 200) << rid;
  }
  results.Poll(500);  // nothing more comes
  EXPECT_EQ(duplicates, 0u);
  // claim_idle_ms (1 s) plus a batch, with room for a busy 2-core machine.
  EXPECT_LT(all_answered - killed_at, 6s);
  std::cout << "killed " << names[victim] << " mid-batch; every request answered "
            << std::chrono::duration<double, std::milli>(all_answered - killed_at).count()
            << " ms later (claim_idle_ms 1000; the backlog of the load included)" << std::endl;
  EXPECT_EQ(PendingOf(*client_, "m", names[victim]), 0) << "the victim's batch was taken over";
  bool takeover_logged = false;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i != victim && ReadLog(dir_, names[i]).find("worker_reclaimed") != std::string::npos) takeover_logged = true;
  }
  EXPECT_TRUE(takeover_logged) << "a live worker logged the takeover";
}

TEST_P(WorkerProcessTest, SigtermFinishesTheBatchInHandAndExitsZero) {
  ChildProcess worker = StartWorkerProcess(dir_, "w", EchoYaml(*redis_, "w", 800'000));
  ASSERT_TRUE(WaitForServing(dir_, "w", 10s)) << ReadLog(dir_, "w");
  Push(*client_, "m", "fe", "r", 10);
  const auto give_up = Clock::now() + 5s;
  while (PendingOf(*client_, "m", "w") == 0 && Clock::now() < give_up) std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(100ms);  // the batch closes after max_queue_delay_us (1 ms); the echo takes 0.8 s
  const int64_t in_hand = PendingOf(*client_, "m", "w");
  ASSERT_GT(in_hand, 0);
  worker.Signal(SIGTERM);  // mid-batch: the echo takes 0.8 s
  const std::optional<int> status = worker.Wait(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeExit(*status) << ReadLog(dir_, "w");
  // The batch in hand was answered before exiting; what it had not read yet
  // waits in the stream for the next worker, nothing is pending on this one.
  ResultCollector results(redis_->Endpoint(), "fe");
  results.Collect(10, 1s);
  EXPECT_EQ(static_cast<int64_t>(results.results().size()), in_hand);
  EXPECT_EQ(PendingOf(*client_, "m", "w"), 0);
  auto left = queue::Xlen(*client_, queue::RequestStream("m"));
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, 10 - in_hand);
  const std::string log = ReadLog(dir_, "w");
  EXPECT_NE(log.find("event=worker_stop"), std::string::npos) << log;
  EXPECT_EQ(log.find("body-of-"), std::string::npos) << "no payload in the log";
}

TEST_P(WorkerProcessTest, MetricsAndReadinessOverHttp) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  ChildProcess worker = StartWorkerProcess(dir_, "w", EchoYaml(*redis_, "w", 0, *port));
  ASSERT_TRUE(WaitForServing(dir_, "w", 10s)) << ReadLog(dir_, "w");
  Push(*client_, "m", "fe", "r", 20);
  ResultCollector results(redis_->Endpoint(), "fe");
  ASSERT_EQ(results.Collect(20, 5s).size(), 20u);
  EXPECT_EQ(Fetch(*port, "GET", "/ready").status, 200);
  const HttpResponse metrics = Fetch(*port, "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("ppml_worker_requests_total{result=\"ok\"} 20"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("ppml_worker_batch_size_count"), std::string::npos);
  EXPECT_NE(metrics.body.find("ppml_worker_queue_wait_seconds_bucket"), std::string::npos);
  EXPECT_NE(metrics.body.find("ppml_worker_inference_seconds_sum"), std::string::npos);
  EXPECT_NE(metrics.body.find("ppml_worker_reclaimed_total 0"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(PlainAndTls, WorkerProcessTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Tls" : "Plain"; });

TEST(WorkerConfigProcessTest, BadConfigExitsTwoNamingTheKey) {
  TempDir dir("ppml-worker-test");
  ChildProcess worker = StartWorkerProcess(
      dir, "bad", "model:\n  name: m\n  backend: echo\nworker:\n  batching:\n    max_batch_size: many\n");
  const std::optional<int> status = worker.Wait(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << DescribeExit(*status);
  const std::string log = ReadLog(dir, "bad");
  EXPECT_NE(log.find("bad.yaml"), std::string::npos) << log;
  EXPECT_NE(log.find("worker.batching.max_batch_size"), std::string::npos) << log;
}

TEST(WorkerConfigProcessTest, MissingPackageExitsOneNamingTheFile) {
  TempDir dir("ppml-worker-test");
  ASSERT_EQ(RunTool(dir, {"keygen", "platform", "--out-dir", dir.File("platform")}), 0);
  ASSERT_EQ(RunTool(dir, {"enclave", "provision", "--platform", dir.File("platform"), "--out-dir", dir.File("enclave")}), 0);
  ChildProcess worker = StartWorkerProcess(dir, "w",
                                           "model:\n  name: m\n  package: nowhere.ppmlpkg\n"
                                           "enclave:\n  platform: platform\n  sealed_keys: enclave/sealed_keys.bin\n");
  const std::optional<int> status = worker.Wait(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << DescribeExit(*status);
  const std::string log = ReadLog(dir, "w");
  EXPECT_NE(log.find("model.package"), std::string::npos) << log;
  EXPECT_NE(log.find(dir.File("nowhere.ppmlpkg")), std::string::npos) << "relative to the config's folder: " << log;
}

// Encrypted KServe requests to the enclave's key, ids q0..q{count-1}, of
// 1 or 3 Fashion-sized images (alternating, so one read batch mixes shapes)
// whose pixels depend on the index, answered on `reply_to`'s result stream;
// with each the client's state for its reply.
struct SentRequest {
  ehbp::ClientState state;
  int64_t batch;
};
struct EncryptedRequests {
  std::map<std::string, SentRequest> sent;
  std::vector<RequestEntry> entries;
};

EncryptedRequests MakeEncryptedRequests(const enclave::AttestationDocument& doc, int count,
                                        const std::string& reply_to = "fe") {
  EncryptedRequests out;
  for (int i = 0; i < count; ++i) {
    const int64_t n = i % 2 == 0 ? 1 : 3;
    kserve::InferRequest request;
    request.id = "q" + std::to_string(i);
    Tensor images(DataType::kF32, {n, 1, 28, 28});
    for (int64_t k = 0; k < images.element_count(); ++k) images.data<float>()[k] = static_cast<float>((k + i) % 17) / 17.f;
    request.inputs.push_back({"input", std::move(images)});
    auto body = kserve::EncodeInferRequest(request, false);
    EXPECT_TRUE(body.ok());
    if (!body.ok()) continue;
    auto encrypted = ehbp::EncryptRequest(doc.enclave_public_key, body->body);
    EXPECT_TRUE(encrypted.ok());
    if (!encrypted.ok()) continue;
    RequestEntry entry;
    entry.request_id = request.id;
    entry.encapsulated_key = encrypted->encapsulated_key_header_value;
    entry.body.assign(encrypted->body.begin(), encrypted->body.end());
    entry.reply_to = reply_to;
    out.entries.push_back(std::move(entry));
    out.sent.emplace(request.id, SentRequest{std::move(encrypted->client_state), n});
  }
  return out;
}

Status PushEntries(queue::RedisClient& client, const std::string& model, const std::vector<RequestEntry>& entries) {
  queue::CommandBatch batch;
  for (const RequestEntry& entry : entries) queue::AppendXadd(batch, queue::RequestStream(model), entry.Fields());
  return client.Execute(batch).status();
}

// The model's output for one answered request, decrypted as its client would.
Result<Tensor> DecryptOutput(SentRequest& request, const std::string& rid, const ResultEntry& result) {
  if (result.http_status != 200) return Status::Internal(rid + ": HTTP " + std::to_string(result.http_status) + " " + result.body);
  PPML_ASSIGN_OR_RETURN(crypto::Bytes plain,
                        ehbp::DecryptResponse(request.state, result.response_nonce,
                                              crypto::ByteSpan(reinterpret_cast<const uint8_t*>(result.body.data()),
                                                               result.body.size())));
  PPML_ASSIGN_OR_RETURN(kserve::InferResponse response, kserve::ParseInferResponse(plain, result.json_length));
  if (response.id != rid || response.outputs.size() != 1) return Status::Internal(rid + ": unexpected response " + response.id);
  return std::move(response.outputs[0].tensor);
}

// The whole trust flow with the CLI, then encrypted requests of two shapes
// through Redis and one enclave worker; each answer decrypts to the model's
// output for its own input.
TEST(WorkerEnclaveTest, EncryptedRequestsOfMixedShapesThroughRedis) {
  TempDir dir("ppml-worker-test");
  const std::optional<enclave::AttestationDocument> doc = ProvisionAndSealFashion(dir);
  ASSERT_TRUE(doc.has_value());
  auto redis = StartRedis(false);
  ASSERT_NE(redis, nullptr);
  ChildProcess worker = StartWorkerProcess(
      dir, "w",
      RedisYaml(*redis) +
          "model:\n  name: fashion\n  package: fashion.ppmlpkg\nworker:\n  consumer: enclave-w\n  threads: 1\n"
          "  batching:\n    max_batch_size: 8\n    max_queue_delay_us: 200000\n  metrics:\n    port: -1\n"
          "enclave:\n  platform: platform\n  sealed_keys: enclave/sealed_keys.bin\n");
  queue::RedisClient client(redis->Endpoint());
  ASSERT_TRUE(WaitForServing(dir, "w", 30s)) << ReadLog(dir, "w");

  EncryptedRequests requests = MakeEncryptedRequests(*doc, 6);
  std::vector<RequestEntry> entries = requests.entries;
  RequestEntry attest;
  attest.request_id = "attest-1";
  attest.kind = std::string(queue::kAttestKind);
  attest.body = std::string(32, '\x07');  // the client's nonce
  attest.reply_to = "fe";
  entries.push_back(attest);
  ASSERT_TRUE(PushEntries(client, "fashion", entries).ok());

  ResultCollector results(redis->Endpoint(), "fe");
  auto& answers = results.Collect(7, 30s);
  ASSERT_EQ(answers.size(), 7u) << ReadLog(dir, "w");
  // The quote answers the nonce and carries the serving measurement the worker published.
  const ResultEntry attested = answers["attest-1"].at(0);
  answers.erase("attest-1");
  ASSERT_EQ(attested.http_status, 200) << attested.body;
  auto served = enclave::AttestationDocumentFromJson(attested.body);
  ASSERT_TRUE(served.ok()) << served.status().ToString();
  EXPECT_EQ(served->nonce, crypto::Bytes(32, 0x07));
  auto published = client.Command({"HGET", queue::InfoKey("fashion"), "measurement"});
  ASSERT_TRUE(published.ok());
  EXPECT_EQ(published->str(), crypto::ToHex(served->quote.measurement));
  auto metadata = client.Command({"HGET", queue::InfoKey("fashion"), "metadata"});
  ASSERT_TRUE(metadata.ok());
  EXPECT_NE(metadata->str().find(R"("inputs":[{"name":"input","datatype":"FP32","shape":[-1,1,28,28]}])"),
            std::string::npos)
      << metadata->str();
  for (auto& [rid, list] : answers) {
    SentRequest& request = requests.sent.at(rid);
    Result<Tensor> output = DecryptOutput(request, rid, list.at(0));
    ASSERT_TRUE(output.ok()) << output.status().ToString();
    EXPECT_EQ(output->shape(), (std::vector<int64_t>{request.batch, 10})) << rid;
  }
  const std::string log = ReadLog(dir, "w");
  EXPECT_NE(log.find("processor=\"enclave measurement="), std::string::npos) << log;
}

std::string OutsourcedWorkerYaml(const queue::LocalRedisServer& redis, const std::string& accelerator, int metrics_port) {
  return RedisYaml(redis) +
         "model:\n  name: fashion\n  package: fashion.ppmlpkg\nworker:\n  consumer: enclave-w\n  threads: 1\n"
         "  batching:\n    max_batch_size: 8\n    max_queue_delay_us: 100000\n  metrics:\n    port: " +
         std::to_string(metrics_port) +
         "\nenclave:\n  platform: platform\n  sealed_keys: enclave/sealed_keys.bin\n"
         "  outsource:\n    mode: integrity\n    accelerator: " + accelerator +
         "\n    calibration: random:8\n    max_failures: 0\n";
}

// Verified outsourcing as deployed: an enclave provisioned for integrity
// mode, a ppml-worker whose linear layers go to a real ppml-accel, encrypted
// requests through Redis. An honest accelerator and one that corrupts every
// reply give the same answers, bit for bit: the corrupted replies are all
// caught by Freivalds' check and recomputed inside, as the metrics say.
TEST(WorkerOutsourceTest, HonestAndTamperingAcceleratorsGiveTheSameAnswers) {
  TempDir dir("ppml-worker-test");
  const std::optional<enclave::AttestationDocument> doc = ProvisionAndSealFashion(dir, {"--outsource", "integrity"});
  ASSERT_TRUE(doc.has_value());
  auto redis = StartRedis(false);
  ASSERT_NE(redis, nullptr);
  queue::RedisClient client(redis->Endpoint());
  struct Run {
    std::map<std::string, std::vector<float>> outputs;
    std::string metrics;
  };
  auto serve = [&](const std::vector<std::string>& accel_flags, const std::string& name) -> Run {
    Run run;
    AccelProcess accel("", accel_flags);
    auto port = PickFreePort();
    EXPECT_TRUE(port.ok());
    if (!port.ok()) return run;
    ChildProcess worker = StartWorkerProcess(dir, name, OutsourcedWorkerYaml(*redis, accel.address(), *port));
    EXPECT_TRUE(WaitForServing(dir, name, 60s)) << ReadLog(dir, name);
    EncryptedRequests requests = MakeEncryptedRequests(*doc, 4, name);
    EXPECT_TRUE(PushEntries(client, "fashion", requests.entries).ok());
    ResultCollector results(redis->Endpoint(), name);
    auto& answers = results.Collect(4, 60s);
    EXPECT_EQ(answers.size(), 4u) << ReadLog(dir, name);
    for (auto& [rid, list] : answers) {
      Result<Tensor> output = DecryptOutput(requests.sent.at(rid), rid, list.at(0));
      EXPECT_TRUE(output.ok()) << output.status().ToString();
      if (!output.ok()) continue;
      EXPECT_EQ(output->shape(), (std::vector<int64_t>{requests.sent.at(rid).batch, 10})) << rid;
      run.outputs[rid].assign(output->data<float>(), output->data<float>() + output->element_count());
    }
    run.metrics = Fetch(*port, "GET", "/metrics").body;
    worker.Signal(SIGTERM);
    EXPECT_TRUE(worker.Wait(10s).has_value());
    return run;
  };
  const Run honest = serve({}, "honest");
  const Run tampered = serve({"--tamper-rate", "1", "--tamper-seed", "9"}, "tampered");
  ASSERT_EQ(honest.outputs.size(), 4u);
  EXPECT_EQ(tampered.outputs, honest.outputs) << "every corrupted reply recomputed inside";

  const double honest_outside = MetricValue(honest.metrics, R"(ppml_outsource_layer_calls_total{where="accelerator"})");
  EXPECT_GT(honest_outside, 0) << honest.metrics;
  EXPECT_EQ(MetricValue(honest.metrics, "ppml_outsource_failed_checks_total"), 0) << honest.metrics;
  EXPECT_EQ(MetricValue(honest.metrics, "ppml_outsource_accelerator_bad"), 0) << honest.metrics;
  // The enclave's memory budget and plan builds are there for operators too.
  const double budget = MetricValue(honest.metrics, R"(ppml_enclave_memory_bytes{kind="budget"})");
  const double peak = MetricValue(honest.metrics, R"(ppml_enclave_memory_bytes{kind="peak"})");
  const double in_use = MetricValue(honest.metrics, R"(ppml_enclave_memory_bytes{kind="in_use"})");
  EXPECT_GT(in_use, 0) << honest.metrics;
  EXPECT_GE(peak, in_use) << honest.metrics;
  EXPECT_GE(budget, peak) << honest.metrics;
  EXPECT_GE(MetricValue(honest.metrics, "ppml_enclave_plans_built_total"), 1) << honest.metrics;
  // Every reply of the tampering accelerator failed its check and ran inside.
  const double failed = MetricValue(tampered.metrics, "ppml_outsource_failed_checks_total");
  EXPECT_GT(failed, 0) << tampered.metrics;
  EXPECT_EQ(MetricValue(tampered.metrics, R"(ppml_outsource_layer_calls_total{where="accelerator"})"), 0)
      << tampered.metrics;
  EXPECT_GE(MetricValue(tampered.metrics, R"(ppml_outsource_layer_calls_total{where="enclave"})"), failed)
      << tampered.metrics;
}

// A model its owner sealed as confidential never reaches an accelerator:
// the worker refuses to start in an outsourcing mode, naming the reason.
TEST(WorkerOutsourceTest, ConfidentialModelIsRefusedAtStart) {
  TempDir dir("ppml-worker-test");
  ASSERT_TRUE(ProvisionAndSealFashion(dir, {"--outsource", "integrity"}, {"--confidential"}).has_value());
  auto redis = StartRedis(false);
  ASSERT_NE(redis, nullptr);
  AccelProcess accel;
  ChildProcess worker = StartWorkerProcess(dir, "w", OutsourcedWorkerYaml(*redis, accel.address(), -1));
  const std::optional<int> status = worker.Wait(60s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0) << DescribeExit(*status);
  const std::string log = ReadLog(dir, "w");
  EXPECT_NE(log.find("confidential"), std::string::npos) << log;
  EXPECT_EQ(accel.log().find("event=accel_layer_registered"), std::string::npos) << "no layer was sent: " << accel.log();
}

}  // namespace
}  // namespace ppml::testing
