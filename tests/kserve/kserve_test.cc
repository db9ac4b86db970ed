#include "common/kserve.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ppml::kserve {
namespace {

using Body = std::vector<uint8_t>;

Body Text(std::string_view text) { return Body(text.begin(), text.end()); }

Result<InferRequest> ParseJson(std::string_view json) { return ParseInferRequest(Text(json), std::nullopt); }

// The body `json` followed by `binary`, with its header length.
Result<InferRequest> ParseWithBinary(std::string_view json, const Body& binary) {
  Body body = Text(json);
  body.insert(body.end(), binary.begin(), binary.end());
  return ParseInferRequest(body, json.size());
}

template <typename T>
Body RawBytes(const std::vector<T>& values) {
  Body bytes(values.size() * sizeof(T));
  if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

// Bitwise equality: 0.0f and -0.0f differ, and a NaN equals itself.
void ExpectSameTensor(const Tensor& actual, const Tensor& expected) {
  EXPECT_EQ(actual.dtype(), expected.dtype());
  EXPECT_EQ(actual.shape(), expected.shape());
  ASSERT_EQ(actual.byte_size(), expected.byte_size());
  EXPECT_EQ(0, std::memcmp(actual.raw_data(), expected.raw_data(), actual.byte_size()));
}

void ExpectSameTensors(const std::vector<NamedTensor>& actual, const std::vector<NamedTensor>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_EQ(actual[i].name, expected[i].name);
    ExpectSameTensor(actual[i].tensor, expected[i].tensor);
  }
}

// Expects an error of `code` whose message contains every one of `parts`.
template <typename T>
void ExpectError(const Result<T>& result, StatusCode code, std::initializer_list<std::string_view> parts) {
  ASSERT_FALSE(result.ok()) << "expected an error containing " << *parts.begin();
  EXPECT_EQ(result.status().code(), code) << result.status().ToString();
  for (std::string_view part : parts) {
    EXPECT_NE(result.status().message().find(part), std::string::npos)
        << "message \"" << result.status().message() << "\" lacks \"" << part << "\"";
  }
}

template <typename T>
void ExpectInvalid(const Result<T>& result, std::initializer_list<std::string_view> parts) {
  ExpectError(result, StatusCode::kInvalidArgument, parts);
}

// A tensor of every supported type holding that type's edge values.
Tensor EdgeValues(DataType type) {
  switch (type) {
    case DataType::kF32: {
      const float denormal = std::numeric_limits<float>::denorm_min();
      return Tensor::FromVector<float>({2, 5}, {0.1f, -0.0f, denormal, std::numeric_limits<float>::max(),
                                                 -std::numeric_limits<float>::max(), std::numeric_limits<float>::min(),
                                                 3.14159265f, 16777216.0f, -1.0e-30f, 1.0f / 3.0f});
    }
    case DataType::kU8: return Tensor::FromVector<uint8_t>({4}, {0, 1, 128, 255});
    case DataType::kS8: return Tensor::FromVector<int8_t>({2, 2}, {-128, -1, 0, 127});
    case DataType::kS32:
      return Tensor::FromVector<int32_t>(
          {1, 3}, {std::numeric_limits<int32_t>::min(), 0, std::numeric_limits<int32_t>::max()});
    case DataType::kS64:
      return Tensor::FromVector<int64_t>(
          {3}, {std::numeric_limits<int64_t>::min(), -9007199254740993, std::numeric_limits<int64_t>::max()});
  }
  return Tensor();
}

constexpr DataType kAllTypes[] = {DataType::kF32, DataType::kU8, DataType::kS8, DataType::kS32, DataType::kS64};

InferRequest EdgeRequest() {
  InferRequest request;
  request.id = "req-1";
  for (DataType type : kAllTypes) request.inputs.push_back({std::string("in_") + DataTypeName(type), EdgeValues(type)});
  return request;
}

// ---- Round trips --------------------------------------------------------------------

class RoundTripTest : public ::testing::TestWithParam<bool> {};  // param: binary

TEST_P(RoundTripTest, RequestOfEveryDatatype) {
  const bool binary = GetParam();
  for (DataType type : kAllTypes) {
    SCOPED_TRACE(DataTypeName(type));
    InferRequest request;
    request.inputs.push_back({"x", EdgeValues(type)});
    auto encoded = EncodeInferRequest(request, binary);
    ASSERT_TRUE(encoded.ok()) << encoded.status().ToString();
    EXPECT_EQ(encoded->json_length.has_value(), binary);
    auto parsed = ParseInferRequest(encoded->body, encoded->json_length);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    ExpectSameTensors(parsed->inputs, request.inputs);
  }
}

TEST_P(RoundTripTest, RequestWithAllDatatypesAtOnce) {
  const bool binary = GetParam();
  InferRequest request = EdgeRequest();
  auto encoded = EncodeInferRequest(request, binary);
  ASSERT_TRUE(encoded.ok()) << encoded.status().ToString();
  auto parsed = ParseInferRequest(encoded->body, encoded->json_length);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->id, "req-1");
  ExpectSameTensors(parsed->inputs, request.inputs);
  if (binary) {
    // The binary section is exactly the tensors' bytes, back to back in input order.
    size_t offset = *encoded->json_length;
    for (const NamedTensor& input : request.inputs) {
      ASSERT_LE(offset + input.tensor.byte_size(), encoded->body.size());
      EXPECT_EQ(0, std::memcmp(encoded->body.data() + offset, input.tensor.raw_data(), input.tensor.byte_size()));
      offset += input.tensor.byte_size();
    }
    EXPECT_EQ(offset, encoded->body.size());
  }
}

TEST_P(RoundTripTest, ResponseOfEveryDatatype) {
  const bool binary = GetParam();
  InferResponse response;
  response.model_name = "fashion_cnn";
  response.model_version = "3";
  response.id = "r\"7";
  for (DataType type : kAllTypes) response.outputs.push_back({std::string("out_") + DataTypeName(type), EdgeValues(type)});
  InferRequest request;
  request.binary_output = binary;
  auto encoded = EncodeInferResponse(response, request);
  ASSERT_TRUE(encoded.ok()) << encoded.status().ToString();
  EXPECT_EQ(encoded->json_length.has_value(), binary);
  auto parsed = ParseInferResponse(encoded->body, encoded->json_length);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->model_name, "fashion_cnn");
  EXPECT_EQ(parsed->model_version, "3");
  EXPECT_EQ(parsed->id, "r\"7");
  ExpectSameTensors(parsed->outputs, response.outputs);
}

INSTANTIATE_TEST_SUITE_P(JsonAndBinary, RoundTripTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Binary" : "Json"; });

TEST(KServe, FloatsRoundTripExactlyThroughJson) {
  std::mt19937 rng(1234);
  // +-7.038531e-26 is the one float whose shortest decimal, rounded to a
  // double and then to a float, comes back one ulp off.
  std::vector<float> values = {7.038531e-26f, -7.038531e-26f};
  while (values.size() < 50000) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isfinite(f)) values.push_back(f);
  }
  InferRequest request;
  request.inputs.push_back({"x", Tensor::FromVector<float>({static_cast<int64_t>(values.size())}, values)});
  auto encoded = EncodeInferRequest(request, /*binary_inputs=*/false);
  ASSERT_TRUE(encoded.ok());
  auto parsed = ParseInferRequest(encoded->body, std::nullopt);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ExpectSameTensor(parsed->inputs[0].tensor, request.inputs[0].tensor);
}

TEST(KServe, EncodesTheDocumentedJson) {
  InferRequest request;
  request.id = "a";
  request.inputs.push_back({"x", Tensor::FromVector<float>({2}, {0.1f, -2.0f})});
  request.inputs.push_back({"y", Tensor::FromVector<int8_t>({1}, {-5})});
  request.outputs.push_back({"z", true});
  auto encoded = EncodeInferRequest(request, false);
  ASSERT_TRUE(encoded.ok());
  EXPECT_EQ(std::string(encoded->body.begin(), encoded->body.end()),
            R"({"id":"a","inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[0.1,-2]},)"
            R"({"name":"y","datatype":"INT8","shape":[1],"data":[-5]}],)"
            R"("outputs":[{"name":"z","parameters":{"binary_data":true}}]})");
  EXPECT_FALSE(encoded->json_length.has_value());

  auto binary = EncodeInferRequest(request, true);
  ASSERT_TRUE(binary.ok());
  const std::string json(binary->body.begin(), binary->body.begin() + static_cast<ptrdiff_t>(*binary->json_length));
  EXPECT_EQ(json,
            R"({"id":"a","inputs":[{"name":"x","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}},)"
            R"({"name":"y","datatype":"INT8","shape":[1],"parameters":{"binary_data_size":1}}],)"
            R"("outputs":[{"name":"z","parameters":{"binary_data":true}}]})");
  EXPECT_EQ(binary->body.size(), json.size() + 9);
}

TEST(KServe, ZeroElementAndScalarTensors) {
  for (bool binary : {false, true}) {
    InferRequest request;
    request.inputs.push_back({"empty", Tensor(DataType::kF32, {2, 0, 3})});
    request.inputs.push_back({"scalar", Tensor::FromVector<int64_t>({}, {42})});
    auto encoded = EncodeInferRequest(request, binary);
    ASSERT_TRUE(encoded.ok());
    auto parsed = ParseInferRequest(encoded->body, encoded->json_length);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    ExpectSameTensors(parsed->inputs, request.inputs);
  }
}

TEST(KServe, MixedJsonAndBinaryInputs) {
  const std::vector<float> b = {1.5f, -2.25f};
  auto parsed = ParseWithBinary(
      R"({"inputs":[{"name":"a","shape":[2],"datatype":"INT32","data":[7,8]},)"
      R"({"name":"b","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]})",
      RawBytes(b));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ASSERT_EQ(parsed->inputs.size(), 2u);
  ExpectSameTensor(parsed->inputs[0].tensor, Tensor::FromVector<int32_t>({2}, {7, 8}));
  ExpectSameTensor(parsed->inputs[1].tensor, Tensor::FromVector<float>({2}, b));
}

TEST(KServe, HeaderLengthEqualToBodyMeansJsonOnly) {
  const std::string json = R"({"inputs":[{"name":"a","shape":[1],"datatype":"UINT8","data":[9]}]})";
  auto parsed = ParseInferRequest(Text(json), json.size());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->inputs[0].tensor.values<uint8_t>()[0], 9);
}

// ---- Nested data --------------------------------------------------------------------

TEST(KServe, NestedDataEqualsFlatData) {
  auto nested = ParseJson(R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32","data":[[1,2,3],[4,5,6]]}]})");
  auto flat = ParseJson(R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32","data":[1,2,3,4,5,6]}]})");
  ASSERT_TRUE(nested.ok()) << nested.status().ToString();
  ASSERT_TRUE(flat.ok()) << flat.status().ToString();
  ExpectSameTensor(nested->inputs[0].tensor, Tensor::FromVector<int32_t>({2, 3}, {1, 2, 3, 4, 5, 6}));
  ExpectSameTensor(flat->inputs[0].tensor, nested->inputs[0].tensor);
}

TEST(KServe, NestedDataOfRankThree) {
  auto parsed = ParseJson(
      R"({"inputs":[{"name":"x","shape":[2,1,2],"datatype":"FP32","data":[[[0.5,1]],[[-1,2e3]]]}]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ExpectSameTensor(parsed->inputs[0].tensor, Tensor::FromVector<float>({2, 1, 2}, {0.5f, 1.0f, -1.0f, 2000.0f}));
}

TEST(KServe, NestedDataMustMatchTheShape) {
  ExpectInvalid(ParseJson(R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32","data":[[1,2],[3,4,5]]}]})"),
                {"input \"x\"", "data", "nested level 1 has 2 elements", "[2,3]"});
  ExpectInvalid(ParseJson(R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32","data":[[1,2,3,4,5,6]]}]})"),
                {"input \"x\"", "data", "nested level 0 has 1 elements"});
  ExpectInvalid(ParseJson(R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32","data":[[1,2,3],4]}]})"),
                {"input \"x\"", "data", "nested less deeply"});
  ExpectInvalid(ParseJson(R"({"inputs":[{"name":"x","shape":[1,1],"datatype":"INT32","data":[[[1]]]}]})"),
                {"input \"x\"", "data element 0", "array where a number belongs"});
  ExpectInvalid(ParseJson(R"({"inputs":[{"name":"x","shape":[2],"datatype":"INT32","data":[1,[2]]}]})"),
                {"input \"x\"", "data element 1", "array where a number belongs"});
  ExpectInvalid(ParseJson(R"({"inputs":[{"name":"x","shape":[],"datatype":"INT32","data":[[1]]}]})"),
                {"input \"x\"", "data element 0", "array"});
}

// ---- Request id and requested outputs --------------------------------------------------------

TEST(KServe, RequestIdHandling) {
  const std::string inputs = R"("inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]}])";
  auto absent = ParseJson("{" + inputs + "}");
  ASSERT_TRUE(absent.ok());
  EXPECT_EQ(absent->id, "");
  auto escaped = ParseJson(R"({"id":"a\"b\\c\u00e9\n",)" + inputs + "}");
  ASSERT_TRUE(escaped.ok()) << escaped.status().ToString();
  EXPECT_EQ(escaped->id, "a\"b\\c\xc3\xa9\n");
  ExpectInvalid(ParseJson(R"({"id":17,)" + inputs + "}"), {"inference request", "\"id\" is not a string"});

  // The id survives an encode/parse round trip however it is spelled.
  InferRequest request;
  request.id = escaped->id;
  request.inputs.push_back({"x", Tensor::FromVector<int8_t>({1}, {1})});
  auto encoded = EncodeInferRequest(request, false);
  ASSERT_TRUE(encoded.ok());
  auto again = ParseInferRequest(encoded->body, std::nullopt);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, request.id);
}

TEST(KServe, RequestedOutputsAndBinaryChoices) {
  auto parsed = ParseJson(
      R"({"parameters":{"binary_data_output":true,"priority":3},)"
      R"("inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]}],)"
      R"("outputs":[{"name":"logits"},{"name":"probs","parameters":{"binary_data":false}},)"
      R"({"name":"extra","parameters":{"binary_data":true}}]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_TRUE(parsed->binary_output);
  ASSERT_EQ(parsed->outputs.size(), 3u);
  EXPECT_EQ(parsed->outputs[0].name, "logits");
  EXPECT_TRUE(parsed->outputs[0].binary);  // inherits binary_data_output
  EXPECT_EQ(parsed->outputs[1].name, "probs");
  EXPECT_FALSE(parsed->outputs[1].binary);  // its own binary_data wins
  EXPECT_TRUE(parsed->outputs[2].binary);
  EXPECT_TRUE(parsed->WantsBinary("logits"));
  EXPECT_FALSE(parsed->WantsBinary("probs"));
  EXPECT_TRUE(parsed->WantsBinary("unlisted"));

  auto plain = ParseJson(R"({"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]}],)"
                         R"("outputs":[{"name":"a","parameters":{"binary_data":true}},{"name":"b"}]})");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_FALSE(plain->binary_output);
  EXPECT_TRUE(plain->WantsBinary("a"));
  EXPECT_FALSE(plain->WantsBinary("b"));
  EXPECT_FALSE(plain->WantsBinary("unlisted"));

  // Encode keeps every choice.
  InferRequest request;
  request.binary_output = true;
  request.inputs.push_back({"x", Tensor::FromVector<int8_t>({1}, {1})});
  request.outputs = {{"a", true}, {"b", false}};
  auto encoded = EncodeInferRequest(request, false);
  ASSERT_TRUE(encoded.ok());
  auto again = ParseInferRequest(encoded->body, std::nullopt);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->binary_output);
  ASSERT_EQ(again->outputs.size(), 2u);
  EXPECT_TRUE(again->outputs[0].binary);
  EXPECT_FALSE(again->outputs[1].binary);
}

TEST(KServe, ResponseWritesEachOutputAsTheRequestAsked) {
  InferRequest request;
  request.outputs = {{"a", true}, {"b", false}};
  InferResponse response;
  response.model_name = "m";
  response.outputs.push_back({"a", Tensor::FromVector<float>({2}, {1.0f, 2.0f})});
  response.outputs.push_back({"b", Tensor::FromVector<int64_t>({1}, {5})});
  auto encoded = EncodeInferResponse(response, request);
  ASSERT_TRUE(encoded.ok());
  ASSERT_TRUE(encoded->json_length.has_value());
  const std::string json(encoded->body.begin(), encoded->body.begin() + static_cast<ptrdiff_t>(*encoded->json_length));
  EXPECT_EQ(json,
            R"({"model_name":"m","outputs":[{"name":"a","datatype":"FP32","shape":[2],)"
            R"("parameters":{"binary_data_size":8}},{"name":"b","datatype":"INT64","shape":[1],"data":[5]}]})");
  EXPECT_EQ(encoded->body.size(), json.size() + 8);
  auto parsed = ParseInferResponse(encoded->body, encoded->json_length);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ExpectSameTensors(parsed->outputs, response.outputs);
}

TEST(KServe, NonFiniteFloatsTravelOnlyAsBinary) {
  InferResponse response;
  response.model_name = "m";
  const float nan = std::numeric_limits<float>::quiet_NaN();
  response.outputs.push_back({"y", Tensor::FromVector<float>({3}, {1.0f, nan, -INFINITY})});
  ExpectInvalid(EncodeInferResponse(response, InferRequest{}), {"output \"y\"", "element 1", "binary"});
  InferRequest binary;
  binary.binary_output = true;
  auto encoded = EncodeInferResponse(response, binary);
  ASSERT_TRUE(encoded.ok());
  auto parsed = ParseInferResponse(encoded->body, encoded->json_length);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ExpectSameTensors(parsed->outputs, response.outputs);

  InferRequest request;
  request.inputs.push_back({"x", Tensor::FromVector<float>({1}, {INFINITY})});
  ExpectInvalid(EncodeInferRequest(request, false), {"input \"x\"", "element 0"});
  EXPECT_TRUE(EncodeInferRequest(request, true).ok());
}

TEST(KServe, RequestedOutputErrors) {
  const std::string inputs = R"("inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]}])";
  ExpectInvalid(ParseJson("{" + inputs + R"(,"outputs":{"name":"a"}})"), {"outputs: not an array"});
  ExpectInvalid(ParseJson("{" + inputs + R"(,"outputs":[{"parameters":{}}]})"), {"outputs[0]", "\"name\""});
  ExpectInvalid(ParseJson("{" + inputs + R"(,"outputs":[{"name":"a"},{"name":"a"}]})"),
                {"output \"a\"", "requested twice"});
  ExpectInvalid(ParseJson("{" + inputs + R"(,"outputs":[{"name":"a","parameters":{"binary_data":1}}]})"),
                {"output \"a\"", "\"binary_data\" is not a boolean"});
  ExpectError(ParseJson("{" + inputs + R"(,"outputs":[{"name":"a","parameters":{"classification":2}}]})"),
              StatusCode::kUnsupported, {"output \"a\"", "parameters.classification"});
  ExpectInvalid(ParseJson("{" + inputs + R"(,"parameters":{"binary_data_output":"yes"}})"),
                {"parameters", "\"binary_data_output\" is not a boolean"});
}

// ---- Request errors ---------------------------------------------------------------------

std::string OneInput(std::string_view fields) { return R"({"inputs":[{"name":"x",)" + std::string(fields) + "}]}"; }

TEST(KServe, StructureErrors) {
  ExpectInvalid(ParseJson(R"({"id":"a"})"), {"inference request", "missing \"inputs\""});
  ExpectInvalid(ParseJson(R"({"inputs":{}})"), {"inputs: not an array"});
  ExpectInvalid(ParseJson(R"({"inputs":[]})"), {"inputs: empty"});
  ExpectInvalid(ParseJson(R"({"inputs":[7]})"), {"inputs[0]", "expected a JSON object"});
  ExpectInvalid(ParseJson(R"({"inputs":[{"shape":[1],"datatype":"INT8","data":[1]}]})"),
                {"inputs[0]", "missing \"name\""});
  ExpectInvalid(ParseJson(R"({"inputs":[{"name":"","shape":[1],"datatype":"INT8","data":[1]}]})"),
                {"inputs[0]", "name"});
  ExpectInvalid(ParseJson(R"({"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]},)"
                          R"({"name":"x","shape":[1],"datatype":"INT8","data":[2]}]})"),
                {"input \"x\"", "duplicate input name"});
  ExpectInvalid(ParseJson(OneInput(R"("shape":[1],"data":[1])")), {"input \"x\"", "missing \"datatype\""});
  ExpectInvalid(ParseJson(OneInput(R"("datatype":"INT8","data":[1])")), {"input \"x\"", "missing \"shape\""});
  ExpectInvalid(ParseJson(OneInput(R"("shape":[1],"datatype":"INT8")")), {"input \"x\"", "missing \"data\""});
  ExpectInvalid(ParseJson(OneInput(R"("shape":[1],"datatype":"INT8","data":5)")), {"input \"x\"", "data: not an array"});
}

TEST(KServe, DatatypeErrors) {
  for (std::string_view type : {"BOOL", "FP16", "BYTES", "FP64", "UINT64", "BF16"}) {
    ExpectError(ParseJson(OneInput(R"("shape":[1],"datatype":")" + std::string(type) + R"(","data":[1])")),
                StatusCode::kUnsupported, {"input \"x\"", "datatype", type});
  }
  ExpectInvalid(ParseJson(OneInput(R"("shape":[1],"datatype":"FLOAT","data":[1])")),
                {"input \"x\"", "unknown datatype \"FLOAT\""});
  ExpectInvalid(ParseJson(OneInput(R"("shape":[1],"datatype":3,"data":[1])")), {"input \"x\"", "datatype"});
}

TEST(KServe, ShapeErrors) {
  ExpectInvalid(ParseJson(OneInput(R"("shape":[2,-3],"datatype":"FP32","data":[])")),
                {"input \"x\"", "shape", "-3 is negative"});
  ExpectInvalid(ParseJson(OneInput(R"("shape":[1.5],"datatype":"FP32","data":[1])")),
                {"input \"x\"", "shape", "integers"});
  ExpectInvalid(ParseJson(OneInput(R"("shape":"[1]","datatype":"FP32","data":[1])")),
                {"input \"x\"", "shape: not an array"});
  std::string deep = "[";
  for (int i = 0; i < 33; ++i) deep += i ? ",1" : "1";
  ExpectInvalid(ParseJson(OneInput(R"("shape":)" + deep + R"(],"datatype":"FP32","data":[1])")),
                {"input \"x\"", "rank 33 exceeds 32"});
  // Products that overflow int64 and shapes past the byte cap fail before any allocation.
  ExpectInvalid(ParseJson(OneInput(R"("shape":[4611686018427387904,4611686018427387904],"datatype":"UINT8","data":[])")),
                {"input \"x\"", "too large", "256 MiB"});
  ExpectInvalid(ParseJson(OneInput(R"("shape":[67108865],"datatype":"FP32","data":[])")),
                {"input \"x\"", "too large", "256 MiB"});
  // A zero dimension makes any other dimension harmless.
  auto zero = ParseJson(OneInput(R"("shape":[4611686018427387904,0],"datatype":"INT64","data":[])"));
  ASSERT_TRUE(zero.ok()) << zero.status().ToString();
  EXPECT_EQ(zero->inputs[0].tensor.element_count(), 0);
}

TEST(KServe, TheByteCapCoversAllInputsTogether) {
  // 200 MiB + 100 MiB: each fits alone, together they do not. Caught from
  // the shapes, before the (absent) binary data is looked at.
  ExpectInvalid(ParseWithBinary(R"({"inputs":[)"
                                R"({"name":"a","shape":[209715200],"datatype":"UINT8","parameters":{"binary_data_size":209715200}},)"
                                R"({"name":"b","shape":[104857600],"datatype":"UINT8","parameters":{"binary_data_size":104857600}}]})",
                                {}),
                {"input \"b\"", "too large", "256 MiB"});
}

TEST(KServe, DataCountErrors) {
  ExpectInvalid(ParseJson(OneInput(R"("shape":[2,2],"datatype":"FP32","data":[1,2,3])")),
                {"input \"x\"", "data: 3 elements", "[2,2] needs 4"});
  ExpectInvalid(ParseJson(OneInput(R"("shape":[1],"datatype":"FP32","data":[1,2])")),
                {"input \"x\"", "data: 2 elements", "needs 1"});
  ExpectInvalid(ParseJson(OneInput(R"("shape":[],"datatype":"FP32","data":[])")), {"input \"x\"", "needs 1"});
}

TEST(KServe, ValueRangeErrors) {
  struct Case {
    std::string datatype, data;
    std::vector<std::string_view> parts;
  };
  const Case cases[] = {
      {"UINT8", "[1,300]", {"data element 1", "300 is out of range for UINT8"}},
      {"UINT8", "[-1]", {"data element 0", "-1 is out of range for UINT8"}},
      {"INT8", "[128]", {"128 is out of range for INT8"}},
      {"INT8", "[-129]", {"-129 is out of range for INT8"}},
      {"INT32", "[2147483648]", {"2147483648 is out of range for INT32"}},
      {"INT32", "[-2147483649]", {"out of range for INT32"}},
      {"INT32", "[1.5]", {"1.5 is not an integer literal (INT32)"}},
      {"INT32", "[1.0]", {"not an integer literal"}},
      {"INT64", "[1e3]", {"not an integer literal (INT64)"}},
      {"INT64", "[9223372036854775808]", {"9223372036854775808 is out of range for INT64"}},
      {"FP32", "[1e39]", {"out of range for FP32"}},
      {"FP32", "[-3.5e38]", {"out of range for FP32"}},
      {"FP32", "[\"1\"]", {"data element 0", "not a number"}},
      {"FP32", "[true]", {"not a number"}},
      {"UINT8", "[null]", {"not a number"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.datatype + " " + c.data);
    auto result = ParseJson(OneInput(R"("shape":[)" + std::to_string(std::count(c.data.begin(), c.data.end(), ',') + 1) +
                                     R"(],"datatype":")" + c.datatype + R"(","data":)" + c.data));
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(result.status().message().find("input \"x\""), std::string::npos) << result.status().message();
    for (std::string_view part : c.parts) {
      EXPECT_NE(result.status().message().find(part), std::string::npos) << result.status().message();
    }
  }
  // In range at the edges.
  auto edges = ParseJson(OneInput(R"("shape":[2],"datatype":"INT8","data":[-128,127])"));
  ASSERT_TRUE(edges.ok());
  auto fp32 = ParseJson(OneInput(R"("shape":[3],"datatype":"FP32","data":[3.4028234663852886e38,1e-46,7])"));
  ASSERT_TRUE(fp32.ok()) << fp32.status().ToString();
  EXPECT_EQ(fp32->inputs[0].tensor.values<float>()[0], std::numeric_limits<float>::max());
  EXPECT_EQ(fp32->inputs[0].tensor.values<float>()[1], 0.0f);  // underflow rounds to zero, not an error
}

TEST(KServe, BinaryDataErrors) {
  const std::string two_floats =
      R"({"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]})";
  const Body eight(8, 0x11);
  ASSERT_TRUE(ParseWithBinary(two_floats, eight).ok());

  ExpectInvalid(ParseWithBinary(R"({"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":6}}]})",
                                Body(6)),
                {"input \"x\"", "binary_data_size is 6", "needs 8"});
  ExpectInvalid(ParseWithBinary(two_floats, Body(7)), {"binary data after the JSON is 7 bytes", "add up to 8"});
  ExpectInvalid(ParseWithBinary(two_floats, Body(9)), {"binary data after the JSON is 9 bytes", "add up to 8"});
  ExpectInvalid(ParseWithBinary(R"({"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]}]})", Body(1)),
                {"binary data after the JSON is 1 bytes", "add up to 0"});
  ExpectInvalid(ParseInferRequest(Text(two_floats), std::nullopt),
                {"input \"x\"", "binary_data_size needs the Inference-Header-Content-Length header"});
  ExpectInvalid(ParseInferRequest(Text(two_floats), two_floats.size() + 1),
                {"Inference-Header-Content-Length is", "has only"});
  ExpectInvalid(ParseWithBinary(R"({"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2],)"
                                R"("parameters":{"binary_data_size":8}}]})",
                                eight),
                {"input \"x\"", "both \"data\" and parameters.binary_data_size"});
  ExpectInvalid(ParseWithBinary(R"({"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":-8}}]})",
                                eight),
                {"input \"x\"", "binary_data_size: not a non-negative integer"});
  ExpectInvalid(ParseWithBinary(R"({"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":"8"}}]})",
                                eight),
                {"input \"x\"", "binary_data_size"});
  ExpectError(ParseJson(OneInput(R"("shape":[1],"datatype":"INT8","data":[1],"parameters":{"shared_memory_region":"r"})")),
              StatusCode::kUnsupported, {"input \"x\"", "parameters.shared_memory_region"});
  // A zero header length leaves no JSON at all.
  ExpectInvalid(ParseInferRequest(Text(two_floats), 0), {"not valid JSON"});
}

TEST(KServe, JsonErrors) {
  ExpectInvalid(ParseJson(""), {"inference request", "not valid JSON"});
  ExpectInvalid(ParseJson(R"({"inputs":[)"), {"not valid JSON"});
  ExpectInvalid(ParseJson("[1,2]"), {"inference request", "expected a JSON object"});
  ExpectInvalid(ParseJson("{\"id\":\"\xff\xfe\",\"inputs\":[]}"), {"not valid JSON", "UTF-8"});
  ExpectInvalid(ParseJson(R"({"inputs":[],"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]}]})"),
                {"duplicate key \"inputs\""});
  ExpectInvalid(ParseJson(OneInput(R"("shape":[1],"datatype":"INT8","data":[1],"name":"y")")),
                {"inputs[0]", "duplicate key \"name\""});
  ExpectInvalid(ParseJson(OneInput(R"("shape":[1],"datatype":"INT8","data":[1e400])")), {"not valid JSON"});
  // Unknown fields are ignored.
  EXPECT_TRUE(ParseJson(R"({"future":{"x":[1]},"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1],"z":0}]})").ok());
}

// ---- The JSON before the binary data (ParseInferRequestHeader) -------------------------------

// An input whose data comes as `binary_size` bytes after the JSON: no tensor yet.
void ExpectBinaryInput(const InputHeader& input, const std::string& name, DataType dtype, const Shape& shape,
                       size_t binary_size) {
  EXPECT_EQ(input.name, name);
  EXPECT_EQ(input.dtype, dtype);
  EXPECT_EQ(input.shape, shape);
  EXPECT_EQ(input.binary_size, std::optional<size_t>(binary_size));
  EXPECT_EQ(input.data.byte_size(), 0u);
}

// The JSON part of an encoded body: all of it without a header length.
std::span<const uint8_t> JsonPart(const EncodedBody& encoded) {
  return std::span<const uint8_t>(encoded.body).first(encoded.json_length.value_or(encoded.body.size()));
}

TEST(KServe, HeaderDescribesJsonAndBinaryInputs) {
  const std::string json =
      R"({"id":"req-9","parameters":{"binary_data_output":true},"inputs":[)"
      R"({"name":"a","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}},)"
      R"({"name":"b","shape":[3],"datatype":"INT32","data":[7,-8,9]},)"
      R"({"name":"c","shape":[1,5],"datatype":"UINT8","parameters":{"binary_data_size":5}}],)"
      R"("outputs":[{"name":"y"},{"name":"z","parameters":{"binary_data":false}}]})";
  auto header = ParseInferRequestHeader(Text(json), 21);
  ASSERT_TRUE(header.ok()) << header.status().ToString();

  EXPECT_EQ(header->request.id, "req-9");
  EXPECT_TRUE(header->request.binary_output);
  EXPECT_TRUE(header->request.inputs.empty());
  ASSERT_EQ(header->request.outputs.size(), 2u);
  EXPECT_EQ(header->request.outputs[0].name, "y");
  EXPECT_TRUE(header->request.outputs[0].binary);
  EXPECT_EQ(header->request.outputs[1].name, "z");
  EXPECT_FALSE(header->request.outputs[1].binary);

  ASSERT_EQ(header->inputs.size(), 3u);
  ExpectBinaryInput(header->inputs[0], "a", DataType::kF32, Shape{2, 2}, 16);

  const InputHeader& b = header->inputs[1];
  EXPECT_EQ(b.name, "b");
  EXPECT_EQ(b.dtype, DataType::kS32);
  EXPECT_EQ(b.shape, (Shape{3}));
  EXPECT_FALSE(b.binary_size.has_value());
  ExpectSameTensor(b.data, Tensor::FromVector<int32_t>({3}, {7, -8, 9}));

  ExpectBinaryInput(header->inputs[2], "c", DataType::kU8, Shape{1, 5}, 5);

  EXPECT_EQ(header->binary_size, 21u);
}

TEST(KServe, HeaderAgreesWithParseInferRequest) {
  InferRequest request = EdgeRequest();
  request.inputs.push_back({"empty", Tensor(DataType::kS8, {3, 0})});
  request.binary_output = true;
  request.outputs = {{"y", false}, {"z", true}};
  for (bool binary : {false, true}) {
    SCOPED_TRACE(binary ? "binary inputs" : "JSON inputs");
    auto encoded = EncodeInferRequest(request, binary);
    ASSERT_TRUE(encoded.ok()) << encoded.status().ToString();
    auto whole = ParseInferRequest(encoded->body, encoded->json_length);
    ASSERT_TRUE(whole.ok()) << whole.status().ToString();

    const std::span<const uint8_t> json = JsonPart(*encoded);
    const std::span<const uint8_t> section = std::span<const uint8_t>(encoded->body).subspan(json.size());
    const std::optional<size_t> binary_length =
        encoded->json_length ? std::optional<size_t>(section.size()) : std::nullopt;
    auto header = ParseInferRequestHeader(json, binary_length);
    ASSERT_TRUE(header.ok()) << header.status().ToString();

    EXPECT_EQ(header->request.id, whole->id);
    EXPECT_EQ(header->request.binary_output, whole->binary_output);
    EXPECT_TRUE(header->request.inputs.empty());
    ASSERT_EQ(header->request.outputs.size(), whole->outputs.size());
    for (size_t i = 0; i < whole->outputs.size(); ++i) {
      EXPECT_EQ(header->request.outputs[i].name, whole->outputs[i].name);
      EXPECT_EQ(header->request.outputs[i].binary, whole->outputs[i].binary);
    }
    EXPECT_EQ(header->binary_size, section.size());

    // Each binary input's bytes, read at its offset in the binary section, are the tensor ParseInferRequest built.
    ASSERT_EQ(header->inputs.size(), whole->inputs.size());
    size_t offset = 0;
    for (size_t i = 0; i < whole->inputs.size(); ++i) {
      const InputHeader& input = header->inputs[i];
      const Tensor& expected = whole->inputs[i].tensor;
      SCOPED_TRACE(input.name);
      EXPECT_EQ(input.name, whole->inputs[i].name);
      EXPECT_EQ(input.dtype, expected.dtype());
      EXPECT_EQ(input.shape, expected.shape());
      EXPECT_EQ(input.binary_size.has_value(), binary);
      if (input.binary_size) {
        ASSERT_EQ(*input.binary_size, expected.byte_size());
        ASSERT_LE(offset + *input.binary_size, section.size());
        EXPECT_EQ(0, std::memcmp(section.data() + offset, expected.raw_data(), expected.byte_size()));
        offset += *input.binary_size;
        EXPECT_EQ(input.data.byte_size(), 0u);
      } else {
        ExpectSameTensor(input.data, expected);
      }
    }
    EXPECT_EQ(offset, header->binary_size);
  }
}

TEST(KServe, HeaderBinaryLengthMustMatchTheBinaryDataSizes) {
  const std::string two_floats =
      R"({"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]})";
  ASSERT_TRUE(ParseInferRequestHeader(Text(two_floats), 8).ok());
  ExpectInvalid(ParseInferRequestHeader(Text(two_floats), 7), {"binary data after the JSON is 7 bytes", "add up to 8"});
  ExpectInvalid(ParseInferRequestHeader(Text(two_floats), 9), {"binary data after the JSON is 9 bytes", "add up to 8"});
  ExpectInvalid(ParseInferRequestHeader(Text(two_floats), 0), {"binary data after the JSON is 0 bytes", "add up to 8"});
  const std::string json_only = R"({"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]}]})";
  ASSERT_TRUE(ParseInferRequestHeader(Text(json_only), 0).ok());
  ASSERT_TRUE(ParseInferRequestHeader(Text(json_only), std::nullopt).ok());
  ExpectInvalid(ParseInferRequestHeader(Text(json_only), 3), {"binary data after the JSON is 3 bytes", "add up to 0"});
}

TEST(KServe, HeaderBinaryInputNeedsTheHeaderLength) {
  ExpectInvalid(ParseInferRequestHeader(
                    Text(R"({"inputs":[{"name":"a","shape":[1],"datatype":"INT8","data":[1]},)"
                         R"({"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]})"),
                    std::nullopt),
                {"inference request", "input \"x\"", "binary_data_size needs the Inference-Header-Content-Length header"});
}

TEST(KServe, HeaderMalformedJson) {
  for (std::optional<size_t> binary_length : {std::optional<size_t>(), std::optional<size_t>(0)}) {
    ExpectInvalid(ParseInferRequestHeader(Text(""), binary_length), {"inference request", "not valid JSON"});
    ExpectInvalid(ParseInferRequestHeader(Text(R"({"inputs":[)"), binary_length), {"not valid JSON"});
    ExpectInvalid(ParseInferRequestHeader(Text(R"({"inputs":[{"name":"x",}]})"), binary_length), {"not valid JSON"});
    ExpectInvalid(ParseInferRequestHeader(Text("[1,2]"), binary_length), {"inference request", "expected a JSON object"});
    ExpectInvalid(ParseInferRequestHeader(Text(R"({"id":"a","id":"b","inputs":[]})"), binary_length),
                  {"duplicate key \"id\""});
  }
}

TEST(KServe, HeaderErrorsAreParseInferRequestErrors) {
  // JSON only, so the same bytes are a whole body for ParseInferRequest.
  const std::string_view bodies[] = {
      "",
      R"({"inputs":[]})",
      R"({"id":3,"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]}]})",
      R"({"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[300]}]})",
      R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]})",
      R"({"inputs":[{"name":"x","shape":[1],"datatype":"INT8","parameters":{"binary_data_size":1}}]})",
      R"({"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]}],"outputs":[{"name":"a"},{"name":"a"}]})",
  };
  for (std::string_view body : bodies) {
    SCOPED_TRACE(body);
    auto header = ParseInferRequestHeader(Text(body), std::nullopt);
    auto whole = ParseJson(body);
    ASSERT_FALSE(header.ok());
    ASSERT_FALSE(whole.ok());
    EXPECT_EQ(header.status().code(), whole.status().code());
    EXPECT_EQ(header.status().message(), whole.status().message());
  }
}

// ---- Responses and errors ------------------------------------------------------------------

TEST(KServe, ErrorJsonEscapes) {
  EXPECT_EQ(ErrorJson("bad \"x\"\\\n\x01"), R"({"error":"bad \"x\"\\\n\u0001"})");
  const std::string json = ErrorJson("shape [2] \"needs\" 4");
  ExpectInvalid(ParseInferResponse(Text(json), std::nullopt), {"server answered an error: shape [2] \"needs\" 4"});
}

TEST(KServe, ResponseErrors) {
  ExpectInvalid(ParseInferResponse(Text(R"({"outputs":[]})"), std::nullopt), {"inference response", "\"model_name\""});
  ExpectInvalid(ParseInferResponse(Text(R"({"model_name":"m"})"), std::nullopt), {"missing \"outputs\""});
  ExpectInvalid(ParseInferResponse(Text(R"({"model_name":"m","outputs":[{"name":"y","shape":[2],"datatype":"INT64","data":[1]}]})"),
                                   std::nullopt),
                {"inference response: output \"y\"", "data: 1 elements"});
  auto empty = ParseInferResponse(Text(R"({"model_name":"m","outputs":[]})"), std::nullopt);
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->outputs.empty());
}

// ---- Hostile bodies --------------------------------------------------------------------------

// Mutates `body` (bytes, structure characters, truncation) and the header
// length; every result must be an error or a request that holds together.
void FuzzRequests(const EncodedBody& valid, uint32_t seed, int iterations) {
  std::mt19937 rng(seed);
  const std::string_view specials = "[]{}\",:-.0123456789eE \\\xff\x00";
  int accepted = 0;
  for (int i = 0; i < iterations; ++i) {
    Body body = valid.body;
    std::optional<size_t> json_length = valid.json_length;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const size_t at = rng() % body.size();
      switch (rng() % 6) {
        case 0: body[at] = static_cast<uint8_t>(rng()); break;
        case 1: body[at] = static_cast<uint8_t>(specials[rng() % specials.size()]); break;
        case 2: body.insert(body.begin() + static_cast<ptrdiff_t>(at), static_cast<uint8_t>(specials[rng() % specials.size()])); break;
        case 3: body.erase(body.begin() + static_cast<ptrdiff_t>(at)); break;
        case 4: body.resize(at); break;
        case 5:
          if (rng() % 2) json_length = rng() % (body.size() + 16);
          else json_length.reset();
          break;
      }
    }
    auto parsed = ParseInferRequest(body, json_length);
    if (!parsed.ok()) {
      const StatusCode code = parsed.status().code();
      EXPECT_TRUE(code == StatusCode::kInvalidArgument || code == StatusCode::kUnsupported)
          << parsed.status().ToString();
      EXPECT_FALSE(parsed.status().message().empty());
      continue;
    }
    ++accepted;
    size_t total = 0;
    for (const NamedTensor& input : parsed->inputs) {
      EXPECT_FALSE(input.name.empty());
      EXPECT_EQ(input.tensor.element_count(), ElementCount(input.tensor.shape()));
      total += input.tensor.byte_size();
    }
    EXPECT_LE(total, kMaxTensorBytes);
    // Whatever parsed must encode and parse back to the same tensors.
    auto encoded = EncodeInferRequest(*parsed, true);
    ASSERT_TRUE(encoded.ok()) << encoded.status().ToString();
    auto again = ParseInferRequest(encoded->body, encoded->json_length);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    ExpectSameTensors(again->inputs, parsed->inputs);
  }
  // Some mutations (a digit in a value, a byte of binary data) still parse:
  // the loop exercised the success path as well as the error paths.
  EXPECT_GT(accepted, 0);
}

TEST(KServe, FuzzedJsonRequestsNeverCrash) {
  InferRequest request = EdgeRequest();
  request.inputs.push_back({"nested", Tensor::FromVector<float>({2, 2}, {1, 2, 3, 4})});
  request.outputs = {{"y", true}, {"z", false}};
  auto encoded = EncodeInferRequest(request, false);
  ASSERT_TRUE(encoded.ok());
  FuzzRequests(*encoded, 1, 2000);
}

TEST(KServe, FuzzedBinaryRequestsNeverCrash) {
  auto encoded = EncodeInferRequest(EdgeRequest(), true);
  ASSERT_TRUE(encoded.ok());
  FuzzRequests(*encoded, 2, 2000);
}

TEST(KServe, FuzzedResponsesNeverCrash) {
  InferResponse response;
  response.model_name = "m";
  response.id = "7";
  for (DataType type : kAllTypes) response.outputs.push_back({DataTypeName(type), EdgeValues(type)});
  InferRequest request;
  request.outputs = {{"f32", true}, {"s64", true}};
  auto encoded = EncodeInferResponse(response, request);
  ASSERT_TRUE(encoded.ok());
  std::mt19937 rng(3);
  for (int i = 0; i < 2000; ++i) {
    Body body = encoded->body;
    body[rng() % body.size()] = static_cast<uint8_t>(rng());
    if (rng() % 4 == 0) body.resize(rng() % body.size());
    auto parsed = ParseInferResponse(body, encoded->json_length);
    if (!parsed.ok()) {
      const StatusCode code = parsed.status().code();
      EXPECT_TRUE(code == StatusCode::kInvalidArgument || code == StatusCode::kUnsupported)
          << parsed.status().ToString();
    }
  }
}

}  // namespace
}  // namespace ppml::kserve
