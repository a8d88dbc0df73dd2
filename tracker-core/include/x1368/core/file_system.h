// Where a node's files live, behind one interface (as LevelDB's Env does for its files).
//
// Every byte a node persists goes through a FileSystem: the device's key-value state, the stub's
// A/B slots, the gateway's firmware cache, root's images, and (through a SQLite VFS, see
// SqliteDb::Open) the trackers' databases. Two implementations:
//   - PosixFileSystem(): the real disk (file_util.h), used by the daemons;
//   - MemFileSystem: files in memory, for tests and for simulated fleets too large for the disk.
//     It knows which bytes were synced, so PowerCut() can drop everything that was not, and it
//     can fail writes (a broken disk) or run out of space (a full one).
// SqliteDb::Open(path, fs) opens a database on any of them (a VFS over the interface for all
// but the disk).
//
// Durability contract, the same for both:
//   - WriteAtomic, Rename and Remove are durable when they return OK;
//   - WriteRange and Truncate are not, until Sync(path) returns OK;
//   - a file created by WriteRange/Truncate and never synced does not survive a power cut.
// Thread-safe.
#ifndef X1368_CORE_FILE_SYSTEM_H_
#define X1368_CORE_FILE_SYSTEM_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace x1368::core {

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // The whole file; one larger than `max_bytes` is an error, so a corrupt or hostile file cannot
  // make the reader allocate without bound.
  virtual absl::StatusOr<std::string> Read(const std::string& path,
                                           uint64_t max_bytes = UINT64_MAX) = 0;
  // `length` bytes at `offset`, fewer at the end of the file.
  virtual absl::StatusOr<std::string> ReadRange(const std::string& path, uint64_t offset,
                                                uint64_t length) = 0;
  virtual absl::StatusOr<uint64_t> Size(const std::string& path) = 0;  // NotFound if missing
  virtual bool Exists(const std::string& path) = 0;
  // Names (not paths) of the files directly in `dir`.
  virtual absl::StatusOr<std::vector<std::string>> List(const std::string& dir) = 0;

  virtual absl::Status WriteAtomic(const std::string& path, absl::string_view data,
                                   int mode = 0644) = 0;
  // Creates the file if needed; a gap before `offset` reads as zeros.
  virtual absl::Status WriteRange(const std::string& path, uint64_t offset,
                                  absl::string_view data) = 0;
  // Creates the file (with `mode`) if needed.
  virtual absl::Status Truncate(const std::string& path, uint64_t size, int mode = 0644) = 0;
  virtual absl::Status Sync(const std::string& path) = 0;
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  virtual absl::Status Remove(const std::string& path) = 0;  // OK if already gone
  virtual absl::Status MakeDirs(const std::string& path, int mode = 0755) = 0;
};

// The real disk. Process-wide and stateless.
FileSystem* PosixFileSystem();

// SHA-256 of a file, read in pieces.
absl::StatusOr<std::string> Sha256Of(FileSystem& fs, const std::string& path);

// Space kept back for a node's own state on a disk that others fill (a download, logs, another
// program): `reserve_path` holds `reserve_bytes` of nothing. When a write through this file
// system finds the disk full, the reserve is deleted and the write tried once more, so the node
// can still record its state and its sequence lease, and report (X.1368 §11.1 a: a device must
// stay reachable and never lose its state). Once released, the space is the disk's again (taking
// it back at once would starve what freed it); Ensure() takes it back, at the node's next start.
// Everything else goes to `base`.
// Use it for the small state writes only, never for what fills the disk. Thread-safe.
class ReservingFileSystem final : public FileSystem {
 public:
  ReservingFileSystem(FileSystem* base, std::string reserve_path, uint64_t reserve_bytes);

  // Creates the reserve if it is missing; an error if there is no room for it.
  absl::Status Ensure();
  bool reserve_held();

  absl::StatusOr<std::string> Read(const std::string& path,
                                   uint64_t max_bytes = UINT64_MAX) override {
    return base_->Read(path, max_bytes);
  }
  absl::StatusOr<std::string> ReadRange(const std::string& path, uint64_t offset,
                                        uint64_t length) override {
    return base_->ReadRange(path, offset, length);
  }
  absl::StatusOr<uint64_t> Size(const std::string& path) override { return base_->Size(path); }
  bool Exists(const std::string& path) override { return base_->Exists(path); }
  absl::StatusOr<std::vector<std::string>> List(const std::string& dir) override {
    return base_->List(dir);
  }
  absl::Status WriteAtomic(const std::string& path, absl::string_view data,
                           int mode = 0644) override;
  absl::Status WriteRange(const std::string& path, uint64_t offset,
                          absl::string_view data) override;
  absl::Status Truncate(const std::string& path, uint64_t size, int mode = 0644) override;
  absl::Status Sync(const std::string& path) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status Remove(const std::string& path) override { return base_->Remove(path); }
  absl::Status MakeDirs(const std::string& path, int mode = 0755) override {
    return base_->MakeDirs(path, mode);
  }

 private:
  // Runs `op`; on a full disk releases the reserve and runs it once more.
  absl::Status WithReserve(const std::function<absl::Status()>& op);

  FileSystem* const base_;
  const std::string reserve_path_;
  const uint64_t reserve_bytes_;
  absl::Mutex mu_;  // one write at a time may release or restore the reserve
};

class MemFileSystem final : public FileSystem {
 public:
  MemFileSystem() = default;

  absl::StatusOr<std::string> Read(const std::string& path,
                                   uint64_t max_bytes = UINT64_MAX) override;
  absl::StatusOr<std::string> ReadRange(const std::string& path, uint64_t offset,
                                        uint64_t length) override;
  absl::StatusOr<uint64_t> Size(const std::string& path) override;
  bool Exists(const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> List(const std::string& dir) override;
  absl::Status WriteAtomic(const std::string& path, absl::string_view data,
                           int mode = 0644) override;
  absl::Status WriteRange(const std::string& path, uint64_t offset,
                          absl::string_view data) override;
  absl::Status Truncate(const std::string& path, uint64_t size, int mode = 0644) override;
  absl::Status Sync(const std::string& path) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status MakeDirs(const std::string& path, int mode = 0755) override;

  // Faults. PowerCut() puts every file back to what was last synced (files never synced vanish)
  // and counts the bytes it dropped; the node that used the files must be rebuilt afterwards,
  // as after a reboot. FailWrites() makes every mutating call fail with DataLoss (a broken
  // disk); SetCapacity() makes writes beyond `bytes` in all fail with ResourceExhausted (a full
  // disk). Heal() undoes both.
  void PowerCut();
  // A power cut at an arbitrary point, unknown to the code using the files: the next `n`
  // mutating calls (writes, truncates, syncs, renames, removes) succeed, then the power goes.
  // That call and every later one fail with DataLoss and change nothing, and `on_cut` runs once,
  // on the thread of the call that met the cut, with this file system's lock held (it must not
  // call back into it; cutting the node's links is what it is for). PowerCut() then drops what
  // was not synced and brings the power back.
  void CutPowerAfter(int64_t n, std::function<void()> on_cut);
  bool powered_off() const;
  uint64_t mutations() const;  // mutating calls so far, counted as CutPowerAfter counts them
  void FailWrites(bool on);
  void SetCapacity(uint64_t bytes);
  void Heal();

  uint64_t bytes_dropped() const;
  uint64_t used_bytes() const;      // what SetCapacity() counts against
  uint64_t unsynced_bytes() const;  // bytes a power cut now would drop, roughly
  uint64_t syncs() const;

 private:
  struct File {
    std::string data;
    std::optional<std::string> synced;  // what a power cut leaves; nullopt: the file vanishes
  };
  absl::Status CheckWrite(uint64_t grow_by) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t UsedBytes() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, File> files_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> dirs_ ABSL_GUARDED_BY(mu_);
  bool fail_writes_ ABSL_GUARDED_BY(mu_) = false;
  int64_t mutations_left_ ABSL_GUARDED_BY(mu_) = -1;  // -1: no cut planned
  bool powered_off_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_cut_ ABSL_GUARDED_BY(mu_);
  uint64_t mutations_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t capacity_ ABSL_GUARDED_BY(mu_) = UINT64_MAX;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t syncs_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace x1368::core

#endif  // X1368_CORE_FILE_SYSTEM_H_
