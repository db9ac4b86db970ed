#include "common/ehbp.h"

#include <gtest/gtest.h>

#include <cctype>
#include <memory>
#include <string>
#include <string_view>

namespace ppml::ehbp {
namespace {

Bytes Hex(std::string_view hex) { return crypto::FromHex(hex).value(); }
Bytes Text(std::string_view text) { return Bytes(text.begin(), text.end()); }

Bytes Pattern(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 31 + 7);
  return b;
}

struct Keys {
  crypto::X25519KeyPair pair = crypto::X25519GenerateKeyPair().value();
};

// Round trip through all four calls; returns the decrypted reply.
void RoundTrip(const Bytes& request, const Bytes& reply, size_t chunk_size) {
  Keys k;
  auto enc = EncryptRequest(k.pair.public_key, request, chunk_size);
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  EXPECT_EQ(enc->encapsulated_key_header_value.size(), 64u);
  auto dec = DecryptRequest(enc->encapsulated_key_header_value, enc->body, k.pair.private_key.span());
  ASSERT_TRUE(dec.ok()) << dec.status().ToString();
  EXPECT_EQ(dec->plaintext, request);
  auto resp = EncryptResponse(dec->server_state, reply, chunk_size);
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  EXPECT_EQ(resp->response_nonce_header_value.size(), 64u);
  auto out = DecryptResponse(enc->client_state, resp->response_nonce_header_value, resp->body);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, reply);
}

TEST(EhbpTest, RoundTripEmpty) { RoundTrip({}, {}, kDefaultChunkSize); }
TEST(EhbpTest, RoundTripSmall) { RoundTrip(Text("{\"inputs\":[]}"), Text("{\"outputs\":[]}"), kDefaultChunkSize); }
TEST(EhbpTest, RoundTripMultiChunk) {
  RoundTrip(Pattern(3 * kDefaultChunkSize + 17), Pattern(2 * kDefaultChunkSize), kDefaultChunkSize);
  RoundTrip(Pattern(100), Pattern(101), 7);
}

TEST(EhbpTest, FramingLayout) {
  Keys k;
  auto enc = EncryptRequest(k.pair.public_key, Pattern(25), 10).value();
  // Three frames: 10, 10, 5 plaintext bytes, each + 16-byte tag, 4-byte BE prefix.
  ASSERT_EQ(enc.body.size(), 3 * 4 + 25 + 3 * 16u);
  EXPECT_EQ(Bytes(enc.body.begin(), enc.body.begin() + 4), Hex("0000001a"));
  // An empty request is one frame sealing "" (LEN = 16); an empty reply has no frame.
  auto empty = EncryptRequest(k.pair.public_key, {}).value();
  EXPECT_EQ(empty.body.size(), 4 + 16u);
  auto dec = DecryptRequest(empty.encapsulated_key_header_value, empty.body, k.pair.private_key.span()).value();
  EXPECT_TRUE(EncryptResponse(dec.server_state, {}).value().body.empty());
}

TEST(EhbpTest, ZeroLengthFramesAreSkipped) {
  Keys k;
  auto enc = EncryptRequest(k.pair.public_key, Pattern(20), 10).value();
  Bytes body = {0, 0, 0, 0};
  body.insert(body.end(), enc.body.begin(), enc.body.begin() + 30);
  body.insert(body.end(), {0, 0, 0, 0});
  body.insert(body.end(), enc.body.begin() + 30, enc.body.end());
  auto dec = DecryptRequest(enc.encapsulated_key_header_value, body, k.pair.private_key.span());
  ASSERT_TRUE(dec.ok()) << dec.status().ToString();
  EXPECT_EQ(dec->plaintext, Pattern(20));
}

class EhbpTamperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    enc_ = std::make_unique<EncryptedRequest>(EncryptRequest(k_.pair.public_key, Pattern(30), 10).value());
  }
  Status Decrypt(const Bytes& body) {
    return DecryptRequest(enc_->encapsulated_key_header_value, body, k_.pair.private_key.span()).status();
  }
  void ExpectError(const Status& s, StatusCode code, std::string_view needle) {
    EXPECT_EQ(s.code(), code) << s.ToString();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.ToString();
  }
  Keys k_;
  std::unique_ptr<EncryptedRequest> enc_;
  static constexpr size_t kFrame = 4 + 10 + 16;  // one frame of the 30-byte body
};

TEST_F(EhbpTamperTest, TruncatedLengthPrefix) {
  Bytes body(enc_->body.begin(), enc_->body.begin() + kFrame + 2);
  ExpectError(Decrypt(body), StatusCode::kDataLoss, "frame 1 at byte 30: truncated length prefix");
}

TEST_F(EhbpTamperTest, TruncatedChunk) {
  Bytes body(enc_->body.begin(), enc_->body.end() - 1);
  ExpectError(Decrypt(body), StatusCode::kDataLoss, "frame 2 at byte 60: truncated chunk (25 of 26");
}

TEST_F(EhbpTamperTest, BadLengthPrefix) {
  Bytes shorter_than_tag = enc_->body;
  shorter_than_tag[3] = 15;
  ExpectError(Decrypt(shorter_than_tag), StatusCode::kInvalidArgument, "frame 0 at byte 0: bad length prefix 15");
  Bytes huge = enc_->body;
  huge[0] = 0xff;
  ExpectError(Decrypt(huge), StatusCode::kInvalidArgument, "bad length prefix 4278190106");
}

TEST_F(EhbpTamperTest, TamperedChunk) {
  Bytes body = enc_->body;
  body[kFrame + 4 + 3] ^= 1;
  ExpectError(Decrypt(body), StatusCode::kDataLoss, "frame 1 at byte 30: failed to authenticate");
}

TEST_F(EhbpTamperTest, ReorderedChunks) {
  Bytes body(enc_->body.begin() + kFrame, enc_->body.begin() + 2 * kFrame);
  body.insert(body.end(), enc_->body.begin(), enc_->body.begin() + kFrame);
  body.insert(body.end(), enc_->body.begin() + 2 * kFrame, enc_->body.end());
  ExpectError(Decrypt(body), StatusCode::kDataLoss, "frame 0 at byte 0: failed to authenticate");
}

TEST_F(EhbpTamperTest, DroppedChunk) {
  Bytes body(enc_->body.begin(), enc_->body.begin() + kFrame);
  body.insert(body.end(), enc_->body.begin() + 2 * kFrame, enc_->body.end());
  ExpectError(Decrypt(body), StatusCode::kDataLoss, "frame 1 at byte 30: failed to authenticate");
}

TEST_F(EhbpTamperTest, WrongKey) {
  Keys other;
  auto s = DecryptRequest(enc_->encapsulated_key_header_value, enc_->body, other.pair.private_key.span()).status();
  ExpectError(s, StatusCode::kDataLoss, "frame 0 at byte 0: failed to authenticate");
}

TEST_F(EhbpTamperTest, NoFrameLeavesKeyUnauthenticated) {
  ExpectError(Decrypt({}), StatusCode::kDataLoss, "no non-empty frame");
  ExpectError(Decrypt({0, 0, 0, 0}), StatusCode::kDataLoss, "no non-empty frame");
}

TEST_F(EhbpTamperTest, ResponseTamperCases) {
  auto dec = DecryptRequest(enc_->encapsulated_key_header_value, enc_->body, k_.pair.private_key.span()).value();
  auto resp = EncryptResponse(dec.server_state, Pattern(30), 10).value();
  auto decrypt = [&](const Bytes& body) {
    return DecryptResponse(enc_->client_state, resp.response_nonce_header_value, body).status();
  };
  Bytes tampered = resp.body;
  tampered.back() ^= 0x80;
  ExpectError(decrypt(tampered), StatusCode::kDataLoss, "EHBP response frame 2 at byte 60: failed to authenticate");
  Bytes dropped(resp.body.begin() + kFrame, resp.body.end());
  ExpectError(decrypt(dropped), StatusCode::kDataLoss, "frame 0 at byte 0: failed to authenticate");
  ExpectError(decrypt(Bytes(resp.body.begin(), resp.body.begin() + 5)), StatusCode::kDataLoss, "truncated chunk");
  // Another response nonce derives other keys.
  std::string nonce = resp.response_nonce_header_value;
  nonce[0] = nonce[0] == '0' ? '1' : '0';
  ExpectError(DecryptResponse(enc_->client_state, nonce, resp.body).status(), StatusCode::kDataLoss,
              "failed to authenticate");
  EXPECT_TRUE(decrypt(resp.body).ok());
}

TEST(EhbpHeaderTest, EncapsulatedKeyDecodingErrors) {
  Keys k;
  auto enc = EncryptRequest(k.pair.public_key, Text("x")).value();
  auto decrypt = [&](std::string_view header) {
    return DecryptRequest(header, enc.body, k.pair.private_key.span()).status();
  };
  std::string h = enc.encapsulated_key_header_value;
  Status s = decrypt(h.substr(0, 62));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("Ehbp-Encapsulated-Key: expected 64 hex characters, got 62"), std::string::npos)
      << s.ToString();
  std::string bad = h;
  bad[10] = 'z';
  s = decrypt(bad);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("Ehbp-Encapsulated-Key"), std::string::npos) << s.ToString();
  EXPECT_EQ(decrypt("0x" + h.substr(2)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(decrypt("").code(), StatusCode::kInvalidArgument);
  // A low-order (all-zero) public key is refused by HPKE setup.
  s = decrypt(std::string(64, '0'));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("Ehbp-Encapsulated-Key"), std::string::npos) << s.ToString();
  // Upper-case hex is accepted.
  std::string upper = h;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_TRUE(decrypt(upper).ok());
}

TEST(EhbpHeaderTest, ResponseNonceDecodingErrors) {
  Keys k;
  auto enc = EncryptRequest(k.pair.public_key, Text("x")).value();
  auto s = DecryptResponse(enc.client_state, std::string(63, 'a'), {}).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("Ehbp-Response-Nonce: expected 64 hex characters, got 63"), std::string::npos)
      << s.ToString();
  s = DecryptResponse(enc.client_state, std::string(63, 'a') + "g", {}).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("Ehbp-Response-Nonce"), std::string::npos) << s.ToString();
}

TEST(EhbpTest, BadChunkSize) {
  Keys k;
  EXPECT_EQ(EncryptRequest(k.pair.public_key, Text("x"), 0).status().code(), StatusCode::kInvalidArgument);
}

// OUR OWN deterministic vector (not an external one: no published EHBP vector
// was found): fixed recipient key, ephemeral key and response nonce, computed
// by this implementation and frozen here to catch regressions. Not checked
// against the Go/JS/Swift EHBP clients.
TEST(EhbpVectorTest, FixedKeysOwnVector) {
  const Bytes sk_r = Hex("1111111111111111111111111111111111111111111111111111111111111111");
  const Bytes sk_e = Hex("2222222222222222222222222222222222222222222222222222222222222222");
  const Bytes response_nonce = Hex("3333333333333333333333333333333333333333333333333333333333333333");
  const Bytes pk_r = crypto::X25519PublicFromPrivate(sk_r).value();
  auto enc = EncryptRequest(pk_r, Text("ppml ehbp request"), kDefaultChunkSize, sk_e).value();
  auto dec = DecryptRequest(enc.encapsulated_key_header_value, enc.body, sk_r).value();
  EXPECT_EQ(dec.plaintext, Text("ppml ehbp request"));
  auto resp = EncryptResponse(dec.server_state, Text("ppml ehbp reply"), kDefaultChunkSize, response_nonce).value();
  // enc is the ephemeral public key, X25519(sk_e, basepoint).
  EXPECT_EQ(enc.encapsulated_key_header_value, crypto::ToHex(crypto::X25519PublicFromPrivate(sk_e).value()));
  EXPECT_EQ(enc.encapsulated_key_header_value, "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20");
  EXPECT_EQ(crypto::ToHex(enc.body),
            "00000021"  // LEN = 33 = 17 + 16
            "f7fca5192a73cc47e88af32677c58607bcf435966366673f057456a56eb8517611");
  EXPECT_EQ(resp.response_nonce_header_value, crypto::ToHex(response_nonce));
  EXPECT_EQ(crypto::ToHex(resp.body),
            "0000001f"  // LEN = 31 = 15 + 16
            "d425ceb3f4fc1d9d1b4c9401d8226968b7312d602fd88292777206087b5c42");
  EXPECT_EQ(DecryptResponse(enc.client_state, resp.response_nonce_header_value, resp.body).value(),
            Text("ppml ehbp reply"));
}

}  // namespace
}  // namespace ppml::ehbp
