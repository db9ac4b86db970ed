// The machine's FP32 convolution roofline: oneDNN convolutions shaped like
// ResNet-50's, run alone with the best layouts (weights reordered once,
// blocked activations), timed, and reported in GFLOP/s. The best of them is
// the ceiling an engine running the same convolutions can reach; the engine
// benchmark compares against it.
//
//   ppml-bench-conv [--threads 2] [--batch 16] [--seconds 1]
// Last stdout line: {"isa":..., "threads":..., "roofline_gflops":..., "layers":[...]}.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "bench/bench_flags.h"
#include "engine/engine.h"

namespace {

using dnnl::memory;
using Clock = std::chrono::steady_clock;

struct ConvShape {
  const char* name;
  int64_t in_c, out_c, hw, kernel, stride;
};

// Representative ResNet-50 convolutions (3x3 and 1x1, every stage).
const ConvShape kShapes[] = {
    {"res2_3x3_64", 64, 64, 56, 3, 1},     {"res2_1x1_64_256", 64, 256, 56, 1, 1},
    {"res3_3x3_128", 128, 128, 28, 3, 1},  {"res3_1x1_512_128", 512, 128, 28, 1, 1},
    {"res4_3x3_256", 256, 256, 14, 3, 1},  {"res4_1x1_256_1024", 256, 1024, 14, 1, 1},
    {"res5_3x3_512", 512, 512, 7, 3, 1},   {"res5_1x1_512_2048", 512, 2048, 7, 1, 1},
};

double MeasureGflops(const ConvShape& s, int64_t batch, double seconds, const dnnl::engine& eng) {
  const int64_t pad = s.kernel / 2;
  const int64_t out_hw = (s.hw + 2 * pad - s.kernel) / s.stride + 1;
  const memory::dims src = {batch, s.in_c, s.hw, s.hw}, wei = {s.out_c, s.in_c, s.kernel, s.kernel},
                     bias = {s.out_c}, dst = {batch, s.out_c, out_hw, out_hw};
  auto any = [](const memory::dims& d) { return memory::desc(d, memory::data_type::f32, memory::format_tag::any); };
  dnnl::post_ops ops;
  ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, any(src),
                                    any(wei), memory::desc(bias, memory::data_type::f32, memory::format_tag::a),
                                    any(dst), {s.stride, s.stride}, {pad, pad}, {pad, pad});
  dnnl::convolution_forward::primitive_desc pd(d, attr, eng);
  memory src_m(pd.src_desc(), eng), wei_m(pd.weights_desc(), eng), bias_m(pd.bias_desc(), eng),
      dst_m(pd.dst_desc(), eng);
  for (memory* m : {&src_m, &wei_m, &bias_m}) {
    float* p = static_cast<float*>(m->get_data_handle());
    for (size_t i = 0; i < m->get_desc().get_size() / sizeof(float); ++i) p[i] = static_cast<float>(i % 13) * 0.01f;
  }
  dnnl::convolution_forward conv(pd);
  dnnl::stream stream(eng);
  auto run = [&] {
    conv.execute(stream, {{DNNL_ARG_SRC, src_m}, {DNNL_ARG_WEIGHTS, wei_m}, {DNNL_ARG_BIAS, bias_m},
                          {DNNL_ARG_DST, dst_m}});
    stream.wait();
  };
  run();  // warm-up: JIT, caches
  const double flops = 2.0 * batch * s.out_c * out_hw * out_hw * s.in_c * s.kernel * s.kernel;
  std::vector<double> rates;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end || rates.size() < 3) {
    const auto t0 = Clock::now();
    run();
    rates.push_back(flops / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];  // median: robust to a noisy neighbour
}

}  // namespace

int main(int argc, char** argv) {
  ppml::bench::BenchFlags flags;
  if (!ppml::bench::ParseBenchFlags(argc, argv, "ppml-bench-conv", &flags)) return 2;
  const int threads = flags.threads;
  const int64_t batch = flags.batch;
  const double seconds = flags.seconds;
  omp_set_num_threads(threads);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  const std::string isa = ppml::engine::EffectiveCpuIsa();
  std::fprintf(stderr, "conv roofline: isa=%s threads=%d batch=%lld\n", isa.c_str(), threads,
               static_cast<long long>(batch));
  double best = 0;
  std::string layers = "[";
  for (const ConvShape& s : kShapes) {
    const double g = MeasureGflops(s, batch, seconds, eng);
    std::fprintf(stderr, "  %-20s %8.1f GFLOP/s\n", s.name, g);
    best = std::max(best, g);
    if (layers.size() > 1) layers += ",";
    layers += "{\"name\":\"" + std::string(s.name) + "\",\"gflops\":" + std::to_string(g) + "}";
  }
  layers += "]";
  std::printf("{\"isa\":\"%s\",\"threads\":%d,\"batch\":%lld,\"precision\":\"fp32\",\"roofline_gflops\":%.1f,"
              "\"layers\":%s}\n",
              isa.c_str(), threads, static_cast<long long>(batch), best, layers.c_str());
  return 0;
}
