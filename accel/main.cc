// ppml-accel --listen ADDR [--backend cpu|cuda] [--threads N] [--metrics HOST:PORT]
//            [--cuda-device N --cuda-kernel int8|fp64]
//            [--tamper-rate R --tamper-kinds element,row,off-by-one,replay --tamper-seed N]
//
// The untrusted accelerator of verified outsourcing (docs/ACCEL.md): serves
// (X W) mod p for registered linear layers to enclaves over a Unix socket or
// TCP. Prints `ready: listen=ADDR` on stdout once it accepts connections (ADDR
// as bound: the real port when 0 was asked), logs key=value lines on stderr,
// exits 0 on SIGTERM or SIGINT after the requests in hand are answered.
// Exit 2: bad command line; 1: it could not start (address in use, metrics port).
#include <CLI/CLI.hpp>
#include <omp.h>

#include <iostream>

#include "accel/address.h"
#include "accel/server.h"
#ifdef PPML_WITH_CUDA
#include "accel/cuda_backend.h"
#endif
#include "common/log.h"
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "common/process.h"

namespace {

int Fail(int code, const ppml::Status& status) {
  std::cerr << "ppml-accel: " << status.message() << std::endl;
  return code;
}

// The arithmetic: oneDNN on this CPU, or cuBLAS on a GPU where the build has CUDA.
ppml::Result<std::unique_ptr<ppml::accel::Backend>> MakeBackend(const std::string& name, int cuda_device,
                                                                const std::string& cuda_kernel) {
  if (name == "cpu") return ppml::accel::MakeCpuBackend();
  if (name != "cuda") return ppml::Status::InvalidArgument("--backend '" + name + "': expected cpu or cuda");
#ifdef PPML_WITH_CUDA
  ppml::accel::CudaBackendOptions options;
  options.device = cuda_device;
  PPML_ASSIGN_OR_RETURN(options.kernel, ppml::accel::ParseCudaKernel(cuda_kernel));
  return ppml::accel::MakeCudaBackend(options);
#else
  return ppml::Status::Unsupported("--backend cuda: this ppml-accel was built without CUDA (CMake found no CUDA compiler)");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ppml-accel: untrusted accelerator for verified, blinded linear layers (Slalom)"};
  std::string listen, metrics_address, tamper_kinds = "all", backend_name = "cpu", cuda_kernel = "int8";
  int threads = 0, cuda_device = 0;
  double tamper_rate = 0;
  int64_t tamper_seed = -1;
  uint32_t max_frame_mib = ppml::accel::kDefaultMaxPayload >> 20;
  app.add_option("--listen", listen, "unix:/path, /path, HOST:PORT or tcp:HOST:PORT (port 0: any free port)")
      ->required();
  app.add_option("--backend", backend_name, "where the arithmetic runs: cpu (oneDNN) or cuda (cuBLAS)");
  app.add_option("--cuda-device", cuda_device, "GPU index for --backend cuda")->check(CLI::NonNegativeNumber);
  app.add_option("--cuda-kernel", cuda_kernel, "exact field GEMM on the GPU: int8 (three 8-bit digits) or fp64");
  app.add_option("--threads", threads, "oneDNN (OpenMP) threads per computation; 0: all cores")->check(CLI::NonNegativeNumber);
  app.add_option("--metrics", metrics_address, "serve Prometheus /metrics on HOST:PORT");
  app.add_option("--max-frame-mib", max_frame_mib, "largest request or reply frame, MiB")->check(CLI::Range(1, 4095));
  app.add_option("--tamper-rate", tamper_rate, "fraction of Compute replies to corrupt on purpose (testing)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--tamper-kinds", tamper_kinds, "element,row,off-by-one,replay or all");
  app.add_option("--tamper-seed", tamper_seed, "seed for reproducible tampering (default: random)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  ppml::accel::ServerOptions options;
  ppml::Result<ppml::accel::AccelAddress> address = ppml::accel::ParseAccelAddress(listen);
  if (!address.ok()) return Fail(2, address.status());
  options.listen = *address;
  options.max_payload = max_frame_mib << 20;
  ppml::Result<std::vector<ppml::accel::TamperKind>> kinds = ppml::accel::ParseTamperKinds(tamper_kinds);
  if (!kinds.ok()) return Fail(2, kinds.status());
  options.tamper.rate = tamper_rate;
  options.tamper.kinds = *kinds;
  if (tamper_seed >= 0) options.tamper.seed = static_cast<uint64_t>(tamper_seed);
  std::optional<ppml::accel::AccelAddress> metrics_at;
  if (!metrics_address.empty()) {
    ppml::Result<ppml::accel::AccelAddress> parsed = ppml::accel::ParseAccelAddress(metrics_address);
    if (!parsed.ok() || parsed->is_unix) return Fail(2, ppml::Status::InvalidArgument("--metrics wants HOST:PORT"));
    metrics_at = *parsed;
  }
  if (threads > 0) omp_set_num_threads(threads);

  ppml::Result<std::unique_ptr<ppml::accel::Backend>> backend = MakeBackend(backend_name, cuda_device, cuda_kernel);
  if (!backend.ok()) return Fail(backend.status().code() == ppml::StatusCode::kInvalidArgument ? 2 : 1, backend.status());

  const std::atomic<bool>& stop_requested = ppml::StopFlagOnSignals();
  ppml::metrics::Registry registry;
  ppml::Result<std::unique_ptr<ppml::accel::AccelServer>> server =
      ppml::accel::AccelServer::Start(options, std::move(backend).value(), registry);
  if (!server.ok()) return Fail(1, server.status());
  std::unique_ptr<ppml::metrics::MetricsServer> metrics_server;
  if (metrics_at) {
    auto started = ppml::metrics::MetricsServer::Start(registry, metrics_at->host, metrics_at->port);
    if (!started.ok()) return Fail(1, started.status().WithContext("--metrics"));
    metrics_server = std::move(started).value();  // it logs metrics_listening with the bound port
  }
  std::cout << "ready: listen=" << (*server)->address().ToString() << std::endl;
  ppml::Status status = (*server)->Run(stop_requested);
  if (!status.ok()) return Fail(1, status);
  return 0;
}
