#include "x1368/core/kv_store.h"

#include "absl/strings/str_cat.h"
#include "x1368/core/crypto.h"
#include "x1368/core/reason.h"
#include "x1368/v1/storage.pb.h"

namespace x1368::core {
namespace {
constexpr uint64_t kMaxKvFileBytes = 16 << 20;
constexpr size_t kDigestBytes = 32;
}  // namespace

absl::StatusOr<std::optional<std::string>> MemKvStore::Get(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = data_.find(key);
  if (it == data_.end()) return std::nullopt;
  return it->second;
}

absl::Status MemKvStore::Write(const Pairs& puts) {
  absl::MutexLock lock(&mu_);
  for (const auto& [k, v] : puts) data_[k] = v;
  writes_.fetch_add(1);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FileKvStore>> FileKvStore::Open(const std::string& path,
                                                               FileSystem* fs) {
  std::unique_ptr<FileKvStore> store(new FileKvStore(path, fs));
  if (!fs->Exists(path)) return store;
  X1368_ASSIGN_OR_RETURN(std::string raw, fs->Read(path, kMaxKvFileBytes));
  v1::KvSnapshot snapshot;
  absl::string_view payload = absl::string_view(raw).substr(std::min(raw.size(), kDigestBytes));
  if (raw.size() < kDigestBytes || Sha256(payload) != raw.substr(0, kDigestBytes) ||
      !snapshot.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Reject(v1::STORAGE_ERROR, absl::StrCat(path, " is corrupt (checksum or format)"));
  }
  absl::MutexLock lock(&store->mu_);
  for (const auto& [k, v] : snapshot.entries()) store->data_[k] = v;
  return store;
}

absl::StatusOr<std::optional<std::string>> FileKvStore::Get(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = data_.find(key);
  if (it == data_.end()) return std::nullopt;
  return it->second;
}

absl::Status FileKvStore::Write(const Pairs& puts) {
  absl::MutexLock lock(&mu_);
  std::map<std::string, std::string> next = data_;
  for (const auto& [k, v] : puts) next[k] = v;
  v1::KvSnapshot snapshot;
  for (const auto& [k, v] : next) (*snapshot.mutable_entries())[k] = v;
  std::string payload;
  snapshot.SerializeToString(&payload);
  absl::Status s = fs_->WriteAtomic(path_, absl::StrCat(Sha256(payload), payload), 0600);
  if (!s.ok()) return Reject(v1::STORAGE_ERROR, s.message());
  data_ = std::move(next);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> FaultyKvStore::Get(const std::string& key) {
  if (fail_reads_.load()) return Reject(v1::STORAGE_ERROR, "injected read failure");
  return base_->Get(key);
}

absl::Status FaultyKvStore::Write(const Pairs& puts) {
  int left = writes_left_.load();
  if (left == 0) return Reject(v1::STORAGE_ERROR, "injected write failure");
  if (left > 0) writes_left_.fetch_sub(1);
  return base_->Write(puts);
}

}  // namespace x1368::core
