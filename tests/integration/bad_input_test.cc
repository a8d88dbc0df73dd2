// Bad input end to end (issue #2 "Bad input"): forged, out-of-scope, tampered, wrong hardware,
// not newer, replayed, expired, truncated, oversized and malformed-topic messages reach real
// nodes through a real Mosquitto. Each is rejected with its reason counted and reported up to
// root, the device keeps running its firmware, and the tree still updates afterwards.
#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "testing/mosquitto.h"
#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "testing/wait.h"
#include "x1368/core/envelope.h"
#include "x1368/core/file_util.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/sequence.h"

namespace x1368::testing {
namespace {

// Seals `body` as `signer_id` with `key` (and `cert`), at the time `clock` says.
std::string Seal(const core::PrivateKey& key, const std::string& signer_id,
                 std::optional<v1::DelegationCert> cert, const std::string& recipient,
                 v1::Body body, uint64_t seq, const core::Clock& clock = *core::RealClock::Get(),
                 int64_t ttl_ms = 600'000) {
  core::MemKvStore store;
  auto counter = core::SeqCounter::Open(&store, "seq");
  core::EnvelopeSealer sealer(signer_id, key, std::move(cert), counter->get(), &clock);
  return *sealer.SealWithSeq(recipient, std::move(body), ttl_ms, seq);
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = MosquittoBroker::Start(broker_dir_.path());
    ASSERT_OK(b);
    broker_ = *std::move(b);
    tree_ = std::make_unique<TestTree>(broker_.get());
    tree_->AddRoot();
    gw1_ = tree_->AddIntermediate("gw1", "root", {"dev-*"});
    dev_ = tree_->AddClient("dev-1", "gw1");
    ASSERT_TRUE(
        tree_->WaitForDevices({"dev-1"}, [](const auto& d) { return d.version() == "1.0.0"; }));
    mallory_ = tree_->RawTransport("mallory");
    ASSERT_OK(mallory_->Start());
    ASSERT_TRUE(WaitFor([&] { return mallory_->connected(); }));
  }
  void TearDown() override {
    mallory_->Stop();
    tree_.reset();
    broker_.reset();
  }

  // A root-signed-looking directive for `manifest` (signed by the real author).
  v1::Body DirectiveBody(const v1::Manifest& manifest, const std::string& campaign = "c-attack") {
    v1::Body body;
    v1::UpdateDirective* d = body.mutable_directive();
    d->set_campaign_id(campaign);
    *d->mutable_manifest() = TestPki::Sign(tree_->author(), manifest);
    d->mutable_selector()->set_component("fw");
    return body;
  }
  v1::Manifest SomeManifest(uint64_t seq = 9) {
    return TestPki::ManifestFor(TestPki::MakeImage(1000, 1), "fw", "9.0.0", seq, {"board-a"},
                                "author-1");
  }
  void Inject(const std::string& topic, const std::string& payload) {
    ASSERT_OK(mallory_->Publish({topic, payload}));
  }
  // Waits until root has heard from dev-1 that it rejected something for `reason`.
  bool Reported(v1::Reason reason, const std::string& device = "dev-1") {
    return WaitFor([&] { return tree_->DeviceRejections(device, reason) > 0; }, absl::Seconds(15),
                   absl::Milliseconds(50));
  }
  void ExpectStillOnFactoryFirmware(const std::string& device = "dev-1") {
    auto d = tree_->Device(device);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->version(), "1.0.0");
  }
  // The last word: after the attack, a genuine update still goes through.
  void ExpectGenuineUpdateStillWorks(const std::string& version = "2.0.0", uint64_t seq = 2) {
    ASSERT_OK(tree_->Publish(TestPki::MakeImage(48 * 1024, 11), version, seq));
    ASSERT_OK(tree_->StartCampaign(version));
    EXPECT_TRUE(tree_->WaitForVersion({"dev-1"}, version));
  }

  TempDir broker_dir_;
  std::unique_ptr<MosquittoBroker> broker_;
  std::unique_ptr<TestTree> tree_;
  IntermediateNode* gw1_ = nullptr;
  ClientNode* dev_ = nullptr;
  std::unique_ptr<core::Transport> mallory_;
};

TEST_F(BadInputTest, ForgedDirectiveSignedWithTheWrongKey) {
  auto wrong = core::PrivateKey::Generate();
  ASSERT_OK(wrong);
  // Claims to be the root, signed with another key: at the device...
  Inject("x1368/gw1/_all/down/cmd",
         Seal(*wrong, "root", std::nullopt, "_all", DirectiveBody(SomeManifest()), 1000));
  EXPECT_TRUE(Reported(v1::BAD_SIGNATURE));
  // ...and at the gateway, which reports its own counters to root as well.
  Inject("x1368/root/_all/down/cmd",
         Seal(*wrong, "root", std::nullopt, "_all", DirectiveBody(SomeManifest()), 1000));
  EXPECT_TRUE(WaitFor([&] {
    v1::FleetStatus f = tree_->Fleet();
    for (const auto& n : f.nodes()) {
      for (const auto& rc : n.rejections()) {
        if (n.node_id() == "gw1" && rc.reason() == v1::BAD_SIGNATURE) return true;
      }
    }
    return false;
  }));
  ExpectStillOnFactoryFirmware();
  ExpectGenuineUpdateStillWorks();
}

TEST_F(BadInputTest, DirectiveFromANodeOutOfScope) {
  // A real intermediate certificate, but for another subtree, talking on gw1's topic for dev-1.
  TestNode evil = tree_->pki().Issue("gw-evil", v1::ROLE_INTERMEDIATE, {"other-*"});
  v1::Body go;
  go.mutable_go()->set_campaign_id("c-attack");
  Inject("x1368/gw1/dev-1/down/cmd", Seal(evil.key, "gw-evil", evil.cert, "dev-1", go, 1));
  EXPECT_TRUE(Reported(v1::OUT_OF_SCOPE));
  // The genuine parent may send go, but never a directive of its own: only root decides.
  // (Sealed with gw1's own sealer, so its sequence numbers stay its own.)
  uint64_t before = tree_->DeviceRejections("dev-1", v1::OUT_OF_SCOPE);
  auto own = gw1_->node->sealer().Seal("_all", DirectiveBody(SomeManifest()), 600'000);
  ASSERT_OK(own);
  Inject("x1368/gw1/_all/down/cmd", *own);
  EXPECT_TRUE(WaitFor([&] { return tree_->DeviceRejections("dev-1", v1::OUT_OF_SCOPE) > before; },
                      absl::Seconds(15)));
  ExpectStillOnFactoryFirmware();
  ExpectGenuineUpdateStillWorks();
}

TEST_F(BadInputTest, TamperedImageOnTheFirmwareServerIsNeverServedByTheGateway) {
  std::string image = TestPki::MakeImage(80 * 1024, 21);
  ASSERT_OK(tree_->Publish(image, "2.0.0", 2));
  // The firmware server's copy is modified after the author signed it.
  std::string path = tree_->root()->dir + "/images/" + core::HexEncode(core::Sha256(image));
  std::string tampered = image;
  tampered[100] ^= 0x01;
  ASSERT_OK(core::WriteFileAtomic(path, tampered));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  EXPECT_TRUE(tree_->WaitForDevices({"dev-1"}, [](const auto& d) {
    return d.state() == v1::FAILED;
  })) << "the device should give up: the gateway refuses to serve an image that fails its digest";
  EXPECT_GT(gw1_->node->metrics().Rejections(v1::DIGEST_MISMATCH), 0u);
  ExpectStillOnFactoryFirmware();
  ExpectGenuineUpdateStillWorks("3.0.0", 3);
}

TEST_F(BadInputTest, TamperedImageIsCaughtByTheDeviceItself) {
  // Client-server: nothing between root and the device checks the image but the device.
  tree_->AddClient("dev-2", "root");
  ASSERT_TRUE(
      tree_->WaitForDevices({"dev-2"}, [](const auto& d) { return d.version() == "1.0.0"; }));
  std::string image = TestPki::MakeImage(64 * 1024, 22);
  ASSERT_OK(tree_->Publish(image, "2.0.0", 2));
  std::string tampered = image;
  tampered[5000] ^= 0x80;
  ASSERT_OK(core::WriteFileAtomic(
      tree_->root()->dir + "/images/" + core::HexEncode(core::Sha256(image)), tampered));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  EXPECT_TRUE(tree_->WaitForDevices({"dev-2"}, [](const auto& d) {
    return d.state() == v1::FAILED && d.reason() == v1::DIGEST_MISMATCH;
  }));
  ExpectStillOnFactoryFirmware("dev-2");
}

// ChunkData, the one payload that is not an Envelope (issue #17): bytes that do not parse, and
// chunk data broadcast to every child, are counted (MALFORMED, BAD_TOPIC) and change nothing; a
// well-formed chunk nobody asked for is ignored. The device still updates afterwards.
TEST_F(BadInputTest, BadChunkDataIsCountedAndChangesNothing) {
  Inject("x1368/gw1/dev-1/down/data", std::string("\xff\xff\xff not a ChunkData", 20));
  EXPECT_TRUE(Reported(v1::MALFORMED));
  v1::ChunkData unasked;
  unasked.set_image_sha256(std::string(32, 'x'));
  unasked.set_data("bytes nobody asked for");
  Inject("x1368/gw1/_all/down/data", unasked.SerializeAsString());
  EXPECT_TRUE(Reported(v1::BAD_TOPIC));
  Inject("x1368/gw1/dev-1/down/data", unasked.SerializeAsString());
  ExpectStillOnFactoryFirmware();
  ExpectGenuineUpdateStillWorks("2.0.0", 2);
}

TEST_F(BadInputTest, ManifestForAnotherHardwareClass) {
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(20 * 1024, 23), "2.0.0", 2, {"board-b"}));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  EXPECT_TRUE(Reported(v1::WRONG_HARDWARE));
  ExpectStillOnFactoryFirmware();
  ExpectGenuineUpdateStillWorks("2.0.1", 3);
}

TEST_F(BadInputTest, OlderOrEqualVersionIsRefused) {
  ClientSpec newer;
  newer.initial_version = "5.0.0";
  newer.initial_sequence = 5;
  tree_->AddClient("dev-5", "gw1", newer);
  ASSERT_TRUE(
      tree_->WaitForDevices({"dev-5"}, [](const auto& d) { return d.version() == "5.0.0"; }));
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(20 * 1024, 24), "3.0.0", 3));  // older
  ASSERT_OK(tree_->StartCampaign("3.0.0"));
  EXPECT_TRUE(Reported(v1::NOT_NEWER, "dev-5"));
  uint64_t older = tree_->DeviceRejections("dev-5", v1::NOT_NEWER);
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(20 * 1024, 25), "5.0.0-other", 5));  // equal sequence
  ASSERT_OK(tree_->StartCampaign("5.0.0-other"));
  EXPECT_TRUE(WaitFor([&] { return tree_->DeviceRejections("dev-5", v1::NOT_NEWER) > older; },
                      absl::Seconds(15)));
  EXPECT_EQ(tree_->Device("dev-5")->version(), "5.0.0");
}

TEST_F(BadInputTest, ReplayedMessagesAreDroppedOrRefused) {
  // Record what gw1 broadcasts, then replay its go once dev-1 has seen far newer messages from it.
  auto observer = tree_->RawTransport("observer");
  absl::Mutex mu;
  std::vector<core::MqttMessage> seen;
  observer->SetMessageHandler([&](core::MqttMessage m) {
    absl::MutexLock lock(&mu);
    seen.push_back(std::move(m));
  });
  observer->AddSubscription("x1368/gw1/_all/down/cmd");
  ASSERT_OK(observer->Start());
  ASSERT_TRUE(WaitFor([&] { return observer->connected(); }));
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(64 * 1024, 26), "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  ASSERT_TRUE(tree_->WaitForVersion({"dev-1"}, "2.0.0"));
  std::vector<core::MqttMessage> captured;
  {
    absl::MutexLock lock(&mu);
    captured = seen;
  }
  ASSERT_GE(captured.size(), 2u) << "expected the forwarded directive and gw1's go";
  // gw1 then sends far more messages than the 64-wide window holds: one status request numbered
  // 1,000 past everything captured, sealed with a key root certified for gw1, stands for them.
  uint64_t newest = 0;
  for (const auto& m : captured) {
    v1::Envelope env;
    v1::Body body;
    if (env.ParseFromString(m.payload) && body.ParseFromString(env.body()) &&
        env.signer_id() == "gw1") {
      newest = std::max(newest, body.seq());
    }
  }
  TestNode gw1_key = tree_->pki().Make("gw1", v1::ROLE_INTERMEDIATE, {"dev-*"});
  core::EnvelopeSealer gw1(gw1_key.id, gw1_key.key, gw1_key.cert, nullptr, core::RealClock::Get());
  v1::Body ask;
  ask.mutable_status_request();
  auto later = gw1.SealWithSeq("_all", ask, 60'000, newest + 1000);
  ASSERT_OK(later);
  Inject("x1368/gw1/_all/down/cmd", *later);
  uint64_t replays_before = tree_->DeviceRejections("dev-1", v1::REPLAY);
  for (const auto& m : captured) Inject(m.topic, m.payload);
  // The sentinel is the device's own report of the replayed go, the last message injected: the
  // directive before it (from the same publisher, so handled first) was dropped as an exact
  // duplicate or refused, and a wrong implementation's state change would have been reported
  // with the count, not after it.
  EXPECT_TRUE(WaitFor([&] { return tree_->DeviceRejections("dev-1", v1::REPLAY) > replays_before; },
                      absl::Seconds(15), absl::Milliseconds(50)))
      << "replays counted: " << tree_->DeviceRejections("dev-1", v1::REPLAY);
  // The re-played directive did not start anything again.
  EXPECT_EQ(tree_->Device("dev-1")->state(), v1::CONFIRMED);
  EXPECT_EQ(tree_->Device("dev-1")->version(), "2.0.0");
  observer->Stop();
}

// Issue #13: a gateway's batch says where in the tree each report came from. Paths that do not
// match the reports one for one, or that name something other than nodes, are refused whole and
// counted at root; the device's place in root's registry stays what the genuine batches said.
TEST_F(BadInputTest, BatchesWhosePathsDoNotFitTheirReportsAreRefusedWhole) {
  auto observer = tree_->RawTransport("observer");
  absl::Mutex mu;
  std::optional<v1::Body> genuine;
  uint64_t newest = 0;
  observer->SetMessageHandler([&](core::MqttMessage m) {
    v1::Envelope env;
    v1::Body body;
    if (!env.ParseFromString(m.payload) || !body.ParseFromString(env.body())) return;
    absl::MutexLock lock(&mu);
    newest = std::max(newest, body.seq());
    if (body.status_batch().reports_size() > 0) genuine = body;
  });
  observer->AddSubscription("x1368/root/gw1/up/status");
  ASSERT_OK(observer->Start());
  ASSERT_TRUE(WaitFor([&] { return observer->connected(); }));
  // gw1 relays what changes in dev-1's reports: a rejection counted by dev-1 is a change.
  Inject("x1368/gw1/dev-1/down/cmd", "not an envelope");
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return genuine.has_value();
      },
      absl::Seconds(15)));
  ASSERT_EQ(tree_->Device("dev-1")->path(), "gw1");
  auto root_malformed = [&] {
    const v1::FleetStatus fleet = tree_->Fleet();
    for (const v1::ReasonCount& rc : fleet.rejections()) {
      if (rc.reason() == v1::MALFORMED) return rc.count();
    }
    return uint64_t{0};
  };
  TestNode gw1_key = tree_->pki().Make("gw1", v1::ROLE_INTERMEDIATE, {"dev-*"});
  core::EnvelopeSealer gw1(gw1_key.id, gw1_key.key, gw1_key.cert, nullptr, core::RealClock::Get());
  uint64_t seq = 0;
  size_t reports = 0;
  {
    absl::MutexLock lock(&mu);
    // Just past what gw1 sent: its own next messages, numbered after these, still count.
    seq = newest + 5;
    reports = static_cast<size_t>(genuine->status_batch().reports_size());
  }
  auto inject = [&](std::vector<std::string> paths) {
    v1::Body body;
    {
      absl::MutexLock lock(&mu);
      body = *genuine;
    }
    body.mutable_status_batch()->clear_paths();
    for (const std::string& p : paths) body.mutable_status_batch()->add_paths(p);
    auto sealed = gw1.SealWithSeq("root", body, 60'000, ++seq);
    ASSERT_OK(sealed);
    uint64_t before = root_malformed();
    Inject("x1368/root/gw1/up/status", *sealed);
    EXPECT_TRUE(WaitFor([&] { return root_malformed() > before; }, absl::Seconds(10)))
        << "root did not count the batch with paths " << absl::StrJoin(paths, ",");
  };
  inject(std::vector<std::string>(reports + 1, "gw-x"));   // one path too many
  inject(std::vector<std::string>(reports, "gw-x//etc"));  // an empty node
  inject(std::vector<std::string>(reports, "gw-x/gw y"));
  inject(std::vector<std::string>(reports, "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q"));  // 17 deep
  EXPECT_EQ(tree_->Device("dev-1")->path(), "gw1");
  observer->Stop();
  ExpectGenuineUpdateStillWorks();
}

// Issue #13: a device's report with values no device can have (a version outside SemVer, an
// unknown state, progress past its total, a hardware class that is no identifier) is refused by
// the first tracker that sees it, counted as MALFORMED, never stored nor relayed; the same
// device's next good report is taken. A gateway's batch that names a device twice is refused
// (MALFORMED at root) from the second on.
TEST_F(BadInputTest, ReportsWithImpossibleValuesAndBatchesNamingADeviceTwiceAreRefused) {
  TestNode dev = tree_->pki().Make("dev-x", v1::ROLE_CLIENT);
  auto report = [&](const std::function<void(v1::StatusReport*)>& spoil, uint64_t seq) {
    v1::Body body;
    v1::StatusReport* r = body.mutable_status();
    r->set_device_id("dev-x");
    r->set_component("fw");
    r->set_version("1.0.0");
    r->set_sequence_number(1);
    r->set_hardware_class("board-a");
    r->set_state(v1::IDLE);
    if (spoil) spoil(r);
    return Seal(dev.key, dev.id, dev.cert, "gw1", body, seq);
  };
  const uint64_t before = gw1_->node->metrics().Rejections(v1::MALFORMED);
  uint64_t seq = 0;
  Inject("x1368/gw1/dev-x/up/status", report([](auto* r) { r->set_version("v1.0"); }, ++seq));
  Inject("x1368/gw1/dev-x/up/status",
         report([](auto* r) { r->set_state(static_cast<v1::UpdateState>(99)); }, ++seq));
  Inject("x1368/gw1/dev-x/up/status", report(
                                          [](auto* r) {
                                            r->set_state(v1::DOWNLOADING);
                                            r->set_bytes_done(2000);
                                            r->set_bytes_total(1000);
                                          },
                                          ++seq));
  Inject("x1368/gw1/dev-x/up/status",
         report([](auto* r) { r->set_hardware_class("board a"); }, ++seq));
  EXPECT_TRUE(WaitFor([&] { return gw1_->node->metrics().Rejections(v1::MALFORMED) >= before + 4; },
                      absl::Seconds(10)))
      << "gw1 counted " << gw1_->node->metrics().Rejections(v1::MALFORMED) - before;
  // Not stored at gw1, not relayed: root has never heard of dev-x.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_FALSE(tree_->Device("dev-x").has_value());
  // Its good report goes through.
  Inject("x1368/gw1/dev-x/up/status", report(nullptr, ++seq));
  ASSERT_TRUE(tree_->WaitForDevices({"dev-x"}, [](const v1::DeviceRecord& d) {
    return d.version() == "1.0.0" && d.state() == v1::IDLE;
  }));

  // A batch naming dev-x twice, signed by gw1 itself: the second is refused at root.
  TestNode gw1_key = tree_->pki().Make("gw1", v1::ROLE_INTERMEDIATE, {"dev-*"});
  core::EnvelopeSealer gw1(gw1_key.id, gw1_key.key, gw1_key.cert, nullptr, core::RealClock::Get());
  v1::Body batch;
  batch.mutable_status_batch()->add_reports(
      report([](auto* r) { r->set_state(v1::OFFERED); }, ++seq));
  batch.mutable_status_batch()->add_reports(
      report([](auto* r) { r->set_state(v1::DOWNLOADING); }, ++seq));
  auto root_malformed = [&] { return tree_->root()->node->metrics().Rejections(v1::MALFORMED); };
  const uint64_t root_before = root_malformed();
  // Far above what gw1 sent itself: its own next messages are then refused as replays, so the
  // check ends here.
  Inject("x1368/root/gw1/up/status", *gw1.SealWithSeq("root", batch, 60'000, 1ULL << 62));
  EXPECT_TRUE(WaitFor([&] { return root_malformed() > root_before; }, absl::Seconds(10)))
      << tree_->root()->node->metrics().RenderPrometheus();
  EXPECT_EQ(tree_->Device("dev-x")->state(), v1::OFFERED) << "the second report was taken";
}

// Issue #13: a second connection with a device's client id (a cloned device, a stale process,
// stolen credentials) made the two take the session from each other every few seconds for as
// long as it lasted, and nobody upstream noticed. The device now counts each takeover as an
// alarm that reaches root with its next report, and recovers when the intruder leaves (that it
// backs off meanwhile:
// TransportTest.TwoConnectionsWithOneClientIdBackOffInsteadOfTradingTheSession).
TEST_F(BadInputTest, ASecondConnectionWithADevicesClientIdIsAnAlarmAtRoot) {
  const core::TransportStats before = dev_->transport->stats();
  auto twin = tree_->RawTransport("dev-1");
  ASSERT_OK(twin->Start());
  absl::SleepFor(absl::Seconds(10));
  const core::TransportStats during = dev_->transport->stats();
  // Mosquitto 2.0.11 closes the older connection without a DISCONNECT saying why: what dev-1
  // sees is its connection lost again and again right after it was made. (With a broker that
  // says "session taken over", taken_over counts it and SESSION_TAKEN_OVER is reported.)
  EXPECT_GE(during.quick_losses - before.quick_losses + during.taken_over - before.taken_over, 1u);
  twin->Stop();
  // Alone again: dev-1 is back, reports, and root shows the alarm in its counters.
  EXPECT_TRUE(Reported(v1::LINK_FLAPPING) || Reported(v1::SESSION_TAKEN_OVER))
      << "root never heard of the takeover; dev-1 counts "
      << dev_->node->metrics().RenderPrometheus() << "\nroot has "
      << tree_->Device("dev-1")->ShortDebugString();
  // It may still be waiting out its backoff from the last loss: once back, it stays.
  ASSERT_TRUE(WaitFor([&] { return dev_->transport->connected(); }, absl::Seconds(15)));
  const uint64_t connects = dev_->transport->stats().connects;
  absl::SleepFor(absl::Seconds(3));
  EXPECT_TRUE(dev_->transport->connected());
  EXPECT_EQ(dev_->transport->stats().connects, connects) << "still losing its session";
  ExpectGenuineUpdateStillWorks();
}

TEST_F(BadInputTest, ExpiredAndFutureMessagesAreRefused) {
  auto root_key = core::PrivateKey::LoadPemFile(tree_->pki().root_key_path());
  ASSERT_OK(root_key);
  core::FakeClock past(core::RealClock::Get()->NowMs() - 2 * 3600 * 1000);
  Inject("x1368/gw1/_all/down/cmd", Seal(*root_key, "root", std::nullopt, "_all",
                                         DirectiveBody(SomeManifest(), "c-old"), 5'000'000, past,
                                         /*ttl_ms=*/3600 * 1000));
  EXPECT_TRUE(Reported(v1::EXPIRED));
  core::FakeClock future(core::RealClock::Get()->NowMs() + 24 * 3600 * 1000);
  Inject("x1368/gw1/_all/down/cmd",
         Seal(*root_key, "root", std::nullopt, "_all", DirectiveBody(SomeManifest(), "c-future"),
              5'000'001, future));
  EXPECT_TRUE(Reported(v1::ISSUED_IN_FUTURE));
  ExpectStillOnFactoryFirmware();
  ExpectGenuineUpdateStillWorks();
}

TEST_F(BadInputTest, TruncatedOversizedAndGarbageBytes) {
  auto root_key = core::PrivateKey::LoadPemFile(tree_->pki().root_key_path());
  ASSERT_OK(root_key);
  std::string good =
      Seal(*root_key, "root", std::nullopt, "_all", DirectiveBody(SomeManifest()), 6'000'000);
  Inject("x1368/gw1/_all/down/cmd", good.substr(0, good.size() / 2));
  EXPECT_TRUE(Reported(v1::MALFORMED));
  Inject("x1368/gw1/dev-1/down/cmd", std::string(300 * 1024, 'x'));
  EXPECT_TRUE(Reported(v1::OVERSIZE));
  ExpectStillOnFactoryFirmware();
  ExpectGenuineUpdateStillWorks();
}

// Issue #14: values from the wire are data. A manifest whose version is not SemVer (here one
// that would forge a log line), signed by the real author outside trackerctl and carried by a
// directive root really signed, is refused by the gateway and by the device with the typed
// reason MANIFEST_MALFORMED, each counted and reported up to root.
TEST_F(BadInputTest, AManifestOutsideTheValueGrammarIsRefusedByEveryReceiver) {
  v1::Manifest m = SomeManifest();
  m.set_version("2.5.0\nts=2099 level=critical node=root event=FORGED");
  v1::SignedManifest sm;
  m.SerializeToString(sm.mutable_manifest());
  sm.set_author_id(m.author_id());
  sm.set_alg(v1::ED25519);
  sm.set_signature(*tree_->author().key.Sign(core::SignedKind::kManifest, sm.manifest()));
  *sm.mutable_author_cert() = tree_->author().cert;
  v1::Body body;
  v1::UpdateDirective* d = body.mutable_directive();
  d->set_campaign_id("c-forged");
  *d->mutable_manifest() = sm;
  d->mutable_selector()->set_component("fw");
  // Root's own sealer: the directive itself is genuine, only its manifest breaks the grammar.
  auto sealed = tree_->root()->node->sealer().Seal("_all", body, 600'000);
  ASSERT_OK(sealed);
  Inject("x1368/root/_all/down/cmd", *sealed);  // to gw1
  Inject("x1368/gw1/_all/down/cmd", *sealed);   // to dev-1, as if gw1 had forwarded it
  EXPECT_TRUE(Reported(v1::MANIFEST_MALFORMED));
  EXPECT_TRUE(WaitFor([&] {
    v1::FleetStatus f = tree_->Fleet();
    for (const auto& n : f.nodes()) {
      for (const auto& rc : n.rejections()) {
        if (n.node_id() == "gw1" && rc.reason() == v1::MANIFEST_MALFORMED) return true;
      }
    }
    return false;
  })) << "gw1 did not report refusing the manifest";
  ExpectStillOnFactoryFirmware();
  ExpectGenuineUpdateStillWorks();
}

TEST_F(BadInputTest, MalformedTopicsAreRefused) {
  v1::Body go;
  go.mutable_go()->set_campaign_id("c");
  Inject("x1368/gw1/dev-1/down/bogus", "anything");
  Inject("x1368/gw1/dev-1/down/cmd/extra", "anything");
  EXPECT_TRUE(Reported(v1::BAD_TOPIC));
  ExpectStillOnFactoryFirmware();
  ExpectGenuineUpdateStillWorks();
}

}  // namespace
}  // namespace x1368::testing
