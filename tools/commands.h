// The `ppml` command groups. Each Add* function registers its subcommand(s)
// on the root CLI11 app; when a command runs, it stores the process exit
// code in *exit_code (see ExitCode in cli_support.h). main.cc only parses.
#pragma once

namespace CLI {
class App;
}

namespace ppml::tools {

void AddConformanceCommand(CLI::App& app, int* exit_code);  // ppml conformance
void AddBenchCommands(CLI::App& app, int* exit_code);       // ppml bench engine
void AddEvalCommand(CLI::App& app, int* exit_code);         // ppml eval
void AddRunCommand(CLI::App& app, int* exit_code);          // ppml run
void AddModelCommands(CLI::App& app, int* exit_code);       // ppml model quantize|seal|inspect
void AddKeygenCommands(CLI::App& app, int* exit_code);      // ppml keygen platform
void AddEnclaveCommands(CLI::App& app, int* exit_code);     // ppml enclave provision
void AddClientCommands(CLI::App& app, int* exit_code);  // ppml infer, ppml attest
void AddServeCommand(CLI::App& app, int* exit_code);        // ppml serve
// ppml he search|fit; returns the `he` group so more he subcommands can join it.
CLI::App* AddHeCommands(CLI::App& app, int* exit_code);
// ppml bench enclave, registered by AddBenchCommands on its `bench` group.
void AddBenchEnclaveCommand(CLI::App& bench, int* exit_code);
// ppml bench queue, likewise.
void AddBenchQueueCommand(CLI::App& bench, int* exit_code);
// ppml bench serve (end-to-end load on a running service), likewise.
void AddBenchServeCommand(CLI::App& bench, int* exit_code);
// ppml bench outsource (verified outsourcing modes), likewise.
void AddBenchOutsourceCommand(CLI::App& bench, int* exit_code);
void AddAccelCommands(CLI::App& app, int* exit_code);       // ppml accel tamper-test
// ppml he bench (real CKKS with SEAL: per-op costs, the approximated RNN encrypted),
// registered on the `he` group.
void AddHeBenchCommand(CLI::App& he, int* exit_code);

}  // namespace ppml::tools
