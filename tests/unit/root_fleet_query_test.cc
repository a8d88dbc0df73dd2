// Root's lists (X.1368 §11.2 a) over a real Registry on SQLite: which devices are up to date,
// obsolete, failed, offline or updating against the newest release for their hardware class;
// filters by component and subtree; pages in id order with a cursor; the per-component summary;
// and queries that are refused.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/sqlite_db.h"
#include "x1368/root/fleet_query.h"

namespace x1368::testing {
namespace {

using root::Liveness;
using root::Registry;
using root::Release;

constexpr int64_t kNow = 1'000'000'000;
constexpr int64_t kStale = 60'000;
const Liveness kLiveness{kNow, kStale};

class FleetQueryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = core::SqliteDb::Open(dir_.File("root.db"));
    ASSERT_OK(db);
    db_ = *std::move(db);
    auto registry = Registry::Open(db_.get());
    ASSERT_OK(registry);
    registry_ = *std::move(registry);
  }

  void AddRelease(const std::string& component, const std::string& version, uint64_t sequence,
                  std::vector<std::string> hardware) {
    std::string image = TestPki::MakeImage(1000 + sequence, static_cast<uint32_t>(sequence));
    v1::Manifest m =
        TestPki::ManifestFor(image, component, version, sequence, std::move(hardware), author_.id);
    ASSERT_OK(registry_->AddRelease(
        Release{TestPki::Sign(author_, m), m, dir_.File("images/" + version)}));
  }

  // A device's last report, `age_ms` old.
  v1::DeviceRecord& Add(const std::string& id, const std::string& version, uint64_t sequence,
                        const std::string& path = "gw1", const std::string& hw = "board-a",
                        v1::UpdateState state = v1::IDLE, int64_t age_ms = 1000) {
    v1::DeviceRecord& d = devices_[id];
    d.set_device_id(id);
    d.set_via(path.empty() ? id : path.substr(0, path.find('/')));
    d.set_path(path);
    d.set_component("fw");
    d.set_version(version);
    d.set_sequence_number(sequence);
    d.set_hardware_class(hw);
    d.set_state(state);
    d.set_updated_at_ms(kNow - age_ms);
    return d;
  }

  void Stage() {
    for (const auto& [id, d] : devices_) registry_->StageDevice(d);
  }

  std::vector<std::string> List(v1::DeviceList list, const std::string& component = "",
                                const std::string& subtree = "") {
    v1::DeviceQuery q;
    q.set_list(list);
    q.set_component(component);
    q.set_subtree(subtree);
    q.set_limit(root::kMaxPageSize);
    auto page = root::ListDevices(*registry_, q, kLiveness);
    EXPECT_OK(page);
    std::vector<std::string> ids;
    if (page.ok()) {
      for (const v1::DeviceRecord& d : page->devices()) ids.push_back(d.device_id());
    }
    return ids;
  }

  TempDir dir_;
  TestPki pki_{dir_.path()};
  TestNode author_ = pki_.Issue("author-1", v1::ROLE_AUTHOR, {}, {"fw", "app"});
  std::unique_ptr<core::SqliteDb> db_;
  std::unique_ptr<Registry> registry_;
  std::map<std::string, v1::DeviceRecord> devices_;
};

using Ids = std::vector<std::string>;

TEST_F(FleetQueryTest, ListsJudgeEachDeviceAgainstTheNewestReleaseForItsHardwareClass) {
  AddRelease("fw", "1.0.0", 1, {"board-a", "board-b"});
  AddRelease("fw", "2.0.0", 2, {"board-a"});  // board-b has nothing newer than 1.0.0
  Add("a-new", "2.0.0", 2);
  Add("a-old", "1.0.0", 1);
  Add("b-old", "1.0.0", 1, "gw1", "board-b");
  Add("c-none", "0.9.0", 0, "gw1", "board-c");  // no release applies to it
  Add("a-failed", "1.0.0", 1, "gw1", "board-a", v1::FAILED);
  Add("a-rolled", "1.0.0", 1, "gw1", "board-a", v1::ROLLED_BACK);
  Add("a-busy", "1.0.0", 1, "gw1", "board-a", v1::DOWNLOADING);
  // Its gateway says it is down (heartbeats missed, or its Will).
  Add("a-gone", "2.0.0", 2, "gw1", "board-a", v1::CONFIRMED).set_link_down(true);
  Stage();

  EXPECT_EQ(List(v1::LIST_OBSOLETE), (Ids{"a-busy", "a-failed", "a-old", "a-rolled"}));
  EXPECT_EQ(List(v1::LIST_UP_TO_DATE), (Ids{"a-gone", "a-new", "b-old", "c-none"}));
  EXPECT_EQ(List(v1::LIST_FAILED), (Ids{"a-failed", "a-rolled"}));
  EXPECT_EQ(List(v1::LIST_UPDATING), (Ids{"a-busy"}));
  EXPECT_EQ(List(v1::LIST_OFFLINE), (Ids{"a-gone"}));
  EXPECT_EQ(List(v1::LIST_ALL).size(), 8u);

  // A release for every hardware class makes board-b and board-c obsolete too.
  AddRelease("fw", "3.0.0", 3, {"board-a", "board-b", "board-c"});
  EXPECT_EQ(List(v1::LIST_UP_TO_DATE), Ids{});
  std::optional<v1::DeviceRecord> b = root::ShowDevice(*registry_, "b-old", kLiveness);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->latest_version(), "3.0.0");
  EXPECT_TRUE(b->obsolete());
  EXPECT_TRUE(b->online());
  EXPECT_FALSE(root::ShowDevice(*registry_, "nobody", kLiveness).has_value());
}

// Signals from below (X.1368 §11.1 a.iv): a device that asks for an update, and one that runs an
// image newer than root's newest release for it (ahead of root, never obsolete nor up to date
// by mistake), each have their list.
TEST_F(FleetQueryTest, DevicesThatAskForAnUpdateOrRunAheadOfRootHaveTheirLists) {
  AddRelease("fw", "2.0.0", 2, {"board-a"});
  Add("a-current", "2.0.0", 2);
  Add("a-asks", "2.0.0", 2).set_needs_update("the running image fails its self-check");
  Add("a-ahead", "2.1.0", 5);
  Add("c-none", "9.0.0", 9, "gw1", "board-c");  // no release for it: not ahead of anything
  Stage();
  EXPECT_EQ(List(v1::LIST_NEEDS_UPDATE), Ids{"a-asks"});
  EXPECT_EQ(List(v1::LIST_AHEAD), Ids{"a-ahead"});
  EXPECT_EQ(List(v1::LIST_OBSOLETE), Ids{});
  std::optional<v1::DeviceRecord> ahead = root::ShowDevice(*registry_, "a-ahead", kLiveness);
  ASSERT_TRUE(ahead.has_value());
  EXPECT_TRUE(ahead->ahead_of_root());
  EXPECT_FALSE(ahead->obsolete());
  EXPECT_EQ(ahead->latest_version(), "2.0.0");
  // Once root has a newer release, the device is behind it like any other.
  AddRelease("fw", "3.0.0", 6, {"board-a"});
  EXPECT_EQ(List(v1::LIST_AHEAD), Ids{});
  EXPECT_EQ(List(v1::LIST_OBSOLETE), (Ids{"a-ahead", "a-asks", "a-current"}));
}

TEST_F(FleetQueryTest, ADeviceDirectlyUnderRootIsOfflineOnceItsLastWillCame) {
  Add("dev-direct", "1.0.0", 1, "");
  Stage();
  EXPECT_EQ(List(v1::LIST_OFFLINE), Ids{});
  v1::NodeRecord will;
  will.set_node_id("dev-direct");
  will.set_via("dev-direct");
  will.set_online(false);
  registry_->StageNode(will);
  EXPECT_EQ(List(v1::LIST_OFFLINE), (Ids{"dev-direct"}));
}

TEST_F(FleetQueryTest, FiltersByComponentAndBySubtreeAnywhereOnThePath) {
  Add("d1", "1.0.0", 1, "gw-eu/gw-berlin");
  Add("d2", "1.0.0", 1, "gw-eu/gw-paris");
  Add("d3", "1.0.0", 1, "gw-us");
  Add("d4", "1.0.0", 1, "gw-eu").set_component("app");
  Stage();
  EXPECT_EQ(List(v1::LIST_ALL, "", "gw-eu"), (Ids{"d1", "d2", "d4"}));
  EXPECT_EQ(List(v1::LIST_ALL, "", "gw-berlin"), (Ids{"d1"}));
  EXPECT_EQ(List(v1::LIST_ALL, "", "d3"), (Ids{"d3"}));  // a device is its own subtree
  EXPECT_EQ(List(v1::LIST_ALL, "fw", "gw-eu"), (Ids{"d1", "d2"}));
  EXPECT_EQ(List(v1::LIST_ALL, "app"), (Ids{"d4"}));
  EXPECT_EQ(List(v1::LIST_ALL, "", "gw-mars"), Ids{});
}

TEST_F(FleetQueryTest, PagesFollowTheCursorUntilTheLastHasNone) {
  for (int i = 0; i < 7; ++i) Add(absl::StrCat("dev-", i), "1.0.0", 1);
  Stage();
  v1::DeviceQuery q;
  q.set_limit(3);
  Ids seen;
  int pages = 0;
  while (true) {
    auto page = root::ListDevices(*registry_, q, kLiveness);
    ASSERT_OK(page);
    ++pages;
    for (const v1::DeviceRecord& d : page->devices()) seen.push_back(d.device_id());
    if (page->next_after().empty()) break;
    EXPECT_EQ(page->devices_size(), 3);
    q.set_after(page->next_after());
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, (Ids{"dev-0", "dev-1", "dev-2", "dev-3", "dev-4", "dev-5", "dev-6"}));
  // Exactly a page left: no empty page after it.
  q.set_after("dev-3");
  auto last = root::ListDevices(*registry_, q, kLiveness);
  ASSERT_OK(last);
  EXPECT_EQ(last->devices_size(), 3);
  EXPECT_EQ(last->next_after(), "");
}

TEST_F(FleetQueryTest, MalformedQueriesAreRefusedWithTheirReason) {
  v1::DeviceQuery q;
  q.set_limit(root::kMaxPageSize + 1);
  EXPECT_FALSE(root::ListDevices(*registry_, q, kLiveness).ok());
  q.set_limit(0);
  q.set_subtree("gw/../etc");
  EXPECT_FALSE(root::ListDevices(*registry_, q, kLiveness).ok());
  q.set_subtree("");
  q.set_list(static_cast<v1::DeviceList>(42));
  EXPECT_FALSE(root::ListDevices(*registry_, q, kLiveness).ok());
  q.set_list(v1::LIST_ALL);
  q.set_after(std::string(100, 'x'));
  EXPECT_FALSE(root::ListDevices(*registry_, q, kLiveness).ok());
}

// Issue #13: under gateways, unchanged reports are not relayed (heartbeats stay at the gateway),
// so a device's last report's age says nothing. It is offline when its gateway says so, or when
// a node on its path is down: root's own child by its presence or its stale self-reports, a
// gateway below it by the liveness its parent relays.
TEST_F(FleetQueryTest, ADeviceUnderGatewaysIsOfflineWhenItsGatewayOrAnyNodeOnItsPathIsDown) {
  AddRelease("fw", "1.0.0", 1, {"board-a"});
  Add("quiet", "1.0.0", 1, "gw1", "board-a", v1::IDLE, 10 * kStale);
  Add("said-down", "1.0.0", 1, "gw1").set_link_down(true);
  Add("under-gw2", "1.0.0", 1, "gw2/gw2a");
  Add("under-gw2b", "1.0.0", 1, "gw2/gw2b");
  Add("under-gw3", "1.0.0", 1, "gw3");
  Add("under-gw4", "1.0.0", 1, "gw4/gw4a");
  Stage();
  auto node = [&](const std::string& id, const std::string& via, bool online, int64_t age_ms) {
    v1::NodeRecord n;
    n.set_node_id(id);
    n.set_via(via);
    n.set_online(online);
    n.set_updated_at_ms(kNow - age_ms);
    registry_->StageNode(n);
  };
  node("gw1", "gw1", true, 1000);
  node("gw2", "gw2", true, 1000);
  node("gw2a", "gw2", false, 1000);        // its parent gw2 relayed that it went down
  node("gw2b", "gw2", true, 10 * kStale);  // below root's child: its own reports are not needed
  node("gw3", "gw3", true, 2 * kStale);    // root's child, silent past fleet.stale_after_s
  node("gw4", "gw4", false, 1000);         // root's child, its Will came
  EXPECT_EQ(List(v1::LIST_OFFLINE), (Ids{"said-down", "under-gw2", "under-gw3", "under-gw4"}));
  EXPECT_EQ(List(v1::LIST_ALL).size(), 6u);
}

TEST_F(FleetQueryTest, TheSummaryCountsEveryComponentByListAndVersion) {
  AddRelease("fw", "2.0.0", 2, {"board-a"});
  Add("a", "2.0.0", 2);
  Add("b", "1.0.0", 1, "gw1", "board-a", v1::FAILED);
  Add("c", "1.0.0", 1, "gw1", "board-a", v1::DOWNLOADING).set_link_down(true);
  Add("d", "1.0.0", 1).set_component("app");
  Stage();
  v1::FleetSummary s = root::Summarize(*registry_, kLiveness);
  ASSERT_EQ(s.components_size(), 2);
  const v1::ComponentSummary& app = s.components(0);
  EXPECT_EQ(app.component(), "app");
  EXPECT_EQ(app.devices(), 1u);
  EXPECT_EQ(app.up_to_date(), 1u);  // no release of app applies: nothing newer
  const v1::ComponentSummary& fw = s.components(1);
  EXPECT_EQ(fw.component(), "fw");
  EXPECT_EQ(fw.devices(), 3u);
  EXPECT_EQ(fw.up_to_date(), 1u);
  EXPECT_EQ(fw.obsolete(), 2u);
  EXPECT_EQ(fw.failed(), 1u);
  EXPECT_EQ(fw.offline(), 1u);
  EXPECT_EQ(fw.updating(), 1u);
  ASSERT_EQ(fw.versions_size(), 2);
  EXPECT_EQ(fw.versions(0).version(), "1.0.0");
  EXPECT_EQ(fw.versions(0).devices(), 2u);
  EXPECT_EQ(fw.versions(0).online(), 1u);
  EXPECT_EQ(fw.versions(1).version(), "2.0.0");
  EXPECT_EQ(fw.versions(1).devices(), 1u);
}

}  // namespace
}  // namespace x1368::testing
