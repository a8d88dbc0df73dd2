// FileSystem (x1368/core/file_system.h): the contract both implementations share, what a
// MemFileSystem's power cut keeps and drops, disk faults, and SQLite on top of it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_system.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/sqlite_db.h"

namespace x1368::core {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::UnorderedElementsAre;
using ::x1368::testing::IsOkAndHolds;
using ::x1368::testing::TempDir;

// --- The contract, on the disk and in memory ---

class FileSystemContractTest : public ::testing::TestWithParam<bool> {
 protected:
  FileSystem& fs() { return GetParam() ? static_cast<FileSystem&>(mem_) : *PosixFileSystem(); }
  std::string Dir() { return GetParam() ? "/data" : tmp_.path(); }

  TempDir tmp_;
  MemFileSystem mem_;
};

TEST_P(FileSystemContractTest, ReadsBackWhatItWrote) {
  ASSERT_OK(fs().MakeDirs(Dir() + "/a/b"));
  std::string f = Dir() + "/a/b/file";
  EXPECT_FALSE(fs().Exists(f));
  EXPECT_TRUE(absl::IsNotFound(fs().Size(f).status()));
  ASSERT_OK(fs().WriteAtomic(f, std::string("hello\0world", 11)));
  EXPECT_THAT(fs().Read(f), IsOkAndHolds(std::string("hello\0world", 11)));
  EXPECT_THAT(fs().Size(f), IsOkAndHolds(11u));
  EXPECT_THAT(fs().ReadRange(f, 6, 100), IsOkAndHolds(std::string("world")));
  EXPECT_THAT(fs().ReadRange(f, 50, 10), IsOkAndHolds(std::string()));
  EXPECT_TRUE(absl::IsResourceExhausted(fs().Read(f, 10).status())) << "read limit";

  // A gap reads as zeros; Truncate shortens and lengthens.
  std::string g = Dir() + "/a/b/gap";
  ASSERT_OK(fs().WriteRange(g, 4, "xy"));
  EXPECT_THAT(fs().Read(g), IsOkAndHolds(std::string("\0\0\0\0xy", 6)));
  ASSERT_OK(fs().Truncate(g, 5));
  EXPECT_THAT(fs().Read(g), IsOkAndHolds(std::string("\0\0\0\0x", 5)));
  ASSERT_OK(fs().Truncate(g, 7));
  EXPECT_THAT(fs().Size(g), IsOkAndHolds(7u));

  EXPECT_THAT(fs().List(Dir() + "/a/b"), IsOkAndHolds(UnorderedElementsAre("file", "gap")));
  ASSERT_OK(fs().Rename(g, Dir() + "/a/b/moved"));
  EXPECT_FALSE(fs().Exists(g));
  EXPECT_THAT(fs().Size(Dir() + "/a/b/moved"), IsOkAndHolds(7u));
  ASSERT_OK(fs().Remove(Dir() + "/a/b/moved"));
  ASSERT_OK(fs().Remove(Dir() + "/a/b/moved")) << "removing a missing file is not an error";
  EXPECT_THAT(fs().List(Dir() + "/a/b"), IsOkAndHolds(ElementsAre("file")));
  EXPECT_TRUE(absl::IsNotFound(fs().Rename(g, f)));

  ASSERT_OK_AND_ASSIGN(std::string digest, Sha256Of(fs(), f));
  EXPECT_EQ(digest, Sha256(std::string("hello\0world", 11)));
}

INSTANTIATE_TEST_SUITE_P(DiskAndMemory, FileSystemContractTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Memory" : "Disk"; });

// --- Power cuts ---

TEST(MemFileSystemTest, PowerCutKeepsWhatWasSyncedAndDropsTheRest) {
  MemFileSystem fs;
  ASSERT_OK(fs.MakeDirs("/d"));
  ASSERT_OK(fs.WriteAtomic("/d/atomic", "durable"));
  ASSERT_OK(fs.WriteRange("/d/never-synced", 0, "lost"));
  ASSERT_OK(fs.WriteRange("/d/partly", 0, "AAAA"));
  ASSERT_OK(fs.Sync("/d/partly"));
  ASSERT_OK(fs.WriteRange("/d/partly", 2, "BBBB"));
  ASSERT_OK(fs.WriteRange("/d/renamed.part", 0, "image"));
  ASSERT_OK(fs.Sync("/d/renamed.part"));
  ASSERT_OK(fs.Rename("/d/renamed.part", "/d/renamed"));
  EXPECT_GT(fs.unsynced_bytes(), 0u);

  fs.PowerCut();

  EXPECT_THAT(fs.Read("/d/atomic"), IsOkAndHolds(std::string("durable")));
  EXPECT_FALSE(fs.Exists("/d/never-synced"));
  EXPECT_THAT(fs.Read("/d/partly"), IsOkAndHolds(std::string("AAAA")));
  EXPECT_THAT(fs.Read("/d/renamed"), IsOkAndHolds(std::string("image")));
  EXPECT_FALSE(fs.Exists("/d/renamed.part"));
  EXPECT_EQ(fs.unsynced_bytes(), 0u);
  EXPECT_GT(fs.bytes_dropped(), 0u);
}

TEST(MemFileSystemTest, CutPowerAfterStopsEveryWriteFromThatPointOn) {
  MemFileSystem fs;
  int cuts = 0;
  ASSERT_OK(fs.WriteAtomic("/before", "kept"));
  fs.CutPowerAfter(2, [&cuts] { ++cuts; });
  ASSERT_OK(fs.WriteRange("/a", 0, "1"));
  ASSERT_OK(fs.Sync("/a"));
  EXPECT_FALSE(fs.powered_off());
  EXPECT_TRUE(absl::IsDataLoss(fs.WriteRange("/a", 1, "2"))) << "the third mutation meets the cut";
  EXPECT_TRUE(fs.powered_off());
  EXPECT_TRUE(absl::IsDataLoss(fs.WriteAtomic("/b", "x")));
  EXPECT_TRUE(absl::IsDataLoss(fs.Remove("/before")));
  EXPECT_EQ(cuts, 1);
  EXPECT_THAT(fs.Read("/a"), IsOkAndHolds(std::string("1"))) << "nothing after the cut applied";

  fs.PowerCut();  // and back on
  EXPECT_FALSE(fs.powered_off());
  EXPECT_THAT(fs.Read("/a"), IsOkAndHolds(std::string("1")));
  EXPECT_THAT(fs.Read("/before"), IsOkAndHolds(std::string("kept")));
  EXPECT_FALSE(fs.Exists("/b"));
  ASSERT_OK(fs.WriteAtomic("/b", "x"));
  EXPECT_EQ(cuts, 1);
}

TEST(MemFileSystemTest, FullAndBrokenDisksFailWritesWithDistinctErrors) {
  MemFileSystem fs;
  ASSERT_OK(fs.WriteAtomic("/a", std::string(100, 'a')));
  fs.SetCapacity(150);
  EXPECT_TRUE(absl::IsResourceExhausted(fs.WriteRange("/b", 0, std::string(60, 'b'))));
  ASSERT_OK(fs.WriteRange("/b", 0, std::string(50, 'b'))) << "exactly full is allowed";
  EXPECT_TRUE(absl::IsResourceExhausted(fs.WriteAtomic("/a", "shrunk")))
      << "an atomic rewrite needs room for its new copy beside the old one";
  ASSERT_OK(fs.Truncate("/b", 40));
  ASSERT_OK(fs.WriteAtomic("/a", "shrunk")) << "with room for the copy, rewriting smaller works";
  ASSERT_OK(fs.WriteRange("/b", 40, std::string(100, 'b'))) << "and frees space";
  fs.Heal();
  fs.FailWrites(true);
  EXPECT_TRUE(absl::IsDataLoss(fs.WriteAtomic("/a", "x")));
  EXPECT_TRUE(absl::IsDataLoss(fs.Sync("/b")));
  EXPECT_THAT(fs.Read("/a"), IsOkAndHolds(std::string("shrunk"))) << "reads still work";
  fs.Heal();
  ASSERT_OK(fs.WriteAtomic("/a", "x"));
}

TEST(MemFileSystemTest, FileKvStoreSurvivesPowerCuts) {
  MemFileSystem fs;
  ASSERT_OK(fs.MakeDirs("/dev"));
  {
    ASSERT_OK_AND_ASSIGN(auto store, FileKvStore::Open("/dev/state.kv", &fs));
    ASSERT_OK(store->Put("seq", "41"));
    ASSERT_OK(store->Put("seq", "42"));
  }
  fs.PowerCut();
  ASSERT_OK_AND_ASSIGN(auto store, FileKvStore::Open("/dev/state.kv", &fs));
  EXPECT_THAT(*store->Get("seq"), Optional(std::string("42")));
}

// --- SQLite on a MemFileSystem ---

int64_t CountRows(SqliteDb& db) {
  auto stmt = db.Prepare("SELECT COUNT(*) FROM t");
  EXPECT_TRUE(stmt.ok()) << stmt.status();
  if (!stmt.ok()) return -1;
  auto row = (*stmt)->Step();
  EXPECT_TRUE(row.ok() && *row);
  return (*stmt)->ColumnInt(0);
}

absl::Status Insert(SqliteDb& db, int n) {
  X1368_RETURN_IF_ERROR(db.Begin());
  for (int i = 0; i < n; ++i) {
    absl::Status s = db.Exec("INSERT INTO t (v) VALUES (randomblob(300))");
    if (!s.ok()) {
      db.Rollback();
      return s;
    }
  }
  return db.Commit();
}

TEST(SqliteOnMemFileSystemTest, CommittedTransactionsSurviveAPowerCutAndOpenOnesVanish) {
  MemFileSystem fs;
  {
    ASSERT_OK_AND_ASSIGN(auto db, SqliteDb::Open("/root.db", &fs));
    ASSERT_OK(db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"));
    for (int i = 0; i < 20; ++i) ASSERT_OK(Insert(*db, 10));
    ASSERT_OK(db->Begin());
    ASSERT_OK(db->Exec("INSERT INTO t (v) VALUES (randomblob(5000))"));
    // The power goes with this transaction still open and its pages written, not synced.
    fs.PowerCut();
  }
  EXPECT_TRUE(fs.Exists("/root.db"));
  ASSERT_OK_AND_ASSIGN(auto db, SqliteDb::Open("/root.db", &fs));
  EXPECT_EQ(CountRows(*db), 200);
  ASSERT_OK(Insert(*db, 1)) << "the recovered database is writable";
  EXPECT_EQ(CountRows(*db), 201);
}

TEST(SqliteOnMemFileSystemTest, ThePowerCutReallyDropsWhatSqliteDidNotSync) {
  // Proves the test above can fail: with synchronous=OFF, SQLite never syncs and a power cut
  // takes committed transactions with it.
  MemFileSystem fs;
  {
    ASSERT_OK_AND_ASSIGN(auto db, SqliteDb::Open("/root.db", &fs));
    ASSERT_OK(db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"));
    ASSERT_OK(Insert(*db, 1));
    ASSERT_OK(db->Exec("PRAGMA synchronous=OFF"));
    ASSERT_OK(Insert(*db, 50));
    EXPECT_EQ(CountRows(*db), 51);
    fs.PowerCut();
  }
  ASSERT_OK_AND_ASSIGN(auto db, SqliteDb::Open("/root.db", &fs));
  EXPECT_EQ(CountRows(*db), 1);
}

TEST(SqliteOnMemFileSystemTest, AFullDiskFailsTheTransactionNamesTheFileAndLosesNothing) {
  MemFileSystem fs;
  ASSERT_OK_AND_ASSIGN(auto db, SqliteDb::Open("/gw/state.db", &fs));
  ASSERT_OK(db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"));
  ASSERT_OK(Insert(*db, 10));
  uint64_t used_before = 0;
  for (const char* f : {"/gw/state.db", "/gw/state.db-wal"}) {
    auto n = fs.Size(f);
    if (n.ok()) used_before += *n;
  }
  fs.SetCapacity(used_before + 8192);
  absl::Status s = Insert(*db, 500);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("/gw/state.db"));
  EXPECT_THAT(s.message(), HasSubstr("full"));
  fs.Heal();
  EXPECT_EQ(CountRows(*db), 10);
  ASSERT_OK(Insert(*db, 500)) << "space back: the same database goes on";
  EXPECT_EQ(CountRows(*db), 510);
}

}  // namespace
}  // namespace x1368::core
