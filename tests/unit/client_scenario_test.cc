// The big state test (STYLE.md): the whole update lifecycle through root -> gateway -> device on
// the in-memory broker, with injected consumer faults and a simulated power cut right after
// every state the transition table knows reaches disk. The crash cases are generated from the
// table itself, so a new state gets its crash test without anyone writing it. After every
// scenario the device must have converged, and its active slot must hold a complete, verified
// image: no crash or fault may brick it.
#include <gtest/gtest.h>

#include <set>

#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "testing/wait.h"
#include "x1368/client/update_state.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_util.h"

namespace x1368::testing {
namespace {

using client::State;

struct Outcome {
  stub::StubFaults faults;
  State final_state;
  v1::Reason reason;
  std::string version;
};

// The faults that lead an update through `state`, and where it then ends.
Outcome OutcomeThrough(State state) {
  Outcome o{{}, v1::CONFIRMED, v1::REASON_UNSPECIFIED, "2.0.0"};
  switch (state) {
    case v1::DECLINED:
      o.faults.decline = true;
      return {o.faults, v1::DECLINED, v1::CONSUMER_DECLINED, "1.0.0"};
    case v1::FAILED:
      o.faults.corrupt_download = true;
      return {o.faults, v1::FAILED, v1::DIGEST_MISMATCH, "1.0.0"};
    case v1::ROLLED_BACK:
      o.faults.trial_boot_fails = true;
      return {o.faults, v1::ROLLED_BACK, v1::TRIAL_BOOT_FAILED, "1.0.0"};
    default:
      return o;
  }
}

std::vector<State> StatesOfTheTable() {
  std::set<State> states;
  for (const client::Transition& t : client::TransitionTable()) {
    if (t.to != v1::IDLE) states.insert(t.to);
  }
  return {states.begin(), states.end()};
}

class ScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tree_ = std::make_unique<TestTree>(nullptr);
    tree_->AddRoot();
    tree_->AddIntermediate("gw1", "root", {"dev-*"});
    image_ = TestPki::MakeImage(200 * 1024, 42);
  }

  ClientNode* AddDevice(ClientSpec spec) {
    ClientNode* c = tree_->AddClient("dev-1", "gw1", std::move(spec));
    EXPECT_TRUE(
        tree_->WaitForDevices({"dev-1"}, [](const auto& d) { return d.version() == "1.0.0"; }));
    return c;
  }

  void StartUpdate() {
    ASSERT_OK(tree_->Publish(image_, "2.0.0", 2));
    ASSERT_OK(tree_->StartCampaign("2.0.0"));
  }

  // The device ended in `o` as root sees it, and its slots are sound.
  void ExpectConverged(ClientNode* c, const Outcome& o, const std::string& label) {
    EXPECT_TRUE(tree_->WaitForDevices({"dev-1"},
                                      [&](const v1::DeviceRecord& d) {
                                        return d.state() == o.final_state &&
                                               d.version() == o.version;
                                      }))
        << label << ": root sees " << tree_->Device("dev-1")->ShortDebugString();
    EXPECT_EQ(tree_->Device("dev-1")->reason(), o.reason) << label;
    v1::BootEnv env = c->consumer->boot_env();
    const v1::SlotInfo& active = env.slots(static_cast<int>(env.active()));
    EXPECT_TRUE(active.installed()) << label;
    EXPECT_FALSE(env.trial_pending()) << label;
    auto digest = core::Sha256File(c->consumer->SlotPath(env.active()));
    ASSERT_OK(digest);
    EXPECT_EQ(*digest, active.sha256()) << label << ": the active slot does not hold its image";
    EXPECT_EQ(active.version(), o.version) << label;
  }

  std::unique_ptr<TestTree> tree_;
  std::string image_;
};

// One test per state of the table (generated from it): one failing state does not hide the rest.
class PowerCutTest : public ScenarioTest, public ::testing::WithParamInterface<State> {};

TEST_P(PowerCutTest, RightAfterTheStateReachesDisk) {
  const State state = GetParam();
  Outcome o = OutcomeThrough(state);
  auto fired = std::make_shared<std::atomic<bool>>(false);
  ClientSpec spec;
  spec.faults = o.faults;
  spec.hooks.crash_after_persist = [state, fired](State s) {
    return s == state && !fired->exchange(true);
  };
  ClientNode* c = AddDevice(spec);
  StartUpdate();
  ASSERT_TRUE(WaitFor([&] { return c->client->crashed(); }))
      << "the update never reached " << client::StateName(state);
  tree_->CrashClient(c);
  ASSERT_OK(tree_->RestartClient(c));
  ExpectConverged(c, o, client::StateName(state));
}

INSTANTIATE_TEST_SUITE_P(EveryStateOfTheTable, PowerCutTest,
                         ::testing::ValuesIn(StatesOfTheTable()),
                         [](const ::testing::TestParamInfo<State>& info) {
                           return client::StateName(info.param);
                         });

TEST_F(ScenarioTest, ConsumerFaultsEndInTheirOutcome) {
  struct Case {
    const char* name;
    stub::StubFaults faults;
    Outcome expected;
  };
  stub::StubFaults none, decline, corrupt, install, boot, health, interrupted;
  decline.decline = true;
  corrupt.corrupt_download = true;
  install.fail_install = true;
  boot.trial_boot_fails = true;
  health.health_check_fails = true;
  interrupted.fail_download_at = 100 * 1024;  // the link breaks halfway; the next attempt resumes
  const Case cases[] = {
      {"happy path", none, {none, v1::CONFIRMED, v1::REASON_UNSPECIFIED, "2.0.0"}},
      {"consumer declines", decline, {decline, v1::DECLINED, v1::CONSUMER_DECLINED, "1.0.0"}},
      {"corrupt download", corrupt, {corrupt, v1::FAILED, v1::DIGEST_MISMATCH, "1.0.0"}},
      {"install fails", install, {install, v1::FAILED, v1::INSTALL_FAILED, "1.0.0"}},
      {"trial image does not boot", boot, {boot, v1::ROLLED_BACK, v1::TRIAL_BOOT_FAILED, "1.0.0"}},
      {"health check fails", health, {health, v1::ROLLED_BACK, v1::TRIAL_BOOT_FAILED, "1.0.0"}},
      {"interrupted download resumes",
       interrupted,
       {interrupted, v1::CONFIRMED, v1::REASON_UNSPECIFIED, "2.0.0"}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    SetUp();
    ClientSpec spec;
    spec.faults = k.faults;
    ClientNode* c = AddDevice(spec);
    StartUpdate();
    ExpectConverged(c, k.expected, k.name);
    tree_.reset();
  }
}

TEST_F(ScenarioTest, ACrashDuringTheTrialIsToleratedOnceThenTheBootloaderReverts) {
  // One unconfirmed reboot of the trial image: the restarted client confirms it.
  {
    auto fired = std::make_shared<std::atomic<bool>>(false);
    ClientSpec spec;
    spec.hooks.crash_after_trial_boot = [fired] { return !fired->exchange(true); };
    ClientNode* c = AddDevice(spec);
    StartUpdate();
    ASSERT_TRUE(WaitFor([&] { return c->client->crashed(); }));
    tree_->CrashClient(c);
    ASSERT_OK(tree_->RestartClient(c));
    ExpectConverged(c, {{}, v1::CONFIRMED, v1::REASON_UNSPECIFIED, "2.0.0"}, "one trial reboot");
  }
  tree_.reset();
  SetUp();
  // Reboots past the limit (max_trial_boots = 2) without a confirmation: the bootloader goes
  // back to the previous image, and the client reports the rollback.
  {
    auto fired = std::make_shared<std::atomic<bool>>(false);
    ClientSpec spec;
    spec.hooks.crash_after_trial_boot = [fired] { return !fired->exchange(true); };
    ClientNode* c = AddDevice(spec);
    StartUpdate();
    ASSERT_TRUE(WaitFor([&] { return c->client->crashed(); }));
    tree_->CrashClient(c);
    ASSERT_OK(stub::StubConsumer::Open(c->spec.consumer).status());  // a reboot the client never saw
    ASSERT_OK(tree_->RestartClient(c));
    ExpectConverged(c, {{}, v1::ROLLED_BACK, v1::TRIAL_BOOT_FAILED, "1.0.0"}, "trial reboot loop");
  }
}

TEST_F(ScenarioTest, ANewerDirectiveSupersedesAnOfferThatHasNoGoYet) {
  ClientNode* c = AddDevice({});
  std::string older = TestPki::MakeImage(50 * 1024, 1);
  ASSERT_OK(tree_->Publish(older, "1.5.0", 2));
  ASSERT_OK(tree_->Publish(image_, "2.0.0", 3));
  ASSERT_OK(tree_->StartCampaign("1.5.0"));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  ExpectConverged(c, {{}, v1::CONFIRMED, v1::REASON_UNSPECIFIED, "2.0.0"}, "superseded");
}

}  // namespace
}  // namespace x1368::testing
