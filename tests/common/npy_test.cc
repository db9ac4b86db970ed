#include "common/npy.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace ppml {
namespace {

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(testing::TempDir()) / name).string();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::span<const std::byte> AsBytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

// A header exactly as np.save writes it: dict, spaces to a 64-byte boundary, '\n'.
std::string NumpyFile(const std::string& dict, int major = 1) {
  const size_t preamble = major == 1 ? 10 : 12;
  std::string header = dict;
  header.append((64 - (preamble + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header;
}

TEST(NpyTest, EncodesExactlyLikeNumpy) {
  // np.save(f, np.zeros((2, 3), np.float32)) with numpy 1.24.
  const std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  std::string expected =
      std::string("\x93NUMPY\x01\x00\x76\x00", 10) + header + std::string(118 - header.size() - 1, ' ') + "\n";
  expected += std::string(24, '\0');
  EXPECT_EQ(EncodeNpy(Tensor(DataType::kF32, {2, 3})), expected);
}

TEST(NpyTest, OneDimensionalAndScalarShapes) {
  const std::string vector = EncodeNpy(Tensor(DataType::kS64, {3}));
  EXPECT_NE(vector.find("'shape': (3,), }"), std::string::npos);
  EXPECT_EQ(vector.size(), 128u + 24u);
  const std::string scalar = EncodeNpy(Tensor(DataType::kF32, {}));
  EXPECT_NE(scalar.find("'shape': (), }"), std::string::npos);
  EXPECT_EQ(scalar.size(), 132u);
}

template <typename T>
void ExpectRoundTrip(DataType type, const std::vector<T>& values, const Shape& shape) {
  Tensor original = Tensor::FromVector<T>(shape, values);
  ASSERT_EQ(original.dtype(), type);
  const std::string path = TempPath("ppml_npy_round_trip.npy");
  ASSERT_TRUE(WriteNpyFile(path, original).ok());
  Result<Tensor> loaded = ReadNpyFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->dtype(), type);
  EXPECT_EQ(loaded->shape(), shape);
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(loaded->template data<T>()[i], values[i]);
  std::remove(path.c_str());
}

TEST(NpyTest, RoundTripsEveryType) {
  ExpectRoundTrip<float>(DataType::kF32, {1.5f, -2.f, 3.25f, 0.f, 1e-30f, 7.f}, {2, 3});
  ExpectRoundTrip<uint8_t>(DataType::kU8, {0, 128, 255}, {3});
  ExpectRoundTrip<int8_t>(DataType::kS8, {-128, 0, 127, 5}, {2, 1, 2});
  ExpectRoundTrip<int32_t>(DataType::kS32, {-1, 1 << 30}, {1, 2});
  ExpectRoundTrip<int64_t>(DataType::kS64, {int64_t{1} << 40, -7}, {2});
  ExpectRoundTrip<float>(DataType::kF32, {42.f}, {});
  ExpectRoundTrip<float>(DataType::kF32, {}, {0, 4});
}

TEST(NpyTest, ReadsVersion2AndDoubleQuotesAndUnpaddedHeaders) {
  std::string file = NumpyFile("{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": (2,)}", 2);
  const int32_t values[] = {7, -9};
  file.append(reinterpret_cast<const char*>(values), sizeof(values));
  Result<Tensor> tensor = ParseNpy(AsBytes(file), "v2.npy");
  ASSERT_TRUE(tensor.ok()) << tensor.status().ToString();
  EXPECT_EQ(tensor->dtype(), DataType::kS32);
  EXPECT_EQ(tensor->data<int32_t>()[1], -9);

  std::string tight = std::string("\x93NUMPY\x01\x00", 8);
  const std::string dict = "{'shape':(1,),'fortran_order':False,'descr':'|u1'}";
  tight += static_cast<char>(dict.size());
  tight += '\0';
  tight += dict + "\x2a";
  Result<Tensor> byte = ParseNpy(AsBytes(tight), "tight.npy");
  ASSERT_TRUE(byte.ok()) << byte.status().ToString();
  EXPECT_EQ(byte->data<uint8_t>()[0], 42);
}

TEST(NpyTest, BadMagic) {
  Result<Tensor> tensor = ParseNpy(AsBytes(std::string("PK\x03\x04 not numpy at all")), "x.npy");
  ASSERT_FALSE(tensor.ok());
  EXPECT_EQ(tensor.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(tensor.status().message(), "x.npy: not a .npy file (bad magic; expected \\x93NUMPY)");
  EXPECT_EQ(ParseNpy(AsBytes(std::string("")), "empty.npy").status().code(), StatusCode::kDataLoss);
}

TEST(NpyTest, UnsupportedVersion) {
  std::string file = NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }");
  file[6] = 4;
  Result<Tensor> tensor = ParseNpy(AsBytes(file), "x.npy");
  EXPECT_EQ(tensor.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(tensor.status().message().find("version 4.0"), std::string::npos);
}

TEST(NpyTest, UnsupportedDtypesNameTheFileAndType) {
  for (const char* descr : {"<f8", ">f4", "<f2", "|b1", "|O", "<U8", ">i4"}) {
    std::string file = NumpyFile("{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (1,), }");
    file += std::string(8, '\0');
    Result<Tensor> tensor = ParseNpy(AsBytes(file), "data/x.npy");
    ASSERT_FALSE(tensor.ok()) << descr;
    EXPECT_EQ(tensor.status().code(), StatusCode::kUnsupported) << descr;
    EXPECT_EQ(tensor.status().message().rfind("data/x.npy: .npy dtype '" + std::string(descr) + "'", 0), 0u)
        << tensor.status().message();
  }
}

TEST(NpyTest, FortranOrderIsUnsupported) {
  std::string file = NumpyFile("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }") + std::string(16, '\0');
  Result<Tensor> tensor = ParseNpy(AsBytes(file), "f.npy");
  EXPECT_EQ(tensor.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(tensor.status().message().find("Fortran"), std::string::npos);
}

TEST(NpyTest, TruncatedData) {
  std::string file = EncodeNpy(Tensor(DataType::kF32, {4, 4}));
  file.resize(file.size() - 3);
  Result<Tensor> tensor = ParseNpy(AsBytes(file), "t.npy");
  EXPECT_EQ(tensor.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(tensor.status().message(),
            "t.npy: truncated .npy data: shape [4,4] of f32 needs 64 bytes, file has 61");
}

TEST(NpyTest, TruncatedHeader) {
  std::string file = EncodeNpy(Tensor(DataType::kF32, {4}));
  file.resize(40);
  Result<Tensor> tensor = ParseNpy(AsBytes(file), "t.npy");
  EXPECT_EQ(tensor.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(tensor.status().message().find("truncated .npy header"), std::string::npos);
  EXPECT_EQ(ParseNpy(AsBytes(file.substr(0, 9)), "t.npy").status().code(), StatusCode::kDataLoss);
}

TEST(NpyTest, TrailingBytes) {
  std::string file = EncodeNpy(Tensor(DataType::kU8, {2})) + "junk";
  EXPECT_EQ(ParseNpy(AsBytes(file), "t.npy").status().code(), StatusCode::kDataLoss);
}

TEST(NpyTest, MalformedHeaders) {
  for (const std::string dict : {"not a dict", "{'descr': '<f4', 'shape': (1,)}",
                                 "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}",
                                 "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
                                 "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
                                 "{'descr': '<f4', 'fortran_order': False, 'shape': (1,"}) {
    Result<Tensor> tensor = ParseNpy(AsBytes(NumpyFile(dict) + std::string(4, '\0')), "m.npy");
    ASSERT_FALSE(tensor.ok()) << dict;
    EXPECT_EQ(tensor.status().code(), StatusCode::kDataLoss) << dict;
    EXPECT_EQ(tensor.status().message().rfind("m.npy: malformed .npy header", 0), 0u) << tensor.status().message();
  }
}

TEST(NpyTest, ImpossiblyLargeShapeIsRejectedWithoutAllocating) {
  std::string file = NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }");
  EXPECT_EQ(ParseNpy(AsBytes(file), "big.npy").status().code(), StatusCode::kDataLoss);
  std::string huge = NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }");
  EXPECT_EQ(ParseNpy(AsBytes(huge), "big.npy").status().code(), StatusCode::kDataLoss);
}

TEST(NpyTest, MissingFileAndUnwritablePath) {
  Result<Tensor> missing = ReadNpyFile("/nonexistent/x.npy");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "/nonexistent/x.npy: no such file");
  Status write = WriteNpyFile("/nonexistent/dir/y.npy", Tensor(DataType::kF32, {1}));
  EXPECT_EQ(write.code(), StatusCode::kIoError);
  EXPECT_EQ(write.message().rfind("/nonexistent/dir/y.npy: cannot create", 0), 0u);
}

TEST(NpyTest, ReadsAFileWrittenByHand) {
  const std::string path = TempPath("ppml_npy_by_hand.npy");
  std::string file = NumpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }");
  const float values[] = {0.25f, -8.f};
  file.append(reinterpret_cast<const char*>(values), sizeof(values));
  WriteBytes(path, file);
  Result<Tensor> tensor = ReadNpyFile(path);
  ASSERT_TRUE(tensor.ok()) << tensor.status().ToString();
  EXPECT_FLOAT_EQ(tensor->data<float>()[0], 0.25f);
  EXPECT_FLOAT_EQ(tensor->data<float>()[1], -8.f);
  std::remove(path.c_str());
}

TEST(NpyTest, AstypeHintNamesTheNumpyType) {
  EXPECT_EQ(NumpyAstype(DataType::kF32), "x.astype(np.float32)");
  EXPECT_EQ(NumpyAstype(DataType::kU8), "x.astype(np.uint8)");
  EXPECT_EQ(NumpyAstype(DataType::kS64), "x.astype(np.int64)");
}

}  // namespace
}  // namespace ppml
