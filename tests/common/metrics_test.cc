// Metrics registry values and exposition text, and MetricsServer over a real
// TCP socket with a minimal blocking HTTP/1.0 client.
#include "common/metrics.h"


#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics_server.h"
#include "tests/support/http_fetch.h"

namespace ppml::metrics {
namespace {

using testing::Fetch;
using testing::HttpResponse;

TEST(MetricsTest, CounterGaugeHistogramValues) {
  Registry registry;
  Counter& counter = registry.AddCounter("c_total", "A counter.");
  EXPECT_EQ(counter.value(), 0);
  counter.Increment();
  counter.Increment(2.5);
  counter.Increment(-1);  // dropped: counters only go up
  counter.Increment(NAN);
  EXPECT_EQ(counter.value(), 3.5);

  Gauge& gauge = registry.AddGauge("g", "A gauge.");
  gauge.Set(10);
  gauge.Add(-2.5);
  EXPECT_EQ(gauge.value(), 7.5);

  Histogram& histogram = registry.AddHistogram("h", "A histogram.", {1, 2, 4});
  for (double v : {0.5, 1.0, 1.5, 3.0, 100.0}) histogram.Observe(v);
  histogram.Observe(NAN);  // counted in +Inf only
  EXPECT_EQ(histogram.count(), 6u);
  EXPECT_TRUE(std::isnan(histogram.sum()));
  EXPECT_EQ(histogram.cumulative_counts(), (std::vector<uint64_t>{2, 3, 4, 6}));
  EXPECT_EQ(histogram.upper_bounds(), (std::vector<double>{1, 2, 4}));
}

TEST(MetricsTest, SameNameAndLabelsReturnsTheExistingSeries) {
  Registry registry;
  Counter& a = registry.AddCounter("r_total", "Requests.", {{"model", "m"}, {"code", "ok"}});
  Counter& b = registry.AddCounter("r_total", "Requests.", {{"code", "ok"}, {"model", "m"}});  // order-free
  Counter& c = registry.AddCounter("r_total", "Requests.", {{"code", "error"}, {"model", "m"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
  a.Increment();
  EXPECT_EQ(b.value(), 1);
  EXPECT_EQ(c.value(), 0);
}

TEST(MetricsTest, RenderExactText) {
  Registry registry;
  Counter& ok = registry.AddCounter("ppml_requests_total", "Requests handled.",
                                    {{"model", "a\"b\\c\nd"}, {"code", "ok"}});
  Gauge& depth = registry.AddGauge("ppml_queue_depth", "Requests waiting.\nSecond line \\ backslash");
  // A second series of the first family, registered later, still renders under its one header.
  Counter& error = registry.AddCounter("ppml_requests_total", "Requests handled.", {{"code", "error"}});
  Histogram& latency =
      registry.AddHistogram("ppml_latency_seconds", "Latency.", {0.25, 0.5, 1}, {{"model", "m"}});
  Counter& up = registry.AddCounter("ppml_up", "Process is up.");
  Gauge& big = registry.AddGauge("ppml_big", "Large and fractional values.", {{"kind", "large"}});
  Gauge& small = registry.AddGauge("ppml_big", "Large and fractional values.", {{"kind", "small"}});

  ok.Increment(3);
  error.Increment();
  depth.Set(2.5);
  for (double v : {0.125, 0.25, 0.375, 2.0}) latency.Observe(v);
  up.Increment();
  big.Set(1e20);
  small.Set(0.1);

  EXPECT_EQ(registry.Render(), R"txt(# HELP ppml_requests_total Requests handled.
# TYPE ppml_requests_total counter
ppml_requests_total{code="ok",model="a\"b\\c\nd"} 3
ppml_requests_total{code="error"} 1
# HELP ppml_queue_depth Requests waiting.\nSecond line \\ backslash
# TYPE ppml_queue_depth gauge
ppml_queue_depth 2.5
# HELP ppml_latency_seconds Latency.
# TYPE ppml_latency_seconds histogram
ppml_latency_seconds_bucket{model="m",le="0.25"} 2
ppml_latency_seconds_bucket{model="m",le="0.5"} 3
ppml_latency_seconds_bucket{model="m",le="1"} 3
ppml_latency_seconds_bucket{model="m",le="+Inf"} 4
ppml_latency_seconds_sum{model="m"} 2.75
ppml_latency_seconds_count{model="m"} 4
# HELP ppml_up Process is up.
# TYPE ppml_up counter
ppml_up 1
# HELP ppml_big Large and fractional values.
# TYPE ppml_big gauge
ppml_big{kind="large"} 1e+20
ppml_big{kind="small"} 0.1
)txt");
}

TEST(MetricsTest, EmptyRegistryRendersNothing) { EXPECT_EQ(Registry().Render(), ""); }

TEST(MetricsTest, ExponentialBuckets) {
  EXPECT_EQ(ExponentialBuckets(0.001, 10, 4), (std::vector<double>{0.001, 0.001 * 10, 0.001 * 10 * 10, 0.001 * 10 * 10 * 10}));
  EXPECT_EQ(ExponentialBuckets(1, 2, 5), (std::vector<double>{1, 2, 4, 8, 16}));
}

TEST(MetricsTest, ConcurrentUpdatesSumExactlyWhileRendering) {
  Registry registry;
  Counter& counter = registry.AddCounter("hits_total", "Hits.");
  Gauge& gauge = registry.AddGauge("level", "Level.");
  Histogram& histogram = registry.AddHistogram("sizes", "Sizes.", {1, 2, 3});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100000;
  std::atomic<bool> done{false};
  std::thread renderer([&] {
    while (!done.load()) {
      const std::string text = registry.Render();
      ASSERT_NE(text.find("# TYPE hits_total counter"), std::string::npos);
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Registering concurrently returns the same series.
      Counter& mine = registry.AddCounter("hits_total", "Hits.");
      for (int i = 0; i < kPerThread; ++i) {
        mine.Increment();
        gauge.Add(1);
        histogram.Observe(t);  // integers: the sum stays exact
      }
    });
  }
  for (auto& thread : threads) thread.join();
  done = true;
  renderer.join();
  EXPECT_EQ(counter.value(), kThreads * kPerThread);
  EXPECT_EQ(gauge.value(), kThreads * kPerThread);
  EXPECT_EQ(histogram.count(), uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(histogram.sum(), (0 + 1 + 2 + 3) * kPerThread);
  EXPECT_EQ(histogram.cumulative_counts(),
            (std::vector<uint64_t>{2 * kPerThread, 3 * kPerThread, 4 * kPerThread, 4 * kPerThread}));
  EXPECT_NE(registry.Render().find("hits_total 400000\n"), std::string::npos);
}

TEST(MetricsDeathTest, RegistrationMisuseAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Registry registry;
  registry.AddCounter("x_total", "X.");
  registry.AddHistogram("lat", "Latency.", {1, 2});
  EXPECT_DEATH(registry.AddCounter("bad name", "Bad."), "invalid metric name \"bad name\"");
  EXPECT_DEATH(registry.AddCounter("9lives", "Bad."), "invalid metric name");
  EXPECT_DEATH(registry.AddGauge("x_total", "X."), "already a counter");
  EXPECT_DEATH(registry.AddCounter("x_total", "Other help."), "help");
  EXPECT_DEATH(registry.AddCounter("y_total", "Y.", {{"bad-label", "v"}}), "invalid label name \"bad-label\"");
  EXPECT_DEATH(registry.AddCounter("y_total", "Y.", {{"__reserved", "v"}}), "invalid label name");
  EXPECT_DEATH(registry.AddCounter("y_total", "Y.", {{"a", "1"}, {"a", "2"}}), "given twice");
  EXPECT_DEATH(registry.AddHistogram("lat", "Latency.", {1, 2}, {{"le", "1"}}), "reserved");
  EXPECT_DEATH(registry.AddHistogram("lat", "Latency.", {1, 3}), "bucket bounds");
  EXPECT_DEATH(registry.AddHistogram("h2", "H.", {2, 1}), "strictly increasing");
  EXPECT_DEATH(registry.AddHistogram("h2", "H.", {}), "at least one");
  EXPECT_DEATH(ExponentialBuckets(0, 2, 3), "ExponentialBuckets");
}

// --- MetricsServer over TCP -------------------------------------------------

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    requests_ = &registry_.AddCounter("ppml_requests_total", "Requests.", {{"model", "fashion"}});
    requests_->Increment(7);
    auto server = MetricsServer::Start(registry_, "127.0.0.1", 0, [this] { return ready_.load(); });
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  Registry registry_;
  Counter* requests_ = nullptr;
  std::atomic<bool> ready_{false};
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(MetricsServerTest, PortZeroGivesARealPort) { EXPECT_NE(server_->port(), 0); }

TEST_F(MetricsServerTest, ServesMetrics) {
  HttpResponse response = Fetch(server_->port(), "GET", "/metrics");
  EXPECT_EQ(response.status, 200);
  EXPECT_NE(response.headers.find("content-type: text/plain; version=0.0.4; charset=utf-8"), std::string::npos)
      << response.headers;
  EXPECT_NE(response.body.find("# TYPE ppml_requests_total counter\n"), std::string::npos) << response.body;
  EXPECT_NE(response.body.find("ppml_requests_total{model=\"fashion\"} 7\n"), std::string::npos) << response.body;

  requests_->Increment();  // a later scrape sees the new value
  EXPECT_NE(Fetch(server_->port(), "GET", "/metrics?x=1").body.find("ppml_requests_total{model=\"fashion\"} 8\n"),
            std::string::npos);
}

TEST_F(MetricsServerTest, HeadHasHeadersButNoBody) {
  HttpResponse response = Fetch(server_->port(), "HEAD", "/metrics");
  EXPECT_EQ(response.status, 200);
  EXPECT_NE(response.headers.find("content-type: text/plain"), std::string::npos);
  const std::string get_body = Fetch(server_->port(), "GET", "/metrics").body;
  EXPECT_NE(response.headers.find("content-length: " + std::to_string(get_body.size())), std::string::npos)
      << response.headers;
  EXPECT_EQ(response.body, "");
}

TEST_F(MetricsServerTest, Healthz) {
  HttpResponse response = Fetch(server_->port(), "GET", "/healthz");
  EXPECT_EQ(response.status, 200);
  EXPECT_NE(response.headers.find("content-type: application/json"), std::string::npos);
  EXPECT_EQ(response.body, R"({"status":"ok"})");
}

TEST_F(MetricsServerTest, ReadyFollowsTheCallback) {
  HttpResponse response = Fetch(server_->port(), "GET", "/ready");
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.body, R"({"ready":false})");
  ready_ = true;
  response = Fetch(server_->port(), "GET", "/ready");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, R"({"ready":true})");
}

TEST_F(MetricsServerTest, UnknownPathIs404WithJson) {
  HttpResponse response = Fetch(server_->port(), "GET", "/nope");
  EXPECT_EQ(response.status, 404);
  EXPECT_NE(response.headers.find("content-type: application/json"), std::string::npos);
  EXPECT_EQ(response.body, R"({"error":"not found: /nope"})");
}

TEST_F(MetricsServerTest, OtherMethodsAre405) {
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    HttpResponse response = Fetch(server_->port(), method, "/metrics");
    EXPECT_EQ(response.status, 405) << method;
    EXPECT_NE(response.headers.find("allow: get, head"), std::string::npos) << method;
    EXPECT_EQ(response.body, R"({"error":"method not allowed"})") << method;
  }
}

TEST_F(MetricsServerTest, OccupiedPortFailsNamingTheAddress) {
  auto second = MetricsServer::Start(registry_, "127.0.0.1", server_->port());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  const std::string address = "127.0.0.1:" + std::to_string(server_->port());
  EXPECT_NE(second.status().message().find(address), std::string::npos) << second.status().ToString();
  EXPECT_NE(second.status().message().find(std::strerror(EADDRINUSE)), std::string::npos)
      << second.status().ToString();
}

TEST(MetricsServerStartTest, AddressNotOnThisMachineIsInvalidArgument) {
  Registry registry;
  auto server = MetricsServer::Start(registry, "192.0.2.1", 0);  // TEST-NET-1: never local
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), StatusCode::kInvalidArgument) << server.status().ToString();
  EXPECT_NE(server.status().message().find("192.0.2.1:0"), std::string::npos) << server.status().ToString();
}

TEST(MetricsServerStartTest, StartAndStopRepeatedly) {
  // The destructor must not hang, even right after Start.
  Registry registry;
  for (int i = 0; i < 50; ++i) {
    auto server = MetricsServer::Start(registry, "127.0.0.1", 0);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
  }
}

}  // namespace
}  // namespace ppml::metrics
