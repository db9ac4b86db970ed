// MobileNetV2's expanding 1x1 convolution and the depthwise 3x3 after it
// (each with ReLU6), in FP32 and INT8, run two ways with oneDNN: as two
// convolutions, and fused (the depthwise one as a post-op of the 1x1, so the
// six-times-wider tensor between them is never written out). Says, per block
// shape, what INT8 gains over FP32 and what the fusion would gain: the
// evidence for how MobileNetV2's INT8 engine is built (docs/BENCHMARKS.md).
//
//   ppml-bench-dw-fusion [--threads 2] [--batch 16] [--seconds 1]
// Last stdout line: {"isa":..., "threads":..., "blocks":[{"name", "fp32_ms",
// "fp32_fused_ms", "int8_ms", "int8_fused_ms"}, ...]} (a fused time is -1
// where oneDNN has no fused kernel).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "bench/bench_flags.h"
#include "engine/engine.h"

namespace {

using dnnl::memory;
using Clock = std::chrono::steady_clock;

struct Block {
  const char* name;
  int64_t in_c, mid_c, hw, stride;  // 1x1: in_c -> mid_c at hw x hw; depthwise 3x3 with `stride`
};

// The expand + depthwise pairs of torchvision's mobilenet_v2, one per shape.
const Block kBlocks[] = {
    {"112x112_16_96_s2", 16, 96, 112, 2}, {"56x56_24_144_s1", 24, 144, 56, 1}, {"56x56_24_144_s2", 24, 144, 56, 2},
    {"28x28_32_192_s1", 32, 192, 28, 1},  {"14x14_64_384_s1", 64, 384, 14, 1}, {"14x14_96_576_s1", 96, 576, 14, 1},
    {"7x7_160_960_s1", 160, 960, 7, 1},
};

// Milliseconds per call of `run`, after warming up, over at least `seconds`.
double TimeMs(const std::function<void()>& run, dnnl::stream& stream, double seconds) {
  for (int i = 0; i < 3; ++i) run();
  stream.wait();
  const auto start = Clock::now();
  int calls = 0;
  while (std::chrono::duration<double>(Clock::now() - start).count() < seconds) {
    run();
    ++calls;
  }
  stream.wait();
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count() / calls;
}

memory::desc Any(const memory::dims& dims, memory::data_type type) {
  return memory::desc(dims, type, memory::format_tag::any);
}

// ReLU6 after a convolution; INT8 requantizes with one output scale.
dnnl::primitive_attr Attr(const dnnl::post_ops& ops, bool int8) {
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  if (int8) attr.set_output_scales(0, {0.05f});
  return attr;
}

dnnl::post_ops Relu6() {
  dnnl::post_ops ops;
  ops.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, 0.f, 6.f);
  return ops;
}

struct Timing {
  double separate_ms = -1, fused_ms = -1;
};

Timing Measure(const Block& b, bool int8, int64_t batch, double seconds, const dnnl::engine& eng) {
  using dt = memory::data_type;
  const dt act = int8 ? dt::u8 : dt::f32, weights = int8 ? dt::s8 : dt::f32;
  const int64_t out_hw = (b.hw + 2 - 3) / b.stride + 1;
  const memory::desc bias_1x1({b.mid_c}, dt::f32, memory::format_tag::a);
  const dnnl::convolution_forward::desc expand(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, Any({batch, b.in_c, b.hw, b.hw}, act),
      Any({b.mid_c, b.in_c, 1, 1}, weights), bias_1x1, Any({batch, b.mid_c, b.hw, b.hw}, act), {1, 1}, {0, 0}, {0, 0});
  dnnl::stream stream(eng);
  Timing t;

  const dnnl::convolution_forward::primitive_desc expand_pd(expand, Attr(Relu6(), int8), eng);
  const dnnl::convolution_forward::desc depthwise(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, expand_pd.dst_desc(),
      Any({b.mid_c, 1, 1, 3, 3}, weights), bias_1x1, Any({batch, b.mid_c, out_hw, out_hw}, act), {b.stride, b.stride},
      {1, 1}, {1, 1});
  const dnnl::convolution_forward::primitive_desc depthwise_pd(depthwise, Attr(Relu6(), int8), eng);
  memory src(expand_pd.src_desc(), eng), w1(expand_pd.weights_desc(), eng), b1(expand_pd.bias_desc(), eng),
      mid(expand_pd.dst_desc(), eng), w2(depthwise_pd.weights_desc(), eng), b2(depthwise_pd.bias_desc(), eng),
      dst(depthwise_pd.dst_desc(), eng);
  dnnl::convolution_forward first(expand_pd), second(depthwise_pd);
  t.separate_ms = TimeMs(
      [&] {
        first.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w1}, {DNNL_ARG_BIAS, b1}, {DNNL_ARG_DST, mid}});
        second.execute(stream, {{DNNL_ARG_SRC, mid}, {DNNL_ARG_WEIGHTS, w2}, {DNNL_ARG_BIAS, b2}, {DNNL_ARG_DST, dst}});
      },
      stream, seconds);

  dnnl::post_ops fused = Relu6();
  const std::vector<float> dw_scales = int8 ? std::vector<float>{0.05f} : std::vector<float>{};
  if (b.stride == 1) {
    fused.append_dw_k3s1p1(weights, dt::f32, act, 0, dw_scales);
  } else {
    fused.append_dw_k3s2p1(weights, dt::f32, act, 0, dw_scales);
  }
  fused.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, 0.f, 6.f);
  try {
    const dnnl::convolution_forward::primitive_desc fused_pd(expand, Attr(fused, int8), eng);
    const int dw = DNNL_ARG_ATTR_POST_OP_DW;
    memory fsrc(fused_pd.src_desc(), eng), fw(fused_pd.weights_desc(), eng), fb(fused_pd.bias_desc(), eng),
        fdst(fused_pd.dst_desc(), eng), dww(fused_pd.query_md(dnnl::query::exec_arg_md, dw | DNNL_ARG_WEIGHTS), eng),
        dwb(fused_pd.query_md(dnnl::query::exec_arg_md, dw | DNNL_ARG_BIAS), eng);
    dnnl::convolution_forward conv(fused_pd);
    t.fused_ms = TimeMs(
        [&] {
          conv.execute(stream, {{DNNL_ARG_SRC, fsrc},
                                {DNNL_ARG_WEIGHTS, fw},
                                {DNNL_ARG_BIAS, fb},
                                {DNNL_ARG_DST, fdst},
                                {dw | DNNL_ARG_WEIGHTS, dww},
                                {dw | DNNL_ARG_BIAS, dwb}});
        },
        stream, seconds);
  } catch (const dnnl::error&) {
    // No fused kernel for this shape and ISA: reported as -1.
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  ppml::bench::BenchFlags flags;
  if (!ppml::bench::ParseBenchFlags(argc, argv, "ppml-bench-dw-fusion", &flags)) return 2;
  omp_set_num_threads(flags.threads);
  const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  const std::string isa = ppml::engine::EffectiveCpuIsa();
  std::fprintf(stderr, "expand 1x1 + depthwise 3x3 (ReLU6), ms per batch: isa=%s threads=%d batch=%lld\n",
               isa.c_str(), flags.threads, static_cast<long long>(flags.batch));
  std::fprintf(stderr, "  %-18s %9s %9s %9s %9s %10s\n", "block", "fp32", "fp32+dw", "int8", "int8+dw", "int8/fp32");
  std::string blocks = "[";
  for (const Block& b : kBlocks) {
    const Timing fp32 = Measure(b, false, flags.batch, flags.seconds, eng);
    const Timing int8 = Measure(b, true, flags.batch, flags.seconds, eng);
    std::fprintf(stderr, "  %-18s %9.3f %9.3f %9.3f %9.3f %9.2fx\n", b.name, fp32.separate_ms, fp32.fused_ms,
                 int8.separate_ms, int8.fused_ms, fp32.separate_ms / int8.separate_ms);
    if (blocks.size() > 1) blocks += ",";
    char line[256];
    std::snprintf(line, sizeof(line),
                  "{\"name\":\"%s\",\"fp32_ms\":%.4f,\"fp32_fused_ms\":%.4f,\"int8_ms\":%.4f,\"int8_fused_ms\":%.4f}",
                  b.name, fp32.separate_ms, fp32.fused_ms, int8.separate_ms, int8.fused_ms);
    blocks += line;
  }
  blocks += "]";
  std::printf("{\"isa\":\"%s\",\"threads\":%d,\"batch\":%lld,\"blocks\":%s}\n", isa.c_str(), flags.threads,
              static_cast<long long>(flags.batch), blocks.c_str());
  return 0;
}
