// ppml-accel's CUDA backend on a real GPU (built only with CUDA, run on the
// GPU machine): every layer shape bit-identical to the naive reference in
// both exact kernels (INT8 digits, FP64), the extremes of the field and of
// the reduction length, inputs above p refused, concurrent callers, and the
// enclave's three modes giving the same bits against `ppml-accel --backend cuda`.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "accel/cuda_backend.h"
#include "accel/outsource.h"
#include "common/tensor.h"
#include "int8/quantize.h"
#include "tests/accel/accel_test_util.h"
#include "tests/support/accel_process.h"

namespace ppml::accel {
namespace {

using testing::MakeDense;
using testing::MakeSpec;
using testing::RandomField;
using testing::ReferenceFieldLinear;
using testing::VarietyOfSpecs;

std::unique_ptr<Backend> Make(CudaKernel kernel, int64_t max_scratch_bytes = int64_t{2} << 30) {
  CudaBackendOptions options;
  options.kernel = kernel;
  options.max_scratch_bytes = max_scratch_bytes;
  auto backend = MakeCudaBackend(options);
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  return backend.ok() ? std::move(backend).value() : nullptr;
}

std::vector<uint32_t> Compute(Backend& backend, const LinearSpec& spec, int64_t batch, const std::vector<uint32_t>& x) {
  std::vector<uint32_t> out(static_cast<size_t>(batch * spec.output_size()));
  Status status = backend.Compute(spec, SpecDigest(spec), batch, x, out);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return out;
}

class CudaBackendTest : public ::testing::TestWithParam<CudaKernel> {};

TEST_P(CudaBackendTest, EveryShapeMatchesTheReference) {
  auto backend = Make(GetParam());
  ASSERT_NE(backend, nullptr);
  EXPECT_NE(backend->name().find(GetParam() == CudaKernel::kFp64 ? "cuda-fp64" : "cuda-int8-digits"), std::string::npos);
  std::mt19937_64 rng(3);
  std::vector<testing::NamedSpec> specs = VarietyOfSpecs();
  specs.push_back({"resnet_stem_7x7_stride2", MakeSpec(3, 32, 32, 16, 7, 2, 3)});
  specs.push_back({"dense_wide", MakeDense(4099, 1001, 11)});
  for (const auto& [name, spec] : specs) {
    for (int64_t batch : {1, 3, 8}) {
      const std::vector<uint32_t> x = RandomField(static_cast<size_t>(batch * spec.input_size()), rng);
      EXPECT_EQ(Compute(*backend, spec, batch, x), ReferenceFieldLinear(spec, x, batch)) << name << " batch " << batch;
    }
  }
}

TEST_P(CudaBackendTest, ExtremesOfTheFieldAndTheReductionStayExact) {
  auto backend = Make(GetParam());
  ASSERT_NE(backend, nullptr);
  // The longest reduction a layer may have, every weight at +-63 and every
  // input at the largest field element or its half: the partial sums reach
  // their bounds (2^31 for one INT8 digit, 2^47 in FP64).
  for (int8_t w : {int8_t{kMaxWeight}, int8_t{-kMaxWeight}}) {
    for (uint32_t v : {kPrime - 1, kPrime / 2, kPrime / 2 + 1, 0xFFFFu}) {
      LinearSpec spec = MakeDense(kMaxReductionLength, 3);
      std::fill(spec.weights.begin(), spec.weights.end(), w);
      const std::vector<uint32_t> x(static_cast<size_t>(2 * spec.input_size()), v);
      EXPECT_EQ(Compute(*backend, spec, 2, x), ReferenceFieldLinear(spec, x, 2)) << int{w} << " x " << v;
    }
  }
}

TEST_P(CudaBackendTest, LargeBatchesAreSplitWithoutChangingTheResult) {
  // A scratch cap of one image forces one GEMM per image.
  auto whole = Make(GetParam());
  auto split = Make(GetParam(), 1);
  ASSERT_TRUE(whole && split);
  std::mt19937_64 rng(5);
  for (const LinearSpec& spec : {MakeSpec(16, 14, 14, 32, 3, 1, 1), MakeDense(512, 100)}) {
    const std::vector<uint32_t> x = RandomField(static_cast<size_t>(6 * spec.input_size()), rng);
    const std::vector<uint32_t> expected = ReferenceFieldLinear(spec, x, 6);
    EXPECT_EQ(Compute(*whole, spec, 6, x), expected);
    EXPECT_EQ(Compute(*split, spec, 6, x), expected);
  }
}

TEST_P(CudaBackendTest, InputsAbovePAreRefused) {
  auto backend = Make(GetParam());
  ASSERT_NE(backend, nullptr);
  const LinearSpec spec = MakeDense(8, 2);
  std::vector<uint32_t> x(8, 1);
  x[5] = kPrime;
  std::vector<uint32_t> out(2);
  Status status = backend->Compute(spec, SpecDigest(spec), 1, x, out);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
}

TEST_P(CudaBackendTest, ConcurrentCallersGetTheirOwnResults) {
  auto backend = Make(GetParam());
  ASSERT_NE(backend, nullptr);
  const std::vector<testing::NamedSpec> specs = VarietyOfSpecs();
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      for (int round = 0; round < 20; ++round) {
        const LinearSpec& spec = specs[(t + round) % specs.size()].spec;
        const std::vector<uint32_t> x = RandomField(static_cast<size_t>(2 * spec.input_size()), rng);
        std::vector<uint32_t> out(static_cast<size_t>(2 * spec.output_size()));
        if (!backend->Compute(spec, SpecDigest(spec), 2, x, out).ok() || out != ReferenceFieldLinear(spec, x, 2)) {
          ++mismatches[t];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

INSTANTIATE_TEST_SUITE_P(Kernels, CudaBackendTest, ::testing::Values(CudaKernel::kInt8Digits, CudaKernel::kFp64),
                         [](const auto& info) { return info.param == CudaKernel::kFp64 ? "fp64" : "int8"; });

// The enclave against a real `ppml-accel --backend cuda`: integrity and
// private mode give exactly the bits of the enclave-only run.
TEST(CudaOutsource, EveryModeGivesTheSameBitsAsTheEnclaveAlone) {
  const std::string bytes = int8::ReadModelBytes(std::string(PPML_SOURCE_DIR) + "/models/fashion_cnn.onnx").value();
  for (const char* kernel : {"int8", "fp64"}) {
    ppml::testing::AccelProcess accel("", {"--backend", "cuda", "--cuda-kernel", kernel});
    EXPECT_NE(accel.log().find(kernel == std::string("int8") ? "cuda-int8-digits" : "cuda-fp64"), std::string::npos)
        << accel.log();
    auto load = [&](OutsourceMode mode) {
      OutsourceOptions o;
      o.mode = mode;
      o.accelerator = mode == OutsourceMode::kOff ? "" : accel.address();
      o.calibration = "random:16";
      o.threads = 1;
      o.pad_pool_images = 16;
      o.background_refill = false;
      return OutsourcedModel::Load(bytes, "fashion", o);
    };
    auto off = load(OutsourceMode::kOff), integrity = load(OutsourceMode::kIntegrity), priv = load(OutsourceMode::kPrivate);
    ASSERT_TRUE(off.ok() && integrity.ok() && priv.ok());
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> pixel(0, 1);
    for (int64_t batch : {1, 5}) {
      Tensor images(DataType::kF32, {batch, 1, 28, 28});
      for (int64_t i = 0; i < images.element_count(); ++i) images.data<float>()[i] = pixel(rng);
      auto expected = (*off)->Run(std::span<const Tensor>(&images, 1));
      ASSERT_TRUE((*priv)->FillPads(batch).ok());
      for (auto* model : {integrity->get(), priv->get()}) {
        auto got = model->Run(std::span<const Tensor>(&images, 1));
        ASSERT_TRUE(expected.ok() && got.ok());
        const Tensor& a = (*expected)[0];
        const Tensor& b = (*got)[0];
        ASSERT_EQ(a.byte_size(), b.byte_size());
        EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.byte_size()), 0) << kernel << " batch " << batch;
      }
    }
    for (auto* model : {integrity->get(), priv->get()}) {
      EXPECT_EQ(model->outsource_stats().failed_checks, 0) << kernel;
      EXPECT_EQ(model->outsource_stats().local_calls, 0) << kernel;
    }
  }
}

}  // namespace
}  // namespace ppml::accel
