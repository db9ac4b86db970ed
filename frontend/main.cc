// ppml-frontend --config FILE [--id NAME]
//
// Serves the KServe v2 routes over HTTPS (frontend/server.h) until SIGTERM or
// SIGINT, on which it stops accepting, answers parked requests 503 and exits
// 0. Exit 2: bad command line or config (the message names the file and key);
// 1: it could not start (a certificate that does not load, an address that
// cannot be bound).
#include <CLI/CLI.hpp>
#include <signal.h>

#include <iostream>

#include "common/metrics.h"
#include "frontend/config.h"
#include "frontend/server.h"
#include "queue/request_entry.h"

namespace {

int Fail(int code, const ppml::Status& status) {
  std::cerr << "ppml-frontend: " << status.message() << std::endl;
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ppml-frontend: the HTTPS front-end; queues encrypted inference requests for the workers"};
  std::string config_path, id;
  app.add_option("--config", config_path, "front-end config (YAML), e.g. configs/frontend.yaml")->required();
  app.add_option("--id", id, "front-end id, naming its result stream (overrides frontend.id)");
  CLI11_PARSE(app, argc, argv);

  ppml::Result<ppml::frontend::FrontendConfig> config = ppml::frontend::LoadFrontendConfig(config_path);
  if (!config.ok()) return Fail(2, config.status());
  if (!id.empty()) {
    if (ppml::Status s = ppml::queue::CheckKeyName(id, "--id"); !s.ok()) return Fail(2, s);
    config->id = id;
  }
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up is an error value, not a signal

  ppml::metrics::Registry registry;
  auto server = ppml::frontend::FrontendServer::Start(std::move(config).value(), registry);
  if (!server.ok()) return Fail(1, server.status());
  if (ppml::Status s = (*server)->StopOnSignals({SIGTERM, SIGINT}); !s.ok()) return Fail(1, s);
  if (ppml::Status s = (*server)->Run(); !s.ok()) return Fail(1, s);
  return 0;
}
