#include "common/json_line.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace ppml {
namespace {

TEST(JsonLineTest, EmptyObject) { EXPECT_EQ(JsonLine().str(), "{}"); }

TEST(JsonLineTest, KeepsOrderAndTypes) {
  JsonLine json;
  json.Add("model", std::string("m.onnx"))
      .Add("batch", 16)
      .Add("iterations", size_t{12345})
      .Add("big", int64_t{1} << 40)
      .Add("throughput_per_s", 1234.5)
      .Add("ok", true)
      .Add("precision", "fp32")
      .AddNull("device")
      .AddRaw("shape", "[1,10]");
  EXPECT_EQ(json.str(),
            "{\"model\":\"m.onnx\",\"batch\":16,\"iterations\":12345,\"big\":1099511627776,"
            "\"throughput_per_s\":1234.5,\"ok\":true,\"precision\":\"fp32\",\"device\":null,\"shape\":[1,10]}");
}

TEST(JsonLineTest, EscapesStrings) {
  EXPECT_EQ(JsonQuote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonQuote("line\nnext\ttab\r"), "\"line\\nnext\\ttab\\r\"");
  EXPECT_EQ(JsonQuote(std::string("\x01\x1f", 2)), "\"\\u0001\\u001f\"");
  EXPECT_EQ(JsonQuote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  JsonLine json;
  json.Add("we\"ird", "x");
  EXPECT_EQ(json.str(), "{\"we\\\"ird\":\"x\"}");
}

TEST(JsonLineTest, NumbersRoundTripAndNonFiniteIsNull) {
  EXPECT_EQ(JsonNumber(0.1), "0.1");
  EXPECT_EQ(JsonNumber(2.0), "2");
  EXPECT_EQ(JsonNumber(-1.5e-7), "-1.5e-07");
  EXPECT_EQ(std::stod(JsonNumber(1.0 / 3.0)), 1.0 / 3.0);
  EXPECT_EQ(JsonNumber(std::numeric_limits<double>::quiet_NaN()), "null");
  EXPECT_EQ(JsonNumber(std::numeric_limits<double>::infinity()), "null");
  JsonLine json;
  json.Add("f", 0.5f);
  EXPECT_EQ(json.str(), "{\"f\":0.5}");
}

}  // namespace
}  // namespace ppml
