// The intermediate module on the in-memory broker (no Mosquitto): one cache fill from upstream
// for the whole subtree, and storage failures that are counted and reported upward, never
// dropped.
#include <gtest/gtest.h>

#include <filesystem>

#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "testing/wait.h"
#include "x1368/core/file_util.h"

namespace x1368::testing {
namespace {

class IntermediateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tree_ = std::make_unique<TestTree>(nullptr);
    tree_->AddRoot();
    gw_ = tree_->AddIntermediate("gw1", "root", {"dev-*"});
    image_ = TestPki::MakeImage(200 * 1024, 3);
  }

  // A counter of the gateway's, read on its loop.
  int64_t GatewayCounter(const std::string& name) {
    return OnLoop(*gw_->loop, [&] { return gw_->node->metrics().Counter(name, "")->value(); });
  }

  // Count of `reason` among the rejections a gateway reported to root about itself.
  uint64_t NodeRejections(const std::string& id, v1::Reason reason) {
    const v1::FleetStatus fleet = tree_->Fleet();
    for (const v1::NodeRecord& n : fleet.nodes()) {
      if (n.node_id() != id) continue;
      for (const v1::ReasonCount& rc : n.rejections()) {
        if (rc.reason() == reason) return rc.count();
      }
    }
    return 0;
  }

  std::unique_ptr<TestTree> tree_;
  IntermediateNode* gw_ = nullptr;
  std::string image_;
};

TEST_F(IntermediateTest, FetchesTheImageOnceForTheWholeSubtree) {
  std::vector<std::string> ids = {"dev-1", "dev-2", "dev-3", "dev-4"};
  for (const std::string& id : ids) tree_->AddClient(id, "gw1");
  ASSERT_TRUE(tree_->WaitForDevices(ids, [](const auto& d) { return d.version() == "1.0.0"; }));
  ASSERT_OK(tree_->Publish(image_, "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  ASSERT_TRUE(tree_->WaitForVersion(ids, "2.0.0"));
  // 200 KiB in the manifest's 16 KiB chunks: 13 chunks from root, whatever the children.
  EXPECT_EQ(GatewayCounter("x1368_chunks_fetched_total"), 13);
  // To each child: its chunk table, then 13 chunks.
  EXPECT_GE(GatewayCounter("x1368_chunks_served_total"), 4 * (1 + 13));
}

// Issue #13: devices that start together with their gateway publish their first report before
// the gateway has subscribed, and the broker (no retained message, no session yet) drops it.
// The gateway asks its children for their state once its link is up, so root hears from every
// device now, not only at the next periodic report (an hour here).
TEST_F(IntermediateTest, DevicesThatReportedBeforeTheirGatewaySubscribedAreAskedAgain) {
  ClientSpec quiet;
  quiet.report_interval = absl::Hours(1);
  std::vector<std::string> ids = {"late-1", "late-2", "late-3", "late-4"};
  for (const std::string& id : ids) tree_->AddClient(id, "gw2", quiet);
  tree_->AddIntermediate("gw2", "root", {"late-*"});
  EXPECT_TRUE(tree_->WaitForDevices(
      ids, [](const auto& d) { return d.version() == "1.0.0"; }, absl::Seconds(10)));
}

// The same one tier up: the lower gateway heard its devices, but its batch went out before its
// own parent had subscribed. The upper gateway's request travels down the whole subtree.
TEST_F(IntermediateTest, AGatewayThatSubscribesLateGetsItsWholeSubtreeReported) {
  ClientSpec quiet;
  quiet.report_interval = absl::Hours(1);
  tree_->fake_broker()->KeepLog(true);
  tree_->AddIntermediate("gw-low", "gw-mid", {"low-*"});
  std::vector<std::string> ids = {"low-1", "low-2", "low-3"};
  for (const std::string& id : ids) tree_->AddClient(id, "gw-low", quiet);
  // Every report has gone out in gw-low's batches (into nothing) before gw-mid exists.
  auto batched = [&] {
    int reports = 0;
    for (const core::MqttMessage& m : tree_->fake_broker()->Published()) {
      v1::Envelope env;
      v1::Body body;
      if (m.topic == "x1368/gw-mid/gw-low/up/status" && env.ParseFromString(m.payload) &&
          body.ParseFromString(env.body())) {
        reports += body.status_batch().reports_size();
      }
    }
    return reports;
  };
  ASSERT_TRUE(WaitFor([&] { return batched() >= 3; }, absl::Seconds(10)));
  tree_->AddIntermediate("gw-mid", "root", {"gw-low", "low-*"});
  EXPECT_TRUE(tree_->WaitForDevices(
      ids, [](const auto& d) { return d.version() == "1.0.0"; }, absl::Seconds(10)));
}

TEST_F(IntermediateTest, ACacheThatCannotBeWrittenIsCountedAndReportedUpward) {
  tree_->AddClient("dev-1", "gw1");
  ASSERT_TRUE(
      tree_->WaitForDevices({"dev-1"}, [](const auto& d) { return d.version() == "1.0.0"; }));
  // The cache directory becomes a file: the gateway cannot store the image.
  std::string cache = gw_->dir + "/cache";
  std::filesystem::remove_all(cache);
  ASSERT_OK(core::WriteFileAtomic(cache, "not a directory"));
  ASSERT_OK(tree_->Publish(image_, "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  // The device is told the image is unavailable and keeps its firmware ...
  EXPECT_TRUE(tree_->WaitForDevices({"dev-1"}, [](const v1::DeviceRecord& d) {
    return d.state() == v1::FAILED;
  })) << tree_->Device("dev-1")->ShortDebugString();
  EXPECT_EQ(tree_->Device("dev-1")->version(), "1.0.0");
  // ... and root sees the gateway's storage error in the gateway's own report.
  EXPECT_TRUE(WaitFor([&] { return NodeRejections("gw1", v1::STORAGE_ERROR) > 0; }))
      << "root never heard of the gateway's storage error";
}

}  // namespace
}  // namespace x1368::testing
