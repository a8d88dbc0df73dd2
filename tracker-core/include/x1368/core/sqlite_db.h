// A thin RAII layer over SQLite for the trackers' stores (docs/architecture.md §9): the database
// opens in WAL mode with full synchronous commits, statements are prepared once and reused, and
// every error comes back as an absl::Status naming the database file (a node may have more than
// one, and the operator needs the path: issue #14) and the statement. Not thread-safe: one SqliteDb
// belongs to one event loop (SQLite itself runs serialized).
#ifndef X1368_CORE_SQLITE_DB_H_
#define X1368_CORE_SQLITE_DB_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "x1368/core/file_system.h"
#include "x1368/core/kv_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace x1368::core {

class SqliteStatement {
 public:
  // `path` names the database in errors; it must outlive the statement (the SqliteDb's does).
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt, const std::string* path)
      : db_(db), stmt_(stmt), path_(path) {}
  ~SqliteStatement();
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  // Parameters are 1-based, as in SQLite.
  SqliteStatement& Bind(int index, int64_t value);
  SqliteStatement& Bind(int index, absl::string_view text);
  SqliteStatement& BindBlob(int index, absl::string_view blob);
  // Steps once: true with a row, false when done.
  absl::StatusOr<bool> Step();
  // Steps to completion, ignoring rows; then resets for reuse.
  absl::Status Run();
  void Reset();

  int64_t ColumnInt(int index) const;
  std::string ColumnText(int index) const;
  bool ColumnIsNull(int index) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  const std::string* path_;
};

class SqliteDb {
 public:
  // On `fs` (a VFS over it), or on the disk when `fs` is null or PosixFileSystem().
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path,
                                                        FileSystem* fs = nullptr);
  // A database file on the disk, read only and as it is (no journal mode set, nothing created):
  // a backup being checked or restored from.
  static absl::StatusOr<std::unique_ptr<SqliteDb>> OpenReadOnly(const std::string& path);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  absl::Status Exec(absl::string_view sql);
  absl::StatusOr<std::unique_ptr<SqliteStatement>> Prepare(absl::string_view sql);

  // BEGIN IMMEDIATE / COMMIT / ROLLBACK. A Commit() that fails has rolled back: the connection
  // is never left inside a transaction.
  absl::Status Begin();
  absl::Status Commit();
  void Rollback();

  const std::string& path() const { return path_; }

  // STORAGE_ERROR naming this database: for what the caller finds wrong in what it read (a row
  // that does not parse), so that every error about a database names its file.
  absl::Status Corrupt(absl::string_view what) const;

  // An online backup (SQLite's backup API): the whole database as of now, as the bytes of a
  // database file, taken through this connection while it stays usable. Not inside a
  // transaction of this connection.
  absl::StatusOr<std::string> Snapshot();
  // Replaces this database's whole content with `source`'s (SQLite's backup API, one step), as
  // one transaction of this connection.
  absl::Status CopyFrom(SqliteDb& source);
  // PRAGMA integrity_check: OK, or STORAGE_ERROR with SQLite's first findings.
  absl::Status CheckIntegrity();

 private:
  SqliteDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
};

// The KvStore of a tracker: a table in its SQLite database.
class SqliteKvStore final : public KvStore {
 public:
  // Creates the table if needed. `db` must outlive the store.
  static absl::StatusOr<std::unique_ptr<SqliteKvStore>> Open(SqliteDb* db);
  absl::StatusOr<std::optional<std::string>> Get(const std::string& key) override;
  absl::Status Write(const Pairs& puts) override;

 private:
  explicit SqliteKvStore(SqliteDb* db) : db_(db) {}
  SqliteDb* db_;
};

}  // namespace x1368::core

#endif  // X1368_CORE_SQLITE_DB_H_
