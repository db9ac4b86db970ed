// The wire protocol: payload round trips, malformed frames refused cleanly by
// the parsers and by a real AccelServer (in this process, on a Unix socket),
// and the client against that server.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <thread>

#include "accel/client.h"
#include "accel/protocol.h"
#include "accel/server.h"
#include "common/process.h"
#include "tests/accel/accel_test_util.h"

namespace ppml::accel {
namespace {

using testing::MakeDense;
using testing::MakeSpec;
using testing::RandomField;
using testing::ReferenceFieldLinear;

std::array<uint8_t, kFrameHeaderSize> Header(std::vector<uint8_t> frame) {
  std::array<uint8_t, kFrameHeaderSize> h{};
  std::copy(frame.begin(), frame.begin() + kFrameHeaderSize, h.begin());
  return h;
}

TEST(ProtocolTest, PayloadsRoundTrip) {
  EXPECT_EQ(*ParseHello(EncodeHello(7)), 7u);
  EXPECT_EQ(*ParseHandle(EncodeHandle(0x0102030405060708ull)), 0x0102030405060708ull);
  const std::vector<uint32_t> x = {0, 1, kPrime - 1, 12345};
  Result<ComputeRequest> compute = ParseCompute(EncodeCompute(42, 2, x));
  ASSERT_TRUE(compute.ok());
  EXPECT_EQ(compute->handle, 42u);
  EXPECT_EQ(compute->batch, 2);
  EXPECT_EQ(compute->x, x);
  EXPECT_EQ(*ParseElements(EncodeElements(x), 4), x);
  Status error = ParseError(EncodeError(Status::NotFound("no layer 9")));
  EXPECT_EQ(error.code(), StatusCode::kNotFound);
  EXPECT_EQ(error.message(), "ppml-accel: no layer 9");

  const std::vector<uint8_t> frame = EncodeFrame(MessageType::kCompute, EncodeHandle(1));
  ASSERT_EQ(frame.size(), kFrameHeaderSize + 8);
  Result<FrameHeader> header = ParseFrameHeader(Header(frame), kDefaultMaxPayload);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->type, MessageType::kCompute);
  EXPECT_EQ(header->payload_length, 8u);
}

TEST(ProtocolTest, MalformedFramesAndPayloadsAreRefused) {
  std::vector<uint8_t> frame = EncodeFrame(MessageType::kHello, EncodeHello(1));
  auto bad = frame;
  bad[0] = 'X';
  EXPECT_NE(ParseFrameHeader(Header(bad), 1024).status().message().find("magic"), std::string::npos);
  bad = frame;
  bad[2] = 9;
  EXPECT_NE(ParseFrameHeader(Header(bad), 1024).status().message().find("version"), std::string::npos);
  for (uint8_t type : {0, 7, 255}) {
    bad = frame;
    bad[3] = type;
    EXPECT_NE(ParseFrameHeader(Header(bad), 1024).status().message().find("unknown message type"), std::string::npos);
  }
  bad = frame;
  bad[4] = 0xff;  // 4 GiB claimed
  EXPECT_NE(ParseFrameHeader(Header(bad), 1024).status().message().find("exceeds the cap"), std::string::npos);

  EXPECT_FALSE(ParseHello({}).ok());
  EXPECT_FALSE(ParseHandle(EncodeHello(1)).ok());
  std::vector<uint8_t> compute = EncodeCompute(1, 2, std::vector<uint32_t>{1, 2});
  EXPECT_FALSE(ParseCompute(std::span(compute).first(11)).ok());              // no batch
  EXPECT_FALSE(ParseCompute(std::span(compute).first(compute.size() - 1)).ok());  // half an element
  EXPECT_FALSE(ParseCompute(EncodeCompute(1, 0, {})).ok());
  EXPECT_FALSE(ParseCompute(EncodeCompute(1, kMaxComputeBatch + 1, {})).ok());
  const std::vector<uint32_t> outside = {1, kPrime};
  EXPECT_EQ(ParseElements(EncodeElements(outside), 2).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(ParseElements(EncodeElements(outside), 3).status().code(), StatusCode::kDataLoss);
  std::vector<uint8_t> error = EncodeError(Status::InvalidArgument("x"));
  error[0] = 0;  // "OK" is not an error
  EXPECT_EQ(ParseError(error).code(), StatusCode::kInternal);
  EXPECT_FALSE(ParseError(std::vector<uint8_t>(2)).ok());
}

// An AccelServer on a Unix socket in this process, stopped and joined on destruction.
class InProcessServer {
 public:
  explicit InProcessServer(TamperOptions tamper = {}, uint32_t max_payload = kDefaultMaxPayload) {
    ServerOptions options;
    options.listen = *ParseAccelAddress("unix:" + dir_.File("accel.sock"));
    options.max_payload = max_payload;
    options.idle_poll_ms = 20;
    options.tamper = tamper;
    auto server = AccelServer::Start(options, MakeCpuBackend(), registry_);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    thread_ = std::thread([this] { (void)server_->Run(stop_); });
  }
  ~InProcessServer() {
    stop_ = true;
    thread_.join();
  }
  std::string address() const { return server_->address().ToString(); }
  const metrics::Registry& registry() const { return registry_; }

  // A raw connection for sending bytes the client never would.
  ScopedFd Raw() {
    auto fd = ConnectAccel(server_->address(), net::DeadlineAfter(2000));
    EXPECT_TRUE(fd.ok());
    return std::move(fd).value();
  }

 private:
  TempDir dir_{"ppml-accel-test"};
  metrics::Registry registry_;
  std::unique_ptr<AccelServer> server_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

Status SendBytes(int fd, const std::vector<uint8_t>& bytes) {
  return ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size())
             ? Status::Ok()
             : Status::IoError("send");
}

TEST(AccelServerTest, ClientRegistersAndComputesExactly) {
  InProcessServer server;
  auto client = AccelClient::Connect(server.address());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  std::mt19937_64 rng(51);
  for (const auto& [name, spec] : testing::VarietyOfSpecs()) {
    Result<uint64_t> handle = (*client)->Register(spec);
    ASSERT_TRUE(handle.ok()) << name << ": " << handle.status().ToString();
    for (int64_t batch : {1, 3}) {
      std::vector<uint32_t> x = RandomField(static_cast<size_t>(batch * spec.input_size()), rng);
      Result<std::vector<uint32_t>> z = (*client)->Compute(*handle, batch, x);
      ASSERT_TRUE(z.ok()) << name << ": " << z.status().ToString();
      EXPECT_EQ(*z, ReferenceFieldLinear(spec, x, batch)) << name;
    }
  }
  // A second enclave registering the same layer shares its handle.
  auto other = AccelClient::Connect(server.address());
  ASSERT_TRUE(other.ok());
  LinearSpec spec = MakeDense(10, 4);
  EXPECT_EQ(*(*client)->Register(spec), *(*other)->Register(spec));
  EXPECT_NE(server.registry().Render().find("ppml_accel_layers_registered"), std::string::npos);
}

TEST(AccelServerTest, BadRequestsGetErrorsAndTheConnectionSurvivesWhereItCan) {
  InProcessServer server;
  auto client = AccelClient::Connect(server.address());
  ASSERT_TRUE(client.ok());
  LinearSpec spec = MakeSpec(2, 4, 4, 3, 3, 1, 1);
  uint64_t handle = *(*client)->Register(spec);

  // Wrong sizes are caught by the client before sending.
  std::vector<uint32_t> x(static_cast<size_t>(spec.input_size()), 1);
  EXPECT_EQ((*client)->Compute(handle, 2, x).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*client)->Compute(handle + 100, 1, x).status().code(), StatusCode::kInvalidArgument);
  LinearSpec bad = spec;
  bad.weights[0] = 99;
  EXPECT_EQ((*client)->Register(bad).status().code(), StatusCode::kInvalidArgument);

  // The server's own checks, through raw frames on one connection.
  ScopedFd fd = server.Raw();
  auto round_trip = [&](MessageType type, const std::vector<uint8_t>& payload) -> Result<Frame> {
    PPML_RETURN_IF_ERROR(WriteFrame(fd.get(), type, payload, net::DeadlineAfter(2000)));
    return ReadFrame(fd.get(), kDefaultMaxPayload, net::DeadlineAfter(5000));
  };
  Result<Frame> reply = round_trip(MessageType::kCompute, EncodeCompute(999, 1, x));  // bad handle
  ASSERT_TRUE(reply.ok());
  ASSERT_EQ(reply->type, MessageType::kError);
  EXPECT_EQ(ParseError(reply->payload).code(), StatusCode::kNotFound);
  reply = round_trip(MessageType::kCompute, EncodeCompute(handle, 1, std::span(x).first(5)));  // wrong count
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(ParseError(reply->payload).code(), StatusCode::kInvalidArgument);
  std::vector<uint32_t> outside = x;
  outside[0] = kPrime;
  reply = round_trip(MessageType::kCompute, EncodeCompute(handle, 1, outside));  // not field elements
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(ParseError(reply->payload).code(), StatusCode::kInvalidArgument);
  reply = round_trip(MessageType::kRegisterLayer, {1, 2, 3});  // not a spec
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(ParseError(reply->payload).code(), StatusCode::kInvalidArgument);
  reply = round_trip(MessageType::kComputeResult, {});  // a server-only message
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(ParseError(reply->payload).code(), StatusCode::kInvalidArgument);
  // After all that, the same connection still computes.
  reply = round_trip(MessageType::kCompute, EncodeCompute(handle, 1, x));
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->type, MessageType::kComputeResult);
}

TEST(AccelServerTest, BrokenFramesCloseTheConnectionButNotTheServer) {
  InProcessServer server({}, /*max_payload=*/1 << 20);
  auto expect_error_then_close = [&](const std::vector<uint8_t>& bytes, const char* what) {
    ScopedFd fd = server.Raw();
    ASSERT_TRUE(SendBytes(fd.get(), bytes).ok());
    Result<Frame> reply = ReadFrame(fd.get(), kDefaultMaxPayload, net::DeadlineAfter(5000));
    ASSERT_TRUE(reply.ok()) << what << ": " << reply.status().ToString();
    EXPECT_EQ(reply->type, MessageType::kError) << what;
    EXPECT_EQ(ParseError(reply->payload).code(), StatusCode::kInvalidArgument) << what;
    // Then the server hangs up.
    EXPECT_EQ(ReadFrame(fd.get(), kDefaultMaxPayload, net::DeadlineAfter(5000)).status().code(),
              StatusCode::kUnavailable)
        << what;
  };
  std::vector<uint8_t> frame = EncodeFrame(MessageType::kHello, EncodeHello(1));
  std::vector<uint8_t> oversize = frame;
  oversize[4] = 0x7f;  // claims ~2 GiB, over the 1 MiB cap: refused before any allocation
  expect_error_then_close(oversize, "oversize length");
  std::vector<uint8_t> unknown = frame;
  unknown[3] = 77;
  expect_error_then_close(unknown, "unknown type");
  std::vector<uint8_t> garbage(16, 'G');
  expect_error_then_close(garbage, "bad magic");

  {  // Truncated: half a frame, then the client hangs up.
    ScopedFd fd = server.Raw();
    std::vector<uint8_t> compute = EncodeFrame(MessageType::kCompute, EncodeCompute(1, 1, std::vector<uint32_t>(64)));
    compute.resize(compute.size() / 2);
    ASSERT_TRUE(SendBytes(fd.get(), compute).ok());
  }
  // The server still serves new connections.
  auto client = AccelClient::Connect(server.address());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_TRUE((*client)->Register(MakeDense(4, 2)).ok());
}

TEST(AccelServerTest, ClientReportsAnUnreachableServerAsUnavailable) {
  TempDir dir("ppml-accel-test");
  auto client = AccelClient::Connect("unix:" + dir.File("nobody.sock"), {.connect_timeout_ms = 500});
  EXPECT_EQ(client.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(client.status().message().find("nobody.sock"), std::string::npos);
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  client = AccelClient::Connect("127.0.0.1:" + std::to_string(*port), {.connect_timeout_ms = 500});
  EXPECT_EQ(client.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(AccelClient::Connect("no-port-here").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(AccelClient::Connect("host:99999").status().code(), StatusCode::kInvalidArgument);
}

TEST(TamperTest, ParsesKindsAndTampersEveryReplyAtRateOne) {
  EXPECT_EQ(ParseTamperKinds("all")->size(), 4u);
  EXPECT_EQ(*ParseTamperKinds("row,replay"), (std::vector<TamperKind>{TamperKind::kRow, TamperKind::kReplay}));
  EXPECT_FALSE(ParseTamperKinds("element,bogus").ok());
  EXPECT_FALSE(ParseTamperKinds("").ok());

  LinearSpec spec = MakeSpec(2, 3, 3, 2, 3, 1, 1);
  std::mt19937_64 rng(52);
  for (TamperKind kind : TamperOptions{}.kinds) {
    Tamperer tamperer({.rate = 1, .kinds = {kind}, .seed = 7});
    for (int i = 0; i < 5; ++i) {
      std::vector<uint32_t> x = RandomField(static_cast<size_t>(2 * spec.input_size()), rng);
      const std::vector<uint32_t> honest = ReferenceFieldLinear(spec, x, 2);
      std::vector<uint32_t> reply = honest;
      auto applied = tamperer.MaybeTamper(spec, 2, reply);
      ASSERT_TRUE(applied.has_value());
      EXPECT_EQ(applied->counter, static_cast<uint64_t>(i + 1));
      // The first replay has nothing earlier to send: it falls back to element.
      EXPECT_EQ(applied->kind, kind == TamperKind::kReplay && i == 0 ? TamperKind::kElement : kind);
      EXPECT_NE(reply, honest);
      for (uint32_t v : reply) ASSERT_LT(v, kPrime);
    }
  }
  Tamperer never({.rate = 0, .kinds = TamperOptions{}.kinds, .seed = 1});
  std::vector<uint32_t> reply = {1, 2, 3};
  EXPECT_FALSE(never.MaybeTamper(spec, 1, reply).has_value());
}

}  // namespace
}  // namespace ppml::accel
