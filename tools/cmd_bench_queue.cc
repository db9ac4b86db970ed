// ppml bench queue --workers N --seconds S [--tls] [--redis URL] [--batch B]
//                  [--delay-us D] [--payload-bytes P] [--window W] [--json]
//
//   The queue path with the null model (DESIGN.md contracts): a load
//   generator XADDs requests to ppml:{null}:requests (pipelined, at most W
//   in flight) and XREADs their results; N workers (the real worker loop,
//   one thread and one Redis connection each, echo processor) batch, answer
//   and acknowledge them. Redis is a redis-server this command starts (with
//   --tls: TLS only, client certificates required) unless --redis is given.
//   After a one-second warm-up, counts results for S seconds. With --json
//   the last stdout line:
//   {"workers","seconds","tls","batch","max_queue_delay_us","payload_bytes",
//    "window","throughput_per_s","latency_ms_p50","latency_ms_p99",
//    "isa","threads","precision":"null"}
//   Latency is XADD to result read, under this closed-loop load.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

#include "common/json_line.h"
#include "common/log.h"
#include "engine/engine.h"
#include "queue/local_redis.h"
#include "queue/redis.h"
#include "queue/request_entry.h"
#include "queue/streams.h"
#include "tools/cli_support.h"
#include "tools/commands.h"
#include "worker/config.h"
#include "worker/processor.h"
#include "worker/worker.h"

namespace ppml::tools {
namespace {

constexpr const char* kCommand = "bench queue";
constexpr std::string_view kModel = "null";

using Clock = std::chrono::steady_clock;

struct BenchQueueOptions {
  int workers = 1;
  double seconds = 10;
  bool tls = false;
  std::string redis_url;
  std::string redis_ca;
  int batch = 64;
  int64_t delay_us = 500;
  int payload_bytes = 256;
  int window = 512;
  bool json = false;
};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Send times by request id (a ring far larger than the window).
class SendTimes {
 public:
  void Set(uint64_t rid, int64_t ns) { times_[rid % times_.size()].store(ns, std::memory_order_relaxed); }
  int64_t Get(uint64_t rid) const { return times_[rid % times_.size()].load(std::memory_order_relaxed); }

 private:
  std::vector<std::atomic<int64_t>> times_ = std::vector<std::atomic<int64_t>>(1 << 20);
};

struct LoadState {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> in_flight{0};
  std::atomic<int64_t> received{0};
  std::atomic<int64_t> measure_from_ns{INT64_MAX};
  std::atomic<int64_t> measure_to_ns{INT64_MAX};
  SendTimes send_times;
  std::mutex latency_mutex;
  std::vector<double> latencies_ms;
  Status error;  // the first failure of the producer or the consumer
  std::mutex error_mutex;

  void Fail(const Status& status) {
    std::lock_guard lock(error_mutex);
    if (error.ok()) error = status;
    stop = true;
  }
};

void Produce(const queue::RedisEndpoint& endpoint, const BenchQueueOptions& options, const std::string& reply_to,
             LoadState& state) {
  queue::RedisClient client(endpoint);
  const std::string stream = queue::RequestStream(kModel);
  const std::string payload(static_cast<size_t>(options.payload_bytes), 'x');
  const std::string enc(64, '0');
  uint64_t next_rid = 0;
  while (!state.stop) {
    const int64_t room = options.window - state.in_flight.load();
    if (room <= 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      continue;
    }
    const int64_t count = std::min<int64_t>(room, 256);
    queue::CommandBatch batch;
    std::vector<queue::RequestEntry> entries(static_cast<size_t>(count));
    for (queue::RequestEntry& entry : entries) {
      entry.request_id = std::to_string(next_rid);
      entry.encapsulated_key = enc;
      entry.body = payload;
      entry.reply_to = reply_to;
      state.send_times.Set(next_rid++, NowNs());
      queue::AppendXadd(batch, stream, entry.Fields());
    }
    state.in_flight += count;
    Result<std::vector<queue::RedisReply>> replies = client.Execute(batch);
    if (!replies.ok()) return state.Fail(replies.status().WithContext("load generator XADD"));
  }
}

void Consume(const queue::RedisEndpoint& endpoint, const std::string& reply_to, LoadState& state) {
  queue::RedisClient client(endpoint);
  const std::string stream = queue::ResultStream(reply_to);
  std::string last_id = "0";
  while (!state.stop) {
    Result<std::vector<queue::StreamEntry>> entries = queue::Xread(client, stream, last_id, 1000, 100);
    if (!entries.ok()) return state.Fail(entries.status().WithContext("load generator XREAD"));
    const int64_t now = NowNs();
    std::vector<double> latencies;
    for (const queue::StreamEntry& entry : *entries) {
      last_id = entry.id;
      Result<queue::ResultEntry> result = queue::ResultEntry::FromStream(entry);
      if (!result.ok()) return state.Fail(result.status());
      if (result->http_status != 200) {
        return state.Fail(Status::Internal("request " + result->request_id + " answered " +
                                           std::to_string(result->http_status) + ": " + result->body));
      }
      const int64_t sent = state.send_times.Get(std::stoull(result->request_id));
      if (sent >= state.measure_from_ns && now <= state.measure_to_ns) latencies.push_back((now - sent) / 1e6);
    }
    state.in_flight -= static_cast<int64_t>(entries->size());
    state.received += static_cast<int64_t>(entries->size());
    if (!latencies.empty()) {
      std::lock_guard lock(state.latency_mutex);
      state.latencies_ms.insert(state.latencies_ms.end(), latencies.begin(), latencies.end());
    }
  }
}

queue::LocalRedisOptions TlsOptions(bool tls) {
  queue::LocalRedisOptions options;
  options.tls = tls;
  options.require_client_cert = tls;
  return options;
}

int RunBenchQueue(const BenchQueueOptions& options) {
  // The workers log a line each per start and stop; a benchmark shows only warnings.
  if (CurrentLogLevel() < LogLevel::kWarn) SetLogLevel(LogLevel::kWarn);
  std::unique_ptr<queue::LocalRedisServer> local;
  queue::RedisEndpoint endpoint;
  if (options.redis_url.empty()) {
    Result<std::unique_ptr<queue::LocalRedisServer>> started =
        queue::LocalRedisServer::Start(TlsOptions(options.tls));
    if (!started.ok()) return ReportError(kCommand, started.status());
    local = std::move(started).value();
    endpoint = local->Endpoint();
  } else {
    Result<queue::RedisEndpoint> parsed = queue::ParseRedisUrl(options.redis_url);
    if (!parsed.ok()) return ReportError(kCommand, "--redis: " + parsed.status().message(), kExitUsage);
    endpoint = *parsed;
    endpoint.tls_options.ca_file = options.redis_ca;
  }
  const std::string reply_to = "bench-" + std::to_string(::getpid());
  std::cerr << "ppml bench queue: " << options.workers << " worker(s), batch " << options.batch << ", delay "
            << options.delay_us << " us, payload " << options.payload_bytes << " B, window " << options.window
            << ", redis " << endpoint.RedactedUrl() << (local ? " (started here)" : "") << std::endl;

  {  // a clean stream and a group for this run
    queue::RedisClient client(endpoint);
    const std::string stream = queue::RequestStream(kModel);
    if (Result<queue::RedisReply> r = client.Command({"DEL", stream, queue::ResultStream(reply_to)}); !r.ok()) {
      return ReportError(kCommand, r.status());
    }
    if (Status s = queue::EnsureGroup(client, stream, queue::kWorkersGroup, "0"); !s.ok()) return ReportError(kCommand, s);
  }

  std::atomic<bool> stop_workers{false};
  std::vector<std::unique_ptr<worker::Worker>> workers;
  std::vector<std::thread> worker_threads;
  std::vector<Status> worker_status(static_cast<size_t>(options.workers));
  for (int i = 0; i < options.workers; ++i) {
    worker::WorkerConfig config;
    config.redis = endpoint;
    config.model_name = std::string(kModel);
    config.backend = worker::Backend::kEcho;
    config.consumer = "bench-worker-" + std::to_string(i);
    config.batching.max_batch_size = options.batch;
    config.batching.max_queue_delay_us = options.delay_us;
    workers.push_back(std::make_unique<worker::Worker>(config, worker::MakeEchoProcessor(), nullptr));
  }
  for (int i = 0; i < options.workers; ++i) {
    worker_threads.emplace_back([&, i] { worker_status[static_cast<size_t>(i)] = workers[static_cast<size_t>(i)]->Run(stop_workers); });
  }

  LoadState state;
  std::thread producer(Produce, std::cref(endpoint), std::cref(options), std::cref(reply_to), std::ref(state));
  std::thread consumer(Consume, std::cref(endpoint), std::cref(reply_to), std::ref(state));

  std::this_thread::sleep_for(std::chrono::seconds(1));  // warm-up
  const int64_t from_ns = NowNs();
  const int64_t received_before = state.received.load();
  state.measure_from_ns = from_ns;
  const auto measure = std::chrono::duration<double>(options.seconds);
  for (auto left = measure; left.count() > 0 && !state.stop; left -= std::chrono::seconds(1)) {
    std::this_thread::sleep_for(std::min<std::chrono::duration<double>>(left, std::chrono::seconds(1)));
    std::cerr << "ppml bench queue: " << (state.received.load() - received_before) << " results so far" << std::endl;
  }
  const int64_t to_ns = NowNs();
  state.measure_to_ns = to_ns;
  const int64_t received = state.received.load() - received_before;
  state.stop = true;
  producer.join();
  consumer.join();
  stop_workers = true;
  for (std::thread& thread : worker_threads) thread.join();
  if (!state.error.ok()) return ReportError(kCommand, state.error);
  for (const Status& status : worker_status) {
    if (!status.ok()) return ReportError(kCommand, status.WithContext("worker"));
  }

  const double elapsed = (to_ns - from_ns) / 1e9;
  const double throughput = static_cast<double>(received) / elapsed;
  std::vector<double> latencies;
  {
    std::lock_guard lock(state.latency_mutex);
    latencies = state.latencies_ms;
  }
  const LatencySummary summary = SummarizeLatencies(std::move(latencies));
  const double p50 = summary.p50_ms, p99 = summary.p99_ms;
  std::cout << "null model through Redis: " << throughput << " requests/s with " << options.workers
            << " worker(s), latency p50 " << p50 << " ms, p99 " << p99 << " ms" << (options.tls ? " (TLS)" : "")
            << std::endl;
  if (options.json) {
    JsonLine json;
    json.Add("workers", options.workers)
        .Add("seconds", elapsed)
        .Add("tls", endpoint.tls)
        .Add("batch", options.batch)
        .Add("max_queue_delay_us", options.delay_us)
        .Add("payload_bytes", options.payload_bytes)
        .Add("window", options.window)
        .Add("throughput_per_s", throughput)
        .Add("latency_ms_p50", p50)
        .Add("latency_ms_p99", p99)
        .Add("isa", engine::EffectiveCpuIsa())
        .Add("threads", options.workers)
        .Add("precision", "null");
    std::cout << json.str() << std::endl;
  }
  return kExitOk;
}

}  // namespace

void AddBenchQueueCommand(CLI::App& bench, int* exit_code) {
  auto options = std::make_shared<BenchQueueOptions>();
  CLI::App* command = bench.add_subcommand("queue", "Null-model throughput through Redis streams and the worker loop");
  command->add_option("--workers", options->workers, "worker loops (threads, one Redis connection each)")
      ->check(CLI::Range(1, 64));
  command->add_option("--seconds", options->seconds, "how long to measure, after a 1 s warm-up")
      ->check(CLI::Range(0.1, 3600.0));
  command->add_flag("--tls", options->tls, "start redis-server with TLS only and client certificates required");
  command->add_option("--redis", options->redis_url, "use this Redis (redis:// or rediss://) instead of starting one");
  command->add_option("--redis-ca", options->redis_ca, "CA file for a rediss:// --redis")->check(CLI::ExistingFile);
  command->add_option("--batch", options->batch, "worker.batching.max_batch_size")->check(CLI::Range(1, 4096));
  command->add_option("--delay-us", options->delay_us, "worker.batching.max_queue_delay_us")
      ->check(CLI::Range(int64_t{0}, int64_t{10'000'000}));
  command->add_option("--payload-bytes", options->payload_bytes, "request body size")->check(CLI::Range(1, 1 << 24));
  command->add_option("--window", options->window, "requests in flight at most (closed loop)")
      ->check(CLI::Range(1, 1 << 19));
  command->add_flag("--json", options->json, "print the result as one JSON object on the last line");
  command->get_option("--tls")->excludes(command->get_option("--redis"));
  command->callback([options, exit_code] { *exit_code = RunBenchQueue(*options); });
}

}  // namespace ppml::tools
