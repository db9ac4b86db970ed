// The .npy layout (numpy/lib/format.py):
//
//   offset   size   field
//   0        6      magic "\x93NUMPY"
//   6        1      major version: 1, 2 or 3 (3 only allows a UTF-8 header)
//   7        1      minor version: 0
//   8        2 | 4  header length, little-endian: 2 bytes in 1.0, 4 in 2.0/3.0
//   10 | 12  len    header: a Python dict literal, e.g.
//                     {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//                   padded with spaces and a final '\n' so the data starts at a
//                   multiple of 64 bytes
//   ...             the elements, C order
#include "common/npy.h"

#include "common/file_io.h"

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

namespace ppml {
namespace {

static_assert(std::endian::native == std::endian::little, ".npy '<' types are read by memcpy");

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
constexpr size_t kAlignment = 64;

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};
using UniqueFile = std::unique_ptr<std::FILE, FileCloser>;


// The descr strings we accept. One-byte types have no byte order: numpy
// writes '|', but '<' and '>' mean the same for them.
std::optional<DataType> DataTypeFromDescr(std::string_view descr) {
  if (descr == "<f4") return DataType::kF32;
  if (descr == "|u1" || descr == "<u1" || descr == ">u1") return DataType::kU8;
  if (descr == "|i1" || descr == "<i1" || descr == ">i1") return DataType::kS8;
  if (descr == "<i4") return DataType::kS32;
  if (descr == "<i8") return DataType::kS64;
  return std::nullopt;
}

const char* NumpyName(DataType type) {
  switch (type) {
    case DataType::kF32: return "float32";
    case DataType::kU8: return "uint8";
    case DataType::kS8: return "int8";
    case DataType::kS32: return "int32";
    case DataType::kS64: return "int64";
  }
  return "?";
}

const char* DescrFor(DataType type) {
  switch (type) {
    case DataType::kF32: return "<f4";
    case DataType::kU8: return "|u1";
    case DataType::kS8: return "|i1";
    case DataType::kS32: return "<i4";
    case DataType::kS64: return "<i8";
  }
  return "?";
}

// Parses the header dict. Only the literal forms np.save writes are needed:
// quoted strings, True/False and tuples of non-negative integers.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name) : text_(text), name_(name) {}

  Status Parse(std::string* descr, bool* fortran_order, Shape* shape) {
    bool have_descr = false, have_order = false, have_shape = false;
    SkipSpace();
    if (!Consume('{')) return Error("header does not start with '{'");
    while (true) {
      SkipSpace();
      if (Consume('}')) break;
      std::string key;
      PPML_RETURN_IF_ERROR(ParseString(&key));
      SkipSpace();
      if (!Consume(':')) return Error("expected ':' after '" + key + "'");
      SkipSpace();
      if (key == "descr") {
        PPML_RETURN_IF_ERROR(ParseString(descr));
        have_descr = true;
      } else if (key == "fortran_order") {
        PPML_RETURN_IF_ERROR(ParseBool(fortran_order));
        have_order = true;
      } else if (key == "shape") {
        PPML_RETURN_IF_ERROR(ParseShape(shape));
        have_shape = true;
      } else {
        return Error("unexpected key '" + key + "'");
      }
      SkipSpace();
      if (Consume(',')) continue;
      SkipSpace();
      if (Consume('}')) break;
      return Error("expected ',' or '}'");
    }
    if (!have_descr || !have_order || !have_shape) {
      return Error("header lacks one of 'descr', 'fortran_order', 'shape'");
    }
    return Status::Ok();
  }

 private:
  Status Error(const std::string& what) const {
    return Status::DataLoss(name_ + ": malformed .npy header (" + what + "): " + std::string(text_));
  }
  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\t')) ++pos_;
  }
  bool Consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool ConsumeWord(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  Status ParseString(std::string* out) {
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) return Error("expected a string");
    const char quote = text_[pos_++];
    const size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) return Error("unterminated string");
    *out = std::string(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return Status::Ok();
  }
  Status ParseBool(bool* out) {
    if (ConsumeWord("True")) {
      *out = true;
    } else if (ConsumeWord("False")) {
      *out = false;
    } else {
      return Error("expected True or False");
    }
    return Status::Ok();
  }
  Status ParseShape(Shape* out) {
    out->clear();
    if (!Consume('(')) return Error("expected a tuple for 'shape'");
    while (true) {
      SkipSpace();
      if (Consume(')')) return Status::Ok();
      const size_t start = pos_;
      int64_t value = 0;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        if (value > (INT64_MAX - 9) / 10) return Error("dimension too large");
        value = value * 10 + (text_[pos_++] - '0');
      }
      if (pos_ == start) return Error("expected a non-negative integer in 'shape'");
      if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;  // Python 2 long suffix
      out->push_back(value);
      SkipSpace();
      if (Consume(',')) continue;
      SkipSpace();
      if (Consume(')')) return Status::Ok();
      return Error("expected ',' or ')' in 'shape'");
    }
  }

  std::string_view text_;
  const std::string& name_;
  size_t pos_ = 0;
};

uint32_t ReadLittleEndian(const unsigned char* p, size_t size) {
  uint32_t value = 0;
  for (size_t i = 0; i < size; ++i) value |= static_cast<uint32_t>(p[i]) << (8 * i);
  return value;
}

}  // namespace

Result<Tensor> ParseNpy(std::span<const std::byte> bytes, const std::string& name) {
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < kMagicSize + 2 || std::memcmp(data, kMagic, kMagicSize) != 0) {
    return Status::DataLoss(name + ": not a .npy file (bad magic; expected \\x93NUMPY)");
  }
  const int major = data[6];
  const int minor = data[7];
  if (major < 1 || major > 3 || minor != 0) {
    return Status::Unsupported(name + ": .npy format version " + std::to_string(major) + "." +
                               std::to_string(minor) + " is not supported (expected 1.0, 2.0 or 3.0)");
  }
  const size_t length_size = major == 1 ? 2 : 4;
  const size_t header_start = kMagicSize + 2 + length_size;
  if (bytes.size() < header_start) return Status::DataLoss(name + ": truncated .npy preamble");
  const size_t header_length = ReadLittleEndian(data + kMagicSize + 2, length_size);
  if (bytes.size() - header_start < header_length) {
    return Status::DataLoss(name + ": truncated .npy header (needs " + std::to_string(header_length) +
                            " bytes, file has " + std::to_string(bytes.size() - header_start) + ")");
  }
  const std::string_view header(reinterpret_cast<const char*>(data + header_start), header_length);

  std::string descr;
  bool fortran_order = false;
  Shape shape;
  PPML_RETURN_IF_ERROR(HeaderParser(header, name).Parse(&descr, &fortran_order, &shape));

  const std::optional<DataType> dtype = DataTypeFromDescr(descr);
  if (!dtype) {
    return Status::Unsupported(name + ": .npy dtype '" + descr +
                               "' is not supported (use float32 '<f4', uint8, int8, int32 or int64, little-endian)");
  }
  if (fortran_order) {
    return Status::Unsupported(name + ": Fortran-order .npy arrays are not supported (save with np.ascontiguousarray)");
  }

  // Size the data with overflow checks: a corrupt shape must not make us allocate petabytes.
  const size_t available = bytes.size() - header_start - header_length;
  uint64_t expected = ElementSize(*dtype);
  for (int64_t dim : shape) {
    if (__builtin_mul_overflow(expected, static_cast<uint64_t>(dim), &expected)) {
      return Status::DataLoss(name + ": .npy shape " + ShapeToString(shape) + " is impossibly large");
    }
  }
  if (available < expected) {
    return Status::DataLoss(name + ": truncated .npy data: shape " + ShapeToString(shape) + " of " +
                            DataTypeName(*dtype) + " needs " + std::to_string(expected) + " bytes, file has " +
                            std::to_string(available));
  }
  if (available > expected) {
    return Status::DataLoss(name + ": " + std::to_string(available - expected) +
                            " unexpected bytes after the .npy data of shape " + ShapeToString(shape));
  }
  Tensor tensor(*dtype, shape);
  if (expected > 0) std::memcpy(tensor.raw_data(), data + header_start + header_length, expected);
  return tensor;
}

std::string EncodeNpy(const Tensor& tensor) {
  std::string header = "{'descr': '";
  header += DescrFor(tensor.dtype());
  header += "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < tensor.shape().size(); ++i) {
    if (i) header += ", ";
    header += std::to_string(tensor.shape()[i]);
  }
  if (tensor.shape().size() == 1) header += ",";  // a 1-tuple in Python needs the comma
  header += "), }";

  // Version 1.0 unless the header outgrows its 16-bit length field.
  int major = 1;
  size_t preamble = kMagicSize + 2 + 2;
  if (preamble + header.size() + 1 > 65535) {
    major = 2;
    preamble = kMagicSize + 2 + 4;
  }
  const size_t unpadded = preamble + header.size() + 1;  // +1: the final '\n'
  header.append((kAlignment - unpadded % kAlignment) % kAlignment, ' ');
  header += '\n';

  std::string out(kMagic, kMagicSize);
  out += static_cast<char>(major);
  out += '\0';
  const size_t header_length = header.size();
  for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) out += static_cast<char>((header_length >> (8 * i)) & 0xff);
  out += header;
  out.append(reinterpret_cast<const char*>(tensor.raw_data()), tensor.byte_size());
  return out;
}

Result<Tensor> ReadNpyFile(const std::string& path) {
  PPML_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return ParseNpy(std::as_bytes(std::span(bytes.data(), bytes.size())), path);
}

Status WriteNpyFile(const std::string& path, const Tensor& tensor) {
  const std::string bytes = EncodeNpy(tensor);
  UniqueFile file(std::fopen(path.c_str(), "wb"));
  if (!file) {
    const int error = errno;
    return Status::IoError(path + ": cannot create: " + std::strerror(error));
  }
  if (std::fwrite(bytes.data(), 1, bytes.size(), file.get()) != bytes.size()) {
    const int error = errno;
    return Status::IoError(path + ": write failed: " + std::strerror(error));
  }
  // fclose flushes; a full disk shows up here, so do not leave it to the deleter.
  if (std::fclose(file.release()) != 0) {
    const int error = errno;
    return Status::IoError(path + ": write failed: " + std::strerror(error));
  }
  return Status::Ok();
}

std::string NumpyAstype(DataType type) { return std::string("x.astype(np.") + NumpyName(type) + ")"; }

}  // namespace ppml
