// Small durable key-value stores for node state: sequence counters, highest-seen sequence
// numbers, the client's update record.
//
// KvStore is the interface; FileKvStore (one atomically replaced file, for devices),
// MemKvStore (the fake for
// tests) and FaultyKvStore (a wrapper that fails on command, for fault-injection tests)
// implement it. Write() is all-or-nothing and durable when it returns OK.
// Implementations are thread-safe.
#ifndef X1368_CORE_KV_STORE_H_
#define X1368_CORE_KV_STORE_H_

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "x1368/core/file_system.h"

namespace x1368::core {

class KvStore {
 public:
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  virtual ~KvStore() = default;
  virtual absl::StatusOr<std::optional<std::string>> Get(const std::string& key) = 0;
  virtual absl::Status Write(const Pairs& puts) = 0;
  absl::Status Put(const std::string& key, const std::string& value) {
    return Write({{key, value}});
  }
};

class MemKvStore final : public KvStore {
 public:
  absl::StatusOr<std::optional<std::string>> Get(const std::string& key) override;
  absl::Status Write(const Pairs& puts) override;
  size_t writes() const { return writes_.load(); }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
  std::atomic<size_t> writes_{0};
};

// The whole map in one file, rewritten atomically on each Write. Meant for a device's handful
// of keys, not for large data.
class FileKvStore final : public KvStore {
 public:
  // Loads `path` if it exists; a corrupt file is an error, never silently reset.
  static absl::StatusOr<std::unique_ptr<FileKvStore>> Open(const std::string& path,
                                                           FileSystem* fs = PosixFileSystem());
  absl::StatusOr<std::optional<std::string>> Get(const std::string& key) override;
  absl::Status Write(const Pairs& puts) override;

 private:
  FileKvStore(std::string path, FileSystem* fs) : path_(std::move(path)), fs_(fs) {}
  const std::string path_;
  FileSystem* const fs_;
  absl::Mutex mu_;
  std::map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
};

// Passes everything to `base` until told to fail; then every Write (and Get, if asked) returns
// a DataLoss error, as a full or broken disk would.
class FaultyKvStore final : public KvStore {
 public:
  explicit FaultyKvStore(KvStore* base) : base_(base) {}
  void FailWritesAfter(int n) { writes_left_.store(n); }
  void FailReads(bool on) { fail_reads_.store(on); }
  void Heal() { writes_left_.store(-1), fail_reads_.store(false); }
  absl::StatusOr<std::optional<std::string>> Get(const std::string& key) override;
  absl::Status Write(const Pairs& puts) override;

 private:
  KvStore* base_;
  std::atomic<int> writes_left_{-1};  // -1: never fail
  std::atomic<bool> fail_reads_{false};
};

}  // namespace x1368::core

#endif  // X1368_CORE_KV_STORE_H_
