#include "common/log.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>
#include <thread>
#include <vector>

namespace ppml {
namespace {

TEST(LogTest, FormatsKeyValueLine) {
  const LogField fields[] = {{"model", "fashion_cnn"}, {"workers", 2}, {"tls", true}, {"ratio", 0.5}};
  EXPECT_EQ(FormatLogLine("2024-05-01T12:00:00.123Z", LogLevel::kInfo, "worker_start", fields),
            "ts=2024-05-01T12:00:00.123Z level=info event=worker_start model=fashion_cnn workers=2 tls=true ratio=0.5");
}

TEST(LogTest, QuotesValuesThatWouldBreakTheLine) {
  EXPECT_EQ(QuoteLogValue("plain"), "plain");
  EXPECT_EQ(QuoteLogValue("two words"), "\"two words\"");
  EXPECT_EQ(QuoteLogValue(""), "\"\"");
  EXPECT_EQ(QuoteLogValue("a=b"), "\"a=b\"");
  EXPECT_EQ(QuoteLogValue("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(QuoteLogValue("back\\slash"), "\"back\\\\slash\"");
  EXPECT_EQ(QuoteLogValue("line\nbreak"), "\"line\\nbreak\"");
  EXPECT_EQ(QuoteLogValue(std::string("nul\0x", 5)), "\"nul\\x00x\"");
  EXPECT_EQ(QuoteLogValue("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 stays readable
}

TEST(LogTest, FieldConversions) {
  EXPECT_EQ(LogField("k", int64_t{-5}).value, "-5");
  EXPECT_EQ(LogField("k", size_t{7}).value, "7");
  EXPECT_EQ(LogField("k", false).value, "false");
  EXPECT_EQ(LogField("k", 1.25).value, "1.25");
  EXPECT_EQ(LogField("k", std::string("s")).value, "s");
  EXPECT_EQ(LogField("k", static_cast<const char*>(nullptr)).value, "");
  EXPECT_EQ(LogField("k", Status::NotFound("x").ToString()).value, "NotFound: x");
}

TEST(LogTest, ParsesLevels) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("info"), LogLevel::kInfo);
  EXPECT_EQ(*ParseLogLevel("warn"), LogLevel::kWarn);
  EXPECT_EQ(*ParseLogLevel("warning"), LogLevel::kWarn);
  EXPECT_EQ(*ParseLogLevel("error"), LogLevel::kError);
  EXPECT_EQ(*ParseLogLevel("off"), LogLevel::kOff);
  Result<LogLevel> bad = ParseLogLevel("loud");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("loud"), std::string::npos);
}

TEST(LogTest, LevelFilter) {
  const LogLevel saved = CurrentLogLevel();
  SetLogLevel(LogLevel::kWarn);
  EXPECT_FALSE(LogEnabled(LogLevel::kDebug));
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kWarn));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  testing::internal::CaptureStderr();
  LogInfo("hidden_event");
  LogWarn("shown_event", {{"reason", "disk full"}});
  const std::string captured = testing::internal::GetCapturedStderr();
  EXPECT_EQ(captured.find("hidden_event"), std::string::npos);
  EXPECT_NE(captured.find("level=warn event=shown_event reason=\"disk full\"\n"), std::string::npos) << captured;
  EXPECT_EQ(captured.rfind("ts=", 0), 0u);
  SetLogLevel(LogLevel::kOff);
  EXPECT_FALSE(LogEnabled(LogLevel::kError));
  SetLogLevel(saved);
}

TEST(LogTest, ConcurrentLinesNeverInterleave) {
  const LogLevel saved = CurrentLogLevel();
  SetLogLevel(LogLevel::kInfo);
  constexpr int kThreads = 8;
  constexpr int kLines = 200;
  const std::string padding(300, 'x');  // long lines make interleaving likelier
  testing::internal::CaptureStderr();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &padding] {
      for (int i = 0; i < kLines; ++i) LogInfo("tick", {{"thread", t}, {"i", i}, {"pad", padding}});
    });
  }
  for (auto& thread : threads) thread.join();
  const std::string captured = testing::internal::GetCapturedStderr();
  SetLogLevel(saved);
  std::istringstream lines(captured);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    ++count;
    ASSERT_EQ(line.rfind("ts=", 0), 0u) << line;
    ASSERT_NE(line.find(" level=info event=tick thread="), std::string::npos) << line;
    ASSERT_EQ(line.substr(line.size() - padding.size() - 5), " pad=" + padding) << line;
  }
  EXPECT_EQ(count, kThreads * kLines);
}

// The environment is read once per process, so check it in a fresh one.
TEST(LogDeathTest, LevelComesFromTheEnvironment) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("PPML_LOG_LEVEL", "error", 1);
        std::exit(!LogEnabled(LogLevel::kWarn) && LogEnabled(LogLevel::kError) ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        setenv("PPML_LOG_LEVEL", "shouty", 1);
        std::exit(LogEnabled(LogLevel::kInfo) && !LogEnabled(LogLevel::kDebug) ? 0 : 1);
      },
      testing::ExitedWithCode(0), "event=log_level_invalid");
}

}  // namespace
}  // namespace ppml
