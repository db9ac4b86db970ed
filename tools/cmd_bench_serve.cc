// ppml bench serve --url URL --platform-pubkey PEM [--ca PEM] [--cert PEM --key PEM]
//                  [--measurement HEX] --model M [--concurrency 1,4,16,64,256]
//                  [--rates 1000,2500] [--seconds S] [--warmup S] [--batch B]
//                  [--connections N] [--inputs K] [--json-inputs] [--plaintext]
//                  [--timeout S] [--csv FILE] [--json]
//
//   End-to-end load on a running service (HTTPS or http://, the front-end,
//   Redis, the workers and their enclaves), as its clients see it.
//
//   Setup: attests the enclave once (PpmlClient::Connect: fresh nonce, the
//   pinned platform key, the measurement when given), reads the model's
//   metadata (GET /v2/models/{m}) and draws K random inputs of that shape
//   with a batch dimension of B (--batch, images per request), each encoded
//   once as a KServe v2 body (binary tensor data unless --json-inputs;
//   outputs asked for as binary). K is cut so that the bodies hold at most
//   256 MiB.
//
//   Every request is then encrypted on its own (HPKE/EHBP to the attested
//   key, a fresh encapsulated key each time: the cost a real client pays),
//   sent, and its reply decrypted and parsed. Each load thread owns one
//   keep-alive HTTP connection (client/https.h), so the generator needs no
//   locks on the request path. With --plaintext the same bodies go
//   unencrypted (the service must allow it: security.allow_plaintext and an
//   enclave measured with allow_plaintext=true); a 403 or 400 to the first
//   request ends the command with "plaintext inference unavailable".
//
//   Closed loop, for each concurrency C of --concurrency: C threads each send
//   a request, wait for its reply, send the next, for --warmup seconds
//   unmeasured and then --seconds measured. req/s counts replies that
//   arrived in the measured window; latency is send to reply.
//
//   Open loop, for each rate R of --rates: requests are scheduled at fixed
//   intervals 1/R (R may be given as a percentage, "50%": of the best
//   closed-loop throughput this run measured first); a pool of --connections threads takes the next scheduled
//   slot, waits for its time and sends it. Latency runs from the scheduled
//   time, not the actual send, so a pool that falls behind shows up as
//   latency (no coordinated omission). Slots of the window that were never
//   sent before the window closed are counted as `unsent`: the rate was more
//   than the service (or the pool) can carry, and the percentiles understate.
//
//   One table row per point on stdout (mode, concurrency or rate, req/s,
//   images/s, p50/p95/p99 ms, errors, unsent); progress and the first error
//   of each point on stderr. --csv FILE writes every point. With --json the
//   last stdout line is
//     {"model","batch","url","tls","encrypted","points":[{"mode","concurrency",
//      "rate","rate_fraction","seconds","requests","throughput_per_s",
//      "images_per_s","latency_ms_p50","latency_ms_p95","latency_ms_p99",
//      "latency_ms_mean","errors","unsent"}],"best_throughput_per_s",
//      "best_images_per_s","best_closed_throughput_per_s","isa","threads",
//      "precision"}
//   throughput_per_s counts requests (each of --batch images), achieved,
//   not offered; best_* are the largest over all points (closed: over the
//   closed-loop points only, null without any); rate_fraction is the
//   percentage of a relative rate, else null; isa is this
//   machine's oneDNN ISA, threads the load generator's threads at most, and
//   precision the served model's ("int8" for platform ppml-enclave-int8,
//   "fp32" for ppml-enclave-fp32).
//
//   Exit codes: 0 every point ran (points with errors included), 1 the
//   service, the attestation or the first request failed, 2 a flag is wrong.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "client/client.h"
#include "client/https.h"
#include "common/ehbp.h"
#include "common/json_line.h"
#include "common/kserve.h"
#include "engine/engine.h"
#include "enclave_sim/attestation.h"
#include "tools/cli_support.h"
#include "tools/client_flags.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {

constexpr const char* kCommand = "bench serve";
constexpr uint32_t kInputSeed = 42;
constexpr size_t kMaxBodyBytesTotal = size_t{256} << 20;

using Clock = std::chrono::steady_clock;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

struct BenchServeOptions {
  ConnectFlags connect;  // --model too
  std::string concurrency = "1,4,16,64,256";
  std::string rates;
  double seconds = 5;
  double warmup = 1;
  int64_t batch = 1;
  int connections = 64;
  int inputs = 64;
  bool json_inputs = false;
  bool plaintext = false;
  std::string csv;
  bool json = false;
};

// "1,4,16" -> {1, 4, 16}; "" or "none" -> {}. Usage errors name the flag.
template <typename T>
Result<std::vector<T>> ParseList(const std::string& text, const std::string& flag) {
  std::vector<T> values;
  if (text.empty() || text == "none") return values;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    std::istringstream parse(item);
    T value{};
    if (!(parse >> value) || !parse.eof() || !(value > 0)) {
      return Status::InvalidArgument(flag + " " + text + ": \"" + item + "\" is not a positive number");
    }
    values.push_back(value);
  }
  return values;
}

// An open-loop rate: requests/s, or a fraction of the best closed-loop throughput.
struct RateSpec {
  double value = 0;
  bool relative = false;  // value is a fraction (0.5 for "50%")
};

Result<std::vector<RateSpec>> ParseRates(const std::string& text) {
  std::vector<RateSpec> rates;
  if (text.empty() || text == "none") return rates;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    RateSpec spec;
    std::string number = item;
    if (!number.empty() && number.back() == '%') {
      spec.relative = true;
      number.pop_back();
    }
    std::istringstream parse(number);
    if (!(parse >> spec.value) || !parse.eof() || !(spec.value > 0) || !std::isfinite(spec.value)) {
      return Status::InvalidArgument("--rates " + text + ": \"" + item +
                                     "\" is neither a positive rate (requests/s) nor a percentage such as 50%");
    }
    if (spec.relative) spec.value /= 100;
    rates.push_back(spec);
  }
  return rates;
}

// Nearest-rank percentile of sorted values (SummarizeLatencies' definition).
double Percentile(const std::vector<double>& sorted, double quantile) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(quantile * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

struct Point {
  std::string mode;  // closed | open
  int concurrency = 0;
  double rate = 0;
  double rate_fraction = 0;  // open loop, relative rate: the fraction asked for
  double seconds = 0;
  int64_t requests = 0;  // answered 200 in the window
  int64_t errors = 0;
  int64_t unsent = 0;  // open loop: slots of the window never sent
  double p50 = 0, p95 = 0, p99 = 0, mean = 0;
  std::string first_error;

  double throughput() const { return seconds > 0 ? static_cast<double>(requests) / seconds : 0; }
};

// What one load thread gathers; merged after the point.
struct Record {
  std::vector<double> latencies_ms;
  int64_t ok = 0;
  int64_t errors = 0;
  int64_t issued = 0;  // open loop: window slots sent
  std::string first_error;

  void Error(const Status& status) {
    ++errors;
    if (first_error.empty()) first_error = status.message();
  }
};

Point Merge(Point point, std::vector<Record>& records) {
  std::vector<double> all;
  for (Record& r : records) {
    all.insert(all.end(), r.latencies_ms.begin(), r.latencies_ms.end());
    point.errors += r.errors;
    if (point.first_error.empty()) point.first_error = r.first_error;
  }
  std::sort(all.begin(), all.end());
  point.p50 = Percentile(all, 0.50);
  point.p95 = Percentile(all, 0.95);
  point.p99 = Percentile(all, 0.99);
  point.mean = all.empty() ? 0 : std::accumulate(all.begin(), all.end(), 0.0) / static_cast<double>(all.size());
  return point;
}

std::optional<size_t> ParseLength(const std::optional<std::string>& header) {
  if (!header || header->empty() || header->size() > 12) return std::nullopt;
  size_t value = 0;
  for (char c : *header) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<size_t>(c - '0');
  }
  return value;
}

// The prepared load: the attested key, the bodies, and one connection per thread.
class Load {
 public:
  Load(const BenchServeOptions& options, client::HttpTarget target, crypto::Bytes enclave_key,
       std::vector<kserve::EncodedBody> bodies)
      : options_(options), target_(std::move(target)), enclave_key_(std::move(enclave_key)),
        bodies_(std::move(bodies)), path_("/v2/models/" + client::UrlEncode(options.connect.model) + "/infer"),
        what_(target_.Url() + ": POST " + path_) {}

  // Connections 0..n-1 exist afterwards (not yet connected).
  Status EnsureConnections(size_t n) {
    while (connections_.size() < n) {
      PPML_ASSIGN_OR_RETURN(client::HttpClient http, client::HttpClient::Create(target_));
      connections_.push_back(std::make_unique<client::HttpClient>(std::move(http)));
    }
    return Status::Ok();
  }

  size_t body_count() const { return bodies_.size(); }
  const std::string& what() const { return what_; }

  // One inference on connection `c` with body `b`: encrypt (unless
  // plaintext), send, decrypt, parse. Ok only for a 200 whose reply parses
  // and holds at least one output.
  Status Once(size_t c, size_t b) {
    client::HttpClient& http = *connections_[c];
    const kserve::EncodedBody& body = bodies_[b];
    client::HttpHeaders headers;
    headers.reserve(4);
    std::optional<ehbp::EncryptedRequest> encrypted;
    std::span<const uint8_t> payload = body.body;
    if (options_.plaintext) {
      headers.emplace_back("Content-Type", body.json_length ? "application/octet-stream" : "application/json");
    } else {
      Result<ehbp::EncryptedRequest> e = ehbp::EncryptRequest(enclave_key_, body.body);
      if (!e.ok()) return e.status().WithContext(what_ + ": encrypting the request");
      encrypted = std::move(e).value();
      payload = encrypted->body;
      headers.emplace_back(std::string(ehbp::kEncapsulatedKeyHeader), encrypted->encapsulated_key_header_value);
      headers.emplace_back("Content-Type", "application/octet-stream");
    }
    headers.emplace_back("Accept", "application/octet-stream, application/json");
    if (body.json_length) {
      headers.emplace_back(std::string(kserve::kHeaderLengthHeader), std::to_string(*body.json_length));
    }

    Result<client::HttpResponse> response = http.Request("POST", path_, headers, payload);
    if (!response.ok()) return response.status();
    std::string plain;
    std::optional<std::string> decrypted_error;
    if (!options_.plaintext) {
      const std::optional<std::string> nonce = response->Header(ehbp::kResponseNonceHeader);
      if (nonce) {
        Result<crypto::Bytes> d = ehbp::DecryptResponse(
            encrypted->client_state, *nonce,
            crypto::ByteSpan(reinterpret_cast<const uint8_t*>(response->body.data()), response->body.size()));
        if (!d.ok()) return Status::DataLoss(what_ + ": the reply does not decrypt: " + d.status().message());
        plain.assign(d->begin(), d->end());
        if (response->status != 200) decrypted_error = plain;
      } else if (response->status == 200) {
        return Status::PermissionDenied(what_ + ": HTTP 200 without " + std::string(ehbp::kResponseNonceHeader) +
                                        ": an unencrypted reply to an encrypted request");
      }
    }
    if (response->status != 200) return client::HttpStatusError(what_, *response, decrypted_error);
    if (options_.plaintext) plain = std::move(response->body);
    Result<kserve::InferResponse> parsed = kserve::ParseInferResponse(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(plain.data()), plain.size()),
        ParseLength(response->Header(kserve::kHeaderLengthHeader)));
    if (!parsed.ok()) return parsed.status().WithContext(what_);
    if (parsed->outputs.empty()) return Status::DataLoss(what_ + ": a reply without outputs");
    return Status::Ok();
  }

 private:
  const BenchServeOptions& options_;
  client::HttpTarget target_;
  crypto::Bytes enclave_key_;
  std::vector<kserve::EncodedBody> bodies_;
  std::string path_;
  std::string what_;
  std::vector<std::unique_ptr<client::HttpClient>> connections_;
};

void SleepSeconds(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

Point RunClosed(Load& load, const BenchServeOptions& options, int concurrency) {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> from_ns{INT64_MAX}, to_ns{INT64_MAX};
  std::vector<Record> records(static_cast<size_t>(concurrency));
  std::vector<std::thread> threads;
  for (int i = 0; i < concurrency; ++i) {
    threads.emplace_back([&, i] {
      Record& record = records[static_cast<size_t>(i)];
      size_t next = static_cast<size_t>(i) * 7;
      while (!stop.load(std::memory_order_relaxed)) {
        const int64_t start = NowNs();
        const Status status = load.Once(static_cast<size_t>(i), next++ % load.body_count());
        const int64_t done = NowNs();
        if (done < from_ns.load(std::memory_order_relaxed) || done >= to_ns.load(std::memory_order_relaxed)) continue;
        if (status.ok()) {
          ++record.ok;
          record.latencies_ms.push_back(static_cast<double>(done - start) / 1e6);
        } else {
          record.Error(status);
        }
      }
    });
  }
  SleepSeconds(options.warmup);
  const int64_t from = NowNs();
  from_ns = from;
  SleepSeconds(options.seconds);
  const int64_t to = NowNs();
  to_ns = to;
  stop = true;
  for (std::thread& t : threads) t.join();
  Point point;
  point.mode = "closed";
  point.concurrency = concurrency;
  point.seconds = static_cast<double>(to - from) / 1e9;
  for (const Record& r : records) point.requests += r.ok;
  return Merge(std::move(point), records);
}

Point RunOpen(Load& load, const BenchServeOptions& options, double rate) {
  const double interval_ns = 1e9 / rate;
  const int64_t start = NowNs() + 20'000'000;  // the threads are up by then
  const int64_t from = start + static_cast<int64_t>(options.warmup * 1e9);
  const int64_t to = from + static_cast<int64_t>(options.seconds * 1e9);
  const auto slot_time = [&](int64_t slot) { return start + static_cast<int64_t>(std::llround(slot * interval_ns)); };
  std::atomic<int64_t> next_slot{0};
  std::vector<Record> records(static_cast<size_t>(options.connections));
  std::vector<int64_t> completed_in_window(static_cast<size_t>(options.connections), 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < options.connections; ++i) {
    threads.emplace_back([&, i] {
      Record& record = records[static_cast<size_t>(i)];
      int64_t& completed = completed_in_window[static_cast<size_t>(i)];
      for (;;) {
        const int64_t slot = next_slot.fetch_add(1, std::memory_order_relaxed);
        const int64_t scheduled = slot_time(slot);
        if (scheduled >= to) break;
        int64_t now = NowNs();
        if (now >= to) break;  // behind schedule at the end: the rest stays unsent
        if (scheduled > now) {
          std::this_thread::sleep_for(std::chrono::nanoseconds(scheduled - now));
        }
        const Status status = load.Once(static_cast<size_t>(i), static_cast<size_t>(slot) % load.body_count());
        const int64_t done = NowNs();
        if (status.ok() && done >= from && done < to) ++completed;
        if (scheduled < from) continue;
        ++record.issued;
        if (status.ok()) {
          record.latencies_ms.push_back(static_cast<double>(done - scheduled) / 1e6);
        } else {
          record.Error(status);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  // Slots scheduled in [from, to): from the first slot at or after `from` to the first at or after `to`.
  const auto first_slot_at = [&](int64_t t) {
    return static_cast<int64_t>(std::ceil(static_cast<double>(t - start) / interval_ns));
  };
  int64_t expected = first_slot_at(to) - first_slot_at(from);
  while (expected > 0 && slot_time(first_slot_at(to) - 1) >= to) --expected;  // rounding at the edge
  Point point;
  point.mode = "open";
  point.rate = rate;
  point.seconds = static_cast<double>(to - from) / 1e9;
  int64_t issued = 0;
  for (const Record& r : records) issued += r.issued;
  for (int64_t c : completed_in_window) point.requests += c;
  point.unsent = std::max<int64_t>(0, expected - issued);
  return Merge(std::move(point), records);
}

std::string FormatRate(double rate, double fraction) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(rate < 10 ? 1 : 0) << rate;
  if (fraction > 0) out << " (" << std::setprecision(0) << fraction * 100 << "%)";
  return out.str();
}

void PrintHeader() {
  std::cout << std::left << std::setw(7) << "mode" << std::right << std::setw(16) << "conc/rate" << std::setw(11)
            << "req/s" << std::setw(11) << "images/s" << std::setw(9) << "p50 ms" << std::setw(9) << "p95 ms"
            << std::setw(9) << "p99 ms" << std::setw(8) << "errors" << std::setw(8) << "unsent" << std::endl;
}

void PrintRow(const Point& p, int64_t batch) {
  const std::string where =
      p.mode == "closed" ? "c=" + std::to_string(p.concurrency) : "r=" + FormatRate(p.rate, p.rate_fraction);
  std::cout << std::left << std::setw(7) << p.mode << std::right << std::setw(16) << where << std::fixed
            << std::setprecision(1) << std::setw(11) << p.throughput() << std::setw(11)
            << p.throughput() * static_cast<double>(batch) << std::setprecision(2) << std::setw(9) << p.p50
            << std::setw(9) << p.p95 << std::setw(9) << p.p99 << std::setw(8) << p.errors << std::setw(8) << p.unsent
            << std::defaultfloat << std::endl;
}

Status WriteCsv(const std::string& path, const std::vector<Point>& points, const BenchServeOptions& options,
                bool tls) {
  std::ofstream out(path);
  if (!out) return Status::IoError("--csv " + path + ": cannot open for writing");
  out << "mode,concurrency,rate,seconds,requests,throughput_per_s,images_per_s,latency_ms_p50,latency_ms_p95,"
         "latency_ms_p99,latency_ms_mean,errors,unsent,batch,tls,encrypted,model,rate_fraction\n";
  for (const Point& p : points) {
    out << p.mode << ',' << p.concurrency << ',' << p.rate << ',' << p.seconds << ',' << p.requests << ','
        << p.throughput() << ',' << p.throughput() * static_cast<double>(options.batch) << ',' << p.p50 << ','
        << p.p95 << ',' << p.p99 << ',' << p.mean << ',' << p.errors << ',' << p.unsent << ',' << options.batch
        << ',' << (tls ? 1 : 0) << ',' << (options.plaintext ? 0 : 1) << ',' << options.connect.model << ','
        << p.rate_fraction << '\n';
  }
  out.flush();
  if (!out) return Status::IoError("--csv " + path + ": write failed");
  return Status::Ok();
}

std::string PrecisionOf(const std::string& platform) {
  if (platform == "ppml-enclave-int8") return "int8";
  if (platform == "ppml-enclave-fp32") return "fp32";
  return platform.empty() ? "unknown" : platform;
}

int RunBenchServe(const BenchServeOptions& options) {
  // ---- flags that can be checked without the network: usage errors ----
  Result<std::vector<int>> concurrency = ParseList<int>(options.concurrency, "--concurrency");
  if (!concurrency.ok()) return ReportError(kCommand, concurrency.status().message(), kExitUsage);
  Result<std::vector<RateSpec>> rates = ParseRates(options.rates);
  if (!rates.ok()) return ReportError(kCommand, rates.status().message(), kExitUsage);
  if (concurrency->empty() && rates->empty()) {
    return ReportError(kCommand, "nothing to measure: --concurrency and --rates are both empty", kExitUsage);
  }
  for (const RateSpec& r : *rates) {
    if (r.relative && concurrency->empty()) {
      return ReportError(kCommand,
                         "--rates " + options.rates +
                             ": a percentage needs closed-loop points (--concurrency) to take it of",
                         kExitUsage);
    }
  }
  for (int c : *concurrency) {
    if (c > 1024) return ReportError(kCommand, "--concurrency " + std::to_string(c) + ": at most 1024", kExitUsage);
  }
  if (Status s = CheckConnectFlags(options.connect); !s.ok()) return ReportError(kCommand, s.message(), kExitUsage);
  Result<client::HttpTarget> target = client::ParseUrl(options.connect.url);
  const client::ClientOptions client_options = OptionsFrom(options.connect);
  const int timeout_ms = client_options.io_timeout_ms;

  // ---- attest once, read the model's shape ----
  Result<client::PpmlClient> client = client::PpmlClient::Connect(client_options);
  if (!client.ok()) return ReportError(kCommand, client.status().message(), kExitFailure);
  if (!client->measurement_pinned()) {
    std::cerr << "ppml bench serve: warning: measurement not pinned; the enclave attested "
              << crypto::ToHex(client->measurement()) << std::endl;
  }
  Result<kserve::ModelMetadata> metadata = client->GetModelMetadata();
  if (!metadata.ok()) return ReportError(kCommand, metadata.status().message(), kExitFailure);
  if (metadata->inputs.empty()) {
    return ReportError(kCommand, client->url() + ": model " + options.connect.model + " lists no inputs", kExitFailure);
  }

  // ---- K random inputs, encoded once ----
  std::vector<Shape> shapes;
  size_t body_bytes = 0;
  for (const kserve::TensorMetadata& input : metadata->inputs) {
    Result<Shape> shape = ShapeForBatch(engine::TensorInfo{input.name, input.dtype, input.shape}, options.batch);
    if (!shape.ok()) return ReportError(kCommand, options.connect.model + ": " + shape.status().message(), kExitUsage);
    body_bytes += static_cast<size_t>(ElementCount(*shape)) * ElementSize(input.dtype);
    shapes.push_back(*shape);
  }
  const size_t k = std::clamp<size_t>(kMaxBodyBytesTotal / std::max<size_t>(body_bytes, 1), 1,
                                      static_cast<size_t>(options.inputs));
  std::mt19937 rng(kInputSeed);
  std::vector<kserve::EncodedBody> bodies;
  for (size_t i = 0; i < k; ++i) {
    kserve::InferRequest request;
    request.binary_output = true;
    for (size_t j = 0; j < shapes.size(); ++j) {
      request.inputs.push_back({metadata->inputs[j].name, RandomInput(metadata->inputs[j].dtype, shapes[j], rng)});
    }
    Result<kserve::EncodedBody> body = kserve::EncodeInferRequest(request, !options.json_inputs);
    if (!body.ok()) return ReportError(kCommand, body.status().message(), kExitFailure);
    bodies.push_back(std::move(body).value());
  }
  const std::string precision = PrecisionOf(metadata->platform);
  const bool tls = target->tls;
  std::cerr << "ppml bench serve: " << client->url() << " model " << options.connect.model << " (" << metadata->platform
            << "), batch " << options.batch << ", " << k << " distinct " << bodies.front().body.size()
            << "-byte bodies, " << (options.plaintext ? "PLAINTEXT" : "encrypted (HPKE/EHBP)") << ", "
            << (tls ? "TLS" : "no TLS") << ", measurement " << crypto::ToHex(client->measurement()) << std::endl;

  target->ca_file = options.connect.ca;
  target->client_cert_file = options.connect.cert;
  target->client_key_file = options.connect.key;
  target->io_timeout_ms = timeout_ms;
  target->connect_timeout_ms = std::min(timeout_ms, 10'000);
  Load load(options, *target, client->attestation().enclave_public_key, std::move(bodies));
  int max_threads = rates->empty() ? 0 : options.connections;
  for (int c : *concurrency) max_threads = std::max(max_threads, c);
  if (Status s = load.EnsureConnections(static_cast<size_t>(max_threads)); !s.ok()) {
    return ReportError(kCommand, s.message(), kExitFailure);
  }

  // ---- one request first: a service that refuses this mode says so now ----
  if (Status probe = load.Once(0, 0); !probe.ok()) {
    if (options.plaintext && (probe.code() == StatusCode::kPermissionDenied ||
                              probe.code() == StatusCode::kInvalidArgument)) {
      return ReportError(kCommand,
                         "plaintext inference unavailable: " + probe.message() +
                             " (the service needs security.allow_plaintext: true and an enclave measured with "
                             "allow_plaintext=true)",
                         kExitFailure);
    }
    return ReportError(kCommand, probe.WithContext("the first request").message(), kExitFailure);
  }

  std::vector<Point> points;
  PrintHeader();
  for (int c : *concurrency) {
    std::cerr << "ppml bench serve: closed loop, concurrency " << c << " (" << options.warmup << " s warm-up, "
              << options.seconds << " s)" << std::endl;
    points.push_back(RunClosed(load, options, c));
    PrintRow(points.back(), options.batch);
    if (!points.back().first_error.empty()) {
      std::cerr << "ppml bench serve: c=" << c << ": first error: " << points.back().first_error << std::endl;
    }
  }
  double best_closed = 0;
  for (const Point& p : points) best_closed = std::max(best_closed, p.throughput());
  for (const RateSpec& spec : *rates) {
    const double r = spec.relative ? spec.value * best_closed : spec.value;
    if (!(r > 0)) {
      std::cerr << "ppml bench serve: skipping rate " << spec.value * 100
                << "%: the closed loop measured no throughput to take it of" << std::endl;
      continue;
    }
    std::cerr << "ppml bench serve: open loop, " << r << " req/s";
    if (spec.relative) std::cerr << " (" << spec.value * 100 << "% of " << best_closed << ")";
    std::cerr << " over " << options.connections << " connections (" << options.warmup << " s warm-up, "
              << options.seconds << " s)" << std::endl;
    points.push_back(RunOpen(load, options, r));
    if (spec.relative) points.back().rate_fraction = spec.value;
    PrintRow(points.back(), options.batch);
    const Point& p = points.back();
    if (!p.first_error.empty()) {
      std::cerr << "ppml bench serve: r=" << r << ": first error: " << p.first_error << std::endl;
    }
    if (p.unsent > 0) {
      std::cerr << "ppml bench serve: r=" << r << ": " << p.unsent
                << " scheduled requests were never sent: the offered rate is over capacity (or --connections is "
                   "too small); its latencies understate"
                << std::endl;
    }
  }

  if (!options.csv.empty()) {
    if (Status s = WriteCsv(options.csv, points, options, tls); !s.ok()) return ReportError(kCommand, s);
    std::cerr << "ppml bench serve: wrote " << options.csv << std::endl;
  }
  double best = 0;
  for (const Point& p : points) best = std::max(best, p.throughput());
  if (options.json) {
    std::string array = "[";
    for (size_t i = 0; i < points.size(); ++i) {
      const Point& p = points[i];
      JsonLine point;
      point.Add("mode", p.mode)
          .Add("concurrency", p.concurrency)
          .Add("rate", p.rate);
      if (p.rate_fraction > 0) {
        point.Add("rate_fraction", p.rate_fraction);
      } else {
        point.AddNull("rate_fraction");
      }
      point.Add("seconds", p.seconds)
          .Add("requests", p.requests)
          .Add("throughput_per_s", p.throughput())
          .Add("images_per_s", p.throughput() * static_cast<double>(options.batch))
          .Add("latency_ms_p50", p.p50)
          .Add("latency_ms_p95", p.p95)
          .Add("latency_ms_p99", p.p99)
          .Add("latency_ms_mean", p.mean)
          .Add("errors", p.errors)
          .Add("unsent", p.unsent);
      array += (i ? "," : "") + point.str();
    }
    array += "]";
    JsonLine json;
    json.Add("model", options.connect.model)
        .Add("batch", options.batch)
        .Add("url", client->url())
        .Add("tls", tls)
        .Add("encrypted", !options.plaintext)
        .AddRaw("points", array)
        .Add("best_throughput_per_s", best)
        .Add("best_images_per_s", best * static_cast<double>(options.batch));
    if (concurrency->empty()) {
      json.AddNull("best_closed_throughput_per_s");
    } else {
      json.Add("best_closed_throughput_per_s", best_closed);
    }
    json.Add("isa", engine::EffectiveCpuIsa()).Add("threads", max_threads).Add("precision", precision);
    std::cout << json.str() << std::endl;
  }
  return kExitOk;
}

}  // namespace

void AddBenchServeCommand(CLI::App& bench, int* exit_code) {
  auto options = std::make_shared<BenchServeOptions>();
  CLI::App* command = bench.add_subcommand(
      "serve", "End-to-end load on a running service: encrypted requests, closed-loop concurrency and open-loop rates");
  options->connect.timeout_s = 30;  // a load point waits less long than a single request
  AddConnectFlags(*command, options->connect);
  command->add_option("--model", options->connect.model, "the model to load")->required();
  command
      ->add_option("--concurrency", options->concurrency,
                   "closed-loop points: connections, comma-separated ('' or none: no closed loop)")
      ->capture_default_str();
  command
      ->add_option("--rates", options->rates,
                   "open-loop points: requests/s, or a percentage of the best closed-loop throughput (50%); "
                   "comma-separated")
      ->capture_default_str();
  command->add_option("--seconds", options->seconds, "measured seconds per point")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  command->add_option("--warmup", options->warmup, "unmeasured seconds before each point")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 600.0));
  command->add_option("--batch", options->batch, "images per request (the batch dimension of each input)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  command->add_option("--connections", options->connections, "open loop: load threads, one connection each")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  command->add_option("--inputs", options->inputs, "distinct random inputs, used in turn (cut to 256 MiB of bodies)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  command->add_flag("--json-inputs", options->json_inputs, "send inputs as JSON numbers instead of binary tensor data");
  command->add_flag("--plaintext", options->plaintext,
                    "send the bodies unencrypted (the service must allow plaintext; measures what encryption costs)");
  command->add_option("--csv", options->csv, "write every point to this CSV file");
  command->add_flag("--json", options->json, "print the result as one JSON object on the last line");
  command->callback([options, exit_code] { *exit_code = RunBenchServe(*options); });
}

}  // namespace ppml::tools
