#include "enclave_sim/enclave.h"

#include "accel/outsource.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <thread>
#include <utility>

#include "common/ehbp.h"
#include "common/file_io.h"
#include "common/kserve.h"
#include "enclave_sim/package.h"
#include "enclave_sim/weight_store.h"
#include "engine/engine.h"

namespace ppml::enclave {
namespace {

constexpr std::string_view kServiceKeyAad = "ppml service key v1";

ByteSpan AsBytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

Result<Measurement> Measure(const EnclaveConfig& config, const Sha256Digest& manifest_hash) {
  EnclaveIdentity identity;
  identity.code_version = std::string(kEnclaveCodeVersion);
  identity.config = config.security_config;
  identity.config.push_back("replay_window=" + std::to_string(config.replay_window));
  // Clients see from the quote whether (and how) layers leave the enclave.
  if (config.outsource.mode != accel::OutsourceMode::kOff) {
    identity.config.push_back("outsource=" + std::string(accel::OutsourceModeName(config.outsource.mode)));
  }
  identity.manifest_hash = manifest_hash;
  return ComputeMeasurement(identity);
}

// Rows [first, first + count) of a row-major tensor.
Tensor Rows(const Tensor& t, int64_t first, int64_t count) {
  Shape shape = t.shape();
  shape[0] = count;
  Tensor out(t.dtype(), shape);
  const size_t row = t.byte_size() / static_cast<size_t>(t.dim(0));
  std::memcpy(out.raw_data(), static_cast<const uint8_t*>(t.raw_data()) + row * first, row * count);
  return out;
}

}  // namespace

Result<Platform> Platform::Load(const std::string& dir) {
  Platform platform;
  const std::string secret_path = dir + "/" + std::string(kPlatformSecretFile);
  PPML_ASSIGN_OR_RETURN(std::string read, ReadFile(secret_path));
  crypto::Bytes secret(read.begin(), read.end());
  OPENSSL_cleanse(read.data(), read.size());
  if (secret.size() != kPlatformSecretLength) {
    return Status::InvalidArgument(secret_path + ": must hold " + std::to_string(kPlatformSecretLength) +
                                   " bytes, has " + std::to_string(secret.size()));
  }
  platform.secret = crypto::SecretBytes(secret.size());
  std::copy(secret.begin(), secret.end(), platform.secret.data());
  OPENSSL_cleanse(secret.data(), secret.size());
  PPML_ASSIGN_OR_RETURN(platform.signing_key, LoadPlatformPrivateKeyPem(dir + "/" + std::string(kPlatformKeyFile)));
  PPML_ASSIGN_OR_RETURN(crypto::Bytes signer, crypto::Sha256(AsBytes("ppml-serving enclave signer v1")));
  std::copy(signer.begin(), signer.end(), platform.signer_id.begin());
  return platform;
}

Result<WeightMode> ParseWeightMode(std::string_view text) {
  if (text == "auto") return WeightMode::kAuto;
  if (text == "resident") return WeightMode::kResident;
  if (text == "on-demand") return WeightMode::kOnDemand;
  return Status::InvalidArgument("weight mode '" + std::string(text) + "' (expected auto, resident or on-demand)");
}

std::string_view WeightModeName(WeightMode mode) {
  switch (mode) {
    case WeightMode::kAuto: return "auto";
    case WeightMode::kResident: return "resident";
    case WeightMode::kOnDemand: return "on-demand";
  }
  return "auto";
}

struct Enclave::Impl {
  EnclaveConfig config;
  bool allow_plaintext = false;  // kAllowPlaintextEntry is in the measured config
  crypto::SecretBytes platform_secret;
  crypto::EvpPkeyPtr signing_key;
  SignerId signer_id{};
  std::optional<crypto::X25519PrivateKey> private_key;  // loaded once: see X25519PrivateKey
  std::unique_ptr<EpcBudget> budget;
  std::shared_ptr<const crypto::Bytes> package_file;  // host memory
  std::optional<PackageView> package;
  crypto::SecretBytes model_key;
  std::unique_ptr<OnDemandWeights> store;
  std::unique_ptr<engine::Model> model;
  accel::OutsourcedModel* outsourced = nullptr;  // `model`, when its layers are outsourced
  bool on_demand = false;
  size_t resident_weight_bytes = 0;
  // Encapsulated keys already answered: an EHBP request is replayed by resending them.
  std::deque<std::string> replay_order;
  std::unordered_set<std::string> replay_seen;

  ~Impl() {
    model.reset();  // before the store and the budget it uses
    store.reset();
  }

  bool SeenBefore(const std::string& enc);
  // Requests' bytes come before plans kept for other batch sizes, which are
  // rebuilt when needed.
  Result<engine::Reservation> ReserveForRequests(size_t bytes, const std::string& what);
  SealedReply PlainError(const SealedRequest& r, int status, const std::string& message) const;
};

Result<engine::Reservation> Enclave::Impl::ReserveForRequests(size_t bytes, const std::string& what) {
  Result<engine::Reservation> reserved = engine::Reservation::Make(budget.get(), bytes, what);
  if (!reserved.ok() && reserved.status().code() == StatusCode::kResourceExhausted) {
    model->ReleaseCachedPlans();
    reserved = engine::Reservation::Make(budget.get(), bytes, what);
  }
  return reserved;
}

bool Enclave::Impl::SeenBefore(const std::string& enc) {
  std::string key = enc;
  std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
  if (replay_seen.count(key)) return true;
  replay_seen.insert(key);
  replay_order.push_back(std::move(key));
  if (replay_order.size() > config.replay_window) {
    replay_seen.erase(replay_order.front());
    replay_order.pop_front();
  }
  return false;
}

SealedReply Enclave::Impl::PlainError(const SealedRequest& r, int status, const std::string& message) const {
  SealedReply reply;
  reply.request_id = r.request_id;
  reply.http_status = status;
  const std::string body = kserve::ErrorJson(message);
  reply.body.assign(body.begin(), body.end());
  return reply;
}

Enclave::Enclave(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Enclave::~Enclave() = default;

Result<Measurement> Enclave::BaseMeasurement(const EnclaveConfig& config) { return Measure(config, {}); }

Result<ProvisionResult> Enclave::Provision(const EnclaveConfig& config, const Platform& platform, ByteSpan nonce) {
  ProvisionResult out;
  PPML_ASSIGN_OR_RETURN(out.base_measurement, BaseMeasurement(config));
  PPML_ASSIGN_OR_RETURN(crypto::X25519KeyPair keys, crypto::X25519GenerateKeyPair());
  PPML_ASSIGN_OR_RETURN(out.sealed_keys, Seal({platform.secret.data(), platform.secret.size()}, out.base_measurement,
                                              {keys.private_key.data(), keys.private_key.size()},
                                              AsBytes(kServiceKeyAad)));
  AttestationDocument doc;
  PPML_ASSIGN_OR_RETURN(doc.quote, SignQuote(platform.signing_key.get(), out.base_measurement, platform.signer_id,
                                             keys.public_key, nonce));
  doc.enclave_public_key = keys.public_key;
  doc.nonce.assign(nonce.begin(), nonce.end());
  out.attestation_json = AttestationDocumentToJson(doc);
  return out;
}

namespace {

// The decrypted graph on the engine, or with its linear layers outsourced
// (refused for a confidential package: the accelerator would see the weights).
Result<std::unique_ptr<engine::Model>> LoadModel(const crypto::Bytes& graph, const std::string& name,
                                                 const EnclaveConfig& config, const engine::EngineOptions& options,
                                                 bool confidential, accel::OutsourcedModel** outsourced) {
  if (config.outsource.mode == accel::OutsourceMode::kOff) {
    return engine::Model::LoadBytes(std::as_bytes(std::span<const uint8_t>(graph)), name, options);
  }
  accel::OutsourceOptions outsource = config.outsource;
  outsource.confidential = confidential;
  outsource.threads = config.threads;
  outsource.engine = options;
  const std::string_view text(reinterpret_cast<const char*>(graph.data()), graph.size());
  PPML_ASSIGN_OR_RETURN(std::unique_ptr<accel::OutsourcedModel> model, accel::OutsourcedModel::Load(text, name, outsource));
  *outsourced = model.get();
  return std::unique_ptr<engine::Model>(std::move(model));
}

}  // namespace

Result<std::unique_ptr<Enclave>> Enclave::Create(const EnclaveConfig& config, const Platform& platform,
                                                 ByteSpan sealed_keys, std::shared_ptr<const crypto::Bytes> package) {
  if (!package) return Status::InvalidArgument("enclave init: no model package");
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->allow_plaintext = std::find(config.security_config.begin(), config.security_config.end(),
                                    kAllowPlaintextEntry) != config.security_config.end();
  impl->platform_secret = crypto::SecretBytes(platform.secret.size());
  std::copy(platform.secret.data(), platform.secret.data() + platform.secret.size(), impl->platform_secret.data());
  if (EVP_PKEY_up_ref(platform.signing_key.get()) != 1) return Status::Internal("enclave init: EVP_PKEY_up_ref");
  impl->signing_key.reset(platform.signing_key.get());
  impl->signer_id = platform.signer_id;
  impl->budget = std::make_unique<EpcBudget>(config.memory_budget_bytes);

  PPML_ASSIGN_OR_RETURN(Measurement base, BaseMeasurement(config));
  Result<crypto::Bytes> key = Unseal({platform.secret.data(), platform.secret.size()}, base, sealed_keys,
                                     AsBytes(kServiceKeyAad));
  if (!key.ok()) {
    return Status::PermissionDenied("enclave init: the sealed service key does not unseal for this enclave (" +
                                    key.status().message() + "); provision it again for this code and config");
  }
  Result<crypto::X25519PrivateKey> loaded = crypto::X25519PrivateKey::FromRaw(*key);
  OPENSSL_cleanse(key->data(), key->size());
  if (!loaded.ok()) return loaded.status().WithContext("enclave init: the sealed service key");
  impl->private_key = std::move(loaded).value();
  crypto::Bytes public_key = impl->private_key->public_key();

  impl->package_file = std::move(package);
  PPML_ASSIGN_OR_RETURN(PackageView view, OpenPackage(ByteSpan(*impl->package_file)));
  impl->package = std::move(view);
  PPML_ASSIGN_OR_RETURN(Sha256Digest manifest_hash, ManifestHash(*impl->package));
  PPML_ASSIGN_OR_RETURN(Measurement serving, Measure(config, manifest_hash));
  PPML_ASSIGN_OR_RETURN(impl->model_key,
                        UnwrapModelKey(*impl->package, *impl->private_key));

  size_t weight_bytes = 0;
  for (const PackageChunk& c : impl->package->manifest().chunks) {
    if (c.kind == ChunkKind::kTensor) weight_bytes += c.plaintext_length();
  }
  // Resident weights take their bytes twice while the kernels' copies are made;
  // past half the budget they would crowd out activations: stream them instead.
  impl->on_demand = config.weights == WeightMode::kOnDemand ||
                    (config.weights == WeightMode::kAuto && weight_bytes > config.memory_budget_bytes / 2);
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const bool prefetch = config.prefetch.value_or(config.threads > 0 && static_cast<unsigned>(config.threads) < cores);
  Impl* raw = impl.get();
  PPML_ASSIGN_OR_RETURN(impl->store, OnDemandWeights::Create(
                                         [raw](size_t index, std::span<uint8_t> out) {
                                           return DecryptChunkInto(*raw->package, raw->model_key, index, out);
                                         },
                                         {prefetch}));

  engine::EngineOptions options;
  options.threads = config.threads;
  options.memory_budget = impl->budget.get();
  options.weight_store = impl->store.get();
  options.offload_weights = impl->on_demand;
  // Under a tight budget one plan (one arena) at a time; another batch size replaces it.
  if (impl->on_demand) options.max_plans = 1;
  // Winograd's weights take 4x the bytes of a 3x3 layer's and its scratchpad
  // grows with the batch: not where memory is the scarce resource. Without
  // it, streamed and resident weights also give the same bits.
  options.winograd = false;
  {
    const size_t graph_bytes = impl->package->manifest().chunks.at(0).plaintext_length();
    PPML_ASSIGN_OR_RETURN(engine::Reservation graph_reserved,
                          engine::Reservation::Make(impl->budget.get(), graph_bytes, "the model graph"));
    PPML_ASSIGN_OR_RETURN(crypto::Bytes graph, DecryptChunk(*impl->package, impl->model_key, 0));
    const std::string& name = impl->package->manifest().model_name;
    Result<std::unique_ptr<engine::Model>> model =
        LoadModel(graph, name, config, options, impl->package->manifest().confidential, &impl->outsourced);
    OPENSSL_cleanse(graph.data(), graph.size());
    if (!model.ok()) return model.status().WithContext("enclave init");
    impl->model = std::move(model).value();
  }
  impl->resident_weight_bytes = impl->model->stats().weight_bytes - impl->model->stats().offloaded_bytes;

  auto enclave = std::unique_ptr<Enclave>(new Enclave(std::move(impl)));
  enclave->base_measurement_ = base;
  enclave->measurement_ = serving;
  enclave->public_key_ = std::move(public_key);
  return enclave;
}

const std::string& Enclave::model_name() const { return impl_->package->manifest().model_name; }

std::vector<engine::TensorInfo> Enclave::inputs() const { return impl_->model->inputs(); }
std::vector<engine::TensorInfo> Enclave::outputs() const { return impl_->model->outputs(); }

bool Enclave::quantized() const { return impl_->model->stats().quantized_tensors > 0; }

EnclaveStats Enclave::stats() const {
  EnclaveStats s;
  s.memory = impl_->budget->report();
  s.on_demand = impl_->on_demand;
  s.prefetch = impl_->store->prefetch();
  const engine::ModelStats model = impl_->model->stats();
  s.arena_bytes = model.arena_bytes;
  s.streamed_bytes_per_run = model.streamed_bytes_per_run;
  s.plans_built = model.plans_built;
  s.resident_weight_bytes = impl_->resident_weight_bytes;
  if (impl_->outsourced) s.outsource = impl_->outsourced->outsource_stats();
  return s;
}

crypto::Bytes Enclave::HpkeKeyConfig() const {
  crypto::Bytes config = {0x00, 0x00, 0x20};  // key id 0, KEM DHKEM(X25519, HKDF-SHA256)
  config.insert(config.end(), public_key_.begin(), public_key_.end());
  const crypto::Bytes suites = {0x00, 0x04, 0x00, 0x01, 0x00, 0x02};  // length 4: HKDF-SHA256, AES-256-GCM
  config.insert(config.end(), suites.begin(), suites.end());
  return config;
}

Result<std::string> Enclave::Attest(ByteSpan nonce) const {
  AttestationDocument doc;
  PPML_ASSIGN_OR_RETURN(doc.quote,
                        SignQuote(impl_->signing_key.get(), measurement_, impl_->signer_id, public_key_, nonce));
  doc.enclave_public_key = public_key_;
  doc.nonce.assign(nonce.begin(), nonce.end());
  return AttestationDocumentToJson(doc);
}

namespace {

// A request whose JSON is parsed and checked against the model, waiting for
// its run. Its binary inputs are still encrypted (or, for a plaintext
// request, still in its body): the run's input writer reads them straight
// into the engine's inputs, so no request holds a decrypted copy of them.
struct Pending {
  size_t index = 0;
  std::optional<ehbp::RequestReader> reader;  // an encrypted request
  std::span<const uint8_t> binary;            // a plaintext request's binary section
  kserve::InferRequestHeader header;
  std::vector<const kserve::InputHeader*> inputs;  // in model input order
  int64_t rows = 0;
  Status unreadable;         // its binary data failed to decrypt during the run
  engine::Reservation held;  // the request's bytes inside the enclave
};

// JSON-encoded inputs wait as tensors; binary ones as ciphertext outside the budget.
size_t HeldBytes(const Pending& p) {
  size_t bytes = p.reader ? p.reader->max_frame_plaintext() : 0;
  for (const kserve::InputHeader& in : p.header.inputs) bytes += in.data.byte_size();
  return bytes;
}

Status ValidateRequest(const engine::Model& model, Pending& p) {
  const auto& wanted = model.inputs();
  if (p.header.inputs.size() != wanted.size()) {
    return Status::InvalidArgument("the model takes " + std::to_string(wanted.size()) + " inputs, the request has " +
                                   std::to_string(p.header.inputs.size()));
  }
  p.inputs.assign(wanted.size(), nullptr);
  for (const kserve::InputHeader& in : p.header.inputs) {
    auto it = std::find_if(wanted.begin(), wanted.end(), [&](const auto& w) { return w.name == in.name; });
    if (it == wanted.end()) return Status::InvalidArgument("unknown input '" + in.name + "'");
    const engine::TensorInfo& info = *it;
    if (in.dtype != info.dtype) {
      return Status::InvalidArgument("input '" + in.name + "' must be " + DataTypeName(info.dtype) + ", got " +
                                     DataTypeName(in.dtype));
    }
    bool matches = in.shape.size() == info.shape.size();
    for (size_t d = 0; matches && d < info.shape.size(); ++d) {
      matches = info.shape[d] < 0 || info.shape[d] == in.shape[d];
    }
    if (!matches) {
      return Status::InvalidArgument("input '" + in.name + "' has shape " + ShapeToString(in.shape) +
                                     ", the model expects " + ShapeToString(info.shape) + " (-1: any)");
    }
    p.inputs[it - wanted.begin()] = &in;
  }
  // Checked before the run, so a request that cannot be answered costs no inference.
  const auto& outputs = model.outputs();
  for (const kserve::RequestedOutput& r : p.header.request.outputs) {
    if (std::none_of(outputs.begin(), outputs.end(), [&](const auto& o) { return o.name == r.name; })) {
      return Status::InvalidArgument("unknown output '" + r.name + "'");
    }
  }
  return Status::Ok();
}

// Requests whose inputs may be stacked along a symbolic first dimension share one run.
bool Batchable(const engine::Model& model, const Pending& p) {
  for (size_t i = 0; i < p.inputs.size(); ++i) {
    const Shape& s = model.inputs()[i].shape;
    const Shape& got = p.inputs[i]->shape;
    if (s.empty() || s[0] >= 0 || got.empty() || got[0] != p.inputs[0]->shape[0]) return false;
  }
  return !p.inputs.empty() && p.inputs[0]->shape[0] > 0;
}

std::string BatchKey(const Pending& p) {
  std::string key;
  for (const kserve::InputHeader* in : p.inputs) {
    Shape rest(in->shape.begin() + 1, in->shape.end());
    key += ShapeToString(rest) + ";";
  }
  return key;
}

// Reads the JSON part of a request and parses it. An encrypted request's
// reader stops at the end of the JSON, its binary data still unread.
Result<kserve::InferRequestHeader> ReadHeader(const SealedRequest& r, Pending& p) {
  PPML_ASSIGN_OR_RETURN(kserve::BodyLayout layout,
                        kserve::LayOutRequestBody(p.reader ? p.reader->plaintext_size() : r.body.size(),
                                                  r.json_length));
  if (!p.reader) {
    p.binary = std::span<const uint8_t>(r.body).subspan(layout.json_length);
    return kserve::ParseInferRequestHeader(std::span<const uint8_t>(r.body).first(layout.json_length),
                                           layout.binary_length);
  }
  std::vector<uint8_t> json(layout.json_length);
  Status read = p.reader->Read(json);
  Result<kserve::InferRequestHeader> header = read.ok() ? kserve::ParseInferRequestHeader(json, layout.binary_length)
                                                        : Result<kserve::InferRequestHeader>(read);
  OPENSSL_cleanse(json.data(), json.size());
  return header;
}

// Request `p`'s part of the run's inputs (`places`, model order): rows
// [first_row, first_row + p.rows) of each in a stacked run of total_rows,
// or all of each when the request runs alone (total_rows 0).
std::vector<std::span<std::byte>> RowsOf(const Pending& p, std::span<const std::span<std::byte>> places,
                                         int64_t first_row, int64_t total_rows) {
  std::vector<std::span<std::byte>> rows;
  for (std::span<std::byte> place : places) {
    const size_t row = total_rows > 0 ? place.size() / static_cast<size_t>(total_rows) : 0;
    rows.push_back(total_rows > 0 ? place.subspan(row * first_row, row * p.rows) : place);
  }
  return rows;
}

// Writes request `p`'s inputs into `dest` (its RowsOf the run's inputs). Its
// binary data is decrypted straight into them.
Status WriteInputs(Pending& p, std::span<const std::span<std::byte>> dest) {
  size_t binary_read = 0;
  // The binary section holds the inputs back to back in request order.
  for (kserve::InputHeader& in : p.header.inputs) {
    const size_t m = std::find(p.inputs.begin(), p.inputs.end(), &in) - p.inputs.begin();
    std::span<std::byte> to = dest[m];
    const size_t bytes = in.binary_size ? *in.binary_size : in.data.byte_size();
    if (bytes != to.size()) {
      return Status::Internal("input '" + in.name + "' has " + std::to_string(bytes) + " bytes for a place of " +
                              std::to_string(to.size()));
    }
    if (!in.binary_size) {
      std::memcpy(to.data(), in.data.raw_data(), bytes);
      in.data = Tensor();
    } else if (p.reader) {
      PPML_RETURN_IF_ERROR(p.reader->Read({reinterpret_cast<uint8_t*>(to.data()), bytes}));
    } else {
      std::memcpy(to.data(), p.binary.data() + binary_read, bytes);
      binary_read += bytes;
    }
  }
  return p.reader ? p.reader->Finish() : Status::Ok();
}

}  // namespace

std::vector<SealedReply> Enclave::InferBatch(std::span<const SealedRequest> requests) {
  Impl& impl = *impl_;
  std::vector<SealedReply> replies(requests.size());
  std::vector<std::unique_ptr<Pending>> pending;

  // An error the client can read: encrypted under its response key (plain
  // for a plaintext request).
  auto encrypted_error = [&](Pending& p, int status, const std::string& message) {
    SealedReply& reply = replies[p.index];
    reply.request_id = requests[p.index].request_id;
    reply.http_status = status;
    const std::string body = kserve::ErrorJson(message);
    if (!p.reader) {
      reply.body.assign(body.begin(), body.end());
      return;
    }
    Result<ehbp::EncryptedResponse> sealed = ehbp::EncryptResponse(p.reader->state(), AsBytes(body));
    if (!sealed.ok()) {
      reply = impl.PlainError(requests[p.index], 500, "the reply could not be encrypted");
      return;
    }
    reply.response_nonce = sealed->response_nonce_header_value;
    reply.body = std::move(sealed->body);
  };
  auto undecryptable = [&](const SealedRequest& r, const Status& status) {
    return impl.PlainError(r, 400, "the request does not decrypt: " + status.message());
  };

  for (size_t i = 0; i < requests.size(); ++i) {
    const SealedRequest& r = requests[i];
    replies[i].request_id = r.request_id;
    if (r.body.size() > impl.config.max_request_bytes) {
      replies[i] = impl.PlainError(r, 413, "request body of " + std::to_string(r.body.size()) +
                                               " bytes is over the limit of " +
                                               std::to_string(impl.config.max_request_bytes));
      continue;
    }
    auto p = std::make_unique<Pending>();
    p->index = i;
    if (r.encapsulated_key.empty()) {
      if (!impl.allow_plaintext) {
        replies[i] = impl.PlainError(r, 403, "plaintext requests are not allowed by this enclave");
        continue;
      }
    } else {
      Result<ehbp::RequestReader> reader = ehbp::RequestReader::Open(r.encapsulated_key, r.body, *impl.private_key);
      if (!reader.ok()) {
        replies[i] = undecryptable(r, reader.status());
        continue;
      }
      if (impl.SeenBefore(r.encapsulated_key)) {
        replies[i] = impl.PlainError(r, 409, "replayed request: this encapsulated key was already used");
        continue;
      }
      p->reader.emplace(std::move(reader).value());
    }
    // The JSON's plaintext and what parsing it builds: about twice its length.
    const size_t json_bytes = r.json_length.value_or(r.body.size());
    Result<engine::Reservation> reserved = impl.ReserveForRequests(
        2 * std::min(json_bytes, r.body.size()) + HeldBytes(*p), "request " + r.request_id);
    if (!reserved.ok()) {
      encrypted_error(*p, 503, reserved.status().message());
      continue;
    }
    p->held = std::move(reserved).value();
    Result<kserve::InferRequestHeader> header = ReadHeader(r, *p);
    if (!header.ok()) {
      if (header.status().code() == StatusCode::kDataLoss) {
        replies[i] = undecryptable(r, header.status());
      } else {
        encrypted_error(*p, 400, header.status().message());
      }
      continue;
    }
    p->header = std::move(header).value();
    if (const Status valid = ValidateRequest(*impl.model, *p); !valid.ok()) {
      encrypted_error(*p, 400, valid.message());
      continue;
    }
    p->rows = Batchable(*impl.model, *p) ? p->inputs[0]->shape[0] : -1;
    // Until the run: JSON inputs as tensors, and the reader's frame.
    p->held.Reset();
    Result<engine::Reservation> inputs_held = impl.ReserveForRequests(HeldBytes(*p), "request " + r.request_id);
    if (!inputs_held.ok()) {
      encrypted_error(*p, 503, inputs_held.status().message());
      continue;
    }
    p->held = std::move(inputs_held).value();
    pending.push_back(std::move(p));
  }

  // Group: same non-batch shapes share a run; others run alone.
  std::map<std::string, std::vector<Pending*>> groups;
  std::vector<std::vector<Pending*>> runs;
  for (auto& p : pending) {
    if (p->rows > 0) {
      groups[BatchKey(*p)].push_back(p.get());
    } else {
      runs.push_back({p.get()});
    }
  }
  for (auto& [key, members] : groups) runs.push_back(std::move(members));

  const auto& output_info = impl.model->outputs();
  for (const std::vector<Pending*>& run : runs) {
    // The run's inputs are written into the engine's arena: each request's
    // rows of a stacked batch, or all of a lone request's inputs.
    const bool stack = run.size() > 1;
    int64_t total_rows = 0;
    for (Pending* p : run) total_rows += std::max<int64_t>(p->rows, 0);
    std::vector<Shape> shapes;
    for (const kserve::InputHeader* in : run[0]->inputs) {
      shapes.push_back(in->shape);
      if (stack) shapes.back()[0] = total_rows;
    }
    auto write = [&](std::span<const std::span<std::byte>> places) {
      int64_t first_row = 0;
      for (Pending* p : run) {
        // A request whose data fails to decrypt gets zero rows, computed and
        // dropped: the others' rows do not depend on them.
        const std::vector<std::span<std::byte>> rows = RowsOf(*p, places, first_row, stack ? total_rows : 0);
        p->unreadable = WriteInputs(*p, rows);
        if (p->unreadable.code() == StatusCode::kInternal) return std::exchange(p->unreadable, Status::Ok());
        if (!p->unreadable.ok()) {
          for (std::span<std::byte> r : rows) std::fill(r.begin(), r.end(), std::byte{0});
        }
        p->held.Reset();
        first_row += std::max<int64_t>(p->rows, 0);
      }
      return Status::Ok();
    };
    Result<std::vector<Tensor>> outputs = impl.model->RunWith(shapes, write);
    if (outputs.ok() && stack) {
      for (const Tensor& out : *outputs) {
        if (out.rank() == 0 || out.dim(0) != total_rows) {
          outputs = Status::Internal("output '" + output_info[&out - outputs->data()].name +
                                     "' does not keep the batch dimension; cannot split a batch");
          break;
        }
      }
    }
    int64_t row = 0;
    for (Pending* p : run) {
      const int64_t first_row = row;
      row += std::max<int64_t>(p->rows, 0);
      if (!p->unreadable.ok()) {
        replies[p->index] = undecryptable(requests[p->index], p->unreadable);
        continue;
      }
      if (!outputs.ok()) {
        encrypted_error(*p, 500, "inference failed: " + outputs.status().message());
        continue;
      }
      const kserve::InferRequest& request = p->header.request;
      kserve::InferResponse response;
      response.model_name = model_name();
      response.id = request.id;
      for (size_t o = 0; o < outputs->size(); ++o) {
        const std::string& name = output_info[o].name;
        const bool wanted = request.outputs.empty() ||
                            std::any_of(request.outputs.begin(), request.outputs.end(),
                                        [&](const kserve::RequestedOutput& r) { return r.name == name; });
        if (!wanted) continue;
        response.outputs.push_back({name, stack ? Rows((*outputs)[o], first_row, p->rows) : (*outputs)[o].Clone()});
      }
      Result<kserve::EncodedBody> body = kserve::EncodeInferResponse(response, request);
      if (!body.ok()) {
        encrypted_error(*p, 500, body.status().message());
        continue;
      }
      SealedReply& reply = replies[p->index];
      if (!p->reader) {  // a plaintext request gets a plaintext answer
        reply.http_status = 200;
        reply.body = std::move(body->body);
        reply.json_length = body->json_length;
        continue;
      }
      Result<ehbp::EncryptedResponse> sealed = ehbp::EncryptResponse(p->reader->state(), body->body);
      OPENSSL_cleanse(body->body.data(), body->body.size());
      if (!sealed.ok()) {
        replies[p->index] = impl.PlainError(requests[p->index], 500, "the reply could not be encrypted");
        continue;
      }
      reply.http_status = 200;
      reply.response_nonce = sealed->response_nonce_header_value;
      reply.body = std::move(sealed->body);
      reply.json_length = body->json_length;
    }
  }
  return replies;
}

}  // namespace ppml::enclave
