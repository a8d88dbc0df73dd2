// Every rule of EnvelopeOpener::Open (docs/architecture.md §6), one test per rejection reason, with
// real keys and certificates. Each test builds a message that is valid except for the one thing it
// checks, so it fails if that check is removed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>

#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/clock.h"
#include "x1368/core/envelope.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/sequence.h"
#include "x1368/core/trust.h"

namespace x1368::core {
namespace {

using ::x1368::testing::HasReason;
using ::x1368::testing::TempDir;
using ::x1368::testing::TestNode;
using ::x1368::testing::TestPki;

constexpr int64_t kTtlMs = 60'000;

v1::Body GoBody() {
  v1::Body body;
  body.mutable_go()->set_campaign_id("campaign-1");
  return body;
}

v1::Body StatusBody() {
  v1::Body body;
  body.mutable_status()->set_device_id("dev-1");
  return body;
}

OpenContext FromParent(absl::string_view parent) {
  return OpenContext{Origin::kFromParent, parent, nullptr};
}
OpenContext FromChild(absl::string_view child) {
  return OpenContext{Origin::kFromChild, child, nullptr};
}

std::string Serialize(const v1::Envelope& env) { return env.SerializeAsString(); }

v1::Envelope ParseEnvelope(const std::string& bytes) {
  v1::Envelope env;
  EXPECT_TRUE(env.ParseFromString(bytes));
  return env;
}

// An envelope with exactly these body bytes, signed by `key`.
std::string SignRaw(const std::string& signer_id, const PrivateKey& key,
                    const v1::DelegationCert* cert, const std::string& body_bytes) {
  v1::Envelope env;
  env.set_signer_id(signer_id);
  env.set_alg(v1::ED25519);
  env.set_body(body_bytes);
  auto sig = key.Sign(SignedKind::kEnvelopeBody, body_bytes);
  EXPECT_TRUE(sig.ok()) << sig.status();
  env.set_signature(*sig);
  if (cert != nullptr) *env.mutable_signer_cert() = *cert;
  return Serialize(env);
}

class EnvelopeTest : public ::testing::Test {
 protected:
  EnvelopeTest()
      : pki_(dir_.path()),
        trust_(pki_.root_id(), pki_.root_key().public_key(), &clock_),
        gw_(pki_.Issue("gw", v1::ROLE_INTERMEDIATE, {"dev-*"})),
        gw2_(pki_.Issue("gw2", v1::ROLE_INTERMEDIATE, {"dev-*"})),
        dev_(pki_.Issue("dev-1", v1::ROLE_CLIENT)),
        outsider_(pki_.Issue("x-9", v1::ROLE_CLIENT)),
        replay_(&recv_store_) {
    send_seq_ = *SeqCounter::Open(&send_store_, "own_seq");
    dev_self_ = *trust_.VerifyCert(dev_.cert);
    gw_self_ = *trust_.VerifyCert(gw_.cert);
    dev_opener_ = MakeOpener(dev_self_, EnvelopeLimits{});
    gw_opener_ = MakeOpener(gw_self_, EnvelopeLimits{});
  }

  std::unique_ptr<EnvelopeOpener> MakeOpener(std::shared_ptr<const Identity> self,
                                             EnvelopeLimits limits) {
    return std::make_unique<EnvelopeOpener>(std::move(self), &trust_, &replay_, &clock_, limits);
  }

  // Seals `body` from `from` (with its certificate) to `to`.
  std::string Seal(const TestNode& from, absl::string_view to, v1::Body body, uint64_t seq,
                   int64_t ttl_ms = kTtlMs, const Clock* clock = nullptr) {
    EnvelopeSealer sealer(from.id, from.key, from.cert, send_seq_.get(),
                          clock != nullptr ? clock : &clock_);
    auto sealed = sealer.SealWithSeq(to, std::move(body), ttl_ms, seq);
    EXPECT_TRUE(sealed.ok()) << sealed.status();
    return sealed.ok() ? *sealed : std::string();
  }

  std::string SealAsRoot(absl::string_view to, v1::Body body, uint64_t seq) {
    EnvelopeSealer sealer(pki_.root_id(), pki_.root_key(), std::nullopt, send_seq_.get(), &clock_);
    auto sealed = sealer.SealWithSeq(to, std::move(body), kTtlMs, seq);
    EXPECT_TRUE(sealed.ok()) << sealed.status();
    return sealed.ok() ? *sealed : std::string();
  }

  // A body from gw to dev-1 with valid times, ready to be tampered with and signed by hand.
  v1::Body GwBody(uint64_t seq) {
    v1::Body body = GoBody();
    body.set_sender("gw");
    body.set_recipient("dev-1");
    body.set_seq(seq);
    body.set_issued_at_ms(clock_.NowMs());
    body.set_expires_at_ms(clock_.NowMs() + kTtlMs);
    return body;
  }

  TempDir dir_;
  FakeClock clock_;
  TestPki pki_;
  TrustStore trust_;
  TestNode gw_;        // intermediate covering dev-*: dev-1's parent
  TestNode gw2_;       // another intermediate covering dev-*, not dev-1's parent
  TestNode dev_;       // the client under test
  TestNode outsider_;  // a client outside gw's scope
  MemKvStore send_store_;
  std::unique_ptr<SeqCounter> send_seq_;
  MemKvStore recv_store_;
  ReplayGuard replay_;
  std::shared_ptr<const Identity> dev_self_;
  std::shared_ptr<const Identity> gw_self_;
  std::unique_ptr<EnvelopeOpener> dev_opener_;
  std::unique_ptr<EnvelopeOpener> gw_opener_;
};

// --- acceptance ---------------------------------------------------------------------------

TEST_F(EnvelopeTest, AcceptsGoFromParent) {
  std::string bytes = Seal(gw_, "dev-1", GoBody(), 1);
  auto opened = dev_opener_->Open(bytes, FromParent("gw"));
  ASSERT_OK(opened);
  EXPECT_EQ(opened->body.sender(), "gw");
  EXPECT_EQ(opened->body.recipient(), "dev-1");
  EXPECT_EQ(opened->body.seq(), 1u);
  EXPECT_EQ(opened->body.go().campaign_id(), "campaign-1");
  EXPECT_EQ(opened->signer->node_id, "gw");
  EXPECT_EQ(opened->body_digest, Sha256(ParseEnvelope(bytes).body()));
}

TEST_F(EnvelopeTest, AcceptsRootSignedFromParentAndBroadcast) {
  EXPECT_OK(dev_opener_->Open(SealAsRoot("dev-1", GoBody(), 1), FromParent("gw")));
  EXPECT_OK(dev_opener_->Open(Seal(gw_, "_all", GoBody(), 1), FromParent("gw")));
}

TEST_F(EnvelopeTest, AcceptsStatusFromChild) {
  auto opened = gw_opener_->Open(Seal(dev_, "gw", StatusBody(), 1), FromChild("dev-1"));
  ASSERT_OK(opened);
  EXPECT_EQ(opened->signer->role, v1::ROLE_CLIENT);
}

TEST_F(EnvelopeTest, RelayedReportMustComeFromTheRelaysSubtree) {
  auto root_opener = MakeOpener(trust_.root(), EnvelopeLimits{});
  OpenContext relayed{Origin::kRelayed, "", gw_self_.get()};
  EXPECT_OK(root_opener->Open(Seal(dev_, "gw", StatusBody(), 1), relayed));
  EXPECT_THAT(root_opener->Open(Seal(outsider_, "gw", StatusBody(), 1), relayed),
              HasReason(v1::OUT_OF_SCOPE));
  OpenContext no_via{Origin::kRelayed, "", nullptr};
  EXPECT_THAT(root_opener->Open(Seal(dev_, "gw", StatusBody(), 2), no_via),
              HasReason(v1::OUT_OF_SCOPE));
  // Addressed to someone outside the relay's subtree.
  EXPECT_THAT(root_opener->Open(Seal(dev_, "gw2", StatusBody(), 3), relayed),
              HasReason(v1::WRONG_RECIPIENT));
}

// --- OVERSIZE -----------------------------------------------------------------------------

TEST_F(EnvelopeTest, OversizeIsRejectedBeforeParsing) {
  EnvelopeLimits limits;
  limits.max_message_bytes = 1024;
  auto opener = MakeOpener(dev_self_, limits);
  // Garbage over the limit is OVERSIZE, not MALFORMED: the size is checked first.
  EXPECT_THAT(opener->Open(std::string(1025, '\xff'), FromParent("gw")), HasReason(v1::OVERSIZE));

  v1::Body big = GoBody();
  big.mutable_go()->set_campaign_id(std::string(1024, 'c'));
  std::string bytes = Seal(gw_, "dev-1", big, 1);
  ASSERT_GT(bytes.size(), 1024u);
  EXPECT_THAT(opener->Open(bytes, FromParent("gw")), HasReason(v1::OVERSIZE));
  // The same message is fine under the default limit, and did not move the window.
  EXPECT_OK(dev_opener_->Open(bytes, FromParent("gw")));
}

TEST_F(EnvelopeTest, MessageExactlyAtTheLimitIsAccepted) {
  std::string bytes = Seal(gw_, "dev-1", GoBody(), 1);
  EnvelopeLimits limits;
  limits.max_message_bytes = bytes.size();
  EXPECT_OK(MakeOpener(dev_self_, limits)->Open(bytes, FromParent("gw")));
  limits.max_message_bytes = bytes.size() - 1;
  EXPECT_THAT(MakeOpener(dev_self_, limits)->Open(bytes, FromParent("gw")),
              HasReason(v1::OVERSIZE));
}

// --- MALFORMED ----------------------------------------------------------------------------

TEST_F(EnvelopeTest, GarbageIsMalformed) {
  EXPECT_THAT(dev_opener_->Open(std::string("\x0a\x05"
                                            "ab",
                                            4),
                                FromParent("gw")),
              HasReason(v1::MALFORMED));
  EXPECT_THAT(dev_opener_->Open(std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11),
                                FromParent("gw")),
              HasReason(v1::MALFORMED));
}

TEST_F(EnvelopeTest, SignedBodyThatDoesNotParseIsMalformed) {
  // Length-delimited field 1 claiming 5 bytes with only 2 present: not a Body. Signed properly,
  // so the rejection comes from parsing the body, not from the signature check.
  const std::string garbage(
      "\x0a\x05"
      "ab",
      4);
  v1::Body probe;
  ASSERT_FALSE(probe.ParseFromString(garbage));
  EXPECT_THAT(dev_opener_->Open(SignRaw("gw", gw_.key, &gw_.cert, garbage), FromParent("gw")),
              HasReason(v1::MALFORMED));
  EXPECT_THAT(dev_opener_->Open(SignRaw(pki_.root_id(), pki_.root_key(), nullptr, garbage),
                                FromParent("gw")),
              HasReason(v1::MALFORMED));
}

// --- UNSUPPORTED_ALG ----------------------------------------------------------------------

TEST_F(EnvelopeTest, UnsupportedAlgorithm) {
  v1::Envelope env = ParseEnvelope(Seal(gw_, "dev-1", GoBody(), 1));
  env.set_alg(v1::SIGNATURE_ALGORITHM_UNSPECIFIED);
  EXPECT_THAT(dev_opener_->Open(Serialize(env), FromParent("gw")), HasReason(v1::UNSUPPORTED_ALG));
  env.set_alg(static_cast<v1::SignatureAlgorithm>(7));  // a future algorithm
  EXPECT_THAT(dev_opener_->Open(Serialize(env), FromParent("gw")), HasReason(v1::UNSUPPORTED_ALG));
}

// --- UNKNOWN_SIGNER -----------------------------------------------------------------------

TEST_F(EnvelopeTest, NonRootSignerWithoutCertificateIsUnknown) {
  v1::Envelope env = ParseEnvelope(Seal(gw_, "dev-1", GoBody(), 1));
  env.clear_signer_cert();
  EXPECT_THAT(dev_opener_->Open(Serialize(env), FromParent("gw")), HasReason(v1::UNKNOWN_SIGNER));
}

TEST_F(EnvelopeTest, InvalidSignerIdIsUnknown) {
  v1::Envelope env = ParseEnvelope(Seal(gw_, "dev-1", GoBody(), 1));
  env.set_signer_id("gw/+");
  EXPECT_THAT(dev_opener_->Open(Serialize(env), FromParent("gw")), HasReason(v1::UNKNOWN_SIGNER));
  env.set_signer_id("");
  EXPECT_THAT(dev_opener_->Open(Serialize(env), FromParent("gw")), HasReason(v1::UNKNOWN_SIGNER));
}

// --- BAD_CERT -----------------------------------------------------------------------------

TEST_F(EnvelopeTest, CertificateFromAnotherRootIsBad) {
  TempDir other_dir;
  TestPki other(other_dir.path());  // same root id "root", different key
  TestNode fake_gw = other.Issue("gw", v1::ROLE_INTERMEDIATE, {"dev-*"});
  EXPECT_THAT(dev_opener_->Open(Seal(fake_gw, "dev-1", GoBody(), 1), FromParent("gw")),
              HasReason(v1::BAD_CERT));
}

TEST_F(EnvelopeTest, ExpiredCertificateIsBad) {
  const int64_t now = clock_.NowMs();
  TestNode short_gw =
      pki_.Issue("gw", v1::ROLE_INTERMEDIATE, {"dev-*"}, {}, now - 1000, now + 1000);
  // Valid now.
  EXPECT_OK(dev_opener_->Open(Seal(short_gw, "dev-1", GoBody(), 1), FromParent("gw")));
  // The message itself is still valid, but the certificate expired meanwhile.
  std::string bytes = Seal(short_gw, "dev-1", GoBody(), 2);
  clock_.Advance(2000);
  EXPECT_THAT(dev_opener_->Open(bytes, FromParent("gw")), HasReason(v1::BAD_CERT));
}

TEST_F(EnvelopeTest, NotYetValidCertificateIsBad) {
  const int64_t now = clock_.NowMs();
  TestNode future_gw =
      pki_.Issue("gw", v1::ROLE_INTERMEDIATE, {"dev-*"}, {}, now + 10'000, now + 100'000);
  EXPECT_THAT(dev_opener_->Open(Seal(future_gw, "dev-1", GoBody(), 1), FromParent("gw")),
              HasReason(v1::BAD_CERT));
}

TEST_F(EnvelopeTest, CertificateIssuedToAnotherIdIsBad) {
  // gw signs with its own key but presents gw2's certificate.
  TestNode mixed{"gw", gw_.key, gw2_.cert, "", ""};
  EXPECT_THAT(dev_opener_->Open(Seal(mixed, "dev-1", GoBody(), 1), FromParent("gw")),
              HasReason(v1::BAD_CERT));
  // gw2 signs with its own key and certificate but claims to be gw in the envelope.
  v1::Envelope env = ParseEnvelope(Seal(gw2_, "dev-1", GoBody(), 1));
  env.set_signer_id("gw");
  EXPECT_THAT(dev_opener_->Open(Serialize(env), FromParent("gw")), HasReason(v1::BAD_CERT));
}

TEST_F(EnvelopeTest, TamperedCertificateIsBad) {
  v1::Envelope env = ParseEnvelope(Seal(gw_, "dev-1", GoBody(), 1));
  std::string cert_body = env.signer_cert().body();
  cert_body[cert_body.size() / 2] ^= 0x01;
  env.mutable_signer_cert()->set_body(cert_body);
  EXPECT_THAT(dev_opener_->Open(Serialize(env), FromParent("gw")), HasReason(v1::BAD_CERT));
}

// --- BAD_SIGNATURE ------------------------------------------------------------------------

TEST_F(EnvelopeTest, FlippedSignatureByteIsBadSignature) {
  v1::Envelope env = ParseEnvelope(Seal(gw_, "dev-1", GoBody(), 1));
  std::string sig = env.signature();
  sig[0] ^= 0x80;
  env.set_signature(sig);
  EXPECT_THAT(dev_opener_->Open(Serialize(env), FromParent("gw")), HasReason(v1::BAD_SIGNATURE));
}

TEST_F(EnvelopeTest, FlippedBodyByteIsBadSignature) {
  v1::Envelope env = ParseEnvelope(Seal(gw_, "dev-1", GoBody(), 1));
  std::string body = env.body();
  body.back() ^= 0x01;
  env.set_body(body);
  EXPECT_THAT(dev_opener_->Open(Serialize(env), FromParent("gw")), HasReason(v1::BAD_SIGNATURE));
}

TEST_F(EnvelopeTest, SignatureByAnotherKeyIsBadSignature) {
  // gw's valid certificate, but the body is signed by gw2's key.
  std::string bytes = SignRaw("gw", gw2_.key, &gw_.cert, GwBody(1).SerializeAsString());
  EXPECT_THAT(dev_opener_->Open(bytes, FromParent("gw")), HasReason(v1::BAD_SIGNATURE));
  // The root's id with a non-root key: the certificate is ignored for the root.
  v1::Body body = GwBody(1);
  body.set_sender(pki_.root_id());
  std::string as_root = SignRaw(pki_.root_id(), gw_.key, &gw_.cert, body.SerializeAsString());
  EXPECT_THAT(dev_opener_->Open(as_root, FromParent("gw")), HasReason(v1::BAD_SIGNATURE));
}

TEST_F(EnvelopeTest, SignatureOfAnotherKindIsBadSignature) {
  // Signed with gw's key, but as a manifest: domain separation must refuse it.
  std::string body = GwBody(1).SerializeAsString();
  v1::Envelope env = ParseEnvelope(SignRaw("gw", gw_.key, &gw_.cert, body));
  env.set_signature(*gw_.key.Sign(SignedKind::kManifest, body));
  EXPECT_THAT(dev_opener_->Open(Serialize(env), FromParent("gw")), HasReason(v1::BAD_SIGNATURE));
}

// --- SENDER_MISMATCH ----------------------------------------------------------------------

TEST_F(EnvelopeTest, BodySenderMustBeTheSigner) {
  v1::Body body = GwBody(1);
  body.set_sender("gw2");
  EXPECT_THAT(dev_opener_->Open(SignRaw("gw", gw_.key, &gw_.cert, body.SerializeAsString()),
                                FromParent("gw")),
              HasReason(v1::SENDER_MISMATCH));
  // The control: the same body with the right sender passes.
  EXPECT_OK(dev_opener_->Open(SignRaw("gw", gw_.key, &gw_.cert, GwBody(1).SerializeAsString()),
                              FromParent("gw")));
}

TEST_F(EnvelopeTest, ChildSignerMustBeTheChildOfTheTopic) {
  // dev-1 signs, but the message arrived on dev-2's topic.
  EXPECT_THAT(gw_opener_->Open(Seal(dev_, "gw", StatusBody(), 1), FromChild("dev-2")),
              HasReason(v1::SENDER_MISMATCH));
}

// --- UNKNOWN_TYPE -------------------------------------------------------------------------

TEST_F(EnvelopeTest, BodyWithoutMessageIsUnknownType) {
  EXPECT_THAT(dev_opener_->Open(Seal(gw_, "dev-1", v1::Body(), 1), FromParent("gw")),
              HasReason(v1::UNKNOWN_TYPE));
}

// --- EXPIRED / ISSUED_IN_FUTURE -----------------------------------------------------------

TEST_F(EnvelopeTest, ExpiredMessageIsRejected) {
  std::string early = Seal(gw_, "dev-1", GoBody(), 1, /*ttl_ms=*/1000);
  std::string late = Seal(gw_, "dev-1", GoBody(), 2, /*ttl_ms=*/1000);
  clock_.Advance(999);
  EXPECT_OK(dev_opener_->Open(early, FromParent("gw")));
  clock_.Advance(1);  // now == expires_at
  EXPECT_THAT(dev_opener_->Open(late, FromParent("gw")), HasReason(v1::EXPIRED));
}

TEST_F(EnvelopeTest, IssuedBeyondClockSkewIsRejected) {
  const int64_t skew = EnvelopeLimits{}.max_clock_skew_ms;
  FakeClock sender_clock(clock_.NowMs() + skew + 1);
  std::string bytes = Seal(gw_, "dev-1", GoBody(), 1, kTtlMs, &sender_clock);
  EXPECT_THAT(dev_opener_->Open(bytes, FromParent("gw")), HasReason(v1::ISSUED_IN_FUTURE));
}

TEST_F(EnvelopeTest, IssuedWithinClockSkewIsAccepted) {
  const int64_t skew = EnvelopeLimits{}.max_clock_skew_ms;
  FakeClock sender_clock(clock_.NowMs() + skew);
  EXPECT_OK(
      dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 1, kTtlMs, &sender_clock), FromParent("gw")));
  sender_clock.Set(clock_.NowMs() + 1000);
  EXPECT_OK(
      dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 2, kTtlMs, &sender_clock), FromParent("gw")));
}

TEST_F(EnvelopeTest, ZeroSkewRejectsAnyFutureIssue) {
  EnvelopeLimits limits;
  limits.max_clock_skew_ms = 0;
  auto opener = MakeOpener(dev_self_, limits);
  FakeClock sender_clock(clock_.NowMs() + 1);
  EXPECT_THAT(
      opener->Open(Seal(gw_, "dev-1", GoBody(), 1, kTtlMs, &sender_clock), FromParent("gw")),
      HasReason(v1::ISSUED_IN_FUTURE));
  EXPECT_OK(opener->Open(Seal(gw_, "dev-1", GoBody(), 2), FromParent("gw")));
}

// --- WRONG_RECIPIENT ----------------------------------------------------------------------

TEST_F(EnvelopeTest, MessageForAnotherNodeIsWrongRecipient) {
  EXPECT_THAT(dev_opener_->Open(Seal(gw_, "dev-2", GoBody(), 1), FromParent("gw")),
              HasReason(v1::WRONG_RECIPIENT));
  EXPECT_THAT(dev_opener_->Open(Seal(gw_, "", GoBody(), 2), FromParent("gw")),
              HasReason(v1::WRONG_RECIPIENT));
  // Up from a child: addressed to another parent.
  EXPECT_THAT(gw_opener_->Open(Seal(dev_, "gw2", StatusBody(), 1), FromChild("dev-1")),
              HasReason(v1::WRONG_RECIPIENT));
  // "_all" is for broadcasts downward only.
  EXPECT_THAT(gw_opener_->Open(Seal(dev_, "_all", StatusBody(), 2), FromChild("dev-1")),
              HasReason(v1::WRONG_RECIPIENT));
}

// --- OUT_OF_SCOPE -------------------------------------------------------------------------

TEST_F(EnvelopeTest, FromParentSignerThatIsNotMyParent) {
  // gw2's certificate covers dev-*, but dev-1's parent is gw.
  EXPECT_THAT(dev_opener_->Open(Seal(gw2_, "dev-1", GoBody(), 1), FromParent("gw")),
              HasReason(v1::OUT_OF_SCOPE));
}

TEST_F(EnvelopeTest, FromParentWhoseScopeDoesNotCoverMe) {
  TestNode narrow = pki_.Issue("gw3", v1::ROLE_INTERMEDIATE, {"other-*", "dev-10"});
  EXPECT_THAT(dev_opener_->Open(Seal(narrow, "dev-1", GoBody(), 1), FromParent("gw3")),
              HasReason(v1::OUT_OF_SCOPE));
}

TEST_F(EnvelopeTest, FromParentThatIsNotAnIntermediate) {
  // A client certificate with a scope covering dev-1 still may not command it.
  TestNode client = pki_.Issue("dev-0", v1::ROLE_CLIENT, {"dev-*"});
  EXPECT_THAT(dev_opener_->Open(Seal(client, "dev-1", GoBody(), 1), FromParent("dev-0")),
              HasReason(v1::OUT_OF_SCOPE));
  TestNode author = pki_.Issue("author-1", v1::ROLE_AUTHOR, {"dev-*"});
  EXPECT_THAT(dev_opener_->Open(Seal(author, "dev-1", GoBody(), 1), FromParent("author-1")),
              HasReason(v1::OUT_OF_SCOPE));
}

TEST_F(EnvelopeTest, FromChildOutsideMyScope) {
  EXPECT_THAT(gw_opener_->Open(Seal(outsider_, "gw", StatusBody(), 1), FromChild("x-9")),
              HasReason(v1::OUT_OF_SCOPE));
}

TEST_F(EnvelopeTest, FromChildThatIsAnAuthor) {
  TestNode author = pki_.Issue("dev-author", v1::ROLE_AUTHOR);
  EXPECT_THAT(gw_opener_->Open(Seal(author, "gw", StatusBody(), 1), FromChild("dev-author")),
              HasReason(v1::OUT_OF_SCOPE));
}

TEST_F(EnvelopeTest, EmbeddedDirectiveMustBeRootSigned) {
  OpenContext embedded{Origin::kEmbedded, "", nullptr};
  EXPECT_THAT(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 1), embedded),
              HasReason(v1::OUT_OF_SCOPE));
  std::string from_root = SealAsRoot("dev-1", GoBody(), 1);
  EXPECT_OK(dev_opener_->Open(from_root, embedded));
  // Its sequence number is not checked: the same directive again is still accepted...
  EXPECT_OK(dev_opener_->Open(from_root, embedded));
  EXPECT_FALSE(replay_.dirty());
  // ...and the recipient still is.
  EXPECT_THAT(dev_opener_->Open(SealAsRoot("dev-2", GoBody(), 2), embedded),
              HasReason(v1::WRONG_RECIPIENT));
}

// --- REPLAY / DUPLICATE -------------------------------------------------------------------

TEST_F(EnvelopeTest, SameSequenceTwiceIsDuplicate) {
  std::string bytes = Seal(gw_, "dev-1", GoBody(), 7);
  EXPECT_OK(dev_opener_->Open(bytes, FromParent("gw")));
  EXPECT_THAT(dev_opener_->Open(bytes, FromParent("gw")), HasReason(v1::DUPLICATE));
  // A different message that reuses the number is refused as well.
  EXPECT_THAT(dev_opener_->Open(Seal(gw_, "dev-1", StatusBody(), 7), FromParent("gw")),
              HasReason(v1::DUPLICATE));
}

TEST_F(EnvelopeTest, SequenceBelowTheWindowIsReplay) {
  EXPECT_OK(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 100), FromParent("gw")));
  // 100 - 64 = 36 is just outside the 64-wide window; 37 is the oldest number inside it.
  EXPECT_THAT(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 36), FromParent("gw")),
              HasReason(v1::REPLAY));
  EXPECT_THAT(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 1), FromParent("gw")),
              HasReason(v1::REPLAY));
  EXPECT_OK(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 37), FromParent("gw")));
}

TEST_F(EnvelopeTest, SequenceZeroIsReplay) {
  EXPECT_THAT(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 0), FromParent("gw")),
              HasReason(v1::REPLAY));
}

TEST_F(EnvelopeTest, OutOfOrderInsideTheWindowIsAccepted) {
  EXPECT_OK(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 10), FromParent("gw")));
  EXPECT_OK(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 5), FromParent("gw")));
  EXPECT_OK(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 9), FromParent("gw")));
  EXPECT_THAT(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 5), FromParent("gw")),
              HasReason(v1::DUPLICATE));
  EXPECT_OK(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 11), FromParent("gw")));
}

TEST_F(EnvelopeTest, SendersHaveSeparateWindows) {
  EXPECT_OK(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 5), FromParent("gw")));
  EXPECT_OK(dev_opener_->Open(SealAsRoot("dev-1", GoBody(), 5), FromParent("gw")));
}

TEST_F(EnvelopeTest, PresenceHasItsOwnSequenceStream) {
  v1::Body presence;
  presence.mutable_presence()->set_online(true);
  EXPECT_OK(gw_opener_->Open(Seal(dev_, "gw", StatusBody(), 500), FromChild("dev-1")));
  // Presence numbers are epochs: far below the main stream, still fresh.
  EXPECT_OK(gw_opener_->Open(Seal(dev_, "gw", presence, 2), FromChild("dev-1")));
  EXPECT_THAT(gw_opener_->Open(Seal(dev_, "gw", presence, 2), FromChild("dev-1")),
              HasReason(v1::DUPLICATE));
}

TEST_F(EnvelopeTest, RejectedMessageDoesNotMoveTheWindow) {
  // A high sequence number that fails a later check must not push good messages out.
  EXPECT_THAT(dev_opener_->Open(Seal(gw_, "dev-2", GoBody(), 1000), FromParent("gw")),
              HasReason(v1::WRONG_RECIPIENT));
  std::string expired = Seal(gw_, "dev-1", GoBody(), 2000, /*ttl_ms=*/1);
  clock_.Advance(5);
  EXPECT_THAT(dev_opener_->Open(expired, FromParent("gw")), HasReason(v1::EXPIRED));
  EXPECT_OK(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 3), FromParent("gw")));
  EXPECT_OK(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 1000), FromParent("gw")));
}

TEST_F(EnvelopeTest, ReplayStateSurvivesRestart) {
  std::string first = Seal(gw_, "dev-1", GoBody(), 5);
  EXPECT_OK(dev_opener_->Open(first, FromParent("gw")));
  EXPECT_OK(dev_opener_->Open(Seal(gw_, "dev-1", GoBody(), 100), FromParent("gw")));
  ASSERT_OK(replay_.Flush());

  // A restarted node: a new guard and opener over the same store.
  ReplayGuard restarted(&recv_store_);
  EnvelopeOpener opener(dev_self_, &trust_, &restarted, &clock_, EnvelopeLimits{});
  EXPECT_THAT(opener.Open(Seal(gw_, "dev-1", GoBody(), 100), FromParent("gw")),
              HasReason(v1::DUPLICATE));
  EXPECT_THAT(opener.Open(first, FromParent("gw")), HasReason(v1::REPLAY));
  EXPECT_OK(opener.Open(Seal(gw_, "dev-1", GoBody(), 99), FromParent("gw")));
  EXPECT_OK(opener.Open(Seal(gw_, "dev-1", GoBody(), 101), FromParent("gw")));
}

// Time (X.1368 §10 freshness; issue #14): a node with a wrong clock must still be able to read
// its parent's signed time. The time messages skip the validity window and the replay window
// (the nonce is their freshness, checked by NodeLinks), and the signer's certificate is judged at
// the time the response asserts.
v1::Body TimeResponseBody(int64_t time_ms) {
  v1::Body body;
  body.mutable_time_response()->set_nonce("n0nce");
  body.mutable_time_response()->set_time_ms(time_ms);
  return body;
}

TEST_F(EnvelopeTest, TimeResponseIsJudgedAtTheTimeItAssertsNotAtTheLocalClock) {
  const int64_t now = clock_.NowMs();
  constexpr int64_t kHour = 3'600'000;
  constexpr int64_t kYear = 365 * 24 * kHour;
  // The parent's certificate is valid for two hours around the true time.
  TestNode gw = pki_.Make("gw", v1::ROLE_INTERMEDIATE, {"dev-*"}, {}, now - kHour, now + kHour);
  // This device's clock is a year ahead: the parent's messages look expired, its certificate too.
  clock_.StepWall(kYear);
  FakeClock parent_clock(now);
  EXPECT_THAT(
      dev_opener_->Open(Seal(gw, "dev-1", GoBody(), 1, kTtlMs, &parent_clock), FromParent("gw")),
      HasReason(v1::BAD_CERT));
  // Its signed time is read all the same, and twice (no replay window: the nonce decides).
  std::string response = Seal(gw, "dev-1", TimeResponseBody(now), 2, kTtlMs, &parent_clock);
  EXPECT_OK(dev_opener_->Open(response, FromParent("gw")));
  EXPECT_OK(dev_opener_->Open(response, FromParent("gw")));
  // A time outside the signer's certificate is refused, whatever the local clock says.
  EXPECT_THAT(
      dev_opener_->Open(Seal(gw, "dev-1", TimeResponseBody(now + kYear), 3, kTtlMs, &parent_clock),
                        FromParent("gw")),
      HasReason(v1::BAD_CERT));
  // Only from the parent, and addressed to this device.
  EXPECT_THAT(
      dev_opener_->Open(Seal(gw2_, "dev-1", TimeResponseBody(now), 4, kTtlMs, &parent_clock),
                        FromParent("gw")),
      HasReason(v1::OUT_OF_SCOPE));
  EXPECT_THAT(dev_opener_->Open(Seal(gw, "dev-2", TimeResponseBody(now), 5, kTtlMs, &parent_clock),
                                FromParent("gw")),
              HasReason(v1::WRONG_RECIPIENT));
  // Everywhere else the time response is an ordinary message: judged by the local clock.
  EXPECT_THAT(gw_opener_->Open(Seal(dev_, "gw", TimeResponseBody(now), 6, kTtlMs, &parent_clock),
                               FromChild("dev-1")),
              HasReason(v1::EXPIRED));
}

TEST_F(EnvelopeTest, TimeRequestFromAChildWithAWrongClockIsRead) {
  constexpr int64_t kYear = 365LL * 24 * 3'600'000;
  FakeClock ahead(clock_.NowMs() + kYear), behind(clock_.NowMs() - kYear);
  v1::Body request;
  request.mutable_time_request()->set_nonce("n0nce");
  EXPECT_OK(gw_opener_->Open(Seal(dev_, "gw", request, 1, kTtlMs, &ahead), FromChild("dev-1")));
  EXPECT_OK(gw_opener_->Open(Seal(dev_, "gw", request, 1, kTtlMs, &behind), FromChild("dev-1")));
  // Its report, sealed by the same wrong clock, is not.
  EXPECT_THAT(
      gw_opener_->Open(Seal(dev_, "gw", StatusBody(), 2, kTtlMs, &ahead), FromChild("dev-1")),
      HasReason(v1::ISSUED_IN_FUTURE));
  EXPECT_THAT(
      gw_opener_->Open(Seal(dev_, "gw", StatusBody(), 3, kTtlMs, &behind), FromChild("dev-1")),
      HasReason(v1::EXPIRED));
  // Still only from the child the topic names.
  EXPECT_THAT(gw_opener_->Open(Seal(dev_, "gw", request, 4, kTtlMs, &ahead), FromChild("dev-2")),
              HasReason(v1::SENDER_MISMATCH));
}

}  // namespace
}  // namespace x1368::core
