// The worker's loop (DESIGN.md "Request life", steps 4-5): one consumer in
// the group "workers" of ppml:{model}:requests.
//
//   read a batch   XREADGROUP COUNT max_batch_size, then more until the batch
//                  is full or its oldest entry has waited max_queue_delay_us
//   sort it        entries that do not parse, whose deadline passed, or that
//                  were delivered more than max_deliveries times get an error
//                  result here (the last also go to ppml:{model}:dead); the
//                  rest go to the processor in one call (one ecall)
//   answer         MULTI, XADD each result to ppml:results:{reply_to} (MAXLEN ~),
//                  XADD dead letters, XACK + XDEL the batch, EXEC: one round
//                  trip, and a crash leaves either all of it or none
//   recover        every claim interval, XAUTOCLAIM entries pending longer than
//                  claim_idle_ms on any consumer (a dead worker's) and serve them
//
// Delivery is at least once: an entry is acknowledged only with its result,
// so a worker killed at any point loses nothing; a result can repeat only if
// a live worker held an entry past claim_idle_ms (the front-end drops the
// second by request id). Requests of different shapes may share a read batch;
// the enclave stacks only same-shape requests into one engine run.
//
// Redis failures: commands retry with backoff (RedisClient); the loop keeps
// trying until stopped, recreates the group when Redis lost it (a restart
// without persistence), and never drops an entry it read.
//
// Logs one line per start, stop, reclaim, dead letter, invalid entry and
// Redis error; never a payload. Metrics (when a registry is given):
// ppml_worker_{batches,requests,errors,reclaimed,dead_lettered,expired}_total,
// ppml_worker_batch_size, ppml_worker_queue_wait_seconds, ppml_worker_inference_seconds.
//
// Thread safety: Run is called once, from one thread; Stop-by-flag from any.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "common/metrics.h"
#include "common/status.h"
#include "worker/config.h"
#include "worker/processor.h"

namespace ppml::worker {

struct WorkerCounters {
  std::atomic<int64_t> batches{0};
  std::atomic<int64_t> requests{0};  // results written, errors included
  std::atomic<int64_t> reclaimed{0};
  std::atomic<int64_t> dead_lettered{0};
  std::atomic<int64_t> expired{0};
  std::atomic<bool> ready{false};  // joined the group, serving
};

class Worker {
 public:
  // `registry` may be null (no metrics); it must outlive the worker.
  Worker(WorkerConfig config, std::unique_ptr<BatchProcessor> processor, metrics::Registry* registry);
  ~Worker();

  // Serves until `stop` turns true, then finishes the batch in hand and
  // returns OK. Returns an error only when it cannot start (Redis refuses
  // the credentials, the stream key holds something else).
  Status Run(const std::atomic<bool>& stop);

  const std::string& consumer() const { return config_.consumer; }
  const WorkerCounters& counters() const { return counters_; }

 private:
  struct Metrics;
  struct EnclaveMetrics;
  struct OutsourceMetrics;
  class Loop;

  // Copies the enclave's counters into the gauges (after each batch).
  void SetEnclaveMetrics();

  WorkerConfig config_;
  std::unique_ptr<BatchProcessor> processor_;
  std::unique_ptr<metrics::Registry> own_registry_;  // when none was given
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<EnclaveMetrics> enclave_metrics_;      // when batches run in an enclave
  std::unique_ptr<OutsourceMetrics> outsource_metrics_;  // when the enclave outsources its layers
  WorkerCounters counters_;
};

}  // namespace ppml::worker
