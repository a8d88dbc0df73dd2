// Unwrapping root-signed directives (x1368/core/directive.h), as a device and a gateway both do
// with their parent's DesiredState: only a root-signed directive for this node that has not
// expired reaches the module; everything else is reported with its reason and where it was
// found, except a root-signed non-directive, which only a NonDirective::kReject caller counts.
// Real keys and signatures.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/clock.h"
#include "x1368/core/directive.h"
#include "x1368/core/envelope.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/reason.h"
#include "x1368/core/sequence.h"
#include "x1368/core/topics.h"
#include "x1368/core/trust.h"

namespace x1368::core {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;
using ::x1368::testing::HasReason;
using ::x1368::testing::TempDir;
using ::x1368::testing::TestNode;
using ::x1368::testing::TestPki;

constexpr int64_t kTtlMs = 60'000;

v1::Body DirectiveBody(const std::string& campaign) {
  v1::Body body;
  body.mutable_directive()->set_campaign_id(campaign);
  body.mutable_directive()->mutable_selector()->set_component("fw");
  return body;
}

class DirectiveTest : public ::testing::Test {
 protected:
  DirectiveTest()
      : pki_(dir_.path()),
        trust_(pki_.root_id(), pki_.root_key().public_key(), &clock_),
        gw_(pki_.Issue("gw", v1::ROLE_INTERMEDIATE, {"dev-*"})),
        dev_(pki_.Issue("dev-1", v1::ROLE_CLIENT)),
        replay_(&recv_store_) {
    send_seq_ = *SeqCounter::Open(&send_store_, "own_seq");
    opener_ = std::make_unique<EnvelopeOpener>(*trust_.VerifyCert(dev_.cert), &trust_, &replay_,
                                               &clock_, EnvelopeLimits{});
  }

  std::string SealAsRoot(absl::string_view to, v1::Body body, int64_t ttl_ms = kTtlMs) {
    EnvelopeSealer sealer(pki_.root_id(), pki_.root_key(), std::nullopt, send_seq_.get(), &clock_);
    auto sealed = sealer.Seal(to, std::move(body), ttl_ms);
    EXPECT_OK(sealed);
    return sealed.ok() ? *sealed : std::string();
  }
  std::string SealAsGw(absl::string_view to, v1::Body body) {
    EnvelopeSealer sealer(gw_.id, gw_.key, gw_.cert, send_seq_.get(), &clock_);
    auto sealed = sealer.Seal(to, std::move(body), kTtlMs);
    EXPECT_OK(sealed);
    return sealed.ok() ? *sealed : std::string();
  }

  struct Seen {
    std::vector<std::string> campaigns;  // directives handed on, in order
    std::vector<std::string> envelopes;
    std::vector<std::pair<Reason, std::string>> rejected;  // reason, where
  };
  Seen Unwrap(const v1::DesiredState& desired, NonDirective non_directive) {
    Seen seen;
    ForEachDesiredDirective(
        *opener_, desired, non_directive,
        [&](const std::string& envelope, const OpenedMessage& opened) {
          EXPECT_TRUE(opened.signer->is_root);
          seen.campaigns.push_back(opened.body.directive().campaign_id());
          seen.envelopes.push_back(envelope);
        },
        [&](const absl::Status& s, absl::string_view where) {
          seen.rejected.emplace_back(ReasonOf(s), std::string(where));
        });
    return seen;
  }

  TempDir dir_;
  FakeClock clock_;
  TestPki pki_;
  TrustStore trust_;
  TestNode gw_;
  TestNode dev_;
  MemKvStore send_store_;
  std::unique_ptr<SeqCounter> send_seq_;
  MemKvStore recv_store_;
  ReplayGuard replay_;
  std::unique_ptr<EnvelopeOpener> opener_;
};

TEST_F(DirectiveTest, RootSignedDirectivesAreHandedOnUnchangedInOrder) {
  v1::DesiredState desired;
  desired.add_directives(SealAsRoot(kAllChildren, DirectiveBody("c-1")));
  desired.add_directives(SealAsRoot("dev-1", DirectiveBody("c-2")));
  for (NonDirective mode : {NonDirective::kReject, NonDirective::kIgnore}) {
    Seen seen = Unwrap(desired, mode);
    EXPECT_THAT(seen.campaigns, ElementsAre("c-1", "c-2"));
    EXPECT_THAT(seen.envelopes, ElementsAre(desired.directives(0), desired.directives(1)));
    EXPECT_TRUE(seen.rejected.empty());
  }
  // No sequence check on embedded directives: the same desired state again (a catch-up after
  // a reconnect) hands them on again, and the module decides what is new.
  EXPECT_THAT(Unwrap(desired, NonDirective::kReject).campaigns, ElementsAre("c-1", "c-2"));
}

TEST_F(DirectiveTest, WhatDoesNotOpenIsRejectedWithItsReasonAndTheRestStillHandedOn) {
  v1::DesiredState desired;
  desired.add_directives(SealAsGw(kAllChildren, DirectiveBody("by-gw")));  // not the root's
  desired.add_directives(SealAsRoot("dev-2", DirectiveBody("for-dev-2")));
  desired.add_directives(SealAsRoot(kAllChildren, DirectiveBody("short"), /*ttl_ms=*/10));
  desired.add_directives("not an envelope");
  desired.add_directives(SealAsRoot(kAllChildren, DirectiveBody("good")));
  clock_.Advance(1000);  // "short" has expired, the rest have not
  Seen seen = Unwrap(desired, NonDirective::kIgnore);
  EXPECT_THAT(seen.campaigns, ElementsAre("good"));
  EXPECT_THAT(seen.rejected, ElementsAre(Pair(v1::OUT_OF_SCOPE, "desired.directive"),
                                         Pair(v1::WRONG_RECIPIENT, "desired.directive"),
                                         Pair(v1::EXPIRED, "desired.directive"),
                                         Pair(v1::MALFORMED, "desired.directive")));
}

// The one difference between the modules, kept explicit: a device counts a root-signed
// non-directive in its desired state, a gateway skips it.
TEST_F(DirectiveTest, ARootSignedNonDirectiveIsCountedOnlyWhenAskedTo) {
  v1::Body go;
  go.mutable_go()->set_campaign_id("c-1");
  v1::DesiredState desired;
  desired.add_directives(SealAsRoot(kAllChildren, go));
  desired.add_directives(SealAsRoot(kAllChildren, DirectiveBody("c-1")));

  Seen device = Unwrap(desired, NonDirective::kReject);
  EXPECT_THAT(device.campaigns, ElementsAre("c-1"));
  EXPECT_THAT(device.rejected, ElementsAre(Pair(v1::UNKNOWN_TYPE, "desired")));

  Seen gateway = Unwrap(desired, NonDirective::kIgnore);
  EXPECT_THAT(gateway.campaigns, ElementsAre("c-1"));
  EXPECT_TRUE(gateway.rejected.empty());
}

TEST_F(DirectiveTest, OpenEmbeddedDirectiveWantsARootSignedUnexpiredDirective) {
  auto ok = OpenEmbeddedDirective(*opener_, SealAsRoot(kAllChildren, DirectiveBody("c-1")));
  ASSERT_OK(ok);
  EXPECT_EQ(ok->body.directive().campaign_id(), "c-1");
  EXPECT_TRUE(ok->signer->is_root);
  EXPECT_EQ(ok->body_digest.size(), 32u);  // what a go names

  v1::Body go;
  go.mutable_go()->set_campaign_id("c-1");
  EXPECT_THAT(OpenEmbeddedDirective(*opener_, SealAsRoot(kAllChildren, go)),
              HasReason(v1::UNKNOWN_TYPE));
  EXPECT_THAT(OpenEmbeddedDirective(*opener_, SealAsGw(kAllChildren, DirectiveBody("c-1"))),
              HasReason(v1::OUT_OF_SCOPE));
  std::string brief = SealAsRoot(kAllChildren, DirectiveBody("c-1"), /*ttl_ms=*/10);
  clock_.Advance(10);
  EXPECT_THAT(OpenEmbeddedDirective(*opener_, brief), HasReason(v1::EXPIRED));
}

// A directive that arrives on its own is opened as from the parent, which accepts the parent's
// signature too: CheckRootSigned is what keeps a gateway from authoring one.
TEST_F(DirectiveTest, CheckRootSignedRefusesADirectiveSignedByTheParent) {
  auto from_gw = opener_->Open(SealAsGw("dev-1", DirectiveBody("c-1")),
                               OpenContext{Origin::kFromParent, "gw", nullptr});
  ASSERT_OK(from_gw);
  EXPECT_THAT(CheckRootSigned(*from_gw), HasReason(v1::OUT_OF_SCOPE));

  auto from_root = opener_->Open(SealAsRoot(kAllChildren, DirectiveBody("c-2")),
                                 OpenContext{Origin::kFromParent, "gw", nullptr});
  ASSERT_OK(from_root);
  EXPECT_OK(CheckRootSigned(*from_root));
}

}  // namespace
}  // namespace x1368::core
