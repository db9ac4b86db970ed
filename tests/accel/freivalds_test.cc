// FreivaldsCheck accepts every correct result and rejects every tampered one
// the accelerator could send: one element, a row, all +1, a replayed result.
#include <gtest/gtest.h>

#include <thread>

#include "accel/field.h"
#include "tests/accel/accel_test_util.h"

namespace ppml::accel {
namespace {

using testing::MakeDense;
using testing::MakeSpec;
using testing::RandomField;
using testing::ReferenceFieldLinear;
using testing::Seed;
using testing::VarietyOfSpecs;

// A nonzero field element.
uint32_t NonZero(std::mt19937_64& rng) { return std::uniform_int_distribution<uint32_t>(1, kPrime - 1)(rng); }

TEST(FreivaldsTest, AcceptsCorrectResultsForEveryShape) {
  std::mt19937_64 rng(21);
  for (const auto& [name, spec] : VarietyOfSpecs()) {
    auto check = FreivaldsCheck::Create(spec, Seed(1));
    ASSERT_TRUE(check.ok()) << name << ": " << check.status().ToString();
    for (int64_t batch : {1, 3}) {
      std::vector<uint32_t> x = RandomField(static_cast<size_t>(batch * spec.input_size()), rng);
      std::vector<uint32_t> z = ReferenceFieldLinear(spec, x, batch);
      for (int call = 0; call < 3; ++call) {  // fresh r each call
        Status s = (*check)->Verify(x, z, batch);
        ASSERT_TRUE(s.ok()) << name << " batch " << batch << ": " << s.ToString();
      }
    }
  }
}

enum class Tamper { kElement, kRow, kAllPlusOne, kReplay };

// What a cheating accelerator could return instead of z = x W.
std::vector<uint32_t> Tampered(const LinearSpec& spec, const std::vector<uint32_t>& z, int64_t batch, Tamper kind,
                               std::mt19937_64& rng) {
  std::vector<uint32_t> bad = z;
  const int64_t pixels = spec.out_h * spec.out_w;
  switch (kind) {
    case Tamper::kElement: {
      const size_t i = std::uniform_int_distribution<size_t>(0, z.size() - 1)(rng);
      bad[i] = FieldAdd(bad[i], NonZero(rng));
      break;
    }
    case Tamper::kRow: {
      // One image's one output channel; for a dense layer the whole image.
      const int64_t b = std::uniform_int_distribution<int64_t>(0, batch - 1)(rng);
      const int64_t c = std::uniform_int_distribution<int64_t>(0, spec.out_channels - 1)(rng);
      const int64_t begin = spec.is_dense() ? b * spec.output_size() : (b * spec.out_channels + c) * pixels;
      const int64_t count = spec.is_dense() ? spec.output_size() : pixels;
      for (int64_t i = begin; i < begin + count; ++i) bad[i] = FieldAdd(bad[i], NonZero(rng));
      break;
    }
    case Tamper::kAllPlusOne:
      for (auto& v : bad) v = FieldAdd(v, 1);
      break;
    case Tamper::kReplay: {
      // The honest result for another input of the same size.
      std::vector<uint32_t> other = RandomField(static_cast<size_t>(batch * spec.input_size()), rng);
      bad = ReferenceFieldLinear(spec, other, batch);
      break;
    }
  }
  return bad;
}

TEST(FreivaldsTest, RejectsEveryTamperKindOverManyTrials) {
  std::mt19937_64 rng(22);
  const std::vector<testing::NamedSpec> specs = {
      {"dense", MakeDense(64, 16, 31)},
      {"conv", MakeSpec(4, 6, 6, 5, 3, 1, 1, 1, 1, 32)},
      {"conv_stride2", MakeSpec(3, 7, 7, 4, 3, 2, 1, 1, 1, 33)},
      {"grouped_conv", MakeSpec(6, 5, 5, 9, 3, 1, 1, 1, 3, 34)},
      {"depthwise_conv", MakeSpec(6, 5, 5, 6, 3, 1, 1, 1, 6, 35)},
  };
  int rejected = 0, trials = 0;
  for (const auto& [name, spec] : specs) {
    auto check = FreivaldsCheck::Create(spec, Seed(2));
    ASSERT_TRUE(check.ok()) << name;
    for (int trial = 0; trial < 60; ++trial) {
      const int64_t batch = 1 + trial % 4;
      std::vector<uint32_t> x = RandomField(static_cast<size_t>(batch * spec.input_size()), rng);
      std::vector<uint32_t> z = ReferenceFieldLinear(spec, x, batch);
      ASSERT_TRUE((*check)->Verify(x, z, batch).ok()) << name;
      for (Tamper kind : {Tamper::kElement, Tamper::kRow, Tamper::kAllPlusOne, Tamper::kReplay}) {
        std::vector<uint32_t> bad = Tampered(spec, z, batch, kind, rng);
        Status s = (*check)->Verify(x, bad, batch);
        ++trials;
        if (s.code() == StatusCode::kDataLoss) ++rejected;
        EXPECT_EQ(s.code(), StatusCode::kDataLoss) << name << " trial " << trial << " kind " << static_cast<int>(kind);
        EXPECT_NE(s.message().find(SpecDigest(spec).substr(0, 12)), std::string::npos) << s.message();
      }
    }
  }
  EXPECT_EQ(rejected, trials);
}

TEST(FreivaldsTest, OneRepetitionAlsoCatchesTampering) {
  std::mt19937_64 rng(23);
  LinearSpec spec = MakeSpec(4, 5, 5, 4, 3, 1, 1);
  auto check = FreivaldsCheck::Create(spec, Seed(3), 1);
  ASSERT_TRUE(check.ok());
  EXPECT_EQ((*check)->repetitions(), 1);
  std::vector<uint32_t> x = RandomField(static_cast<size_t>(spec.input_size()), rng);
  std::vector<uint32_t> z = ReferenceFieldLinear(spec, x, 1);
  for (int trial = 0; trial < 200; ++trial) {
    EXPECT_EQ((*check)->Verify(x, Tampered(spec, z, 1, Tamper::kElement, rng), 1).code(), StatusCode::kDataLoss);
  }
}

TEST(FreivaldsTest, RejectsOutOfFieldResultsAndBadSizes) {
  std::mt19937_64 rng(24);
  LinearSpec spec = MakeSpec(3, 4, 4, 2, 3, 1, 1);
  auto check = FreivaldsCheck::Create(spec, Seed(4));
  ASSERT_TRUE(check.ok());
  std::vector<uint32_t> x = RandomField(static_cast<size_t>(2 * spec.input_size()), rng);
  std::vector<uint32_t> z = ReferenceFieldLinear(spec, x, 2);
  std::vector<uint32_t> bad = z;
  bad[0] += kPrime;  // the same residue, but not a field element
  EXPECT_EQ((*check)->Verify(x, bad, 2).code(), StatusCode::kDataLoss);
  EXPECT_EQ((*check)->Verify(x, z, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*check)->Verify(x, z, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*check)->Verify(std::span(x).first(5), z, 2).code(), StatusCode::kInvalidArgument);
  std::vector<uint32_t> x_bad = x;
  x_bad[1] = kPrime;
  EXPECT_EQ((*check)->Verify(x_bad, z, 2).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(FreivaldsCheck::Create(spec, std::vector<std::byte>(31)).ok());
  EXPECT_FALSE(FreivaldsCheck::Create(spec, Seed(4), 0).ok());
  EXPECT_GT((*check)->macs(2), 0);
}

TEST(FreivaldsTest, VerifyIsSafeFromSeveralThreads) {
  LinearSpec spec = MakeSpec(4, 6, 6, 4, 3, 1, 1);
  auto check = FreivaldsCheck::Create(spec, Seed(5));
  ASSERT_TRUE(check.ok());
  std::mt19937_64 rng(25);
  std::vector<uint32_t> x = RandomField(static_cast<size_t>(2 * spec.input_size()), rng);
  std::vector<uint32_t> z = ReferenceFieldLinear(spec, x, 2);
  std::vector<uint32_t> bad = Tampered(spec, z, 2, Tamper::kElement, rng);
  std::atomic<int> failures{0};
  auto worker = [&] {
    for (int i = 0; i < 200; ++i) {
      if (!(*check)->Verify(x, z, 2).ok()) ++failures;
      if ((*check)->Verify(x, bad, 2).ok()) ++failures;
    }
  };
  std::thread a(worker), b(worker);
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace ppml::accel
