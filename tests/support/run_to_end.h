// Runs a command to its end, as a user would from a shell, for tests that
// check an exit status and what the command printed.
#pragma once

#include <sys/wait.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/process.h"

namespace ppml::testing {

// `argv`'s exit code, its stdout and stderr appended to `log_file`; -1 when
// it could not start, ended on a signal or did not end within `timeout`
// (it is then stopped).
inline int RunToEnd(std::vector<std::string> argv, const std::string& log_file, std::chrono::milliseconds timeout,
                    std::vector<std::string> env = {}) {
  ProcessOptions options;
  options.argv = std::move(argv);
  options.log_file = log_file;
  options.env = std::move(env);
  Result<ChildProcess> process = ChildProcess::Start(std::move(options));
  if (!process.ok()) return -1;
  const std::optional<int> status = process->Wait(timeout);
  return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

}  // namespace ppml::testing
