// The trust model (x1368/core/trust.h: root anchor, delegation certificates, scopes) and
// author-signed manifests (x1368/core/manifest.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/match.h"
#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/clock.h"
#include "x1368/core/manifest.h"
#include "x1368/core/reason.h"
#include "x1368/core/trust.h"

namespace x1368::core {
namespace {

using ::x1368::testing::HasReason;
using ::x1368::testing::TempDir;
using ::x1368::testing::TestNode;
using ::x1368::testing::TestPki;

class TrustTest : public ::testing::Test {
 protected:
  TrustTest() : pki_(dir_.path()), trust_(pki_.root_id(), pki_.root_key().public_key(), &clock_) {}

  TempDir dir_;
  FakeClock clock_;
  TestPki pki_;
  TrustStore trust_;
};

TEST_F(TrustTest, RootIdResolvesToTheAnchor) {
  auto root = trust_.Resolve("root", nullptr);
  ASSERT_OK(root);
  EXPECT_TRUE((*root)->is_root);
  EXPECT_EQ((*root)->role, v1::ROLE_ROOT);
  EXPECT_EQ((*root)->key.raw(), pki_.root_key().public_key().raw());
  // A certificate carried by a message claiming to be the root is ignored.
  TestNode impostor = pki_.Issue("gw", v1::ROLE_INTERMEDIATE);
  auto again = trust_.Resolve("root", &impostor.cert);
  ASSERT_OK(again);
  EXPECT_TRUE((*again)->is_root);
  EXPECT_EQ((*again)->key.raw(), pki_.root_key().public_key().raw());
}

TEST_F(TrustTest, ResolvesACertifiedNode) {
  TestNode gw = pki_.Issue("gw", v1::ROLE_INTERMEDIATE, {"dev-*"}, {"fw-main"});
  auto id = trust_.Resolve("gw", &gw.cert);
  ASSERT_OK(id);
  EXPECT_EQ((*id)->node_id, "gw");
  EXPECT_EQ((*id)->role, v1::ROLE_INTERMEDIATE);
  EXPECT_FALSE((*id)->is_root);
  EXPECT_EQ((*id)->key.raw(), gw.key.public_key().raw());
  EXPECT_THAT((*id)->scope.nodes(), ::testing::ElementsAre("dev-*"));
  EXPECT_THAT((*id)->scope.components(), ::testing::ElementsAre("fw-main"));
}

TEST_F(TrustTest, RejectsMissingForeignAndMismatchedCertificates) {
  TestNode gw = pki_.Issue("gw", v1::ROLE_INTERMEDIATE);
  EXPECT_THAT(trust_.Resolve("gw", nullptr), HasReason(v1::UNKNOWN_SIGNER));
  EXPECT_THAT(trust_.Resolve("gw2", &gw.cert), HasReason(v1::BAD_CERT));

  TempDir other_dir;
  TestPki other(other_dir.path());
  TestNode foreign = other.Issue("gw", v1::ROLE_INTERMEDIATE);
  EXPECT_THAT(trust_.VerifyCert(foreign.cert), HasReason(v1::BAD_CERT));

  // Issued by a root with another id but the same key: the issuer field must match.
  TempDir renamed_dir;
  TestPki renamed(renamed_dir.path(), "root2");
  TrustStore trust2("root2", renamed.root_key().public_key(), &clock_);
  TestNode from_root2 = renamed.Issue("gw", v1::ROLE_INTERMEDIATE);
  EXPECT_OK(trust2.VerifyCert(from_root2.cert));
  EXPECT_THAT(trust_.VerifyCert(from_root2.cert), HasReason(v1::BAD_CERT));
}

TEST_F(TrustTest, RejectsTamperedCertificate) {
  TestNode gw = pki_.Issue("gw", v1::ROLE_INTERMEDIATE);
  v1::DelegationCert cert = gw.cert;
  std::string sig = cert.signature();
  sig[5] ^= 0x01;
  cert.set_signature(sig);
  EXPECT_THAT(trust_.VerifyCert(cert), HasReason(v1::BAD_CERT));

  // A body signed by the root as a manifest, not as a certificate.
  v1::DelegationCert cross = gw.cert;
  cross.set_signature(*pki_.root_key().Sign(SignedKind::kManifest, cross.body()));
  EXPECT_THAT(trust_.VerifyCert(cross), HasReason(v1::BAD_CERT));

  v1::DelegationCert bad_alg = gw.cert;
  bad_alg.set_alg(v1::SIGNATURE_ALGORITHM_UNSPECIFIED);
  EXPECT_THAT(trust_.VerifyCert(bad_alg), HasReason(v1::UNSUPPORTED_ALG));
}

TEST_F(TrustTest, RootSignedBodyWithBadFieldsIsRejected) {
  // Bodies IssueCert would refuse, signed with the root key by hand.
  TestNode gw = pki_.Issue("gw", v1::ROLE_INTERMEDIATE);
  v1::CertBody base;
  ASSERT_TRUE(base.ParseFromString(gw.cert.body()));
  auto sign = [&](const v1::CertBody& body) {
    v1::DelegationCert c;
    body.SerializeToString(c.mutable_body());
    c.set_alg(v1::ED25519);
    c.set_signature(*pki_.root_key().Sign(SignedKind::kCertificate, c.body()));
    return c;
  };
  EXPECT_OK(trust_.VerifyCert(sign(base)));
  v1::CertBody b = base;
  b.set_role(v1::ROLE_ROOT);
  EXPECT_THAT(trust_.VerifyCert(sign(b)), HasReason(v1::BAD_CERT));
  b = base;
  b.set_node_id("g/w");
  EXPECT_THAT(trust_.VerifyCert(sign(b)), HasReason(v1::BAD_CERT));
  b = base;
  b.mutable_scope()->add_nodes("dev/+");
  EXPECT_THAT(trust_.VerifyCert(sign(b)), HasReason(v1::BAD_CERT));
  b = base;
  b.set_public_key("short");
  EXPECT_THAT(trust_.VerifyCert(sign(b)), HasReason(v1::BAD_CERT));
}

TEST_F(TrustTest, ValidityWindowIsCheckedAgainstTheClock) {
  const int64_t now = clock_.NowMs();
  TestNode gw = pki_.Issue("gw", v1::ROLE_INTERMEDIATE, {}, {}, now + 1000, now + 2000);
  EXPECT_THAT(trust_.VerifyCert(gw.cert), HasReason(v1::BAD_CERT));  // not yet valid
  clock_.Advance(1000);
  EXPECT_OK(trust_.VerifyCert(gw.cert));
  clock_.Advance(1000);
  EXPECT_OK(trust_.VerifyCert(gw.cert));  // not_after itself is still valid
  clock_.Advance(1);
  EXPECT_THAT(trust_.VerifyCert(gw.cert), HasReason(v1::BAD_CERT));
}

TEST_F(TrustTest, CachedCertificateIsRecheckedForExpiry) {
  const int64_t now = clock_.NowMs();
  TestNode gw = pki_.Issue("gw", v1::ROLE_INTERMEDIATE, {}, {}, now - 1000, now + 1000);
  auto first = trust_.Resolve("gw", &gw.cert);
  ASSERT_OK(first);
  auto second = trust_.Resolve("gw", &gw.cert);
  ASSERT_OK(second);
  EXPECT_EQ(first->get(), second->get());  // served from the cache
  clock_.Advance(5000);
  EXPECT_THAT(trust_.Resolve("gw", &gw.cert), HasReason(v1::BAD_CERT));
  EXPECT_THAT(trust_.VerifyCert(gw.cert), HasReason(v1::BAD_CERT));
}

TEST_F(TrustTest, ScopeCoversNode) {
  TestNode gw = pki_.Issue("gw", v1::ROLE_INTERMEDIATE, {"dev-*", "sensor-7", "a*"});
  const Identity& id = **trust_.VerifyCert(gw.cert);
  EXPECT_TRUE(ScopeCoversNode(id, "sensor-7"));  // exact
  EXPECT_FALSE(ScopeCoversNode(id, "sensor-70"));
  EXPECT_FALSE(ScopeCoversNode(id, "sensor-"));
  EXPECT_TRUE(ScopeCoversNode(id, "dev-1"));  // prefix
  EXPECT_TRUE(ScopeCoversNode(id, "dev-"));
  EXPECT_FALSE(ScopeCoversNode(id, "dev"));
  EXPECT_FALSE(ScopeCoversNode(id, "xdev-1"));
  EXPECT_TRUE(ScopeCoversNode(id, "abc"));
  EXPECT_TRUE(ScopeCoversNode(id, "gw"));  // self
  EXPECT_FALSE(ScopeCoversNode(id, "gw2"));
  EXPECT_FALSE(ScopeCoversNode(id, "root"));

  TestNode all = pki_.Issue("hub", v1::ROLE_INTERMEDIATE, {"*"});
  EXPECT_TRUE(ScopeCoversNode(**trust_.VerifyCert(all.cert), "anything"));

  TestNode none = pki_.Issue("leaf", v1::ROLE_CLIENT);
  const Identity& leaf = **trust_.VerifyCert(none.cert);
  EXPECT_TRUE(ScopeCoversNode(leaf, "leaf"));
  EXPECT_FALSE(ScopeCoversNode(leaf, "dev-1"));

  EXPECT_TRUE(ScopeCoversNode(*trust_.root(), "dev-1"));  // root covers everything
  EXPECT_TRUE(ScopeCoversNode(*trust_.root(), "gw"));
}

TEST_F(TrustTest, ScopeCoversComponent) {
  v1::Scope any;
  EXPECT_TRUE(ScopeCoversComponent(any, "fw-main"));
  v1::Scope some;
  some.add_components("fw-main");
  some.add_components("fw-radio");
  EXPECT_TRUE(ScopeCoversComponent(some, "fw-main"));
  EXPECT_TRUE(ScopeCoversComponent(some, "fw-radio"));
  EXPECT_FALSE(ScopeCoversComponent(some, "fw-boot"));
  EXPECT_FALSE(ScopeCoversComponent(some, "fw-mai"));
}

TEST_F(TrustTest, IssueCertValidatesItsInput) {
  PrivateKey node_key = *PrivateKey::Generate();
  v1::CertBody good;
  good.set_node_id("gw");
  good.set_role(v1::ROLE_INTERMEDIATE);
  good.set_public_key(node_key.public_key().raw());
  good.set_issuer("root");
  good.set_not_before_ms(0);
  good.set_not_after_ms(4'000'000'000'000);
  good.mutable_scope()->add_nodes("dev-*");
  auto cert = IssueCert(pki_.root_key(), good);
  ASSERT_OK(cert);
  EXPECT_EQ(cert->alg(), v1::ED25519);
  EXPECT_OK(trust_.VerifyCert(*cert));

  auto refused = [&](auto mutate) {
    v1::CertBody b = good;
    mutate(b);
    return !IssueCert(pki_.root_key(), b).ok();
  };
  EXPECT_TRUE(refused([](v1::CertBody& b) { b.set_node_id(""); }));
  EXPECT_TRUE(refused([](v1::CertBody& b) { b.set_node_id("a/b"); }));
  EXPECT_TRUE(refused([](v1::CertBody& b) { b.set_node_id("_all"); }));
  EXPECT_TRUE(refused([](v1::CertBody& b) { b.set_issuer(""); }));
  EXPECT_TRUE(refused([](v1::CertBody& b) { b.set_role(v1::ROLE_UNSPECIFIED); }));
  EXPECT_TRUE(refused([](v1::CertBody& b) { b.set_role(v1::ROLE_ROOT); }));
  EXPECT_TRUE(refused([](v1::CertBody& b) { b.set_not_after_ms(b.not_before_ms()); }));
  EXPECT_TRUE(refused([](v1::CertBody& b) { b.mutable_scope()->add_nodes("dev/#"); }));
  EXPECT_TRUE(refused([](v1::CertBody& b) { b.mutable_scope()->add_nodes("*x"); }));
  EXPECT_TRUE(refused([](v1::CertBody& b) { b.mutable_scope()->add_components("fw main"); }));
}

// --- manifests ----------------------------------------------------------------------------

class ManifestTest : public TrustTest {
 protected:
  ManifestTest()
      : author_(pki_.Issue("author-1", v1::ROLE_AUTHOR, {}, {"fw-main"})),
        image_(TestPki::MakeImage(5000, 1)),
        manifest_(TestPki::ManifestFor(image_, "fw-main", "2.0.0", 2, {"board-a"}, "author-1")) {}

  TestNode author_;
  std::string image_;
  v1::Manifest manifest_;
};

TEST_F(ManifestTest, VerifiesAValidManifest) {
  v1::SignedManifest sm = TestPki::Sign(author_, manifest_);
  auto m = VerifyManifest(trust_, sm);
  ASSERT_OK(m);
  EXPECT_EQ(m->component(), "fw-main");
  EXPECT_EQ(m->version(), "2.0.0");
  EXPECT_EQ(m->sequence_number(), 2u);
  EXPECT_EQ(m->sha256(), Sha256(image_));
}

// BuildManifest is the one place a manifest is put together (trackerctl author sign, the tests'
// TestPki): every field of the spec lands in its field, the digest, size and chunk table come from
// the image.
TEST_F(ManifestTest, BuildManifestFillsEveryFieldAndSignsAndVerifies) {
  ManifestSpec spec;
  spec.component = "fw-main";
  spec.version = "3.1.0-rc1";
  spec.sequence_number = 31;
  spec.hardware_classes = {"board-b", "board-a"};
  spec.author_id = "author-1";
  spec.created_at_ms = 1'234'567;
  spec.description = "fixes the radio";
  v1::Manifest m = BuildManifest(spec, DigestImage(image_, 2048));

  v1::Manifest expected;
  expected.set_component("fw-main");
  expected.set_version("3.1.0-rc1");
  expected.set_sequence_number(31);
  expected.add_hardware_classes("board-b");  // order kept
  expected.add_hardware_classes("board-a");
  expected.set_size(5000);
  expected.set_sha256(Sha256(image_));
  expected.set_uri("x1368:chunks");  // the chunk service unless told otherwise
  expected.set_author_id("author-1");
  expected.set_created_at_ms(1'234'567);
  expected.set_description("fixes the radio");
  expected.set_chunk_size(2048);
  // 5000 bytes: chunks of 2048, 2048 and 904 bytes.
  expected.set_chunk_table_sha256(Sha256(Sha256(image_.substr(0, 2048)) +
                                         Sha256(image_.substr(2048, 2048)) +
                                         Sha256(image_.substr(4096))));
  EXPECT_EQ(m.SerializeAsString(), expected.SerializeAsString()) << m.DebugString();

  auto sm = SignManifest(author_.key, author_.cert, m);
  ASSERT_OK(sm);
  auto verified = VerifyManifest(trust_, *sm);
  ASSERT_OK(verified);
  EXPECT_EQ(verified->SerializeAsString(), expected.SerializeAsString());

  spec.uri = "https://fw.example/fw-main-3.1.0";
  EXPECT_EQ(BuildManifest(spec, DigestImage(image_)).uri(), "https://fw.example/fw-main-3.1.0");
  // Built as told, invalid or not: signing is where a manifest is checked.
  spec.sequence_number = 0;
  EXPECT_EQ(
      BuildManifest(spec, ImageDigests{.sha256 = "short", .size = 0, .chunk_size = 0, .table = ""})
          .sha256(),
      "short");
  EXPECT_THAT(SignManifest(author_.key, author_.cert, BuildManifest(spec, DigestImage(image_))),
              HasReason(v1::MANIFEST_MALFORMED));
}

TEST_F(ManifestTest, AuthorWithoutComponentListMaySignAny) {
  TestNode any_author = pki_.Issue("author-2", v1::ROLE_AUTHOR);
  v1::Manifest m = manifest_;
  m.set_author_id("author-2");
  EXPECT_OK(VerifyManifest(trust_, TestPki::Sign(any_author, m)));
}

TEST_F(ManifestTest, TamperedManifestBytesAreBadSignature) {
  v1::SignedManifest sm = TestPki::Sign(author_, manifest_);
  // Change a field and re-serialize: still a valid manifest, but not what was signed.
  v1::Manifest changed = manifest_;
  changed.set_sequence_number(99);
  changed.SerializeToString(sm.mutable_manifest());
  EXPECT_THAT(VerifyManifest(trust_, sm), HasReason(v1::MANIFEST_BAD_SIGNATURE));

  v1::SignedManifest bad_sig = TestPki::Sign(author_, manifest_);
  std::string sig = bad_sig.signature();
  sig[0] ^= 0x01;
  bad_sig.set_signature(sig);
  EXPECT_THAT(VerifyManifest(trust_, bad_sig), HasReason(v1::MANIFEST_BAD_SIGNATURE));
}

TEST_F(ManifestTest, ManifestSignedAsAnotherKindIsBadSignature) {
  v1::SignedManifest sm = TestPki::Sign(author_, manifest_);
  sm.set_signature(*author_.key.Sign(SignedKind::kEnvelopeBody, sm.manifest()));
  EXPECT_THAT(VerifyManifest(trust_, sm), HasReason(v1::MANIFEST_BAD_SIGNATURE));
}

TEST_F(ManifestTest, AuthorCertificateFromAnotherRootIsNotTrusted) {
  TempDir other_dir;
  TestPki other(other_dir.path());
  TestNode foreign = other.Issue("author-1", v1::ROLE_AUTHOR, {}, {"fw-main"});
  EXPECT_THAT(VerifyManifest(trust_, TestPki::Sign(foreign, manifest_)),
              HasReason(v1::AUTHOR_NOT_TRUSTED));
}

TEST_F(ManifestTest, SignerWithClientRoleIsNotTrusted) {
  TestNode client = pki_.Issue("author-1", v1::ROLE_CLIENT, {}, {"fw-main"});
  EXPECT_THAT(VerifyManifest(trust_, TestPki::Sign(client, manifest_)),
              HasReason(v1::AUTHOR_NOT_TRUSTED));
  TestNode tracker = pki_.Issue("author-1", v1::ROLE_INTERMEDIATE, {}, {"fw-main"});
  EXPECT_THAT(VerifyManifest(trust_, TestPki::Sign(tracker, manifest_)),
              HasReason(v1::AUTHOR_NOT_TRUSTED));
}

TEST_F(ManifestTest, RootIsNotAnAuthor) {
  // Even the root's own key may not sign releases (authors are separate from trackers).
  v1::Manifest m = manifest_;
  m.set_author_id("root");
  auto sm = SignManifest(pki_.root_key(), author_.cert, m);
  ASSERT_OK(sm);
  EXPECT_THAT(VerifyManifest(trust_, *sm), HasReason(v1::AUTHOR_NOT_TRUSTED));
}

TEST_F(ManifestTest, AuthorScopeLackingTheComponentIsNotTrusted) {
  TestNode radio = pki_.Issue("author-1", v1::ROLE_AUTHOR, {}, {"fw-radio"});
  EXPECT_THAT(VerifyManifest(trust_, TestPki::Sign(radio, manifest_)),
              HasReason(v1::AUTHOR_NOT_TRUSTED));
}

TEST_F(ManifestTest, MissingOrMismatchedAuthorCertificate) {
  v1::SignedManifest sm = TestPki::Sign(author_, manifest_);
  sm.clear_author_cert();
  EXPECT_THAT(VerifyManifest(trust_, sm), HasReason(v1::AUTHOR_NOT_TRUSTED));

  // Another author's valid certificate attached to author-1's manifest.
  TestNode other = pki_.Issue("author-2", v1::ROLE_AUTHOR, {}, {"fw-main"});
  v1::SignedManifest swapped = TestPki::Sign(author_, manifest_);
  *swapped.mutable_author_cert() = other.cert;
  EXPECT_THAT(VerifyManifest(trust_, swapped), HasReason(v1::AUTHOR_NOT_TRUSTED));

  // The outer author id disagrees with the manifest's.
  v1::SignedManifest relabelled = TestPki::Sign(author_, manifest_);
  relabelled.set_author_id("author-2");
  EXPECT_THAT(VerifyManifest(trust_, relabelled), HasReason(v1::MANIFEST_MALFORMED));
}

TEST_F(ManifestTest, ExpiredAuthorCertificateIsNotTrusted) {
  const int64_t now = clock_.NowMs();
  TestNode brief = pki_.Issue("author-1", v1::ROLE_AUTHOR, {}, {"fw-main"}, 0, now + 10);
  v1::SignedManifest sm = TestPki::Sign(brief, manifest_);
  EXPECT_OK(VerifyManifest(trust_, sm));
  clock_.Advance(11);
  EXPECT_THAT(VerifyManifest(trust_, sm), HasReason(v1::AUTHOR_NOT_TRUSTED));
}

// A manifest with bad fields, signed by hand (SignManifest refuses to sign it).
v1::SignedManifest SignRawManifest(const TestNode& author, const v1::Manifest& m) {
  v1::SignedManifest sm;
  m.SerializeToString(sm.mutable_manifest());
  sm.set_author_id(m.author_id());
  sm.set_alg(v1::ED25519);
  sm.set_signature(*author.key.Sign(SignedKind::kManifest, sm.manifest()));
  *sm.mutable_author_cert() = author.cert;
  return sm;
}

TEST_F(ManifestTest, MalformedManifests) {
  EXPECT_OK(VerifyManifest(trust_, SignRawManifest(author_, manifest_)));  // the control

  v1::Manifest zero_seq = manifest_;
  zero_seq.set_sequence_number(0);
  EXPECT_THAT(VerifyManifest(trust_, SignRawManifest(author_, zero_seq)),
              HasReason(v1::MANIFEST_MALFORMED));
  EXPECT_THAT(SignManifest(author_.key, author_.cert, zero_seq), HasReason(v1::MANIFEST_MALFORMED));

  v1::Manifest short_digest = manifest_;
  short_digest.set_sha256(std::string(31, 'd'));
  EXPECT_THAT(VerifyManifest(trust_, SignRawManifest(author_, short_digest)),
              HasReason(v1::MANIFEST_MALFORMED));

  v1::Manifest no_hw = manifest_;
  no_hw.clear_hardware_classes();
  EXPECT_THAT(VerifyManifest(trust_, SignRawManifest(author_, no_hw)),
              HasReason(v1::MANIFEST_MALFORMED));

  v1::Manifest bad_hw = manifest_;
  bad_hw.add_hardware_classes("board/+");
  EXPECT_THAT(VerifyManifest(trust_, SignRawManifest(author_, bad_hw)),
              HasReason(v1::MANIFEST_MALFORMED));

  v1::Manifest no_size = manifest_;
  no_size.set_size(0);
  EXPECT_THAT(VerifyManifest(trust_, SignRawManifest(author_, no_size)),
              HasReason(v1::MANIFEST_MALFORMED));

  v1::Manifest no_version = manifest_;
  no_version.set_version("");
  EXPECT_THAT(VerifyManifest(trust_, SignRawManifest(author_, no_version)),
              HasReason(v1::MANIFEST_MALFORMED));

  v1::Manifest no_uri = manifest_;
  no_uri.set_uri("");
  EXPECT_THAT(VerifyManifest(trust_, SignRawManifest(author_, no_uri)),
              HasReason(v1::MANIFEST_MALFORMED));

  v1::SignedManifest garbage = SignRawManifest(author_, manifest_);
  garbage.set_manifest(
      std::string("\x0a\x05"
                  "ab",
                  4));
  EXPECT_THAT(VerifyManifest(trust_, garbage), HasReason(v1::MANIFEST_MALFORMED));
}

// Issue #14: a signed version "2.5.0\nts=2099 level=critical node=root event=FORGED" was accepted
// and wrote a forged line into root's log. Values follow the grammar of values.h: refused at
// signing and by every receiver (VerifyManifest), with the typed reason MANIFEST_MALFORMED.
TEST_F(ManifestTest, ValuesOutsideTheGrammarAreRefusedAtSigningAndByReceivers) {
  const std::string forged = "2.5.0\nts=2099 level=critical node=root event=FORGED";
  auto refused = [&](const v1::Manifest& m) -> ::testing::AssertionResult {
    auto signed_ok = SignManifest(author_.key, author_.cert, m);
    if (signed_ok.ok()) return ::testing::AssertionFailure() << "signed " << m.DebugString();
    if (ReasonOf(signed_ok.status()) != v1::MANIFEST_MALFORMED) {
      return ::testing::AssertionFailure() << "signing: " << signed_ok.status();
    }
    auto verified = VerifyManifest(trust_, SignRawManifest(author_, m));
    if (verified.ok() || ReasonOf(verified.status()) != v1::MANIFEST_MALFORMED) {
      return ::testing::AssertionFailure() << "receiver: " << verified.status();
    }
    // The message quotes the value escaped: it never carries a raw newline.
    if (absl::StrContains(verified.status().message(), "\n")) {
      return ::testing::AssertionFailure() << "raw newline in: " << verified.status().message();
    }
    return ::testing::AssertionSuccess();
  };
  for (const std::string& version :
       {forged, std::string("v2.0.0"), std::string("2.0"), std::string("02.0.0"),
        std::string("2.0.0-"), std::string("2.0.0-01"), std::string("2.0.0+"),
        std::string("2.0.0 "), std::string(65, '1')}) {
    v1::Manifest m = manifest_;
    m.set_version(version);
    EXPECT_TRUE(refused(m)) << version;
  }
  for (const std::string& version :
       {std::string("2.0.0"), std::string("1.4.0-rc.1"), std::string("3.0.0+build.7"),
        std::string("10.20.30"), std::string("1.0.0-alpha-a.b-c+001")}) {
    v1::Manifest m = manifest_;
    m.set_version(version);
    EXPECT_OK(VerifyManifest(trust_, SignRawManifest(author_, m))) << version;
  }
  v1::Manifest component = manifest_;
  component.set_component("fw\nmain");
  EXPECT_TRUE(refused(component));
  v1::Manifest hw = manifest_;
  hw.set_hardware_classes(0, "board a");
  EXPECT_TRUE(refused(hw));
  v1::Manifest description = manifest_;
  description.set_description("fine\nlevel=critical event=FORGED");
  EXPECT_TRUE(refused(description));
  description.set_description(std::string(1025, 'x'));
  EXPECT_TRUE(refused(description));
  description.set_description("Funkmodul repariert \u2013 ok");  // UTF-8 text passes
  EXPECT_OK(VerifyManifest(trust_, SignRawManifest(author_, description)));
  v1::Manifest uri = manifest_;
  uri.set_uri("https://fw.example/\r\nx");
  EXPECT_TRUE(refused(uri));
}

}  // namespace
}  // namespace x1368::core
