#include "x1368/intermediate/firmware_cache.h"

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/crypto.h"
#include "x1368/core/reason.h"

namespace x1368::intermediate {

namespace {

bool IsHexDigestName(const std::string& name) {
  return name.size() == 64 && name.find_first_not_of("0123456789abcdef") == std::string::npos;
}

absl::Status CheckDigest(const std::string& sha256) {
  if (sha256.size() != 32) {
    return core::Reject(v1::MALFORMED, absl::StrCat("image id is not a SHA-256 (", sha256.size(),
                                                    " bytes, not 32)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status FirmwareCache::Open() {
  X1368_RETURN_IF_ERROR(fs_->MakeDirs(dir_, 0700));
  X1368_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->List(dir_));
  for (const std::string& name : names) {
    std::string path = absl::StrCat(dir_, "/", name);
    if (absl::EndsWith(name, ".part") || absl::EndsWith(name, ".part.tmp")) {
      (void)fs_->Remove(path);
    } else if (IsHexDigestName(name) && fs_->Size(path).ok()) {
      // Only Complete() names a file by its bare digest, after its table was stored.
      if (fs_->Exists(core::ChunkTablePath(path))) {
        last_used_[name] = ++clock_;
      } else {
        (void)fs_->Remove(path);
      }
    } else if (absl::EndsWith(name, ".chunks") &&
               !fs_->Exists(path.substr(0, path.size() - std::strlen(".chunks")))) {
      (void)fs_->Remove(path);  // the table of an image that is gone
    }
  }
  // A smaller max_images than the previous run's applies at once.
  Evict();
  return absl::OkStatus();
}

std::string FirmwareCache::PathOf(const std::string& sha256) const {
  return absl::StrCat(dir_, "/", core::HexEncode(sha256));
}

std::string FirmwareCache::TablePathOf(const std::string& sha256) const {
  return core::ChunkTablePath(PathOf(sha256));
}

std::string FirmwareCache::PartPath(const std::string& sha256) const {
  return PathOf(sha256) + ".part";
}

bool FirmwareCache::Has(const std::string& sha256) const {
  return last_used_.count(core::HexEncode(sha256)) > 0;
}

void FirmwareCache::Touch(const std::string& sha256) {
  auto it = last_used_.find(core::HexEncode(sha256));
  if (it != last_used_.end()) it->second = ++clock_;
}

absl::Status FirmwareCache::Begin(const std::string& sha256, uint64_t size) {
  X1368_RETURN_IF_ERROR(CheckDigest(sha256));
  std::string part = PartPath(sha256);
  auto held = fs_->Size(part);
  if (held.ok() && *held == size && filling_.count(core::HexEncode(sha256))) {
    return absl::OkStatus();  // a fill that failed resumes in the same file
  }
  filling_.erase(core::HexEncode(sha256));
  X1368_RETURN_IF_ERROR(fs_->WriteAtomic(part, ""));
  if (size > 0 && !fs_->Truncate(part, size).ok()) {
    (void)fs_->Remove(part);
    return core::Reject(v1::STORAGE_ERROR, absl::StrCat("cannot size ", part));
  }
  filling_[core::HexEncode(sha256)] = size;
  return absl::OkStatus();
}

absl::Status FirmwareCache::Write(const std::string& sha256, uint64_t offset,
                                  const std::string& data) {
  X1368_RETURN_IF_ERROR(CheckDigest(sha256));
  auto it = filling_.find(core::HexEncode(sha256));
  if (it == filling_.end()) {
    return core::Reject(v1::IMAGE_UNAVAILABLE, "no fill of this image was begun");
  }
  // Checked before writing: a chunk past the end would grow the file beyond what the manifest
  // allows (and a huge offset would make a huge sparse file). Written so it cannot overflow.
  if (offset > it->second || data.size() > it->second - offset) {
    return core::Reject(v1::SIZE_MISMATCH,
                        absl::StrCat(data.size(), " bytes at offset ", offset,
                                     " do not fit in an image of ", it->second, " bytes"));
  }
  return fs_->WriteRange(PartPath(sha256), offset, data);
}

absl::Status FirmwareCache::Complete(const std::string& sha256, uint64_t size,
                                     const std::string& table) {
  X1368_RETURN_IF_ERROR(CheckDigest(sha256));
  if (filling_.erase(core::HexEncode(sha256)) == 0) {
    return core::Reject(v1::IMAGE_UNAVAILABLE, "no fill of this image was begun");
  }
  std::string part = PartPath(sha256);
  auto actual_size = fs_->Size(part);
  if (!actual_size.ok() || *actual_size != size) {
    (void)fs_->Remove(part);
    return core::Reject(v1::SIZE_MISMATCH, "cached image has the wrong size");
  }
  X1368_RETURN_IF_ERROR(fs_->Sync(part));
  if (!fs_->WriteAtomic(TablePathOf(sha256), table).ok() ||
      !fs_->Rename(part, PathOf(sha256)).ok()) {
    return core::Reject(v1::STORAGE_ERROR, "cannot move the verified image into the cache");
  }
  last_used_[core::HexEncode(sha256)] = ++clock_;
  Evict();
  return absl::OkStatus();
}

void FirmwareCache::Evict() {
  while (last_used_.size() > max_images_) {
    auto oldest = last_used_.begin();
    for (auto it = last_used_.begin(); it != last_used_.end(); ++it) {
      if (it->second < oldest->second) oldest = it;
    }
    std::string path = absl::StrCat(dir_, "/", oldest->first);
    (void)fs_->Remove(path);
    (void)fs_->Remove(core::ChunkTablePath(path));
    last_used_.erase(oldest);
  }
}

}  // namespace x1368::intermediate
