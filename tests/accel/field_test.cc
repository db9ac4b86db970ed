// Field helpers, spec validation and identity, the field PRG, ExactLinear and
// FieldLinear against naive references.
#include <gtest/gtest.h>

#include <set>

#include "accel/field.h"
#include "accel/field_kernels.h"
#include "tests/accel/accel_test_util.h"

namespace ppml::accel {
namespace {

using testing::MakeDense;
using testing::MakeSpec;
using testing::RandomField;
using testing::ReferenceFieldLinear;
using testing::ReferenceLinear;
using testing::Seed;
using testing::VarietyOfSpecs;

TEST(FieldHelpers, SignedValuesRoundTripThroughCentered) {
  EXPECT_EQ(FieldFromSigned(-1), kPrime - 1);
  EXPECT_EQ(FieldFromSigned(kPrime), 0u);
  EXPECT_EQ(FieldFromSigned(-static_cast<int64_t>(kPrime) * 5 - 7), kPrime - 7);
  for (int64_t v : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{123456}, int64_t{-8388606}, int64_t{8388606}}) {
    EXPECT_EQ(Centered(FieldFromSigned(v)), v) << v;
  }
  EXPECT_EQ(FieldAdd(kPrime - 1, 1), 0u);
  EXPECT_EQ(FieldAdd(kPrime - 1, kPrime - 1), kPrime - 2);
  EXPECT_EQ(FieldSub(0, 1), kPrime - 1);
  EXPECT_EQ(FieldMul(kPrime - 1, kPrime - 1), 1u);  // (-1)^2
  EXPECT_EQ(FieldMul(FieldFromSigned(-3), 5), FieldFromSigned(-15));
}

TEST(LinearSpecTest, ValidatesEveryField) {
  LinearSpec good = MakeSpec(4, 8, 8, 6, 3, 1, 1, 1, 2);
  EXPECT_TRUE(ValidateSpec(good).ok()) << ValidateSpec(good).ToString();

  LinearSpec bad = good;
  bad.out_h = 7;
  EXPECT_NE(ValidateSpec(bad).message().find("out_h"), std::string::npos);
  bad = good;
  bad.weights[3] = 64;
  EXPECT_NE(ValidateSpec(bad).message().find("weights[3]"), std::string::npos);
  bad = good;
  bad.weights[5] = -128;
  EXPECT_FALSE(ValidateSpec(bad).ok());
  bad = good;
  bad.weights.pop_back();
  EXPECT_NE(ValidateSpec(bad).message().find("weights has"), std::string::npos);
  bad = good;
  bad.groups = 3;
  EXPECT_NE(ValidateSpec(bad).message().find("groups"), std::string::npos);
  bad = good;
  bad.stride_h = 0;
  EXPECT_NE(ValidateSpec(bad).message().find("stride_h"), std::string::npos);
  bad = good;
  bad.pad_left = -1;
  EXPECT_NE(ValidateSpec(bad).message().find("pad_left"), std::string::npos);
  bad = good;
  bad.in_channels = int64_t{1} << 40;
  EXPECT_NE(ValidateSpec(bad).message().find("in_channels"), std::string::npos);
  // K = 140,000 > 133,000: a limb could overflow s32.
  LinearSpec long_dense = MakeDense(140000, 1);
  EXPECT_NE(ValidateSpec(long_dense).message().find("reduction length"), std::string::npos);
}

TEST(LinearSpecTest, SerializeParseRoundTripAndDigest) {
  for (const auto& [name, spec] : VarietyOfSpecs()) {
    std::vector<uint8_t> bytes = SerializeSpec(spec);
    Result<LinearSpec> parsed = ParseSpec(bytes);
    ASSERT_TRUE(parsed.ok()) << name << ": " << parsed.status().ToString();
    EXPECT_EQ(SerializeSpec(*parsed), bytes) << name;
    EXPECT_EQ(SpecDigest(*parsed), SpecDigest(spec)) << name;
    EXPECT_EQ(SpecDigest(spec).size(), 64u);
  }
  LinearSpec a = MakeSpec(4, 6, 6, 4, 3, 1, 1);
  LinearSpec b = a;
  b.weights[7] = static_cast<int8_t>(b.weights[7] == 1 ? 2 : 1);
  EXPECT_NE(SpecDigest(a), SpecDigest(b));
  b = a;
  b.pad_top = b.pad_bottom = 0;
  b.out_h = 4;
  EXPECT_NE(SpecDigest(a), SpecDigest(b));

  std::vector<uint8_t> bytes = SerializeSpec(a);
  EXPECT_FALSE(ParseSpec(std::span(bytes).first(bytes.size() - 1)).ok());  // one weight short
  EXPECT_FALSE(ParseSpec(std::span(bytes).first(10)).ok());
  bytes[0] = 'X';
  EXPECT_FALSE(ParseSpec(bytes).ok());
  // A hostile header that claims a huge layer is refused before any allocation.
  bytes = SerializeSpec(a);
  for (int i = 0; i < 8; ++i) bytes[4 + i] = 0x7f;
  EXPECT_FALSE(ParseSpec(bytes).ok());
}

TEST(FieldPrgTest, DeterministicUniformAndStreamSeparated) {
  auto a = FieldPrg::Create(Seed(7), 0);
  auto b = FieldPrg::Create(Seed(7), 0);
  auto c = FieldPrg::Create(Seed(7), 1);
  auto d = FieldPrg::Create(Seed(8), 0);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  std::vector<uint32_t> va(100000), vb(100000), vc(1000), vd(1000);
  // Fill in uneven pieces: the sequence must not depend on the split.
  ASSERT_TRUE(a->Fill(std::span(va).first(7)).ok());
  ASSERT_TRUE(a->Fill(std::span(va).subspan(7)).ok());
  ASSERT_TRUE(b->Fill(vb).ok());
  ASSERT_TRUE(c->Fill(vc).ok());
  ASSERT_TRUE(d->Fill(vd).ok());
  EXPECT_EQ(va, vb);
  EXPECT_NE(std::vector<uint32_t>(va.begin(), va.begin() + 1000), vc);
  EXPECT_NE(std::vector<uint32_t>(va.begin(), va.begin() + 1000), vd);
  double mean = 0;
  uint32_t high = 0;
  std::set<uint32_t> distinct;
  for (uint32_t v : va) mean += v, high = std::max(high, v), distinct.insert(v);
  mean /= static_cast<double>(va.size());
  EXPECT_LT(high, kPrime);
  EXPECT_NEAR(mean / kPrime, 0.5, 0.01);
  EXPECT_GT(distinct.size(), 99000u);  // birthday collisions in 2^24: about 300
  EXPECT_FALSE(FieldPrg::Create(std::vector<std::byte>(16), 0).ok());
}

std::vector<int64_t> RandomActivations(size_t n, ActivationType type, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> d(type == ActivationType::kU8 ? 0 : -128, type == ActivationType::kU8 ? 255 : 127);
  std::vector<int64_t> v(n);
  for (auto& e : v) e = d(rng);
  if (n >= 2) v[0] = type == ActivationType::kU8 ? 255 : -128, v[1] = type == ActivationType::kU8 ? 0 : 127;
  return v;
}

TEST(ExactLinearTest, MatchesNaiveReferenceBitExact) {
  std::mt19937_64 rng(11);
  for (const auto& [name, spec] : VarietyOfSpecs()) {
    for (ActivationType type : {ActivationType::kU8, ActivationType::kS8}) {
      const int64_t batch = 3;
      auto exact = ExactLinear::Create(spec, type, batch);
      ASSERT_TRUE(exact.ok()) << name << ": " << exact.status().ToString();
      std::vector<int64_t> x = RandomActivations(static_cast<size_t>(batch * spec.input_size()), type, rng);
      std::vector<std::byte> bytes(x.size());
      for (size_t i = 0; i < x.size(); ++i) bytes[i] = static_cast<std::byte>(static_cast<uint8_t>(x[i]));
      std::vector<int32_t> out(static_cast<size_t>(batch * spec.output_size()));
      ASSERT_TRUE((*exact)->Run(bytes, out).ok()) << name;
      std::vector<int64_t> want = ReferenceLinear(spec, x, batch);
      ASSERT_EQ(std::vector<int64_t>(out.begin(), out.end()), want)
          << name << (type == ActivationType::kU8 ? " u8" : " s8");
    }
  }
}

TEST(ExactLinearTest, RejectsWrongSizes) {
  LinearSpec spec = MakeSpec(2, 4, 4, 2, 3, 1, 1);
  auto exact = ExactLinear::Create(spec, ActivationType::kU8, 2);
  ASSERT_TRUE(exact.ok());
  std::vector<std::byte> in(static_cast<size_t>(2 * spec.input_size() - 1));
  std::vector<int32_t> out(static_cast<size_t>(2 * spec.output_size()));
  EXPECT_EQ((*exact)->Run(in, out).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(ExactLinear::Create(spec, ActivationType::kU8, 0).ok());
  LinearSpec bad = spec;
  bad.weights[0] = 100;
  EXPECT_EQ(ExactLinear::Create(bad, ActivationType::kU8, 1).status().code(), StatusCode::kInvalidArgument);
}

TEST(FieldLinearTest, MatchesNaiveModPReferenceOnRandomFieldInputs) {
  std::mt19937_64 rng(12);
  for (const auto& [name, spec] : VarietyOfSpecs()) {
    const int64_t batch = 2;
    auto field = FieldLinear::Create(spec, batch);
    ASSERT_TRUE(field.ok()) << name << ": " << field.status().ToString();
    std::vector<uint32_t> x = RandomField(static_cast<size_t>(batch * spec.input_size()), rng);
    std::vector<uint32_t> out(static_cast<size_t>(batch * spec.output_size()));
    ASSERT_TRUE((*field)->Run(x, out).ok()) << name;
    EXPECT_EQ(out, ReferenceFieldLinear(spec, x, batch)) << name;
  }
}

TEST(FieldLinearTest, MaximalInputsAndWeightsStayExact) {
  // Every input p - 1 and every weight +-63: the largest limb sums there are.
  for (int sign : {1, -1}) {
    LinearSpec spec = MakeSpec(64, 6, 6, 4, 3, 1, 1);
    for (auto& w : spec.weights) w = static_cast<int8_t>(sign * kMaxWeight);
    std::vector<uint32_t> x(static_cast<size_t>(spec.input_size()), kPrime - 1);
    auto field = FieldLinear::Create(spec, 1);
    ASSERT_TRUE(field.ok());
    std::vector<uint32_t> out(static_cast<size_t>(spec.output_size()));
    ASSERT_TRUE((*field)->Run(x, out).ok());
    EXPECT_EQ(out, ReferenceFieldLinear(spec, x, 1));
  }
  // The longest reduction allowed, as a dense layer.
  LinearSpec dense = MakeDense(kMaxReductionLength, 2);
  for (size_t i = 0; i < dense.weights.size(); ++i) dense.weights[i] = static_cast<int8_t>(i < dense.weights.size() / 2 ? 63 : -63);
  std::vector<uint32_t> x(static_cast<size_t>(dense.input_size()), kPrime - 1);
  for (size_t i = 0; i < x.size(); i += 3) x[i] = 0xFFFF;  // limbs 255, 255, 0
  const std::vector<uint32_t> want = ReferenceFieldLinear(dense, x, 1);
  const std::vector<std::pair<const char*, Result<std::unique_ptr<FieldLinear>>>> kernels = [&] {
    std::vector<std::pair<const char*, Result<std::unique_ptr<FieldLinear>>>> k;
    // (The convolution kernel would split K into 128 parts here; the split
    // is covered by LongReductionsAreSplitAndStayExact.)
    k.emplace_back("limbs, inner product", CreateLimbFieldLinear(dense, 1, Int8Kernel::kInnerProduct));
    k.emplace_back("double GEMM", CreateDoubleDenseFieldLinear(dense, 1));
    return k;
  }();
  for (const auto& [name, field] : kernels) {
    ASSERT_TRUE(field.ok()) << name << ": " << field.status().ToString();
    std::vector<uint32_t> out(2);
    ASSERT_TRUE((*field)->Run(x, out).ok()) << name;
    EXPECT_EQ(out, want) << name;
  }
}

// oneDNN's JIT convolutions are exact only while |sum| <= 2^24, so layers
// with longer reductions are split into channel parts (int8_linear.h); these
// layers reach sums near 2^31 with every input p - 1 or 255.
TEST(FieldLinearTest, LongReductionsAreSplitAndStayExact) {
  std::mt19937_64 rng(16);
  const std::vector<testing::NamedSpec> specs = {
      {"conv3x3_200ch", MakeSpec(200, 5, 5, 3, 3, 1, 1, 1, 1, 41)},
      {"grouped_2x130ch", MakeSpec(260, 4, 4, 4, 3, 1, 1, 1, 2, 42)},
      {"pointwise_3000ch", MakeSpec(3000, 2, 2, 2, 1, 1, 0, 1, 1, 43)},
  };
  for (auto [name, spec] : specs) {
    for (size_t i = 0; i < spec.weights.size(); ++i) spec.weights[i] = static_cast<int8_t>(i % 7 == 3 ? 62 : 63);
    auto field = FieldLinear::Create(spec, 2);
    ASSERT_TRUE(field.ok()) << name << ": " << field.status().ToString();
    std::vector<uint32_t> x(static_cast<size_t>(2 * spec.input_size()), kPrime - 1);
    for (size_t i = 0; i < x.size() / 2; ++i) x[i] = (RandomField(1, rng)[0] & 0x7FFFFF) | 0xFFFF;  // limbs 255, 255, random
    std::vector<uint32_t> out(static_cast<size_t>(2 * spec.output_size()));
    ASSERT_TRUE((*field)->Run(x, out).ok()) << name;
    EXPECT_EQ(out, ReferenceFieldLinear(spec, x, 2)) << name;

    for (ActivationType type : {ActivationType::kU8, ActivationType::kS8}) {
      auto exact = ExactLinear::Create(spec, type, 1);
      ASSERT_TRUE(exact.ok()) << name;
      const uint8_t fill = type == ActivationType::kU8 ? 255 : 0x81;  // 255 or -127
      std::vector<std::byte> bytes(static_cast<size_t>(spec.input_size()), std::byte{fill});
      std::vector<int64_t> wide(bytes.size(), type == ActivationType::kU8 ? 255 : -127);
      std::vector<int32_t> got(static_cast<size_t>(spec.output_size()));
      ASSERT_TRUE((*exact)->Run(bytes, got).ok()) << name;
      EXPECT_EQ(std::vector<int64_t>(got.begin(), got.end()), ReferenceLinear(spec, wide, 1)) << name;
    }
  }
}

TEST(FieldLinearTest, EveryDenseKernelAgrees) {
  std::mt19937_64 rng(13);
  LinearSpec spec = MakeDense(513, 37, 14);
  const int64_t batch = 5;
  std::vector<uint32_t> x = RandomField(static_cast<size_t>(batch * spec.input_size()), rng);
  const std::vector<uint32_t> want = ReferenceFieldLinear(spec, x, batch);
  for (Int8Kernel kernel : {Int8Kernel::kConvolution, Int8Kernel::kInnerProduct}) {
    auto field = CreateLimbFieldLinear(spec, batch, kernel);
    ASSERT_TRUE(field.ok()) << field.status().ToString();
    std::vector<uint32_t> out(want.size());
    ASSERT_TRUE((*field)->Run(x, out).ok());
    EXPECT_EQ(out, want);
  }
  auto dbl = CreateDoubleDenseFieldLinear(spec, batch);
  ASSERT_TRUE(dbl.ok());
  std::vector<uint32_t> out(want.size());
  ASSERT_TRUE((*dbl)->Run(x, out).ok());
  EXPECT_EQ(out, want);
  EXPECT_FALSE(CreateDoubleDenseFieldLinear(MakeSpec(2, 3, 3, 2, 3), 1).ok());
}

TEST(FieldLinearTest, AgreesWithExactLinearOnSmallIntegers) {
  std::mt19937_64 rng(15);
  for (const auto& [name, spec] : VarietyOfSpecs()) {
    const int64_t batch = 2;
    std::vector<int64_t> x = RandomActivations(static_cast<size_t>(batch * spec.input_size()), ActivationType::kS8, rng);
    std::vector<std::byte> bytes(x.size());
    std::vector<uint32_t> field_x(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      bytes[i] = static_cast<std::byte>(static_cast<uint8_t>(x[i]));
      field_x[i] = FieldFromSigned(x[i]);  // negative values become p - |x|
    }
    auto exact = ExactLinear::Create(spec, ActivationType::kS8, batch);
    auto field = FieldLinear::Create(spec, batch);
    ASSERT_TRUE(exact.ok() && field.ok()) << name;
    std::vector<int32_t> exact_out(static_cast<size_t>(batch * spec.output_size()));
    std::vector<uint32_t> field_out(exact_out.size());
    ASSERT_TRUE((*exact)->Run(bytes, exact_out).ok());
    ASSERT_TRUE((*field)->Run(field_x, field_out).ok());
    for (size_t i = 0; i < exact_out.size(); ++i) {
      ASSERT_EQ(field_out[i], FieldFromSigned(exact_out[i])) << name << " element " << i;
      ASSERT_EQ(Centered(field_out[i]), exact_out[i]) << name;  // |X W| < p/2 here
    }
  }
}

TEST(FieldLinearTest, RejectsOutOfFieldInputAndWrongSizes) {
  LinearSpec spec = MakeSpec(2, 4, 4, 2, 3, 1, 1);
  auto field = FieldLinear::Create(spec, 1);
  ASSERT_TRUE(field.ok());
  std::vector<uint32_t> x(static_cast<size_t>(spec.input_size()), 5), out(static_cast<size_t>(spec.output_size()));
  x[3] = kPrime;
  EXPECT_EQ((*field)->Run(x, out).code(), StatusCode::kInvalidArgument);
  x[3] = 0;
  EXPECT_EQ((*field)->Run(std::span(x).first(3), out).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE((*field)->Run(x, out).ok());
}

}  // namespace
}  // namespace ppml::accel
