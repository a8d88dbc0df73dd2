// End-to-end signed updates through a real Mosquitto, in the three deployment models of
// X.1368 §8.2: hierarchical (root -> intermediate -> cascaded intermediate -> clients),
// client-server (clients directly under root) and intra-device (root and client side by side on
// one local broker).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "testing/broker_tree.h"
#include "testing/mosquitto.h"
#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "testing/wait.h"

namespace x1368::testing {
namespace {

class UpdateTest : public BrokerTreeTest {};

TEST_F(UpdateTest, HierarchicalThreeTiersUpdateEveryDevice) {
  RootNode* root = tree_->AddRoot();
  IntermediateNode* gw1 = tree_->AddIntermediate("gw1", "root", {"gw2", "dev-*"});
  IntermediateNode* gw2 = tree_->AddIntermediate("gw2", "gw1", {"dev-b*"});
  std::vector<std::string> devices = {"dev-a1", "dev-a2", "dev-b1", "dev-b2"};
  tree_->AddClient("dev-a1", "gw1");
  tree_->AddClient("dev-a2", "gw1");
  tree_->AddClient("dev-b1", "gw2");
  tree_->AddClient("dev-b2", "gw2");
  ASSERT_TRUE(tree_->WaitForDevices(devices, [](const v1::DeviceRecord& d) {
    return d.version() == "1.0.0";
  })) << "devices never reported to root";

  std::string image = TestPki::MakeImage(300 * 1024, 7);
  ASSERT_OK(tree_->Publish(image, "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  ASSERT_TRUE(tree_->WaitForVersion(devices, "2.0.0")) << "fleet did not converge";

  // Each device reports through its own path, checked end to end by root, which knows where in
  // the tree each one is (issue #13): the gateways' batches carry it.
  EXPECT_EQ(tree_->Device("dev-b1")->via(), "gw1");
  EXPECT_EQ(tree_->Device("dev-b1")->path(), "gw1/gw2");
  EXPECT_EQ(tree_->Device("dev-a1")->path(), "gw1");
  v1::FleetStatus nodes = tree_->Fleet();
  std::map<std::string, std::string> node_paths;
  for (const v1::NodeRecord& n : nodes.nodes()) node_paths[n.node_id()] = n.path();
  EXPECT_EQ(node_paths["gw1"], "");
  EXPECT_EQ(node_paths["gw2"], "gw1");
  // The gateways cached the verified image: the root served it about once (gw1's fill), not
  // once per device; gw2 filled from gw1.
  EXPECT_TRUE(OnLoop(*gw1->loop, [&] { return gw1->intermediate->cached(core::Sha256(image)); }));
  EXPECT_TRUE(OnLoop(*gw2->loop, [&] { return gw2->intermediate->cached(core::Sha256(image)); }));
  // gw1's fill: the chunk table, then the image in the manifest's 16 KiB chunks.
  uint64_t fill_chunks = 1 + (image.size() + 16 * 1024 - 1) / (16 * 1024);
  EXPECT_LE(Counter(*root->node, "x1368_chunks_served_total"), fill_chunks + 2);
  // No device rejected anything on the way.
  v1::FleetStatus fleet = tree_->Fleet();
  for (const auto& d : fleet.devices()) EXPECT_EQ(d.rejections_size(), 0) << d.device_id();
}

TEST_F(UpdateTest, ClientServerModelUpdatesClientsDirectlyUnderRoot) {
  tree_->AddRoot();
  tree_->AddClient("dev-1", "root");
  tree_->AddClient("dev-2", "root");
  ASSERT_TRUE(tree_->WaitForDevices({"dev-1", "dev-2"},
                                    [](const auto& d) { return d.version() == "1.0.0"; }));
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(100 * 1024, 3), "1.1.0", 2));
  ASSERT_OK(tree_->StartCampaign("1.1.0"));
  EXPECT_TRUE(tree_->WaitForVersion({"dev-1", "dev-2"}, "1.1.0"));
}

TEST_F(UpdateTest, IntraDeviceModelRootAndClientOnOneLocalBroker) {
  // X.1368 §8.2.1 (intra-device): the status tracker's server module runs on the device
  // itself; the client module talks to it over the device-local broker. Same protocol, one hop.
  tree_->AddRoot();
  tree_->AddClient("this-device", "root");
  ASSERT_TRUE(
      tree_->WaitForDevices({"this-device"}, [](const auto& d) { return d.version() == "1.0.0"; }));
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(40 * 1024, 4), "1.0.1", 2));
  ASSERT_OK(tree_->StartCampaign("1.0.1"));
  EXPECT_TRUE(tree_->WaitForVersion({"this-device"}, "1.0.1"));
}

TEST_F(UpdateTest, OfflineDeviceCatchesUpFromRetainedDesiredState) {
  tree_->AddRoot();
  tree_->AddIntermediate("gw1", "root", {"dev-*"});
  ClientNode* online = tree_->AddClient("dev-1", "gw1");
  ClientNode* away = tree_->AddClient("dev-2", "gw1");
  ASSERT_TRUE(tree_->WaitForDevices({"dev-1", "dev-2"},
                                    [](const auto& d) { return d.version() == "1.0.0"; }));
  tree_->CrashClient(away);  // away during the whole campaign
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(64 * 1024, 5), "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  ASSERT_TRUE(tree_->WaitForVersion({"dev-1"}, "2.0.0"));
  (void)online;
  ASSERT_OK(tree_->RestartClient(away));
  EXPECT_TRUE(tree_->WaitForVersion({"dev-2"}, "2.0.0")) << "the returning device did not catch up";
}

TEST_F(UpdateTest, DeviceAlreadyUpToDateIsNotTouched) {
  tree_->AddRoot();
  tree_->AddIntermediate("gw1", "root", {"dev-*"});
  ClientSpec current;
  tree_->AddClient("dev-old", "gw1");
  ClientNode* fresh = tree_->AddClient("dev-new", "gw1", current);
  ASSERT_TRUE(tree_->WaitForDevices({"dev-old", "dev-new"},
                                    [](const auto& d) { return d.version() == "1.0.0"; }));
  std::string image = TestPki::MakeImage(32 * 1024, 9);
  ASSERT_OK(tree_->Publish(image, "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  ASSERT_TRUE(tree_->WaitForVersion({"dev-old", "dev-new"}, "2.0.0"));
  // A second campaign to the same release: both already run it; nothing is downloaded again.
  v1::BootEnv before = fresh->consumer->boot_env();
  auto again = tree_->StartCampaign("2.0.0");
  ASSERT_OK(again);
  // Sentinel instead of a sleep: a campaign to 3.0.0 follows the same path (root -> gw1 -> device,
  // each hop in order), so once the device runs 3.0.0 it has handled the second campaign.
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(32 * 1024, 10), "3.0.0", 3));
  ASSERT_OK(tree_->StartCampaign("3.0.0"));
  ASSERT_TRUE(tree_->WaitForVersion({"dev-new"}, "3.0.0"));
  // The second campaign was never taken up: no record of it, and the slot that held 2.0.0 then
  // is the one 3.0.0 replaced (2.0.0 was not installed a second time in between).
  v1::UpdateRecord record = fresh->client->record();
  for (const std::string& c : record.finished_campaigns()) EXPECT_NE(c, again->campaign_id());
  v1::BootEnv after = fresh->consumer->boot_env();
  EXPECT_NE(after.active(), before.active());
  EXPECT_EQ(after.slots(static_cast<int>(before.active())).version(), "2.0.0");
  EXPECT_EQ(tree_->DeviceRejections("dev-new", v1::NOT_NEWER), 0u);
}

TEST_F(UpdateTest, NodesReconnectAndResubscribeAfterTheBrokerDies) {
  tree_->AddRoot();
  IntermediateNode* gw1 = tree_->AddIntermediate("gw1", "root", {"dev-*"});
  ClientNode* dev = tree_->AddClient("dev-1", "gw1");
  ASSERT_TRUE(
      tree_->WaitForDevices({"dev-1"}, [](const auto& d) { return d.version() == "1.0.0"; }));
  uint64_t connects = dev->transport->stats().connects;
  // The broker dies without a goodbye and comes back empty (no persistence): every subscription
  // is gone, so the update below only works if every node re-subscribed on its own.
  broker_->Kill();
  ASSERT_OK(broker_->Restart());
  ASSERT_TRUE(WaitFor([&] {
    return dev->transport->stats().connects > connects && gw1->transport->connected() &&
           tree_->root()->transport->connected();
  })) << "nodes did not reconnect";
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(64 * 1024, 12), "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  EXPECT_TRUE(tree_->WaitForVersion({"dev-1"}, "2.0.0"));
}

}  // namespace
}  // namespace x1368::testing
