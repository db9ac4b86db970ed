// The enclave side of verified outsourcing on the committed Fashion-MNIST
// CNN, against a real ppml-accel process: accuracy of the field model,
// bit-identical outputs in every mode, tamper detection with recomputation,
// fallback when pads run out, and refusal for confidential models.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <mutex>

#include "accel/client.h"
#include "accel/protocol.h"
#include "common/listen.h"
#include "accel/outsource.h"
#include "common/dataset.h"
#include "common/process.h"
#include "int8/quantize.h"
#include "tests/support/accel_process.h"

namespace ppml::accel {
namespace {

const std::string kModel = std::string(PPML_SOURCE_DIR) + "/models/fashion_cnn.onnx";

std::string ModelBytes() { return int8::ReadModelBytes(kModel).value(); }

using Accelerator = ppml::testing::AccelProcess;

OutsourceOptions Options(OutsourceMode mode, const std::string& address = "") {
  OutsourceOptions o;
  o.mode = mode;
  o.accelerator = address;
  o.calibration = "fashion-mnist:train:64";
  o.threads = 1;
  o.pad_pool_images = 16;
  o.background_refill = false;
  return o;
}

std::unique_ptr<OutsourcedModel> Load(const OutsourceOptions& options) {
  auto model = OutsourcedModel::Load(ModelBytes(), "fashion", options);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return model.ok() ? std::move(model).value() : nullptr;
}

Tensor TestImages(int64_t first, int64_t count, std::vector<int>* labels = nullptr) {
  auto data = LoadDataset("fashion-mnist:test").value();
  Tensor batch(DataType::kF32, {count, 1, 28, 28});
  std::memcpy(batch.raw_data(), data.images.data<float>() + first * 784, batch.byte_size());
  if (labels) labels->assign(data.labels.begin() + first, data.labels.begin() + first + count);
  return batch;
}

std::vector<float> Infer(OutsourcedModel& model, const Tensor& input) {
  auto out = model.Run(std::span<const Tensor>(&input, 1));
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return {};
  const Tensor& y = (*out)[0];
  return std::vector<float>(y.data<float>(), y.data<float>() + y.element_count());
}

TEST(Outsource, FieldModelKeepsTheAccuracy) {
  auto model = Load(Options(OutsourceMode::kOff));
  ASSERT_NE(model, nullptr);
  std::vector<int> labels;
  const Tensor images = TestImages(0, 1000, &labels);
  const std::vector<float> logits = Infer(*model, images);
  ASSERT_EQ(logits.size(), 10000u);
  int correct = 0;
  for (int i = 0; i < 1000; ++i) {
    const float* row = logits.data() + i * 10;
    correct += std::max_element(row, row + 10) - row == labels[i];
  }
  // The FP32 model scores 0.9171 on all 10k; 7-bit weights, 8-bit activations.
  EXPECT_GE(correct, 890) << model->LayerTable();
  const OutsourceStats s = model->outsource_stats();
  EXPECT_EQ(s.layers, 5);
  EXPECT_EQ(s.enclave_mac_fraction(), 1.0);
}

TEST(Outsource, EveryModeGivesTheSameBits) {
  Accelerator accel;
  auto off = Load(Options(OutsourceMode::kOff));
  auto integrity = Load(Options(OutsourceMode::kIntegrity, accel.address()));
  auto priv = Load(Options(OutsourceMode::kPrivate, accel.address()));
  ASSERT_TRUE(off && integrity && priv);
  for (int64_t batch : {1, 3, 8}) {
    const Tensor images = TestImages(100 * batch, batch);
    const std::vector<float> expected = Infer(*off, images);
    EXPECT_EQ(Infer(*integrity, images), expected) << "batch " << batch;
    ASSERT_TRUE(priv->FillPads(batch).ok());
    EXPECT_EQ(Infer(*priv, images), expected) << "batch " << batch;
  }
  for (auto* m : {integrity.get(), priv.get()}) {
    const OutsourceStats s = m->outsource_stats();
    EXPECT_EQ(s.outsourced_calls, 15);  // 5 layers x 3 batches
    EXPECT_EQ(s.local_calls, 0);
    EXPECT_EQ(s.failed_checks, 0);
    EXPECT_LT(s.enclave_mac_fraction(), 0.2);
  }
  EXPECT_EQ(priv->outsource_stats().pads_used, 5 * (1 + 3 + 8));
}

TEST(Outsource, PrivateModeWithoutPadsComputesInside) {
  Accelerator accel;
  auto off = Load(Options(OutsourceMode::kOff));
  OutsourceOptions o = Options(OutsourceMode::kPrivate, accel.address());
  o.pad_pool_images = 2;
  auto priv = Load(o);
  ASSERT_TRUE(off && priv);
  const Tensor images = TestImages(0, 4);  // 4 images, 2 pads per layer: never blinded enough
  EXPECT_EQ(Infer(*priv, images), Infer(*off, images));
  const OutsourceStats s = priv->outsource_stats();
  EXPECT_EQ(s.outsourced_calls, 0);
  EXPECT_EQ(s.pad_fallbacks, 5);
  EXPECT_EQ(s.local_calls, 5);
}

TEST(Outsource, TamperedRepliesAreCaughtAndRecomputed) {
  Accelerator accel("", {"--tamper-rate", "1", "--tamper-seed", "3"});
  auto off = Load(Options(OutsourceMode::kOff));
  for (OutsourceMode mode : {OutsourceMode::kIntegrity, OutsourceMode::kPrivate}) {
    OutsourceOptions o = Options(mode, accel.address());
    o.max_failures = 0;
    o.audit_replies = true;
    auto model = Load(o);
    ASSERT_TRUE(model && off);
    for (int round = 0; round < 8; ++round) {
      const Tensor images = TestImages(10 * round, 2);
      ASSERT_TRUE(model->FillPads(2).ok());
      EXPECT_EQ(Infer(*model, images), Infer(*off, images)) << OutsourceModeName(mode) << " round " << round;
    }
    const OutsourceStats s = model->outsource_stats();
    EXPECT_EQ(s.corrupted_replies, 40);
    EXPECT_EQ(s.failed_checks, 40);
    EXPECT_EQ(s.outsourced_calls, 0);
    EXPECT_EQ(s.local_calls, 40);
  }
}

TEST(Outsource, AcceleratorIsDroppedAfterRepeatedFailures) {
  Accelerator accel("", {"--tamper-rate", "1"});
  OutsourceOptions o = Options(OutsourceMode::kIntegrity, accel.address());
  o.max_failures = 3;
  auto model = Load(o);
  ASSERT_NE(model, nullptr);
  Infer(*model, TestImages(0, 1));
  const OutsourceStats s = model->outsource_stats();
  EXPECT_TRUE(s.accelerator_bad);
  EXPECT_EQ(s.failed_checks, 3);
  EXPECT_EQ(s.local_calls, 5);
}

// ppml-accel stopped and started again on the same socket: the layers run
// inside while it is gone (not counted as failed checks, so it is not
// dropped), and the enclave reconnects and registers them again.
TEST(Outsource, AcceleratorRestartedOnTheSameSocketIsUsedAgain) {
  TempDir dir("accel-restart");
  const std::string listen = "unix:" + dir.File("accel.sock");
  auto off = Load(Options(OutsourceMode::kOff));
  auto first = std::make_unique<Accelerator>(listen);
  OutsourceOptions o = Options(OutsourceMode::kIntegrity, first->address());
  o.max_failures = 1;
  auto model = Load(o);
  ASSERT_TRUE(model && off);
  const Tensor images = TestImages(0, 2);
  EXPECT_EQ(Infer(*model, images), Infer(*off, images));
  EXPECT_EQ(model->outsource_stats().outsourced_calls, 5);

  first->Stop();
  first.reset();
  EXPECT_EQ(Infer(*model, images), Infer(*off, images));
  OutsourceStats s = model->outsource_stats();
  EXPECT_EQ(s.outsourced_calls, 5);
  EXPECT_EQ(s.local_calls, 5);
  EXPECT_GE(s.accelerator_errors, 1);
  EXPECT_EQ(s.failed_checks, 0);
  EXPECT_FALSE(s.accelerator_bad);

  Accelerator second(listen);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the reconnect interval
  EXPECT_EQ(Infer(*model, images), Infer(*off, images));
  s = model->outsource_stats();
  EXPECT_EQ(s.reconnects, 1);
  EXPECT_EQ(s.outsourced_calls, 10);
  EXPECT_FALSE(s.accelerator_bad);
  EXPECT_NE(second.log().find("accel_layer_registered"), std::string::npos);
}

// A man in the middle: forwards frames between the enclave and a real
// ppml-accel and keeps every field element the accelerator is sent.
class RecordingProxy {
 public:
  RecordingProxy(const std::string& upstream) : upstream_(upstream) {
    path_ = dir_.File("proxy.sock");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    listener_ = ScopedFd(::socket(AF_UNIX, SOCK_STREAM, 0));
    EXPECT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listener_.get(), 4), 0);
    thread_ = std::thread([this] { Forward(); });
  }
  ~RecordingProxy() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    thread_.join();
  }
  std::string address() const { return "unix:" + path_; }
  // Elements sent for computation that look like unblinded 8-bit activations.
  double SmallFraction() {
    std::lock_guard lock(mutex_);
    size_t small = 0;
    for (uint32_t v : sent_) small += v <= 255 || v >= kPrime - 127;
    return sent_.empty() ? -1 : static_cast<double>(small) / sent_.size();
  }
  size_t sent() {
    std::lock_guard lock(mutex_);
    return sent_.size();
  }

 private:
  void Forward() {
    ScopedFd client(::accept(listener_.get(), nullptr, nullptr));
    if (client.get() < 0) return;
    std::string path = upstream_.substr(5);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ScopedFd server(::socket(AF_UNIX, SOCK_STREAM, 0));
    if (::connect(server.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
    auto deadline = [] { return net::DeadlineAfter(30000); };
    while (true) {
      Result<Frame> request = ReadFrame(client.get(), kDefaultMaxPayload, deadline());
      if (!request.ok()) return;
      if (request->type == MessageType::kCompute) {
        auto compute = ParseCompute(request->payload);
        if (compute.ok()) {
          std::lock_guard lock(mutex_);
          sent_.insert(sent_.end(), compute->x.begin(), compute->x.end());
        }
      }
      if (!WriteFrame(server.get(), request->type, request->payload, deadline()).ok()) return;
      Result<Frame> reply = ReadFrame(server.get(), kDefaultMaxPayload, deadline());
      if (!reply.ok() || !WriteFrame(client.get(), reply->type, reply->payload, deadline()).ok()) return;
    }
  }

  TempDir dir_{"accel-proxy"};
  std::string upstream_, path_;
  ScopedFd listener_;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<uint32_t> sent_;
};

TEST(Outsource, TheAcceleratorNeverSeesAnUnblindedActivation) {
  Accelerator accel;
  for (OutsourceMode mode : {OutsourceMode::kIntegrity, OutsourceMode::kPrivate}) {
    RecordingProxy proxy(accel.address());
    auto model = Load(Options(mode, proxy.address()));
    ASSERT_NE(model, nullptr);
    ASSERT_TRUE(model->FillPads(4).ok());
    Infer(*model, TestImages(0, 4));
    ASSERT_EQ(model->outsource_stats().outsourced_calls, 5);
    ASSERT_GT(proxy.sent(), 10000u);
    if (mode == OutsourceMode::kIntegrity) {
      // The check-only mode sends the quantized activations as they are.
      EXPECT_EQ(proxy.SmallFraction(), 1.0);
    } else {
      // Blinded: uniform in Z_p, so about 383 / p of them fall in that range by chance.
      EXPECT_LT(proxy.SmallFraction(), 1e-3);
    }
  }
}

TEST(Outsource, ConfidentialModelsAreNeverOutsourced) {
  OutsourceOptions o = Options(OutsourceMode::kIntegrity, "unix:/nonexistent");
  o.confidential = true;
  auto model = OutsourcedModel::Load(ModelBytes(), "fashion", o);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(model.status().message().find("confidential"), std::string::npos);
  // Inside the enclave only, it loads.
  o.mode = OutsourceMode::kOff;
  EXPECT_TRUE(OutsourcedModel::Load(ModelBytes(), "fashion", o).ok());
}

TEST(Outsource, BadOptionsAreClearErrors) {
  auto no_address = OutsourcedModel::Load(ModelBytes(), "fashion", Options(OutsourceMode::kPrivate));
  EXPECT_EQ(no_address.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseOutsourceMode("sometimes").status().code(), StatusCode::kInvalidArgument);
  auto unreachable = OutsourcedModel::Load(ModelBytes(), "fashion",
                                           Options(OutsourceMode::kIntegrity, "unix:/nonexistent/accel.sock"));
  EXPECT_FALSE(unreachable.ok());
  OutsourceOptions bad_calibration = Options(OutsourceMode::kOff);
  bad_calibration.calibration = "random:0";
  EXPECT_FALSE(OutsourcedModel::Load(ModelBytes(), "fashion", bad_calibration).ok());
}

}  // namespace
}  // namespace ppml::accel
