// The durable key-value stores (x1368/core/kv_store.h): FileKvStore for devices, SqliteKvStore
// for trackers, MemKvStore and FaultyKvStore for tests.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/file_util.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/sqlite_db.h"

namespace x1368::core {
namespace {

using ::testing::Optional;
using ::x1368::testing::HasReason;
using ::x1368::testing::TempDir;

std::optional<std::string> MustGet(KvStore& store, const std::string& key) {
  auto v = store.Get(key);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : std::nullopt;
}

const std::string kBinary("\x00\x01\xff\x00zz", 6);

// The contract every implementation shares.
void ExpectBasicContract(KvStore& store) {
  EXPECT_EQ(MustGet(store, "missing"), std::nullopt);
  ASSERT_OK(store.Put("a", "1"));
  EXPECT_THAT(MustGet(store, "a"), Optional(std::string("1")));
  ASSERT_OK(store.Put("a", "2"));  // overwrite
  EXPECT_THAT(MustGet(store, "a"), Optional(std::string("2")));
  ASSERT_OK(store.Write({{"b", kBinary}, {"c", ""}, {"a", "3"}}));
  EXPECT_THAT(MustGet(store, "a"), Optional(std::string("3")));
  EXPECT_THAT(MustGet(store, "b"), Optional(kBinary));
  EXPECT_THAT(MustGet(store, "c"), Optional(std::string("")));
}

TEST(MemKvStoreTest, BasicContractAndWriteCount) {
  MemKvStore store;
  ExpectBasicContract(store);
  EXPECT_EQ(store.writes(), 3u);
}

TEST(FileKvStoreTest, BasicContract) {
  TempDir dir;
  auto store = FileKvStore::Open(dir.File("kv"));
  ASSERT_OK(store);
  ExpectBasicContract(**store);
}

TEST(FileKvStoreTest, MissingFileIsAnEmptyStore) {
  TempDir dir;
  auto store = FileKvStore::Open(dir.File("kv"));
  ASSERT_OK(store);
  EXPECT_EQ(MustGet(**store, "x"), std::nullopt);
  EXPECT_FALSE(PathExists(dir.File("kv")));  // nothing written until the first Write
}

TEST(FileKvStoreTest, PersistsAcrossReopen) {
  TempDir dir;
  {
    auto store = FileKvStore::Open(dir.File("kv"));
    ASSERT_OK(store);
    ASSERT_OK((*store)->Write({{"seq", "42"}, {"bin", kBinary}}));
    ASSERT_OK((*store)->Put("seq", "43"));
  }
  auto reopened = FileKvStore::Open(dir.File("kv"));
  ASSERT_OK(reopened);
  EXPECT_THAT(MustGet(**reopened, "seq"), Optional(std::string("43")));
  EXPECT_THAT(MustGet(**reopened, "bin"), Optional(kBinary));
  EXPECT_EQ(MustGet(**reopened, "other"), std::nullopt);
}

class FileKvCorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = FileKvStore::Open(path_);
    ASSERT_OK(store);
    ASSERT_OK((*store)->Write({{"seq", "42"}, {"state", std::string(100, 's')}}));
    size_ = std::filesystem::file_size(path_);
    ASSERT_GT(size_, 40u);
  }
  void FlipByte(uint64_t offset) {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x01);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
  }

  TempDir dir_;
  const std::string path_ = dir_.File("kv");
  uint64_t size_ = 0;
};

TEST_F(FileKvCorruptionTest, TruncatedFileIsStorageError) {
  std::filesystem::resize_file(path_, size_ - 1);
  EXPECT_THAT(FileKvStore::Open(path_), HasReason(v1::STORAGE_ERROR));
  std::filesystem::resize_file(path_, size_ / 2);
  EXPECT_THAT(FileKvStore::Open(path_), HasReason(v1::STORAGE_ERROR));
  std::filesystem::resize_file(path_, 10);  // shorter than the checksum
  EXPECT_THAT(FileKvStore::Open(path_), HasReason(v1::STORAGE_ERROR));
}

TEST_F(FileKvCorruptionTest, EmptyFileIsStorageError) {
  std::filesystem::resize_file(path_, 0);
  EXPECT_THAT(FileKvStore::Open(path_), HasReason(v1::STORAGE_ERROR));
}

TEST_F(FileKvCorruptionTest, FlippedPayloadByteIsStorageError) {
  FlipByte(size_ - 5);
  EXPECT_THAT(FileKvStore::Open(path_), HasReason(v1::STORAGE_ERROR));
}

TEST_F(FileKvCorruptionTest, FlippedChecksumByteIsStorageError) {
  FlipByte(3);
  EXPECT_THAT(FileKvStore::Open(path_), HasReason(v1::STORAGE_ERROR));
}

TEST_F(FileKvCorruptionTest, ExtraTrailingBytesAreStorageError) {
  std::ofstream(path_, std::ios::app | std::ios::binary) << "junk";
  EXPECT_THAT(FileKvStore::Open(path_), HasReason(v1::STORAGE_ERROR));
}

TEST(FileKvStoreTest, FailedWriteChangesNothing) {
  TempDir dir;
  auto store = FileKvStore::Open(dir.File("no-such-dir/kv"));
  ASSERT_OK(store);
  EXPECT_THAT((*store)->Put("a", "1"), HasReason(v1::STORAGE_ERROR));
  EXPECT_EQ(MustGet(**store, "a"), std::nullopt);
}

TEST(SqliteKvStoreTest, BasicContract) {
  TempDir dir;
  auto db = SqliteDb::Open(dir.File("node.db"));
  ASSERT_OK(db);
  auto store = SqliteKvStore::Open(db->get());
  ASSERT_OK(store);
  ExpectBasicContract(**store);
}

TEST(SqliteKvStoreTest, PersistsAcrossReopen) {
  TempDir dir;
  {
    auto db = SqliteDb::Open(dir.File("node.db"));
    ASSERT_OK(db);
    auto store = SqliteKvStore::Open(db->get());
    ASSERT_OK(store);
    ASSERT_OK((*store)->Write({{"x", "1"}, {"y", kBinary}}));
  }
  auto db = SqliteDb::Open(dir.File("node.db"));
  ASSERT_OK(db);
  auto store = SqliteKvStore::Open(db->get());  // the table exists already: fine
  ASSERT_OK(store);
  EXPECT_THAT(MustGet(**store, "x"), Optional(std::string("1")));
  EXPECT_THAT(MustGet(**store, "y"), Optional(kBinary));
}

TEST(SqliteKvStoreTest, MultiPairWriteIsAtomic) {
  TempDir dir;
  auto db = SqliteDb::Open(dir.File("node.db"));
  ASSERT_OK(db);
  auto store = SqliteKvStore::Open(db->get());
  ASSERT_OK(store);
  ASSERT_OK((*store)->Put("a", "old"));
  // Make the second row of the next write fail inside the transaction.
  ASSERT_OK(
      (*db)->Exec("CREATE TRIGGER refuse_bad BEFORE INSERT ON kv WHEN NEW.key = 'bad' "
                  "BEGIN SELECT RAISE(ABORT, 'refused'); END"));
  EXPECT_THAT((*store)->Write({{"a", "new"}, {"bad", "x"}, {"c", "3"}}),
              HasReason(v1::STORAGE_ERROR));
  EXPECT_THAT(MustGet(**store, "a"), Optional(std::string("old")));
  EXPECT_EQ(MustGet(**store, "bad"), std::nullopt);
  EXPECT_EQ(MustGet(**store, "c"), std::nullopt);
  // The store stays usable: the failed transaction was rolled back.
  ASSERT_OK((*store)->Write({{"a", "newer"}, {"c", "3"}}));
  EXPECT_THAT(MustGet(**store, "a"), Optional(std::string("newer")));
  EXPECT_THAT(MustGet(**store, "c"), Optional(std::string("3")));
}

// Issue #14, item 7: every error about a tracker's database names its file, whatever failed:
// opening, a statement, a constraint, a commit, a row the caller cannot parse.
TEST(SqliteErrorsTest, EveryErrorNamesTheDatabaseFile) {
  TempDir dir;
  const std::string path = dir.File("state/root.db");
  ASSERT_OK(MakeDirs(dir.File("state")));
  auto names_file = [&](const absl::Status& s) {
    return !s.ok() && absl::StrContains(s.message(), absl::StrCat("sqlite ", path, ": "));
  };

  // Not a database at all.
  ASSERT_OK(WriteFileAtomic(path, std::string(4096, 'x')));
  auto garbage = SqliteDb::Open(path);
  ASSERT_FALSE(garbage.ok());
  EXPECT_TRUE(names_file(garbage.status())) << garbage.status();
  EXPECT_THAT(std::string(garbage.status().message()), ::testing::HasSubstr("not a database"));
  auto garbage_ro = SqliteDb::OpenReadOnly(path);
  EXPECT_TRUE(names_file(garbage_ro.status())) << garbage_ro.status();
  ASSERT_OK(RemoveFile(path));

  // A database that cannot be opened (its directory is missing) and one that does not exist.
  auto nowhere = SqliteDb::Open(dir.File("missing/root.db"));
  ASSERT_FALSE(nowhere.ok());
  EXPECT_THAT(std::string(nowhere.status().message()),
              ::testing::HasSubstr(absl::StrCat("sqlite ", dir.File("missing/root.db"), ": ")));
  auto absent = SqliteDb::OpenReadOnly(path);
  EXPECT_TRUE(names_file(absent.status())) << absent.status();

  auto db = SqliteDb::Open(path);
  ASSERT_OK(db);
  EXPECT_TRUE(names_file((*db)->Exec("INSERT INTO nowhere VALUES (1)")));
  auto bad_sql = (*db)->Prepare("SELEKT 1");
  EXPECT_TRUE(names_file(bad_sql.status())) << bad_sql.status();
  ASSERT_OK((*db)->Exec("CREATE TABLE t (k TEXT PRIMARY KEY)"));
  auto insert = (*db)->Prepare("INSERT INTO t VALUES (?)");
  ASSERT_OK(insert);
  ASSERT_OK((*insert)->Bind(1, "a").Run());
  absl::Status duplicate = (*insert)->Bind(1, "a").Run();
  EXPECT_TRUE(names_file(duplicate)) << duplicate;
  EXPECT_TRUE(names_file((*db)->Commit()));  // no transaction to commit
  absl::Status corrupt = (*db)->Corrupt("a stored release does not parse");
  EXPECT_TRUE(names_file(corrupt)) << corrupt;
  EXPECT_THAT(corrupt, HasReason(v1::STORAGE_ERROR));

  // Through the key-value store: its table gone, a read and a write fail naming the file.
  auto store = SqliteKvStore::Open(db->get());
  ASSERT_OK(store);
  ASSERT_OK((*db)->Exec("DROP TABLE kv"));
  auto read = (*store)->Get("own_seq");
  EXPECT_TRUE(names_file(read.status())) << read.status();
  absl::Status write = (*store)->Put("own_seq", "1");
  EXPECT_TRUE(names_file(write)) << write;
  EXPECT_THAT(write, HasReason(v1::STORAGE_ERROR));
}

// The online backup (SQLite's backup API) of a database in use, written as a file, opened read
// only, checked and copied into another database: everything committed is there, the source
// stays usable, and what it writes afterwards is not in the backup.
TEST(SqliteBackupTest, ASnapshotOfADatabaseInUseRestoresIntoAnother) {
  TempDir dir;
  auto db = SqliteDb::Open(dir.File("root.db"));
  ASSERT_OK(db);
  auto store = SqliteKvStore::Open(db->get());
  ASSERT_OK(store);
  for (int i = 0; i < 500; ++i) {
    ASSERT_OK((*store)->Put(absl::StrCat("key-", i), std::string(100, static_cast<char>(i))));
  }
  auto snapshot = (*db)->Snapshot();
  ASSERT_OK(snapshot);
  ASSERT_OK((*store)->Put("after", "not in the backup"));
  ASSERT_OK(WriteFileAtomic(dir.File("backup.db"), *snapshot));

  auto backup = SqliteDb::OpenReadOnly(dir.File("backup.db"));
  ASSERT_OK(backup);
  ASSERT_OK((*backup)->CheckIntegrity());
  auto restored = SqliteDb::Open(dir.File("restored.db"));
  ASSERT_OK(restored);
  ASSERT_OK((*restored)->CopyFrom(**backup));
  ASSERT_OK((*restored)->CheckIntegrity());
  auto restored_store = SqliteKvStore::Open(restored->get());
  ASSERT_OK(restored_store);
  for (int i : {0, 250, 499}) {
    EXPECT_THAT(MustGet(**restored_store, absl::StrCat("key-", i)),
                Optional(std::string(100, static_cast<char>(i))));
  }
  EXPECT_EQ(MustGet(**restored_store, "after"), std::nullopt);
  ASSERT_OK((*restored_store)->Put("new", "1")) << "the restored database is writable";
  // Reopened as a node reopens it: WAL, everything there.
  restored->reset();
  auto reopened = SqliteDb::Open(dir.File("restored.db"));
  ASSERT_OK(reopened);
  auto reopened_store = SqliteKvStore::Open(reopened->get());
  ASSERT_OK(reopened_store);
  EXPECT_THAT(MustGet(**reopened_store, "key-7"), Optional(std::string(100, '\x07')));
  EXPECT_THAT(MustGet(**reopened_store, "new"), Optional(std::string("1")));
  // The source went on working.
  EXPECT_THAT(MustGet(**store, "after"), Optional(std::string("not in the backup")));
}

TEST(SqliteBackupTest, ACorruptBackupFailsItsIntegrityCheckNamingTheFile) {
  TempDir dir;
  auto db = SqliteDb::Open(dir.File("root.db"));
  ASSERT_OK(db);
  ASSERT_OK((*db)->Exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)"));
  ASSERT_OK((*db)->Exec("CREATE INDEX tv ON t (v)"));
  for (int i = 0; i < 300; ++i) {
    ASSERT_OK((*db)->Exec(absl::StrCat("INSERT INTO t (v) VALUES (randomblob(200))")));
  }
  auto snapshot = (*db)->Snapshot();
  ASSERT_OK(snapshot);
  std::string damaged = *snapshot;
  for (size_t i = damaged.size() / 2; i < damaged.size() / 2 + 4096; ++i) damaged[i] ^= 0x5a;
  ASSERT_OK(WriteFileAtomic(dir.File("damaged.db"), damaged));
  auto backup = SqliteDb::OpenReadOnly(dir.File("damaged.db"));
  absl::Status s = backup.ok() ? (*backup)->CheckIntegrity() : backup.status();
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(dir.File("damaged.db")));
}

TEST(FaultyKvStoreTest, PassesThroughUntilToldToFail) {
  MemKvStore base;
  FaultyKvStore store(&base);
  ExpectBasicContract(store);
  store.FailWritesAfter(2);
  ASSERT_OK(store.Put("w1", "1"));
  ASSERT_OK(store.Put("w2", "2"));
  EXPECT_THAT(store.Put("w3", "3"), HasReason(v1::STORAGE_ERROR));
  EXPECT_THAT(store.Put("w4", "4"), HasReason(v1::STORAGE_ERROR));
  EXPECT_EQ(MustGet(base, "w3"), std::nullopt);                   // a failed write reaches nothing
  EXPECT_THAT(MustGet(store, "w2"), Optional(std::string("2")));  // reads still work

  store.FailReads(true);
  EXPECT_THAT(store.Get("w1"), HasReason(v1::STORAGE_ERROR));

  store.Heal();
  EXPECT_THAT(MustGet(store, "w1"), Optional(std::string("1")));
  ASSERT_OK(store.Put("w3", "3"));
  EXPECT_THAT(MustGet(base, "w3"), Optional(std::string("3")));
}

TEST(FaultyKvStoreTest, FailWritesAfterZeroFailsAtOnce) {
  MemKvStore base;
  FaultyKvStore store(&base);
  store.FailWritesAfter(0);
  EXPECT_THAT(store.Put("a", "1"), HasReason(v1::STORAGE_ERROR));
  EXPECT_EQ(base.writes(), 0u);
}

}  // namespace
}  // namespace x1368::core
