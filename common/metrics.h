// Prometheus metrics: counters, gauges and histograms kept in a Registry and
// rendered in the text exposition format 0.0.4 for a scraper
// (common/metrics_server.h serves Render() over HTTP).
//
//   metrics::Registry registry;
//   metrics::Counter& requests = registry.AddCounter(
//       "ppml_requests_total", "Inference requests handled.", {{"model", "fashion_cnn"}});
//   metrics::Histogram& latency = registry.AddHistogram(
//       "ppml_request_seconds", "End-to-end request latency.",
//       metrics::ExponentialBuckets(0.001, 2, 12));
//   requests.Increment();
//   latency.Observe(0.042);
//
// A family is one metric name with one help text and one type; each distinct
// label set registered under that name is another series of the family.
// Registering the same name and labels again returns the existing metric, so
// two components may share a series without passing it around.
//
// Misuse at registration (a name or label name Prometheus rejects, a family
// re-registered with another type, help or bucket layout, bad bucket bounds)
// is a bug in our code, not bad input: it writes one line to stderr and
// aborts, so it shows on the first run rather than as a missing series.
//
// Thread safety: Increment, Add, Set and Observe are lock-free and may be
// called from any thread; Render may run on another thread at the same time;
// registration takes the registry's lock. References returned by Add* stay
// valid for the registry's life.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ppml::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kHistogram };

// Only goes up. A negative or NaN increment is dropped: a counter that went
// down would read as a process restart to Prometheus' rate().
class Counter {
 public:
  void Increment(double by = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double by);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets by upper bound (an observation equal to a
// bound falls in that bucket), plus the implicit +Inf bucket; NaN goes to +Inf.
class Histogram {
 public:
  // `upper_bounds` must be finite and strictly increasing (checked by Registry).
  explicit Histogram(std::vector<double> upper_bounds);

  void Observe(double v);
  // Observations so far; always equals the +Inf entry of cumulative_counts().
  uint64_t count() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  // Cumulative counts as Prometheus exposes them: entry i counts observations
  // <= upper_bounds()[i]; the last entry (one past the bounds) is +Inf.
  std::vector<uint64_t> cumulative_counts() const;

 private:
  std::vector<double> upper_bounds_;
  // Per-bucket (not cumulative) counts, so Observe touches one counter.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
  // and must not start with "__" (reserved) or repeat within one series.
  // Label order does not matter: {a,b} and {b,a} are the same series.
  Counter& AddCounter(std::string_view name, std::string_view help, Labels labels = {});
  Gauge& AddGauge(std::string_view name, std::string_view help, Labels labels = {});
  // `upper_bounds`: finite, strictly increasing, at least one; +Inf is implied.
  // Every series of a family must use the same bounds. "le" is not a valid label.
  Histogram& AddHistogram(std::string_view name, std::string_view help,
                          std::vector<double> upper_bounds, Labels labels = {});

  // Text exposition format 0.0.4: families in registration order, each with
  // one # HELP and # TYPE block, then its series in registration order.
  std::string Render() const;

 private:
  struct Series;
  struct Family;
  // Both run under mu_ and abort on misuse.
  Family& FamilyFor(std::string_view name, std::string_view help, MetricType type,
                    const std::vector<double>& upper_bounds);
  Series& SeriesFor(Family& family, Labels labels);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;
  std::unordered_map<std::string, Family*> by_name_;
};

// `count` bounds: start, start*factor, start*factor^2, ...
// Requires start > 0, factor > 1, count >= 1 (aborts otherwise, as above).
std::vector<double> ExponentialBuckets(double start, double factor, int count);

}  // namespace ppml::metrics
