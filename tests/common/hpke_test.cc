#include "common/hpke.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace ppml::hpke {
namespace {

Bytes Hex(std::string_view hex) { return crypto::FromHex(hex).value(); }
crypto::X25519PrivateKey KeyFromHex(std::string_view hex) { return crypto::X25519PrivateKey::FromRaw(Hex(hex)).value(); }

Bytes Text(std::string_view text) { return Bytes(text.begin(), text.end()); }

// Both vectors share info ("Ode on a Grecian Urn") and plaintext
// ("Beauty is truth, truth beauty"); aad is "Count-<seq>".
const char kInfo[] = "4f6465206f6e2061204772656369616e2055726e";
const char kPlaintext[] = "4265617574792069732074727574682c20747275746820626561757479";

// RFC 9180 Appendix A.1.1: mode_base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// AES-128-GCM (aead_id 0x0001).
namespace a11 {
const char kIkmE[] = "7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234";
const char kSkEm[] = "52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736";
const char kPkEm[] = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431";
const char kIkmR[] = "6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037";
const char kSkRm[] = "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8";
const char kPkRm[] = "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d";
const char kEnc[] = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431";
const char kSharedSecret[] = "fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc";
const char kKeyScheduleContext[] =
    "00725611c9d98c07c03f60095cd32d400d8347d45ed67097bbad50fc56da742d07cb6cffde367bb0565ba28bb02c90744a20f5ef37f30523"
    "526106f637abb05449";
const char kSecret[] = "12fff91991e93b48de37e7daddb52981084bd8aa64289c3788471d9a9712f397";
const char kKey[] = "4531685d41d65f03dc48f6b8302c05b0";
const char kBaseNonce[] = "56d890e5accaaf011cff4b7d";
const char kExporterSecret[] = "45ff1c2e220db587171952c0592d5f5ebe103f1561a2614e38f2ffd47e99e3f8";

struct Encryption {
  uint64_t sequence;
  const char* aad;
  const char* ciphertext;
};
const Encryption kEncryptions[] = {
    {0, "436f756e742d30",
     "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a"},
    {1, "436f756e742d31",
     "af2d7e9ac9ae7e270f46ba1f975be53c09f8d875bdc8535458c2494e8a6eab251c03d0c22a56b8ca42c2063b84"},
    {2, "436f756e742d32",
     "498dfcabd92e8acedc281e85af1cb4e3e31c7dc394a1ca20e173cb72516491588d96a19ad4a683518973dcc180"},
    {4, "436f756e742d34",
     "583bd32bc67a5994bb8ceaca813d369bca7b2a42408cddef5e22f880b631215a09fc0012bc69fccaa251c0246d"},
    {255, "436f756e742d323535",
     "7175db9717964058640a3a11fb9007941a5d1757fda1a6935c805c21af32505bf106deefec4a49ac38d71c9e0a"},
    {256, "436f756e742d323536",
     "957f9800542b0b8891badb026d79cc54597cb2d225b54c00c5238c25d05c30e3fbeda97d2e0e1aba483a2df9f2"},
};
struct Export {
  const char* context;
  const char* value;
};
const Export kExports[] = {
    {"", "3853fe2b4035195a573ffc53856e77058e15d9ea064de3e59f4961d0095250ee"},
    {"00", "2e8f0b54673c7029649d4eb9d5e33bf1872cf76d623ff164ac185da9e88c21a5"},
    {"54657374436f6e74657874", "e9e43065102c3836401bed8c3c3c75ae46be1639869391d62c61f1ec7af54931"},
};
}  // namespace a11

// The CFRG test-vectors.json entry published with RFC 9180 for this
// project's exact suite: mode 0, kem 0x0020, kdf 0x0001, aead 0x0002
// (AES-256-GCM). The RFC body prints no X25519 + AES-256-GCM vector.
namespace aes256 {
const char kIkmE[] = "2cd7c601cefb3d42a62b04b7a9041494c06c7843818e0ce28a8f704ae7ab20f9";
const char kSkEm[] = "179d4b53b6365c45b600c4163b61d95cbc2f4d9e36f1695558dce265ab8bab11";
const char kIkmR[] = "dac33b0e9db1b59dbbea58d59a14e7b5896e9bdf98fad6891e99d1686492b9ee";
const char kSkRm[] = "497b4502664cfea5d5af0b39934dac72242a74f8480451e1aee7d6a53320333d";
const char kPkRm[] = "430f4b9859665145a6b1ba274024487bd66f03a2dd577d7753c68d7d7d00c00c";
const char kEnc[] = "6c93e09869df3402d7bf231bf540fadd35cd56be14f97178f0954db94b7fc256";
const char kSharedSecret[] = "3101c54c3a4f87439eaac080699ed9bbcc726ffe44e860c0424ccb7e3e2ead7b";
const char kKey[] = "f50b0609186798729ed0564b36ef2ef8044f1f9d05636874d1f46c819c7a669f";
const char kBaseNonce[] = "151d9929e2449747889bc923";
const char kAad0[] = "436f756e742d30";
const char kCiphertext0[] =
    "e5d84cd531cfb583096e7cfa9641bd3079cf3a91cda813c52deb5f512be9931980a41de125a925cdad859d5b7a";
const a11::Export kExports[] = {
    {"", "ded6cffafaea6b812cbf3e241e88332adbc077aca81512914213810ee291770a"},
    {"00", "04d3cb6cc116b28ffd22ad5bc276c60d31fec71ceb87ae24db811c64b7507339"},
    {"54657374436f6e74657874", "7c5ded445732c14fe09727d29b4251c0fd38455fe8440571e687f0886aac94d2"},
};
}  // namespace aes256

// ---- RFC 9180 A.1.1, byte for byte ------------------------------------------

TEST(HpkeRfc9180A11, DeriveKeyPair) {
  Result<crypto::X25519KeyPair> e = internal::DeriveKeyPair(Hex(a11::kIkmE));
  Result<crypto::X25519KeyPair> r = internal::DeriveKeyPair(Hex(a11::kIkmR));
  ASSERT_TRUE(e.ok() && r.ok());
  EXPECT_EQ(e->private_key.Reveal(), Hex(a11::kSkEm));
  EXPECT_EQ(e->public_key, Hex(a11::kPkEm));
  EXPECT_EQ(r->private_key.Reveal(), Hex(a11::kSkRm));
  EXPECT_EQ(r->public_key, Hex(a11::kPkRm));
}

TEST(HpkeRfc9180A11, EncapDecapAndKeySchedule) {
  Result<internal::Encapsulation> encap = internal::Encap(Hex(a11::kPkRm), KeyFromHex(a11::kSkEm));
  ASSERT_TRUE(encap.ok()) << encap.status().ToString();
  EXPECT_EQ(encap->enc, Hex(a11::kEnc));
  EXPECT_EQ(encap->shared_secret.Reveal(), Hex(a11::kSharedSecret));
  Result<SecretBytes> decap = internal::Decap(Hex(a11::kEnc), KeyFromHex(a11::kSkRm));
  ASSERT_TRUE(decap.ok()) << decap.status().ToString();
  EXPECT_EQ(decap->Reveal(), Hex(a11::kSharedSecret));

  Result<Bytes> context = internal::KeyScheduleContext(Aead::kAes128Gcm, Hex(kInfo));
  ASSERT_TRUE(context.ok());
  EXPECT_EQ(*context, Hex(a11::kKeyScheduleContext));
  Bytes suite_id = internal::HpkeSuiteId(Aead::kAes128Gcm);
  Result<SecretBytes> secret = internal::LabeledExtract(suite_id, Hex(a11::kSharedSecret), "secret", {});
  ASSERT_TRUE(secret.ok());
  EXPECT_EQ(secret->Reveal(), Hex(a11::kSecret));
}

TEST(HpkeRfc9180A11, SenderMatchesEveryValue) {
  Result<SenderSetup> setup = SetupBaseS(Hex(a11::kPkRm), Hex(kInfo), Aead::kAes128Gcm, Hex(a11::kSkEm));
  ASSERT_TRUE(setup.ok()) << setup.status().ToString();
  EXPECT_EQ(setup->enc, Hex(a11::kEnc));
  SenderContext& ctx = setup->context;
  EXPECT_EQ(ctx.key().Reveal(), Hex(a11::kKey));
  EXPECT_EQ(ctx.base_nonce(), Hex(a11::kBaseNonce));
  EXPECT_EQ(ctx.exporter_secret().Reveal(), Hex(a11::kExporterSecret));
  for (const a11::Encryption& e : a11::kEncryptions) {
    ctx.set_sequence_for_testing(e.sequence);
    Result<Bytes> ct = ctx.Seal(Hex(e.aad), Hex(kPlaintext));
    ASSERT_TRUE(ct.ok()) << ct.status().ToString();
    EXPECT_EQ(*ct, Hex(e.ciphertext)) << "seq " << e.sequence;
    EXPECT_EQ(ctx.sequence(), e.sequence + 1);
  }
  for (const a11::Export& x : a11::kExports) {
    Result<SecretBytes> value = ctx.Export(Hex(x.context), 32);
    ASSERT_TRUE(value.ok());
    EXPECT_EQ(value->Reveal(), Hex(x.value)) << "context '" << x.context << "'";
  }
}

TEST(HpkeRfc9180A11, ReceiverOpensEveryCiphertext) {
  Result<ReceiverContext> ctx = SetupBaseR(Hex(a11::kEnc), Hex(a11::kSkRm), Hex(kInfo), Aead::kAes128Gcm);
  ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
  EXPECT_EQ(ctx->key().Reveal(), Hex(a11::kKey));
  EXPECT_EQ(ctx->base_nonce(), Hex(a11::kBaseNonce));
  for (const a11::Encryption& e : a11::kEncryptions) {
    ctx->set_sequence_for_testing(e.sequence);
    Result<Bytes> pt = ctx->Open(Hex(e.aad), Hex(e.ciphertext));
    ASSERT_TRUE(pt.ok()) << "seq " << e.sequence << ": " << pt.status().ToString();
    EXPECT_EQ(*pt, Hex(kPlaintext));
  }
  for (const a11::Export& x : a11::kExports) {
    Result<SecretBytes> value = ctx->Export(Hex(x.context), 32);
    ASSERT_TRUE(value.ok());
    EXPECT_EQ(value->Reveal(), Hex(x.value));
  }
}

// ---- CFRG vector for X25519 / HKDF-SHA256 / AES-256-GCM ---------------------

TEST(HpkeCfrgAes256Gcm, DeriveKeyPair) {
  Result<crypto::X25519KeyPair> e = internal::DeriveKeyPair(Hex(aes256::kIkmE));
  Result<crypto::X25519KeyPair> r = internal::DeriveKeyPair(Hex(aes256::kIkmR));
  ASSERT_TRUE(e.ok() && r.ok());
  EXPECT_EQ(e->private_key.Reveal(), Hex(aes256::kSkEm));
  EXPECT_EQ(e->public_key, Hex(aes256::kEnc));
  EXPECT_EQ(r->private_key.Reveal(), Hex(aes256::kSkRm));
  EXPECT_EQ(r->public_key, Hex(aes256::kPkRm));
}

TEST(HpkeCfrgAes256Gcm, SenderMatchesVector) {
  Result<SenderSetup> setup = SetupBaseS(Hex(aes256::kPkRm), Hex(kInfo), Aead::kAes256Gcm, Hex(aes256::kSkEm));
  ASSERT_TRUE(setup.ok()) << setup.status().ToString();
  EXPECT_EQ(setup->enc, Hex(aes256::kEnc));
  EXPECT_EQ(setup->context.key().Reveal(), Hex(aes256::kKey));
  EXPECT_EQ(setup->context.base_nonce(), Hex(aes256::kBaseNonce));
  Result<Bytes> ct = setup->context.Seal(Hex(aes256::kAad0), Hex(kPlaintext));
  ASSERT_TRUE(ct.ok());
  EXPECT_EQ(*ct, Hex(aes256::kCiphertext0));
  for (const a11::Export& x : aes256::kExports) {
    Result<SecretBytes> value = setup->context.Export(Hex(x.context), 32);
    ASSERT_TRUE(value.ok());
    EXPECT_EQ(value->Reveal(), Hex(x.value)) << "context '" << x.context << "'";
  }
}

TEST(HpkeCfrgAes256Gcm, ReceiverMatchesVector) {
  Result<SecretBytes> shared = internal::Decap(Hex(aes256::kEnc), KeyFromHex(aes256::kSkRm));
  ASSERT_TRUE(shared.ok());
  EXPECT_EQ(shared->Reveal(), Hex(aes256::kSharedSecret));
  // The default suite is this one.
  Result<ReceiverContext> ctx = SetupBaseR(Hex(aes256::kEnc), Hex(aes256::kSkRm), Hex(kInfo));
  ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
  EXPECT_EQ(ctx->aead(), Aead::kAes256Gcm);
  Result<Bytes> pt = ctx->Open(Hex(aes256::kAad0), Hex(aes256::kCiphertext0));
  ASSERT_TRUE(pt.ok()) << pt.status().ToString();
  EXPECT_EQ(*pt, Text("Beauty is truth, truth beauty"));
}

// ---- Round trips and failures -------------------------------------------------

struct Pair {
  SenderSetup sender;
  ReceiverContext receiver;
};

crypto::X25519KeyPair NewRecipient() {
  Result<crypto::X25519KeyPair> pair = crypto::X25519GenerateKeyPair();
  EXPECT_TRUE(pair.ok());
  return std::move(pair).value();
}

TEST(HpkeTest, RoundTripsSeveralMessagesInOrder) {
  crypto::X25519KeyPair r = NewRecipient();
  Result<SenderSetup> s = SetupBaseS(r.public_key, Text("info"));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->enc.size(), kEncLength);
  Result<ReceiverContext> rc = SetupBaseR(s->enc, r.private_key.span(), Text("info"));
  ASSERT_TRUE(rc.ok()) << rc.status().ToString();
  for (int i = 0; i < 5; ++i) {
    Bytes msg = Text("message " + std::to_string(i));
    Result<Bytes> ct = s->context.Seal(Text("aad"), msg);
    ASSERT_TRUE(ct.ok());
    EXPECT_EQ(ct->size(), msg.size() + kTagLength);
    Result<Bytes> pt = rc->Open(Text("aad"), *ct);
    ASSERT_TRUE(pt.ok()) << pt.status().ToString();
    EXPECT_EQ(*pt, msg);
  }
  EXPECT_EQ(s->context.sequence(), 5u);
  EXPECT_EQ(rc->sequence(), 5u);
}

TEST(HpkeTest, FreshEphemeralKeyEachSetup) {
  crypto::X25519KeyPair r = NewRecipient();
  Result<SenderSetup> a = SetupBaseS(r.public_key, {});
  Result<SenderSetup> b = SetupBaseS(r.public_key, {});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->enc, b->enc);
}

TEST(HpkeTest, TamperingFailsWithDataLoss) {
  crypto::X25519KeyPair r = NewRecipient();
  Result<SenderSetup> s = SetupBaseS(r.public_key, Text("info"));
  ASSERT_TRUE(s.ok());
  Result<Bytes> ct = s->context.Seal(Text("aad"), Text("secret request"));
  ASSERT_TRUE(ct.ok());

  auto open = [&](ByteSpan enc, ByteSpan sk, std::string_view info, std::string_view aad, ByteSpan c) {
    Result<ReceiverContext> rc = SetupBaseR(enc, sk, Text(info));
    if (!rc.ok()) return rc.status();
    return rc->Open(Text(aad), c).status();
  };
  EXPECT_TRUE(open(s->enc, r.private_key.span(), "info", "aad", *ct).ok());

  Bytes flipped = *ct;
  flipped[3] ^= 0x01;
  EXPECT_EQ(open(s->enc, r.private_key.span(), "info", "aad", flipped).code(), StatusCode::kDataLoss);
  Bytes tag_flipped = *ct;
  tag_flipped.back() ^= 0x80;
  EXPECT_EQ(open(s->enc, r.private_key.span(), "info", "aad", tag_flipped).code(), StatusCode::kDataLoss);
  EXPECT_EQ(open(s->enc, r.private_key.span(), "info", "other aad", *ct).code(), StatusCode::kDataLoss);
  EXPECT_EQ(open(s->enc, r.private_key.span(), "other info", "aad", *ct).code(), StatusCode::kDataLoss);
  crypto::X25519KeyPair other = NewRecipient();
  EXPECT_EQ(open(s->enc, other.private_key.span(), "info", "aad", *ct).code(), StatusCode::kDataLoss);
  Bytes other_enc = s->enc;
  other_enc[0] ^= 0x01;
  EXPECT_EQ(open(other_enc, r.private_key.span(), "info", "aad", *ct).code(), StatusCode::kDataLoss);
  // A malformed or low-order enc is refused at setup.
  EXPECT_EQ(open(Bytes(31, 1), r.private_key.span(), "info", "aad", *ct).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(open(Bytes(32, 0), r.private_key.span(), "info", "aad", *ct).code(), StatusCode::kInvalidArgument);
}

TEST(HpkeTest, OutOfOrderMessageFailsAndDoesNotAdvance) {
  crypto::X25519KeyPair r = NewRecipient();
  Result<SenderSetup> s = SetupBaseS(r.public_key, {});
  ASSERT_TRUE(s.ok());
  Result<Bytes> first = s->context.Seal({}, Text("one"));
  Result<Bytes> second = s->context.Seal({}, Text("two"));
  ASSERT_TRUE(first.ok() && second.ok());
  Result<ReceiverContext> rc = SetupBaseR(s->enc, r.private_key.span(), {});
  ASSERT_TRUE(rc.ok());
  Result<Bytes> early = rc->Open({}, *second);  // sequence 1 opened at 0
  EXPECT_EQ(early.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(early.status().message().find("seq 0"), std::string::npos) << early.status().message();
  EXPECT_EQ(rc->sequence(), 0u);
  ASSERT_TRUE(rc->Open({}, *first).ok());
  Result<Bytes> two = rc->Open({}, *second);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(*two, Text("two"));
}

TEST(HpkeTest, SequenceOverflowIsAnError) {
  crypto::X25519KeyPair r = NewRecipient();
  Result<SenderSetup> s = SetupBaseS(r.public_key, {});
  ASSERT_TRUE(s.ok());
  s->context.set_sequence_for_testing(UINT64_MAX - 1);
  EXPECT_TRUE(s->context.Seal({}, Text("last")).ok());
  Result<Bytes> over = s->context.Seal({}, Text("one too many"));
  EXPECT_EQ(over.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s->context.sequence(), UINT64_MAX);
}

TEST(HpkeTest, SetupRejectsBadKeys) {
  EXPECT_EQ(SetupBaseS(Bytes(31, 1), {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SetupBaseS(Bytes(32, 0), {}).status().code(), StatusCode::kInvalidArgument);  // low order
  EXPECT_EQ(SetupBaseR(Bytes(32, 9), Bytes(16, 1), {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SetupBaseS(Bytes(32, 9), {}, static_cast<Aead>(0x0003)).status().code(), StatusCode::kUnsupported);
}

TEST(HpkeTest, ExportRejectsBadLengths) {
  crypto::X25519KeyPair r = NewRecipient();
  Result<SenderSetup> s = SetupBaseS(r.public_key, {});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->context.Export({}, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s->context.Export({}, 255 * 32 + 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(s->context.Export({}, 255 * 32).ok());
}

// ---- RFC 9458 §4.4 response keys ---------------------------------------------

TEST(HpkeResponseKeys, SenderAndReceiverAgreeAndFollowRfc9458) {
  crypto::X25519KeyPair r = NewRecipient();
  Result<SenderSetup> s = SetupBaseS(r.public_key, Text("info"));
  ASSERT_TRUE(s.ok());
  Result<ReceiverContext> rc = SetupBaseR(s->enc, r.private_key.span(), Text("info"));
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(ResponseNonceLength(Aead::kAes256Gcm), 32u);
  EXPECT_EQ(ResponseNonceLength(Aead::kAes128Gcm), 16u);
  Result<Bytes> response_nonce = crypto::RandomBytes(ResponseNonceLength(Aead::kAes256Gcm));
  ASSERT_TRUE(response_nonce.ok());

  Result<ResponseKeys> server = DeriveResponseKeys(*rc, s->enc, *response_nonce);
  Result<ResponseKeys> client = DeriveResponseKeys(s->context, s->enc, *response_nonce);
  ASSERT_TRUE(server.ok() && client.ok()) << server.status().ToString();
  EXPECT_EQ(server->key.size(), 32u);
  EXPECT_EQ(server->nonce.size(), kNonceLength);
  EXPECT_EQ(server->key.Reveal(), client->key.Reveal());
  EXPECT_EQ(server->nonce, client->nonce);

  // The same steps spelled out with the primitives.
  Result<SecretBytes> secret = rc->Export(Text("message/bhttp response"), 32);
  ASSERT_TRUE(secret.ok());
  Bytes salt = s->enc;
  salt.insert(salt.end(), response_nonce->begin(), response_nonce->end());
  Result<SecretBytes> prk = crypto::HkdfSha256Extract(salt, secret->span());
  ASSERT_TRUE(prk.ok());
  Result<SecretBytes> key = crypto::HkdfSha256Expand(prk->span(), Text("key"), 32);
  Result<SecretBytes> nonce = crypto::HkdfSha256Expand(prk->span(), Text("nonce"), 12);
  ASSERT_TRUE(key.ok() && nonce.ok());
  EXPECT_EQ(server->key.Reveal(), key->Reveal());
  EXPECT_EQ(server->nonce, nonce->Reveal());

  // A reply sealed by the server opens on the client.
  Result<Bytes> reply = crypto::AesGcmSeal(server->key.span(), server->nonce, {}, Text("{\"outputs\":[]}"));
  ASSERT_TRUE(reply.ok());
  Result<Bytes> opened = crypto::AesGcmOpen(client->key.span(), client->nonce, {}, *reply);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, Text("{\"outputs\":[]}"));
}

// RFC 9458 Appendix A, byte for byte: X25519, HKDF-SHA256, AES-128-GCM.
TEST(HpkeResponseKeys, Rfc9458AppendixA) {
  const Bytes skR = Hex("3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a");
  const Bytes pkR = Hex("31e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e798155");
  const Bytes skE = Hex("bc51d5e930bda26589890ac7032f70ad12e4ecb37abb1b65b1256c9c48999c73");
  const Bytes enc = Hex("4b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b472");
  // "message/bhttp request" || 0x00 || key_id 01 || kem 0020 || kdf 0001 || aead 0001
  const Bytes info = Hex("6d6573736167652f626874747020726571756573740001002000010001");
  const Bytes request = Hex("00034745540568747470730b6578616d706c652e636f6d012f");
  const Bytes request_ct =
      Hex("6374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525");
  const Bytes response_nonce = Hex("c789e7151fcba46158ca84b04464910d");

  Result<Bytes> pk = crypto::X25519PublicFromPrivate(skR);
  ASSERT_TRUE(pk.ok());
  EXPECT_EQ(*pk, pkR);

  Result<SenderSetup> s = SetupBaseS(pkR, info, Aead::kAes128Gcm, skE);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->enc, enc);
  Result<Bytes> ct = s->context.Seal({}, request);
  ASSERT_TRUE(ct.ok());
  EXPECT_EQ(*ct, request_ct);

  Result<ReceiverContext> rc = SetupBaseR(enc, skR, info, Aead::kAes128Gcm);
  ASSERT_TRUE(rc.ok()) << rc.status().ToString();
  Result<Bytes> pt = rc->Open({}, request_ct);
  ASSERT_TRUE(pt.ok()) << pt.status().ToString();
  EXPECT_EQ(*pt, request);

  EXPECT_EQ(ResponseNonceLength(Aead::kAes128Gcm), response_nonce.size());
  Result<SecretBytes> secret = rc->Export(Text("message/bhttp response"), 16);
  ASSERT_TRUE(secret.ok());
  EXPECT_EQ(secret->Reveal(), Hex("62d87a6ba569ee81014c2641f52bea36"));
  Result<ResponseKeys> keys = DeriveResponseKeys(*rc, enc, response_nonce);
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  EXPECT_EQ(keys->key.Reveal(), Hex("5d0172a080e428b16d298c4ea0db620d"));
  EXPECT_EQ(keys->nonce, Hex("f6bf1aeb88d6df87007fa263"));
  Result<Bytes> response_ct = crypto::AesGcmSeal(keys->key.span(), keys->nonce, {}, Hex("0140c8"));
  ASSERT_TRUE(response_ct.ok());
  EXPECT_EQ(*response_ct, Hex("86f9013e404feea014e7be4a441f234f857fbd"));

  Result<ResponseKeys> client_keys = DeriveResponseKeys(s->context, enc, response_nonce);
  ASSERT_TRUE(client_keys.ok());
  EXPECT_EQ(client_keys->key.Reveal(), keys->key.Reveal());
}

TEST(HpkeResponseKeys, LabelNonceAndEncChangeTheKeys) {
  crypto::X25519KeyPair r = NewRecipient();
  Result<SenderSetup> s = SetupBaseS(r.public_key, {});
  ASSERT_TRUE(s.ok());
  Bytes nonce(32, 7);
  Result<ResponseKeys> base = DeriveResponseKeys(s->context, s->enc, nonce);
  Result<ResponseKeys> other_label = DeriveResponseKeys(s->context, s->enc, nonce, "ehbp response");
  Bytes nonce2 = nonce;
  nonce2[31] ^= 1;
  Result<ResponseKeys> other_nonce = DeriveResponseKeys(s->context, s->enc, nonce2);
  Bytes enc2 = s->enc;
  enc2[0] ^= 1;
  Result<ResponseKeys> other_enc = DeriveResponseKeys(s->context, enc2, nonce);
  ASSERT_TRUE(base.ok() && other_label.ok() && other_nonce.ok() && other_enc.ok());
  EXPECT_NE(base->key.Reveal(), other_label->key.Reveal());
  EXPECT_NE(base->key.Reveal(), other_nonce->key.Reveal());
  EXPECT_NE(base->key.Reveal(), other_enc->key.Reveal());
  EXPECT_EQ(DeriveResponseKeys(s->context, s->enc, Bytes(12, 0)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DeriveResponseKeys(s->context, Bytes(31, 0), nonce).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ppml::hpke
