#include "accel/server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <algorithm>
#include <deque>
#include <list>
#include <thread>

#include "common/log.h"

namespace ppml::accel {
namespace {

std::string Prefix(const std::string& digest) { return digest.substr(0, 12); }

// ---- CPU backend -------------------------------------------------------------

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(size_t max_cached) : max_cached_(max_cached) {}
  std::string name() const override { return "cpu-onednn-int8-limbs"; }

  Status Compute(const LinearSpec& spec, const std::string& digest, int64_t batch, std::span<const uint32_t> x,
                 std::span<uint32_t> out) override {
    std::shared_ptr<Entry> entry = Lookup(digest + "/" + std::to_string(batch));
    // FieldLinear is one-thread-at-a-time: connections computing the same
    // (layer, batch) take turns; different ones run in parallel.
    std::lock_guard<std::mutex> lock(entry->mu);
    if (!entry->linear) {
      PPML_ASSIGN_OR_RETURN(entry->linear, FieldLinear::Create(spec, batch));
    }
    return entry->linear->Run(x, out);
  }

 private:
  struct Entry {
    std::mutex mu;
    std::unique_ptr<FieldLinear> linear;
  };

  std::shared_ptr<Entry> Lookup(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto found = entries_.find(key);
    if (found != entries_.end()) return found->second;
    if (entries_.size() >= max_cached_ && !order_.empty()) {
      entries_.erase(order_.front());  // in-flight users keep their shared_ptr
      order_.pop_front();
    }
    auto entry = std::make_shared<Entry>();
    entries_[key] = entry;
    order_.push_back(key);
    return entry;
  }

  size_t max_cached_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Entry>> entries_;
  std::deque<std::string> order_;
};

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend(size_t max_cached) { return std::make_unique<CpuBackend>(max_cached); }

// ---- Tampering ---------------------------------------------------------------

const char* TamperKindName(TamperKind kind) {
  switch (kind) {
    case TamperKind::kElement: return "element";
    case TamperKind::kRow: return "row";
    case TamperKind::kOffByOne: return "off-by-one";
    case TamperKind::kReplay: return "replay";
  }
  return "unknown";
}

Result<std::vector<TamperKind>> ParseTamperKinds(std::string_view list) {
  if (list == "all") return TamperOptions{}.kinds;
  std::vector<TamperKind> kinds;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view name = list.substr(0, comma);
    bool known = false;
    for (TamperKind k : TamperOptions{}.kinds) {
      if (name == TamperKindName(k)) {
        kinds.push_back(k);
        known = true;
      }
    }
    if (!known) {
      return Status::InvalidArgument("tamper kind '" + std::string(name) +
                                     "': expected element, row, off-by-one, replay or all");
    }
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  if (kinds.empty()) return Status::InvalidArgument("tamper kinds: empty list");
  return kinds;
}

Tamperer::Tamperer(TamperOptions options)
    : options_(std::move(options)), rng_(options_.seed ? *options_.seed : std::random_device{}()) {}

uint64_t Tamperer::tampered() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tampered_;
}

uint32_t Tamperer::NonZeroDelta() { return std::uniform_int_distribution<uint32_t>(1, kPrime - 1)(rng_); }

void Tamperer::ChangeElement(std::vector<uint32_t>& reply) {
  const size_t i = std::uniform_int_distribution<size_t>(0, reply.size() - 1)(rng_);
  reply[i] = FieldAdd(reply[i], NonZeroDelta());
}

std::optional<Tamperer::Applied> Tamperer::MaybeTamper(const LinearSpec& spec, int64_t batch, std::vector<uint32_t>& reply) {
  if (options_.rate <= 0 || options_.kinds.empty() || reply.empty()) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  const bool replay_enabled =
      std::find(options_.kinds.begin(), options_.kinds.end(), TamperKind::kReplay) != options_.kinds.end();
  std::vector<uint32_t> honest;
  if (replay_enabled) honest = reply;
  std::optional<Applied> applied;
  if (std::uniform_real_distribution<double>(0, 1)(rng_) < options_.rate) {
    TamperKind kind = options_.kinds[std::uniform_int_distribution<size_t>(0, options_.kinds.size() - 1)(rng_)];
    switch (kind) {
      case TamperKind::kElement:
        ChangeElement(reply);
        break;
      case TamperKind::kRow: {
        const int64_t pixels = spec.out_h * spec.out_w;
        const int64_t b = std::uniform_int_distribution<int64_t>(0, batch - 1)(rng_);
        const int64_t c = std::uniform_int_distribution<int64_t>(0, spec.out_channels - 1)(rng_);
        const int64_t begin = spec.is_dense() ? b * spec.output_size() : (b * spec.out_channels + c) * pixels;
        const int64_t count = spec.is_dense() ? spec.output_size() : pixels;
        for (int64_t i = begin; i < begin + count; ++i) reply[i] = FieldAdd(reply[i], NonZeroDelta());
        break;
      }
      case TamperKind::kOffByOne:
        for (uint32_t& v : reply) v = FieldAdd(v, 1);
        break;
      case TamperKind::kReplay: {
        auto earlier = last_reply_by_size_.find(reply.size());
        if (earlier != last_reply_by_size_.end() && earlier->second != reply) {
          reply = earlier->second;
        } else {
          kind = TamperKind::kElement;  // nothing different to replay yet
          ChangeElement(reply);
        }
        break;
      }
    }
    applied = Applied{kind, ++tampered_};
  }
  if (replay_enabled) {
    if (last_reply_by_size_.size() >= 64 && !last_reply_by_size_.contains(honest.size())) last_reply_by_size_.clear();
    last_reply_by_size_[honest.size()] = std::move(honest);
  }
  return applied;
}

// ---- Server ----------------------------------------------------------------

struct AccelServer::Layer {
  uint64_t handle;
  std::string digest;
  LinearSpec spec;
};

struct AccelServer::Metrics {
  explicit Metrics(metrics::Registry& r)
      : hello(r.AddCounter("ppml_accel_requests_total", "Requests served, by type.", {{"type", "hello"}})),
        register_layer(r.AddCounter("ppml_accel_requests_total", "Requests served, by type.", {{"type", "register_layer"}})),
        compute(r.AddCounter("ppml_accel_requests_total", "Requests served, by type.", {{"type", "compute"}})),
        errors(r.AddCounter("ppml_accel_request_errors_total", "Requests answered with an error.")),
        layers(r.AddGauge("ppml_accel_layers_registered", "Distinct layers registered.")),
        connections(r.AddGauge("ppml_accel_connections", "Open enclave connections.")),
        bytes_in(r.AddCounter("ppml_accel_bytes_in_total", "Frame bytes received.")),
        bytes_out(r.AddCounter("ppml_accel_bytes_out_total", "Frame bytes sent.")),
        compute_seconds(r.AddHistogram("ppml_accel_compute_seconds", "Backend time per Compute.",
                                       metrics::ExponentialBuckets(0.0001, 2, 16))) {
    for (TamperKind kind : TamperOptions{}.kinds) {
      tampered[static_cast<int>(kind)] = &r.AddCounter("ppml_accel_tampered_replies_total",
                                                       "Replies corrupted on purpose (--tamper-rate).",
                                                       {{"kind", TamperKindName(kind)}});
    }
  }
  metrics::Counter &hello, &register_layer, &compute, &errors;
  metrics::Gauge &layers, &connections;
  metrics::Counter &bytes_in, &bytes_out;
  metrics::Histogram& compute_seconds;
  metrics::Counter* tampered[4] = {};
};

AccelServer::AccelServer(ServerOptions options, std::unique_ptr<Backend> backend, metrics::Registry& registry)
    : options_(std::move(options)),
      backend_(std::move(backend)),
      metrics_(std::make_unique<Metrics>(registry)),
      tamperer_(options_.tamper) {}

AccelServer::~AccelServer() {
  if (listener_.get() >= 0 && options_.listen.is_unix) ::unlink(options_.listen.path.c_str());
}

Result<std::unique_ptr<AccelServer>> AccelServer::Start(ServerOptions options, std::unique_ptr<Backend> backend,
                                                        metrics::Registry& registry) {
  if (!backend) return Status::InvalidArgument("ppml-accel: no backend");
  if (options.tamper.rate < 0 || options.tamper.rate > 1) {
    return Status::InvalidArgument("ppml-accel: tamper rate must be in [0, 1]");
  }
  std::unique_ptr<AccelServer> server(new AccelServer(std::move(options), std::move(backend), registry));
  PPML_ASSIGN_OR_RETURN(server->listener_, ListenAccel(server->options_.listen));
  LogInfo("accel_listen", {{"address", server->options_.listen.ToString()},
                           {"backend", server->backend_->name()},
                           {"tamper_rate", server->options_.tamper.rate}});
  return server;
}

Status AccelServer::Run(const std::atomic<bool>& stop) {
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Worker> workers;
  uint64_t next_connection = 1;
  while (!stop.load()) {
    pollfd entry{listener_.get(), POLLIN, 0};
    const int n = ::poll(&entry, 1, options_.idle_poll_ms);
    // Reap finished connections so their threads do not pile up.
    for (auto it = workers.begin(); it != workers.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
    if (n <= 0) continue;
    const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
        LogWarn("accel_accept_failed", {{"error", std::strerror(errno)}});
      }
      continue;
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    const uint64_t id = next_connection++;
    workers.push_back({std::thread([this, fd, id, done, &stop] {
                         Serve(fd, id, stop);
                         done->store(true);
                       }),
                       done});
  }
  for (Worker& w : workers) w.thread.join();
  LogInfo("accel_stop", {{"address", options_.listen.ToString()}, {"tampered", tamperer_.tampered()}});
  return Status::Ok();
}

void AccelServer::Serve(int raw_fd, uint64_t connection_id, const std::atomic<bool>& stop) {
  ScopedFd fd(raw_fd);
  metrics_->connections.Add(1);
  LogInfo("accel_connection_open", {{"connection", connection_id}});
  std::string reason = "server stopping";
  while (!stop.load()) {
    pollfd entry{fd.get(), POLLIN, 0};
    const int n = ::poll(&entry, 1, options_.idle_poll_ms);
    if (n == 0 || (n < 0 && errno == EINTR)) continue;
    Result<Frame> request =
        ReadFrame(fd.get(), options_.max_payload, net::DeadlineAfter(options_.frame_timeout_ms));
    if (!request.ok()) {
      reason = request.status().message();
      if (request.status().code() == StatusCode::kInvalidArgument) {
        // A bad header: say why, then close (the next frame boundary is unknown).
        metrics_->errors.Increment();
        const std::vector<uint8_t> error = EncodeError(request.status());
        (void)WriteFrame(fd.get(), MessageType::kError, error, net::DeadlineAfter(1000));
      }
      break;
    }
    metrics_->bytes_in.Increment(static_cast<double>(kFrameHeaderSize + request->payload.size()));
    if (!Handle(fd.get(), *request, connection_id)) {
      reason = "reply failed";
      break;
    }
  }
  metrics_->connections.Add(-1);
  LogInfo("accel_connection_closed", {{"connection", connection_id}, {"reason", reason}});
}

bool AccelServer::Handle(int fd, const Frame& request, uint64_t connection_id) {
  MessageType reply_type = MessageType::kError;
  std::vector<uint8_t> reply;
  Status error;
  switch (request.type) {
    case MessageType::kHello: {
      metrics_->hello.Increment();
      Result<uint32_t> version = ParseHello(request.payload);
      if (!version.ok()) {
        error = version.status();
      } else {
        reply_type = MessageType::kHello;  // the client decides whether it can talk to this version
        reply = EncodeHello(kProtocolVersion);
      }
      break;
    }
    case MessageType::kRegisterLayer: {
      metrics_->register_layer.Increment();
      Result<std::shared_ptr<const Layer>> layer = Register(request.payload);
      if (!layer.ok()) {
        error = layer.status();
      } else {
        reply_type = MessageType::kLayerRegistered;
        reply = EncodeHandle((*layer)->handle);
      }
      break;
    }
    case MessageType::kCompute: {
      metrics_->compute.Increment();
      std::string digest;
      Result<std::vector<uint32_t>> z = Compute(request.payload, &digest);
      if (!z.ok()) {
        error = z.status();
      } else {
        reply_type = MessageType::kComputeResult;
        reply = EncodeElements(*z);
      }
      break;
    }
    default:
      error = Status::InvalidArgument(std::string("a client may not send ") + MessageTypeName(request.type));
  }
  if (reply_type == MessageType::kError) {
    metrics_->errors.Increment();
    LogWarn("accel_request_error", {{"connection", connection_id},
                                    {"request", MessageTypeName(request.type)},
                                    {"error", error.ToString()}});
    reply = EncodeError(error);
  }
  Status sent = WriteFrame(fd, reply_type, reply, net::DeadlineAfter(options_.frame_timeout_ms));
  if (!sent.ok()) return false;
  metrics_->bytes_out.Increment(static_cast<double>(kFrameHeaderSize + reply.size()));
  return true;
}

Result<std::shared_ptr<const AccelServer::Layer>> AccelServer::Register(std::span<const uint8_t> payload) {
  PPML_ASSIGN_OR_RETURN(LinearSpec spec, ParseSpec(payload));
  const std::string digest = SpecDigest(spec);
  if (digest.empty()) return Status::Internal("SHA-256 failed");
  std::lock_guard<std::mutex> lock(layers_mu_);
  auto found = layers_by_digest_.find(digest);
  if (found != layers_by_digest_.end()) return found->second;
  const int64_t bytes = static_cast<int64_t>(spec.weights.size());
  if (layers_by_digest_.size() >= options_.max_layers || weight_bytes_ + bytes > options_.max_weight_bytes) {
    return Status::ResourceExhausted("ppml-accel holds " + std::to_string(layers_by_digest_.size()) + " layers (" +
                                     std::to_string(weight_bytes_) + " weight bytes): no room for another");
  }
  auto layer = std::make_shared<const Layer>(Layer{next_handle_++, digest, std::move(spec)});
  layers_by_digest_[digest] = layer;
  layers_by_handle_[layer->handle] = layer;
  weight_bytes_ += bytes;
  metrics_->layers.Set(static_cast<double>(layers_by_digest_.size()));
  LogInfo("accel_layer_registered", {{"layer", Prefix(digest)},
                                     {"handle", layer->handle},
                                     {"macs_per_image", layer->spec.macs_per_image()},
                                     {"weight_bytes", bytes}});
  return layer;
}

Result<std::vector<uint32_t>> AccelServer::Compute(std::span<const uint8_t> payload, std::string* layer_digest) {
  PPML_ASSIGN_OR_RETURN(ComputeRequest request, ParseCompute(payload));
  std::shared_ptr<const Layer> layer;
  {
    std::lock_guard<std::mutex> lock(layers_mu_);
    auto found = layers_by_handle_.find(request.handle);
    if (found == layers_by_handle_.end()) {
      return Status::NotFound("no layer with handle " + std::to_string(request.handle) + " (register it first)");
    }
    layer = found->second;
  }
  *layer_digest = layer->digest;
  const LinearSpec& spec = layer->spec;
  if (static_cast<int64_t>(request.x.size()) != request.batch * spec.input_size()) {
    return Status::InvalidArgument("compute: " + std::to_string(request.x.size()) + " elements for batch " +
                                   std::to_string(request.batch) + " of layer " + Prefix(layer->digest) + " (" +
                                   std::to_string(spec.input_size()) + " per image)");
  }
  const int64_t out_count = request.batch * spec.output_size();
  if (out_count * 4 > options_.max_payload) {
    return Status::ResourceExhausted("compute: the reply would exceed the frame cap; send a smaller batch");
  }
  std::vector<uint32_t> z(static_cast<size_t>(out_count));
  const auto start = std::chrono::steady_clock::now();
  PPML_RETURN_IF_ERROR(backend_->Compute(spec, layer->digest, request.batch, request.x, z));
  metrics_->compute_seconds.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (std::optional<Tamperer::Applied> tamper = tamperer_.MaybeTamper(spec, request.batch, z)) {
    metrics_->tampered[static_cast<int>(tamper->kind)]->Increment();
    LogWarn("accel_tamper", {{"kind", TamperKindName(tamper->kind)},
                             {"counter", tamper->counter},
                             {"layer", Prefix(layer->digest)},
                             {"batch", request.batch}});
  }
  return z;
}

}  // namespace ppml::accel
