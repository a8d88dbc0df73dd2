// Fleet status at scale (issue #13, X.1368 §10 e.ii, §11.2 a-b) through a real Mosquitto: each
// intermediate keeps its subtree's registry, relays only what changed, and sends up a signed
// summary that its parent checks against its own view; a parent whose view differs asks for the
// whole subtree again. Root's view must equal the devices'.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "testing/broker_tree.h"
#include "testing/mosquitto.h"
#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "testing/wait.h"
#include "x1368/core/sqlite_db.h"
#include "x1368/nodes/nodes.h"

namespace x1368::testing {
namespace {

class FleetStatusTest : public BrokerTreeTest {
 protected:
  const v1::NodeRecord* FindNode(const v1::FleetStatus& f, const std::string& id) {
    for (const v1::NodeRecord& n : f.nodes()) {
      if (n.node_id() == id) return &n;
    }
    return nullptr;
  }

  // Root's summary of `gateway` agrees with root's own view and covers `devices`.
  bool SummaryAgrees(const std::string& gateway, uint64_t devices) {
    return WaitFor(
        [&] {
          v1::FleetStatus f = tree_->Fleet();
          const v1::NodeRecord* n = FindNode(f, gateway);
          return n != nullptr && n->summary_matches() && n->summary_devices() == devices;
        },
        absl::Seconds(20), absl::Milliseconds(100));
  }
};

// Root -> 2 gateways -> 4 gateways -> 200 devices, started bottom up (devices before their
// gateways, gateways before root): nobody was listening when the devices first reported, so
// root learns everything from the gateways' summaries and resends. Then a campaign for half of
// them: root's view, its lists and every gateway's summary equal what the devices run. At rest,
// the devices' heartbeats stay at their gateways.
TEST_F(FleetStatusTest, TwoTiersOf200DevicesStartedBottomUpRootSeesExactlyWhatTheyRun) {
  const std::vector<std::pair<std::string, std::string>> leaves = {
      {"gw1a", "gw1"}, {"gw1b", "gw1"}, {"gw2a", "gw2"}, {"gw2b", "gw2"}};
  std::vector<std::string> devices;
  std::map<std::string, std::string> hardware;
  for (const auto& [leaf, top] : leaves) {
    for (int i = 0; i < 50; ++i) {
      std::string id = absl::StrCat("dev-", leaf, "-", i);
      ClientSpec spec;
      spec.hardware_class = i % 2 == 0 ? "board-a" : "board-b";
      spec.report_interval = absl::Seconds(2);
      tree_->AddClient(id, leaf, spec);
      devices.push_back(id);
      hardware[id] = spec.hardware_class;
    }
  }
  std::map<std::string, IntermediateNode*> gateways;
  for (const auto& [leaf, top] : leaves) {
    gateways[leaf] = tree_->AddIntermediate(leaf, top, {absl::StrCat("dev-", leaf, "-*")});
  }
  gateways["gw1"] = tree_->AddIntermediate("gw1", "root", {"gw1*", "dev-gw1*"});
  gateways["gw2"] = tree_->AddIntermediate("gw2", "root", {"gw2*", "dev-gw2*"});
  const absl::Time root_started = absl::Now();
  tree_->AddRoot();
  ASSERT_TRUE(tree_->WaitForDevices(
      devices, [](const v1::DeviceRecord& d) { return d.version() == "1.0.0" && d.online(); },
      absl::Seconds(10)))
      << "not every device was visible at root within 10 s of root's start";
  const absl::Duration visible_after = absl::Now() - root_started;
  ASSERT_TRUE(SummaryAgrees("gw1", 100));
  ASSERT_TRUE(SummaryAgrees("gw2", 100));
  std::cerr << "200 devices visible at root " << absl::FormatDuration(visible_after)
            << " after root started\n";

  std::string image = TestPki::MakeImage(20 * 1024, 3);
  ASSERT_OK(tree_->Publish(image, "2.0.0", 2, {"board-a"}));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  std::vector<std::string> board_a;
  for (const std::string& id : devices) {
    if (hardware[id] == "board-a") board_a.push_back(id);
  }
  ASSERT_TRUE(tree_->WaitForDevices(
      board_a,
      [](const v1::DeviceRecord& d) {
        return d.version() == "2.0.0" && d.state() == v1::CONFIRMED;
      },
      absl::Seconds(90)))
      << "the board-a devices did not all confirm 2.0.0";
  ASSERT_TRUE(SummaryAgrees("gw1", 100));
  ASSERT_TRUE(SummaryAgrees("gw2", 100));

  // Root's view of each device equals the device's own report, path included.
  v1::FleetStatus fleet = tree_->Fleet();
  ASSERT_EQ(fleet.devices_size(), 200);
  for (const v1::DeviceRecord& d : fleet.devices()) {
    const bool a = hardware[d.device_id()] == "board-a";
    EXPECT_EQ(d.version(), a ? "2.0.0" : "1.0.0") << d.device_id();
    EXPECT_EQ(d.state(), a ? v1::CONFIRMED : v1::IDLE) << d.device_id();
    EXPECT_TRUE(d.online()) << d.device_id();
    const std::string leaf = d.device_id().substr(4, 4);
    EXPECT_EQ(d.path(), absl::StrCat(leaf.substr(0, 3), "/", leaf)) << d.device_id();
    // Outcomes are verified end to end at root, never taken on a gateway's word.
    if (a) {
      EXPECT_EQ(d.vouched_by(), "") << d.device_id();
    }
  }
  // Each gateway's registry holds its subtree: 50 under a leaf, 100 under a top gateway, by
  // version and state.
  for (const auto& [id, gw] : gateways) {
    v1::SubtreeSummary s = OnLoop(*gw->loop, [gw = gw] { return gw->intermediate->Summary(); });
    EXPECT_EQ(s.devices(), id.size() == 3 ? 100u : 50u) << id;
    uint64_t confirmed = 0, idle = 0;
    for (const v1::SummaryCount& c : s.counts()) {
      if (c.version() == "2.0.0" && c.state() == v1::CONFIRMED && c.online())
        confirmed += c.devices();
      if (c.version() == "1.0.0" && c.state() == v1::IDLE && c.online()) idle += c.devices();
    }
    EXPECT_EQ(confirmed, s.devices() / 2) << id;
    EXPECT_EQ(idle, s.devices() / 2) << id;
  }

  // At rest: 200 devices send a heartbeat every 2 s; root hears none of them.
  RootNode* root = tree_->root();
  const uint64_t root_reports = Counter(*root->node, "x1368_device_reports_total");
  uint64_t heartbeats = 0;
  for (const auto& [leaf, top] : leaves) {
    heartbeats += Counter(*gateways[leaf]->node, "x1368_heartbeats_total");
  }
  absl::SleepFor(absl::Seconds(6));
  uint64_t heartbeats_after = 0;
  for (const auto& [leaf, top] : leaves) {
    heartbeats_after += Counter(*gateways[leaf]->node, "x1368_heartbeats_total");
  }
  EXPECT_GE(heartbeats_after - heartbeats, 200u) << "the devices' heartbeats stopped";
  EXPECT_LT(Counter(*root->node, "x1368_device_reports_total") - root_reports, 10u)
      << "unchanged reports reached root";
  // And progress was taken on the gateways' word, so root verified fewer device signatures
  // than it recorded reports.
  EXPECT_GT(Counter(*root->node, "x1368_relayed_reports_vouched_total"), 0u);
}

// A root that lost its device records (a store put back from an old copy, a table lost): the
// gateway's next summary disagrees with root's view, root asks for the whole subtree, and gets
// every device back within seconds, counted as SUMMARY_MISMATCH.
TEST_F(FleetStatusTest, ARootThatLostItsDeviceRecordsGetsThemBackFromTheSummaries) {
  tree_->AddRoot();
  tree_->AddIntermediate("gw1", "root", {"gw2", "dev-*"});
  tree_->AddIntermediate("gw2", "gw1", {"dev-b*"});
  std::vector<std::string> devices = {"dev-a1", "dev-a2", "dev-b1", "dev-b2"};
  tree_->AddClient("dev-a1", "gw1");
  tree_->AddClient("dev-a2", "gw1");
  tree_->AddClient("dev-b1", "gw2");
  tree_->AddClient("dev-b2", "gw2");
  ASSERT_TRUE(tree_->WaitForDevices(devices, [](const v1::DeviceRecord& d) { return d.online(); }));
  ASSERT_TRUE(SummaryAgrees("gw1", 4));

  ASSERT_OK(tree_->RestartRoot([](const std::string& dir) {
    auto db = core::SqliteDb::Open(dir + "/" + nodes::kRootDatabase);
    ASSERT_OK(db);
    ASSERT_OK((*db)->Exec("DELETE FROM devices"));
  }));
  ASSERT_EQ(tree_->Fleet().devices_size(), 0);
  EXPECT_TRUE(tree_->WaitForDevices(
      devices, [](const v1::DeviceRecord& d) { return d.online() && d.version() == "1.0.0"; },
      absl::Seconds(15)))
      << "root did not get its devices back";
  EXPECT_TRUE(SummaryAgrees("gw1", 4));
  EXPECT_GE(tree_->root()->node->metrics().Rejections(v1::SUMMARY_MISMATCH), 1u);
  EXPECT_EQ(tree_->Device("dev-b1")->path(), "gw1/gw2");
}

// "Show me device X": root asks along the device's path (gw1 passes it on to gw2), and gets the
// device's own signed report, which it verifies end to end and finds equal to its record, with
// gw2's log of its last exchanges with the device. Unknown devices and devices no gateway holds
// are said so.
TEST_F(FleetStatusTest, ShowMeDeviceXBringsTheDevicesOwnReportAndItsGatewaysLog) {
  tree_->AddRoot();
  tree_->AddIntermediate("gw1", "root", {"gw2", "dev-*"});
  IntermediateNode* gw2 = tree_->AddIntermediate("gw2", "gw1", {"dev-b*"});
  tree_->AddClient("dev-a1", "gw1");
  tree_->AddClient("dev-b1", "gw2");
  ASSERT_TRUE(tree_->WaitForDevices({"dev-a1", "dev-b1"},
                                    [](const v1::DeviceRecord& d) { return d.online(); }));
  absl::SleepFor(absl::Seconds(3));  // a heartbeat or two into gw2's log
  auto view = tree_->root()->root->ShowDeviceLive("dev-b1", absl::Seconds(5));
  ASSERT_OK(view);
  EXPECT_EQ(view->detail().gateway(), "gw2");
  EXPECT_TRUE(view->detail().online());
  EXPECT_GT(view->detail().last_seen_ms(), 0);
  EXPECT_TRUE(view->report_verified()) << view->report_error();
  EXPECT_TRUE(view->matches_root());
  EXPECT_EQ(view->record().path(), "gw1/gw2");
  std::vector<std::string> what;
  for (const v1::CommEntry& e : view->detail().log()) what.push_back(e.what());
  EXPECT_NE(std::find(what.begin(), what.end(), "heartbeat"), what.end())
      << view->detail().ShortDebugString();
  EXPECT_NE(std::find(what.begin(), what.end(), "desired state"), what.end())
      << view->detail().ShortDebugString();
  EXPECT_LE(view->detail().log_size(), 16);

  auto direct = tree_->root()->root->ShowDeviceLive("dev-a1", absl::Seconds(5));
  ASSERT_OK(direct);
  EXPECT_EQ(direct->detail().gateway(), "gw1");
  EXPECT_TRUE(direct->report_verified());

  EXPECT_EQ(tree_->root()->root->ShowDeviceLive("dev-nobody", absl::Seconds(1)).status().code(),
            absl::StatusCode::kNotFound);
  // gw2 is killed: nobody answers for dev-b1 in time.
  gw2->Reset();
  auto gone = tree_->root()->root->ShowDeviceLive("dev-b1", absl::Seconds(2));
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kDeadlineExceeded) << gone.status();
}

// A gateway that lost its registry (its table gone while it was down) rebuilds it: its direct
// devices answer its request at connect, and its cascaded gateway, whose summary now disagrees,
// resends its whole subtree. Nothing reaches root twice as news, and root's view stays whole.
TEST_F(FleetStatusTest, AGatewayThatLostItsRegistryRebuildsItFromItsChildren) {
  tree_->AddRoot();
  IntermediateNode* gw1 = tree_->AddIntermediate("gw1", "root", {"gw2", "dev-*"});
  tree_->AddIntermediate("gw2", "gw1", {"dev-b*"});
  std::vector<std::string> devices = {"dev-a1", "dev-b1", "dev-b2"};
  tree_->AddClient("dev-a1", "gw1");
  tree_->AddClient("dev-b1", "gw2");
  tree_->AddClient("dev-b2", "gw2");
  ASSERT_TRUE(tree_->WaitForDevices(devices, [](const v1::DeviceRecord& d) { return d.online(); }));
  ASSERT_TRUE(SummaryAgrees("gw1", 3));

  ASSERT_OK(tree_->RestartIntermediate(gw1, [](const std::string& dir) {
    auto db = core::SqliteDb::Open(dir + "/" + nodes::kIntermediateDatabase);
    ASSERT_OK(db);
    ASSERT_OK((*db)->Exec("DELETE FROM subtree"));
  }));
  EXPECT_TRUE(WaitFor(
      [&] {
        v1::SubtreeSummary s = OnLoop(*gw1->loop, [&] { return gw1->intermediate->Summary(); });
        return s.devices() == 3;
      },
      absl::Seconds(15), absl::Milliseconds(100)))
      << "gw1 did not rebuild its registry";
  EXPECT_GE(gw1->node->metrics().Rejections(v1::SUMMARY_MISMATCH), 1u);
  EXPECT_TRUE(SummaryAgrees("gw1", 3));
  for (const std::string& id : devices) EXPECT_TRUE(tree_->Device(id)->online()) << id;
}

}  // namespace
}  // namespace x1368::testing
