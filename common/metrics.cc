#include "common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace ppml::metrics {
namespace {

static_assert(std::atomic<double>::is_always_lock_free, "metrics need lock-free atomic<double>");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "metrics need lock-free atomic<uint64_t>");

// Registration misuse is a bug in our code (see metrics.h): say what and stop.
[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "ppml::metrics: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

bool IsMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool IsLabelName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Numbers as Prometheus' own clients print them: integers without a decimal
// point, otherwise the shortest form that reads back exactly.
void AppendNumber(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) {  // 2^53: exact in int64
    out += std::to_string(static_cast<int64_t>(v));
  } else {
    char buffer[32];
    const auto result = std::to_chars(buffer, buffer + sizeof(buffer), v);
    out.append(buffer, result.ptr);
  }
}

void AppendEscapedHelp(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

void AppendEscapedLabelValue(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

// {a="x",b="y"} with `extra` (the histogram's le) last; nothing when empty.
void AppendLabels(std::string& out, const Labels& labels, std::string_view extra_name = {},
                  std::string_view extra_value = {}) {
  if (labels.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  auto append = [&](std::string_view name, std::string_view value) {
    if (!first) out += ',';
    first = false;
    out += name;
    out += "=\"";
    AppendEscapedLabelValue(out, value);
    out += '"';
  };
  for (const auto& [name, value] : labels) append(name, value);
  if (!extra_name.empty()) append(extra_name, extra_value);
  out += '}';
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

void Counter::Increment(double by) {
  if (!(by >= 0)) return;  // negative or NaN: see metrics.h
  value_.fetch_add(by, std::memory_order_relaxed);
}

void Gauge::Add(double by) { value_.fetch_add(by, std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      buckets_(new std::atomic<uint64_t>[upper_bounds_.size() + 1]) {
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  // First bound >= v; NaN compares false with everything and lands in +Inf.
  const size_t index =
      std::isnan(v) ? upper_bounds_.size()
                    : static_cast<size_t>(std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), v) -
                                          upper_bounds_.begin());
  buckets_[index].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

uint64_t Histogram::count() const {
  uint64_t total = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) total += buckets_[i].load(std::memory_order_relaxed);
  return total;
}

std::vector<uint64_t> Histogram::cumulative_counts() const {
  // Each bucket is read once, so the counts are monotonic and the +Inf entry
  // matches _count even while other threads observe.
  std::vector<uint64_t> counts(upper_bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    counts[i] = running;
  }
  return counts;
}

struct Registry::Series {
  Labels labels;  // sorted by name
  std::unique_ptr<Counter> counter;
  std::unique_ptr<Gauge> gauge;
  std::unique_ptr<Histogram> histogram;
};

struct Registry::Family {
  std::string name;
  std::string help;
  MetricType type;
  std::vector<double> upper_bounds;  // histograms only
  std::vector<std::unique_ptr<Series>> series;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Family& Registry::FamilyFor(std::string_view name, std::string_view help, MetricType type,
                                      const std::vector<double>& upper_bounds) {
  if (!IsMetricName(name)) {
    Die("invalid metric name \"" + std::string(name) + "\" (must match [a-zA-Z_:][a-zA-Z0-9_:]*)");
  }
  const auto found = by_name_.find(std::string(name));
  if (found == by_name_.end()) {
    auto family = std::make_unique<Family>();
    family->name = std::string(name);
    family->help = std::string(help);
    family->type = type;
    family->upper_bounds = upper_bounds;
    Family& ref = *family;
    by_name_.emplace(ref.name, &ref);
    families_.push_back(std::move(family));
    return ref;
  }
  Family& family = *found->second;
  std::string quoted = "\"";  // built up in steps: GCC 12 warns falsely (-Wrestrict) on "x" + string
  quoted += name;
  quoted += '"';
  if (family.type != type) {
    Die("metric " + quoted + " registered as " + TypeName(type) +
        " but it is already a " + TypeName(family.type));
  }
  // One family has one # HELP line and one bucket layout.
  if (family.help != help) {
    Die("metric " + quoted + " registered with help \"" + std::string(help) + "\" but it already has \"" +
        family.help + "\"");
  }
  if (family.upper_bounds != upper_bounds) {
    Die("histogram " + quoted + " registered with bucket bounds that differ from its first registration");
  }
  return family;
}

Registry::Series& Registry::SeriesFor(Family& family, Labels labels) {
  for (const auto& [label, value] : labels) {
    if (!IsLabelName(label) || label.starts_with("__")) {
      Die("metric \"" + family.name + "\": invalid label name \"" + label +
          "\" (must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __)");
    }
    if (family.type == MetricType::kHistogram && label == "le") {
      Die("histogram \"" + family.name + "\": label \"le\" is reserved for buckets");
    }
  }
  std::stable_sort(labels.begin(), labels.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < labels.size(); ++i) {
    if (labels[i].first == labels[i - 1].first) {
      Die("metric \"" + family.name + "\": label \"" + labels[i].first + "\" given twice");
    }
  }
  for (const auto& series : family.series) {
    if (series->labels == labels) return *series;
  }
  auto series = std::make_unique<Series>();
  series->labels = std::move(labels);
  switch (family.type) {
    case MetricType::kCounter: series->counter = std::make_unique<Counter>(); break;
    case MetricType::kGauge: series->gauge = std::make_unique<Gauge>(); break;
    case MetricType::kHistogram: series->histogram = std::make_unique<Histogram>(family.upper_bounds); break;
  }
  family.series.push_back(std::move(series));
  return *family.series.back();
}

Counter& Registry::AddCounter(std::string_view name, std::string_view help, Labels labels) {
  std::lock_guard<std::mutex> lock(mu_);
  return *SeriesFor(FamilyFor(name, help, MetricType::kCounter, {}), std::move(labels)).counter;
}

Gauge& Registry::AddGauge(std::string_view name, std::string_view help, Labels labels) {
  std::lock_guard<std::mutex> lock(mu_);
  return *SeriesFor(FamilyFor(name, help, MetricType::kGauge, {}), std::move(labels)).gauge;
}

Histogram& Registry::AddHistogram(std::string_view name, std::string_view help,
                                  std::vector<double> upper_bounds, Labels labels) {
  if (upper_bounds.empty()) Die("histogram \"" + std::string(name) + "\" needs at least one bucket bound");
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (!std::isfinite(upper_bounds[i]) || (i > 0 && !(upper_bounds[i] > upper_bounds[i - 1]))) {
      Die("histogram \"" + std::string(name) +
          "\": bucket bounds must be finite and strictly increasing (+Inf is implied)");
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  return *SeriesFor(FamilyFor(name, help, MetricType::kHistogram, upper_bounds), std::move(labels)).histogram;
}

std::string Registry::Render() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);  // against registration; values are atomics
  for (const auto& family : families_) {
    out += "# HELP ";
    out += family->name;
    out += ' ';
    AppendEscapedHelp(out, family->help);
    out += "\n# TYPE ";
    out += family->name;
    out += ' ';
    out += TypeName(family->type);
    out += '\n';
    for (const auto& series : family->series) {
      if (family->type != MetricType::kHistogram) {
        out += family->name;
        AppendLabels(out, series->labels);
        out += ' ';
        AppendNumber(out, series->counter ? series->counter->value() : series->gauge->value());
        out += '\n';
        continue;
      }
      const Histogram& histogram = *series->histogram;
      const std::vector<uint64_t> counts = histogram.cumulative_counts();
      for (size_t i = 0; i < counts.size(); ++i) {
        std::string le;
        AppendNumber(le, i < family->upper_bounds.size() ? family->upper_bounds[i] : INFINITY);
        out += family->name;
        out += "_bucket";
        AppendLabels(out, series->labels, "le", le);
        out += ' ';
        out += std::to_string(counts[i]);
        out += '\n';
      }
      out += family->name;
      out += "_sum";
      AppendLabels(out, series->labels);
      out += ' ';
      AppendNumber(out, histogram.sum());
      out += '\n';
      out += family->name;
      out += "_count";
      AppendLabels(out, series->labels);
      out += ' ';
      out += std::to_string(counts.back());  // the +Inf bucket, so the two always agree
      out += '\n';
    }
  }
  return out;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1 || !std::isfinite(start) || !std::isfinite(factor)) {
    Die("ExponentialBuckets needs start > 0, factor > 1 and count >= 1");
  }
  std::vector<double> bounds;
  bounds.reserve(static_cast<size_t>(count));
  double bound = start;
  for (int i = 0; i < count; ++i) {
    if (!std::isfinite(bound)) Die("ExponentialBuckets overflows to infinity");
    bounds.push_back(bound);
    bound *= factor;
  }
  return bounds;
}

}  // namespace ppml::metrics
