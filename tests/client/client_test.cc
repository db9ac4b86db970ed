// PpmlClient against FakeFrontend over TLS: attestation checks (pinned
// platform key, measurement, nonce, key binding, age), encrypted inference in
// JSON and binary, error replies (plaintext and encrypted), refused
// plaintext and tampered replies; model metadata; PNG inputs.
#include "client/client.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#ifdef PPML_HAVE_PNG
#include <png.h>
#endif

#include "client/image.h"
#include "common/file_io.h"
#include "common/x509.h"
#include "tests/client/fake_frontend.h"
#include "tests/client/test_server.h"

namespace ppml::client {
namespace {

using testing::Attack;
using testing::FakeFrontend;
using testing::ScopedTempDir;
using testing::TestServer;

bool Contains(const Status& status, const std::string& part) {
  return status.message().find(part) != std::string::npos;
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<FakeFrontend>> fake = FakeFrontend::Create();
    ASSERT_TRUE(fake.ok()) << fake.status().ToString();
    fake_ = std::move(fake).value();
    Result<x509::CertifiedKey> ca = x509::GenerateDevCa("client test CA");
    ASSERT_TRUE(ca.ok());
    x509::CertificateRequest request;
    request.common_name = "frontend";
    request.ip_addresses = {"127.0.0.1"};
    Result<x509::CertifiedKey> cert = x509::IssueCertificate(*ca, request);
    ASSERT_TRUE(cert.ok());
    ASSERT_TRUE(x509::WritePemFiles(*ca, dir_.File("ca.key"), dir_.File("ca.pem")).ok());
    ASSERT_TRUE(WriteFile(dir_.File("platform.pub.pem"), fake_->platform_public_key_pem()).ok());
    TestServer::Options options;
    options.cert_pem = cert->cert_pem;
    options.key_pem = cert->key_pem;
    Result<std::unique_ptr<TestServer>> server = TestServer::Start(options, fake_->Handler());
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  ClientOptions Options(const std::string& model = "double", bool pin = true) {
    ClientOptions options;
    options.url = server_->url();
    options.ca_file = dir_.File("ca.pem");
    options.platform_pubkey_pem_path = dir_.File("platform.pub.pem");
    if (pin) options.expected_measurement_hex = fake_->measurement_hex();
    options.model = model;
    options.io_timeout_ms = 10'000;
    return options;
  }

  static kserve::InferRequest DoubleRequest(std::vector<float> values) {
    kserve::InferRequest request;
    const int64_t rows = static_cast<int64_t>(values.size()) / 4;
    request.inputs.push_back({"x", Tensor::FromVector<float>({rows, 4}, values)});
    return request;
  }

  ScopedTempDir dir_{"ppml-client-test"};
  std::unique_ptr<FakeFrontend> fake_;
  std::unique_ptr<TestServer> server_;
};

TEST_F(ClientTest, AttestsThenInfersEncryptedJsonAndBinary) {
  Result<PpmlClient> client = PpmlClient::Connect(Options());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_TRUE(client->measurement_pinned());
  EXPECT_EQ(crypto::ToHex(client->measurement()), fake_->measurement_hex());
  EXPECT_EQ(client->attestation().enclave_public_key, fake_->enclave_public_key());
  EXPECT_EQ(client->url(), server_->url());

  for (bool binary : {false, true}) {
    kserve::InferRequest request = DoubleRequest({1, 2, 3, 4, -1, 0.5f, 0, 1e-3f});
    request.binary_output = binary;
    Result<kserve::InferResponse> reply = client->Infer(request, binary);
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->model_name, "double");
    ASSERT_EQ(reply->outputs.size(), 1u);
    EXPECT_EQ(reply->outputs[0].name, "y");
    EXPECT_EQ(reply->outputs[0].tensor.shape(), (Shape{2, 4}));
    const float* y = reply->outputs[0].tensor.data<float>();
    EXPECT_EQ(y[0], 2);
    EXPECT_EQ(y[3], 8);
    EXPECT_EQ(y[5], 1);
    EXPECT_EQ(y[7], 2e-3f);
    EXPECT_FALSE(client->last_request_id().empty());
  }
  EXPECT_EQ(fake_->inferences(), 2);
  // One TLS connection carried the attestation and both inferences.
  EXPECT_EQ(server_->connections(), 1);

  // Integer types, and a raw KServe JSON body sent as is.
  Result<PpmlClient> bytes = PpmlClient::Connect(Options("bytes"));
  ASSERT_TRUE(bytes.ok());
  const std::string json = R"({"inputs":[{"name":"b","shape":[2,3],"datatype":"UINT8","data":[1,2,3,250,250,250]}]})";
  Result<kserve::InferResponse> sum =
      bytes->InferBody(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(json.data()), json.size()),
                       std::nullopt);
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  ASSERT_EQ(sum->outputs.size(), 1u);
  EXPECT_EQ(sum->outputs[0].tensor.data<int64_t>()[0], 6);
  EXPECT_EQ(sum->outputs[0].tensor.data<int64_t>()[1], 750);
}

TEST_F(ClientTest, UnpinnedMeasurementIsReportedNotRequired) {
  Result<PpmlClient> client = PpmlClient::Connect(Options("double", /*pin=*/false));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_FALSE(client->measurement_pinned());
  EXPECT_EQ(crypto::ToHex(client->measurement()), fake_->measurement_hex());
  // Everything else is still checked: a quote from another platform fails.
  fake_->set_attack(Attack::kOtherPlatform);
  Result<PpmlClient> other = PpmlClient::Connect(Options("double", false));
  ASSERT_FALSE(other.ok());
  EXPECT_TRUE(Contains(other.status(), "bad signature")) << other.status().message();
}

TEST_F(ClientTest, RejectsEachForgedAttestation) {
  struct Case {
    Attack attack;
    StatusCode code;
    const char* reason;
  };
  for (const Case& c : {Case{Attack::kOtherPlatform, StatusCode::kPermissionDenied, "bad signature"},
                        Case{Attack::kWrongMeasurement, StatusCode::kPermissionDenied, "wrong measurement"},
                        Case{Attack::kReplayedNonce, StatusCode::kPermissionDenied, "another nonce"},
                        Case{Attack::kKeySwap, StatusCode::kPermissionDenied, "report data does not bind"},
                        Case{Attack::kStaleQuote, StatusCode::kDeadlineExceeded, "quote too old"}}) {
    fake_->set_attack(c.attack);
    Result<PpmlClient> client = PpmlClient::Connect(Options());
    ASSERT_FALSE(client.ok()) << c.reason;
    EXPECT_EQ(client.status().code(), c.code) << client.status().ToString();
    EXPECT_TRUE(Contains(client.status(), c.reason)) << client.status().message();
    EXPECT_TRUE(Contains(client.status(), "attestation rejected")) << client.status().message();
    EXPECT_TRUE(Contains(client.status(), server_->url())) << client.status().message();
  }
  EXPECT_EQ(fake_->inferences(), 0);
}

TEST_F(ClientTest, FailedReattestationKeepsTheVerifiedKey) {
  Result<PpmlClient> client = PpmlClient::Connect(Options());
  ASSERT_TRUE(client.ok());
  fake_->set_attack(Attack::kKeySwap);
  EXPECT_FALSE(client->Attest().ok());
  EXPECT_EQ(client->attestation().enclave_public_key, fake_->enclave_public_key());
  fake_->set_attack(Attack::kNone);
  EXPECT_TRUE(client->Infer(DoubleRequest({1, 1, 1, 1}), false).ok());
  EXPECT_TRUE(client->Attest().ok());
}

TEST_F(ClientTest, RefusesEachForgedReply) {
  struct Case {
    Attack attack;
    StatusCode code;
    const char* reason;
  };
  Result<PpmlClient> client = PpmlClient::Connect(Options());
  ASSERT_TRUE(client.ok());
  for (const Case& c :
       {Case{Attack::kPlaintextReply, StatusCode::kPermissionDenied, "unencrypted reply is refused"},
        Case{Attack::kTamperedReply, StatusCode::kDataLoss, "does not decrypt"},
        Case{Attack::kOtherModel, StatusCode::kDataLoss, "computed by model 'double-other', not 'double'"}}) {
    fake_->set_attack(c.attack);
    Result<kserve::InferResponse> reply = client->Infer(DoubleRequest({1, 2, 3, 4}), false);
    ASSERT_FALSE(reply.ok()) << c.reason;
    EXPECT_EQ(reply.status().code(), c.code) << reply.status().ToString();
    EXPECT_TRUE(Contains(reply.status(), c.reason)) << reply.status().message();
  }
}

TEST_F(ClientTest, ServerErrorsKeepTheirMessageAndCode) {
  Result<PpmlClient> client = PpmlClient::Connect(Options());
  ASSERT_TRUE(client.ok());
  // A bad input: the enclave's message comes back encrypted.
  kserve::InferRequest wrong;
  wrong.inputs.push_back({"not_x", Tensor::FromVector<float>({1, 4}, {1, 2, 3, 4})});
  Result<kserve::InferResponse> reply = client->Infer(wrong, false);
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(reply.status(), "HTTP 400 (encrypted error from the enclave)")) << reply.status().message();
  EXPECT_TRUE(Contains(reply.status(), "takes one input named \"x\"")) << reply.status().message();

  // Unknown model: plaintext 404 from the front-end.
  Result<PpmlClient> missing = PpmlClient::Connect(Options("missing"));
  ASSERT_TRUE(missing.ok());
  Result<kserve::ModelMetadata> metadata = missing->GetModelMetadata();
  ASSERT_FALSE(metadata.ok());
  EXPECT_EQ(metadata.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(metadata.status(), "unknown model")) << metadata.status().message();
  reply = missing->Infer(DoubleRequest({1, 2, 3, 4}), false);
  EXPECT_EQ(reply.status().code(), StatusCode::kNotFound);
}

TEST_F(ClientTest, ModelMetadata) {
  Result<PpmlClient> client = PpmlClient::Connect(Options("image"));
  ASSERT_TRUE(client.ok());
  Result<kserve::ModelMetadata> metadata = client->GetModelMetadata();
  ASSERT_TRUE(metadata.ok()) << metadata.status().ToString();
  EXPECT_EQ(metadata->name, "image");
  ASSERT_EQ(metadata->inputs.size(), 1u);
  EXPECT_EQ(metadata->inputs[0].name, "image");
  EXPECT_EQ(metadata->inputs[0].dtype, DataType::kF32);
  EXPECT_EQ(metadata->inputs[0].shape, (Shape{-1, 1, 28, 28}));
  EXPECT_EQ(metadata->outputs.size(), 2u);

  EXPECT_FALSE(ParseModelMetadata("[]").ok());
  EXPECT_FALSE(ParseModelMetadata(R"({"name":"m","inputs":[{"name":"a","datatype":"FP32","shape":[-2]}],"outputs":[]})").ok());
  EXPECT_EQ(ParseModelMetadata(R"({"name":"m","inputs":[{"name":"a","datatype":"BYTES","shape":[1]}],"outputs":[]})")
                .status()
                .code(),
            StatusCode::kUnsupported);
}

TEST_F(ClientTest, OptionErrorsNameTheOption) {
  ClientOptions options = Options();
  options.platform_pubkey_pem_path = dir_.File("absent.pem");
  Result<PpmlClient> client = PpmlClient::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_TRUE(Contains(client.status(), "absent.pem")) << client.status().message();

  options = Options();
  options.platform_pubkey_pem_path = dir_.File("ca.pem");  // a certificate, not a public key
  EXPECT_FALSE(PpmlClient::Connect(options).ok());

  options = Options();
  options.expected_measurement_hex = "abc";
  client = PpmlClient::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(client.status(), "expected measurement")) << client.status().message();

  options = Options();
  options.platform_pubkey_pem_path.clear();
  EXPECT_EQ(PpmlClient::Connect(options).status().code(), StatusCode::kInvalidArgument);

  options = Options();
  options.url = "ftp://x";
  EXPECT_EQ(PpmlClient::Connect(options).status().code(), StatusCode::kInvalidArgument);
}

TEST(HttpStatusErrorTest, MapsCodesAndKeepsMessages) {
  HttpResponse response;
  response.status = 409;
  response.body = R"({"error":"replayed"})";
  Status s = HttpStatusError("POST /x", response);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "POST /x: HTTP 409: replayed");
  response.status = 504;
  response.body = "gateway\x01timeout";
  s = HttpStatusError("GET /y", response);
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(s.message(), "GET /y: HTTP 504: gateway?timeout");
  response.status = 503;
  EXPECT_EQ(HttpStatusError("z", response).code(), StatusCode::kUnavailable);
  response.status = 413;
  EXPECT_EQ(HttpStatusError("z", response, std::string(R"({"error":"big"})")).message(),
            "z: HTTP 413 (encrypted error from the enclave): big");
}

#ifdef PPML_HAVE_PNG
// Writes a width x height image of `channels` (1 grey, 3 RGB) all set to `value`.
void WritePng(const std::string& path, int width, int height, int channels, uint8_t value) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = width;
  image.height = height;
  image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  std::vector<uint8_t> pixels(static_cast<size_t>(width * height * channels), value);
  ASSERT_NE(png_image_write_to_file(&image, path.c_str(), 0, pixels.data(), 0, nullptr), 0);
}

TEST_F(ClientTest, PngInputsFitTheModelInput) {
  ASSERT_TRUE(PngSupported());
  WritePng(dir_.File("grey.png"), 28, 28, 1, 51);
  WritePng(dir_.File("rgb.png"), 28, 28, 3, 51);
  WritePng(dir_.File("small.png"), 10, 10, 1, 0);
  const kserve::TensorMetadata nchw{"image", DataType::kF32, {-1, 1, 28, 28}};
  Result<Tensor> t = PngToTensor(dir_.File("grey.png"), nchw);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->shape(), (Shape{1, 1, 28, 28}));
  EXPECT_FLOAT_EQ(t->data<float>()[100], 0.2f);
  // RGB converted to grey for a one-channel input.
  t = PngToTensor(dir_.File("rgb.png"), nchw);
  ASSERT_TRUE(t.ok());
  EXPECT_NEAR(t->data<float>()[0], 0.2f, 0.01f);
  // NHWC with three channels, and UINT8.
  t = PngToTensor(dir_.File("grey.png"), {"i", DataType::kU8, {1, 28, 28, 3}});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->shape(), (Shape{1, 28, 28, 3}));
  EXPECT_EQ(t->data<uint8_t>()[5], 51);
  // Flattened.
  t = PngToTensor(dir_.File("grey.png"), {"i", DataType::kF32, {-1, 784}});
  ASSERT_TRUE(t.ok());
  // Wrong size, wrong type, not a PNG.
  Result<Tensor> bad = PngToTensor(dir_.File("small.png"), nchw);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status(), "small.png")) << bad.status().message();
  EXPECT_TRUE(Contains(bad.status(), "resize")) << bad.status().message();
  EXPECT_EQ(PngToTensor(dir_.File("grey.png"), {"i", DataType::kS64, {1, 28, 28}}).status().code(),
            StatusCode::kUnsupported);
  std::ofstream(dir_.File("fake.png")) << "not a png";
  EXPECT_FALSE(PngToTensor(dir_.File("fake.png"), nchw).ok());

  // Through the fake model: mean 0.2 -> class 2.
  Result<PpmlClient> client = PpmlClient::Connect(Options("image"));
  ASSERT_TRUE(client.ok());
  kserve::InferRequest request;
  request.inputs.push_back({"image", std::move(PngToTensor(dir_.File("grey.png"), nchw)).value()});
  Result<kserve::InferResponse> reply = client->Infer(request, true);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  ASSERT_EQ(reply->outputs.size(), 2u);
  EXPECT_NEAR(reply->outputs[0].tensor.data<float>()[0], 0.2f, 1e-5);
  EXPECT_EQ(reply->outputs[1].tensor.data<float>()[2], 1.0f);
}
#endif

}  // namespace
}  // namespace ppml::client
