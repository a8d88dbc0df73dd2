// Time (issue #14; X.1368 §10 freshness) through a real Mosquitto: a device whose wall clock is
// off by an hour or a year either way starts, learns its parent's signed time, shows at root
// with its offset and a CLOCK_SKEW count, and completes an update; a clock stepped while running
// is corrected by the next refusal; forged, replayed, foreign and out-of-validity time responses
// are refused and counted, and move nothing; a child that asks too often is answered three times,
// then refused.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "absl/synchronization/mutex.h"
#include "testing/broker_tree.h"
#include "testing/mosquitto.h"
#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "testing/wait.h"
#include "x1368/core/envelope.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/links.h"
#include "x1368/core/sequence.h"
#include "x1368/core/topics.h"

namespace x1368::testing {
namespace {

constexpr int64_t kHourMs = 3'600'000;
constexpr int64_t kYearMs = 365 * 24 * kHourMs;
// What a measured offset may differ from the true skew by: the round trip through the broker.
constexpr int64_t kToleranceMs = 5'000;

bool Near(int64_t a, int64_t b) { return std::llabs(a - b) <= kToleranceMs; }

class TimeSyncTest : public BrokerTreeTest {
 protected:
  // A device certificate valid from a day ago for 30 days: a year off, it looks expired (ahead)
  // or not yet valid (behind) by the device's own clock.
  static ClientSpec Skewed(int64_t skew_ms) {
    ClientSpec spec;
    spec.clock_skew_ms = skew_ms;
    int64_t now = core::RealClock::Get()->NowMs();
    spec.cert_validity = {{now - 24 * kHourMs, now + 30 * 24 * kHourMs}};
    return spec;
  }
};

class WrongClockTest : public TimeSyncTest, public ::testing::WithParamInterface<int64_t> {};

TEST_P(WrongClockTest, DeviceStartsSyncsShowsAtRootAndUpdates) {
  const int64_t skew = GetParam();
  tree_->AddRoot();
  tree_->AddIntermediate("gw1", "root", {"dev-*"});
  ClientNode* dev = tree_->AddClient("dev-1", "gw1", Skewed(skew));
  // Started (its own certificate out of validity by its clock did not stop it), corrected its
  // clock by its parent's signed time, and root has its row with the offset.
  ASSERT_TRUE(tree_->WaitForDevices(
      {"dev-1"}, [&](const auto& d) { return Near(d.clock_offset_ms(), -skew); }))
      << "offset " << dev->node->trusted_clock().offset_ms();
  EXPECT_TRUE(Near(dev->node->trusted_clock().offset_ms(), -skew));
  EXPECT_TRUE(WaitFor([&] { return tree_->DeviceRejections("dev-1", v1::CLOCK_SKEW) > 0; }));
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(48 * 1024, 21), "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  EXPECT_TRUE(tree_->WaitForVersion({"dev-1"}, "2.0.0"));
}

INSTANTIATE_TEST_SUITE_P(Skews, WrongClockTest,
                         ::testing::Values(kHourMs, -kHourMs, kYearMs, -kYearMs),
                         [](const ::testing::TestParamInfo<int64_t>& p) {
                           std::string sign = p.param > 0 ? "Ahead" : "Behind";
                           return sign + (std::llabs(p.param) == kHourMs ? "1h" : "1y");
                         });

TEST_F(TimeSyncTest, AClockSteppedWhileRunningIsCorrectedByTheNextRefusal) {
  tree_->AddRoot();
  tree_->AddIntermediate("gw1", "root", {"dev-*"});
  ClientNode* dev = tree_->AddClient("dev-1", "gw1", Skewed(0));
  ASSERT_TRUE(
      tree_->WaitForDevices({"dev-1"}, [](const auto& d) { return d.version() == "1.0.0"; }));
  EXPECT_EQ(dev->node->trusted_clock().offset_ms(), 0);
  // The RTC jumps a year ahead while the device runs: its parent's next messages look expired.
  dev->wall->set_skew_ms(kYearMs);
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(48 * 1024, 22), "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  EXPECT_TRUE(tree_->WaitForVersion({"dev-1"}, "2.0.0", absl::Seconds(60)));
  EXPECT_TRUE(Near(dev->node->trusted_clock().offset_ms(), -kYearMs));
  EXPECT_TRUE(tree_->WaitForDevices(
      {"dev-1"}, [](const auto& d) { return Near(d.clock_offset_ms(), -kYearMs); }));
}

TEST_F(TimeSyncTest, BadTimeResponsesAreRefusedCountedAndMoveNothing) {
  // dev-1's parent gw1 is not running: mallory sees its time requests and answers them.
  auto mallory = tree_->RawTransport("mallory");
  absl::Mutex mu;
  std::string nonce;
  mallory->SetMessageHandler([&](core::MqttMessage m) {
    v1::Envelope env;
    v1::Body body;
    if (!env.ParseFromString(m.payload) || !body.ParseFromString(env.body()) ||
        !body.has_time_request()) {
      return;
    }
    absl::MutexLock lock(&mu);
    nonce = body.time_request().nonce();
  });
  mallory->AddSubscription(core::UpTopic("x1368", "gw1", "dev-1", core::Channel::kStatus));
  ASSERT_OK(mallory->Start());
  ASSERT_TRUE(WaitFor([&] { return mallory->connected(); }));
  tree_->AddRoot();
  ClientNode* dev = tree_->AddClient("dev-1", "gw1");
  auto outstanding = [&] {
    absl::MutexLock lock(&mu);
    return nonce;
  };
  ASSERT_TRUE(WaitFor([&] { return !outstanding().empty(); }));
  const std::string asked = outstanding();

  const int64_t now = core::RealClock::Get()->NowMs();
  TestNode gw1 = tree_->pki().Make("gw1", v1::ROLE_INTERMEDIATE, {"dev-*"});
  TestNode gw2 = tree_->pki().Make("gw2", v1::ROLE_INTERMEDIATE, {"dev-*"});
  TestNode gw1_short =
      tree_->pki().Make("gw1", v1::ROLE_INTERMEDIATE, {"dev-*"}, {}, now - kHourMs, now + kHourMs);
  uint64_t seq = 100;
  auto answer = [&](const TestNode& signer, const std::string& n, int64_t time_ms) {
    v1::Body body;
    body.mutable_time_response()->set_nonce(n);
    body.mutable_time_response()->set_time_ms(time_ms);
    core::MemKvStore store;
    auto counter = core::SeqCounter::Open(&store, "seq");
    core::EnvelopeSealer sealer(signer.id, signer.key, signer.cert, counter->get(),
                                core::RealClock::Get());
    return *sealer.SealWithSeq("dev-1", std::move(body), 60'000, ++seq);
  };
  const std::string topic = core::DownTopic("x1368", "gw1", "dev-1", core::Channel::kCmd);
  core::Metrics& m = dev->node->metrics();
  auto offset = [&] { return dev->node->trusted_clock().offset_ms(); };

  // A wrong nonce: refused as a replay.
  ASSERT_OK(mallory->Publish({topic, answer(gw1, "not-the-nonce", now + kYearMs)}));
  EXPECT_TRUE(WaitFor([&] { return m.Rejections(v1::REPLAY) == 1; }));
  // The right nonce, signed by a node that is not the parent.
  ASSERT_OK(mallory->Publish({topic, answer(gw2, asked, now + kYearMs)}));
  EXPECT_TRUE(WaitFor([&] { return m.Rejections(v1::OUT_OF_SCOPE) == 1; }));
  // The right nonce, by the parent, at a time its certificate does not cover.
  ASSERT_OK(mallory->Publish({topic, answer(gw1_short, asked, now + kYearMs)}));
  EXPECT_TRUE(WaitFor([&] { return m.ParentRejections(v1::BAD_CERT) == 1; }));
  EXPECT_EQ(offset(), 0);
  EXPECT_EQ(m.Rejections(v1::CLOCK_SKEW), 0u);

  // The control: the right nonce, by the parent, an hour ahead: adopted.
  std::string good = answer(gw1, asked, now + kHourMs);
  ASSERT_OK(mallory->Publish({topic, good}));
  ASSERT_TRUE(WaitFor([&] { return Near(offset(), kHourMs); })) << offset();
  EXPECT_EQ(m.Rejections(v1::CLOCK_SKEW), 1u);
  // The same answer again: its nonce is spent.
  const int64_t adopted = offset();
  ASSERT_OK(mallory->Publish({topic, good}));
  EXPECT_TRUE(WaitFor([&] { return m.Rejections(v1::REPLAY) == 2; }));
  EXPECT_EQ(offset(), adopted);
  mallory->Stop();
}

TEST_F(TimeSyncTest, AChildAskingTheTimeTooOftenIsAnsweredThreeTimesAndRefusedTheRest) {
  tree_->AddRoot();
  IntermediateNode* gw1 = tree_->AddIntermediate("gw1", "root", {"dev-*"});
  // dev-9 is a genuine child of gw1 (root certified it) that asks for the time in a loop; its
  // answers come down where the raw transport listens.
  auto dev = tree_->RawTransport("dev-9");
  absl::Mutex mu;
  int answers = 0;
  dev->SetMessageHandler([&](core::MqttMessage m) {
    v1::Envelope env;
    v1::Body body;
    if (!env.ParseFromString(m.payload) || !body.ParseFromString(env.body()) ||
        !body.has_time_response()) {
      return;
    }
    absl::MutexLock lock(&mu);
    ++answers;
  });
  dev->AddSubscription(core::DownTopic("x1368", "gw1", "dev-9", core::Channel::kCmd));
  ASSERT_OK(dev->Start());
  ASSERT_TRUE(WaitFor([&] { return dev->connected(); }));

  TestNode me = tree_->pki().Make("dev-9", v1::ROLE_CLIENT, {});
  core::MemKvStore store;
  auto counter = core::SeqCounter::Open(&store, "seq");
  core::EnvelopeSealer sealer(me.id, me.key, me.cert, counter->get(), core::RealClock::Get());
  const std::string up = core::UpTopic("x1368", "gw1", "dev-9", core::Channel::kStatus);
  constexpr int kAsked = 5;
  for (int i = 0; i < kAsked; ++i) {
    v1::Body body;
    body.mutable_time_request()->set_nonce(absl::StrCat("nonce-", i));
    body.mutable_time_request()->set_resend(true);
    ASSERT_OK(dev->Publish({up, *sealer.SealWithSeq("gw1", std::move(body), 60'000, 10 + i)}));
  }
  core::Metrics& m = gw1->node->metrics();
  // The first three (a connection, a correction and its resend fit in it), then none.
  constexpr int kAnswered = core::NodeLinks::kTimeAnswerBurst;
  EXPECT_TRUE(WaitFor([&] { return m.Rejections(v1::TOO_FREQUENT) == kAsked - kAnswered; }))
      << m.Rejections(v1::TOO_FREQUENT);
  auto answered = [&] {
    absl::MutexLock lock(&mu);
    return answers;
  };
  EXPECT_TRUE(WaitFor([&] { return answered() == kAnswered; })) << answered();
  // Nothing else was wrong with them: each was refused for its timing alone.
  EXPECT_EQ(m.Rejections(v1::REPLAY) + m.Rejections(v1::MALFORMED), 0u);
  dev->Stop();
}

}  // namespace
}  // namespace x1368::testing
