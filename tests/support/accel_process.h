// A real ppml-accel process for tests, as operators run it: started with
// --listen and flags, ready once it prints "ready: listen=ADDR", stopped
// with SIGTERM. Needs PPML_BIN_DIR (the folder holding ppml-accel).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/file_io.h"
#include "common/process.h"

namespace ppml::testing {

class AccelProcess {
 public:
  // An empty `listen` is a Unix socket in the process's own temporary folder.
  explicit AccelProcess(std::string listen = "", std::vector<std::string> flags = {}) {
    if (listen.empty()) listen = "unix:" + dir_.File("accel.sock");
    ProcessOptions options;
    options.argv = {std::string(PPML_BIN_DIR) + "/ppml-accel", "--listen", listen, "--threads", "1"};
    options.argv.insert(options.argv.end(), flags.begin(), flags.end());
    options.log_file = dir_.File("accel.log");
    options.env = {"PPML_LOG_LEVEL=info"};  // the tests read its info lines
    auto started = ChildProcess::Start(options);
    EXPECT_TRUE(started.ok()) << started.status().ToString();
    if (!started.ok()) return;
    process_ = std::move(started).value();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline && process_.Running()) {
      const std::string text = log();
      const size_t at = text.find("ready: listen=");
      if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
        address_ = text.substr(at + 14, text.find('\n', at) - at - 14);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "ppml-accel did not print its ready line:\n" << log();
  }
  // What the ready line says: unix:PATH, or HOST:PORT with the bound port.
  const std::string& address() const { return address_; }
  std::string log() const {
    auto text = ReadFile(dir_.File("accel.log"));
    return text.ok() ? *text : "";
  }
  // SIGTERM; the waitpid status.
  std::optional<int> Stop() { return process_.Stop(std::chrono::seconds(10)); }

 private:
  TempDir dir_{"ppml-accel-process"};
  ChildProcess process_;
  std::string address_;
};

}  // namespace ppml::testing
