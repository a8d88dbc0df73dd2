// Metrics (issue #16 item 6): the exposition prometheus-cpp renders for a node, read back as a
// scraper reads it (every series with HELP and TYPE, x1368_build_info, process_*), and the
// gauges root and a gateway compute when scraped, after an update whose outcome is known.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "testing/exposition.h"
#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "testing/wait.h"
#include "x1368/core/clock.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/executor.h"
#include "x1368/core/metrics.h"
#include "x1368/core/version.h"

namespace x1368::testing {
namespace {

std::string Errors(const Exposition& e) { return absl::StrJoin(e.errors, "\n"); }

TEST(MetricsExpositionTest, EverySeriesHasHelpAndType) {
  core::Metrics m;
  m.Counter("x1368_things_total", "Things")->Add(3);
  m.Counter("x1368_things_total", "Things", {{"kind", "b"}})->Add(2);
  m.Gauge("x1368_level", "A level")->Set(-4);
  m.CountRejection(v1::MALFORMED);
  m.CountRejection(v1::REPLAY, /*from_parent=*/true);
  m.Histogram("x1368_wait_seconds", "Waits", {0.1, 1})->Observe(0.5);
  m.AddCollector([] {
    prometheus::MetricFamily f =
        core::Family("x1368_collected", "At scrape time", prometheus::MetricType::Gauge);
    core::AddSample(&f, {{"v", "quote\" backslash\\ newline\n"}}, 7);
    return core::Metrics::Families{f};
  });
  const std::string text = m.RenderPrometheus();
  Exposition e = ParseExposition(text);
  EXPECT_TRUE(e.errors.empty()) << Errors(e) << "\n" << text;
  EXPECT_EQ(e.Sum("x1368_things_total"), 5);
  EXPECT_EQ(e.Sum("x1368_things_total", {{"kind", "b"}}), 2);
  EXPECT_EQ(e.type["x1368_things_total"], "counter");
  EXPECT_EQ(e.Sum("x1368_level"), -4);
  EXPECT_EQ(e.type["x1368_level"], "gauge");
  EXPECT_EQ(e.Sum("x1368_rejections_total", {{"reason", "MALFORMED"}}), 1);
  EXPECT_EQ(e.Sum("x1368_parent_rejections_total", {{"reason", "REPLAY"}}), 1);
  EXPECT_EQ(e.type["x1368_wait_seconds"], "histogram");
  EXPECT_EQ(e.Sum("x1368_wait_seconds_count"), 1);
  EXPECT_EQ(e.Sum("x1368_wait_seconds_bucket", {{"le", "1"}}), 1);
  EXPECT_EQ(e.Sum("x1368_wait_seconds_bucket", {{"le", "0.1"}}), 0);
  // Label values escaped so that they read back as they were.
  EXPECT_EQ(e.Sum("x1368_collected", {{"v", "quote\" backslash\\ newline\n"}}), 7) << text;
}

TEST(MetricsExpositionTest, BuildInfoAndProcessMetrics) {
  Exposition e = ParseExposition(core::Metrics().RenderPrometheus());
  EXPECT_TRUE(e.errors.empty()) << Errors(e);
  EXPECT_EQ(
      e.Sum("x1368_build_info", {{"version", core::kVersion}, {"revision", core::kGitRevision}}),
      1);
  EXPECT_GT(e.Sum("process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(e.Sum("process_cpu_seconds_total"), 0);
  EXPECT_GE(e.Sum("process_open_fds"), 3);  // stdin, stdout, stderr at least
  // Started after the year 2020, and not in the future.
  EXPECT_GT(e.Sum("process_start_time_seconds"), 1.6e9);
  EXPECT_LE(e.Sum("process_start_time_seconds"), absl::ToUnixSeconds(absl::Now()) + 1);
  EXPECT_EQ(e.type["process_cpu_seconds_total"], "counter");
}

TEST(MetricsExpositionTest, ARemovedCollectorIsNoLongerRun) {
  core::Metrics m;
  auto id = m.AddCollector([] {
    return core::Metrics::Families{
        core::Family("x1368_gone", "Collected", prometheus::MetricType::Gauge)};
  });
  EXPECT_TRUE(absl::StrContains(m.RenderPrometheus(), "# TYPE x1368_gone gauge"));
  m.RemoveCollector(id);
  EXPECT_FALSE(absl::StrContains(m.RenderPrometheus(), "x1368_gone"));
}

// Gauges a loop owns are computed on it; a loop that stopped costs the scrape those, not a hang.
TEST(MetricsExpositionTest, CollectedOnLoopRunsOnTheLoopAndSkipsAStoppedOne) {
  core::Executor executor(core::RealClock::Get(), /*threads=*/1, /*blocking_threads=*/1);
  core::EventLoop loop(&executor);
  core::Metrics m;
  m.AddCollector(core::CollectedOnLoop(&loop, [&loop] {
    prometheus::MetricFamily f =
        core::Family("x1368_on_loop", "Where it ran", prometheus::MetricType::Gauge);
    core::AddSample(&f, {}, loop.InLoopThread() ? 1 : 0);
    return core::Metrics::Families{f};
  }));
  EXPECT_EQ(ParseExposition(m.RenderPrometheus()).Sum("x1368_on_loop"), 1);
  loop.Stop();
  const absl::Time start = absl::Now();
  Exposition e = ParseExposition(m.RenderPrometheus());
  EXPECT_FALSE(e.Has("x1368_on_loop"));
  EXPECT_TRUE(e.Has("x1368_build_info"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

// Root with a gateway and its two devices, on the in-memory broker, updated from 1.0.0 to 2.0.0:
// what root's and the gateway's scrapes say of them. (Devices directly under root, counted as
// subtree="direct", are in DaemonsProcessTest.MetricsAfterAnUpdateCountDevicesByVersionAndState.)
class MetricsTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tree_ = std::make_unique<TestTree>(nullptr);
    tree_->AddRoot();
    gw_ = tree_->AddIntermediate("gw1", "root", {"dev-*"});
    tree_->AddClient("dev-a", "gw1");
    tree_->AddClient("dev-b", "gw1");
  }
  Exposition Scrape(nodes::Node* n) {
    Exposition e = ParseExposition(n->metrics()->RenderPrometheus());
    EXPECT_TRUE(e.errors.empty()) << Errors(e);
    return e;
  }

  std::unique_ptr<TestTree> tree_;
  IntermediateNode* gw_ = nullptr;
  const std::vector<std::string> devices_ = {"dev-a", "dev-b"};
};

TEST_F(MetricsTreeTest, RootAndGatewayGaugesAfterAnUpdate) {
  ASSERT_TRUE(
      tree_->WaitForDevices(devices_, [](const auto& d) { return d.version() == "1.0.0"; }));
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(40 * 1024, 2), "2.0.0", 2));
  ASSERT_OK_AND_ASSIGN(v1::CampaignInfo campaign, tree_->StartCampaign("2.0.0"));
  ASSERT_TRUE(tree_->WaitForVersion(devices_, "2.0.0"));
  ASSERT_TRUE(tree_->WaitForDevices(
      devices_, [](const v1::DeviceRecord& d) { return d.state() == v1::CONFIRMED; }));

  // The gateway's view is what it relayed last; it may lag root's by a batch.
  ASSERT_TRUE(WaitFor([&] {
    return Scrape(gw_).Sum("x1368_subtree_devices",
                           {{"version", "2.0.0"}, {"state", "CONFIRMED"}, {"online", "true"}}) == 2;
  })) << gw_->metrics()->RenderPrometheus();

  Exposition root = Scrape(tree_->root());
  const std::map<std::string, std::string> confirmed = {
      {"component", "fw"}, {"version", "2.0.0"}, {"state", "CONFIRMED"}, {"online", "true"}};
  auto in = [&](const std::string& subtree) {
    auto labels = confirmed;
    labels["subtree"] = subtree;
    return labels;
  };
  EXPECT_EQ(root.Sum("x1368_devices", in("gw1")), 2);
  EXPECT_EQ(root.Sum("x1368_devices"), 2);
  EXPECT_EQ(root.Sum("x1368_devices", {{"version", "1.0.0"}}), -1);  // no series left
  EXPECT_EQ(root.Sum("x1368_nodes", {{"online", "true"}}), 1);
  const std::string id = campaign.campaign_id();
  EXPECT_EQ(root.Sum("x1368_campaign_devices", {{"campaign", id}, {"status", "targeted"}}), 2);
  EXPECT_EQ(root.Sum("x1368_campaign_devices", {{"campaign", id}, {"status", "confirmed"}}), 2);
  EXPECT_EQ(root.Sum("x1368_campaign_devices", {{"campaign", id}, {"status", "failed"}}), 0);
  // Every device report root took, each from its own signature time: at least one per device.
  EXPECT_GE(root.Sum("x1368_report_latency_seconds_count"), 2);
  EXPECT_EQ(root.type["x1368_report_latency_seconds"], "histogram");
  // Root's own link (to its children's broker) and the gateway's up it.
  EXPECT_EQ(root.Sum("x1368_mqtt_connected", {{"link", "downstream"}}), 1);
  EXPECT_EQ(Scrape(gw_).Sum("x1368_mqtt_connected", {{"link", "upstream"}}), 1);
}

}  // namespace
}  // namespace x1368::testing
