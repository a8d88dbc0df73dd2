#include "x1368/core/sqlite_db.h"

#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "x1368/core/reason.h"

namespace x1368::core {
namespace {
// Names the database file as it was opened (SQLite's own name for it is empty for some VFSs and
// modes): a node may have more than one database, and the operator needs the path.
absl::Status SqlError(sqlite3* db, const std::string& path, absl::string_view what,
                      const char* message = nullptr) {
  return absl::InternalError(absl::StrCat(
      "sqlite ", path, ": ", message != nullptr ? message : sqlite3_errmsg(db), " in: ", what));
}

// A SQLite VFS over a FileSystem, so that the trackers' databases live wherever the node's
// other files do, and a MemFileSystem's PowerCut() drops exactly the pages SQLite had not
// synced. File locking is a no-op: such a database is opened by one connection in one process,
// in EXCLUSIVE locking mode, which is also what lets WAL work without shared memory (the shim
// implements only version 1 of sqlite3_io_methods).
struct ShimFile {
  sqlite3_file base;  // first: SQLite casts between the two
  FileSystem* fs;
  std::string* path;
  bool delete_on_close;
};

FileSystem* FsOf(sqlite3_file* f) { return reinterpret_cast<ShimFile*>(f)->fs; }
const std::string& PathOf(sqlite3_file* f) { return *reinterpret_cast<ShimFile*>(f)->path; }

int ShimClose(sqlite3_file* f) {
  auto* file = reinterpret_cast<ShimFile*>(f);
  if (file->delete_on_close) (void)file->fs->Remove(*file->path);
  delete file->path;
  file->path = nullptr;
  return SQLITE_OK;
}

int ShimRead(sqlite3_file* f, void* out, int amount, sqlite3_int64 offset) {
  auto data =
      FsOf(f)->ReadRange(PathOf(f), static_cast<uint64_t>(offset), static_cast<uint64_t>(amount));
  if (!data.ok()) return SQLITE_IOERR_READ;
  std::memcpy(out, data->data(), data->size());
  if (data->size() < static_cast<size_t>(amount)) {
    std::memset(static_cast<char*>(out) + data->size(), 0, amount - data->size());
    return SQLITE_IOERR_SHORT_READ;
  }
  return SQLITE_OK;
}

int WriteError(const absl::Status& s, int otherwise) {
  return absl::IsResourceExhausted(s) ? SQLITE_FULL : otherwise;
}

int ShimWrite(sqlite3_file* f, const void* in, int amount, sqlite3_int64 offset) {
  absl::Status s = FsOf(f)->WriteRange(PathOf(f), static_cast<uint64_t>(offset),
                                       absl::string_view(static_cast<const char*>(in), amount));
  return s.ok() ? SQLITE_OK : WriteError(s, SQLITE_IOERR_WRITE);
}

int ShimTruncate(sqlite3_file* f, sqlite3_int64 size) {
  absl::Status s = FsOf(f)->Truncate(PathOf(f), static_cast<uint64_t>(size));
  return s.ok() ? SQLITE_OK : WriteError(s, SQLITE_IOERR_TRUNCATE);
}

int ShimSync(sqlite3_file* f, int) {
  return FsOf(f)->Sync(PathOf(f)).ok() ? SQLITE_OK : SQLITE_IOERR_FSYNC;
}

int ShimFileSize(sqlite3_file* f, sqlite3_int64* size) {
  auto n = FsOf(f)->Size(PathOf(f));
  *size = n.ok() ? static_cast<sqlite3_int64>(*n) : 0;
  return n.ok() || absl::IsNotFound(n.status()) ? SQLITE_OK : SQLITE_IOERR_FSTAT;
}

int ShimLock(sqlite3_file*, int) { return SQLITE_OK; }
int ShimCheckReservedLock(sqlite3_file*, int* out) {
  *out = 0;
  return SQLITE_OK;
}
int ShimFileControl(sqlite3_file*, int, void*) { return SQLITE_NOTFOUND; }
int ShimSectorSize(sqlite3_file*) { return 4096; }
// No guarantees at all (no atomic or sequential writes): SQLite then takes every precaution.
int ShimDeviceCharacteristics(sqlite3_file*) { return 0; }

const sqlite3_io_methods kShimMethods = [] {
  sqlite3_io_methods m{};
  m.iVersion = 1;
  m.xClose = ShimClose;
  m.xRead = ShimRead;
  m.xWrite = ShimWrite;
  m.xTruncate = ShimTruncate;
  m.xSync = ShimSync;
  m.xFileSize = ShimFileSize;
  m.xLock = ShimLock;
  m.xUnlock = ShimLock;
  m.xCheckReservedLock = ShimCheckReservedLock;
  m.xFileControl = ShimFileControl;
  m.xSectorSize = ShimSectorSize;
  m.xDeviceCharacteristics = ShimDeviceCharacteristics;
  return m;
}();

FileSystem* FsOf(sqlite3_vfs* vfs) { return static_cast<FileSystem*>(vfs->pAppData); }

int ShimOpen(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  static std::atomic<uint64_t> temp_counter{0};
  auto* file = reinterpret_cast<ShimFile*>(f);
  file->base.pMethods = nullptr;
  FileSystem* fs = FsOf(vfs);
  std::string path = name != nullptr ? std::string(name)
                                     : absl::StrCat("/sqlite-temp-", temp_counter.fetch_add(1));
  if (!fs->Exists(path)) {
    if ((flags & SQLITE_OPEN_CREATE) == 0) return SQLITE_CANTOPEN;
    if (!fs->Truncate(path, 0).ok()) return SQLITE_CANTOPEN;
  }
  file->fs = fs;
  file->path = new std::string(std::move(path));
  file->delete_on_close = (flags & SQLITE_OPEN_DELETEONCLOSE) != 0;
  file->base.pMethods = &kShimMethods;
  if (out_flags != nullptr) *out_flags = flags;
  return SQLITE_OK;
}

int ShimDelete(sqlite3_vfs* vfs, const char* name, int) {
  return FsOf(vfs)->Remove(name).ok() ? SQLITE_OK : SQLITE_IOERR_DELETE;
}

int ShimAccess(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  FileSystem* fs = FsOf(vfs);
  // As SQLite's unix VFS: an empty file does not "exist" (a WAL or journal of zero bytes).
  auto size = fs->Size(name);
  *out = flags == SQLITE_ACCESS_EXISTS ? (size.ok() && *size > 0) : fs->Exists(name);
  return SQLITE_OK;
}

int ShimFullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  sqlite3_snprintf(n, out, "%s", name);
  return SQLITE_OK;
}

// Randomness, sleep and time come from SQLite's own default VFS.
int ShimRandomness(sqlite3_vfs*, int n, char* out) {
  sqlite3_vfs* base = sqlite3_vfs_find(nullptr);
  return base->xRandomness(base, n, out);
}
int ShimSleep(sqlite3_vfs*, int us) {
  sqlite3_vfs* base = sqlite3_vfs_find(nullptr);
  return base->xSleep(base, us);
}
int ShimCurrentTime(sqlite3_vfs*, double* out) {
  sqlite3_vfs* base = sqlite3_vfs_find(nullptr);
  return base->xCurrentTime(base, out);
}
int ShimGetLastError(sqlite3_vfs*, int, char*) { return 0; }

// One registered VFS per FileSystem, named after its address. Registrations live as long as the
// process: a FileSystem later built at the same address reuses its entry, which points to it.
const char* VfsFor(FileSystem* fs) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* vfss = new std::map<FileSystem*, std::pair<std::string, sqlite3_vfs*>>();
  absl::MutexLock lock(&mu);
  auto& entry = (*vfss)[fs];
  if (entry.second == nullptr) {
    entry.first = absl::StrCat("x1368-fs-", reinterpret_cast<uintptr_t>(fs));
    auto* vfs = new sqlite3_vfs{};
    vfs->iVersion = 1;
    vfs->szOsFile = sizeof(ShimFile);
    vfs->mxPathname = 1024;
    vfs->zName = entry.first.c_str();
    vfs->pAppData = fs;
    vfs->xOpen = ShimOpen;
    vfs->xDelete = ShimDelete;
    vfs->xAccess = ShimAccess;
    vfs->xFullPathname = ShimFullPathname;
    vfs->xRandomness = ShimRandomness;
    vfs->xSleep = ShimSleep;
    vfs->xCurrentTime = ShimCurrentTime;
    vfs->xGetLastError = ShimGetLastError;
    sqlite3_vfs_register(vfs, /*makeDflt=*/0);
    entry.second = vfs;
  }
  return entry.first.c_str();
}

}  // namespace

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

SqliteStatement& SqliteStatement::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

SqliteStatement& SqliteStatement::Bind(int index, absl::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

SqliteStatement& SqliteStatement::BindBlob(int index, absl::string_view blob) {
  sqlite3_bind_blob(stmt_, index, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  return *this;
}

absl::StatusOr<bool> SqliteStatement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  absl::Status s = SqlError(db_, *path_, sqlite3_sql(stmt_));
  sqlite3_reset(stmt_);
  return s;
}

absl::Status SqliteStatement::Run() {
  while (true) {
    auto row = Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
  }
  Reset();
  return absl::OkStatus();
}

void SqliteStatement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t SqliteStatement::ColumnInt(int index) const { return sqlite3_column_int64(stmt_, index); }

std::string SqliteStatement::ColumnText(int index) const {
  const void* data = sqlite3_column_blob(stmt_, index);
  int len = sqlite3_column_bytes(stmt_, index);
  if (data == nullptr) return {};
  return std::string(static_cast<const char*>(data), static_cast<size_t>(len));
}

bool SqliteStatement::ColumnIsNull(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path, FileSystem* fs) {
  const char* vfs = fs == nullptr || fs == PosixFileSystem() ? nullptr : VfsFor(fs);
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, vfs);
  if (rc != SQLITE_OK) {
    absl::Status s = absl::InternalError(
        absl::StrCat("sqlite ", path, ": cannot open: ", db ? sqlite3_errmsg(db) : "no memory"));
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<SqliteDb> out(new SqliteDb(db, path));
  sqlite3_busy_timeout(db, 5000);
  if (vfs != nullptr) {
    // Before WAL is first used: the shim has no shared memory (see ShimFile).
    X1368_RETURN_IF_ERROR(out->Exec("PRAGMA locking_mode=EXCLUSIVE;"));
  }
  // WAL with synchronous=FULL: a committed transaction survives a power cut (docs/architecture.md
  // §9).
  if (absl::Status s = out->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"); !s.ok()) {
    return s;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::OpenReadOnly(const std::string& path) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = absl::InternalError(
        absl::StrCat("sqlite ", path, ": cannot open: ", db ? sqlite3_errmsg(db) : "no memory"));
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<SqliteDb> out(new SqliteDb(db, path));
  // Opening reads nothing; a file that is not a database shows on the first read.
  X1368_RETURN_IF_ERROR(out->Exec("SELECT count(*) FROM sqlite_schema"));
  return out;
}

SqliteDb::~SqliteDb() { sqlite3_close(db_); }

absl::Status SqliteDb::Corrupt(absl::string_view what) const {
  return Reject(v1::STORAGE_ERROR, absl::StrCat("sqlite ", path_, ": ", what));
}

absl::Status SqliteDb::Exec(absl::string_view sql) {
  char* err = nullptr;
  std::string owned(sql);
  if (sqlite3_exec(db_, owned.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    absl::Status s = SqlError(db_, path_, sql, err);
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SqliteStatement>> SqliteDb::Prepare(absl::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
      SQLITE_OK) {
    return SqlError(db_, path_, sql);
  }
  return std::make_unique<SqliteStatement>(db_, stmt, &path_);
}

absl::StatusOr<std::string> SqliteDb::Snapshot() {
  // Into a private in-memory database, then serialized: no temporary file, and the copy is
  // consistent because the backup runs in one step on this connection's thread.
  sqlite3* mem = nullptr;
  if (sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    sqlite3_close(mem);
    return absl::InternalError(absl::StrCat("sqlite ", path_, ": backup: no memory database"));
  }
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> owned(mem, sqlite3_close);
  sqlite3_backup* backup = sqlite3_backup_init(mem, "main", db_, "main");
  if (backup == nullptr) return SqlError(mem, path_, "backup");
  int rc = sqlite3_backup_step(backup, -1);
  sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) {
    return absl::InternalError(
        absl::StrCat("sqlite ", path_, ": backup: ", sqlite3_errstr(rc), " in: backup"));
  }
  sqlite3_int64 size = 0;
  unsigned char* bytes = sqlite3_serialize(mem, "main", &size, 0);
  if (bytes == nullptr) return SqlError(mem, path_, "serialize");
  std::string out(reinterpret_cast<const char*>(bytes), static_cast<size_t>(size));
  sqlite3_free(bytes);
  return out;
}

absl::Status SqliteDb::CopyFrom(SqliteDb& source) {
  sqlite3_backup* backup = sqlite3_backup_init(db_, "main", source.db_, "main");
  if (backup == nullptr) return SqlError(db_, path_, absl::StrCat("restore from ", source.path_));
  int rc = sqlite3_backup_step(backup, -1);
  sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) {
    return absl::InternalError(
        absl::StrCat("sqlite ", path_, ": restore from ", source.path_, ": ", sqlite3_errstr(rc)));
  }
  return absl::OkStatus();
}

absl::Status SqliteDb::CheckIntegrity() {
  X1368_ASSIGN_OR_RETURN(auto stmt, Prepare("PRAGMA integrity_check"));
  std::string findings;
  while (true) {
    X1368_ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) break;
    std::string line = stmt->ColumnText(0);
    if (line == "ok") continue;
    if (findings.size() < 512) absl::StrAppend(&findings, findings.empty() ? "" : "; ", line);
  }
  if (findings.empty()) return absl::OkStatus();
  return Corrupt(absl::StrCat("integrity check failed: ", findings));
}

absl::Status SqliteDb::Begin() { return Exec("BEGIN IMMEDIATE"); }
absl::Status SqliteDb::Commit() {
  absl::Status s = Exec("COMMIT");
  // A failed COMMIT may leave the transaction open (a deferred constraint, SQLITE_BUSY; after
  // an I/O error SQLite may or may not have rolled back). Left open, every later Begin() fails
  // and every later write joins a transaction that never commits, so it is ended here. When
  // SQLite already rolled back, this ROLLBACK fails harmlessly.
  if (!s.ok()) Rollback();
  return s;
}
void SqliteDb::Rollback() { (void)Exec("ROLLBACK"); }

absl::StatusOr<std::unique_ptr<SqliteKvStore>> SqliteKvStore::Open(SqliteDb* db) {
  X1368_RETURN_IF_ERROR(
      db->Exec("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)"));
  return std::unique_ptr<SqliteKvStore>(new SqliteKvStore(db));
}

namespace {
// A key-value store's failures are STORAGE_ERROR, whichever step failed (the message, with the
// database's path, is kept).
absl::Status StorageError(const absl::Status& s) {
  return ReasonOf(s) == v1::STORAGE_ERROR ? s : Reject(v1::STORAGE_ERROR, s.message());
}
}  // namespace

absl::StatusOr<std::optional<std::string>> SqliteKvStore::Get(const std::string& key) {
  auto stmt = db_->Prepare("SELECT value FROM kv WHERE key = ?");
  if (!stmt.ok()) return StorageError(stmt.status());
  (*stmt)->Bind(1, key);
  auto row = (*stmt)->Step();
  if (!row.ok()) return StorageError(row.status());
  if (!*row) return std::nullopt;
  return (*stmt)->ColumnText(0);
}

absl::Status SqliteKvStore::Write(const Pairs& puts) {
  auto stmt = db_->Prepare("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)");
  if (!stmt.ok()) return StorageError(stmt.status());
  if (absl::Status s = db_->Begin(); !s.ok()) return StorageError(s);
  for (const auto& [k, v] : puts) {
    (*stmt)->Bind(1, k).BindBlob(2, v);
    if (absl::Status s = (*stmt)->Run(); !s.ok()) {
      db_->Rollback();
      return StorageError(s);
    }
  }
  if (absl::Status s = db_->Commit(); !s.ok()) return StorageError(s);
  return absl::OkStatus();
}

}  // namespace x1368::core
