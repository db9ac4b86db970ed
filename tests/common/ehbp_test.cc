#include "common/ehbp.h"

#include <gtest/gtest.h>

#include <cctype>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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

// --- RequestReader ---------------------------------------------------------

// Appends one frame (4-byte big-endian LEN, then `ciphertext`) to `body`.
void AppendFrame(Bytes& body, const Bytes& ciphertext) {
  const auto len = static_cast<uint32_t>(ciphertext.size());
  body.insert(body.end(), {static_cast<uint8_t>(len >> 24), static_cast<uint8_t>(len >> 16),
                           static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)});
  body.insert(body.end(), ciphertext.begin(), ciphertext.end());
}

class RequestReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = std::make_unique<crypto::X25519PrivateKey>(crypto::X25519PrivateKey::Generate().value());
  }
  // Encrypts `plaintext` in frames of `chunk_size` plaintext bytes.
  EncryptedRequest Encrypt(const Bytes& plaintext, size_t chunk_size) {
    return EncryptRequest(key_->public_key(), plaintext, chunk_size).value();
  }
  Result<RequestReader> OpenReader(const EncryptedRequest& enc, const Bytes& body) {
    return RequestReader::Open(enc.encapsulated_key_header_value, body, *key_);
  }
  static void ExpectError(const Status& s, StatusCode code, std::string_view needle) {
    EXPECT_EQ(s.code(), code) << s.ToString();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.ToString();
  }
  // Reads `n` bytes; the status, and the bytes in `out`.
  static Status ReadN(RequestReader& reader, size_t n, Bytes& out) {
    out.assign(n, 0);
    return reader.Read(out);
  }
  std::unique_ptr<crypto::X25519PrivateKey> key_;
};

// Reads the whole plaintext in pieces of the given sizes, cycled; checks
// remaining() after each piece and the bytes at the end.
void ReadInPieces(RequestReader& reader, const Bytes& expected, const std::vector<size_t>& pieces) {
  Bytes got;
  size_t i = 0;
  while (got.size() < expected.size()) {
    const size_t n = std::min(pieces[i++ % pieces.size()], expected.size() - got.size());
    Bytes piece(n, 0xee);
    ASSERT_TRUE(reader.Read(piece).ok()) << "piece " << i << " of " << n << " bytes at " << got.size();
    got.insert(got.end(), piece.begin(), piece.end());
    EXPECT_EQ(reader.remaining(), expected.size() - got.size());
  }
  EXPECT_EQ(got, expected);
  Bytes none;
  EXPECT_TRUE(reader.Read(none).ok());  // a zero-length read at the end
  EXPECT_TRUE(reader.Finish().ok());
  EXPECT_EQ(reader.remaining(), 0u);
}

TEST_F(RequestReaderTest, ReadsMultiFrameBodyInPieces) {
  struct Case {
    size_t plaintext;
    size_t chunk;
    std::vector<size_t> pieces;
  };
  const std::vector<Case> cases = {
      {300, 7, {1}},                          // byte by byte
      {300, 7, {1, 0, 5, 0, 9, 13, 2, 7, 21}},  // zero-length reads, pieces straddling frames, whole frames
      {300, 7, {300}},                        // all at once
      {500, 64, {3, 64, 65, 0, 1, 127, 200}},
      {500, 64, {64}},                        // exactly on frame boundaries
      {500, 64, {63}},
      {128, 64, {0, 128}},                    // a multiple of the chunk size
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("plaintext " + std::to_string(c.plaintext) + ", chunk " + std::to_string(c.chunk));
    const Bytes plaintext = Pattern(c.plaintext);
    const EncryptedRequest enc = Encrypt(plaintext, c.chunk);
    auto reader = OpenReader(enc, enc.body);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    ReadInPieces(*reader, plaintext, c.pieces);
  }
}

TEST_F(RequestReaderTest, Sizes) {
  const EncryptedRequest enc = Encrypt(Pattern(300), 7);
  auto reader = OpenReader(enc, enc.body);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ(reader->plaintext_size(), 300u);
  EXPECT_EQ(reader->remaining(), 300u);
  EXPECT_EQ(reader->max_frame_plaintext(), 7u);
  Bytes out;
  ASSERT_TRUE(ReadN(*reader, 10, out).ok());
  EXPECT_EQ(reader->remaining(), 290u);
  EXPECT_EQ(reader->plaintext_size(), 300u);

  const EncryptedRequest big = Encrypt(Pattern(500), 64);
  auto big_reader = OpenReader(big, big.body);
  ASSERT_TRUE(big_reader.ok()) << big_reader.status().ToString();
  EXPECT_EQ(big_reader->plaintext_size(), 500u);
  EXPECT_EQ(big_reader->max_frame_plaintext(), 64u);

  // One short frame: its size is the maximum.
  const EncryptedRequest small = Encrypt(Pattern(5), 64);
  auto small_reader = OpenReader(small, small.body);
  ASSERT_TRUE(small_reader.ok()) << small_reader.status().ToString();
  EXPECT_EQ(small_reader->plaintext_size(), 5u);
  EXPECT_EQ(small_reader->max_frame_plaintext(), 5u);
}

TEST_F(RequestReaderTest, EmptyPlaintext) {
  // Sent as one frame sealing "" (LEN = 16): it authenticates the key.
  const EncryptedRequest enc = Encrypt({}, kDefaultChunkSize);
  auto reader = OpenReader(enc, enc.body);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ(reader->plaintext_size(), 0u);
  EXPECT_EQ(reader->remaining(), 0u);
  EXPECT_EQ(reader->max_frame_plaintext(), 0u);
  Bytes none;
  EXPECT_TRUE(reader->Read(none).ok());
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(RequestReaderTest, ZeroLengthFramesAreSkippedButCounted) {
  const EncryptedRequest enc = Encrypt(Pattern(20), 10);  // two frames of 30 bytes
  Bytes body = {0, 0, 0, 0};
  body.insert(body.end(), enc.body.begin(), enc.body.begin() + 30);
  body.insert(body.end(), {0, 0, 0, 0});
  body.insert(body.end(), enc.body.begin() + 30, enc.body.end());
  body.insert(body.end(), {0, 0, 0, 0});
  {
    auto reader = OpenReader(enc, body);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    EXPECT_EQ(reader->plaintext_size(), 20u);
    EXPECT_EQ(reader->max_frame_plaintext(), 10u);
    ReadInPieces(*reader, Pattern(20), {3});
  }
  // Frame indexes in messages count the LEN = 0 frames: the second sealed
  // frame is frame 3, its prefix at byte 4 + 30 + 4.
  body[4 + 30 + 4 + 4 + 1] ^= 1;
  auto reader = OpenReader(enc, body);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  Bytes out;
  ExpectError(ReadN(*reader, 11, out), StatusCode::kDataLoss, "EHBP request frame 3 at byte 38: failed to authenticate");
}

TEST_F(RequestReaderTest, TamperedLaterFrameFailsWhenReached) {
  const Bytes plaintext = Pattern(30);
  const EncryptedRequest enc = Encrypt(plaintext, 10);  // frames at bytes 0, 30, 60
  Bytes body = enc.body;
  body[60 + 4 + 3] ^= 1;  // frame 2
  auto reader = OpenReader(enc, body);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();  // only frame 0 is opened
  EXPECT_EQ(reader->plaintext_size(), 30u);
  Bytes out;
  ASSERT_TRUE(ReadN(*reader, 15, out).ok());
  EXPECT_EQ(out, Bytes(plaintext.begin(), plaintext.begin() + 15));
  ASSERT_TRUE(ReadN(*reader, 5, out).ok());  // up to the end of frame 1
  EXPECT_EQ(out, Bytes(plaintext.begin() + 15, plaintext.begin() + 20));
  ASSERT_TRUE(ReadN(*reader, 0, out).ok());  // opens nothing
  const char* kMessage = "EHBP request frame 2 at byte 60: failed to authenticate";
  ExpectError(ReadN(*reader, 1, out), StatusCode::kDataLoss, kMessage);
  // The error sticks, for reads of any size and for Finish.
  ExpectError(ReadN(*reader, 1, out), StatusCode::kDataLoss, kMessage);
  ExpectError(ReadN(*reader, 0, out), StatusCode::kDataLoss, kMessage);
  ExpectError(reader->Finish(), StatusCode::kDataLoss, kMessage);

  // A read that straddles into the tampered frame fails as a whole.
  auto straddling = OpenReader(enc, body);
  ASSERT_TRUE(straddling.ok()) << straddling.status().ToString();
  ASSERT_TRUE(ReadN(*straddling, 12, out).ok());
  ExpectError(ReadN(*straddling, 10, out), StatusCode::kDataLoss, kMessage);
  ExpectError(ReadN(*straddling, 1, out), StatusCode::kDataLoss, kMessage);
}

TEST_F(RequestReaderTest, TamperedFirstFrameFailsOpen) {
  const EncryptedRequest enc = Encrypt(Pattern(30), 10);
  Bytes body = enc.body;
  body[4 + 2] ^= 0x40;
  ExpectError(OpenReader(enc, body).status(), StatusCode::kDataLoss,
              "EHBP request frame 0 at byte 0: failed to authenticate");
  Bytes tag = enc.body;
  tag[29] ^= 1;  // the last byte of frame 0's tag
  ExpectError(OpenReader(enc, tag).status(), StatusCode::kDataLoss,
              "EHBP request frame 0 at byte 0: failed to authenticate");
}

TEST_F(RequestReaderTest, WrongKeyFailsOpen) {
  const EncryptedRequest enc = Encrypt(Pattern(30), 10);
  auto other = crypto::X25519PrivateKey::Generate().value();
  ExpectError(RequestReader::Open(enc.encapsulated_key_header_value, enc.body, other).status(), StatusCode::kDataLoss,
              "EHBP request frame 0 at byte 0: failed to authenticate");
}

TEST_F(RequestReaderTest, OpenChecksTheWholeFraming) {
  const EncryptedRequest enc = Encrypt(Pattern(30), 10);
  // A bad prefix in the last frame fails Open, though frame 0 is fine.
  Bytes bad_prefix = enc.body;
  bad_prefix[60 + 3] = 15;
  ExpectError(OpenReader(enc, bad_prefix).status(), StatusCode::kInvalidArgument,
              "EHBP request frame 2 at byte 60: bad length prefix 15");
  // It wins over an authentication failure in an earlier frame: no frame is opened before the framing is checked.
  bad_prefix[4] ^= 1;
  ExpectError(OpenReader(enc, bad_prefix).status(), StatusCode::kInvalidArgument, "bad length prefix 15");
  ExpectError(OpenReader(enc, Bytes(enc.body.begin(), enc.body.end() - 1)).status(), StatusCode::kDataLoss,
              "EHBP request frame 2 at byte 60: truncated chunk (25 of 26");
  ExpectError(OpenReader(enc, Bytes(enc.body.begin(), enc.body.begin() + 32)).status(), StatusCode::kDataLoss,
              "EHBP request frame 1 at byte 30: truncated length prefix");
  ExpectError(OpenReader(enc, {}).status(), StatusCode::kDataLoss, "no non-empty frame");
  ExpectError(OpenReader(enc, {0, 0, 0, 0, 0, 0, 0, 0}).status(), StatusCode::kDataLoss, "no non-empty frame");
  ExpectError(RequestReader::Open("00", enc.body, *key_).status(), StatusCode::kInvalidArgument,
              "Ehbp-Encapsulated-Key: expected 64 hex characters, got 2");
}

TEST_F(RequestReaderTest, ReadPastTheEnd) {
  const Bytes plaintext = Pattern(30);
  const EncryptedRequest enc = Encrypt(plaintext, 10);
  auto reader = OpenReader(enc, enc.body);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  Bytes out;
  ASSERT_TRUE(ReadN(*reader, 25, out).ok());
  Bytes past(6, 0xee);
  // "Out of range": common/status.h has no OutOfRange code, so it is InvalidArgument.
  ExpectError(reader->Read(past), StatusCode::kInvalidArgument, "read of 6 bytes past the end of the plaintext (5 of 30");
  EXPECT_EQ(past, Bytes(6, 0xee));  // nothing written
  EXPECT_EQ(reader->remaining(), 5u);
  ExpectError(ReadN(*reader, 5, out), StatusCode::kInvalidArgument, "read of 6 bytes past the end");  // sticks
  ExpectError(reader->Finish(), StatusCode::kInvalidArgument, "read of 6 bytes past the end");

  auto fresh = OpenReader(enc, enc.body);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  ExpectError(ReadN(*fresh, 31, out), StatusCode::kInvalidArgument, "read of 31 bytes past the end");
  // After the whole plaintext, one more byte is past the end.
  auto whole = OpenReader(enc, enc.body);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  ASSERT_TRUE(ReadN(*whole, 30, out).ok());
  EXPECT_EQ(out, plaintext);
  ExpectError(ReadN(*whole, 1, out), StatusCode::kInvalidArgument, "read of 1 bytes past the end");
}

TEST_F(RequestReaderTest, FinishWithBytesRemaining) {
  const EncryptedRequest enc = Encrypt(Pattern(30), 10);
  auto reader = OpenReader(enc, enc.body);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  Bytes out;
  ASSERT_TRUE(ReadN(*reader, 29, out).ok());
  ExpectError(reader->Finish(), StatusCode::kFailedPrecondition, "Finish with 1 of 30 plaintext bytes not read");
  // Sticks, like every error.
  ExpectError(ReadN(*reader, 1, out), StatusCode::kFailedPrecondition, "Finish with 1 of 30");
  ExpectError(reader->Finish(), StatusCode::kFailedPrecondition, "Finish with 1 of 30");
}

TEST_F(RequestReaderTest, TrailingEmptyFrameIsAuthenticatedByFinish) {
  const Bytes plaintext = Pattern(30);
  EncryptedRequest enc = Encrypt(plaintext, 10);  // frames 0..2, at bytes 0, 30, 60
  // A frame sealing "" under the next sequence number (3): a valid body.
  Bytes sealed_empty = enc.client_state.context.Seal({}, {}).value();
  ASSERT_EQ(sealed_empty.size(), 16u);
  Bytes valid = enc.body;
  AppendFrame(valid, sealed_empty);
  {
    auto reader = OpenReader(enc, valid);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    EXPECT_EQ(reader->plaintext_size(), 30u);
    ReadInPieces(*reader, plaintext, {7});
    auto dec = DecryptRequest(enc.encapsulated_key_header_value, valid, *key_);
    ASSERT_TRUE(dec.ok()) << dec.status().ToString();
    EXPECT_EQ(dec->plaintext, plaintext);
  }
  Bytes tampered = valid;
  tampered.back() ^= 1;
  Bytes garbage = enc.body;
  AppendFrame(garbage, Bytes(16, 0xab));
  for (const Bytes& body : {tampered, garbage}) {
    auto reader = OpenReader(enc, body);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    EXPECT_EQ(reader->plaintext_size(), 30u);
    Bytes out;
    ASSERT_TRUE(ReadN(*reader, 30, out).ok());
    EXPECT_EQ(out, plaintext);
    EXPECT_EQ(reader->remaining(), 0u);
    const char* kMessage = "EHBP request frame 3 at byte 90: failed to authenticate";
    ExpectError(reader->Finish(), StatusCode::kDataLoss, kMessage);
    ExpectError(reader->Finish(), StatusCode::kDataLoss, kMessage);
    ExpectError(ReadN(*reader, 0, out), StatusCode::kDataLoss, kMessage);
    // DecryptRequest, built on the reader, refuses the body too.
    ExpectError(DecryptRequest(enc.encapsulated_key_header_value, body, *key_).status(), StatusCode::kDataLoss,
                kMessage);
  }
}

TEST_F(RequestReaderTest, StateEncryptsTheResponse) {
  const Bytes plaintext = Pattern(300);
  EncryptedRequest enc = Encrypt(plaintext, 64);
  auto reader = OpenReader(enc, enc.body);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  ReadInPieces(*reader, plaintext, {100});
  const Bytes reply = Pattern(77);
  auto resp = EncryptResponse(reader->state(), reply, 7);
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  auto out = DecryptResponse(enc.client_state, resp->response_nonce_header_value, resp->body);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, reply);
  EXPECT_EQ(reader->state().enc, Hex(enc.encapsulated_key_header_value));
}

TEST_F(RequestReaderTest, MovesKeepThePosition) {
  const Bytes plaintext = Pattern(100);
  const EncryptedRequest enc = Encrypt(plaintext, 7);
  auto opened = OpenReader(enc, enc.body);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  RequestReader reader = std::move(opened).value();
  Bytes first;
  ASSERT_TRUE(ReadN(reader, 10, first).ok());  // 4 bytes of frame 1 stay buffered
  RequestReader moved(std::move(reader));
  Bytes second;
  ASSERT_TRUE(ReadN(moved, 20, second).ok());
  auto other = OpenReader(enc, enc.body);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  RequestReader assigned = std::move(other).value();
  assigned = std::move(moved);
  EXPECT_EQ(assigned.remaining(), 70u);
  Bytes rest;
  ASSERT_TRUE(ReadN(assigned, 70, rest).ok());
  EXPECT_TRUE(assigned.Finish().ok());
  first.insert(first.end(), second.begin(), second.end());
  first.insert(first.end(), rest.begin(), rest.end());
  EXPECT_EQ(first, plaintext);
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
