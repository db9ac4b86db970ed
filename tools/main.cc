// ppml: the command-line tool. Each command group lives in its own cmd_*.cc;
// this file parses the command line and turns every error into an exit code
// (0 ok, 1 failure, 2 usage) so scripts never see a crash or a stack trace.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "tools/cli_support.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "ppml: privacy-preserving inference: conformance, benchmarks, evaluation, single runs, model packages, keys"};
  app.require_subcommand(1);
  int exit_code = ppml::tools::kExitOk;
  ppml::tools::AddConformanceCommand(app, &exit_code);
  ppml::tools::AddBenchCommands(app, &exit_code);
  ppml::tools::AddEvalCommand(app, &exit_code);
  ppml::tools::AddRunCommand(app, &exit_code);
  ppml::tools::AddModelCommands(app, &exit_code);
  ppml::tools::AddKeygenCommands(app, &exit_code);
  ppml::tools::AddEnclaveCommands(app, &exit_code);
  ppml::tools::AddClientCommands(app, &exit_code);
  ppml::tools::AddServeCommand(app, &exit_code);
  ppml::tools::AddAccelCommands(app, &exit_code);
  CLI::App* he = ppml::tools::AddHeCommands(app, &exit_code);
  ppml::tools::AddHeBenchCommand(*he, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Prints the help text or "<flag>: <problem>" and the usage hint.
    const int cli_code = app.exit(e);
    return cli_code == 0 ? ppml::tools::kExitOk : ppml::tools::kExitUsage;
  } catch (const std::exception& e) {
    // A command let an exception escape (a library threw): still no crash.
    std::cerr << "ppml: unexpected error: " << e.what() << std::endl;
    return ppml::tools::kExitFailure;
  }
  return exit_code;
}
