// Reading one series from a Prometheus text page, for tests of /metrics.
#pragma once

#include <string>

namespace ppml::testing {

// The value of the series `name_and_labels` (e.g. ppml_x_total{code="200"}) in
// Prometheus text; -1 when absent.
inline double MetricValue(const std::string& text, const std::string& name_and_labels) {
  const std::string prefix = name_and_labels + " ";
  size_t at = 0;
  while ((at = text.find(prefix, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') {
      const size_t end = text.find('\n', at);
      return std::stod(text.substr(at + prefix.size(), end - at - prefix.size()));
    }
    at += prefix.size();
  }
  return -1;
}

}  // namespace ppml::testing
