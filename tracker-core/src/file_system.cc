#include "x1368/core/file_system.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_util.h"
#include "x1368/core/log.h"
#include "x1368/core/reason.h"

namespace x1368::core {
namespace {

class Posix final : public FileSystem {
 public:
  absl::StatusOr<std::string> Read(const std::string& path, uint64_t max_bytes) override {
    return ReadFileLimited(path, max_bytes);
  }
  absl::StatusOr<std::string> ReadRange(const std::string& path, uint64_t offset,
                                        uint64_t length) override {
    return ReadFileRange(path, offset, length);
  }
  absl::StatusOr<uint64_t> Size(const std::string& path) override { return FileSize(path); }
  bool Exists(const std::string& path) override { return PathExists(path); }
  absl::StatusOr<std::vector<std::string>> List(const std::string& dir) override {
    return ListDir(dir);
  }
  absl::Status WriteAtomic(const std::string& path, absl::string_view data, int mode) override {
    return WriteFileAtomic(path, data, mode);
  }
  absl::Status WriteRange(const std::string& path, uint64_t offset,
                          absl::string_view data) override {
    return WriteFileRange(path, offset, data);
  }
  absl::Status Truncate(const std::string& path, uint64_t size, int mode) override {
    return TruncateFile(path, size, mode);
  }
  absl::Status Sync(const std::string& path) override { return SyncFile(path); }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    return RenameFile(from, to);
  }
  absl::Status Remove(const std::string& path) override { return RemoveFile(path); }
  absl::Status MakeDirs(const std::string& path, int mode) override {
    return core::MakeDirs(path, mode);
  }
};

}  // namespace

FileSystem* PosixFileSystem() {
  static Posix* fs = new Posix();
  return fs;
}

absl::StatusOr<std::string> Sha256Of(FileSystem& fs, const std::string& path) {
  constexpr uint64_t kPiece = 1 << 16;
  Sha256Stream sha;
  for (uint64_t offset = 0;; offset += kPiece) {
    X1368_ASSIGN_OR_RETURN(std::string piece, fs.ReadRange(path, offset, kPiece));
    sha.Update(piece);
    if (piece.size() < kPiece) break;
  }
  return sha.Final();
}

// --- MemFileSystem ---

absl::Status MemFileSystem::CheckWrite(uint64_t grow_by) {
  ++mutations_;
  if (!powered_off_ && mutations_left_ == 0) {
    powered_off_ = true;
    if (on_cut_) std::exchange(on_cut_, nullptr)();
  }
  if (powered_off_) return absl::DataLossError("the power is off (injected power cut)");
  if (mutations_left_ > 0) --mutations_left_;
  if (fail_writes_) return absl::DataLossError("write failed (injected disk fault)");
  if (capacity_ != UINT64_MAX && UsedBytes() + grow_by > capacity_) {
    return absl::ResourceExhaustedError("no space left on device (injected)");
  }
  return absl::OkStatus();
}

uint64_t MemFileSystem::UsedBytes() const {
  uint64_t used = 0;
  for (const auto& [path, file] : files_) used += file.data.size();
  return used;
}

absl::StatusOr<std::string> MemFileSystem::Read(const std::string& path, uint64_t max_bytes) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("open ", path, ": no file"));
  if (it->second.data.size() > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(path, " is larger than the limit of ", max_bytes, " bytes"));
  }
  return it->second.data;
}

absl::StatusOr<std::string> MemFileSystem::ReadRange(const std::string& path, uint64_t offset,
                                                     uint64_t length) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("open ", path, ": no file"));
  const std::string& data = it->second.data;
  if (offset >= data.size()) return std::string();
  return data.substr(offset, length);
}

absl::StatusOr<uint64_t> MemFileSystem::Size(const std::string& path) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("stat ", path, ": no file"));
  return it->second.data.size();
}

bool MemFileSystem::Exists(const std::string& path) {
  absl::MutexLock lock(&mu_);
  return files_.count(path) > 0 || dirs_.count(path) > 0;
}

absl::StatusOr<std::vector<std::string>> MemFileSystem::List(const std::string& dir) {
  absl::MutexLock lock(&mu_);
  if (dirs_.count(dir) == 0) return absl::NotFoundError(absl::StrCat("list ", dir, ": no dir"));
  std::string prefix = absl::StrCat(dir, "/");
  std::vector<std::string> names;
  for (auto it = files_.lower_bound(prefix); it != files_.end(); ++it) {
    if (!absl::StartsWith(it->first, prefix)) break;
    absl::string_view name = absl::string_view(it->first).substr(prefix.size());
    if (!absl::StrContains(name, '/')) names.emplace_back(name);
  }
  return names;
}

absl::Status MemFileSystem::WriteAtomic(const std::string& path, absl::string_view data, int) {
  absl::MutexLock lock(&mu_);
  // The new copy is written beside the old one before it replaces it, as on a disk: it needs
  // room for all of itself.
  X1368_RETURN_IF_ERROR(CheckWrite(data.size()));
  File& f = files_[path];
  f.data = std::string(data);
  f.synced = f.data;
  ++syncs_;
  return absl::OkStatus();
}

absl::Status MemFileSystem::WriteRange(const std::string& path, uint64_t offset,
                                       absl::string_view data) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  uint64_t old = it == files_.end() ? 0 : it->second.data.size();
  uint64_t end = offset + data.size();
  X1368_RETURN_IF_ERROR(CheckWrite(end > old ? end - old : 0));
  std::string& bytes = files_[path].data;
  if (bytes.size() < end) bytes.resize(end, '\0');
  std::copy(data.begin(), data.end(), bytes.begin() + static_cast<ptrdiff_t>(offset));
  return absl::OkStatus();
}

absl::Status MemFileSystem::Truncate(const std::string& path, uint64_t size, int) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  uint64_t old = it == files_.end() ? 0 : it->second.data.size();
  X1368_RETURN_IF_ERROR(CheckWrite(size > old ? size - old : 0));
  files_[path].data.resize(size, '\0');
  return absl::OkStatus();
}

absl::Status MemFileSystem::Sync(const std::string& path) {
  absl::MutexLock lock(&mu_);
  X1368_RETURN_IF_ERROR(CheckWrite(0));
  auto it = files_.find(path);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("fsync ", path, ": no file"));
  it->second.synced = it->second.data;
  ++syncs_;
  return absl::OkStatus();
}

absl::Status MemFileSystem::Rename(const std::string& from, const std::string& to) {
  absl::MutexLock lock(&mu_);
  X1368_RETURN_IF_ERROR(CheckWrite(0));
  auto it = files_.find(from);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("rename ", from, ": no file"));
  // The new name is durable; the content only as far as it was synced, as on a real disk.
  File moved = std::move(it->second);
  files_.erase(it);
  files_[to] = std::move(moved);
  return absl::OkStatus();
}

absl::Status MemFileSystem::Remove(const std::string& path) {
  absl::MutexLock lock(&mu_);
  X1368_RETURN_IF_ERROR(CheckWrite(0));
  files_.erase(path);
  return absl::OkStatus();
}

absl::Status MemFileSystem::MakeDirs(const std::string& path, int) {
  absl::MutexLock lock(&mu_);
  X1368_RETURN_IF_ERROR(CheckWrite(0));
  if (path.empty()) return absl::InvalidArgumentError("empty directory path");
  if (files_.count(path) > 0) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a directory"));
  }
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    dirs_.insert(path.substr(0, pos));
  }
  dirs_.insert(path);
  return absl::OkStatus();
}

void MemFileSystem::PowerCut() {
  absl::MutexLock lock(&mu_);
  powered_off_ = false;
  mutations_left_ = -1;
  on_cut_ = nullptr;
  for (auto it = files_.begin(); it != files_.end();) {
    File& f = it->second;
    if (!f.synced) {
      dropped_ += f.data.size();
      it = files_.erase(it);
      continue;
    }
    if (f.data != *f.synced) {
      dropped_ += std::max(f.data.size(), f.synced->size());  // an upper bound is enough
      f.data = *f.synced;
    }
    ++it;
  }
}

void MemFileSystem::CutPowerAfter(int64_t n, std::function<void()> on_cut) {
  absl::MutexLock lock(&mu_);
  mutations_left_ = n;
  on_cut_ = std::move(on_cut);
}

bool MemFileSystem::powered_off() const {
  absl::MutexLock lock(&mu_);
  return powered_off_;
}

uint64_t MemFileSystem::mutations() const {
  absl::MutexLock lock(&mu_);
  return mutations_;
}

void MemFileSystem::FailWrites(bool on) {
  absl::MutexLock lock(&mu_);
  fail_writes_ = on;
}

void MemFileSystem::SetCapacity(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  capacity_ = bytes;
}

void MemFileSystem::Heal() {
  absl::MutexLock lock(&mu_);
  fail_writes_ = false;
  capacity_ = UINT64_MAX;
}

uint64_t MemFileSystem::bytes_dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

uint64_t MemFileSystem::used_bytes() const {
  absl::MutexLock lock(&mu_);
  return UsedBytes();
}

uint64_t MemFileSystem::unsynced_bytes() const {
  absl::MutexLock lock(&mu_);
  uint64_t n = 0;
  for (const auto& [path, f] : files_) {
    if (!f.synced || f.data != *f.synced) n += f.data.size();
  }
  return n;
}

uint64_t MemFileSystem::syncs() const {
  absl::MutexLock lock(&mu_);
  return syncs_;
}

// ---------------------------------------------------------------------------------------------
// ReservingFileSystem

ReservingFileSystem::ReservingFileSystem(FileSystem* base, std::string reserve_path,
                                         uint64_t reserve_bytes)
    : base_(base), reserve_path_(std::move(reserve_path)), reserve_bytes_(reserve_bytes) {}

absl::Status ReservingFileSystem::Ensure() {
  absl::MutexLock lock(&mu_);
  if (reserve_bytes_ == 0 || base_->Exists(reserve_path_)) return absl::OkStatus();
  return base_->WriteAtomic(reserve_path_, std::string(reserve_bytes_, '\0'), 0600);
}

bool ReservingFileSystem::reserve_held() {
  absl::MutexLock lock(&mu_);
  return base_->Exists(reserve_path_);
}

absl::Status ReservingFileSystem::WithReserve(const std::function<absl::Status()>& op) {
  absl::MutexLock lock(&mu_);
  absl::Status s = op();
  if (reserve_bytes_ == 0) return s;
  bool held = base_->Exists(reserve_path_);
  if (absl::IsResourceExhausted(s) && held) {
    spdlog::error(
        "event=storage.full reserve_released path={} bytes={} error={} hint=\"the disk is full: "
        "the node's state goes into its reserve; free space on the disk\"",
        Quoted(reserve_path_), reserve_bytes_, Quoted(s.message()));
    if (absl::Status r = base_->Remove(reserve_path_); !r.ok()) return s;
    return op();
  }
  return s;
}

absl::Status ReservingFileSystem::WriteAtomic(const std::string& path, absl::string_view data,
                                              int mode) {
  return WithReserve([&] { return base_->WriteAtomic(path, data, mode); });
}

absl::Status ReservingFileSystem::WriteRange(const std::string& path, uint64_t offset,
                                             absl::string_view data) {
  return WithReserve([&] { return base_->WriteRange(path, offset, data); });
}

absl::Status ReservingFileSystem::Truncate(const std::string& path, uint64_t size, int mode) {
  return WithReserve([&] { return base_->Truncate(path, size, mode); });
}

absl::Status ReservingFileSystem::Sync(const std::string& path) {
  return WithReserve([&] { return base_->Sync(path); });
}

absl::Status ReservingFileSystem::Rename(const std::string& from, const std::string& to) {
  return WithReserve([&] { return base_->Rename(from, to); });
}

}  // namespace x1368::core
