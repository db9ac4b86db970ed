// Exact (X W) mod p on this CPU: which way is fastest for the accelerator,
// and what the enclave's Freivalds check costs beside it.
//
// For dense layers it times the three ways FieldLinear can run
// (accel/field_kernels.h): 8-bit limbs through oneDNN's INT8 inner product
// (gemm), the same limbs through oneDNN's INT8 1x1 convolution, and an exact
// double-precision GEMM (products < 2^30, sums < 2^53). For convolutions it
// times the limbs (the only way) against ExactLinear's single INT8 pass.
// Every figure is field multiply-accumulates per second (one MAC of X W,
// however many limb MACs it takes), the median of the timed runs.
//
// With --cuda (a build with CUDA) it also times ppml-accel's CUDA backend,
// both exact kernels (INT8 digits, FP64), host-to-device copies included,
// on the same layers and on larger ones (ResNet/VGG sizes at batch 64).
//
//   ppml-bench-accel-field [--threads 2] [--seconds 1] [--cuda] [--json]
// With --json the last stdout line is {"isa":..., "threads":..., "precision":"field", "layers":[...]}.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "accel/field.h"
#include "accel/field_kernels.h"
#include "common/json_line.h"
#include "engine/engine.h"
#ifdef PPML_WITH_CUDA
#include "accel/cuda_backend.h"
#endif

namespace {

using namespace ppml::accel;
using Clock = std::chrono::steady_clock;

struct Shape {
  const char* name;
  int64_t in_c, hw, out_c, kernel, batch;
};

const Shape kDense[] = {
    {"fc_512x10_b64", 512, 1, 10, 1, 64},
    {"fc_1024x1000_b16", 1024, 1, 1000, 1, 16},
    {"fc_2048x1000_b64", 2048, 1, 1000, 1, 64},
    {"fc_4096x4096_b16", 4096, 1, 4096, 1, 16},
};
const Shape kConv[] = {
    {"conv3x3_64_56_b4", 64, 56, 64, 3, 4},
    {"conv3x3_256_14_b16", 256, 14, 256, 3, 16},
    {"conv1x1_512_7_2048_b16", 512, 7, 2048, 1, 16},
};
// Only for the GPU: the CPU would take minutes per call.
const Shape kGpuOnly[] = {
    {"conv3x3_64_56_b64", 64, 56, 64, 3, 64},
    {"conv3x3_128_112_b16", 128, 112, 128, 3, 16},
    {"conv3x3_256_14_b64", 256, 14, 256, 3, 64},
    {"conv1x1_512_7_2048_b64", 512, 7, 2048, 1, 64},
    {"fc_25088x4096_b64", 25088, 1, 4096, 1, 64},
};

LinearSpec SpecOf(const Shape& s, std::mt19937_64& rng) {
  LinearSpec spec;
  spec.in_channels = s.in_c, spec.in_h = spec.in_w = s.hw, spec.out_channels = s.out_c;
  spec.kernel_h = spec.kernel_w = s.kernel;
  spec.pad_top = spec.pad_left = spec.pad_bottom = spec.pad_right = s.kernel / 2;
  spec.out_h = spec.out_w = s.hw;
  spec.weights.resize(static_cast<size_t>(s.out_c * s.in_c * s.kernel * s.kernel));
  std::uniform_int_distribution<int> w(-kMaxWeight, kMaxWeight);
  for (auto& v : spec.weights) v = static_cast<int8_t>(w(rng));
  return spec;
}

// Median seconds per call of `run` over about `seconds` (at least 3 calls).
template <typename F>
double MedianSeconds(F&& run, double seconds) {
  run();  // warm up: first-touch, JIT
  std::vector<double> times;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (times.size() < 3 || (Clock::now() < end && times.size() < 1000)) {
    const auto start = Clock::now();
    run();
    times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Row {
  std::string layer, method;
  double gmacs;  // 1e9 field MACs per second
  double ms;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  double seconds = 1;
  bool json = false, cuda = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--json")) json = true;
    else if (!std::strcmp(argv[i], "--cuda")) cuda = true;
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--seconds S] [--cuda] [--json]\n", argv[0]);
      return 2;
    }
  }
#ifndef PPML_WITH_CUDA
  if (cuda) {
    std::fprintf(stderr, "%s: --cuda: this build has no CUDA backend (CMake found no CUDA compiler)\n", argv[0]);
    return 2;
  }
#endif
  ppml::engine::SetThreads(threads);
  std::mt19937_64 rng(1);
  std::vector<Row> rows;
  const std::vector<std::byte> seed(32, std::byte{1});

  auto time_field = [&](const Shape& s, const LinearSpec& spec, const char* method, auto create) {
    auto linear = create(spec, s.batch);
    if (!linear.ok()) {
      std::fprintf(stderr, "%s %s: %s\n", s.name, method, linear.status().ToString().c_str());
      return;
    }
    std::vector<uint32_t> x(static_cast<size_t>(s.batch * spec.input_size()));
    std::uniform_int_distribution<uint32_t> d(0, kPrime - 1);
    for (auto& v : x) v = d(rng);
    std::vector<uint32_t> out(static_cast<size_t>(s.batch * spec.output_size()));
    const double t = MedianSeconds([&] { (void)(*linear)->Run(x, out); }, seconds);
    rows.push_back({s.name, method, s.batch * spec.macs_per_image() / t / 1e9, t * 1e3});
  };
  auto time_check = [&](const Shape& s, const LinearSpec& spec) {
    auto check = FreivaldsCheck::Create(spec, seed);
    auto linear = CreateLimbFieldLinear(spec, s.batch);
    if (!check.ok() || !linear.ok()) return;
    std::vector<uint32_t> x(static_cast<size_t>(s.batch * spec.input_size()));
    std::uniform_int_distribution<uint32_t> d(0, kPrime - 1);
    for (auto& v : x) v = d(rng);
    std::vector<uint32_t> z(static_cast<size_t>(s.batch * spec.output_size()));
    (void)(*linear)->Run(x, z);
    omp_set_num_threads(1);  // the enclave checks on its own thread
    const double t = MedianSeconds([&] { (void)(*check)->Verify(x, z, s.batch); }, seconds);
    omp_set_num_threads(threads);
    rows.push_back({s.name, "freivalds_check_1thread", s.batch * spec.macs_per_image() / t / 1e9, t * 1e3});
  };

  for (const Shape& s : kDense) {
    const LinearSpec spec = SpecOf(s, rng);
    time_field(s, spec, "limbs_int8_inner_product",
               [](const LinearSpec& sp, int64_t b) { return CreateLimbFieldLinear(sp, b, Int8Kernel::kInnerProduct); });
    time_field(s, spec, "limbs_int8_conv1x1",
               [](const LinearSpec& sp, int64_t b) { return CreateLimbFieldLinear(sp, b, Int8Kernel::kConvolution); });
    time_field(s, spec, "double_gemm", [](const LinearSpec& sp, int64_t b) { return CreateDoubleDenseFieldLinear(sp, b); });
    time_check(s, spec);
  }
  for (const Shape& s : kConv) {
    const LinearSpec spec = SpecOf(s, rng);
    time_field(s, spec, "limbs_int8_conv",
               [](const LinearSpec& sp, int64_t b) { return CreateLimbFieldLinear(sp, b, Int8Kernel::kConvolution); });
    // The enclave's own exact u8 pass (mode off): one third of the limbs' work.
    auto exact = ExactLinear::Create(spec, ActivationType::kU8, s.batch);
    if (exact.ok()) {
      std::vector<std::byte> x(static_cast<size_t>(s.batch * spec.input_size()), std::byte{7});
      std::vector<int32_t> out(static_cast<size_t>(s.batch * spec.output_size()));
      const double t = MedianSeconds([&] { (void)(*exact)->Run(x, out); }, seconds);
      rows.push_back({s.name, "exact_u8_single_pass", s.batch * spec.macs_per_image() / t / 1e9, t * 1e3});
    }
    time_check(s, spec);
  }

  std::string gpu;
#ifdef PPML_WITH_CUDA
  for (CudaKernel kernel : {CudaKernel::kInt8Digits, CudaKernel::kFp64}) {
    if (!cuda) break;
    CudaBackendOptions options;
    options.kernel = kernel;
    auto backend = MakeCudaBackend(options);
    if (!backend.ok()) {
      std::fprintf(stderr, "--cuda: %s\n", backend.status().ToString().c_str());
      return 1;
    }
    const std::string name = (*backend)->name();  // "cuda-KERNEL (DEVICE)"
    gpu = name.substr(name.find('(') + 1, name.rfind(')') - name.find('(') - 1);
    const char* method = kernel == CudaKernel::kFp64 ? "cuda_fp64" : "cuda_int8_digits";
    std::vector<Shape> shapes(std::begin(kDense), std::end(kDense));
    shapes.insert(shapes.end(), std::begin(kConv), std::end(kConv));
    shapes.insert(shapes.end(), std::begin(kGpuOnly), std::end(kGpuOnly));
    for (const Shape& s : shapes) {
      std::mt19937_64 shape_rng(2);  // the same layer for both kernels
      const LinearSpec spec = SpecOf(s, shape_rng);
      const std::string digest = SpecDigest(spec);
      std::vector<uint32_t> x(static_cast<size_t>(s.batch * spec.input_size()));
      std::uniform_int_distribution<uint32_t> d(0, kPrime - 1);
      for (auto& v : x) v = d(rng);
      std::vector<uint32_t> out(static_cast<size_t>(s.batch * spec.output_size()));
      bool ok = true;
      const double t = MedianSeconds([&] { ok = ok && (*backend)->Compute(spec, digest, s.batch, x, out).ok(); }, seconds);
      if (!ok) {
        std::fprintf(stderr, "%s %s: the CUDA backend failed\n", s.name, method);
        return 1;
      }
      rows.push_back({s.name, method, s.batch * spec.macs_per_image() / t / 1e9, t * 1e3});
    }
  }
#endif

  const std::string isa = ppml::engine::EffectiveCpuIsa();
  if (!gpu.empty()) std::printf("gpu=%s\n", gpu.c_str());
  std::printf("isa=%s threads=%d\n%-26s %-28s %10s %10s\n", isa.c_str(), threads, "layer", "method", "GMAC/s", "ms");
  for (const Row& r : rows) std::printf("%-26s %-28s %10.2f %10.3f\n", r.layer.c_str(), r.method.c_str(), r.gmacs, r.ms);
  if (json) {
    std::string layers = "[";
    for (size_t i = 0; i < rows.size(); ++i) {
      ppml::JsonLine row;
      row.Add("layer", rows[i].layer).Add("method", rows[i].method).Add("gmacs", rows[i].gmacs).Add("ms", rows[i].ms);
      if (i > 0) layers += ",";
      layers += row.str();
    }
    ppml::JsonLine out;
    out.Add("isa", isa).Add("threads", threads).Add("gpu", gpu).Add("precision", "field").AddRaw("layers", layers + "]");
    std::printf("%s\n", out.str().c_str());
  }
  return 0;
}
