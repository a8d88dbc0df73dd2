// Ed25519 keys, domain-separated signatures, SHA-256 and hex (x1368/core/crypto.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/crypto.h"

namespace x1368::core {
namespace {

using ::x1368::testing::HasReason;

PrivateKey NewKey() {
  auto key = PrivateKey::Generate();
  EXPECT_TRUE(key.ok()) << key.status();
  return *std::move(key);
}

TEST(CryptoTest, GeneratesDistinctEd25519Keys) {
  PrivateKey a = NewKey();
  PrivateKey b = NewKey();
  EXPECT_EQ(a.alg(), v1::ED25519);
  EXPECT_EQ(a.public_key().raw().size(), 32u);
  EXPECT_NE(a.public_key().raw(), b.public_key().raw());
}

TEST(CryptoTest, PrivateKeyPemRoundTrip) {
  PrivateKey key = NewKey();
  std::string pem = key.ToPem();
  EXPECT_THAT(pem, ::testing::HasSubstr("BEGIN PRIVATE KEY"));
  auto back = PrivateKey::FromPem(pem);
  ASSERT_OK(back);
  EXPECT_EQ(back->public_key().raw(), key.public_key().raw());
  // The reloaded key signs what the original key's public half verifies.
  auto sig = back->Sign(SignedKind::kEnvelopeBody, "hello");
  ASSERT_OK(sig);
  EXPECT_TRUE(key.public_key().Verify(SignedKind::kEnvelopeBody, "hello", *sig));
}

TEST(CryptoTest, PublicKeyPemRoundTrip) {
  PrivateKey key = NewKey();
  std::string pem = key.public_key().ToPem();
  EXPECT_THAT(pem, ::testing::HasSubstr("BEGIN PUBLIC KEY"));
  auto back = PublicKey::FromPem(pem);
  ASSERT_OK(back);
  EXPECT_EQ(back->raw(), key.public_key().raw());
  auto sig = key.Sign(SignedKind::kManifest, "data");
  ASSERT_OK(sig);
  EXPECT_TRUE(back->Verify(SignedKind::kManifest, "data", *sig));
}

TEST(CryptoTest, PemFilesLoad) {
  testing::TempDir dir;
  testing::TestPki pki(dir.path());
  auto priv = PrivateKey::LoadPemFile(pki.root_key_path());
  ASSERT_OK(priv);
  auto pub = PublicKey::LoadPemFile(pki.root_pub_path());
  ASSERT_OK(pub);
  EXPECT_EQ(priv->public_key().raw(), pki.root_key().public_key().raw());
  EXPECT_EQ(pub->raw(), pki.root_key().public_key().raw());
  EXPECT_FALSE(PublicKey::LoadPemFile(dir.File("missing.pub")).ok());
}

TEST(CryptoTest, RejectsGarbagePem) {
  EXPECT_FALSE(PrivateKey::FromPem("not a key").ok());
  EXPECT_FALSE(
      PublicKey::FromPem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").ok());
  // A public key is not a private key, and the other way round.
  PrivateKey key = NewKey();
  EXPECT_FALSE(PrivateKey::FromPem(key.public_key().ToPem()).ok());
}

TEST(CryptoTest, FromRawChecksAlgorithmAndLength) {
  PrivateKey key = NewKey();
  auto same = PublicKey::FromRaw(v1::ED25519, key.public_key().raw());
  ASSERT_OK(same);
  EXPECT_EQ(same->raw(), key.public_key().raw());
  EXPECT_THAT(PublicKey::FromRaw(v1::SIGNATURE_ALGORITHM_UNSPECIFIED, key.public_key().raw()),
              HasReason(v1::UNSUPPORTED_ALG));
  EXPECT_THAT(PublicKey::FromRaw(v1::ED25519, std::string(31, 'a')), HasReason(v1::BAD_CERT));
}

TEST(CryptoTest, SignAndVerify) {
  PrivateKey key = NewKey();
  auto sig = key.Sign(SignedKind::kEnvelopeBody, "the body");
  ASSERT_OK(sig);
  EXPECT_EQ(sig->size(), 64u);
  EXPECT_TRUE(key.public_key().Verify(SignedKind::kEnvelopeBody, "the body", *sig));
}

TEST(CryptoTest, VerifyFailsOnTamperedData) {
  PrivateKey key = NewKey();
  auto sig = key.Sign(SignedKind::kEnvelopeBody, "the body");
  ASSERT_OK(sig);
  EXPECT_FALSE(key.public_key().Verify(SignedKind::kEnvelopeBody, "the bodY", *sig));
  EXPECT_FALSE(key.public_key().Verify(SignedKind::kEnvelopeBody, "the body ", *sig));
  EXPECT_FALSE(key.public_key().Verify(SignedKind::kEnvelopeBody, "", *sig));
}

TEST(CryptoTest, VerifyFailsOnTamperedSignature) {
  PrivateKey key = NewKey();
  auto sig = key.Sign(SignedKind::kEnvelopeBody, "the body");
  ASSERT_OK(sig);
  std::string bad = *sig;
  bad[10] ^= 0x01;
  EXPECT_FALSE(key.public_key().Verify(SignedKind::kEnvelopeBody, "the body", bad));
  EXPECT_FALSE(key.public_key().Verify(SignedKind::kEnvelopeBody, "the body", sig->substr(0, 63)));
  EXPECT_FALSE(key.public_key().Verify(SignedKind::kEnvelopeBody, "the body", ""));
}

TEST(CryptoTest, VerifyFailsWithWrongKey) {
  PrivateKey key = NewKey();
  PrivateKey other = NewKey();
  auto sig = key.Sign(SignedKind::kEnvelopeBody, "the body");
  ASSERT_OK(sig);
  EXPECT_FALSE(other.public_key().Verify(SignedKind::kEnvelopeBody, "the body", *sig));
}

TEST(CryptoTest, SignaturesAreDomainSeparated) {
  PrivateKey key = NewKey();
  const std::string data = "same bytes";
  auto as_manifest = key.Sign(SignedKind::kManifest, data);
  ASSERT_OK(as_manifest);
  EXPECT_TRUE(key.public_key().Verify(SignedKind::kManifest, data, *as_manifest));
  EXPECT_FALSE(key.public_key().Verify(SignedKind::kEnvelopeBody, data, *as_manifest));
  EXPECT_FALSE(key.public_key().Verify(SignedKind::kCertificate, data, *as_manifest));

  auto as_cert = key.Sign(SignedKind::kCertificate, data);
  ASSERT_OK(as_cert);
  EXPECT_FALSE(key.public_key().Verify(SignedKind::kEnvelopeBody, data, *as_cert));
  EXPECT_FALSE(key.public_key().Verify(SignedKind::kManifest, data, *as_cert));
}

TEST(CryptoTest, Sha256KnownVectors) {
  EXPECT_EQ(HexEncode(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexEncode(Sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(CryptoTest, Sha256StreamMatchesOneShot) {
  std::string data = testing::TestPki::MakeImage(100'000, 7);
  Sha256Stream s;
  for (size_t off = 0; off < data.size(); off += 777) {
    s.Update(absl::string_view(data).substr(off, 777));
  }
  EXPECT_EQ(s.Final(), Sha256(data));
}

TEST(CryptoTest, Sha256FileMatchesOneShot) {
  testing::TempDir dir;
  std::string data = testing::TestPki::MakeImage(200'000, 3);
  {
    FILE* f = fopen(dir.File("img").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    fwrite(data.data(), 1, data.size(), f);
    fclose(f);
  }
  auto digest = Sha256File(dir.File("img"));
  ASSERT_OK(digest);
  EXPECT_EQ(*digest, Sha256(data));
  EXPECT_FALSE(Sha256File(dir.File("missing")).ok());
}

TEST(CryptoTest, HexRoundTrip) {
  std::string bytes("\x00\x01\x7f\x80\xff", 5);
  EXPECT_EQ(HexEncode(bytes), "00017f80ff");
  auto back = HexDecode("00017f80ff");
  ASSERT_OK(back);
  EXPECT_EQ(*back, bytes);
  auto upper = HexDecode("ABCDEF");
  ASSERT_OK(upper);
  EXPECT_EQ(*upper, "\xab\xcd\xef");
  auto empty = HexDecode("");
  ASSERT_OK(empty);
  EXPECT_EQ(*empty, "");
  EXPECT_EQ(HexEncode(""), "");
}

TEST(CryptoTest, HexDecodeRejectsBadInput) {
  EXPECT_FALSE(HexDecode("abc").ok());  // odd length
  EXPECT_FALSE(HexDecode("zz").ok());   // not hex
  EXPECT_FALSE(HexDecode("0g").ok());
  EXPECT_FALSE(HexDecode(" 0").ok());
  EXPECT_FALSE(HexDecode("0x00").ok());
}

}  // namespace
}  // namespace x1368::core
