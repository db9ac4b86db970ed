// ChildProcess: a program this process starts, watches and stops: the
// redis-server of tests, benches and `ppml serve`, workers in integration
// tests.
//
// Start forks and execs (execvp: the program is looked up on PATH). The
// child's stdout and stderr go to `log_file` (appended) or stay ours when it
// is empty. With kill_with_parent the kernel sends the child SIGKILL when the
// thread that started it ends (PR_SET_PDEATHSIG), so a crashed test or tool
// leaves no orphan: start it from a thread that outlives it.
//
// The object owns the child: its destructor stops it (SIGTERM, then SIGKILL
// after the grace period) and reaps it.
//
// Thread safety: one thread at a time.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ppml {

struct ProcessOptions {
  std::vector<std::string> argv;  // argv[0] is the program
  std::string log_file;           // empty: inherit stdout/stderr
  bool kill_with_parent = true;
  std::vector<std::string> env;   // "NAME=value" set on top of our environment
};

class ChildProcess {
 public:
  static Result<ChildProcess> Start(ProcessOptions options);

  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  // Sends `signal` (no-op once it has been reaped).
  void Signal(int signal) const;
  // SIGTERM, then SIGKILL when it has not exited within `grace`; reaps it.
  // Returns the exit status as waitpid gave it (nullopt if none was running).
  std::optional<int> Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  // Waits up to `timeout` for it to exit; its waitpid status, or nullopt if still running.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // Reaps it without blocking when it has exited; true while it runs.
  bool Running();

  pid_t pid() const { return pid_; }
  const std::string& program() const { return program_; }

 private:
  pid_t pid_ = -1;
  std::string program_;
};

// "exited with status 3", "killed by signal 9 (Killed)": a waitpid status in words.
std::string DescribeExit(int wait_status);

// For a service's main loop: the first call makes SIGTERM and SIGINT set the
// returned flag and ignores SIGPIPE (a peer that hangs up is an error value,
// not a signal); later calls return the same flag.
const std::atomic<bool>& StopFlagOnSignals();

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for
// port 0), for a child server. Another process may take it before the child
// binds: callers retry with a new port when the start fails.
Result<uint16_t> PickFreePort();

// A fresh folder under /tmp (prefix "/tmp/<prefix>-XXXXXX"), removed with
// everything in it on destruction. ok() is false when mkdtemp failed.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "ppml");
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace ppml
