// QuantizeSummary::ToTable: the per-node precision decisions as a table.
//
//   node        op       precision  input  threshold  reason
//   /conv1/Conv Conv     int8       u8        1.0000  s8 weights per output channel (axis 0)
//   /conv2/Conv Conv     int8       u8        4.2187  s8 weights per output channel (axis 0)
//   ...
//   int8 6, fp32 4, folded BatchNormalization 3; 9 Q/DQ pairs, 4 weights; calibration entropy
#include <algorithm>
#include <cstdio>
#include <sstream>

#include "int8/quantize.h"

namespace ppml::int8 {
namespace {

constexpr size_t kMaxNameWidth = 40;

std::string Fit(const std::string& s, size_t width) {
  if (s.size() <= width) return s + std::string(width - s.size(), ' ');
  return "..." + s.substr(s.size() - (width - 3));  // the end of a long name is the telling part
}

std::string FormatThreshold(float t) {
  if (t < 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4f", t);
  return buf;
}

}  // namespace

std::string QuantizeSummary::ToTable() const {
  size_t name_w = 4, op_w = 2;
  for (const auto& n : nodes) {
    name_w = std::max(name_w, std::min(n.name.size(), kMaxNameWidth));
    op_w = std::max(op_w, n.op.size());
  }
  std::ostringstream out;
  out << Fit("node", name_w) << "  " << Fit("op", op_w) << "  precision  input  threshold  reason\n";
  for (const auto& n : nodes) {
    std::string threshold = FormatThreshold(n.input_threshold);
    out << Fit(n.name, name_w) << "  " << Fit(n.op, op_w) << "  " << Fit(n.precision, 9) << "  "
        << Fit(n.input_type.empty() ? "-" : n.input_type, 5) << "  "
        << std::string(threshold.size() < 9 ? 9 - threshold.size() : 0, ' ') << threshold << "  " << n.reason
        << "\n";
  }
  out << "int8 " << int8_nodes << ", fp32 " << fp32_nodes << ", folded BatchNormalization " << folded_batchnorms
      << "; " << quantized_tensors << " Q/DQ pairs, " << quantized_weights << " weights; calibration "
      << CalibrationMethodName(method) << "\n";
  return out.str();
}

}  // namespace ppml::int8
