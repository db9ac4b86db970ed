// The enclave side of verified outsourcing (Slalom, DESIGN.md): a model whose
// linear layers (2-D Conv, Gemm/MatMul by a constant) run in the field Z_p
// (field.h), either inside the enclave or on an untrusted accelerator
// (ppml-accel) whose every result is checked with Freivalds' algorithm.
//
//   Load:  quantize weights to 7 bits per output channel; run the calibration
//          samples through the model in FP32 (this delegate computing each
//          linear layer on oneDNN) for each layer's input range (min/max),
//          which sets its 8-bit activation type (u8 when never negative, s8
//          otherwise) and scale; check on the samples that every
//          accumulator stays well inside (-p/2, p/2) (coarsening a layer's
//          activation scale when not), and register the layers with the
//          accelerator.
//   Run:   the engine runs the non-linear ops; each linear layer comes here:
//            off        X W computed inside (one INT8 convolution)
//            integrity  X sent, Z = X W received, Freivalds-checked
//            private    X + R sent (R a one-time pad from a PRG seeded
//                       inside), R W (precomputed, sealed, kept outside)
//                       subtracted, then checked as above
//          then the result is dequantized and the bias added inside. A failed
//          check, an accelerator error or an empty pad pool recomputes the
//          layer inside: results are bit-identical in every mode, and the
//          accelerator never sees an unblinded activation in private mode.
//   Pads:  precomputed at load (pad_pool_images per layer) and refilled by a
//          background thread whenever no batch is running.
//
// Thread safety: Run is not reentrant (one batch at a time, as the enclave's
// ecall); stats() may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "engine/engine.h"

namespace ppml::accel {

enum class OutsourceMode { kOff, kIntegrity, kPrivate };
// "off", "integrity", "private"; anything else is InvalidArgument naming the value.
Result<OutsourceMode> ParseOutsourceMode(std::string_view text);
std::string_view OutsourceModeName(OutsourceMode mode);

struct OutsourceOptions {
  OutsourceMode mode = OutsourceMode::kOff;
  // ppml-accel address (unix:PATH, tcp:HOST:PORT or HOST:PORT); required
  // unless mode is off.
  std::string accelerator;
  // The model's owner marked it confidential: outsourcing would reveal its
  // weights to the accelerator, so any mode but off is PermissionDenied.
  bool confidential = false;
  // Calibration samples (an int8::LoadCalibrationSet spec: random:N,
  // fashion-mnist:train:N, a folder of .npy files).
  std::string calibration = "random:16";
  int threads = 0;               // oneDNN threads; 0 leaves the process default
  int freivalds_repetitions = 2; // soundness error <= (2/p)^repetitions
  // Failed checks after which the accelerator is no longer used (0: never
  // give up, for tamper tests).
  int max_failures = 3;
  // Private mode: blinding pads per layer (one per image) made at load, and
  // the level the background refill keeps.
  int64_t pad_pool_images = 32;
  bool background_refill = true;
  // Tests and tamper runs: recompute each accelerator reply inside and count
  // those that differ from the truth (OutsourceStats::corrupted_replies), so
  // detection can be measured against an independent count.
  bool audit_replies = false;
  engine::EngineOptions engine;  // linear_delegate is set by Load
};

struct OutsourceStats {
  int layers = 0;                   // linear layers the model outsources
  int64_t batches = 0;
  int64_t images = 0;
  int64_t linear_macs = 0;          // multiply-accumulates of the linear layers
  int64_t enclave_linear_macs = 0;  // of those, done inside (off, fallbacks)
  int64_t check_macs = 0;           // Freivalds work inside
  int64_t outsourced_calls = 0;     // layer results received from the accelerator
  int64_t local_calls = 0;          // layer results computed inside
  int64_t failed_checks = 0;        // replies Freivalds rejected (recomputed inside)
  int64_t accelerator_errors = 0;   // connection or protocol failures (recomputed inside)
  int64_t reconnects = 0;           // new connections after the accelerator went away
  int64_t corrupted_replies = 0;    // audit_replies: replies that were wrong
  int64_t pad_fallbacks = 0;        // private layer calls run inside for want of pads
  int64_t pads_generated = 0;
  int64_t pads_used = 0;
  int64_t pad_pool = 0;             // pads ready now, all layers together
  double pad_generation_seconds = 0;
  bool accelerator_bad = false;
  double run_seconds = 0;           // inside Run, in total
  double accelerator_wait_seconds = 0;  // of that, waiting for replies
  // What stays inside: (enclave_linear_macs + check_macs) / linear_macs.
  double enclave_mac_fraction() const;
};

// An engine::Model (inputs, outputs, Run, stats as the engine's) with the
// outsourcing state on top.
class OutsourcedModel : public engine::Model {
 public:
  static Result<std::unique_ptr<OutsourcedModel>> Load(std::string_view onnx_bytes, const std::string& name,
                                                       const OutsourceOptions& options);
  // Makes pads until every layer holds `per_layer` (private mode), blocking.
  virtual Status FillPads(int64_t per_layer) = 0;
  virtual OutsourceStats outsource_stats() const = 0;
  // One line per linear layer: name, geometry, activation type and scale,
  // calibrated accumulator peak against the field's bound.
  virtual std::string LayerTable() const = 0;
};

}  // namespace ppml::accel
