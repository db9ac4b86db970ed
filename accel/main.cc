// ppml-accel --listen ADDR [--threads N] [--tamper-rate R] [--tamper-kinds K,...] [--tamper-seed S]
//
// The untrusted accelerator of verified outsourcing (server.h). Prints
// "ready: listen=ADDR" on stdout once it listens; logs one key=value line per
// event on stderr (never a payload); SIGTERM or SIGINT: stops accepting,
// finishes the requests in hand, exits 0. Exit 2: a bad command line; 1: it
// could not listen.
#include <CLI/CLI.hpp>

#include <iostream>

#include "accel/server.h"
#include "common/log.h"
#include "common/process.h"
#include "engine/engine.h"

int main(int argc, char** argv) {
  CLI::App app{"ppml-accel: untrusted accelerator for the enclaves' linear layers (verified by Freivalds' check)"};
  ppml::accel::ServerOptions options;
  int threads = 0;
  std::string kinds = "element,row,off-by-one,replay";
  app.add_option("--listen", options.listen, "unix:PATH, tcp:HOST:PORT or HOST:PORT")->required();
  app.add_option("--threads", threads, "oneDNN threads (0: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--tamper-rate", options.tamper_rate, "fraction of replies to corrupt (tests)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--tamper-kinds", kinds, "element,row,off-by-one,replay")->capture_default_str();
  app.add_option("--tamper-seed", options.tamper_seed, "seed of the corruption choices (0: random)");
  CLI11_PARSE(app, argc, argv);

  ppml::Result<std::vector<ppml::accel::TamperKind>> parsed = ppml::accel::ParseTamperKinds(kinds);
  if (!parsed.ok()) {
    std::cerr << "ppml-accel: " << parsed.status().message() << std::endl;
    return 2;
  }
  options.tamper_kinds = *parsed;
  ppml::engine::SetThreads(threads);
  const std::atomic<bool>& stop = ppml::StopFlagOnSignals();
  auto server = ppml::accel::AccelServer::Listen(options);
  if (!server.ok()) {
    std::cerr << "ppml-accel: " << server.status().message() << std::endl;
    return server.status().code() == ppml::StatusCode::kInvalidArgument ? 2 : 1;
  }
  ppml::LogInfo("accel_listening", {{"address", (*server)->address()},
                                    {"isa", ppml::engine::EffectiveCpuIsa()},
                                    {"tamper_rate", options.tamper_rate}});
  std::cout << "ready: listen=" << (*server)->address() << std::endl;
  ppml::Status served = (*server)->Serve(stop);
  ppml::LogInfo("accel_stopped", {{"computes", (*server)->counters().computes.load()},
                                  {"tampered", (*server)->counters().tampered.load()}});
  return served.ok() ? 0 : 1;
}
