#include "common/crypto.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ppml::crypto {
namespace {

Bytes Hex(std::string_view hex) { return crypto::FromHex(hex).value(); }

Bytes Text(std::string_view text) { return Bytes(text.begin(), text.end()); }

TEST(CryptoTest, Sha256OfAbc) {
  Result<Bytes> digest = Sha256(Text("abc"));
  ASSERT_TRUE(digest.ok()) << digest.status().ToString();
  EXPECT_EQ(*digest, Hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

// RFC 4231 test case 2.
TEST(CryptoTest, HmacSha256Rfc4231Case2) {
  Result<Bytes> mac = HmacSha256(Text("Jefe"), Text("what do ya want for nothing?"));
  ASSERT_TRUE(mac.ok()) << mac.status().ToString();
  EXPECT_EQ(*mac, Hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
}

// RFC 5869 test case 1.
TEST(CryptoTest, HkdfRfc5869Case1) {
  Bytes ikm(22, 0x0b);
  Bytes salt = Hex("000102030405060708090a0b0c");
  Bytes info = Hex("f0f1f2f3f4f5f6f7f8f9");
  Result<SecretBytes> prk = HkdfSha256Extract(salt, ikm);
  ASSERT_TRUE(prk.ok()) << prk.status().ToString();
  EXPECT_EQ(prk->Reveal(), Hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"));
  Result<SecretBytes> okm = HkdfSha256Expand(prk->span(), info, 42);
  ASSERT_TRUE(okm.ok()) << okm.status().ToString();
  EXPECT_EQ(okm->Reveal(),
            Hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"));
}

// RFC 5869 test case 3: empty salt and info.
TEST(CryptoTest, HkdfRfc5869Case3EmptySaltAndInfo) {
  Bytes ikm(22, 0x0b);
  Result<SecretBytes> prk = HkdfSha256Extract({}, ikm);
  ASSERT_TRUE(prk.ok()) << prk.status().ToString();
  EXPECT_EQ(prk->Reveal(), Hex("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04"));
  Result<SecretBytes> okm = HkdfSha256Expand(prk->span(), {}, 42);
  ASSERT_TRUE(okm.ok()) << okm.status().ToString();
  EXPECT_EQ(okm->Reveal(),
            Hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"));
}

// Each thread reuses its HKDF and HMAC state: uses with and without info, and
// with different keys, in any order, must not see each other's inputs.
TEST(CryptoTest, HkdfUsesInAnyOrderKeepTheirOwnKeyAndInfo) {
  Bytes prk1 = Hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
  Bytes prk3 = Hex("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04");
  Bytes info1 = Hex("f0f1f2f3f4f5f6f7f8f9");
  Bytes okm1 = Hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  Bytes okm3 = Hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(HkdfSha256Expand(prk1, info1, 42).value().Reveal(), okm1);
    EXPECT_EQ(HkdfSha256Expand(prk3, {}, 42).value().Reveal(), okm3);
    EXPECT_EQ(HkdfSha256Expand(prk1, info1, 42).value().Reveal(), okm1);
    EXPECT_EQ(HkdfSha256Extract({}, Bytes(22, 0x0b)).value().Reveal(), prk3);
    EXPECT_EQ(HkdfSha256Extract(Hex("000102030405060708090a0b0c"), Bytes(22, 0x0b)).value().Reveal(), prk1);
  }
}

TEST(CryptoTest, HkdfExtractMatchesHmacWithEmptyIkm) {
  Bytes salt = Hex("0102");
  Result<SecretBytes> prk = HkdfSha256Extract(salt, {});
  Result<Bytes> mac = HmacSha256(salt, {});
  ASSERT_TRUE(prk.ok()) << prk.status().ToString();
  ASSERT_TRUE(mac.ok());
  EXPECT_EQ(prk->Reveal(), *mac);
}

TEST(CryptoTest, HkdfExpandRejectsBadLengths) {
  Bytes prk(32, 1);
  EXPECT_EQ(HkdfSha256Expand(prk, {}, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HkdfSha256Expand(prk, {}, 255 * 32 + 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HkdfSha256Expand(Bytes(16, 1), {}, 32).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(HkdfSha256Expand(prk, {}, 255 * 32).ok());
}

// McGrew & Viega GCM spec test case 16 (AES-256, with AAD).
const char kGcmKey[] = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
const char kGcmNonce[] = "cafebabefacedbaddecaf888";
const char kGcmAad[] = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
const char kGcmPlaintext[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de6"
    "57ba637b39";
const char kGcmSealed[] =
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a"
    "0abcc9f662"
    "76fc6ece0f4e1768cddf8853bb2d551b";

TEST(CryptoTest, AesGcmSealMatchesGcmSpecCase16) {
  Result<Bytes> sealed = AesGcmSeal(Hex(kGcmKey), Hex(kGcmNonce), Hex(kGcmAad), Hex(kGcmPlaintext));
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ(*sealed, Hex(kGcmSealed));
}

TEST(CryptoTest, AesGcmOpenMatchesGcmSpecCase16) {
  Result<Bytes> opened = AesGcmOpen(Hex(kGcmKey), Hex(kGcmNonce), Hex(kGcmAad), Hex(kGcmSealed));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(*opened, Hex(kGcmPlaintext));
}

TEST(CryptoTest, AesGcmOpenRejectsEveryChange) {
  const Bytes key = Hex(kGcmKey), nonce = Hex(kGcmNonce), aad = Hex(kGcmAad), sealed = Hex(kGcmSealed);
  for (size_t i : {size_t{0}, sealed.size() - 17, sealed.size() - 1}) {  // ciphertext and tag bytes
    Bytes tampered = sealed;
    tampered[i] ^= 0x01;
    Result<Bytes> opened = AesGcmOpen(key, nonce, aad, tampered);
    EXPECT_EQ(opened.status().code(), StatusCode::kDataLoss) << "byte " << i;
  }
  Bytes other_key = key;
  other_key[0] ^= 0x80;
  EXPECT_EQ(AesGcmOpen(other_key, nonce, aad, sealed).status().code(), StatusCode::kDataLoss);
  Bytes other_nonce = nonce;
  other_nonce[11] ^= 0x01;
  EXPECT_EQ(AesGcmOpen(key, other_nonce, aad, sealed).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(AesGcmOpen(key, nonce, {}, sealed).status().code(), StatusCode::kDataLoss);
  Bytes truncated(sealed.begin(), sealed.end() - 1);
  EXPECT_EQ(AesGcmOpen(key, nonce, aad, truncated).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(AesGcmOpen(key, nonce, aad, Bytes(15, 0)).status().code(), StatusCode::kDataLoss);
  Result<Bytes> bad = AesGcmOpen(key, nonce, {}, sealed);
  EXPECT_NE(bad.status().message().find("authentication failed"), std::string::npos);
}

TEST(CryptoTest, AesGcmRoundTripsEmptyPlaintextAndAad) {
  Result<Bytes> key = RandomBytes(kAes256KeyLength);
  Result<Bytes> nonce = RandomBytes(kAesGcmNonceLength);
  ASSERT_TRUE(key.ok() && nonce.ok());
  Result<Bytes> sealed = AesGcmSeal(*key, *nonce, {}, {});
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ(sealed->size(), kAesGcmTagLength);
  Result<Bytes> opened = AesGcmOpen(*key, *nonce, {}, *sealed);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_TRUE(opened->empty());
}

TEST(CryptoTest, AesGcmRejectsBadKeyAndNonceSizes) {
  EXPECT_EQ(AesGcmSeal(Bytes(24, 0), Bytes(12, 0), {}, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(AesGcmSeal(Bytes(32, 0), Bytes(16, 0), {}, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(AesGcmOpen(Bytes(32, 0), Bytes(8, 0), {}, Bytes(16, 0)).status().code(),
            StatusCode::kInvalidArgument);
}

// RFC 7748 §6.1 Diffie-Hellman example.
TEST(CryptoTest, X25519Rfc7748Example) {
  const Bytes alice_private = Hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const Bytes alice_public = Hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  const Bytes bob_private = Hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  const Bytes bob_public = Hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  const Bytes shared = Hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  Result<Bytes> pub = X25519PublicFromPrivate(alice_private);
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_EQ(*pub, alice_public);
  Result<X25519PrivateKey> alice = X25519PrivateKey::FromRaw(alice_private);
  Result<X25519PrivateKey> bob = X25519PrivateKey::FromRaw(bob_private);
  ASSERT_TRUE(alice.ok() && bob.ok());
  EXPECT_EQ(alice->public_key(), alice_public);
  EXPECT_EQ(bob->public_key(), bob_public);
  Result<SecretBytes> ab = alice->Agree(bob_public);
  Result<SecretBytes> ba = bob->Agree(alice_public);
  ASSERT_TRUE(ab.ok() && ba.ok());
  EXPECT_EQ(ab->Reveal(), shared);
  EXPECT_EQ(ba->Reveal(), shared);
  // A loaded key agrees again and again (the enclave keeps one for every request).
  Result<SecretBytes> again = alice->Agree(bob_public);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->Reveal(), shared);
}

TEST(CryptoTest, X25519GeneratedPairsAgree) {
  Result<X25519KeyPair> a = X25519GenerateKeyPair();
  Result<X25519KeyPair> b = X25519GenerateKeyPair();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->private_key.size(), kX25519KeyLength);
  EXPECT_EQ(a->public_key.size(), kX25519KeyLength);
  Result<Bytes> a_pub = X25519PublicFromPrivate(a->private_key.span());
  ASSERT_TRUE(a_pub.ok());
  EXPECT_EQ(*a_pub, a->public_key);
  Result<SecretBytes> ab = X25519PrivateKey::FromRaw(a->private_key.span())->Agree(b->public_key);
  Result<SecretBytes> ba = X25519PrivateKey::FromRaw(b->private_key.span())->Agree(a->public_key);
  ASSERT_TRUE(ab.ok() && ba.ok());
  EXPECT_EQ(ab->Reveal(), ba->Reveal());
}

TEST(CryptoTest, X25519LoadedKeyAgreesFromSeveralThreadsAtOnce) {
  Result<X25519PrivateKey> key = X25519PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  constexpr int kThreads = 4;
  std::vector<X25519KeyPair> peers;
  for (int i = 0; i < kThreads; ++i) peers.push_back(X25519GenerateKeyPair().value());
  std::vector<Bytes> ours(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < 50; ++round) {
        Result<SecretBytes> s = key->Agree(peers[i].public_key);
        if (!s.ok() || (round > 0 && s->Reveal() != ours[i])) {
          ours[i].clear();  // the check below then fails
          return;
        }
        ours[i] = s->Reveal();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    Result<SecretBytes> theirs = X25519PrivateKey::FromRaw(peers[i].private_key.span())->Agree(key->public_key());
    ASSERT_TRUE(theirs.ok());
    EXPECT_EQ(ours[i], theirs->Reveal()) << "thread " << i;
  }
}

TEST(CryptoTest, X25519GeneratedKeyExportsWhatItAgreesWith) {
  Result<X25519PrivateKey> key = X25519PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  Result<SecretBytes> raw = key->RawPrivate();
  ASSERT_TRUE(raw.ok());
  Result<Bytes> pub = X25519PublicFromPrivate(raw->span());
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(*pub, key->public_key());
}

TEST(CryptoTest, X25519RawImportExportRoundTrips) {
  Result<X25519KeyPair> pair = X25519GenerateKeyPair();
  ASSERT_TRUE(pair.ok());
  Result<X25519PrivateKey> priv = X25519PrivateKey::FromRaw(pair->private_key.span());
  Result<EvpPkeyPtr> pub = X25519PublicKeyFromRaw(pair->public_key);
  ASSERT_TRUE(priv.ok() && pub.ok());
  Result<SecretBytes> raw_priv = priv->RawPrivate();
  Result<Bytes> raw_pub = RawPublicKey(pub->get());
  ASSERT_TRUE(raw_priv.ok() && raw_pub.ok());
  EXPECT_EQ(raw_priv->Reveal(), pair->private_key.Reveal());
  EXPECT_EQ(*raw_pub, pair->public_key);
  EXPECT_EQ(X25519PrivateKey::FromRaw(Bytes(31, 1)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(X25519PublicKeyFromRaw(Bytes(33, 1)).status().code(), StatusCode::kInvalidArgument);
}

TEST(CryptoTest, X25519RejectsLowOrderPeer) {
  Result<X25519KeyPair> pair = X25519GenerateKeyPair();
  ASSERT_TRUE(pair.ok());
  // The all-zero point and the point of order 1 give an all-zero secret.
  Bytes one(32, 0);
  one[0] = 1;
  Result<X25519PrivateKey> key = X25519PrivateKey::FromRaw(pair->private_key.span());
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->Agree(Bytes(32, 0)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(key->Agree(one).status().code(), StatusCode::kInvalidArgument);
}

TEST(CryptoTest, RandomBytesDiffer) {
  Result<Bytes> a = RandomBytes(32);
  Result<Bytes> b = RandomBytes(32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 32u);
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(RandomBytes(0).ok());
}

TEST(CryptoTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals(Hex("0102"), Hex("0102")));
  EXPECT_FALSE(ConstantTimeEquals(Hex("0102"), Hex("0103")));
  EXPECT_FALSE(ConstantTimeEquals(Hex("0102"), Hex("010203")));
  EXPECT_TRUE(ConstantTimeEquals({}, {}));
}

TEST(CryptoTest, SecretBytesCopiesAndMoves) {
  SecretBytes a(Hex("010203"));
  SecretBytes b = a;
  EXPECT_EQ(b.Reveal(), Hex("010203"));
  SecretBytes c = std::move(a);
  EXPECT_EQ(c.Reveal(), Hex("010203"));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  b = SecretBytes(2);
  EXPECT_EQ(b.Reveal(), Hex("0000"));
}

}  // namespace
}  // namespace ppml::crypto
