#include "accel/server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "accel/field.h"
#include "accel/protocol.h"
#include "common/listen.h"
#include "common/log.h"

namespace ppml::accel {

Result<std::vector<TamperKind>> ParseTamperKinds(const std::string& list) {
  std::vector<TamperKind> kinds;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item == "element") kinds.push_back(TamperKind::kElement);
    else if (item == "row") kinds.push_back(TamperKind::kRow);
    else if (item == "off-by-one") kinds.push_back(TamperKind::kOffByOne);
    else if (item == "replay") kinds.push_back(TamperKind::kReplay);
    else return Status::InvalidArgument("--tamper-kinds: unknown kind '" + item + "' (element, row, off-by-one, replay)");
  }
  if (kinds.empty()) return Status::InvalidArgument("--tamper-kinds: empty");
  return kinds;
}

namespace {

const char* KindName(TamperKind k) {
  switch (k) {
    case TamperKind::kElement: return "element";
    case TamperKind::kRow: return "row";
    case TamperKind::kOffByOne: return "off-by-one";
    case TamperKind::kReplay: return "replay";
  }
  return "element";
}

struct Layer {
  LinearSpec spec;
  std::mutex mutex;  // one batch at a time per layer: the primitives own scratch
  std::map<int64_t, std::unique_ptr<FieldLinear>> by_batch;
};

}  // namespace

struct AccelServer::Impl {
  ServerOptions options;
  ScopedFd listener;
  std::string address;
  std::string unix_path;
  ServerCounters counters;
  std::mutex layers_mutex;
  std::vector<std::unique_ptr<Layer>> layers;
  std::unordered_map<std::string, uint64_t> by_digest;
  std::mutex tamper_mutex;
  std::mt19937_64 rng;
  std::map<size_t, std::vector<uint32_t>> last_reply;  // by size, for replays

  Result<uint64_t> Register(LinearSpec spec) {
    const std::string digest = SpecDigest(spec);
    std::lock_guard lock(layers_mutex);
    if (auto it = by_digest.find(digest); it != by_digest.end()) return it->second;
    auto layer = std::make_unique<Layer>();
    layer->spec = std::move(spec);
    layers.push_back(std::move(layer));
    const uint64_t handle = layers.size() - 1;
    by_digest[digest] = handle;
    ++counters.layers;
    LogInfo("accel_layer_registered", {{"handle", handle}, {"digest", digest.substr(0, 16)}});
    return handle;
  }

  Result<std::vector<uint32_t>> Compute(const ComputeRequest& request) {
    Layer* layer = nullptr;
    {
      std::lock_guard lock(layers_mutex);
      if (request.handle >= layers.size()) {
        return Status::NotFound("no layer with handle " + std::to_string(request.handle));
      }
      layer = layers[request.handle].get();
    }
    const LinearSpec& s = layer->spec;
    if (static_cast<int64_t>(request.x.size()) != request.batch * s.input_size()) {
      return Status::InvalidArgument("compute: " + std::to_string(request.x.size()) + " elements for batch " +
                                     std::to_string(request.batch) + " of inputs of " +
                                     std::to_string(s.input_size()));
    }
    std::vector<uint32_t> z(static_cast<size_t>(request.batch * s.output_size()));
    std::lock_guard lock(layer->mutex);
    auto& linear = layer->by_batch[request.batch];
    if (!linear) {
      PPML_ASSIGN_OR_RETURN(linear, FieldLinear::Create(s, request.batch));
    }
    PPML_RETURN_IF_ERROR(linear->Run(request.x, z));
    ++counters.computes;
    MaybeTamper(s, request.batch, z);
    return z;
  }

  void MaybeTamper(const LinearSpec& s, int64_t batch, std::vector<uint32_t>& z) {
    if (options.tamper_rate <= 0) return;
    std::lock_guard lock(tamper_mutex);
    const std::vector<uint32_t> honest = z;
    std::uniform_real_distribution<double> coin(0, 1);
    if (coin(rng) >= options.tamper_rate) {
      last_reply[z.size()] = honest;
      return;
    }
    TamperKind kind = options.tamper_kinds[rng() % options.tamper_kinds.size()];
    auto nonzero = [&] { return static_cast<uint32_t>(1 + rng() % (kPrime - 1)); };
    if (kind == TamperKind::kReplay) {
      auto it = last_reply.find(z.size());
      if (it == last_reply.end() || it->second == z) {
        kind = TamperKind::kElement;  // nothing different to replay
      } else {
        z = it->second;
      }
    }
    switch (kind) {
      case TamperKind::kElement: {
        const size_t i = rng() % z.size();
        z[i] = FieldAdd(z[i], nonzero());
        break;
      }
      case TamperKind::kRow: {
        const int64_t pixels = s.out_h * s.out_w;
        const int64_t image = static_cast<int64_t>(rng() % batch);
        const bool dense = pixels == 1;
        const int64_t channel = static_cast<int64_t>(rng() % s.out_channels);
        const int64_t first = dense ? image * s.output_size() : (image * s.out_channels + channel) * pixels;
        const int64_t count = dense ? s.output_size() : pixels;
        const uint32_t delta = nonzero();
        for (int64_t i = 0; i < count; ++i) z[first + i] = FieldAdd(z[first + i], delta);
        break;
      }
      case TamperKind::kOffByOne:
        for (uint32_t& v : z) v = FieldAdd(v, 1);
        break;
      case TamperKind::kReplay:
        break;
    }
    last_reply[z.size()] = honest;
    const int64_t n = ++counters.tampered;
    LogInfo("accel_tampered", {{"kind", KindName(kind)}, {"count", n}});
  }

  void ServeConnection(ScopedFd fd, const std::atomic<bool>& stop) {
    ++counters.connections;
    const std::string peer = "enclave connection";
    while (!stop) {
      // Wait for a frame in short steps (to notice `stop`); once one starts,
      // the socket's receive timeout bounds a peer that stalls mid-frame.
      pollfd waiting{fd.get(), POLLIN, 0};
      if (::poll(&waiting, 1, 200) <= 0) continue;
      Result<Frame> frame = ReadFrame(fd.get(), peer);
      if (!frame.ok()) {
        if (frame.status().code() != StatusCode::kUnavailable) {
          LogWarn("accel_bad_frame", {{"error", frame.status().message()}});
          static_cast<void>(WriteFrame(fd.get(), FrameType::kError, EncodeError(frame.status()), peer));
        }
        return;  // closed, or a stream we can no longer trust
      }
      Status sent;
      if (frame->type == FrameType::kRegister) {
        Result<LinearSpec> spec = DecodeSpec(frame->payload);
        Result<uint64_t> handle = spec.ok() ? Register(std::move(*spec)) : Result<uint64_t>(spec.status());
        if (handle.ok()) {
          std::vector<uint8_t> payload(8);
          std::memcpy(payload.data(), &*handle, 8);
          sent = WriteFrame(fd.get(), FrameType::kRegistered, payload, peer);
        } else {
          sent = WriteFrame(fd.get(), FrameType::kError, EncodeError(handle.status()), peer);
        }
      } else if (frame->type == FrameType::kCompute) {
        Result<ComputeRequest> request = DecodeCompute(frame->payload);
        Result<std::vector<uint32_t>> z =
            request.ok() ? Compute(*request) : Result<std::vector<uint32_t>>(request.status());
        sent = z.ok() ? WriteFrame(fd.get(), FrameType::kResult, EncodeElements(*z), peer)
                      : WriteFrame(fd.get(), FrameType::kError, EncodeError(z.status()), peer);
      } else {
        sent = WriteFrame(fd.get(), FrameType::kError,
                          EncodeError(Status::InvalidArgument("only Register and Compute are requests")), peer);
      }
      if (!sent.ok()) return;
    }
  }
};

AccelServer::AccelServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AccelServer::~AccelServer() {
  if (!impl_->unix_path.empty()) {
    std::error_code ec;
    std::filesystem::remove(impl_->unix_path, ec);
  }
}

const std::string& AccelServer::address() const { return impl_->address; }
const ServerCounters& AccelServer::counters() const { return impl_->counters; }

Result<std::unique_ptr<AccelServer>> AccelServer::Listen(const ServerOptions& options) {
  if (options.tamper_rate < 0 || options.tamper_rate > 1) {
    return Status::InvalidArgument("--tamper-rate must be in [0, 1]");
  }
  if (options.tamper_kinds.empty()) return Status::InvalidArgument("--tamper-kinds: empty");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->rng.seed(options.tamper_seed != 0 ? options.tamper_seed : std::random_device{}());
  const std::string& a = options.listen;
  if (a.rfind("unix:", 0) == 0) {
    impl->unix_path = a.substr(5);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (impl->unix_path.empty() || impl->unix_path.size() >= sizeof(addr.sun_path)) {
      return Status::InvalidArgument("--listen " + a + ": bad socket path");
    }
    std::memcpy(addr.sun_path, impl->unix_path.c_str(), impl->unix_path.size() + 1);
    std::error_code ec;
    if (std::filesystem::is_socket(impl->unix_path, ec)) std::filesystem::remove(impl->unix_path, ec);
    ScopedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0 || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd.get(), 64) != 0) {
      return Status::IoError("--listen " + a + ": " + std::strerror(errno));
    }
    impl->listener = std::move(fd);
    impl->address = a;
  } else {
    const std::string host_port = a.rfind("tcp:", 0) == 0 ? a.substr(4) : a;
    const size_t colon = host_port.rfind(':');
    if (colon == std::string::npos) return Status::InvalidArgument("--listen " + a + ": expected unix:PATH or HOST:PORT");
    const std::string host = host_port.substr(0, colon);
    int port = -1;
    try {
      port = std::stoi(host_port.substr(colon + 1));
    } catch (const std::exception&) {
    }
    if (port < 0 || port > 65535) return Status::InvalidArgument("--listen " + a + ": bad port");
    PPML_ASSIGN_OR_RETURN(impl->listener, ListenTcp(host, static_cast<uint16_t>(port), 64, "--listen"));
    impl->address = FormatHostPort(host, BoundPort(impl->listener.get()));
  }
  return std::unique_ptr<AccelServer>(new AccelServer(std::move(impl)));
}

Status AccelServer::Serve(const std::atomic<bool>& stop) {
  std::vector<std::thread> connections;
  while (!stop) {
    pollfd p{impl_->listener.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, 200);
    if (ready <= 0) continue;
    ScopedFd fd(::accept4(impl_->listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (fd.get() < 0) continue;
    timeval tv{30, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    connections.emplace_back([this, &stop, f = std::move(fd)]() mutable { impl_->ServeConnection(std::move(f), stop); });
  }
  for (std::thread& t : connections) t.join();
  return Status::Ok();
}

}  // namespace ppml::accel
