#include "enclave_sim/attestation.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

namespace ppml::enclave {
namespace {

Bytes Text(std::string_view text) { return Bytes(text.begin(), text.end()); }

EnclaveIdentity BaseIdentity() {
  EnclaveIdentity id;
  id.code_version = "ppml-worker 0.1.0";
  id.config = {"epc_budget_mib=93", "plaintext_allowed=false", "on_demand_weights=true"};
  for (size_t i = 0; i < id.manifest_hash.size(); ++i) id.manifest_hash[i] = static_cast<uint8_t>(i);
  return id;
}

Measurement MeasureOrDie(const EnclaveIdentity& id) {
  Result<Measurement> m = ComputeMeasurement(id);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? *m : Measurement{};
}

bool Contains(const Status& s, std::string_view text) { return s.message().find(text) != std::string::npos; }

// ---- Hex and measurement ------------------------------------------------------

TEST(EnclaveHexTest, RoundTripAndErrors) {
  Bytes b = {0x00, 0x01, 0xab, 0xff};
  EXPECT_EQ(ToHex(b), "0001abff");
  Result<Bytes> back = FromHex("0001ABff");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, b);
  EXPECT_FALSE(FromHex("abc").ok());
  EXPECT_FALSE(FromHex("zz").ok());
  EXPECT_FALSE(MeasurementFromHex("00").ok());
  Measurement m = MeasureOrDie(BaseIdentity());
  Result<Measurement> m2 = MeasurementFromHex(ToHex(m));
  ASSERT_TRUE(m2.ok());
  EXPECT_EQ(*m2, m);
}

TEST(EnclaveMeasurementTest, StableAndOrderIndependent) {
  EnclaveIdentity a = BaseIdentity();
  EnclaveIdentity b = BaseIdentity();
  std::reverse(b.config.begin(), b.config.end());
  EXPECT_EQ(MeasureOrDie(a), MeasureOrDie(BaseIdentity()));
  EXPECT_EQ(MeasureOrDie(a), MeasureOrDie(b));
}

TEST(EnclaveMeasurementTest, EveryFieldChangesIt) {
  Measurement base = MeasureOrDie(BaseIdentity());

  EnclaveIdentity v = BaseIdentity();
  v.code_version = "ppml-worker 0.1.1";
  EXPECT_NE(MeasureOrDie(v), base);

  EnclaveIdentity c = BaseIdentity();
  c.config[0] = "epc_budget_mib=94";
  EXPECT_NE(MeasureOrDie(c), base);

  EnclaveIdentity added = BaseIdentity();
  added.config.push_back("replay_window_s=60");
  EXPECT_NE(MeasureOrDie(added), base);

  EnclaveIdentity removed = BaseIdentity();
  removed.config.pop_back();
  EXPECT_NE(MeasureOrDie(removed), base);

  EnclaveIdentity h = BaseIdentity();
  h.manifest_hash[31] ^= 0x01;
  EXPECT_NE(MeasureOrDie(h), base);
}

TEST(EnclaveMeasurementTest, LengthPrefixKeepsFieldsApart) {
  // Moving bytes between the version and a config entry must change it.
  EnclaveIdentity a = BaseIdentity();
  a.code_version = "v1";
  a.config = {"ab=c"};
  EnclaveIdentity b = a;
  b.code_version = "v1a";
  b.config = {"b=c"};
  EXPECT_NE(MeasureOrDie(a), MeasureOrDie(b));
}

TEST(EnclaveMeasurementTest, RejectsAmbiguousConfig) {
  EnclaveIdentity no_eq = BaseIdentity();
  no_eq.config.push_back("novalue");
  Result<Measurement> r1 = ComputeMeasurement(no_eq);
  ASSERT_FALSE(r1.ok());
  EXPECT_EQ(r1.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r1.status(), "novalue"));

  EnclaveIdentity dup = BaseIdentity();
  dup.config.push_back("epc_budget_mib=24");
  Result<Measurement> r2 = ComputeMeasurement(dup);
  ASSERT_FALSE(r2.ok());
  EXPECT_TRUE(Contains(r2.status(), "epc_budget_mib"));

  EnclaveIdentity empty = BaseIdentity();
  empty.code_version.clear();
  EXPECT_FALSE(ComputeMeasurement(empty).ok());
}

// ---- Platform key ---------------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/enclave_sim_test_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

TEST(EnclavePlatformKeyTest, SaveLoadPemAndModes) {
  TempDir dir;
  Result<crypto::EvpPkeyPtr> key = GeneratePlatformKey();
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  ASSERT_TRUE(SavePlatformPrivateKeyPem(key->get(), dir.File("platform.key")).ok());
  ASSERT_TRUE(SavePlatformPublicKeyPem(key->get(), dir.File("platform.pub")).ok());

  struct stat st{};
  ASSERT_EQ(::stat(dir.File("platform.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  Result<crypto::EvpPkeyPtr> priv = LoadPlatformPrivateKeyPem(dir.File("platform.key"));
  ASSERT_TRUE(priv.ok()) << priv.status().ToString();
  Result<crypto::EvpPkeyPtr> pub = LoadPlatformPublicKeyPem(dir.File("platform.pub"));
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();

  // A quote signed with the loaded private key verifies under the loaded public key.
  Measurement m = MeasureOrDie(BaseIdentity());
  Bytes pk(32, 0x42), nonce(32, 0x07), signer(32, 0x11);
  Result<Quote> q = SignQuote(priv->get(), m, signer, pk, nonce, 1000);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  Status s = VerifyQuote(*q, pub->get(), m, pk, nonce, 300, 1000);
  EXPECT_TRUE(s.ok()) << s.ToString();

  Result<std::string> pem = PlatformPublicKeyToPem(key->get());
  ASSERT_TRUE(pem.ok());
  EXPECT_NE(pem->find("BEGIN PUBLIC KEY"), std::string::npos);
  EXPECT_TRUE(PlatformPublicKeyFromPem(*pem).ok());
}

TEST(EnclavePlatformKeyTest, ErrorsNameTheFile) {
  TempDir dir;
  Result<crypto::EvpPkeyPtr> missing = LoadPlatformPrivateKeyPem(dir.File("nope.key"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(missing.status(), "nope.key"));

  std::string garbage = dir.File("garbage.pem");
  FILE* f = std::fopen(garbage.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("not a key\n", f);
  std::fclose(f);
  Result<crypto::EvpPkeyPtr> bad = LoadPlatformPublicKeyPem(garbage);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status(), "garbage.pem"));
  Result<crypto::EvpPkeyPtr> bad_priv = LoadPlatformPrivateKeyPem(garbage);
  ASSERT_FALSE(bad_priv.ok());
  EXPECT_TRUE(Contains(bad_priv.status(), "garbage.pem"));

  Result<crypto::EvpPkeyPtr> key = GeneratePlatformKey();
  ASSERT_TRUE(key.ok());
  Status s = SavePlatformPrivateKeyPem(key->get(), dir.File("no/such/dir/k.pem"));
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "no/such/dir/k.pem"));
}

TEST(EnclavePlatformKeyTest, RejectsNonP256Key) {
  crypto::EvpPkeyPtr p384(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
  ASSERT_TRUE(p384);
  Result<Quote> q = SignQuote(p384.get(), Measurement{}, Bytes(32, 1), Bytes(32, 2), Bytes(16, 3), 0);
  ASSERT_FALSE(q.ok());
  EXPECT_TRUE(Contains(q.status(), "P-256"));
}

// ---- Quotes ---------------------------------------------------------------------

class EnclaveQuoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<crypto::EvpPkeyPtr> k = GeneratePlatformKey();
    ASSERT_TRUE(k.ok());
    platform_ = std::move(*k);
    Result<crypto::EvpPkeyPtr> other = GeneratePlatformKey();
    ASSERT_TRUE(other.ok());
    other_platform_ = std::move(*other);
    measurement_ = MeasureOrDie(BaseIdentity());
    Result<crypto::X25519KeyPair> kp = crypto::X25519GenerateKeyPair();
    ASSERT_TRUE(kp.ok());
    enclave_pk_ = kp->public_key;
    Result<Bytes> n = crypto::RandomBytes(32);
    ASSERT_TRUE(n.ok());
    nonce_ = *n;
    signer_ = Bytes(32, 0x5a);
    Result<Quote> q = SignQuote(platform_.get(), measurement_, signer_, enclave_pk_, nonce_, kNow);
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    quote_ = *q;
  }

  Status Verify(const Quote& q) {
    return VerifyQuote(q, platform_.get(), measurement_, enclave_pk_, nonce_, kMaxAge, kNow);
  }

  static constexpr int64_t kNow = 1'700'000'000;
  static constexpr int64_t kMaxAge = 300;
  crypto::EvpPkeyPtr platform_, other_platform_;
  Measurement measurement_{};
  Bytes enclave_pk_, nonce_, signer_;
  Quote quote_;
};

TEST_F(EnclaveQuoteTest, GoodQuoteVerifies) {
  Status s = Verify(quote_);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(quote_.version, kQuoteVersion);
  EXPECT_EQ(quote_.timestamp_unix, kNow);
  EXPECT_EQ(EncodeQuoteBody(quote_).size(), kQuoteBodyLength);
  Result<ReportData> rd = ComputeReportData(enclave_pk_, nonce_);
  ASSERT_TRUE(rd.ok());
  EXPECT_EQ(quote_.report_data, *rd);
  // Default timestamp is now.
  Result<Quote> fresh = SignQuote(platform_.get(), measurement_, signer_, enclave_pk_, nonce_);
  ASSERT_TRUE(fresh.ok());
  Status s2 = VerifyQuote(*fresh, platform_.get(), measurement_, enclave_pk_, nonce_, kMaxAge, UnixNow());
  EXPECT_TRUE(s2.ok()) << s2.ToString();
}

TEST_F(EnclaveQuoteTest, WrongPlatformKey) {
  Status s = VerifyQuote(quote_, other_platform_.get(), measurement_, enclave_pk_, nonce_, kMaxAge, kNow);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Contains(s, "bad signature")) << s.ToString();
}

TEST_F(EnclaveQuoteTest, WrongMeasurement) {
  EnclaveIdentity other = BaseIdentity();
  other.code_version = "evil-worker";
  Measurement expected = MeasureOrDie(other);
  Status s = VerifyQuote(quote_, platform_.get(), expected, enclave_pk_, nonce_, kMaxAge, kNow);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Contains(s, "wrong measurement")) << s.ToString();
  EXPECT_TRUE(Contains(s, ToHex(expected)));
}

TEST_F(EnclaveQuoteTest, StaleOrOtherNonceAndOtherKey) {
  Bytes other_nonce = nonce_;
  other_nonce[0] ^= 0x80;
  Status s = VerifyQuote(quote_, platform_.get(), measurement_, enclave_pk_, other_nonce, kMaxAge, kNow);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Contains(s, "report data does not bind")) << s.ToString();

  Bytes other_pk = enclave_pk_;
  other_pk[31] ^= 0x01;
  Status s2 = VerifyQuote(quote_, platform_.get(), measurement_, other_pk, nonce_, kMaxAge, kNow);
  EXPECT_TRUE(Contains(s2, "report data does not bind")) << s2.ToString();

  Status s3 = VerifyQuote(quote_, platform_.get(), measurement_, enclave_pk_, Bytes(4, 1), kMaxAge, kNow);
  EXPECT_EQ(s3.code(), StatusCode::kInvalidArgument);
}

TEST_F(EnclaveQuoteTest, TamperedFieldsBreakSignature) {
  {
    Quote q = quote_;
    q.measurement[0] ^= 1;
    EXPECT_TRUE(Contains(Verify(q), "bad signature"));
  }
  {
    Quote q = quote_;
    q.signer_id[5] ^= 1;
    EXPECT_TRUE(Contains(Verify(q), "bad signature"));
  }
  {
    // Report data rewritten to bind an attacker's key and the client's nonce.
    Bytes attacker_pk(32, 0x99);
    Result<ReportData> rd = ComputeReportData(attacker_pk, nonce_);
    ASSERT_TRUE(rd.ok());
    Quote q = quote_;
    q.report_data = *rd;
    Status s = VerifyQuote(q, platform_.get(), measurement_, attacker_pk, nonce_, kMaxAge, kNow);
    EXPECT_TRUE(Contains(s, "bad signature")) << s.ToString();
  }
  {
    Quote q = quote_;
    q.timestamp_unix += 1;
    EXPECT_TRUE(Contains(Verify(q), "bad signature"));
  }
  {
    Quote q = quote_;
    q.signature.back() ^= 1;
    EXPECT_TRUE(Contains(Verify(q), "bad signature"));
  }
  {
    Quote q = quote_;
    q.signature.clear();
    EXPECT_TRUE(Contains(Verify(q), "bad signature"));
  }
  {
    Quote q = quote_;
    q.version = 2;
    EXPECT_EQ(Verify(q).code(), StatusCode::kUnsupported);
  }
}

TEST_F(EnclaveQuoteTest, ExpiredAndFutureTimestamps) {
  Status at_limit =
      VerifyQuote(quote_, platform_.get(), measurement_, enclave_pk_, nonce_, kMaxAge, kNow + kMaxAge);
  EXPECT_TRUE(at_limit.ok()) << at_limit.ToString();

  Status old = VerifyQuote(quote_, platform_.get(), measurement_, enclave_pk_, nonce_, kMaxAge, kNow + kMaxAge + 1);
  EXPECT_EQ(old.code(), StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(Contains(old, "too old")) << old.ToString();

  Status skew_ok =
      VerifyQuote(quote_, platform_.get(), measurement_, enclave_pk_, nonce_, kMaxAge, kNow - kMaxClockSkewSeconds);
  EXPECT_TRUE(skew_ok.ok()) << skew_ok.ToString();

  Status future = VerifyQuote(quote_, platform_.get(), measurement_, enclave_pk_, nonce_, kMaxAge,
                              kNow - kMaxClockSkewSeconds - 1);
  EXPECT_EQ(future.code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Contains(future, "from the future")) << future.ToString();
}

TEST_F(EnclaveQuoteTest, JsonRoundTrip) {
  std::string json = QuoteToJson(quote_);
  EXPECT_NE(json.find("\"measurement\":\"" + ToHex(measurement_) + "\""), std::string::npos) << json;
  Result<Quote> back = QuoteFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->version, quote_.version);
  EXPECT_EQ(back->measurement, quote_.measurement);
  EXPECT_EQ(back->signer_id, quote_.signer_id);
  EXPECT_EQ(back->report_data, quote_.report_data);
  EXPECT_EQ(back->timestamp_unix, quote_.timestamp_unix);
  EXPECT_EQ(back->signature, quote_.signature);
  EXPECT_TRUE(Verify(*back).ok());
  EXPECT_EQ(QuoteToJson(*back), json);
}

// Replaces the value of `field` in the quote's JSON with `raw` (raw JSON), or
// drops the field when raw is empty.
std::string EditField(const std::string& json, const std::string& field, const std::string& raw) {
  size_t start = json.find("\"" + field + "\":");
  if (start == std::string::npos) return json;
  size_t value = start + field.size() + 3;
  size_t end = value;
  if (json[value] == '"') {
    end = json.find('"', value + 1) + 1;
  } else {
    while (end < json.size() && json[end] != ',' && json[end] != '}') ++end;
  }
  if (raw.empty()) {
    size_t drop_end = end < json.size() && json[end] == ',' ? end + 1 : end;
    size_t drop_start = (drop_end == end && json[start - 1] == ',') ? start - 1 : start;
    return json.substr(0, drop_start) + json.substr(drop_end);
  }
  return json.substr(0, value) + raw + json.substr(end);
}

TEST_F(EnclaveQuoteTest, MalformedJsonNamesTheField) {
  std::string json = QuoteToJson(quote_);
  struct Case {
    std::string field, raw, expect;
  };
  const Case cases[] = {
      {"measurement", "\"abcd\"", "\"measurement\""},
      {"measurement", "\"" + std::string(64, 'g') + "\"", "\"measurement\""},
      {"measurement", "12", "\"measurement\""},
      {"measurement", "", "\"measurement\": missing"},
      {"signer_id", "\"00\"", "\"signer_id\""},
      {"report_data", "\"" + ToHex(measurement_) + "\"", "\"report_data\""},
      {"report_data", "", "\"report_data\": missing"},
      {"timestamp_unix", "\"now\"", "\"timestamp_unix\""},
      {"timestamp_unix", "1.5", "\"timestamp_unix\""},
      {"timestamp_unix", "", "\"timestamp_unix\": missing"},
      {"signature", "\"\"", "\"signature\""},
      {"signature", "\"" + std::string(146, 'a') + "\"", "\"signature\""},
      {"signature", "\"abc\"", "\"signature\""},
      {"version", "2", "\"version\""},
      {"version", "-1", "\"version\""},
      {"version", "", "\"version\": missing"},
  };
  for (const Case& c : cases) {
    std::string edited = EditField(json, c.field, c.raw);
    ASSERT_NE(edited, json) << c.field;
    Result<Quote> r = QuoteFromJson(edited);
    ASSERT_FALSE(r.ok()) << edited;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(r.status(), c.expect)) << r.status().ToString() << " for " << edited;
  }
  EXPECT_FALSE(QuoteFromJson("").ok());
  EXPECT_FALSE(QuoteFromJson("[1,2]").ok());
  EXPECT_FALSE(QuoteFromJson(json.substr(0, json.size() / 2)).ok());
  // Unknown fields are ignored.
  std::string extra = json.substr(0, json.size() - 1) + ",\"note\":\"x\"}";
  EXPECT_TRUE(QuoteFromJson(extra).ok());
}

// ---- Sealing ---------------------------------------------------------------------

class EnclaveSealTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<Bytes> s = crypto::RandomBytes(kPlatformSecretLength);
    ASSERT_TRUE(s.ok());
    secret_ = *s;
    measurement_ = MeasureOrDie(BaseIdentity());
  }
  Bytes secret_;
  Measurement measurement_{};
};

TEST_F(EnclaveSealTest, RoundTrip) {
  Bytes plaintext = Text("the enclave's X25519 service private key");
  Bytes aad = Text("service-key");
  Result<Bytes> blob = Seal(secret_, measurement_, plaintext, aad);
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  ASSERT_EQ(blob->size(), kSealMinBlobLength + plaintext.size());
  EXPECT_EQ(std::string(blob->begin(), blob->begin() + 4), "PPSL");
  EXPECT_EQ((*blob)[4], kSealVersion);
  Result<Bytes> back = Unseal(secret_, measurement_, *blob, aad);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, plaintext);

  // Empty plaintext works too; two seals of the same data differ (random nonce).
  Result<Bytes> empty = Seal(secret_, measurement_, {}, {});
  ASSERT_TRUE(empty.ok());
  Result<Bytes> empty_back = Unseal(secret_, measurement_, *empty, {});
  ASSERT_TRUE(empty_back.ok());
  EXPECT_TRUE(empty_back->empty());
  Result<Bytes> again = Seal(secret_, measurement_, plaintext, aad);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, *blob);
}

TEST_F(EnclaveSealTest, OtherMeasurementOrPlatformCannotUnseal) {
  Bytes plaintext = Text("secret");
  Result<Bytes> blob = Seal(secret_, measurement_, plaintext);
  ASSERT_TRUE(blob.ok());

  EnclaveIdentity other = BaseIdentity();
  other.config[1] = "plaintext_allowed=true";
  Result<Bytes> r = Unseal(secret_, MeasureOrDie(other), *blob);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(r.status(), "another enclave measurement")) << r.status().ToString();

  Bytes other_secret = secret_;
  other_secret[0] ^= 1;
  EXPECT_FALSE(Unseal(other_secret, measurement_, *blob).ok());
  EXPECT_FALSE(Unseal(secret_, measurement_, *blob, Text("other aad")).ok());
  EXPECT_EQ(Unseal(Bytes(16, 0), measurement_, *blob).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Seal(Bytes(31, 0), measurement_, plaintext).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(EnclaveSealTest, TamperAndTruncation) {
  Bytes plaintext = Text("model key material");
  Result<Bytes> blob = Seal(secret_, measurement_, plaintext);
  ASSERT_TRUE(blob.ok());

  // Every single-byte change is caught.
  for (size_t i = 0; i < blob->size(); ++i) {
    Bytes tampered = *blob;
    tampered[i] ^= 0x01;
    Result<Bytes> r = Unseal(secret_, measurement_, tampered);
    EXPECT_FALSE(r.ok()) << "byte " << i;
  }
  // Version byte: reported as unsupported; magic: not a sealed blob.
  Bytes v2 = *blob;
  v2[4] = 2;
  EXPECT_EQ(Unseal(secret_, measurement_, v2).status().code(), StatusCode::kUnsupported);
  Bytes magic = *blob;
  magic[0] = 'X';
  EXPECT_TRUE(Contains(Unseal(secret_, measurement_, magic).status(), "magic"));

  // Every truncation is caught; short ones say so.
  for (size_t len = 0; len < blob->size(); ++len) {
    Bytes cut(blob->begin(), blob->begin() + static_cast<std::ptrdiff_t>(len));
    Result<Bytes> r = Unseal(secret_, measurement_, cut);
    ASSERT_FALSE(r.ok()) << "length " << len;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
    if (len < kSealMinBlobLength) {
      EXPECT_TRUE(Contains(r.status(), "truncated")) << r.status().ToString();
    }
  }
}

}  // namespace
}  // namespace ppml::enclave
