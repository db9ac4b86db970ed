#include "accel/outsource.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <oneapi/dnnl/dnnl.hpp>

#include "accel/client.h"
#include "accel/field.h"
#include "common/crypto.h"
#include "common/log.h"
#include "int8/quantize.h"

namespace ppml::accel {

Result<OutsourceMode> ParseOutsourceMode(std::string_view text) {
  if (text == "off") return OutsourceMode::kOff;
  if (text == "integrity") return OutsourceMode::kIntegrity;
  if (text == "private") return OutsourceMode::kPrivate;
  return Status::InvalidArgument("outsource mode '" + std::string(text) + "': expected off, integrity or private");
}

std::string_view OutsourceModeName(OutsourceMode mode) {
  switch (mode) {
    case OutsourceMode::kOff: return "off";
    case OutsourceMode::kIntegrity: return "integrity";
    case OutsourceMode::kPrivate: return "private";
  }
  return "off";
}

double OutsourceStats::enclave_mac_fraction() const {
  if (linear_macs == 0) return 0;
  return static_cast<double>(enclave_linear_macs + check_macs) / static_cast<double>(linear_macs);
}

namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Accumulators must stay inside (-p/2, p/2) to read back exactly; calibration
// keeps the observed peak under half of that, leaving room for inputs a
// little beyond the calibration set.
constexpr int64_t kAccumulatorLimit = (kPrime - 1) / 4;

// A blinding pad as it waits outside the enclave: R W sealed (AES-256-GCM)
// under a key that never leaves; R itself is regenerated from the pad's
// counter and the enclave's secret seed when the pad is used.
struct SealedPad {
  uint64_t counter = 0;
  crypto::Bytes sealed;
};

// The layer in FP32 on oneDNN (the convolution with its bias): what
// calibration runs while it records each layer's input range.
class FloatLinear {
 public:
  static Result<FloatLinear> Create(const LinearSpec& s, const std::vector<float>& weights,
                                    const std::vector<float>& bias, int64_t batch) {
    using dnnl::memory;
    try {
      FloatLinear f;
      f.engine_ = dnnl::engine(dnnl::engine::kind::cpu, 0);
      f.stream_ = dnnl::stream(f.engine_);
      const memory::dims src{batch, s.in_channels, s.in_h, s.in_w};
      const memory::dims dst{batch, s.out_channels, s.out_h, s.out_w};
      const memory::dims w = s.groups == 1
                                 ? memory::dims{s.out_channels, s.in_channels, s.kernel_h, s.kernel_w}
                                 : memory::dims{s.groups, s.out_channels / s.groups, s.in_channels / s.groups,
                                                s.kernel_h, s.kernel_w};
      const auto f32 = memory::data_type::f32;
      const memory::desc src_md(src, f32, memory::format_tag::nchw), dst_md(dst, f32, memory::format_tag::nchw);
      const memory::desc w_md(w, f32, s.groups == 1 ? memory::format_tag::oihw : memory::format_tag::goihw);
      const memory::desc b_md({s.out_channels}, f32, memory::format_tag::a);
      dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                           src_md, w_md, b_md, dst_md, {s.stride_h, s.stride_w},
                                           {s.dilation_h - 1, s.dilation_w - 1}, {s.pad_top, s.pad_left},
                                           {s.pad_bottom, s.pad_right});
      dnnl::convolution_forward::primitive_desc pd(desc, f.engine_);
      f.conv_ = dnnl::convolution_forward(pd);
      f.weights_ = weights;
      f.bias_ = bias;
      f.w_mem_ = memory(w_md, f.engine_, f.weights_.data());
      f.b_mem_ = memory(b_md, f.engine_, f.bias_.data());
      f.src_md_ = src_md;
      f.dst_md_ = dst_md;
      return f;
    } catch (const dnnl::error& e) {
      return Status::Unsupported(std::string("oneDNN FP32 convolution for calibration: ") + e.what());
    }
  }

  Status Run(std::span<const float> in, std::span<float> out) {
    try {
      dnnl::memory src(src_md_, engine_, const_cast<float*>(in.data()));
      dnnl::memory dst(dst_md_, engine_, out.data());
      conv_.execute(stream_, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w_mem_}, {DNNL_ARG_BIAS, b_mem_},
                              {DNNL_ARG_DST, dst}});
      stream_.wait();
      return Status::Ok();
    } catch (const dnnl::error& e) {
      return Status::Internal(std::string("oneDNN FP32 convolution: ") + e.what());
    }
  }

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
  dnnl::convolution_forward conv_;
  std::vector<float> weights_, bias_;
  dnnl::memory w_mem_, b_mem_;
  dnnl::memory::desc src_md_, dst_md_;
};

struct Layer {
  int index = 0;
  std::string name;
  std::string input;
  LinearSpec spec;
  std::vector<float> weight_scales;  // per output channel
  std::vector<float> bias;           // per output channel, zeros when none
  float activation_scale = 1;
  ActivationType activation_type = ActivationType::kS8;
  int64_t accumulator_peak = 0;
  // Calibration only: the FP32 layer and what its input held.
  std::vector<float> float_weights;
  std::map<int64_t, FloatLinear> float_linear;  // by batch size
  float input_min = 0, input_max_abs = 0;
  bool calibrated = false;
  std::unique_ptr<FreivaldsCheck> check;
  std::map<int64_t, std::unique_ptr<ExactLinear>> exact;  // by batch size
  uint64_t accelerator_handle = 0;
  // Private mode: pads (guarded by `pads_mutex`; the refill thread makes
  // them with its own FieldLinear).
  std::mutex pads_mutex;
  std::deque<SealedPad> pads;
  uint64_t next_pad = 0;
  std::unique_ptr<FieldLinear> pad_linear;
};

// A stable nonce per (layer, pad): never reused under the pad key.
crypto::Bytes PadNonce(int layer, uint64_t counter) { return crypto::CounterNonce(static_cast<uint32_t>(layer), counter); }

std::span<const std::byte> Seed(const crypto::Bytes& bytes) { return std::as_bytes(std::span(bytes)); }

uint64_t PadStream(int layer, uint64_t counter) { return (uint64_t{static_cast<uint32_t>(layer)} << 40) | counter; }

class FieldModel final : public OutsourcedModel, public engine::LinearDelegate {
 public:
  explicit FieldModel(const OutsourceOptions& options) : options_(options), mode_(options.mode) {}

  ~FieldModel() override {
    {
      std::lock_guard lock(refill_mutex_);
      stop_ = true;
    }
    refill_cv_.notify_all();
    if (refill_thread_.joinable()) refill_thread_.join();
  }

  Status Init(std::string_view onnx_bytes, const std::string& name) {
    PPML_ASSIGN_OR_RETURN(crypto::Bytes check_seed, crypto::RandomBytes(32));
    PPML_ASSIGN_OR_RETURN(crypto::Bytes pad_seed, crypto::RandomBytes(32));
    PPML_ASSIGN_OR_RETURN(crypto::Bytes pad_key, crypto::RandomBytes(crypto::kAes256KeyLength));
    check_seed_ = std::move(check_seed);
    pad_seed_ = std::move(pad_seed);
    pad_key_ = std::move(pad_key);

    if (mode_ != OutsourceMode::kOff) {
      PPML_ASSIGN_OR_RETURN(client_, AccelClient::Connect(options_.accelerator));
    }
    engine::EngineOptions engine_options = options_.engine;
    engine_options.threads = options_.threads;
    engine_options.linear_delegate = this;
    const auto bytes = std::as_bytes(std::span<const char>(onnx_bytes.data(), onnx_bytes.size()));
    PPML_ASSIGN_OR_RETURN(model_, engine::Model::LoadBytes(bytes, name, engine_options));
    if (layers_.empty()) return Status::Unsupported(name + ": no Conv, Gemm or MatMul layer to outsource");
    if (model_->inputs().size() != 1) return Status::Unsupported(name + ": only models with one input are supported");
    PPML_ASSIGN_OR_RETURN(int8::CalibrationSet set,
                          int8::LoadCalibrationSet(options_.calibration, model_->inputs()[0].shape,
                                                    model_->inputs()[0].dtype));
    PPML_RETURN_IF_ERROR(Calibrate(set.samples).WithContext(name));
    PPML_RETURN_IF_ERROR(FitAccumulators(set.samples).WithContext(name));
    for (const auto& layer : layers_) PPML_RETURN_IF_ERROR(Register(*layer));
    if (mode_ == OutsourceMode::kPrivate) {
      PPML_RETURN_IF_ERROR(FillPads(options_.pad_pool_images));
      if (options_.background_refill) refill_thread_ = std::thread([this] { RefillLoop(); });
    }
    stats_ = {};
    stats_.pads_generated = pads_generated_.load();
    return Status::Ok();
  }

  // ---- engine::LinearDelegate

  Result<int> Adopt(const engine::LinearLayer& l) override {
    for (const auto& existing : layers_) {
      if (existing->name == l.node) {
        const LinearSpec& s = existing->spec;
        const bool same = l.dense ? l.input_shape[1] == s.in_channels
                                  : l.input_shape[1] == s.in_channels && l.input_shape[2] == s.in_h &&
                                        l.input_shape[3] == s.in_w;
        if (!same) return Status::Unsupported(l.node + ": an outsourced layer's image size cannot change");
        return existing->index;
      }
    }
    auto layer = std::make_unique<Layer>();
    layer->index = static_cast<int>(layers_.size());
    layer->name = l.node;
    layer->input = l.input;
    LinearSpec& s = layer->spec;
    const Shape& w = l.weights->shape();
    s.in_channels = l.input_shape[1];
    s.out_channels = l.output_shape[1];
    if (!l.dense) {
      s.in_h = l.input_shape[2];
      s.in_w = l.input_shape[3];
      s.out_h = l.output_shape[2];
      s.out_w = l.output_shape[3];
      s.kernel_h = w[2];
      s.kernel_w = w[3];
      s.stride_h = l.stride_h;
      s.stride_w = l.stride_w;
      s.dilation_h = l.dilation_h;
      s.dilation_w = l.dilation_w;
      s.pad_top = l.pad_top;
      s.pad_left = l.pad_left;
      s.pad_bottom = l.pad_bottom;
      s.pad_right = l.pad_right;
      s.groups = l.groups;
    }
    const std::span<const float> weights(l.weights->data<float>(), l.weights->element_count());
    layer->weight_scales = int8::PerChannelScales(weights, w, 0, kMaxWeight);
    s.weights = int8::QuantizePerChannel(weights, w, 0, layer->weight_scales, kMaxWeight);
    layer->bias.assign(s.out_channels, 0.f);
    if (l.bias) std::copy_n(l.bias->data<float>(), s.out_channels, layer->bias.begin());
    PPML_RETURN_IF_ERROR(ValidateSpec(s).WithContext(l.node));

    layer->float_weights.assign(weights.begin(), weights.end());
    PPML_ASSIGN_OR_RETURN(layer->check, FreivaldsCheck::Create(s, Seed(check_seed_), options_.freivalds_repetitions));
    layers_.push_back(std::move(layer));
    return layers_.back()->index;
  }

  Status Run(int id, std::span<const float> input, const Shape& input_shape, std::span<float> output,
             const Shape& output_shape) override {
    Layer& layer = *layers_.at(id);
    const LinearSpec& s = layer.spec;
    const int64_t batch = input_shape[0];
    const size_t in_count = static_cast<size_t>(batch * s.input_size());
    const size_t out_count = static_cast<size_t>(batch * s.output_size());
    if (input.size() != in_count || output.size() != out_count || output_shape[0] != batch) {
      return Status::Internal(layer.name + ": tensor sizes differ from the layer's");
    }
    if (calibrating_) return Observe(layer, batch, input, output);
    Quantize(layer, input);
    const int64_t macs = batch * s.macs_per_image();
    stats_.linear_macs += macs;

    bool done = false;
    if (mode_ != OutsourceMode::kOff && !accelerator_bad_) {
      PPML_ASSIGN_OR_RETURN(done, Outsource(layer, batch));
    }
    if (!done) {
      PPML_RETURN_IF_ERROR(ComputeInside(layer, batch, accumulators_));
      stats_.enclave_linear_macs += macs;
      ++stats_.local_calls;
    }
    Dequantize(layer, batch, output);
    return Status::Ok();
  }

  // ---- OutsourcedModel

  const std::vector<engine::TensorInfo>& inputs() const override { return model_->inputs(); }
  const std::vector<engine::TensorInfo>& outputs() const override { return model_->outputs(); }

  Result<std::vector<Tensor>> Run(std::span<const Tensor> inputs) override {
    const int64_t images = !inputs.empty() && inputs[0].rank() > 0 ? inputs[0].dim(0) : 0;
    return Counted(images, [&] { return model_->Run(inputs); });
  }

  Result<std::vector<Tensor>> RunWith(std::span<const Shape> shapes, const InputWriter& write) override {
    const int64_t images = !shapes.empty() && !shapes[0].empty() ? shapes[0][0] : 0;
    return Counted(images, [&] { return model_->RunWith(shapes, write); });
  }

  Status FillPads(int64_t per_layer) override {
    if (mode_ != OutsourceMode::kPrivate) return Status::Ok();
    for (const auto& layer : layers_) {
      while (static_cast<int64_t>(PadCount(*layer)) < per_layer) PPML_RETURN_IF_ERROR(MakePad(*layer));
    }
    return Status::Ok();
  }

  engine::ModelStats stats() const override { return model_->stats(); }
  std::vector<engine::StepTime> Profile() const override { return model_->Profile(); }
  void ReleaseCachedPlans() override { model_->ReleaseCachedPlans(); }

  OutsourceStats outsource_stats() const override {
    std::lock_guard lock(stats_mutex_);
    OutsourceStats s = published_;
    s.pads_generated = pads_generated_.load();
    s.pad_generation_seconds = pad_generation_ns_.load() / 1e9;
    s.pad_pool = 0;
    for (const auto& layer : layers_) s.pad_pool += PadCount(*layer);
    s.accelerator_bad = accelerator_bad_;
    s.layers = static_cast<int>(layers_.size());
    return s;
  }

  std::string LayerTable() const override {
    std::ostringstream out;
    out << "layer                          in          out         K      act  act_scale    peak/limit\n";
    for (const auto& l : layers_) {
      const LinearSpec& s = l->spec;
      std::ostringstream in, o;
      in << s.in_channels << "x" << s.in_h << "x" << s.in_w;
      o << s.out_channels << "x" << s.out_h << "x" << s.out_w;
      char line[256];
      std::snprintf(line, sizeof(line), "%-30s %-11s %-11s %-6lld %-4s %-12.5g %.3f\n", l->name.c_str(),
                    in.str().c_str(), o.str().c_str(),
                    static_cast<long long>(s.in_channels / s.groups * s.kernel_h * s.kernel_w),
                    l->activation_type == ActivationType::kU8 ? "u8" : "s8", l->activation_scale,
                    static_cast<double>(l->accumulator_peak) / kAccumulatorLimit);
      out << line;
    }
    return out.str();
  }

 private:
  // One run of the wrapped model, with the pad refiller paused and the run counted.
  template <typename RunFn>
  Result<std::vector<Tensor>> Counted(int64_t images, RunFn run) {
    {
      std::lock_guard lock(refill_mutex_);
      running_ = true;
    }
    const auto start = Clock::now();
    Result<std::vector<Tensor>> result = run();
    {
      std::lock_guard lock(refill_mutex_);
      running_ = false;
      std::lock_guard stats_lock(stats_mutex_);
      stats_.run_seconds += SecondsSince(start);
      ++stats_.batches;
      stats_.images += images;
      published_ = stats_;
    }
    refill_cv_.notify_all();
    return result;
  }

  // x -> 8-bit integers (the bytes ExactLinear reads) and their field form.
  void Quantize(const Layer& layer, std::span<const float> x) {
    quantized_.resize(x.size());
    field_input_.resize(x.size());
    const float inverse = 1.f / layer.activation_scale;
    if (layer.activation_type == ActivationType::kU8) {
      for (size_t i = 0; i < x.size(); ++i) {
        const float q = std::clamp(std::nearbyint(x[i] * inverse), 0.f, 255.f);
        quantized_[i] = static_cast<std::byte>(static_cast<uint8_t>(q));
        field_input_[i] = static_cast<uint32_t>(q);
      }
    } else {
      for (size_t i = 0; i < x.size(); ++i) {
        const float q = std::clamp(std::nearbyint(x[i] * inverse), -127.f, 127.f);
        quantized_[i] = static_cast<std::byte>(static_cast<int8_t>(q));
        field_input_[i] = FieldFromSigned(static_cast<int64_t>(q));
      }
    }
  }

  // The layer inside the enclave: exact int32 accumulators, read as the
  // field would (so every mode gives the same bits), into `acc`.
  Status ComputeInside(Layer& layer, int64_t batch, std::vector<int32_t>& acc) {
    auto& exact = layer.exact[batch];
    if (!exact) {
      PPML_ASSIGN_OR_RETURN(exact, ExactLinear::Create(layer.spec, layer.activation_type, batch));
    }
    acc.resize(static_cast<size_t>(batch * layer.spec.output_size()));
    PPML_RETURN_IF_ERROR(exact->Run(quantized_, acc).WithContext(layer.name));
    int64_t peak = layer.accumulator_peak;
    for (int32_t& a : acc) {
      peak = std::max<int64_t>(peak, std::abs(int64_t{a}));
      a = Centered(FieldFromSigned(a));
    }
    layer.accumulator_peak = peak;
    return Status::Ok();
  }

  // The layer on the accelerator; false when it must be computed inside
  // (no pads, a failed check, an accelerator error).
  Result<bool> Outsource(Layer& layer, int64_t batch) {
    // Before blinding: a layer that runs inside must not use up pads.
    if (!client_->connected() && !Reconnect()) return false;
    const LinearSpec& s = layer.spec;
    std::vector<std::vector<uint32_t>> unblind;  // R W per image (private)
    std::span<const uint32_t> sent = field_input_;
    if (mode_ == OutsourceMode::kPrivate) {
      PPML_ASSIGN_OR_RETURN(bool blinded, Blind(layer, batch, unblind));
      if (!blinded) {
        ++stats_.pad_fallbacks;
        return false;
      }
      sent = blinded_;
    }
    const auto start = Clock::now();
    Result<std::vector<uint32_t>> reply = client_->Compute(layer.accelerator_handle, batch, sent);
    stats_.accelerator_wait_seconds += SecondsSince(start);
    if (!reply.ok() || reply->size() != static_cast<size_t>(batch * s.output_size())) {
      ++stats_.accelerator_errors;
      Log(LogLevel::kWarn, "accel_error",
          {{"layer", layer.name}, {"error", reply.ok() ? "reply of the wrong size" : reply.status().ToString()}});
      // An accelerator that went away (stopped, restarted, unreachable) is an
      // outage, not a wrong answer: its layers run inside until it is back.
      const StatusCode code = reply.ok() ? StatusCode::kDataLoss : reply.status().code();
      if (code != StatusCode::kUnavailable && code != StatusCode::kDeadlineExceeded) MarkFailure();
      return false;
    }
    std::vector<uint32_t>& z = *reply;
    if (mode_ == OutsourceMode::kPrivate) {
      const size_t per_image = static_cast<size_t>(s.output_size());
      for (int64_t b = 0; b < batch; ++b) {
        uint32_t* zb = z.data() + b * per_image;
        for (size_t i = 0; i < per_image; ++i) zb[i] = FieldSub(zb[i], unblind[b][i]);
      }
    }
    if (options_.audit_replies) PPML_RETURN_IF_ERROR(Audit(layer, batch, z));
    stats_.check_macs += layer.check->macs(batch);
    const Status verdict = layer.check->Verify(field_input_, z, batch);
    if (!verdict.ok()) {
      ++stats_.failed_checks;
      Log(LogLevel::kWarn, "accel_check_failed",
          {{"layer", layer.name}, {"batch", std::to_string(batch)}, {"failures", std::to_string(stats_.failed_checks)}});
      MarkFailure();
      return false;
    }
    accumulators_.resize(z.size());
    for (size_t i = 0; i < z.size(); ++i) accumulators_[i] = Centered(z[i]);
    ++stats_.outsourced_calls;
    return true;
  }

  void MarkFailure() {
    ++failures_;
    if (options_.max_failures > 0 && failures_ >= options_.max_failures && !accelerator_bad_) {
      accelerator_bad_ = true;
      Log(LogLevel::kError, "accel_marked_bad",
          {{"failures", std::to_string(failures_)}, {"fallback", "every layer runs inside the enclave"}});
    }
  }

  // Counts a wrong reply against the truth computed inside.
  Status Audit(Layer& layer, int64_t batch, std::span<const uint32_t> z) {
    std::vector<int32_t> truth;
    PPML_RETURN_IF_ERROR(ComputeInside(layer, batch, truth));
    for (size_t i = 0; i < z.size(); ++i) {
      if (z[i] != FieldFromSigned(truth[i])) {
        ++stats_.corrupted_replies;
        break;
      }
    }
    return Status::Ok();
  }

  // X + R into blinded_, R W per image into `unblind`; false when the pool
  // lacks pads for the batch (the caller computes inside: never unblinded).
  Result<bool> Blind(Layer& layer, int64_t batch, std::vector<std::vector<uint32_t>>& unblind) {
    std::vector<SealedPad> taken;
    {
      std::lock_guard lock(layer.pads_mutex);
      if (static_cast<int64_t>(layer.pads.size()) < batch) return false;
      for (int64_t b = 0; b < batch; ++b) {
        taken.push_back(std::move(layer.pads.front()));
        layer.pads.pop_front();
      }
    }
    refill_cv_.notify_all();
    stats_.pads_used += batch;
    const LinearSpec& s = layer.spec;
    const size_t in_size = static_cast<size_t>(s.input_size());
    blinded_.resize(static_cast<size_t>(batch) * in_size);
    std::vector<uint32_t> r(in_size);
    for (int64_t b = 0; b < batch; ++b) {
      PPML_ASSIGN_OR_RETURN(FieldPrg prg, FieldPrg::Create(Seed(pad_seed_), PadStream(layer.index, taken[b].counter)));
      PPML_RETURN_IF_ERROR(prg.Fill(r));
      const uint32_t* x = field_input_.data() + b * in_size;
      uint32_t* out = blinded_.data() + b * in_size;
      for (size_t i = 0; i < in_size; ++i) out[i] = FieldAdd(x[i], r[i]);
      Result<crypto::Bytes> rw = crypto::AesGcmOpen(pad_key_, PadNonce(layer.index, taken[b].counter),
                                                    AsBytes(layer.name), taken[b].sealed);
      if (!rw.ok()) return Status::DataLoss(layer.name + ": a stored blinding pad failed authentication");
      std::vector<uint32_t> values(rw->size() / sizeof(uint32_t));
      std::memcpy(values.data(), rw->data(), values.size() * sizeof(uint32_t));
      unblind.push_back(std::move(values));
    }
    return true;
  }

  static crypto::ByteSpan AsBytes(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
  }

  size_t PadCount(Layer& layer) const {
    std::lock_guard lock(layer.pads_mutex);
    return layer.pads.size();
  }

  // One pad for one image: R from the PRG, R W computed inside, sealed.
  Status MakePad(Layer& layer) {
    const auto start = Clock::now();
    uint64_t counter;
    {
      std::lock_guard lock(layer.pads_mutex);
      counter = layer.next_pad++;
    }
    std::lock_guard make_lock(pad_make_mutex_);
    if (!layer.pad_linear) {
      PPML_ASSIGN_OR_RETURN(layer.pad_linear, FieldLinear::Create(layer.spec, 1));
    }
    std::vector<uint32_t> r(static_cast<size_t>(layer.spec.input_size()));
    std::vector<uint32_t> rw(static_cast<size_t>(layer.spec.output_size()));
    PPML_ASSIGN_OR_RETURN(FieldPrg prg, FieldPrg::Create(Seed(pad_seed_), PadStream(layer.index, counter)));
    PPML_RETURN_IF_ERROR(prg.Fill(r));
    PPML_RETURN_IF_ERROR(layer.pad_linear->Run(r, rw));
    crypto::ByteSpan plain(reinterpret_cast<const uint8_t*>(rw.data()), rw.size() * sizeof(uint32_t));
    PPML_ASSIGN_OR_RETURN(crypto::Bytes sealed,
                          crypto::AesGcmSeal(pad_key_, PadNonce(layer.index, counter), AsBytes(layer.name), plain));
    {
      std::lock_guard lock(layer.pads_mutex);
      layer.pads.push_back({counter, std::move(sealed)});
    }
    ++pads_generated_;
    pad_generation_ns_ += static_cast<int64_t>(SecondsSince(start) * 1e9);
    return Status::Ok();
  }

  // Background refill: one pad at a time for the emptiest layer, only while
  // no batch runs, so precompute takes idle time rather than latency.
  void RefillLoop() {
    std::unique_lock lock(refill_mutex_);
    while (!stop_) {
      Layer* emptiest = nullptr;
      size_t fewest = static_cast<size_t>(options_.pad_pool_images);
      for (const auto& layer : layers_) {
        const size_t n = PadCount(*layer);
        if (n < fewest) {
          fewest = n;
          emptiest = layer.get();
        }
      }
      if (running_ || !emptiest) {
        refill_cv_.wait_for(lock, std::chrono::milliseconds(50));
        continue;
      }
      lock.unlock();
      const Status made = MakePad(*emptiest);
      lock.lock();
      if (!made.ok()) {
        Log(LogLevel::kError, "pad_refill_failed", {{"layer", emptiest->name}, {"error", made.ToString()}});
        refill_cv_.wait_for(lock, std::chrono::seconds(1));
      }
    }
  }

  // Dequantize accumulators_ into the float output with the bias.
  void Dequantize(const Layer& layer, int64_t batch, std::span<float> out) const {
    const LinearSpec& s = layer.spec;
    const int64_t pixels = s.out_h * s.out_w;
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t c = 0; c < s.out_channels; ++c) {
        const float scale = layer.activation_scale * layer.weight_scales[c];
        const float bias = layer.bias[c];
        const size_t base = static_cast<size_t>((b * s.out_channels + c) * pixels);
        for (int64_t i = 0; i < pixels; ++i) out[base + i] = static_cast<float>(accumulators_[base + i]) * scale + bias;
      }
    }
  }

  // Calibration run of one layer: record the input's range, compute in FP32.
  Status Observe(Layer& layer, int64_t batch, std::span<const float> input, std::span<float> output) {
    for (float v : input) {
      layer.input_min = std::min(layer.input_min, v);
      layer.input_max_abs = std::max(layer.input_max_abs, std::fabs(v));
    }
    layer.calibrated = true;
    auto it = layer.float_linear.find(batch);
    if (it == layer.float_linear.end()) {
      PPML_ASSIGN_OR_RETURN(FloatLinear f, FloatLinear::Create(layer.spec, layer.float_weights, layer.bias, batch));
      it = layer.float_linear.emplace(batch, std::move(f)).first;
    }
    return it->second.Run(input, output).WithContext(layer.name);
  }

  // Runs the samples through the FP32 model (the delegate computing each
  // layer in FP32) and sets each layer's activation type and scale from the
  // range its input showed: u8 when never negative, s8 otherwise.
  Status Calibrate(const Tensor& samples) {
    const int64_t count = samples.dim(0);
    constexpr int64_t kBatch = 16;
    calibrating_ = true;
    Status status;
    for (int64_t first = 0; first < count && status.ok(); first += kBatch) {
      const Tensor batch = samples.CopyRows(first, std::min(kBatch, count - first));
      Result<std::vector<Tensor>> out = model_->Run(std::span<const Tensor>(&batch, 1));
      if (!out.ok()) status = out.status();
    }
    calibrating_ = false;
    PPML_RETURN_IF_ERROR(status);
    for (const auto& layer : layers_) {
      if (!layer->calibrated) return Status::Internal(layer->name + ": not reached by calibration");
      const int8::ActivationQuantization q = int8::ActivationParams(layer->input_max_abs, layer->input_min >= 0);
      layer->activation_scale = q.scale;
      layer->activation_type = q.type == DataType::kU8 ? ActivationType::kU8 : ActivationType::kS8;
      layer->float_weights = {};
      layer->float_linear.clear();
    }
    return Status::Ok();
  }

  // Runs calibration samples inside and coarsens the activation scale of any
  // layer whose accumulators come near the field's bound.
  Status FitAccumulators(const Tensor& samples) {
    const Tensor batch = samples.CopyRows(0, std::min<int64_t>(samples.dim(0), 16));
    const OutsourceMode mode = mode_;
    mode_ = OutsourceMode::kOff;
    Status status;
    for (int round = 0; round < 4; ++round) {
      for (const auto& layer : layers_) layer->accumulator_peak = 0;
      Result<std::vector<Tensor>> out = model_->Run(std::span<const Tensor>(&batch, 1));
      if (!out.ok()) {
        status = out.status();
        break;
      }
      bool changed = false;
      for (const auto& layer : layers_) {
        if (layer->accumulator_peak <= kAccumulatorLimit) continue;
        const double factor = std::exp2(std::ceil(std::log2(double(layer->accumulator_peak) / kAccumulatorLimit)));
        layer->activation_scale *= static_cast<float>(factor);
        Log(LogLevel::kInfo, "accel_scale_coarsened",
            {{"layer", layer->name}, {"peak", std::to_string(layer->accumulator_peak)},
             {"factor", std::to_string(factor)}});
        changed = true;
      }
      if (!changed) break;
    }
    mode_ = mode;
    return status;
  }

  Status Register(Layer& layer) {
    if (!client_) return Status::Ok();
    PPML_ASSIGN_OR_RETURN(layer.accelerator_handle, client_->Register(layer.spec));
    return Status::Ok();
  }

  // A new connection once the last one closed, tried at most once a second
  // (the layers run inside meanwhile), with every layer registered again: a
  // restarted ppml-accel knows none of them.
  bool Reconnect() {
    const auto now = Clock::now();
    if (now < next_reconnect_) return false;
    next_reconnect_ = now + kReconnectInterval;
    AccelClientOptions options;
    options.connect_timeout_ms = kReconnectTimeoutMs;  // a batch waits for this
    Result<std::unique_ptr<AccelClient>> client = AccelClient::Connect(options_.accelerator, options);
    if (!client.ok()) return false;
    client_ = std::move(client).value();
    for (const auto& layer : layers_) {
      if (Status s = Register(*layer); !s.ok()) {
        Log(LogLevel::kWarn, "accel_error", {{"layer", layer->name}, {"error", s.ToString()}});
        return false;
      }
    }
    ++stats_.reconnects;
    Log(LogLevel::kInfo, "accel_reconnected", {{"accelerator", options_.accelerator}});
    return true;
  }

  static constexpr auto kReconnectInterval = std::chrono::seconds(1);
  static constexpr int kReconnectTimeoutMs = 500;

  OutsourceOptions options_;
  OutsourceMode mode_;
  crypto::Bytes check_seed_, pad_seed_, pad_key_;
  bool calibrating_ = false;
  std::unique_ptr<AccelClient> client_;
  std::unique_ptr<engine::Model> model_;
  std::vector<std::unique_ptr<Layer>> layers_;
  // Per-layer scratch, reused across calls.
  std::vector<std::byte> quantized_;
  std::vector<uint32_t> field_input_, blinded_;
  std::vector<int32_t> accumulators_;
  int failures_ = 0;
  bool accelerator_bad_ = false;
  Clock::time_point next_reconnect_{};
  OutsourceStats stats_;  // updated by the running batch only
  mutable std::mutex stats_mutex_;
  OutsourceStats published_;  // stats_ as of the last finished batch
  std::atomic<int64_t> pads_generated_{0};
  std::atomic<int64_t> pad_generation_ns_{0};
  std::mutex pad_make_mutex_;
  std::mutex refill_mutex_;
  std::condition_variable refill_cv_;
  bool running_ = false;
  bool stop_ = false;
  std::thread refill_thread_;
};

}  // namespace

Result<std::unique_ptr<OutsourcedModel>> OutsourcedModel::Load(std::string_view onnx_bytes, const std::string& name,
                                                               const OutsourceOptions& options) {
  if (options.mode != OutsourceMode::kOff) {
    if (options.confidential) {
      return Status::PermissionDenied(name + ": the model is confidential; outsourcing (mode " +
                                      std::string(OutsourceModeName(options.mode)) +
                                      ") would reveal its weights to the accelerator: use outsource: off");
    }
    if (options.accelerator.empty()) {
      return Status::InvalidArgument(name + ": outsource mode " + std::string(OutsourceModeName(options.mode)) +
                                     " needs an accelerator address");
    }
  }
  if (options.freivalds_repetitions < 1) return Status::InvalidArgument("freivalds_repetitions must be at least 1");
  if (options.pad_pool_images < 0) return Status::InvalidArgument("pad_pool_images must not be negative");
  auto model = std::make_unique<FieldModel>(options);
  PPML_RETURN_IF_ERROR(model->Init(onnx_bytes, name));
  return std::unique_ptr<OutsourcedModel>(std::move(model));
}

}  // namespace ppml::accel
