// Root's Registry on a real SQLite database in a temporary directory (no broker, no Root):
// releases and campaigns are written at once and found again, device and node reports are
// staged in memory and reach disk only with Commit(), everything survives reopening the
// database, and a Commit() that fails keeps what was staged for the next one and leaves the
// connection usable.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/sqlite_db.h"
#include "x1368/root/registry.h"

namespace x1368::testing {
namespace {

using root::Campaign;
using root::Registry;
using root::Release;

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Reopen()); }

  // Closes the registry and its database and opens both again: only what reached disk is left.
  void Reopen() {
    registry_.reset();
    db_.reset();
    auto db = core::SqliteDb::Open(path_);
    ASSERT_OK(db);
    db_ = *std::move(db);
    auto registry = Registry::Open(db_.get());
    ASSERT_OK(registry);
    registry_ = *std::move(registry);
  }

  // What another reader of the same file sees right now: a second connection and registry.
  std::unique_ptr<Registry> OnDisk() {
    auto db = core::SqliteDb::Open(path_);
    EXPECT_OK(db);
    other_db_ = *std::move(db);
    auto registry = Registry::Open(other_db_.get());
    EXPECT_OK(registry);
    return *std::move(registry);
  }

  Release MakeRelease(const std::string& version, uint64_t sequence, uint32_t seed) {
    std::string image = TestPki::MakeImage(1000 + seed, seed);
    v1::Manifest m = TestPki::ManifestFor(image, "fw", version, sequence, {"board-a"}, author_.id);
    return Release{TestPki::Sign(author_, m), m, dir_.File("images/" + version)};
  }

  static Campaign MakeCampaign(const std::string& id, int64_t expires_at_ms) {
    Campaign c;
    c.info.set_campaign_id(id);
    c.info.set_component("fw");
    c.info.set_version("2.0.0");
    c.info.set_state("active");
    c.directive_envelope = "envelope of " + id;
    c.directive_digest = std::string(32, static_cast<char>(id.size()));
    c.expires_at_ms = expires_at_ms;
    return c;
  }

  static v1::DeviceRecord Device(const std::string& id, const std::string& version) {
    v1::DeviceRecord d;
    d.set_device_id(id);
    d.set_component("fw");
    d.set_version(version);
    d.set_state(v1::IDLE);
    return d;
  }

  static v1::NodeRecord NodeRec(const std::string& id, bool online) {
    v1::NodeRecord n;
    n.set_node_id(id);
    n.set_online(online);
    return n;
  }

  static std::vector<std::string> DeviceVersions(const Registry& r) {
    std::vector<std::string> out;
    for (const v1::DeviceRecord& d : r.Devices()) out.push_back(d.device_id() + "@" + d.version());
    return out;
  }

  TempDir dir_;
  TestPki pki_{dir_.path()};
  TestNode author_ = pki_.Issue("author-1", v1::ROLE_AUTHOR, {}, {"fw"});
  const std::string path_ = dir_.File("root.db");
  std::unique_ptr<core::SqliteDb> db_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<core::SqliteDb> other_db_;
};

TEST_F(RegistryTest, ReleasesAreFoundByVersionAndByDigestAndSurviveReopening) {
  Release r1 = MakeRelease("1.0.0", 1, 1);
  Release r2 = MakeRelease("2.0.0", 2, 2);
  ASSERT_OK(registry_->AddRelease(r1));
  ASSERT_OK(registry_->AddRelease(r2));

  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "in memory" : "after reopening");
    auto found = registry_->FindRelease("fw", "2.0.0");
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->manifest.sequence_number(), 2u);
    EXPECT_EQ(found->manifest.sha256(), r2.manifest.sha256());
    EXPECT_EQ(found->signed_manifest.SerializeAsString(), r2.signed_manifest.SerializeAsString());
    EXPECT_EQ(found->image_path, r2.image_path);

    auto by_digest = registry_->FindReleaseByDigest(r1.manifest.sha256());
    ASSERT_TRUE(by_digest.has_value());
    EXPECT_EQ(by_digest->manifest.version(), "1.0.0");

    EXPECT_FALSE(registry_->FindRelease("fw", "3.0.0").has_value());
    EXPECT_FALSE(registry_->FindRelease("other", "2.0.0").has_value());
    EXPECT_FALSE(registry_->FindReleaseByDigest(std::string(32, 'x')).has_value());
    EXPECT_EQ(registry_->Releases().size(), 2u);
    ASSERT_NO_FATAL_FAILURE(Reopen());
  }
}

// A version names one release for good (X.1368 §11.3 e): the table's key refuses a second row
// for it, and neither memory nor disk change. (Root answers the identical resubmission
// idempotently before it gets here; see root_release_test.)
TEST_F(RegistryTest, ASecondReleaseOfTheSameVersionIsRefusedAndTheFirstKept) {
  Release first = MakeRelease("1.0.0", 1, 1);
  Release again = MakeRelease("1.0.0", 7, 9);
  ASSERT_OK(registry_->AddRelease(first));
  EXPECT_FALSE(registry_->AddRelease(again).ok());
  EXPECT_FALSE(registry_->AddRelease(first).ok());  // even the very same one: no second row

  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "in memory" : "after reopening");
    ASSERT_EQ(registry_->Releases().size(), 1u);
    EXPECT_EQ(registry_->FindRelease("fw", "1.0.0")->manifest.sequence_number(), 1u);
    EXPECT_FALSE(registry_->FindReleaseByDigest(again.manifest.sha256()).has_value());
    ASSERT_NO_FATAL_FAILURE(Reopen());
  }
}

TEST_F(RegistryTest, CampaignsAreActiveUntilTheyExpireAndSurviveReopening) {
  ASSERT_OK(registry_->AddCampaign(MakeCampaign("fw-2.0.0-1", 1000)));
  ASSERT_OK(registry_->AddCampaign(MakeCampaign("fw-2.0.0-22", 5000)));
  EXPECT_FALSE(registry_->AddCampaign(MakeCampaign("fw-2.0.0-1", 9000)).ok());  // id taken

  auto active_ids = [this](int64_t now) {
    std::vector<std::string> ids;
    for (const Campaign& c : registry_->ActiveCampaigns(now)) ids.push_back(c.info.campaign_id());
    return ids;
  };
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "in memory" : "after reopening");
    EXPECT_EQ(registry_->campaign_count(), 2u);
    EXPECT_EQ(active_ids(0), (std::vector<std::string>{"fw-2.0.0-1", "fw-2.0.0-22"}));
    EXPECT_EQ(active_ids(999), (std::vector<std::string>{"fw-2.0.0-1", "fw-2.0.0-22"}));
    // Expired at its expiry time, as an envelope is (EnvelopeOpener: expires_at_ms <= now).
    EXPECT_EQ(active_ids(1000), (std::vector<std::string>{"fw-2.0.0-22"}));
    EXPECT_EQ(active_ids(4999), (std::vector<std::string>{"fw-2.0.0-22"}));
    EXPECT_TRUE(active_ids(5000).empty());

    std::vector<Campaign> all = registry_->ActiveCampaigns(0);
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[1].directive_envelope, "envelope of fw-2.0.0-22");
    EXPECT_EQ(all[1].directive_digest, std::string(32, static_cast<char>(11)));
    EXPECT_EQ(all[1].expires_at_ms, 5000);
    EXPECT_EQ(all[0].expires_at_ms, 1000);  // not the refused duplicate's 9000
    // Expired campaigns are still listed for the operator.
    EXPECT_EQ(registry_->Campaigns().size(), 2u);
    ASSERT_NO_FATAL_FAILURE(Reopen());
  }
}

TEST_F(RegistryTest, StagedDevicesAndNodesReachDiskOnlyWithCommit) {
  registry_->StageDevice(Device("dev-1", "1.0.0"));
  registry_->StageNode(NodeRec("gw1", true));
  EXPECT_TRUE(registry_->dirty());
  // Answered from memory at once...
  EXPECT_EQ(DeviceVersions(*registry_), (std::vector<std::string>{"dev-1@1.0.0"}));
  ASSERT_TRUE(registry_->Node("gw1").has_value());
  EXPECT_TRUE(registry_->Node("gw1")->online());
  // ...but not on disk yet.
  EXPECT_TRUE(OnDisk()->Devices().empty());
  EXPECT_TRUE(OnDisk()->Nodes().empty());

  ASSERT_OK(registry_->Commit());
  EXPECT_FALSE(registry_->dirty());
  EXPECT_EQ(DeviceVersions(*OnDisk()), (std::vector<std::string>{"dev-1@1.0.0"}));
  EXPECT_EQ(OnDisk()->Nodes().size(), 1u);

  // A newer report of the same device replaces the row; nothing staged is lost by reopening
  // only if it was committed.
  registry_->StageDevice(Device("dev-1", "2.0.0"));
  registry_->StageDevice(Device("dev-2", "1.0.0"));
  ASSERT_OK(registry_->Commit());
  registry_->StageDevice(Device("dev-3", "1.0.0"));  // never committed
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(DeviceVersions(*registry_), (std::vector<std::string>{"dev-1@2.0.0", "dev-2@1.0.0"}));
  EXPECT_FALSE(registry_->dirty());
  ASSERT_TRUE(registry_->Node("gw1").has_value());
  EXPECT_TRUE(registry_->Node("gw1")->online());
  EXPECT_FALSE(registry_->Node("gw2").has_value());
}

// Root shares its broker's queue among its direct children only (Root::ChildWindow): gateways
// and devices that report through another gateway fetch nothing from root.
TEST_F(RegistryTest, OnlyNodesAndDevicesThatReportThemselvesAreDirectChildren) {
  v1::NodeRecord gw1 = NodeRec("gw1", true);
  gw1.set_via("gw1");
  v1::NodeRecord gw2 = NodeRec("gw2", true);  // cascaded under gw1
  gw2.set_via("gw1");
  v1::DeviceRecord under_gw2 = Device("dev-1", "1.0.0");
  under_gw2.set_via("gw1");
  v1::DeviceRecord direct = Device("dev-root", "1.0.0");
  direct.set_via("dev-root");
  registry_->StageNode(gw1);
  registry_->StageNode(gw2);
  registry_->StageDevice(under_gw2);
  EXPECT_EQ(registry_->direct_child_count(), 1u);
  registry_->StageDevice(direct);
  registry_->StageNode(gw1);  // reported again: still one child
  EXPECT_EQ(registry_->direct_child_count(), 2u);
  ASSERT_OK(registry_->Commit());
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(registry_->direct_child_count(), 2u);
  direct.set_via("gw1");  // the device moved under a gateway
  registry_->StageDevice(direct);
  EXPECT_EQ(registry_->direct_child_count(), 1u);
}

TEST_F(RegistryTest, CommitWithNothingStagedTouchesNothing) {
  ASSERT_OK(db_->Exec("DROP TABLE devices; DROP TABLE nodes;"));
  EXPECT_OK(registry_->Commit());  // would fail if it wrote anything
}

// A write that fails inside the transaction (here a trigger refuses node rows) rolls the whole
// batch back, devices included, reports the error and keeps everything staged; once the cause
// is gone the next Commit() writes it all.
TEST_F(RegistryTest, AFailedCommitWritesNothingAndKeepsEverythingStagedForTheNextOne) {
  ASSERT_OK(
      db_->Exec("CREATE TRIGGER refuse_nodes BEFORE INSERT ON nodes BEGIN"
                " SELECT RAISE(ABORT, 'disk says no'); END;"));
  registry_->StageDevice(Device("dev-1", "1.0.0"));
  registry_->StageNode(NodeRec("gw1", true));
  absl::Status s = registry_->Commit();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("disk says no"));
  EXPECT_TRUE(registry_->dirty());
  EXPECT_TRUE(OnDisk()->Devices().empty()) << "half a batch was committed";
  EXPECT_EQ(DeviceVersions(*registry_), (std::vector<std::string>{"dev-1@1.0.0"}));

  ASSERT_OK(db_->Exec("DROP TRIGGER refuse_nodes"));
  ASSERT_OK(registry_->Commit());
  EXPECT_FALSE(registry_->dirty());
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(DeviceVersions(*registry_), (std::vector<std::string>{"dev-1@1.0.0"}));
  EXPECT_TRUE(registry_->Node("gw1").has_value());
}

// A table that is gone fails before the transaction starts: reported, and kept staged.
TEST_F(RegistryTest, ACommitThatCannotPrepareKeepsEverythingStaged) {
  ASSERT_OK(db_->Exec("DROP TABLE devices"));
  registry_->StageDevice(Device("dev-1", "1.0.0"));
  EXPECT_FALSE(registry_->Commit().ok());
  EXPECT_TRUE(registry_->dirty());
  ASSERT_OK(db_->Exec("CREATE TABLE devices (device_id TEXT PRIMARY KEY, record BLOB NOT NULL)"));
  ASSERT_OK(registry_->Commit());
  EXPECT_EQ(DeviceVersions(*OnDisk()), (std::vector<std::string>{"dev-1@1.0.0"}));
}

// COMMIT itself can fail and SQLite may then leave the transaction open (a deferred constraint
// here; SQLITE_BUSY or an I/O error in the field). The registry must not stay inside it: every
// later Commit() would fail to BEGIN, and a release or campaign added meanwhile would be folded
// into a transaction that never commits, lost at the next restart.
TEST_F(RegistryTest, AFailedCommitStatementDoesNotLeaveTheConnectionInATransaction) {
  ASSERT_OK(db_->Exec(
      "PRAGMA foreign_keys = ON;"
      "CREATE TABLE parents (id TEXT PRIMARY KEY);"
      "CREATE TABLE orphans (parent TEXT REFERENCES parents(id) DEFERRABLE INITIALLY DEFERRED);"
      "CREATE TRIGGER make_orphan AFTER INSERT ON devices BEGIN"
      " INSERT INTO orphans VALUES ('nobody'); END;"));
  registry_->StageDevice(Device("dev-1", "1.0.0"));
  absl::Status failed = registry_->Commit();
  EXPECT_FALSE(failed.ok());
  EXPECT_THAT(std::string(failed.message()), ::testing::HasSubstr("FOREIGN KEY"));
  EXPECT_TRUE(registry_->dirty());

  ASSERT_OK(db_->Exec("DROP TRIGGER make_orphan"));
  ASSERT_OK(registry_->AddRelease(MakeRelease("1.0.0", 1, 1)));
  ASSERT_OK(registry_->Commit());
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(DeviceVersions(*registry_), (std::vector<std::string>{"dev-1@1.0.0"}));
  EXPECT_TRUE(registry_->FindRelease("fw", "1.0.0").has_value());
}

TEST_F(RegistryTest, AStoredRowThatDoesNotParseFailsOpeningWithStorageError) {
  ASSERT_OK(db_->Exec("INSERT INTO nodes VALUES ('gw1', x'ffffffff')"));
  auto reopened = Registry::Open(db_.get());
  EXPECT_THAT(reopened, HasReason(v1::STORAGE_ERROR));
}

// Issue #14, item 7: a row root cannot read back is an error naming the database file.
TEST_F(RegistryTest, ARowThatDoesNotParseNamesTheDatabaseFile) {
  ASSERT_OK(registry_->AddRelease(MakeRelease("2.0.0", 2, 1)));
  ASSERT_OK(db_->Exec("UPDATE releases SET signed_manifest = X'ffffffff'"));
  registry_.reset();
  auto reopened = Registry::Open(db_.get());
  ASSERT_FALSE(reopened.ok());
  EXPECT_THAT(reopened, HasReason(v1::STORAGE_ERROR));
  EXPECT_TRUE(absl::StrContains(reopened.status().message(), "sqlite " + path_ + ": "))
      << reopened.status();
}

}  // namespace
}  // namespace x1368::testing
