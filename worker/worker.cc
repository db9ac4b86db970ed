#include "worker/worker.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <thread>
#include <unordered_map>

#include "common/log.h"
#include "queue/redis.h"
#include "queue/request_entry.h"
#include "queue/streams.h"

namespace ppml::worker {
namespace {

using Clock = std::chrono::steady_clock;
using queue::RequestEntry;
using queue::ResultEntry;
using queue::StreamEntry;
using queue::StreamField;

// The wait inside XREADGROUP BLOCK: short, so that a stop is seen quickly.
constexpr int kPollBlockMs = 100;
// While a batch waits for more entries: how often to look.
constexpr int64_t kBatchPollUs = 250;

// The millisecond part of a stream id ("1700000000123-0"): when Redis added it.
int64_t EntryTimeMs(std::string_view id) {
  int64_t ms = 0;
  std::from_chars(id.data(), id.data() + id.size(), ms);
  return ms;
}

int64_t ClaimIntervalMs(const RecoveryConfig& recovery) {
  return std::clamp<int64_t>(recovery.claim_idle_ms / 10, 10, 1000);
}

std::vector<double> BatchSizeBuckets(int max_batch_size) {
  std::vector<double> bounds;
  for (int size = 1; size < max_batch_size; size *= 2) bounds.push_back(size);
  bounds.push_back(max_batch_size);
  return bounds;
}

}  // namespace

struct Worker::Metrics {
  explicit Metrics(metrics::Registry& r, int max_batch_size)
      : batches(r.AddCounter("ppml_worker_batches_total", "Batches processed")),
        requests_ok(r.AddCounter("ppml_worker_requests_total", "Results written, by outcome", {{"result", "ok"}})),
        requests_error(r.AddCounter("ppml_worker_requests_total", "Results written, by outcome", {{"result", "error"}})),
        expired(r.AddCounter("ppml_worker_expired_total", "Requests past their deadline, answered 504 without inference")),
        dead_lettered(r.AddCounter("ppml_worker_dead_lettered_total", "Requests moved to the dead-letter stream")),
        invalid(r.AddCounter("ppml_worker_invalid_entries_total", "Stream entries that are not requests")),
        reclaimed(r.AddCounter("ppml_worker_reclaimed_total", "Entries taken over from other consumers (XAUTOCLAIM)")),
        redis_errors(r.AddCounter("ppml_worker_redis_errors_total", "Redis calls that failed after retries")),
        batch_size(r.AddHistogram("ppml_worker_batch_size", "Requests per batch", BatchSizeBuckets(max_batch_size))),
        queue_wait(r.AddHistogram("ppml_worker_queue_wait_seconds", "Time from XADD to the worker reading the entry",
                                  metrics::ExponentialBuckets(0.0001, 2, 18))),
        inference(r.AddHistogram("ppml_worker_inference_seconds", "Time of one processor call (one ecall) per batch",
                                 metrics::ExponentialBuckets(0.0001, 2, 18))) {}

  metrics::Counter &batches, &requests_ok, &requests_error, &expired, &dead_lettered, &invalid, &reclaimed,
      &redis_errors;
  metrics::Histogram &batch_size, &queue_wait, &inference;
};

// The enclave's memory budget (the EPC) and plan builds: gauges set after
// each batch. Plans built climbing under steady load means batch sizes keep
// evicting each other's plans (a budget too small for them).
struct Worker::EnclaveMetrics {
  explicit EnclaveMetrics(metrics::Registry& r)
      : in_use(r.AddGauge("ppml_enclave_memory_bytes", "Enclave memory budget (EPC) use", {{"kind", "in_use"}})),
        peak(r.AddGauge("ppml_enclave_memory_bytes", "Enclave memory budget (EPC) use", {{"kind", "peak"}})),
        budget(r.AddGauge("ppml_enclave_memory_bytes", "Enclave memory budget (EPC) use", {{"kind", "budget"}})),
        plans_built(r.AddGauge("ppml_enclave_plans_built_total", "Engine plans (one per batch size) built since start")) {}

  void Set(const enclave::EnclaveStats& s) {
    in_use.Set(static_cast<double>(s.memory.in_use_bytes));
    peak.Set(static_cast<double>(s.memory.peak_bytes));
    budget.Set(static_cast<double>(s.memory.budget_bytes));
    plans_built.Set(static_cast<double>(s.plans_built));
  }

  metrics::Gauge &in_use, &peak, &budget, &plans_built;
};

// Verified outsourcing (enclave.outsource): gauges set from the enclave's
// counters after each batch (rate() of the totals gives the refill rate).
struct Worker::OutsourceMetrics {
  explicit OutsourceMetrics(metrics::Registry& r)
      : pad_pool(r.AddGauge("ppml_outsource_pad_pool", "Blinding pads ready, all layers together")),
        pads_generated(r.AddGauge("ppml_outsource_pads_generated_total", "Blinding pads precomputed since start")),
        pads_per_second(r.AddGauge("ppml_outsource_pad_refill_per_second",
                                   "Pads the enclave precomputes per second of precompute time")),
        pad_fallbacks(r.AddGauge("ppml_outsource_pad_fallbacks_total", "Layer calls run inside for want of pads")),
        outsourced(r.AddGauge("ppml_outsource_layer_calls_total", "Layer results by where they were computed",
                              {{"where", "accelerator"}})),
        local(r.AddGauge("ppml_outsource_layer_calls_total", "Layer results by where they were computed",
                         {{"where", "enclave"}})),
        failed_checks(r.AddGauge("ppml_outsource_failed_checks_total", "Accelerator replies Freivalds rejected")),
        accelerator_errors(r.AddGauge("ppml_outsource_accelerator_errors_total",
                                      "Layer calls the accelerator did not answer (connection lost, errors)")),
        reconnects(r.AddGauge("ppml_outsource_reconnects_total", "New connections after the accelerator went away")),
        accelerator_bad(r.AddGauge("ppml_outsource_accelerator_bad", "1 once the accelerator is no longer used")) {}

  void Set(const accel::OutsourceStats& s) {
    pad_pool.Set(static_cast<double>(s.pad_pool));
    pads_generated.Set(static_cast<double>(s.pads_generated));
    pads_per_second.Set(s.pad_generation_seconds > 0 ? s.pads_generated / s.pad_generation_seconds : 0);
    pad_fallbacks.Set(static_cast<double>(s.pad_fallbacks));
    outsourced.Set(static_cast<double>(s.outsourced_calls));
    local.Set(static_cast<double>(s.local_calls));
    failed_checks.Set(static_cast<double>(s.failed_checks));
    accelerator_errors.Set(static_cast<double>(s.accelerator_errors));
    reconnects.Set(static_cast<double>(s.reconnects));
    accelerator_bad.Set(s.accelerator_bad ? 1 : 0);
  }

  metrics::Gauge &pad_pool, &pads_generated, &pads_per_second, &pad_fallbacks, &outsourced, &local, &failed_checks,
      &accelerator_errors, &reconnects, &accelerator_bad;
};

// One Run: the connection and the state of the scans.
class Worker::Loop {
 public:
  Loop(Worker& worker, const std::atomic<bool>& stop)
      : worker_(worker),
        config_(worker.config_),
        stop_(stop),
        client_(config_.redis, queue::ReconnectPolicy{.initial_delay_ms = 50, .max_delay_ms = 1000,
                                                      .max_attempts = 0, .give_up_after_ms = 2000}),
        stream_(queue::RequestStream(config_.model_name)),
        dead_stream_(queue::DeadLetterStream(config_.model_name)) {}

  Status Run() {
    PPML_RETURN_IF_ERROR(Join());
    worker_.counters_.ready = true;
    LogInfo("worker_serving", {{"consumer", config_.consumer}, {"stream", stream_}});
    Clock::time_point next_claim = Clock::now();
    Clock::time_point next_heartbeat = Clock::now() + std::chrono::milliseconds(queue::kHeartbeatIntervalMs);
    while (!stop_) {
      if (Clock::now() >= next_heartbeat) {
        static_cast<void>(Heartbeat());  // a failure is logged; serving goes on
        next_heartbeat = Clock::now() + std::chrono::milliseconds(queue::kHeartbeatIntervalMs);
      }
      if (Clock::now() >= next_claim) {
        std::vector<StreamEntry> claimed = Reclaim();
        if (!claimed.empty()) {
          Handle(claimed, /*claimed=*/true);
          continue;  // there may be more to take over
        }
        next_claim = Clock::now() + std::chrono::milliseconds(ClaimIntervalMs(config_.recovery));
      }
      std::vector<StreamEntry> batch = ReadBatch();
      if (!batch.empty()) Handle(batch, /*claimed=*/false);
    }
    worker_.counters_.ready = false;
    Leave();
    return Status::Ok();
  }

 private:
  // Connects and creates the group, waiting for Redis while it is down;
  // wrong credentials or certificates end the run.
  Status Join() {
    while (!stop_) {
      Status status = queue::EnsureGroup(client_, stream_, queue::kWorkersGroup, "0");
      if (status.ok()) status = Heartbeat();
      if (status.ok()) return Status::Ok();
      if (status.code() == StatusCode::kPermissionDenied || status.code() == StatusCode::kInvalidArgument) {
        return status;
      }
      if (status.code() != StatusCode::kUnavailable && status.code() != StatusCode::kDeadlineExceeded) {
        return status.WithContext("cannot join group '" + std::string(queue::kWorkersGroup) + "' of " + stream_);
      }
      RedisFailed("join", status);
    }
    return Status::Ok();
  }

  void RedisFailed(std::string_view step, const Status& status) {
    worker_.metrics_->redis_errors.Increment();
    LogWarn("worker_redis_error", {{"consumer", config_.consumer}, {"step", step}, {"error", status.ToString()}});
    // NOGROUP: Redis restarted without its data, or someone deleted the stream.
    if (status.code() == StatusCode::kNotFound) {
      if (queue::EnsureGroup(client_, stream_, queue::kWorkersGroup, "0").ok()) {
        LogInfo("worker_group_recreated", {{"consumer", config_.consumer}, {"stream", stream_}});
      }
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  // Publishes the worker info and this consumer's heartbeat, and forgets
  // consumers silent for much longer than the TTL (they died long ago).
  Status Heartbeat() {
    const std::string now = std::to_string(queue::UnixNowMs());
    const std::string forget_before = std::to_string(queue::UnixNowMs() - 12 * queue::kHeartbeatTtlMs);
    const std::string workers = queue::WorkersKey(config_.model_name);
    queue::CommandBatch batch;
    batch.Add({"HSET", queue::InfoKey(config_.model_name), "measurement", info_.measurement_hex, "hpke_key_config",
               info_.hpke_key_config, "metadata", info_.metadata_json, "updated_ms", now});
    batch.Add({"ZADD", workers, now, config_.consumer});
    batch.Add({"ZREMRANGEBYSCORE", workers, "-inf", "(" + forget_before});
    Result<std::vector<queue::RedisReply>> replies = client_.Execute(batch);
    Status status = replies.ok() ? Status::Ok() : replies.status();
    if (status.ok()) {
      for (const queue::RedisReply& reply : *replies) {
        status = queue::RedisErrorStatus(reply, "heartbeat");
        if (!status.ok()) break;
      }
    }
    if (!status.ok()) RedisFailed("heartbeat", status);
    return status;
  }

  // A clean stop: no longer counted as live.
  void Leave() {
    Result<queue::RedisReply> reply = client_.Command({"ZREM", queue::WorkersKey(config_.model_name), config_.consumer});
    if (!reply.ok()) LogWarn("worker_leave_failed", {{"consumer", config_.consumer}, {"error", reply.status().ToString()}});
  }

  // XAUTOCLAIM from where the last scan stopped.
  std::vector<StreamEntry> Reclaim() {
    Result<queue::AutoclaimResult> result =
        queue::Autoclaim(client_, stream_, queue::kWorkersGroup, config_.consumer, config_.recovery.claim_idle_ms,
                         claim_cursor_, config_.batching.max_batch_size);
    if (!result.ok()) {
      RedisFailed("xautoclaim", result.status());
      return {};
    }
    claim_cursor_ = result->next_start;
    if (!result->entries.empty()) {
      worker_.counters_.reclaimed += static_cast<int64_t>(result->entries.size());
      worker_.metrics_->reclaimed.Increment(static_cast<double>(result->entries.size()));
      LogInfo("worker_reclaimed", {{"consumer", config_.consumer},
                                   {"entries", result->entries.size()},
                                   {"idle_ms_over", config_.recovery.claim_idle_ms}});
    }
    return std::move(result->entries);
  }

  // Up to max_batch_size new entries; after the first, waits for more until
  // the oldest has waited max_queue_delay_us. Never drops what it has read.
  std::vector<StreamEntry> ReadBatch() {
    const int64_t max_size = config_.batching.max_batch_size;
    Result<std::vector<StreamEntry>> first =
        queue::XreadGroup(client_, queue::kWorkersGroup, config_.consumer, stream_, max_size, kPollBlockMs);
    if (!first.ok()) {
      RedisFailed("xreadgroup", first.status());
      return {};
    }
    std::vector<StreamEntry> batch = std::move(first).value();
    if (batch.empty()) return batch;
    const Clock::time_point first_seen = Clock::now();
    const int64_t oldest_ms = EntryTimeMs(batch.front().id);
    const int64_t delay_us = config_.batching.max_queue_delay_us;
    while (static_cast<int64_t>(batch.size()) < max_size && !stop_) {
      // The oldest entry's age: since we saw it, or since Redis added it,
      // whichever is longer (clocks of other hosts may disagree a little).
      const int64_t seen_us =
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - first_seen).count();
      const int64_t age_us = std::max(seen_us, (queue::UnixNowMs() - oldest_ms) * 1000);
      const int64_t remaining_us = delay_us - age_us;
      if (remaining_us <= 0) break;
      // Short sleeps and reads that do not block: Redis 7.0 ends a BLOCK
      // with no new entry only on its 10 Hz timer, ~100 ms instead of 1 ms.
      std::this_thread::sleep_for(std::chrono::microseconds(std::min<int64_t>(remaining_us, kBatchPollUs)));
      Result<std::vector<StreamEntry>> more = queue::XreadGroup(
          client_, queue::kWorkersGroup, config_.consumer, stream_, max_size - static_cast<int64_t>(batch.size()), 0);
      if (!more.ok()) {
        RedisFailed("xreadgroup", more.status());
        break;
      }
      for (StreamEntry& entry : *more) batch.push_back(std::move(entry));
    }
    return batch;
  }

  // Delivery counts of claimed entries; empty when XPENDING fails (they are then served).
  std::unordered_map<std::string, int64_t> Deliveries(std::span<const StreamEntry> entries) {
    std::vector<std::string> ids;
    for (const StreamEntry& entry : entries) ids.push_back(entry.id);
    std::unordered_map<std::string, int64_t> counts;
    Result<std::vector<queue::PendingEntry>> pending =
        queue::PendingDeliveries(client_, stream_, queue::kWorkersGroup, ids);
    if (!pending.ok()) {
      RedisFailed("xpending", pending.status());
      return counts;
    }
    for (const queue::PendingEntry& entry : *pending) counts[entry.id] = entry.deliveries;
    return counts;
  }

  struct Outgoing {
    std::vector<std::pair<std::string, ResultEntry>> results;  // (result stream, result)
    std::vector<std::pair<const StreamEntry*, std::string>> dead;  // (entry, reason)
    std::vector<std::string> ids;  // everything to acknowledge
  };

  void Handle(std::span<const StreamEntry> entries, bool claimed) {
    Metrics& metrics = *worker_.metrics_;
    const int64_t now_ms = queue::UnixNowMs();
    std::unordered_map<std::string, int64_t> deliveries;
    if (claimed) deliveries = Deliveries(entries);

    Outgoing out;
    std::vector<RequestEntry> to_run;
    for (const StreamEntry& entry : entries) {
      out.ids.push_back(entry.id);
      metrics.queue_wait.Observe(std::max<int64_t>(0, now_ms - EntryTimeMs(entry.id)) / 1000.0);
      Result<RequestEntry> request = RequestEntry::FromStream(entry);
      if (!request.ok()) {
        Invalid(entry, request.status(), out);
        continue;
      }
      auto count = deliveries.find(entry.id);
      if (count != deliveries.end() && count->second > config_.recovery.max_deliveries) {
        const std::string reason = "not answered after " + std::to_string(count->second - 1) + " deliveries";
        LogWarn("worker_dead_letter", {{"consumer", config_.consumer}, {"entry", entry.id},
                                       {"request_id", request->request_id}, {"deliveries", count->second}});
        out.dead.emplace_back(&entry, reason);
        out.results.emplace_back(queue::ResultStream(request->reply_to),
                                 queue::PlainErrorResult(request->request_id, 500, "request " + reason));
        metrics.dead_lettered.Increment();
        ++worker_.counters_.dead_lettered;
        continue;
      }
      if (request->kind == queue::kAttestKind) {
        out.results.emplace_back(queue::ResultStream(request->reply_to), AttestResult(*request));
        continue;
      }
      if (request->deadline_unix_ms > 0 && now_ms > request->deadline_unix_ms) {
        out.results.emplace_back(queue::ResultStream(request->reply_to),
                                 queue::PlainErrorResult(request->request_id, 504, "deadline passed before inference"));
        metrics.expired.Increment();
        ++worker_.counters_.expired;
        continue;
      }
      to_run.push_back(std::move(request).value());
    }

    if (!to_run.empty()) {
      const Clock::time_point start = Clock::now();
      std::vector<ResultEntry> results = worker_.processor_->Process(to_run);
      metrics.inference.Observe(std::chrono::duration<double>(Clock::now() - start).count());
      for (size_t i = 0; i < results.size() && i < to_run.size(); ++i) {
        out.results.emplace_back(queue::ResultStream(to_run[i].reply_to), std::move(results[i]));
      }
    }
    metrics.batches.Increment();
    metrics.batch_size.Observe(static_cast<double>(entries.size()));
    worker_.SetEnclaveMetrics();
    Write(out);
  }

  ResultEntry AttestResult(const RequestEntry& request) {
    Result<std::string> document = worker_.processor_->Attest(request.body);
    if (!document.ok()) {
      const int status = document.status().code() == StatusCode::kUnsupported ? 501
                         : document.status().code() == StatusCode::kInvalidArgument ? 400 : 500;
      return queue::PlainErrorResult(request.request_id, status, document.status().message());
    }
    ResultEntry result;
    result.request_id = request.request_id;
    result.body = std::move(document).value();
    return result;
  }

  // Not a request: dead-lettered (for the operator to look at) and, when it
  // names a valid reply stream and request id, answered 400.
  void Invalid(const StreamEntry& entry, const Status& status, Outgoing& out) {
    worker_.metrics_->invalid.Increment();
    LogWarn("worker_invalid_entry", {{"consumer", config_.consumer}, {"entry", entry.id}, {"error", status.message()}});
    out.dead.emplace_back(&entry, status.message());
    std::optional<std::string_view> reply_to = entry.Field("reply_to");
    std::optional<std::string_view> rid = entry.Field("rid");
    if (reply_to && rid && queue::CheckKeyName(*reply_to, "reply_to").ok()) {
      out.results.emplace_back(queue::ResultStream(*reply_to),
                               queue::PlainErrorResult(std::string(*rid), 400, "malformed queue entry: " + status.message()));
    }
  }

  // Results, dead letters and the acknowledgement in one MULTI/EXEC; retried
  // until written or stopped (then the entries stay pending for others).
  void Write(const Outgoing& out) {
    queue::CommandBatch batch;
    batch.Add({"MULTI"});
    for (const auto& [stream, result] : out.results) {
      queue::AppendXadd(batch, stream, result.Fields(), config_.results_max_length);
    }
    for (const auto& [entry, reason] : out.dead) {
      std::vector<StreamField> fields;
      for (const auto& [name, value] : entry->fields) fields.push_back({name, value});
      fields.push_back({"dead_reason", reason});
      fields.push_back({"dead_consumer", config_.consumer});
      queue::AppendXadd(batch, dead_stream_, fields, config_.results_max_length);
    }
    queue::AppendAckAndDelete(batch, stream_, queue::kWorkersGroup, out.ids);
    batch.Add({"EXEC"});
    while (true) {
      Status status = Execute(batch);
      if (status.ok()) break;
      RedisFailed("write_results", status);
      if (stop_) {
        LogWarn("worker_results_unwritten", {{"consumer", config_.consumer}, {"entries", out.ids.size()}});
        return;
      }
    }
    ++worker_.counters_.batches;
    for (const auto& [stream, result] : out.results) {
      (result.http_status / 100 == 2 ? worker_.metrics_->requests_ok : worker_.metrics_->requests_error).Increment();
    }
    worker_.counters_.requests += static_cast<int64_t>(out.results.size());
  }

  Status Execute(const queue::CommandBatch& batch) {
    PPML_ASSIGN_OR_RETURN(std::vector<queue::RedisReply> replies, client_.Execute(batch));
    const queue::RedisReply& exec = replies.back();
    for (const queue::RedisReply& reply : replies) {
      PPML_RETURN_IF_ERROR(queue::RedisErrorStatus(reply, "MULTI/EXEC of results"));
    }
    if (!exec.is_array() || exec.size() != batch.size() - 2) {
      return Status::Internal("EXEC of results: unexpected reply " + exec.Describe());
    }
    for (size_t i = 0; i < exec.size(); ++i) {
      PPML_RETURN_IF_ERROR(queue::RedisErrorStatus(exec[i], "EXEC of results, command " + std::to_string(i + 1)));
    }
    return Status::Ok();
  }

  Worker& worker_;
  const WorkerConfig& config_;
  const std::atomic<bool>& stop_;
  queue::RedisClient client_;
  const std::string stream_;
  const std::string dead_stream_;
  std::string claim_cursor_ = "0-0";
  const queue::WorkerInfo info_ = worker_.processor_->Info(config_.model_name);
};

Worker::Worker(WorkerConfig config, std::unique_ptr<BatchProcessor> processor, metrics::Registry* registry)
    : config_(std::move(config)), processor_(std::move(processor)) {
  if (config_.consumer.empty()) config_.consumer = DefaultConsumerName();
  if (registry == nullptr) {
    own_registry_ = std::make_unique<metrics::Registry>();
    registry = own_registry_.get();
  }
  metrics_ = std::make_unique<Metrics>(*registry, config_.batching.max_batch_size);
  if (std::optional<enclave::EnclaveStats> stats = processor_->EnclaveStats()) {
    enclave_metrics_ = std::make_unique<EnclaveMetrics>(*registry);
    if (stats->outsource) outsource_metrics_ = std::make_unique<OutsourceMetrics>(*registry);
    SetEnclaveMetrics();
  }
}

void Worker::SetEnclaveMetrics() {
  if (!enclave_metrics_) return;
  std::optional<enclave::EnclaveStats> stats = processor_->EnclaveStats();
  if (!stats) return;
  enclave_metrics_->Set(*stats);
  if (outsource_metrics_ && stats->outsource) outsource_metrics_->Set(*stats->outsource);
}

Worker::~Worker() = default;

Status Worker::Run(const std::atomic<bool>& stop) {
  LogInfo("worker_start", {{"consumer", config_.consumer}, {"model", config_.model_name},
                           {"redis", config_.redis.RedactedUrl()}, {"processor", processor_->Describe()},
                           {"max_batch_size", config_.batching.max_batch_size},
                           {"max_queue_delay_us", config_.batching.max_queue_delay_us}});
  Loop loop(*this, stop);
  Status status = loop.Run();
  LogInfo("worker_stop", {{"consumer", config_.consumer}, {"batches", counters_.batches.load()},
                          {"requests", counters_.requests.load()}, {"ok", status.ok()}});
  return status;
}

}  // namespace ppml::worker
