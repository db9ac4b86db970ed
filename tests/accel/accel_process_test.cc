// The built ppml-accel binary as operators run it: ready line, Unix socket
// and TCP, exact results, SIGTERM -> exit 0; with --tamper-rate 1 every reply
// of every tamper kind is corrupted and every one is caught by FreivaldsCheck.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>
#include <utility>

#include "accel/client.h"
#include "accel/field.h"
#include "common/process.h"
#include "tests/accel/accel_test_util.h"
#include "tests/support/accel_process.h"
#include "tests/support/run_to_end.h"

namespace ppml::accel {
namespace {

using ppml::testing::AccelProcess;
using testing::MakeDense;
using testing::MakeSpec;
using testing::RandomField;
using testing::ReferenceFieldLinear;

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

void ExpectExactService(const std::string& address) {
  auto client = AccelClient::Connect(address);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  std::mt19937_64 rng(61);
  for (const LinearSpec& spec : {MakeSpec(4, 7, 7, 6, 3, 2, 1, 1, 2), MakeDense(40, 9)}) {
    Result<uint64_t> handle = (*client)->Register(spec);
    ASSERT_TRUE(handle.ok()) << handle.status().ToString();
    std::vector<uint32_t> x = RandomField(static_cast<size_t>(3 * spec.input_size()), rng);
    Result<std::vector<uint32_t>> z = (*client)->Compute(*handle, 3, x);
    ASSERT_TRUE(z.ok()) << z.status().ToString();
    EXPECT_EQ(*z, ReferenceFieldLinear(spec, x, 3));
  }
}

TEST(AccelProcessTest, ServesOverUnixSocketAndTcpAndStopsCleanly) {
  TempDir dir("ppml-accel-sock");
  const std::string unix_listen = "unix:" + dir.File("a.sock");
  {
    AccelProcess accel(unix_listen, {});
    EXPECT_EQ(accel.address(), unix_listen);
    ExpectExactService(accel.address());
    std::optional<int> status = accel.Stop();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeExit(*status);
    EXPECT_NE(accel.log().find("event=accel_stop"), std::string::npos);
  }
  {
    AccelProcess accel("127.0.0.1:0", {"--metrics", "127.0.0.1:0"});
    ASSERT_TRUE(accel.address().starts_with("127.0.0.1:")) << accel.address();
    EXPECT_NE(accel.address(), "127.0.0.1:0");  // the bound port
    ExpectExactService("tcp:" + accel.address());
    std::optional<int> status = accel.Stop();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeExit(*status);
    EXPECT_NE(accel.log().find("event=accel_layer_registered"), std::string::npos);
  }
}

// ppml-accel's exit status and stderr for a start that must fail.
std::pair<int, std::string> FailedStart(std::vector<std::string> flags) {
  TempDir dir("ppml-accel-flags");
  std::vector<std::string> argv = {std::string(PPML_BIN_DIR) + "/ppml-accel", "--listen", "unix:" + dir.File("a.sock")};
  argv.insert(argv.end(), flags.begin(), flags.end());
  const int code = ppml::testing::RunToEnd(std::move(argv), dir.File("accel.log"), std::chrono::seconds(20));
  EXPECT_NE(code, -1) << "ppml-accel " << flags[0] << " did not exit by itself";
  Result<std::string> log = ReadFile(dir.File("accel.log"));
  return {code, log.ok() ? *log : ""};
}

TEST(AccelProcessTest, BackendChoiceIsCheckedAtStart) {
  auto [code, log] = FailedStart({"--backend", "tpu"});
  EXPECT_EQ(code, 2);
  EXPECT_NE(log.find("--backend 'tpu': expected cpu or cuda"), std::string::npos) << log;
  std::tie(code, log) = FailedStart({"--backend", "cuda", "--cuda-kernel", "fp16"});
#ifdef PPML_WITH_CUDA
  EXPECT_EQ(code, 2);
  EXPECT_NE(log.find("CUDA kernel 'fp16': expected int8 or fp64"), std::string::npos) << log;
  std::tie(code, log) = FailedStart({"--backend", "cuda", "--cuda-device", "99"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(log.find("CUDA device 99"), std::string::npos) << log;
#else
  EXPECT_EQ(code, 1);
  EXPECT_NE(log.find("built without CUDA"), std::string::npos) << log;
#endif
}

TEST(AccelProcessTest, EveryTamperedReplyIsCaughtByFreivalds) {
  constexpr int kReplies = 12;
  const std::vector<std::byte> seed(32, std::byte{0x5a});
  for (const char* kind : {"element", "row", "off-by-one", "replay"}) {
    TempDir dir("ppml-accel-sock");
    AccelProcess accel("unix:" + dir.File("t.sock"),
                       {"--tamper-rate", "1", "--tamper-kinds", kind, "--tamper-seed", "3"});
    auto client = AccelClient::Connect(accel.address());
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    std::mt19937_64 rng(62);
    int corrupted = 0, detected = 0;
    for (const LinearSpec& spec : {MakeSpec(4, 6, 6, 4, 3, 1, 1), MakeSpec(6, 5, 5, 6, 3, 1, 1, 1, 3), MakeDense(32, 8)}) {
      auto check = FreivaldsCheck::Create(spec, seed);
      ASSERT_TRUE(check.ok());
      const uint64_t handle = *(*client)->Register(spec);
      for (int i = 0; i < kReplies; ++i) {
        const int64_t batch = 1 + i % 3;
        std::vector<uint32_t> x = RandomField(static_cast<size_t>(batch * spec.input_size()), rng);
        Result<std::vector<uint32_t>> z = (*client)->Compute(handle, batch, x);
        ASSERT_TRUE(z.ok()) << z.status().ToString();
        if (*z != ReferenceFieldLinear(spec, x, batch)) ++corrupted;
        if ((*check)->Verify(x, *z, batch).code() == StatusCode::kDataLoss) ++detected;
      }
    }
    EXPECT_EQ(corrupted, 3 * kReplies) << kind;
    EXPECT_EQ(detected, 3 * kReplies) << kind;
    ASSERT_TRUE(accel.Stop().has_value());
    const std::string log = accel.log();
    EXPECT_EQ(Count(log, "event=accel_tamper"), static_cast<size_t>(3 * kReplies)) << kind;
    // A replay needs an earlier reply of the same size: the first of each of
    // the 9 (layer, batch) sizes falls back to element, the rest are replays.
    if (std::string(kind) != "replay") {
      EXPECT_EQ(Count(log, std::string("kind=") + kind), static_cast<size_t>(3 * kReplies)) << kind;
    } else {
      EXPECT_GE(Count(log, "kind=replay"), static_cast<size_t>(3 * kReplies - 9));
    }
  }
}

}  // namespace
}  // namespace ppml::accel
