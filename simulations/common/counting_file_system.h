// A FileSystem that forwards every call to another one and counts the calls that make the disk
// durable (Sync, WriteAtomic, Rename, Remove), for the benchmarks: how many fsyncs a node pays
// for what it does. Thread-safe as the one it forwards to; the counts are atomics.
//
// Give it to client nodes only (testing::ClientSpec::fs): SqliteDb::Open reaches the disk
// directly only for PosixFileSystem() itself, so a tracker node's database on this decorator
// would go through the VFS over the interface and be measured as something it is not.
#ifndef X1368_SIMULATIONS_COUNTING_FILE_SYSTEM_H_
#define X1368_SIMULATIONS_COUNTING_FILE_SYSTEM_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "x1368/core/file_system.h"

namespace x1368::sim {

class CountingFileSystem final : public core::FileSystem {
 public:
  // Calls that succeeded, by kind.
  struct Counts {
    uint64_t syncs = 0;
    uint64_t write_atomics = 0;
    uint64_t renames = 0;
    uint64_t removes = 0;  // of a file that was there

    // fsync(2) calls as PosixFileSystem makes them (tracker-core/src/file_util.cc): Sync one;
    // WriteAtomic two (the temporary file, then its directory after the rename); Rename one (the
    // target's directory); Remove of a file one (its directory).
    uint64_t fsyncs() const { return syncs + 2 * write_atomics + renames + removes; }
    // rename(2) calls: each Rename, and the one inside each WriteAtomic.
    uint64_t rename_syscalls() const { return renames + write_atomics; }

    Counts operator-(const Counts& o) const {
      return {syncs - o.syncs, write_atomics - o.write_atomics, renames - o.renames,
              removes - o.removes};
    }
  };

  // `inner` is not owned and must outlive this.
  explicit CountingFileSystem(core::FileSystem* inner) : inner_(inner) {}

  Counts counts() const {
    return {syncs_.load(), write_atomics_.load(), renames_.load(), removes_.load()};
  }

  absl::StatusOr<std::string> Read(const std::string& path,
                                   uint64_t max_bytes = UINT64_MAX) override {
    return inner_->Read(path, max_bytes);
  }
  absl::StatusOr<std::string> ReadRange(const std::string& path, uint64_t offset,
                                        uint64_t length) override {
    return inner_->ReadRange(path, offset, length);
  }
  absl::StatusOr<uint64_t> Size(const std::string& path) override { return inner_->Size(path); }
  bool Exists(const std::string& path) override { return inner_->Exists(path); }
  absl::StatusOr<std::vector<std::string>> List(const std::string& dir) override {
    return inner_->List(dir);
  }
  absl::Status WriteAtomic(const std::string& path, absl::string_view data,
                           int mode = 0644) override {
    return Count(inner_->WriteAtomic(path, data, mode), write_atomics_);
  }
  absl::Status WriteRange(const std::string& path, uint64_t offset,
                          absl::string_view data) override {
    return inner_->WriteRange(path, offset, data);
  }
  absl::Status Truncate(const std::string& path, uint64_t size, int mode = 0644) override {
    return inner_->Truncate(path, size, mode);
  }
  absl::Status Sync(const std::string& path) override { return Count(inner_->Sync(path), syncs_); }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    return Count(inner_->Rename(from, to), renames_);
  }
  absl::Status Remove(const std::string& path) override {
    // Removing what is not there syncs nothing.
    const bool there = inner_->Exists(path);
    absl::Status s = inner_->Remove(path);
    if (there && s.ok()) removes_.fetch_add(1, std::memory_order_relaxed);
    return s;
  }
  absl::Status MakeDirs(const std::string& path, int mode = 0755) override {
    return inner_->MakeDirs(path, mode);
  }

 private:
  static absl::Status Count(absl::Status s, std::atomic<uint64_t>& n) {
    if (s.ok()) n.fetch_add(1, std::memory_order_relaxed);
    return s;
  }

  core::FileSystem* const inner_;
  std::atomic<uint64_t> syncs_{0};
  std::atomic<uint64_t> write_atomics_{0};
  std::atomic<uint64_t> renames_{0};
  std::atomic<uint64_t> removes_{0};
};

}  // namespace x1368::sim

#endif  // X1368_SIMULATIONS_COUNTING_FILE_SYSTEM_H_
